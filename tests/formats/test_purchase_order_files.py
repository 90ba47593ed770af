"""Reading purchase orders, time sheets and service reports from files: good files give exact
values, bad files one clear error naming the row or element and the field."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallybook.formats.import_tables import ImportFileError
from tallybook.formats.purchase_orders import read_purchase_orders, read_ubl_order
from tallybook.formats.time_sheets import read_service_reports, read_time_entries

SAMPLES = Path(__file__).resolve().parent / "samples" / "purchase_orders"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "reference" / "einvoice"

ORDER_HEAD = b"""<?xml version="1.0" encoding="UTF-8"?>
<Order xmlns="urn:oasis:names:specification:ubl:schema:xsd:Order-2"
 xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
 xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
"""
BUYER = b"""<cac:BuyerCustomerParty><cac:Party><cac:PartyIdentification><cbc:ID>K-1</cbc:ID>
</cac:PartyIdentification></cac:Party></cac:BuyerCustomerParty>
"""


def order(body: bytes, *, head: bytes = ORDER_HEAD, buyer: bytes = BUYER) -> bytes:
    return head + body + buyer + b"</Order>"


def line(line_id: str = "1", quantity: str = "3", price: bytes | None = None) -> bytes:
    price = (
        b'<cac:Price><cbc:PriceAmount currencyID="EUR">10.50</cbc:PriceAmount></cac:Price>'
        if price is None
        else price
    )
    return (
        b"<cac:OrderLine><cac:LineItem><cbc:ID>"
        + line_id.encode()
        + b'</cbc:ID><cbc:Quantity unitCode="EA">'
        + quantity.encode()
        + b"</cbc:Quantity>"
        + price
        + b"<cac:Item><cbc:Name>Widget</cbc:Name></cac:Item></cac:LineItem></cac:OrderLine>"
    )


MINIMAL = b"<cbc:ID>PO-1</cbc:ID><cbc:IssueDate>2026-02-01</cbc:IssueDate>" + (
    b"<cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>"
)


def test_the_consulting_order_sample() -> None:
    data = read_ubl_order((SAMPLES / "ubl-order-consulting.xml").read_bytes())
    assert (data.number, data.currency, data.issue_date) == (
        "PO-2026-0042",
        "EUR",
        date(2026, 1, 12),
    )
    assert (data.valid_from, data.valid_to, data.ceiling) == (
        date(2026, 1, 15),
        date(2026, 6, 30),
        Decimal("12900.00"),
    )
    assert data.buyer is not None and data.buyer.tax_ids == ("DE 136 695 976",)
    assert data.buyer.endpoint_id == "DE999999999" and data.buyer.endpoint_scheme == "9930"
    assert data.buyer_reference == "ACC-7781"
    assert [
        (x.position, x.product, x.description, x.quantity, x.unit_price, x.unit_code)
        for x in data.lines
    ] == [
        (10, "consulting", "Consulting hour", Decimal(120), Decimal("95.00"), "HUR"),
        (20, None, "On-site workshop day", Decimal(4), Decimal("375.00"), "DAY"),
    ]


def test_a_minimal_order_with_a_line_priced_by_its_amount() -> None:
    amount_only = b'<cbc:LineExtensionAmount currencyID="EUR">31.50</cbc:LineExtensionAmount>'
    data = read_ubl_order(order(MINIMAL + line(price=amount_only) + line("2", "1")))
    assert data.valid_from == date(2026, 2, 1) and data.ceiling is None
    assert [(x.position, x.unit_price) for x in data.lines] == [
        (1, Decimal("10.5")),
        (2, Decimal("10.50")),
    ]


@pytest.mark.parametrize(
    ("document", "where"),
    [
        (b"<Order", "not well-formed XML"),
        (b"", "not well-formed XML"),
        (
            order(MINIMAL.replace(b"<cbc:ID>PO-1</cbc:ID>", b"") + line()),
            "/Order/cbc:ID: is missing",
        ),
        (
            order(MINIMAL.replace(b"2026-02-01", b"01.02.2026") + line()),
            "/Order/cbc:IssueDate: '01.02.2026'",
        ),
        (
            order(MINIMAL + line(quantity="three")),
            "/Order/cac:OrderLine[1]/cac:LineItem/cbc:Quantity: 'three'",
        ),
        (
            order(MINIMAL + line(price=b"")),
            "cac:OrderLine[1]/cac:LineItem/cac:Price/cbc:PriceAmount: is missing",
        ),
        (
            order(
                MINIMAL
                + line(
                    price=b'<cac:Price><cbc:PriceAmount currencyID="USD">1</cbc:PriceAmount>'
                    b"</cac:Price>"
                )
            ),
            "currencyID USD differs from the order's currency EUR",
        ),
        (
            order(
                MINIMAL
                + line(
                    quantity="3",
                    price=b'<cbc:LineExtensionAmount currencyID="EUR">10</cbc:LineExtensionAmount>',
                )
            ),
            "is not an exact unit price",
        ),
        (order(MINIMAL + line() + line()), "line '1' appears twice"),
        (order(MINIMAL), "no OrderLine and no AnticipatedMonetaryTotal"),
        (order(MINIMAL + line(), buyer=b""), "/Order/cac:BuyerCustomerParty/cac:Party: is missing"),
        (
            order(MINIMAL + line(), head=ORDER_HEAD.replace(b"Order-2", b"Invoice-2")),
            "not a UBL 2.1 Order",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE Order [<!ENTITY x "xxxxxxxx">]>'
            + order(MINIMAL + line(), head=ORDER_HEAD.split(b"?>", 1)[1]),
            "declares a DTD",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE Order [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            + order(
                MINIMAL.replace(b"PO-1", b"&xxe;") + line(), head=ORDER_HEAD.split(b"?>", 1)[1]
            ),
            "DTD",
        ),
    ],
)
def test_bad_orders_say_where(document: bytes, where: str) -> None:
    with pytest.raises(ImportFileError) as error:
        read_ubl_order(document)
    assert where in str(error.value)


def test_the_shared_sales_order_example_is_an_invoice() -> None:
    example = SHARED / "peppol-bis-3" / "examples" / "sales-order-example.xml"
    if not example.exists():
        pytest.skip(f"{example} is not there")
    with pytest.raises(
        ImportFileError, match=r"is <Invoice> \(urn:oasis.*Invoice-2\), not a UBL 2.1 Order"
    ):
        read_purchase_orders(example.read_bytes())


CSV = b"""po_number;customer;currency;valid_from;ceiling;line;product;description;qty;unit_price
A-1;K-1;eur;2026-01-01;100.00;1;seat;;2;10.00
A-1;K-1;EUR;2026-01-01;100.00;2;;Setup;1;0.0005
"""


def test_csv_with_semicolons_and_a_bom() -> None:
    kind, [data] = read_purchase_orders(b"\xef\xbb\xbf" + CSV)
    assert kind == "csv"
    assert (data.number, data.customer, data.currency, data.ceiling) == (
        "A-1",
        "K-1",
        "EUR",
        Decimal("100.00"),
    )
    assert [(x.product, x.description, x.unit_price) for x in data.lines] == [
        ("seat", None, Decimal("10.00")),
        (None, "Setup", Decimal("0.0005")),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (CSV.replace(b"unit_price", b"price_each"), "row 1: unknown column 'price_each'"),
        (CSV.replace(b";2;10.00", b";;10.00"), "row 2, quantity: is required"),
        (
            CSV.replace(b";2;10.00", b";2;10,00"),
            "row 2, unit_price: '10,00': write decimals with a point",
        ),
        (CSV.replace(b";1;0.0005", b";1;abc"), "row 3, unit_price: 'abc' is not a number"),
        (CSV.replace(b"100.00;2", b"200.00;2"), "row 3, ceiling: '200.00' differs from row 2"),
        (CSV.replace(b"100.00;2", b"100;2"), "no error: 100 is 100.00"),
        (CSV.replace(b";2;;Setup", b";1;;Setup"), "row 3, line: line 1 appears twice"),
        (CSV.replace(b"2026-01-01;100.00;1", b"2026-13-01;100.00;1"), "row 2, valid_from"),
        (CSV.split(b"\n")[0] + b"\n", "the file has a header but no rows"),
        ("po_number\nA-\u00e9\n".encode("latin-1"), "not UTF-8"),
        (b"PK\x03\x04garbage", "not an XLSX workbook"),
        (CSV.replace(b"po_number;", b"po_number;po;"), "column 'po_number' appears twice"),
    ],
)
def test_bad_tables_say_which_row_and_column(data: bytes, message: str) -> None:
    if message.startswith("no error"):
        read_purchase_orders(data)
        return
    with pytest.raises(ImportFileError) as error:
        read_purchase_orders(data)
    assert message in str(error.value)


decimals = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("99999"), places=4)


@given(
    lines=st.lists(st.tuples(decimals, decimals), min_size=1, max_size=6),
    ceiling=st.one_of(st.none(), st.decimals(min_value=0, max_value=10**9, places=2)),
)
def test_a_csv_po_reads_back_exactly(
    lines: list[tuple[Decimal, Decimal]], ceiling: Decimal | None
) -> None:
    """Whatever exact decimals a PO holds, its CSV reads back to the same values."""
    rows = ["po_number,customer,currency,ceiling,description,quantity,unit_price"]
    for index, (quantity, price) in enumerate(lines):
        rows.append(
            f"P-1,K-1,EUR,{'' if ceiling is None else ceiling},Line {index},{quantity},{price}"
        )
    _, [data] = read_purchase_orders("\n".join(rows).encode())
    assert data.ceiling == ceiling
    assert [(x.quantity, x.unit_price) for x in data.lines] == lines
    assert [x.position for x in data.lines] == list(range(1, len(lines) + 1))


def test_an_xlsx_po_reads_exact_values_and_real_dates() -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(
        [
            "PO number",
            "Customer",
            "Currency",
            "Valid from",
            "Ceiling",
            "Description",
            "Qty",
            "Price",
        ]
    )
    sheet.append(["X-1", "K-1", "EUR", date(2026, 5, 1), 1000, "Hours", 12.5, "95.005"])
    sheet.append([None, None, None, None, None, None, None, None])  # blank rows are skipped
    buffer = io.BytesIO()
    book.save(buffer)
    kind, [data] = read_purchase_orders(buffer.getvalue(), file_name="po.xlsx")
    assert kind == "xlsx"
    assert (data.valid_from, data.ceiling) == (date(2026, 5, 1), Decimal(1000))
    assert [(x.quantity, x.unit_price) for x in data.lines] == [
        (Decimal("12.5"), Decimal("95.005"))
    ]


def test_time_sheet_and_service_report_tables() -> None:
    [entry] = read_time_entries(
        b"Employee,Work date,Hours,Customer ID,Contract reference,Service code,Status\n"
        b"Ana,2026-01-05,0.25,cus_1,SOW-1,ON-CALL,approved\n"
    )
    assert (entry.worker, entry.hours, entry.contract, entry.service_code, entry.approved) == (
        "Ana",
        Decimal("0.25"),
        "SOW-1",
        "ON-CALL",
        True,
    )
    [report] = read_service_reports(b"date,product,customer\n2026-01-05,repair,K-1\n")
    assert (report.quantity, report.approved, report.contract) == (Decimal(1), False, None)
    for data, message in (
        (
            b"worker,date,hours,customer\nAna,2026-01-05,-1,K-1\n",
            "row 2, hours: -1 must be more than 0",
        ),
        (b"worker,date,hours,customer\n,2026-01-05,1,K-1\n", "row 2, worker: is required"),
        (b"worker,date,hours\nAna,2026-01-05,1\n", "row 2, customer: is required"),
    ):
        with pytest.raises(ImportFileError) as error:
            read_time_entries(data)
        assert message in str(error.value)
    with pytest.raises(ImportFileError, match="row 2, product: is required"):
        read_service_reports(b"date,product,customer\n2026-01-05,,K-1\n")
