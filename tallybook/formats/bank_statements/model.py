"""The one statement model every bank statement format is read into, and its shared helpers.

Everything here is pure and immutable: a `Statement` is what the bank said, nothing more. Amounts
are `Decimal`s parsed exactly from the file's text; positive means money came in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from stdnum import iso11649

__all__ = [
    "Statement",
    "StatementError",
    "StatementFormat",
    "StatementLine",
    "find_creditor_reference",
    "finish_statement",
    "parse_amount",
]


class StatementFormat(StrEnum):
    """The bank statement formats Tallybook reads."""

    CAMT053 = "camt.053"
    MT940 = "mt940"
    BAI2 = "bai2"
    OFX = "ofx"
    CSV = "csv"


FORMAT_LABELS = {
    StatementFormat.CAMT053: "camt.053",
    StatementFormat.MT940: "MT940",
    StatementFormat.BAI2: "BAI2",
    StatementFormat.OFX: "OFX",
    StatementFormat.CSV: "CSV",
}


class StatementError(ValueError):
    """A bank statement file that cannot be read. Nothing of such a file is imported.

    The message names where the problem is (line, element or column) and what is wrong, in words
    a billing clerk can act on: ask the bank for a new file, or fix the column mapping.
    """

    def __init__(
        self,
        reason: str,
        *,
        format: str | None = None,
        line: int | None = None,
        element: str | None = None,
    ) -> None:
        self.reason = reason
        self.format = format
        self.line = line
        self.element = element
        where = []
        if line is not None:
            where.append(f"line {line}")
        if element:
            where.append(element)
        label = FORMAT_LABELS.get(format, format) if format else None  # type: ignore[call-overload]
        prefix = f"{label} statement" if label else "bank statement"
        if where:
            prefix += f", {', '.join(where)}"
        super().__init__(f"{prefix}: {reason}")


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One booked movement on the account, as the bank reported it.

    `payer_name` and `payer_account` are the other party of the movement: who paid us for money
    in, whom we paid for money out. `creditor_reference` is an ISO 11649 "RF" reference, taken
    from the structured remittance field where the format has one, else found (check digits
    verified) in the remittance text.
    """

    position: int
    booking_date: date
    value_date: date | None
    amount: Decimal
    currency: str
    payer_name: str | None = None
    payer_account: str | None = None
    remittance_text: str = ""
    creditor_reference: str | None = None
    referred_documents: tuple[str, ...] = ()
    bank_reference: str | None = None
    end_to_end_id: str | None = None
    customer_reference: str | None = None
    transaction_code: str | None = None
    reversal: bool = False
    line_key: str = ""

    @property
    def is_credit(self) -> bool:
        return self.amount > 0

    def numbered(self, position: int, line_key: str) -> StatementLine:
        """This line at `position` with its key (the constructor, positionally: a hundred
        thousand `dataclasses.replace` calls cost seconds)."""
        return StatementLine(
            position,
            self.booking_date,
            self.value_date,
            self.amount,
            self.currency,
            self.payer_name,
            self.payer_account,
            self.remittance_text,
            self.creditor_reference,
            self.referred_documents,
            self.bank_reference,
            self.end_to_end_id,
            self.customer_reference,
            self.transaction_code,
            self.reversal,
            line_key,
        )


@dataclass(frozen=True, slots=True)
class Statement:
    """One account's statement. Balances are present only where the format carries them."""

    format: StatementFormat
    account: str
    currency: str
    statement_id: str | None
    statement_date: date | None
    lines: tuple[StatementLine, ...]
    statement_number: str | None = None
    opening_balance: Decimal | None = None
    opening_date: date | None = None
    closing_balance: Decimal | None = None
    closing_date: date | None = None

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


def _text(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return [_text(item) for item in value]
    return value


_KEYED_FIELDS = tuple(
    field.name
    for field in dataclasses.fields(StatementLine)
    if field.name not in ("position", "line_key")
)


def line_key(statement: Statement, line: StatementLine) -> str:
    """A fingerprint of where a line sits and what it says, so a re-imported file is recognised.

    The statement's identity (format, account, id, number) and the line's position are part of
    it: two genuinely separate payments of the same amount on the same day by the same payer
    must not collapse into one.
    """
    return _key(_statement_identity(statement), line.position, line)


def _statement_identity(statement: Statement) -> list[object]:
    return [
        str(statement.format),
        statement.account,
        statement.statement_id,
        statement.statement_number,
        _text(statement.statement_date),
    ]


def _key(identity: list[object], position: int, line: StatementLine) -> str:
    # The fields in declaration order, as `_text` renders them (tests/formats check that this
    # equals the generic rendering of every field): spelt out because a 100,000-line statement
    # keys every line.
    content = [
        *identity,
        position,
        line.booking_date.isoformat(),
        line.value_date.isoformat() if line.value_date is not None else None,
        format(line.amount, "f"),
        line.currency,
        line.payer_name,
        line.payer_account,
        line.remittance_text,
        line.creditor_reference,
        list(line.referred_documents),
        line.bank_reference,
        line.end_to_end_id,
        line.customer_reference,
        line.transaction_code,
        line.reversal,
    ]
    encoded = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def generic_key_content(identity: list[object], position: int, line: StatementLine) -> list:
    """What `_key` hashes, built field by field from the dataclass (for tests)."""
    return [*identity, position, *(_text(getattr(line, name)) for name in _KEYED_FIELDS)]


def finish_statement(statement: Statement, *, check_balances: bool = False) -> Statement:
    """Number the lines, give each its key and, where asked, check lines against balances.

    A statement whose lines do not add up to its closing balance is incomplete or damaged;
    importing it would leave payments unapplied without anyone noticing, so it is refused.
    """
    if (
        check_balances
        and statement.opening_balance is not None
        and statement.closing_balance is not None
    ):
        expected = statement.closing_balance - statement.opening_balance
        if statement.total != expected:
            raise StatementError(
                f"the lines add up to {statement.total} {statement.currency} but the balances "
                f"move from {statement.opening_balance} to {statement.closing_balance} "
                f"({expected}); the file is incomplete or damaged, ask the bank for it again",
                format=statement.format,
                element=f"statement {statement.statement_id or statement.account}",
            )
    identity = _statement_identity(statement)
    keyed = tuple(
        line.numbered(index, _key(identity, index, line))
        for index, line in enumerate(statement.lines)
    )
    return dataclasses.replace(statement, lines=keyed)


_PLAIN_AMOUNT = re.compile(r"[+-]?\d+(?:\.\d+)?")


def parse_amount(
    text: str,
    *,
    decimal_separator: str = ".",
    thousands_separator: str | None = None,
    format: str | None = None,
    line: int | None = None,
    element: str | None = None,
) -> Decimal:
    """Read an amount exactly from its text; never through a float.

    Accepts an optional leading sign, digits, the given thousands separator between groups of
    three and at most one decimal separator. Anything else is refused, naming where it was.
    """
    raw = text.strip()
    cleaned = raw
    if thousands_separator:
        # Only well-formed groups: "1.234,56" yes, "12.34,56" is a typo, not an amount.
        pattern = (
            r"[+-]?\d{1,3}(?:" + re.escape(thousands_separator) + r"\d{3})+"
            r"(?:" + re.escape(decimal_separator) + r"\d+)?"
        )
        if re.fullmatch(pattern, cleaned):
            cleaned = cleaned.replace(thousands_separator, "")
    if decimal_separator != ".":
        if "." in cleaned:
            cleaned = "!"  # a point where a comma is expected: refuse rather than guess
        cleaned = cleaned.replace(decimal_separator, ".")
    if not _PLAIN_AMOUNT.fullmatch(cleaned):
        raise StatementError(
            f"the amount {raw!r} is not a number"
            + (f" (decimal separator {decimal_separator!r})" if decimal_separator != "." else ""),
            format=format,
            line=line,
            element=element,
        )
    try:
        return Decimal(cleaned)
    except InvalidOperation:  # pragma: no cover - the pattern already guarantees a number
        raise StatementError(
            f"the amount {raw!r} is not a number", format=format, line=line, element=element
        ) from None


_RF_START = re.compile(r"(?<![0-9A-Z])RF\d{2}")
_RF_GROUPED = re.compile(r"RF\d{2}(?: [0-9A-Z]{4})*(?: [0-9A-Z]{1,4})?")
_RF_PLAIN = re.compile(r"RF\d{2}[0-9A-Z]{1,21}")


def find_creditor_reference(text: str | None) -> str | None:
    """The first ISO 11649 creditor reference in free text whose check digits are right.

    Payers type it plainly ("RF18539007547034") or in print groups ("RF18 5390 0754 7034");
    only references that pass the mod-97 check count, so "RF12 FOO" in a sentence is ignored.
    """
    if not text:
        return None
    upper = text.upper()
    for start in _RF_START.finditer(upper):
        for pattern in (_RF_PLAIN, _RF_GROUPED):
            found = pattern.match(upper, start.start())
            if not found:
                continue
            candidate = found.group(0)
            # A grouped reference may have swallowed the next word; shorten until it checks out.
            while len(candidate) > 4:
                compact = candidate.replace(" ", "")
                if len(compact) <= 25 and iso11649.is_valid(compact):
                    return compact
                candidate = candidate[:-1].rstrip()
    return None


def clean(value: str | None) -> str | None:
    """Collapse whitespace; an empty value is no value."""
    if value is None:
        return None
    collapsed = " ".join(value.split())
    return collapsed or None


def compact_account(value: str | None) -> str | None:
    """An IBAN or account number without the spaces banks print it with."""
    if value is None:
        return None
    compacted = "".join(value.split()).upper()
    return compacted or None
