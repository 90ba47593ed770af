"""Purchase orders from outside: CSV and XLSX tables and UBL 2.1 Order documents, read into
plain values (no database). A bad file is refused whole, with the row or element at fault.

Table layout, one row per PO line (the PO's own columns repeat on each of its lines and must
agree; a PO with only a ceiling has one row without line columns):

    po_number, customer, currency, issue_date, valid_from, valid_to, ceiling, contract,
    buyer_reference, line, product, description, quantity, unit_price, unit

`customer` is the customer's id or external id; `product` a product code or id; `ceiling` the
PO's most in its currency, net of tax; `line` the buyer's line number (default: 1, 2, ...).
Dates are YYYY-MM-DD, decimals use a point.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation
from typing import Any

from lxml import etree

from tallybook.formats.import_tables import ImportFileError, Row, detect_format, read_table

COLUMNS = (
    "po_number",
    "customer",
    "currency",
    "issue_date",
    "valid_from",
    "valid_to",
    "ceiling",
    "contract",
    "buyer_reference",
    "line",
    "product",
    "description",
    "quantity",
    "unit_price",
    "unit",
)
ALIASES = {
    "purchase_order": "po_number",
    "po": "po_number",
    "order_number": "po_number",
    "customer_id": "customer",
    "external_id": "customer",
    "product_code": "product",
    "price": "unit_price",
    "qty": "quantity",
    "line_number": "line",
    "unit_code": "unit",
}
HEADER_COLUMNS = (
    "customer",
    "currency",
    "issue_date",
    "valid_from",
    "valid_to",
    "ceiling",
    "contract",
    "buyer_reference",
)

UBL_ORDER_NS = "urn:oasis:names:specification:ubl:schema:xsd:Order-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
NS = {"o": UBL_ORDER_NS, "cac": CAC, "cbc": CBC}


@dataclass(frozen=True)
class BuyerParty:
    """How a UBL Order names the buyer: matched against customers by the service."""

    name: str | None = None
    endpoint_id: str | None = None
    endpoint_scheme: str | None = None
    party_ids: tuple[str, ...] = ()
    tax_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class PurchaseOrderLineData:
    position: int
    product: str | None
    description: str | None
    quantity: Decimal
    unit_price: Decimal
    unit_code: str | None = None
    where: str = ""


@dataclass(frozen=True)
class PurchaseOrderData:
    number: str
    currency: str | None
    customer: str | None = None
    buyer: BuyerParty | None = None
    issue_date: date | None = None
    valid_from: date | None = None
    valid_to: date | None = None
    ceiling: Decimal | None = None
    contract: str | None = None
    buyer_reference: str | None = None
    notes: str | None = None
    lines: tuple[PurchaseOrderLineData, ...] = field(default_factory=tuple)
    where: str = ""


def read_purchase_orders(
    data: bytes, *, format: str | None = None, file_name: str | None = None
) -> tuple[str, list[PurchaseOrderData]]:
    """The format read (csv, xlsx or ubl) and the purchase orders in the file."""
    format = (format or _detect(data, file_name)).lower()
    if format == "ubl":
        return "ubl", [read_ubl_order(data)]
    if format not in ("csv", "xlsx"):
        raise ImportFileError(f"format: {format!r} is not one of csv, xlsx, ubl")
    return format, read_table_orders(data, format=format, file_name=file_name)


def _detect(data: bytes, file_name: str | None) -> str:
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return "ubl"
    return detect_format(data, file_name)


# -- CSV / XLSX -------------------------------------------------------------------------------


def read_table_orders(
    data: bytes, *, format: str | None = None, file_name: str | None = None
) -> list[PurchaseOrderData]:
    rows = read_table(data, format=format, columns=COLUMNS, aliases=ALIASES, file_name=file_name)
    grouped: dict[tuple[str, str | None], list[Row]] = {}
    for row in rows:
        number = row.text("po_number", required=True)
        grouped.setdefault((number, row.text("customer")), []).append(row)
    orders = []
    for (number, _customer), group in grouped.items():
        first = group[0]
        header = {name: _header_value(first, name) for name in HEADER_COLUMNS}
        for row in group[1:]:
            for name in HEADER_COLUMNS:
                value = _header_value(row, name)
                if value is not None and value != header[name]:
                    raise ImportFileError(
                        f"{row.text(name)!r} differs from row {first.number}'s "
                        f"{first.text(name)!r} for purchase order {number}; a PO's columns must "
                        "agree on all its lines",
                        row=row.number,
                        field=name,
                    )
        lines = []
        positions: set[int] = set()
        for index, row in enumerate(group, start=1):
            line = _table_line(row, index)
            if line is None:
                if len(group) > 1:
                    raise ImportFileError(
                        "quantity and unit_price are required on every line of a PO with "
                        "several rows",
                        row=row.number,
                        field="quantity",
                    )
                continue
            if line.position in positions:
                raise ImportFileError(
                    f"line {line.position} appears twice in purchase order {number}",
                    row=row.number,
                    field="line",
                )
            positions.add(line.position)
            lines.append(line)
        orders.append(
            PurchaseOrderData(
                number=number,
                customer=first.text("customer"),
                currency=_currency(first.text("currency"), f"row {first.number}, currency"),
                issue_date=first.date("issue_date"),
                valid_from=first.date("valid_from"),
                valid_to=first.date("valid_to"),
                ceiling=first.decimal("ceiling"),
                contract=first.text("contract"),
                buyer_reference=first.text("buyer_reference"),
                lines=tuple(lines),
                where=f"row {first.number}",
            )
        )
    return orders


def _header_value(row: Row, name: str) -> Any:
    """A PO column's value as compared across its rows: 'eur' is 'EUR', '100' is '100.00'."""
    if name == "ceiling":
        return row.decimal(name)
    if name in ("issue_date", "valid_from", "valid_to"):
        return row.date(name)
    value = row.text(name)
    return value.upper() if name == "currency" and value else value


def _table_line(row: Row, index: int) -> PurchaseOrderLineData | None:
    quantity = row.decimal("quantity")
    unit_price = row.decimal("unit_price")
    product = row.text("product")
    description = row.text("description")
    if quantity is None and unit_price is None and product is None and description is None:
        return None
    if quantity is None:
        raise ImportFileError("is required", row=row.number, field="quantity")
    if unit_price is None:
        raise ImportFileError("is required", row=row.number, field="unit_price")
    if product is None and description is None:
        raise ImportFileError(
            "give a product code or a description", row=row.number, field="product"
        )
    position = index
    if row.text("line") is not None:
        number = row.decimal("line")
        if number is None or number != number.to_integral_value() or number < 1:
            raise ImportFileError(
                f"{row.text('line')!r} is not a positive whole number", row=row.number, field="line"
            )
        position = int(number)
    return PurchaseOrderLineData(
        position=position,
        product=product,
        description=description,
        quantity=quantity,
        unit_price=unit_price,
        unit_code=row.text("unit"),
        where=f"row {row.number}",
    )


def _currency(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    code = value.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ImportFileError(f"{where}: {value!r} is not an ISO 4217 currency code")
    return code


# -- UBL 2.1 Order ----------------------------------------------------------------------------


def read_ubl_order(data: bytes) -> PurchaseOrderData:
    """A UBL 2.1 Order (as Peppol BIS Ordering 3 sends it) as a purchase order.

    Read defensively, without the Order schema: the elements used are looked up by name and
    each one missing or malformed is reported by its path. The order's value is its
    AnticipatedMonetaryTotal net of tax (TaxExclusiveAmount, else LineExtensionAmount).
    """
    root = _parse(data)
    qname = etree.QName(root)
    if qname.localname != "Order" or qname.namespace != UBL_ORDER_NS:
        raise ImportFileError(
            f"the document is <{qname.localname}> ({qname.namespace or 'no namespace'}), not "
            f"a UBL 2.1 Order ({UBL_ORDER_NS})",
            field="/" + qname.localname,
        )
    number = _required_text(root, "cbc:ID", "/Order/cbc:ID")
    currency = _currency(_text(root, "cbc:DocumentCurrencyCode"), "/Order/cbc:DocumentCurrencyCode")
    issue_date = _date(root, "cbc:IssueDate", "/Order/cbc:IssueDate", required=True)
    valid_from = _date(
        root, "cac:ValidityPeriod/cbc:StartDate", "/Order/cac:ValidityPeriod/cbc:StartDate"
    )
    valid_to = _date(
        root, "cac:ValidityPeriod/cbc:EndDate", "/Order/cac:ValidityPeriod/cbc:EndDate"
    )
    total = root.find("cac:AnticipatedMonetaryTotal", NS)
    ceiling = None
    if total is not None:
        for name in ("TaxExclusiveAmount", "LineExtensionAmount"):
            element = total.find(f"cbc:{name}", NS)
            if element is not None:
                path = f"/Order/cac:AnticipatedMonetaryTotal/cbc:{name}"
                ceiling = _amount(element, path)
                currency = _same_currency(element, currency, path)
                break
    notes = "\n".join(
        t.strip() for t in (n.text for n in root.findall("cbc:Note", NS)) if t and t.strip()
    )
    lines = []
    positions: set[str] = set()
    for index, order_line in enumerate(root.findall("cac:OrderLine", NS), start=1):
        path = f"/Order/cac:OrderLine[{index}]/cac:LineItem"
        item = order_line.find("cac:LineItem", NS)
        if item is None:
            raise ImportFileError("is missing", field=path)
        line_id = _required_text(item, "cbc:ID", f"{path}/cbc:ID")
        if line_id in positions:
            raise ImportFileError(f"line {line_id!r} appears twice", field=f"{path}/cbc:ID")
        positions.add(line_id)
        quantity_element = item.find("cbc:Quantity", NS)
        if quantity_element is None:
            raise ImportFileError("is missing", field=f"{path}/cbc:Quantity")
        quantity = _decimal_text(quantity_element.text, f"{path}/cbc:Quantity")
        price_element = item.find("cac:Price/cbc:PriceAmount", NS)
        price_path = f"{path}/cac:Price/cbc:PriceAmount"
        if price_element is None:
            # Peppol allows a line without a price; then the line amount over the quantity is it.
            amount_element = item.find("cbc:LineExtensionAmount", NS)
            if amount_element is None or quantity == 0:
                raise ImportFileError("is missing (and no LineExtensionAmount)", field=price_path)
            unit_price = _exact_quotient(
                _amount(amount_element, f"{path}/cbc:LineExtensionAmount"), quantity, price_path
            )
            currency = _same_currency(amount_element, currency, f"{path}/cbc:LineExtensionAmount")
        else:
            unit_price = _amount(price_element, price_path)
            currency = _same_currency(price_element, currency, price_path)
            base = item.find("cac:Price/cbc:BaseQuantity", NS)
            if base is not None:
                base_quantity = _decimal_text(base.text, f"{path}/cac:Price/cbc:BaseQuantity")
                if base_quantity <= 0:
                    raise ImportFileError(
                        "must be more than 0", field=f"{path}/cac:Price/cbc:BaseQuantity"
                    )
                unit_price = _exact_quotient(unit_price, base_quantity, price_path)
        # Only the seller's item id is our product code; the buyer's and standard ids are not.
        product = _text(item, "cac:Item/cac:SellersItemIdentification/cbc:ID")
        description = _text(item, "cac:Item/cbc:Name") or _text(item, "cac:Item/cbc:Description")
        if product is None and description is None:
            raise ImportFileError(
                "has neither an item identification nor a name", field=f"{path}/cac:Item"
            )
        lines.append(
            PurchaseOrderLineData(
                position=index,
                product=product,
                description=description,
                quantity=quantity,
                unit_price=unit_price,
                unit_code=quantity_element.get("unitCode"),
                where=path,
            )
        )
    if _numbered(positions):
        # The buyer's own line numbers ('10', '20') when they are all numbers.
        numbers = [int(line_id) for line_id in _ids_in_order(root)]
        lines = [replace(line, position=n) for line, n in zip(lines, numbers, strict=True)]
    if not lines and ceiling is None:
        raise ImportFileError("the order has no OrderLine and no AnticipatedMonetaryTotal")
    if currency is None:
        raise ImportFileError("is missing", field="/Order/cbc:DocumentCurrencyCode")
    return PurchaseOrderData(
        number=number,
        currency=currency,
        buyer=_buyer(root),
        issue_date=issue_date,
        valid_from=valid_from or issue_date,
        valid_to=valid_to,
        ceiling=ceiling,
        contract=_text(root, "cac:Contract/cbc:ID"),
        buyer_reference=_text(root, "cbc:CustomerReference") or _text(root, "cbc:BuyerReference"),
        notes=notes or None,
        lines=tuple(lines),
        where="/Order",
    )


def _parse(data: bytes) -> Any:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as error:
        raise ImportFileError(
            f"the document is not well-formed XML ({error.msg})", row=error.lineno or None
        ) from None
    if root is None:
        raise ImportFileError("the document is empty")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        # UBL never needs a DTD; a declared one is how entity attacks arrive.
        raise ImportFileError("the document declares a DTD; UBL documents never do")
    return root


def _buyer(root: Any) -> BuyerParty:
    party = root.find("cac:BuyerCustomerParty/cac:Party", NS)
    if party is None:
        raise ImportFileError("is missing", field="/Order/cac:BuyerCustomerParty/cac:Party")
    endpoint = party.find("cbc:EndpointID", NS)
    return BuyerParty(
        name=_text(party, "cac:PartyLegalEntity/cbc:RegistrationName")
        or _text(party, "cac:PartyName/cbc:Name"),
        endpoint_id=(endpoint.text or "").strip() or None if endpoint is not None else None,
        endpoint_scheme=endpoint.get("schemeID") if endpoint is not None else None,
        party_ids=tuple(
            e.text.strip()
            for e in party.findall("cac:PartyIdentification/cbc:ID", NS)
            if e.text and e.text.strip()
        ),
        tax_ids=tuple(
            e.text.strip()
            for e in party.findall("cac:PartyTaxScheme/cbc:CompanyID", NS)
            + party.findall("cac:PartyLegalEntity/cbc:CompanyID", NS)
            if e.text and e.text.strip()
        ),
    )


def _text(element: Any, path: str) -> str | None:
    found = element.find(path, NS)
    if found is None or found.text is None or not found.text.strip():
        return None
    return found.text.strip()


def _first_text(element: Any, paths: tuple[str, ...]) -> str | None:
    for path in paths:
        value = _text(element, path)
        if value is not None:
            return value
    return None


def _required_text(element: Any, path: str, where: str) -> str:
    value = _text(element, path)
    if value is None:
        raise ImportFileError("is missing or empty", field=where)
    return value


def _date(element: Any, path: str, where: str, *, required: bool = False) -> date | None:
    value = _required_text(element, path, where) if required else _text(element, path)
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ImportFileError(f"{value!r} is not a date (YYYY-MM-DD)", field=where) from None


def _decimal_text(text: str | None, where: str) -> Decimal:
    value = (text or "").strip()
    if not value:
        raise ImportFileError("is empty", field=where)
    try:
        result = Decimal(value)
    except InvalidOperation:
        raise ImportFileError(f"{value!r} is not a number", field=where) from None
    if not result.is_finite():
        raise ImportFileError(f"{value!r} is not a finite number", field=where)
    return result


def _amount(element: Any, where: str) -> Decimal:
    return _decimal_text(element.text, where)


def _same_currency(element: Any, currency: str | None, where: str) -> str | None:
    code = element.get("currencyID")
    if code is None:
        return currency
    code = _currency(code, f"{where}/@currencyID")
    if currency is not None and code != currency:
        raise ImportFileError(
            f"currencyID {code} differs from the order's currency {currency}", field=where
        )
    return code


def _numbered(line_ids: set[str]) -> bool:
    return bool(line_ids) and all(i.isdigit() and 0 < int(i) < 2**31 for i in line_ids)


def _ids_in_order(root: Any) -> list[str]:
    return [(e.text or "").strip() for e in root.findall("cac:OrderLine/cac:LineItem/cbc:ID", NS)]


def _exact_quotient(amount: Decimal, divisor: Decimal, where: str) -> Decimal:
    """A unit price from an amount and a quantity, refused unless the division is exact."""
    context = Context(prec=34, traps=[Inexact, DivisionByZero, InvalidOperation])
    try:
        return context.divide(amount, divisor)
    except (Inexact, DivisionByZero, InvalidOperation):
        raise ImportFileError(
            f"{amount} / {divisor} is not an exact unit price; give the PriceAmount", field=where
        ) from None
