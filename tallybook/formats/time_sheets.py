"""Time sheets and service reports from CSV or XLSX, read into plain values (no database).

Time sheet columns (header row first; names match however capitalised or spaced):

    worker, date, hours, customer, contract, product, service, description, reference, approved

Service report columns:

    date, quantity, product, customer, contract, reference, description, performed_by, approved

`customer` is the customer's id or external id, `contract` a contract reference or id,
`product` a product code or id, `service` a free service code when there is no product;
`approved` is yes/no (also approved/draft). Dates are YYYY-MM-DD, decimals use a point.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from tallybook.formats.import_tables import ImportFileError, Row, read_table

TIME_COLUMNS = (
    "worker",
    "date",
    "hours",
    "customer",
    "contract",
    "product",
    "service",
    "description",
    "reference",
    "approved",
)
TIME_ALIASES = {
    "who": "worker",
    "employee": "worker",
    "timekeeper": "worker",
    "work_date": "date",
    "customer_id": "customer",
    "external_id": "customer",
    "contract_reference": "contract",
    "product_code": "product",
    "service_code": "service",
    "status": "approved",
}
REPORT_COLUMNS = (
    "date",
    "quantity",
    "product",
    "customer",
    "contract",
    "reference",
    "description",
    "performed_by",
    "approved",
)
REPORT_ALIASES = {
    "service_date": "date",
    "qty": "quantity",
    "customer_id": "customer",
    "external_id": "customer",
    "contract_reference": "contract",
    "product_code": "product",
    "technician": "performed_by",
    "worker": "performed_by",
    "status": "approved",
}
# Time is entered per day: more than a day's hours on one entry is a typing mistake.
MAX_HOURS = Decimal(24)


@dataclass(frozen=True)
class TimeEntryData:
    row: int
    worker: str
    work_date: date
    hours: Decimal
    customer: str
    contract: str | None
    product: str | None
    service_code: str | None
    description: str | None
    reference: str | None
    approved: bool


@dataclass(frozen=True)
class ServiceReportData:
    row: int
    service_date: date
    quantity: Decimal
    product: str
    customer: str
    contract: str | None
    reference: str | None
    description: str | None
    performed_by: str | None
    approved: bool


def read_time_entries(
    data: bytes, *, format: str | None = None, file_name: str | None = None
) -> list[TimeEntryData]:
    rows = read_table(
        data, format=format, columns=TIME_COLUMNS, aliases=TIME_ALIASES, file_name=file_name
    )
    return [_time_entry(row) for row in rows]


def read_service_reports(
    data: bytes, *, format: str | None = None, file_name: str | None = None
) -> list[ServiceReportData]:
    rows = read_table(
        data, format=format, columns=REPORT_COLUMNS, aliases=REPORT_ALIASES, file_name=file_name
    )
    return [_service_report(row) for row in rows]


def _time_entry(row: Row) -> TimeEntryData:
    hours = row.decimal("hours", required=True)
    if hours <= 0:
        raise ImportFileError(f"{hours} must be more than 0", row=row.number, field="hours")
    if hours > MAX_HOURS:
        raise ImportFileError(
            f"{hours} is more than the {MAX_HOURS} hours of a day", row=row.number, field="hours"
        )
    return TimeEntryData(
        row=row.number,
        worker=row.text("worker", required=True),
        work_date=row.date("date", required=True),
        hours=hours,
        customer=row.text("customer", required=True),
        contract=row.text("contract"),
        product=row.text("product"),
        service_code=row.text("service"),
        description=row.text("description"),
        reference=row.text("reference"),
        approved=row.flag("approved"),
    )


def _service_report(row: Row) -> ServiceReportData:
    quantity = row.decimal("quantity")
    if quantity is None:
        quantity = Decimal(1)
    if quantity <= 0:
        raise ImportFileError(f"{quantity} must be more than 0", row=row.number, field="quantity")
    return ServiceReportData(
        row=row.number,
        service_date=row.date("date", required=True),
        quantity=quantity,
        product=row.text("product", required=True),
        customer=row.text("customer", required=True),
        contract=row.text("contract"),
        reference=row.text("reference"),
        description=row.text("description"),
        performed_by=row.text("performed_by"),
        approved=row.flag("approved"),
    )
