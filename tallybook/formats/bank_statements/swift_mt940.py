"""SWIFT MT940 customer statements, read with the `mt-940` library (BSD-3-Clause).

The library splits the tags, reads `:61:` statement lines (dates across a year end included) and
the structured German `:86:` sub-fields (?20-?29 purpose, ?31 IBAN, ?32/?33 name, EREF+, SVWZ+).
It is forgiving by design, so before handing it a statement this module checks the mandatory
tags and every amount and date itself: a damaged file must be refused, with the line it broke on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import InvalidOperation
from typing import Any

import mt940
from mt940 import processors as mt940_processors

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

FORMAT = StatementFormat.MT940
_TAG = re.compile(r"^:(?P<tag>\d{2}[A-Z]?|NS):(?P<value>.*)$")
# {1:F01BANKBEBBAXXX0000000000}{2:O940...}{3:{108:...}}{4:  ... -}{5:{CHK:...}}
_ENVELOPE_START = re.compile(r"^\{1:[^}]*\}(?:\{2:[^}]*\})?(?:\{3:(?:\{[^}]*\})*\})?\{4:")
_ENVELOPE_END = re.compile(r"^-\}(?:\{5:.*)?$|^\{5:.*$|^-$")
_BALANCE = re.compile(r"(?P<mark>[CD])(?P<date>\d{6})(?P<currency>[A-Z]{3})(?P<amount>[\d,]+)")
# Value date, optional booking date (MMDD), mark, optional funds code, amount, then the
# mandatory transaction type (N..., S... or F... and three characters) that ends the amount.
_STATEMENT_LINE = re.compile(
    r"(?P<value_date>\d{6})(?P<entry_date>\d{4})?(?P<mark>R?[CD])(?:[A-Z](?=\d))?"
    r"(?P<amount>.*?)(?P<type>[NSF][A-Z0-9]{3})"
)
# SWIFT "15d": digits with a mandatory decimal comma, at most 15 characters in all.
_AMOUNT = re.compile(r"(?=.{2,15}$)\d+,\d*")
_MANDATORY = (
    ("20", "the statement reference (:20:)"),
    ("25", "the account (:25:)"),
    ("28C", "the statement number (:28C:)"),
    ("60", "the opening balance (:60F:)"),
    ("62", "the closing balance (:62F:)"),
)
# The library's opt-in fixes, named one by one: a later release may add options whose meaning we
# have not reviewed, so `Options.all()` is not used.
_OPTIONS = mt940.Options(
    applicant_iban=True,
    merge_keeps_values=True,
    reversal_sign=True,
    case_insensitive_marks=True,
    unbounded_details=True,
    non_swift_free_text=True,
    strip_bom=True,
)


@dataclass(frozen=True, slots=True)
class _Tag:
    tag: str
    line: int
    value: str


def decode(data: bytes) -> str:
    """MT940 is meant to be plain SWIFT characters, but banks send UTF-8 or Windows-1252."""
    text = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        return text.decode("cp1252", errors="replace")


def _unwrap(text: str) -> list[tuple[int, str]]:
    """The lines of block 4 with their line numbers in the file, SWIFT envelopes removed."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        envelope = _ENVELOPE_START.match(line)
        if envelope:
            line = line[envelope.end() :].strip()
        if not line or _ENVELOPE_END.match(line):
            continue
        lines.append((number, line))
    return lines


def _tags(lines: list[tuple[int, str]]) -> list[_Tag]:
    tags: list[_Tag] = []
    for number, line in lines:
        found = _TAG.match(line)
        if found:
            tags.append(_Tag(found.group("tag"), number, found.group("value")))
        elif tags:
            previous = tags[-1]
            tags[-1] = _Tag(previous.tag, previous.line, previous.value + "\n" + line)
        else:
            raise StatementError(
                f"the file does not start with an MT940 tag such as :20: (found {line[:30]!r})",
                format=FORMAT,
                line=number,
            )
    return tags


def parse_mt940(data: bytes) -> tuple[Statement, ...]:
    lines = _unwrap(decode(data))
    tags = _tags(lines)
    if not tags:
        raise StatementError("the file holds no MT940 statement", format=FORMAT)
    blocks: list[list[_Tag]] = []
    for tag in tags:
        if tag.tag == "20" or not blocks:
            blocks.append([])
        blocks[-1].append(tag)
    return tuple(_statement(block) for block in blocks)


def _check_amount(text: str, tag: _Tag, what: str) -> None:
    if not _AMOUNT.fullmatch(text):
        raise StatementError(
            f"the {what} {text!r} is not an amount (expected digits with a decimal comma, "
            "such as 1250,00)",
            format=FORMAT,
            line=tag.line,
            element=f":{tag.tag}:",
        )


def _check_date(text: str, tag: _Tag, what: str) -> None:
    try:
        date(2000 + int(text[:2]), int(text[2:4]), int(text[4:6]))
    except ValueError:
        raise StatementError(
            f"the {what} {text!r} is not a date (expected YYMMDD)",
            format=FORMAT,
            line=tag.line,
            element=f":{tag.tag}:",
        ) from None


def _validate(block: list[_Tag]) -> None:
    present = {tag.tag[:2] if tag.tag[:2] in ("60", "62") else tag.tag for tag in block}
    if "28" in present:
        present.add("28C")
    for tag_id, what in _MANDATORY:
        if tag_id not in present:
            raise StatementError(
                f"{what} is missing; the file may have been cut off, ask the bank for it again",
                format=FORMAT,
                line=block[0].line,
                element=f"statement starting with :{block[0].tag}:",
            )
    for tag in block:
        if tag.tag[:2] in ("60", "62", "64", "65"):
            found = _BALANCE.fullmatch(tag.value.strip())
            if not found:
                raise StatementError(
                    f"the balance {tag.value.strip()!r} is not in the form "
                    "C/D, date YYMMDD, currency, amount (e.g. C260131EUR1250,00)",
                    format=FORMAT,
                    line=tag.line,
                    element=f":{tag.tag}:",
                )
            _check_date(found.group("date"), tag, "balance date")
            _check_amount(found.group("amount"), tag, "balance amount")
        elif tag.tag == "61":
            first_line = tag.value.split("\n", 1)[0]
            found = _STATEMENT_LINE.match(first_line)
            if not found:
                raise StatementError(
                    f"the statement line {first_line!r} does not start with value date, "
                    "C/D mark, amount and transaction type (e.g. 2603020302C1190,00NTRF)",
                    format=FORMAT,
                    line=tag.line,
                    element=":61:",
                )
            _check_date(found.group("value_date"), tag, "value date")
            entry = found.group("entry_date")
            if entry:
                _check_date("00" + entry, tag, "booking date")
            _check_amount(found.group("amount"), tag, "amount")


def _statement(block: list[_Tag]) -> Statement:
    _validate(block)
    text = "\n".join(f":{tag.tag}:{tag.value}" for tag in block)
    transactions = mt940.models.Transactions(
        processors={
            "post_transaction_details": [mt940_processors.transaction_details_post_processor]
        },
        options=_OPTIONS,
    )
    try:
        transactions.parse(text)
    except (RuntimeError, ValueError, InvalidOperation, KeyError) as error:
        # The checks above catch what we know of; this names the tag the library choked on.
        tag_value = error.args[2] if len(error.args) > 2 else None
        culprit = next((t for t in block if tag_value and t.value.strip() == tag_value), block[0])
        raise StatementError(
            f"the tag could not be read ({error.args[0] if error.args else error})",
            format=FORMAT,
            line=culprit.line,
            element=f":{culprit.tag}:",
        ) from None

    values = transactions.data
    opening = values.get("final_opening_balance") or values.get("intermediate_opening_balance")
    closing = values.get("final_closing_balance") or values.get("intermediate_closing_balance")
    currency = opening.amount.currency
    lines = tuple(_line(transaction.data, currency) for transaction in transactions.transactions)
    statement = Statement(
        format=FORMAT,
        account=compact_account(values.get("account_identification")) or "",
        currency=currency,
        statement_id=clean(values.get("transaction_reference")),
        statement_number=_statement_number(values),
        statement_date=_plain_date(closing.date),
        opening_balance=opening.amount.amount,
        opening_date=_plain_date(opening.date),
        closing_balance=closing.amount.amount,
        closing_date=_plain_date(closing.date),
        lines=lines,
    )
    return finish_statement(statement, check_balances=True)


def _statement_number(values: dict[str, Any]) -> str | None:
    number = values.get("statement_number")
    sequence = values.get("sequence_number")
    if number and sequence:
        return f"{number}/{sequence}"
    return number


def _plain_date(value: date | None) -> date | None:
    return None if value is None else date(value.year, value.month, value.day)


def _reference(value: str | None) -> str | None:
    value = clean(value)
    # NONREF is the SWIFT way of saying "the customer gave no reference".
    return None if value is None or value.upper() == "NONREF" else value


def _line(data: dict[str, Any], currency: str) -> StatementLine:
    value_date = _plain_date(data["date"])
    booking_date = _plain_date(data.get("entry_date")) or value_date
    structured = "purpose" in data or "applicant_name" in data
    if structured:
        parts = [data.get("purpose"), data.get("additional_purpose")]
    else:
        details = data.get("transaction_details") or ""
        parts = [" ".join(details.split())]
    if not any(parts):
        parts = [data.get("extra_details")]
    remittance = " ".join(clean(part) or "" for part in parts if part).strip()
    codes = [data.get("id"), data.get("transaction_code")]
    return StatementLine(
        position=0,
        booking_date=booking_date,
        value_date=value_date,
        amount=data["amount"].amount,
        currency=data["amount"].currency or currency,
        payer_name=clean(data.get("applicant_name")),
        payer_account=compact_account(data.get("applicant_iban")),
        remittance_text=remittance,
        creditor_reference=find_creditor_reference(remittance),
        bank_reference=_reference(data.get("bank_reference")),
        end_to_end_id=_reference(data.get("end_to_end_reference")),
        customer_reference=_reference(data.get("customer_reference")),
        transaction_code="/".join(code for code in codes if code) or None,
        reversal=str(data.get("status", "")).upper().startswith("R"),
    )
