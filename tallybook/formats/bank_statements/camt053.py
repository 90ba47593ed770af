"""ISO 20022 camt.053 (bank-to-customer statement), versions 001.02 to 001.13.

No maintained, permissively licensed camt reader keeps amounts exact (the ones on PyPI go through
float or pull in a web framework), so this one follows the message definition directly: one
`StatementLine` per transaction (`TxDtls`), so a batched entry that settles several payments at
once yields each payment with its own payer and remittance information.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from lxml import etree

from ._xml import local_name, parse_xml
from .model import (
    Statement,
    StatementError,
    StatementFormat,
    StatementLine,
    clean,
    compact_account,
    find_creditor_reference,
    finish_statement,
)

FORMAT = StatementFormat.CAMT053
NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:camt.053.001."
_AMOUNT = re.compile(r"\d{1,18}(?:\.\d{1,5})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
# Banks write "NOTPROVIDED" when the payer gave no end-to-end id: it identifies nothing.
_NO_REFERENCE = {"NOTPROVIDED", "NONREF", "NONE"}


class _Reader:
    """Namespace-aware look-ups that report the element and line when something is missing."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    def path(self, path: str) -> str:
        return "/".join(f"{{{self.ns}}}{step}" for step in path.split("/"))

    def find(self, element: etree._Element, path: str) -> etree._Element | None:
        return element.find(self.path(path))

    def findall(self, element: etree._Element, path: str) -> list[etree._Element]:
        return list(element.iterfind(self.path(path)))

    def text(self, element: etree._Element | None, path: str) -> str | None:
        if element is None:
            return None
        found = self.find(element, path)
        if found is None or found.text is None:
            return None
        return found.text.strip() or None

    def require(self, element: etree._Element, path: str, what: str) -> etree._Element:
        found = self.find(element, path)
        if found is None:
            raise StatementError(
                f"{what} is missing (no <{path}> in <{local_name(element)}>)",
                format=FORMAT,
                line=element.sourceline,
                element=f"<{local_name(element)}>",
            )
        return found

    def require_text(self, element: etree._Element, path: str, what: str) -> str:
        value = self.text(element, path)
        if value is None:
            found = self.find(element, path)
            raise StatementError(
                f"{what} is missing (no <{path}> in <{local_name(element)}>)",
                format=FORMAT,
                line=(found if found is not None else element).sourceline,
                element=f"<{local_name(element)}>",
            )
        return value

    def amount(self, owner: etree._Element, what: str) -> tuple[Decimal, str]:
        """The `Amt` of `owner` with the sign its `CdtDbtInd` gives, and its currency."""
        amount_element = self.require(owner, "Amt", what)
        return self.signed_amount(owner, amount_element, what, self.text(owner, "CdtDbtInd"))

    def signed_amount(
        self,
        owner: etree._Element,
        amount_element: etree._Element,
        what: str,
        indicator: str | None,
    ) -> tuple[Decimal, str]:
        text = (amount_element.text or "").strip()
        if not _AMOUNT.fullmatch(text):
            raise StatementError(
                f"the {what} {text!r} is not an amount (expected digits with a decimal point, "
                "such as 1250.00)",
                format=FORMAT,
                line=amount_element.sourceline,
                element=f"<{local_name(amount_element)}>",
            )
        currency = (amount_element.get("Ccy") or "").strip()
        if not _CURRENCY.fullmatch(currency):
            raise StatementError(
                f"the {what} has no valid currency (Ccy attribute {currency!r})",
                format=FORMAT,
                line=amount_element.sourceline,
                element=f"<{local_name(amount_element)}>",
            )
        if indicator not in ("CRDT", "DBIT"):
            raise StatementError(
                f"the {what} does not say whether it is money in or out "
                f"(<CdtDbtInd> is {indicator!r}, expected CRDT or DBIT)",
                format=FORMAT,
                line=owner.sourceline,
                element=f"<{local_name(owner)}>",
            )
        amount = Decimal(text)
        return (amount if indicator == "CRDT" else -amount), currency

    def date(self, owner: etree._Element, path: str, what: str) -> date | None:
        """A `Dt` or `DtTm` under `path`; the date part is the bank's own calendar day."""
        holder = self.find(owner, path)
        if holder is None:
            return None
        value = self.text(holder, "Dt") or self.text(holder, "DtTm")
        if value is None:
            raise StatementError(
                f"the {what} has neither <Dt> nor <DtTm>",
                format=FORMAT,
                line=holder.sourceline,
                element=f"<{path}>",
            )
        return _to_date(value, holder, what)


def _to_date(value: str, element: etree._Element, what: str) -> date:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise StatementError(
            f"the {what} {value!r} is not a date (expected YYYY-MM-DD)",
            format=FORMAT,
            line=element.sourceline,
            element=f"<{local_name(element)}>",
        ) from None


def parse_camt053(data: bytes) -> tuple[Statement, ...]:
    root = parse_xml(data, format=FORMAT)
    namespace = etree.QName(root).namespace or ""
    if not namespace.startswith(NAMESPACE_PREFIX):
        message = "urn:iso:std:iso:20022:tech:xsd:camt."
        if namespace.startswith(message):
            kind = namespace.removeprefix(message).split(".")[0]
            reason = f"this is a camt.{kind} message, not a camt.053 account statement"
        else:
            reason = f"the XML is not a camt.053 statement (namespace {namespace or 'none'!r})"
        raise StatementError(reason, format=FORMAT, line=root.sourceline)
    reader = _Reader(namespace)
    report = reader.require(root, "BkToCstmrStmt", "the statement message")
    statements = reader.findall(report, "Stmt")
    if not statements:
        raise StatementError(
            "the file holds no statement (<Stmt>)",
            format=FORMAT,
            line=report.sourceline,
            element="<BkToCstmrStmt>",
        )
    # Text holding a separator of the flattened form could shift its fields: read it slowly.
    separators = ("\u241c", "\u241d", "\u241e", "\u241f")
    quick = not any(mark.encode() in data for mark in separators)
    flattened = _flatten(root, namespace) if quick else None
    if flattened is not None and len(flattened) != len(statements):
        flattened = None
    return tuple(
        _statement(reader, element, flattened[index] if flattened is not None else None)
        for index, element in enumerate(statements)
    )


def _statement(
    reader: _Reader, element: etree._Element, flattened: list[list[str]] | None = None
) -> Statement:
    statement_id = reader.require_text(element, "Id", "the statement id")
    account_element = reader.require(element, "Acct", "the account")
    account = compact_account(
        reader.text(account_element, "Id/IBAN") or reader.text(account_element, "Id/Othr/Id")
    )
    if account is None:
        raise StatementError(
            "the account has neither an IBAN nor another account number",
            format=FORMAT,
            line=account_element.sourceline,
            element="<Acct>",
        )

    opening = closing = None
    opening_date = closing_date = None
    balance_currency = None
    for balance in reader.findall(element, "Bal"):
        code = reader.text(balance, "Tp/CdOrPrtry/Cd") or reader.text(balance, "Tp/CdOrPrtry/Prtry")
        amount, currency = reader.amount(balance, f"{code or 'balance'} balance")
        balance_currency = balance_currency or currency
        when = reader.date(balance, "Dt", f"{code} balance date")
        # OPBD is the opening booked balance; PRCD (previous closing) stands in for it when a
        # bank sends that instead.
        if code == "OPBD" or (code == "PRCD" and opening is None):
            opening, opening_date = amount, when
        elif code == "CLBD":
            closing, closing_date = amount, when

    currency = reader.text(account_element, "Ccy") or balance_currency
    lines: list[StatementLine] = []
    entries = reader.findall(element, "Ntry")
    if flattened is not None and len(flattened) != len(entries):
        flattened = None
    for number, entry in enumerate(entries, start=1):
        quick = _quick_entry_lines(flattened[number - 1]) if flattened is not None else None
        lines.extend(quick if quick is not None else _entry_lines(reader, entry, number))
    if currency is None:
        currency = lines[0].currency if lines else None
    if currency is None:
        raise StatementError(
            "the statement names no currency (no <Acct><Ccy>, balance or entry)",
            format=FORMAT,
            line=element.sourceline,
            element=f"statement {statement_id}",
        )

    created = reader.text(element, "CreDtTm")
    period_end = reader.text(element, "FrToDt/ToDtTm")
    statement_date = closing_date
    if statement_date is None and period_end:
        statement_date = _to_date(period_end, element, "statement period end")
    if statement_date is None and created:
        statement_date = _to_date(created, element, "statement creation date")

    statement = Statement(
        format=FORMAT,
        account=account,
        currency=currency,
        statement_id=statement_id,
        statement_number=reader.text(element, "ElctrncSeqNb") or reader.text(element, "LglSeqNb"),
        statement_date=statement_date,
        opening_balance=opening,
        opening_date=opening_date,
        closing_balance=closing,
        closing_date=closing_date,
        lines=tuple(lines),
    )
    return finish_statement(statement, check_balances=True)


def _status(reader: _Reader, entry: etree._Element) -> str | None:
    # Version 02 writes <Sts>BOOK</Sts>; from version 06 on it is <Sts><Cd>BOOK</Cd></Sts>.
    return (
        reader.text(entry, "Sts/Cd") or reader.text(entry, "Sts/Prtry") or reader.text(entry, "Sts")
    )


def _entry_lines(reader: _Reader, entry: etree._Element, number: int) -> list[StatementLine]:
    where = f"entry {number}"
    status = _status(reader, entry)
    if status is not None and status != "BOOK":
        # Pending and information-only entries are not money on the account yet, and the
        # booked balances do not include them: applying them would post cash twice later.
        return []
    amount, currency = reader.amount(entry, f"amount of {where}")
    booking_date = reader.date(entry, "BookgDt", f"booking date of {where}")
    value_date = reader.date(entry, "ValDt", f"value date of {where}")
    if booking_date is None:
        booking_date = value_date
    if booking_date is None:
        raise StatementError(
            f"{where} has neither a booking date nor a value date",
            format=FORMAT,
            line=entry.sourceline,
            element="<Ntry>",
        )
    reversal = (reader.text(entry, "RvslInd") or "").lower() in ("true", "1")
    entry_reference = reader.text(entry, "AcctSvcrRef") or reader.text(entry, "NtryRef")
    code = _bank_transaction_code(reader, entry)
    entry_info = clean(reader.text(entry, "AddtlNtryInf"))
    details = reader.findall(entry, "NtryDtls/TxDtls")

    base = {
        "position": 0,
        "booking_date": booking_date,
        "value_date": value_date,
        "currency": currency,
        "transaction_code": code,
        "reversal": reversal,
    }
    if not details:
        return [
            StatementLine(
                amount=amount,
                remittance_text=entry_info or "",
                creditor_reference=find_creditor_reference(entry_info),
                bank_reference=entry_reference,
                **base,
            )
        ]

    indicator = reader.text(entry, "CdtDbtInd")
    split_amounts: list[Decimal] = []
    for detail in details:
        amount_element = reader.find(detail, "Amt")
        if amount_element is None:
            amount_element = reader.find(detail, "AmtDtls/TxAmt/Amt")
        if amount_element is None:
            break
        detail_amount, detail_currency = reader.signed_amount(
            detail,
            amount_element,
            f"amount of a transaction in {where}",
            reader.text(detail, "CdtDbtInd") or indicator,
        )
        if detail_currency != currency:
            break
        split_amounts.append(detail_amount)

    if len(details) == 1:
        # What reached the account is the entry amount (after any bank charges), so it wins.
        split_amounts = [amount]
    elif len(split_amounts) != len(details):
        # A batch without per-payment amounts in the account currency cannot be split
        # faithfully: keep it as one line so that no cent is invented.
        return [_merged_line(reader, details, amount, entry_reference, entry_info, base, where)]
    elif sum(split_amounts, Decimal(0)) != amount:
        raise StatementError(
            f"the {len(details)} payments of the batched {where} add up to "
            f"{sum(split_amounts, Decimal(0))} {currency} but the entry says {amount} {currency}",
            format=FORMAT,
            line=entry.sourceline,
            element="<Ntry>",
        )

    lines = []
    for detail, detail_amount in zip(details, split_amounts, strict=True):
        party = _counterparty(reader, detail, detail_amount)
        remittance = _remittance(reader, detail)
        text = remittance.text or clean(reader.text(detail, "AddtlTxInf")) or entry_info or ""
        end_to_end = reader.text(detail, "Refs/EndToEndId")
        lines.append(
            StatementLine(
                amount=detail_amount,
                payer_name=party[0],
                payer_account=party[1],
                remittance_text=text,
                creditor_reference=remittance.creditor_reference or find_creditor_reference(text),
                referred_documents=remittance.documents,
                bank_reference=reader.text(detail, "Refs/AcctSvcrRef") or entry_reference,
                end_to_end_id=None if end_to_end in _NO_REFERENCE else end_to_end,
                customer_reference=reader.text(detail, "Refs/InstrId"),
                **base,
            )
        )
    return lines


def _merged_line(
    reader: _Reader,
    details: list[etree._Element],
    amount: Decimal,
    entry_reference: str | None,
    entry_info: str | None,
    base: dict,
    where: str,
) -> StatementLine:
    parties = {_counterparty(reader, detail, amount) for detail in details}
    remittances = [_remittance(reader, detail) for detail in details]
    text = " / ".join(r.text for r in remittances if r.text) or entry_info or ""
    references = [r.creditor_reference for r in remittances if r.creditor_reference]
    name, account = parties.pop() if len(parties) == 1 else (None, None)
    return StatementLine(
        amount=amount,
        payer_name=name,
        payer_account=account,
        remittance_text=text,
        creditor_reference=references[0] if len(references) == 1 else None,
        referred_documents=tuple(doc for r in remittances for doc in r.documents),
        bank_reference=entry_reference,
        **base,
    )


def _bank_transaction_code(reader: _Reader, entry: etree._Element) -> str | None:
    domain = reader.text(entry, "BkTxCd/Domn/Cd")
    if domain:
        parts = [
            domain,
            reader.text(entry, "BkTxCd/Domn/Fmly/Cd"),
            reader.text(entry, "BkTxCd/Domn/Fmly/SubFmlyCd"),
        ]
        return "/".join(part for part in parts if part)
    return reader.text(entry, "BkTxCd/Prtry/Cd")


def _party_name(reader: _Reader, detail: etree._Element, role: str) -> str | None:
    # Version 02 has <Dbtr><Nm>; from version 08 on the party sits in <Dbtr><Pty><Nm>.
    return clean(
        reader.text(detail, f"RltdPties/{role}/Nm")
        or reader.text(detail, f"RltdPties/{role}/Pty/Nm")
        or reader.text(detail, f"RltdPties/Ultmt{role}/Nm")
        or reader.text(detail, f"RltdPties/Ultmt{role}/Pty/Nm")
    )


def _counterparty(
    reader: _Reader, detail: etree._Element, amount: Decimal
) -> tuple[str | None, str | None]:
    """Who paid us (the debtor) for money in; whom we paid (the creditor) for money out."""
    role = "Dbtr" if amount > 0 else "Cdtr"
    account = compact_account(
        reader.text(detail, f"RltdPties/{role}Acct/Id/IBAN")
        or reader.text(detail, f"RltdPties/{role}Acct/Id/Othr/Id")
    )
    return _party_name(reader, detail, role), account


class _Remittance:
    __slots__ = ("creditor_reference", "documents", "text")

    def __init__(self, text: str, creditor_reference: str | None, documents: tuple[str, ...]):
        self.text = text
        self.creditor_reference = creditor_reference
        self.documents = documents


def _remittance(reader: _Reader, detail: etree._Element) -> _Remittance:
    information = reader.find(detail, "RmtInf")
    if information is None:
        return _Remittance("", None, ())
    parts = [clean(element.text) for element in reader.findall(information, "Ustrd")]
    creditor_reference = None
    documents: list[str] = []
    for structured in reader.findall(information, "Strd"):
        reference = reader.text(structured, "CdtrRefInf/Ref")
        if reference and creditor_reference is None:
            creditor_reference = compact_account(reference)
        for document in reader.findall(structured, "RfrdDocInf"):
            number = clean(reader.text(document, "Nb"))
            if number:
                documents.append(number)
        parts.extend(clean(e.text) for e in reader.findall(structured, "AddtlRmtInf"))
    text = " ".join(part for part in parts if part)
    return _Remittance(text, creditor_reference, tuple(documents))


# -- the quick path --------------------------------------------------------------------------
#
# lxml's find() evaluates its path in Python: a 100,000-line statement spends most of its time
# there. So an XSLT stylesheet (libxslt, in C) first flattens every entry into text fields, and
# the common entry (booked, one transaction or none, everything well-formed) becomes its line
# from those. Anything else (a batch of several transactions, a missing or odd field, an
# error to report with its line number) goes through `_entry_lines`, the reader above, which
# stays the one definition of what an entry means; tests check that both agree.

_FIELD = "\u241f"  # SYMBOL FOR UNIT SEPARATOR: printable, so allowed in XML 1.0 text
_RECORD = "\u241e"  # SYMBOL FOR RECORD SEPARATOR: one entry
_STATEMENT = "\u241d"  # SYMBOL FOR GROUP SEPARATOR: one statement
_ENTRY_FIELDS = (
    "n:Sts/n:Cd",
    "n:Sts/n:Prtry",
    "n:Sts[not(*)]",
    "n:Amt",
    "n:Amt/@Ccy",
    "n:CdtDbtInd",
    "count(n:BookgDt)",
    "n:BookgDt/n:Dt",
    "n:BookgDt/n:DtTm",
    "count(n:ValDt)",
    "n:ValDt/n:Dt",
    "n:ValDt/n:DtTm",
    "n:RvslInd",
    "n:AcctSvcrRef",
    "n:NtryRef",
    "n:BkTxCd/n:Domn/n:Cd",
    "n:BkTxCd/n:Domn/n:Fmly/n:Cd",
    "n:BkTxCd/n:Domn/n:Fmly/n:SubFmlyCd",
    "n:BkTxCd/n:Prtry/n:Cd",
    "n:AddtlNtryInf",
    "count(n:NtryDtls/n:TxDtls)",
)
_DETAIL_FIELDS = (
    "count(n:Amt)",
    "n:Amt",
    "n:Amt/@Ccy",
    "n:AmtDtls/n:TxAmt/n:Amt",
    "n:AmtDtls/n:TxAmt/n:Amt/@Ccy",
    "n:CdtDbtInd",
    "count(n:AmtDtls/n:TxAmt/n:Amt)",
    "n:RltdPties/n:Dbtr/n:Nm",
    "n:RltdPties/n:Dbtr/n:Pty/n:Nm",
    "n:RltdPties/n:UltmtDbtr/n:Nm",
    "n:RltdPties/n:UltmtDbtr/n:Pty/n:Nm",
    "n:RltdPties/n:Cdtr/n:Nm",
    "n:RltdPties/n:Cdtr/n:Pty/n:Nm",
    "n:RltdPties/n:UltmtCdtr/n:Nm",
    "n:RltdPties/n:UltmtCdtr/n:Pty/n:Nm",
    "n:RltdPties/n:DbtrAcct/n:Id/n:IBAN",
    "n:RltdPties/n:DbtrAcct/n:Id/n:Othr/n:Id",
    "n:RltdPties/n:CdtrAcct/n:Id/n:IBAN",
    "n:RltdPties/n:CdtrAcct/n:Id/n:Othr/n:Id",
    "count(n:RmtInf)",
    "n:AddtlTxInf",
    "n:Refs/n:EndToEndId",
    "n:Refs/n:AcctSvcrRef",
    "n:Refs/n:InstrId",
)
# Lists (several Ustrd, references, documents) are joined with this inside one field.
_ITEM = "\u241c"
_LISTS = (
    "n:RmtInf/n:Ustrd",
    "n:RmtInf/n:Strd/n:CdtrRefInf/n:Ref",
    "n:RmtInf/n:Strd/n:RfrdDocInf/n:Nb",
    "n:RmtInf/n:Strd/n:AddtlRmtInf",
)
_STYLESHEETS: dict[str, etree.XSLT] = {}


def _stylesheet(namespace: str) -> etree.XSLT:
    found = _STYLESHEETS.get(namespace)
    if found is not None:
        return found

    def values(paths: tuple[str, ...]) -> str:
        return "".join(f'<xsl:value-of select="{path}"/>{_FIELD}' for path in paths)

    lists = "".join(
        f'<xsl:for-each select="{path}"><xsl:value-of select="."/>{_ITEM}</xsl:for-each>{_FIELD}'
        for path in _LISTS
    )
    text = (
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" '
        f'xmlns:n="{namespace}"><xsl:output method="text" encoding="UTF-8"/>'
        '<xsl:template match="/"><xsl:for-each select="/n:Document/n:BkToCstmrStmt/n:Stmt">'
        '<xsl:for-each select="n:Ntry">'
        f"{values(_ENTRY_FIELDS)}"
        '<xsl:for-each select="n:NtryDtls/n:TxDtls">'
        f"{values(_DETAIL_FIELDS)}{lists}"
        "</xsl:for-each>"
        f"{_RECORD}</xsl:for-each>{_STATEMENT}</xsl:for-each></xsl:template></xsl:stylesheet>"
    )
    compiled = etree.XSLT(etree.fromstring(text.encode()))
    _STYLESHEETS[namespace] = compiled
    return compiled


def _flatten(root: etree._Element, namespace: str) -> list[list[list[str]]] | None:
    """Per statement, per entry, the fields of `_ENTRY_FIELDS` then of each transaction; None
    when the document cannot be flattened (the reader then does all the work)."""
    try:
        text = str(_stylesheet(namespace)(root))
    except etree.XSLTError:
        return None
    statements = text.split(_STATEMENT)
    if statements and statements[-1] == "":
        statements.pop()
    flattened = []
    for statement in statements:
        records = statement.split(_RECORD)
        if records and records[-1] == "":
            records.pop()
        flattened.append([record.split(_FIELD) for record in records])
    return flattened


def _strip(value: str) -> str | None:
    return value.strip() or None


def _quick_amount(text: str, currency: str, indicator: str) -> Decimal | None:
    text = text.strip()
    if not _AMOUNT.fullmatch(text) or not _CURRENCY.fullmatch(currency.strip()):
        return None
    if indicator not in ("CRDT", "DBIT"):
        return None
    amount = Decimal(text)
    return amount if indicator == "CRDT" else -amount


def _quick_date(day: str, moment: str) -> date | None:
    value = _strip(day) or _strip(moment)
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _quick_entry_lines(record: list[str]) -> list[StatementLine] | None:
    """The entry's lines from its flattened fields, or None to let the reader decide."""
    entry_count = len(_ENTRY_FIELDS)
    detail_count = len(_DETAIL_FIELDS) + len(_LISTS)
    if len(record) < entry_count + 1 or record[-1] != "":
        return None
    entry, rest = record[:entry_count], record[entry_count:-1]
    details = int(entry[20] or 0)
    if details > 1 or len(rest) != details * detail_count:
        return None
    status = _strip(entry[0]) or _strip(entry[1]) or _strip(entry[2])
    if status is not None and status != "BOOK":
        return []
    indicator = (entry[5] or "").strip()
    amount = _quick_amount(entry[3], entry[4], indicator)
    if amount is None:
        return None
    currency = entry[4].strip()
    booking_date = _quick_date(entry[7], entry[8])
    value_date = _quick_date(entry[10], entry[11])
    if (entry[6] != "0" and booking_date is None) or (entry[9] != "0" and value_date is None):
        return None  # a date element without a readable date: the reader words the error
    booking_date = booking_date or value_date
    if booking_date is None:
        return None
    domain = _strip(entry[15])
    if domain:
        code = "/".join(part for part in (domain, _strip(entry[16]), _strip(entry[17])) if part)
    else:
        code = _strip(entry[18])
    entry_reference = _strip(entry[13]) or _strip(entry[14])
    entry_info = clean(entry[19])
    base = {
        "position": 0,
        "booking_date": booking_date,
        "value_date": value_date,
        "currency": currency,
        "transaction_code": code,
        "reversal": (_strip(entry[12]) or "").lower() in ("true", "1"),
    }
    if not details:
        return [
            StatementLine(
                amount=amount,
                remittance_text=entry_info or "",
                creditor_reference=find_creditor_reference(entry_info),
                bank_reference=entry_reference,
                **base,
            )
        ]
    detail = rest
    # The detail's own amount must be readable, as the reader insists, though the entry's wins.
    if detail[0] != "0":
        checked = _quick_amount(detail[1], detail[2], _strip(detail[5]) or indicator)
        detail_currency = detail[2]
    else:
        checked = _quick_amount(detail[3], detail[4], _strip(detail[5]) or indicator)
        detail_currency = detail[4]
    if checked is None and (detail[0] != "0" or detail[6] != "0"):
        return None  # an amount the reader would refuse, with its line number
    if checked is not None and detail_currency.strip() != currency:
        return None
    incoming = amount > 0
    names = detail[7:11] if incoming else detail[11:15]
    name = next((value for value in (clean(n) for n in names) if value), None)
    accounts = detail[15:17] if incoming else detail[17:19]
    account = compact_account(_strip(accounts[0]) or _strip(accounts[1]))
    has_remittance = detail[19] != "0"
    lists = [
        [item for item in field.split(_ITEM)[:-1]]
        for field in detail[len(_DETAIL_FIELDS) : len(_DETAIL_FIELDS) + len(_LISTS)]
    ]
    unstructured, references, documents, additional = lists
    if has_remittance:
        parts = [clean(part) for part in unstructured] + [clean(part) for part in additional]
        remittance_text = " ".join(part for part in parts if part)
        reference = next(
            (compact_account(r) for r in references if compact_account(r)), None
        )
        referred = tuple(number for number in (clean(d) for d in documents) if number)
    else:
        remittance_text, reference, referred = "", None, ()
    text = remittance_text or clean(detail[20]) or entry_info or ""
    end_to_end = _strip(detail[21])
    return [
        StatementLine(
            amount=amount,
            payer_name=name,
            payer_account=account,
            remittance_text=text,
            creditor_reference=reference or find_creditor_reference(text),
            referred_documents=referred,
            bank_reference=_strip(detail[22]) or entry_reference,
            end_to_end_id=None if end_to_end in _NO_REFERENCE else end_to_end,
            customer_reference=_strip(detail[23]),
            **base,
        )
    ]
