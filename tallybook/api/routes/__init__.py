"""Route modules beyond the core app: each exposes `router`, an APIRouter under /v1, and uses
`tallybook.api.deps` for the database and the acting key. `create_app` includes every module
named in ROUTE_MODULES."""

ROUTE_MODULES: tuple[str, ...] = (
    "cash_application",
    "einvoices",
    "collection",
    "receivables",
    "dunning",
    "purchase_orders",
    "time_sheets",
    "contract_terms",
    "audit",
    "approvals",
    "verification",
    "documents",
    "deliveries",
    "webhooks",
    "portal_links",
)
