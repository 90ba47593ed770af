"""Accounting journal exports: Beancount, QuickBooks Desktop IIF, QuickBooks Online CSV, Xero CSV
and a generic CSV, written from immutable journal entries (no database, no clock).

Amounts are integer minor units and are written exactly, with the currency's own number of
decimals (none for JPY). Every writer refuses an entry whose debits and credits differ.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from tallybook.core.money import MoneyError, currency_exponent, from_minor

__all__ = [
    "ACCOUNT_TYPES",
    "GENERIC_COLUMNS",
    "IIF_COLUMNS",
    "QBO_COLUMNS",
    "XERO_COLUMNS",
    "Account",
    "JournalEntry",
    "JournalExportError",
    "JournalLine",
    "beancount_account_name",
    "check_entry",
    "to_beancount",
    "to_generic_csv",
    "to_iif",
    "to_quickbooks_online_csv",
    "to_xero_csv",
]

# Account type -> Beancount root account (Beancount's default root names).
ACCOUNT_TYPES = {
    "asset": "Assets",
    "liability": "Liabilities",
    "equity": "Equity",
    "revenue": "Income",
    "expense": "Expenses",
}


class JournalExportError(ValueError):
    """A journal entry that cannot be exported as it is (unbalanced, mixed signs, bad account)."""


@dataclass(frozen=True)
class Account:
    code: str  # "1100"
    name: str  # "Accounts receivable"
    type: str  # asset | liability | equity | revenue | expense


@dataclass(frozen=True)
class JournalLine:
    account: Account
    debit_minor: int  # exactly one of debit/credit is > 0
    credit_minor: int
    description: str = ""
    customer: str | None = None  # customer name, for AR lines
    document: str | None = None  # invoice / credit note / payment number


@dataclass(frozen=True)
class JournalEntry:
    number: str  # "JE-000123"
    date: date
    currency: str  # ISO 4217; every line of an entry is in this currency
    memo: str
    kind: str  # invoice_issued, credit_note_issued, payment_received, refund, write_off, ...
    lines: tuple[JournalLine, ...]


# ----------------------------------------------------------------------------------------------
# Checks shared by every writer


def _entry_name(entry: JournalEntry) -> str:
    return f"journal entry {entry.number!r} of {entry.date.isoformat()}"


def _check_writable(entry: JournalEntry) -> None:
    """What every export needs even unchecked: a known currency and accounts of a known type."""
    name = _entry_name(entry)
    if not isinstance(entry.number, str) or not entry.number.strip():
        raise JournalExportError(f"{name}: the entry number is empty")
    try:
        currency_exponent(entry.currency)
    except MoneyError as error:
        raise JournalExportError(f"{name}: {error}") from None
    if not entry.lines:
        raise JournalExportError(f"{name}: has no lines")
    for index, line in enumerate(entry.lines, start=1):
        account = line.account
        if account.type not in ACCOUNT_TYPES:
            raise JournalExportError(
                f"{name}, line {index}: account {account.code!r} has type {account.type!r}; "
                f"expected one of {', '.join(ACCOUNT_TYPES)}"
            )
        if not account.code.strip():
            raise JournalExportError(f"{name}, line {index}: the account code is empty")
        for field in ("debit_minor", "credit_minor"):
            value = getattr(line, field)
            if isinstance(value, bool) or not isinstance(value, int):
                raise JournalExportError(
                    f"{name}, line {index}: {field} must be an integer of minor units, "
                    f"not {value!r}"
                )


def check_entry(entry: JournalEntry) -> None:
    """Refuse an entry that is not a well-formed double entry, naming the entry and the line.

    Each line carries a positive amount on exactly one side (debit or credit, never a negative
    number: that would mix the sign convention of the export with ours), and the entry's debits
    equal its credits.
    """
    _check_writable(entry)
    name = _entry_name(entry)
    for index, line in enumerate(entry.lines, start=1):
        debit, credit = line.debit_minor, line.credit_minor
        where = f"{name}, line {index} ({line.account.code})"
        if debit < 0 or credit < 0:
            raise JournalExportError(
                f"{where}: negative amount (debit {debit}, credit {credit}); amounts are "
                "positive and a credit goes in credit_minor, not as a negative debit"
            )
        if (debit > 0) == (credit > 0):
            raise JournalExportError(
                f"{where}: exactly one of debit and credit must be positive "
                f"(debit {debit}, credit {credit})"
            )
    debits = sum(line.debit_minor for line in entry.lines)
    credits = sum(line.credit_minor for line in entry.lines)
    if debits != credits:
        currency = entry.currency.upper()
        raise JournalExportError(
            f"{name} does not balance: debits {_amount(debits, currency)} {currency}, "
            f"credits {_amount(credits, currency)} {currency}"
        )


def _checked(entries: Iterable[JournalEntry]) -> list[JournalEntry]:
    # Check everything before writing anything, so no half-written export ever leaves here.
    entries = list(entries)
    for entry in entries:
        check_entry(entry)
    return entries


def _single_currency(entries: Sequence[JournalEntry], layout: str) -> None:
    """Layouts without a currency column would silently add up amounts of different currencies."""
    currencies = sorted({entry.currency.upper() for entry in entries})
    if len(currencies) > 1:
        raise JournalExportError(
            f"{layout} has no currency column, so one file holds one currency; these entries are "
            f"in {', '.join(currencies)}: export each currency separately"
        )


def _amount(minor: int, currency: str) -> str:
    # "f" keeps the currency's places (0.00, 5000) and never switches to exponent notation.
    return format(from_minor(minor, currency), "f")


def _signed_minor(line: JournalLine) -> int:
    """Debits positive, credits negative: the convention of Beancount, IIF and Xero."""
    return line.debit_minor - line.credit_minor


def _line_text(entry: JournalEntry, line: JournalLine) -> str:
    """A line's own description, else the entry memo, with its document number when not in it."""
    text = line.description or entry.memo
    if line.document and line.document not in text:
        text = f"{text} ({line.document})" if text else line.document
    return text


def _csv_text(rows: Iterable[Sequence[object]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    # RFC 4180: CRLF line ends, fields with a delimiter, quote or line break quoted.
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# Beancount

_WORD = re.compile(r"[A-Za-z0-9]+")


def _ascii_words(text: str) -> list[str]:
    # Accents are dropped rather than the letter ("Débiteurs" -> "Debiteurs"); other scripts have
    # no ASCII form and disappear, which is why the account code is always part of the name.
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _WORD.findall(folded)


def beancount_account_name(account: Account) -> str:
    """A valid Beancount account for a chart-of-accounts entry: root by type, then name and code.

    ("1100", "Accounts receivable", "asset") -> "Assets:Accounts-Receivable-1100". The code keeps
    names unique and non-empty when the name has no ASCII letters ("売掛金" -> "Assets:1100").
    """
    try:
        root = ACCOUNT_TYPES[account.type]
    except KeyError:
        raise JournalExportError(
            f"account {account.code!r}: type {account.type!r} is not one of "
            f"{', '.join(ACCOUNT_TYPES)}"
        ) from None
    words = [word[0].upper() + word[1:] for word in _ascii_words(account.name)]
    words += [word[0].upper() + word[1:] for word in _ascii_words(account.code)]
    if not words:
        raise JournalExportError(
            f"account {account.code!r} ({account.name!r}): neither the code nor the name has a "
            "letter or digit to build a Beancount account name from"
        )
    return f"{root}:{'-'.join(words)}"


def _beancount_string(text: str) -> str:
    # Beancount strings take backslash escapes for the quote and the backslash; line breaks may
    # stay literal (normalised to LF so the file has one line-ending convention).
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _chart(accounts: Iterable[Account]) -> dict[str, tuple[Account, str]]:
    """Chart of accounts by code, with each account's Beancount name; refuses ambiguity."""
    chart: dict[str, tuple[Account, str]] = {}
    codes_by_name: dict[str, str] = {}
    for account in accounts:
        known = chart.get(account.code)
        if known is not None:
            if known[0] != account:
                raise JournalExportError(
                    f"account code {account.code!r} appears twice in the chart of accounts "
                    f"({known[0].name!r} and {account.name!r})"
                )
            continue
        name = beancount_account_name(account)
        other = codes_by_name.get(name)
        if other is not None:
            raise JournalExportError(
                f"accounts {other!r} and {account.code!r} both become the Beancount account "
                f"{name}; give them distinct codes"
            )
        codes_by_name[name] = account.code
        chart[account.code] = (account, name)
    return chart


def to_beancount(
    entries: Iterable[JournalEntry],
    accounts: Iterable[Account],
    *,
    operating_currencies: Sequence[str] | None = None,
    check: bool = True,
) -> str:
    """A Beancount ledger: operating currencies, an `open` for each account used, one transaction
    per entry.

    `accounts` is the chart of accounts; every line's account must be in it. The operating
    currencies default to the currencies of the entries. `check=False` skips the balance and sign
    checks so that an unbalanced ledger can be produced on purpose (bean-check then reports it).
    """
    entries = list(entries)
    if check:
        _checked(entries)
    else:
        for entry in entries:
            _check_writable(entry)
    chart = _chart(accounts)

    first_use: dict[str, date] = {}
    for entry in entries:
        for index, line in enumerate(entry.lines, start=1):
            known = chart.get(line.account.code)
            if known is None:
                raise JournalExportError(
                    f"{_entry_name(entry)}, line {index}: account {line.account.code!r} is not "
                    "in the chart of accounts"
                )
            if known[0] != line.account:
                raise JournalExportError(
                    f"{_entry_name(entry)}, line {index}: account {line.account.code!r} differs "
                    f"from the chart of accounts ({line.account} vs {known[0]})"
                )
            name = known[1]
            if name not in first_use or entry.date < first_use[name]:
                first_use[name] = entry.date

    if operating_currencies is None:
        operating_currencies = sorted({entry.currency.upper() for entry in entries})
    out: list[str] = []
    for currency in operating_currencies:
        try:
            currency_exponent(currency)
        except MoneyError as error:
            raise JournalExportError(f"operating_currencies: {error}") from None
        out.append(
            f"option {_beancount_string('operating_currency')} "
            f"{_beancount_string(currency.upper())}"
        )
    out.append("")
    for name, opened in sorted(first_use.items(), key=lambda item: (item[1], item[0])):
        out.append(f"{opened.isoformat()} open {name}")
    for entry in entries:
        out.append("")
        out.extend(_beancount_transaction(entry, chart))
    return "\n".join(out) + "\n"


def _beancount_transaction(entry: JournalEntry, chart: dict[str, tuple[Account, str]]) -> list[str]:
    currency = entry.currency.upper()
    customers = {line.customer for line in entry.lines if line.customer}
    documents = {line.document for line in entry.lines if line.document}
    payee = customers.pop() if len(customers) == 1 else None
    document = next(iter(documents)) if len(documents) == 1 else None

    header = f"{entry.date.isoformat()} *"
    if payee is not None:
        header += f" {_beancount_string(payee)}"
    lines = [f"{header} {_beancount_string(entry.memo)}"]
    lines.append(f"  entry: {_beancount_string(entry.number)}")
    lines.append(f"  kind: {_beancount_string(entry.kind)}")
    if document is not None:
        lines.append(f"  document: {_beancount_string(document)}")

    postings = [
        (chart[line.account.code][1], _amount(_signed_minor(line), currency), line)
        for line in entry.lines
    ]
    account_width = max(len(account) for account, _, _ in postings)
    amount_width = max(len(amount) for _, amount, _ in postings)
    for account, amount, line in postings:
        lines.append(f"  {account:<{account_width}}  {amount:>{amount_width}} {currency}")
        if line.description:
            lines.append(f"    description: {_beancount_string(line.description)}")
        if line.customer and payee is None:
            lines.append(f"    customer: {_beancount_string(line.customer)}")
        if line.document and document is None:
            lines.append(f"    document: {_beancount_string(line.document)}")
    return lines


# ----------------------------------------------------------------------------------------------
# QuickBooks Desktop: IIF general journal
#
# Layout from Intuit's IIF import kit, "Transactions (TRNS and SPL)" reference
# (http://support.quickbooks.intuit.com/support/Pages/InProductHelp/Core/QB2K8/ContentPackage/
#  Core/IIF/iif_reference_transactions.html, also in the kit's iif_import_kit.zip):
# tab-separated; a "!TRNS" / "!SPL" / "!ENDTRNS" header block names the columns; each transaction
# is one TRNS row (its first distribution line), SPL rows for the others, then ENDTRNS. TRNSTYPE,
# ACCNT and AMOUNT are required; TRNSTYPE "GENERAL JOURNAL"; debits positive, credits negative.
# Split rows are keyed SPLID where transactions are keyed TRNSID; both stay empty on import
# (QuickBooks assigns them). The kit's reference shows MM/DD/YY; we write MM/DD/YYYY, which
# QuickBooks Desktop also reads, so that no century is left to guess.

IIF_COLUMNS = ("TRNSID", "TRNSTYPE", "DATE", "ACCNT", "NAME", "AMOUNT", "DOCNUM", "MEMO")
_IIF_SPLIT_COLUMNS = ("SPLID",) + IIF_COLUMNS[1:]


def _iif_text(text: str | None) -> str:
    # A tab or line break would end the field or the row: IIF has no escape for them.
    return re.sub(r"[\t\r\n]+", " ", text or "")


def to_iif(entries: Iterable[JournalEntry]) -> str:
    """QuickBooks Desktop IIF general journal entries (one currency per file; no currency column).

    ACCNT is the account name as in the QuickBooks chart of accounts ("Parent:Child" for a
    subaccount); NAME the customer; DOCNUM the journal entry number.
    """
    entries = _checked(entries)
    _single_currency(entries, "an IIF file")
    rows: list[Sequence[object]] = [
        ("!TRNS", *IIF_COLUMNS),
        ("!SPL", *_IIF_SPLIT_COLUMNS),
        ("!ENDTRNS",),
    ]
    for entry in entries:
        currency = entry.currency.upper()
        when = entry.date.strftime("%m/%d/%Y")
        for index, line in enumerate(entry.lines):
            rows.append(
                (
                    "TRNS" if index == 0 else "SPL",
                    "",
                    "GENERAL JOURNAL",
                    when,
                    _iif_text(line.account.name),
                    _iif_text(line.customer),
                    _amount(_signed_minor(line), currency),
                    _iif_text(entry.number),
                    _iif_text(_line_text(entry, line)),
                )
            )
        rows.append(("ENDTRNS",))
    # Quotes and commas are kept; a field holding a quote is quoted as a spreadsheet saves
    # tab-delimited text, which is how the import kit tells users to prepare IIF files.
    return _csv_text(rows, delimiter="\t")


# ----------------------------------------------------------------------------------------------
# QuickBooks Online: journal entry import (Settings > Import data > Journal entries)
#
# Columns from Intuit's help article "Import journal entries"
# (https://quickbooks.intuit.com/learn-support/en-au/help-article/import-export-files/
#  import-journal-entries-quickbooks-online/L4tQBwbs7_AU_en_AU): Journal No., Journal Date,
# Account Name, Description, Debits, Credits and Name (a customer or supplier is required on
# Accounts Receivable / Payable lines). Currency (multicurrency company files) and Memo are the
# entry's other fields in a QuickBooks Online journal entry (as importers such as Transaction Pro
# list them); the import screen maps each column to a field, so order and extra columns are free.
# Accounts are matched by name: the article asks to turn account numbers off for the import.
# Dates MM/DD/YYYY, as US company files read them.

QBO_COLUMNS = (
    "Journal No",
    "Journal Date",
    "Currency",
    "Memo",
    "Account Name",
    "Debits",
    "Credits",
    "Description",
    "Name",
)


def to_quickbooks_online_csv(entries: Iterable[JournalEntry]) -> str:
    """QuickBooks Online journal entry import CSV: one row per line, debits and credits apart."""
    entries = _checked(entries)
    rows: list[Sequence[object]] = [QBO_COLUMNS]
    for entry in entries:
        currency = entry.currency.upper()
        when = entry.date.strftime("%m/%d/%Y")
        for line in entry.lines:
            rows.append(
                (
                    entry.number,
                    when,
                    currency,
                    entry.memo,
                    line.account.name,
                    _amount(line.debit_minor, currency) if line.debit_minor else "",
                    _amount(line.credit_minor, currency) if line.credit_minor else "",
                    _line_text(entry, line),
                    line.customer or "",
                )
            )
    return _csv_text(rows)


# ----------------------------------------------------------------------------------------------
# Xero: manual journal import
#
# Layout from Xero's help "Enter multiple manual journals using an import template"
# (help.xero.com/ManualJournalsImport) and the template it offers for download: *Narration,
# *Date, Description, *AccountCode, *TaxRate, *Amount, then TrackingName1/TrackingOption1/
# TrackingName2/TrackingOption2 (asterisk: mandatory). Rows with the same narration and date
# become one journal, so the narration carries the entry number to keep entries apart. Dates are
# dd/mm/yyyy; AccountCode is the code alone; TaxRate is the tax rate's full name as in the
# organisation's settings; Amount is a debit when positive, a credit when negative. Manual
# journals are in the organisation's base currency and a template file takes up to 300 lines.

XERO_COLUMNS = (
    "*Narration",
    "*Date",
    "Description",
    "*AccountCode",
    "*TaxRate",
    "*Amount",
    "TrackingName1",
    "TrackingOption1",
    "TrackingName2",
    "TrackingOption2",
)


def to_xero_csv(entries: Iterable[JournalEntry], *, tax_rate: str = "Tax Exempt") -> str:
    """Xero manual journal import CSV (one currency per file: Xero journals are in base currency).

    `tax_rate` is the Xero tax rate name put on every line ("Tax Exempt", "No VAT", "No GST"...,
    depending on the organisation's region): billing journals carry tax on their own lines.
    """
    if not tax_rate.strip():
        raise JournalExportError("tax_rate: Xero requires a tax rate name on every line")
    entries = _checked(entries)
    _single_currency(entries, "a Xero manual journal file")
    rows: list[Sequence[object]] = [XERO_COLUMNS]
    for entry in entries:
        currency = entry.currency.upper()
        narration = f"{entry.number}: {entry.memo}" if entry.memo else entry.number
        when = entry.date.strftime("%d/%m/%Y")
        for line in entry.lines:
            rows.append(
                (
                    narration,
                    when,
                    _line_text(entry, line),
                    line.account.code,
                    tax_rate,
                    _amount(_signed_minor(line), currency),
                    "",
                    "",
                    "",
                    "",
                )
            )
    return _csv_text(rows)


# ----------------------------------------------------------------------------------------------
# Generic CSV: every field of the model, one row per line, for systems without a dedicated layout.

GENERIC_COLUMNS = (
    "entry_number",
    "date",
    "kind",
    "memo",
    "currency",
    "account_code",
    "account_name",
    "account_type",
    "description",
    "debit",
    "credit",
    "customer",
    "document",
)


def to_generic_csv(entries: Iterable[JournalEntry]) -> str:
    """One row per journal line with ISO dates and both debit and credit written out."""
    entries = _checked(entries)
    rows: list[Sequence[object]] = [GENERIC_COLUMNS]
    for entry in entries:
        currency = entry.currency.upper()
        for line in entry.lines:
            rows.append(
                (
                    entry.number,
                    entry.date.isoformat(),
                    entry.kind,
                    entry.memo,
                    currency,
                    line.account.code,
                    line.account.name,
                    line.account.type,
                    line.description,
                    _amount(line.debit_minor, currency),
                    _amount(line.credit_minor, currency),
                    line.customer or "",
                    line.document or "",
                )
            )
    return _csv_text(rows)
