"""Imports the CLI modules that live outside main.py, so their commands register on `app`."""

from tallybook.cli import (
    approvals,  # noqa: F401
    audit,  # noqa: F401
    cash_application,  # noqa: F401
    collection,  # noqa: F401
    contract_terms,  # noqa: F401
    deliveries,  # noqa: F401
    documents,  # noqa: F401
    dunning,  # noqa: F401
    einvoices,  # noqa: F401
    portal,  # noqa: F401
    purchase_orders,  # noqa: F401
    receivables,  # noqa: F401
    time_sheets,  # noqa: F401
    verification,  # noqa: F401
    webhooks,  # noqa: F401
)
