"""BAI2 cash management files (US), read with the `bai2` library (MIT, Ministry of Justice UK).

The library joins continuation records (88), reads availability, and checks every control total
and record count in the 49, 98 and 99 trailers. BAI2 amounts are whole minor units without a
decimal point ("125000" is 1,250.00 USD), so they become `Decimal`s by the currency's exponent.
Each account (03 record) becomes one `Statement`.
"""

from __future__ import annotations

import re
from decimal import Decimal

from bai2 import bai2 as bai2_reader
from bai2 import constants as bai2_constants
from bai2 import exceptions as bai2_exceptions

from tallybook.core.money import MoneyError, currency_exponent

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

FORMAT = StatementFormat.BAI2
_RECORD_NAMES = {
    "01": "file header (01)",
    "02": "group header (02)",
    "03": "account identifier (03)",
    "16": "transaction detail (16)",
    "49": "account trailer (49)",
    "88": "continuation (88)",
    "98": "group trailer (98)",
    "99": "file trailer (99)",
}
_SIGNED_NUMBER = re.compile(r"[+-]?\d*")
_INTEGRITY = re.compile(
    r"Invalid (?P<what>.+?) for (?P<level>\w+)\. "
    r"expected (?P<expected>-?\d+), found (?P<found>-?\d+)"
)
# US banks pass on the ACH addenda of a payment in the text: "ORIG CO NAME:ACME INC ENTRY
# DESC:PAYMENT ...". The originating company is the payer.
_ORIGINATOR = re.compile(
    r"ORIG(?:INATOR)? CO(?:MPANY)? NAME:\s*(?P<name>.+?)\s*"
    r"(?=\b(?:ORIG ID|CO ID|DESC DATE|ENTRY DESC|SEC|TRACE(?: NO)?|EED|IND ID|IND NAME)\s*:|$)"
)
_TRAILER_OF = {"Account": "49", "Group": "98", "Bai2File": "99"}
_LEVEL_WORDS = {"Account": "account", "Group": "group", "Bai2File": "file"}


def decode(data: bytes) -> str:
    try:
        return data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _numbered_records(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _precheck(records: list[tuple[int, str]]) -> None:
    """Catch, with a line number, what the library would only report as a bare exception."""
    for number, record in records:
        code = record[:2]
        if code not in _RECORD_NAMES or record[2:3] != ",":
            raise StatementError(
                f"{record[:20]!r} is not a BAI2 record (lines start with 01, 02, 03, 16, 49, "
                "88, 98 or 99 and a comma)",
                format=FORMAT,
                line=number,
            )
        if code == "16":
            fields = record[3:].rstrip("/").split(",")
            if len(fields) < 2 or not fields[1].isdigit():
                raise StatementError(
                    f"the amount {fields[1] if len(fields) > 1 else ''!r} is not a whole "
                    "number of cents (BAI2 amounts have no decimal point)",
                    format=FORMAT,
                    line=number,
                    element=_RECORD_NAMES[code],
                )
        elif code in ("49", "98", "99"):
            fields = record[3:].rstrip("/").split(",")
            if not _SIGNED_NUMBER.fullmatch(fields[0]):
                raise StatementError(
                    f"the control total {fields[0]!r} is not a whole number of cents",
                    format=FORMAT,
                    line=number,
                    element=_RECORD_NAMES[code],
                )
    if records and records[0][1][:2] != "01":
        raise StatementError(
            "the file does not start with a file header (01)", format=FORMAT, line=records[0][0]
        )
    if records and records[-1][1][:2] != "99":
        raise StatementError(
            "the file trailer (99) is missing; the file may have been cut off, ask the bank "
            "for it again",
            format=FORMAT,
            line=records[-1][0],
        )


def _integrity_error(message: str, records: list[tuple[int, str]]) -> StatementError:
    found = _INTEGRITY.search(message)
    if not found:
        return StatementError(f"the control totals do not agree ({message})", format=FORMAT)
    level = found.group("level")
    trailer = _TRAILER_OF.get(level, "")
    expected, actual = found.group("expected"), found.group("found")
    # Point at the trailer that holds the figure the records failed to match.
    field = {"number of records": -1}.get(found.group("what"), 0)
    line = None
    for number, record in records:
        if record[:2] == trailer:
            fields = record[3:].rstrip("/").split(",")
            if fields[field if field >= 0 else len(fields) - 1].lstrip("+") == expected:
                line = number
                break
    what = found.group("what")
    level_word = _LEVEL_WORDS.get(level, level)
    if "total" in what:
        reason = (
            f"the {level_word} control total says {expected} cents but the records add up to "
            f"{actual}; the file is incomplete or damaged, ask the bank for it again"
        )
    else:
        noun = what.removeprefix("number of ")
        reason = (
            f"the {level_word} trailer counts {expected} {noun} but the file holds {actual}; "
            "the file is incomplete or damaged, ask the bank for it again"
        )
    return StatementError(reason, format=FORMAT, line=line, element=_RECORD_NAMES.get(trailer))


def parse_bai2(data: bytes) -> tuple[Statement, ...]:
    records = _numbered_records(decode(data))
    if not records:
        raise StatementError("the file is empty", format=FORMAT)
    _precheck(records)
    try:
        parsed = bai2_reader.parse_from_lines(
            [record for _, record in records], check_integrity=True
        )
    except bai2_exceptions.IntegrityException as error:
        raise _integrity_error(str(error), records) from None
    except bai2_exceptions.NotSupportedYetException as error:
        raise StatementError(
            f"the file uses something the BAI2 reader does not know ({error})", format=FORMAT
        ) from None
    except (bai2_exceptions.ParsingException, ValueError, IndexError, StopIteration) as error:
        raise StatementError(
            f"the records are not in BAI2 order or a field is malformed ({error})",
            format=FORMAT,
        ) from None

    header = parsed.header
    statements = []
    for group in parsed.children:
        for account in group.children:
            statements.append(_statement(header, group, account))
    return tuple(statements)


def _originator(text: str) -> str | None:
    found = _ORIGINATOR.search(text)
    return clean(found.group("name")) if found else None


def _amount(minor: int, currency: str, element: str) -> Decimal:
    try:
        exponent = currency_exponent(currency)
    except MoneyError as error:
        raise StatementError(str(error), format=FORMAT, element=element) from None
    return Decimal(minor).scaleb(-exponent)


def _statement(header, group, account) -> Statement:  # noqa: ANN001 - the library is untyped
    identifier = account.header
    currency = (identifier.currency or group.header.currency or "USD").upper()
    account_number = compact_account(identifier.customer_account_number) or ""
    where = f"account {account_number}"
    as_of = group.header.as_of_date

    opening = closing = None
    for summary in identifier.summary_items:
        code = summary.type_code.code if summary.type_code else None
        if code == "010" and summary.amount is not None:
            opening = _amount(summary.amount, currency, where)
        elif code == "015" and summary.amount is not None:
            closing = _amount(summary.amount, currency, where)

    lines = []
    for detail in account.children:
        kind = detail.type_code.transaction if detail.type_code else None
        if kind is bai2_constants.TypeCodeTransaction.misc:
            continue  # type 890 and the like carry a note for the reader, not money
        if kind not in (
            bai2_constants.TypeCodeTransaction.credit,
            bai2_constants.TypeCodeTransaction.debit,
        ):
            raise StatementError(
                f"type code {detail.type_code.code if detail.type_code else '?'} of a "
                "transaction is neither a credit nor a debit",
                format=FORMAT,
                element=f"transaction detail (16) of {where}",
            )
        amount = _amount(detail.amount or 0, currency, where)
        if kind is bai2_constants.TypeCodeTransaction.debit:
            amount = -amount
        availability = detail.availability or {}
        value_date = availability.get("date") if isinstance(availability, dict) else None
        text = clean(detail.text) or ""
        lines.append(
            StatementLine(
                position=0,
                booking_date=as_of,
                value_date=value_date,
                amount=amount,
                currency=currency,
                payer_name=_originator(text),
                remittance_text=text,
                creditor_reference=find_creditor_reference(text),
                bank_reference=clean(detail.bank_reference),
                customer_reference=clean(detail.customer_reference),
                transaction_code=detail.type_code.code,
            )
        )

    statement = Statement(
        format=FORMAT,
        account=account_number,
        currency=currency,
        statement_id=clean(header.file_id),
        statement_date=as_of,
        opening_balance=opening,
        opening_date=as_of if opening is not None else None,
        closing_balance=closing,
        closing_date=as_of if closing is not None else None,
        lines=tuple(lines),
    )
    # BAI2 ledger balances often include float and same-day items that are not detailed, so
    # the control totals the library checked are the integrity guard here, not the balances.
    return finish_statement(statement)
