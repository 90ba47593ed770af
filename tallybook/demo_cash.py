"""The demo's April: from invoice to cash. The bank sends a camt.053 statement (payments by
RF reference, by invoice number, combined, one with a typo, one partial, bank interest, rent),
cards on file are charged through the simulated provider, dunning reminds the late payers and
charges capped late fees, and the books are checked: aging, and a trial balance that balances.

Everything goes through the services, with explicit dates, so the demo is the same every time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from stdnum import iban as iban_numbers

from tallybook.core.money import format_minor
from tallybook.core.receivables import AGING_BUCKETS
from tallybook.db.models import Invoice
from tallybook.formats.bank_statements.camt053_writer import Movement, write_camt053_accounts
from tallybook.services import (
    cash_application,
    collection,
    customers,
    dunning,
    invoices,
    ledger,
    payment_methods,
    receivables,
)
from tallybook.services.base import Actor, Database

STATEMENT_DAY = date(2026, 4, 10)
COLLECTION_DAY = date(2026, 4, 15)
DUNNING_DAY = date(2026, 4, 30)
# The organisation's accounts at its bank, one per currency.
OUR_ACCOUNTS = {
    "EUR": "DE02120300000000202051",
    "GBP": "GB33BUKB20201555555555",
    "USD": "GB94BARC10201530093459",
    "JPY": "GB29NWBK60161331926819",
}


@dataclass
class CashReport:
    statement_lines: int = 0
    applied: int = 0
    review: int = 0
    outgoing: int = 0
    applied_minor: dict[str, int] = field(default_factory=dict)
    review_lines: list[tuple[str, str, str]] = field(default_factory=list)  # payer, amount, why
    set_aside: str = ""
    charged: int = 0
    approved: int = 0
    declined: int = 0
    reminders: dict[str, int] = field(default_factory=dict)  # step name -> count
    fees_minor: dict[str, int] = field(default_factory=dict)
    aging: list[tuple[str, tuple[int, ...], int]] = field(default_factory=list)
    trial_balance: dict[str, tuple[int, int]] = field(default_factory=dict)


def _iban(country: str, index: int) -> str:
    """A valid IBAN for a demo customer: German or British format, check digits computed."""
    if country == "GB":
        bban = f"NWBK{600000 + index:06d}{31000000 + index * 7:08d}"
        number = f"GB00{bban}"
    else:
        bban = f"{37040044:08d}{5320130000 + index * 13:010d}"
        number = f"DE00{bban}"
    return number[:2] + iban_numbers.calc_check_digits(number) + number[4:]


def _account(currency: str, country: str, index: int) -> str:
    if currency in ("EUR", "GBP"):
        return _iban("GB" if currency == "GBP" else "DE", index)
    # A US routing number and account: not an IBAN (the letters keep it from reading as a card).
    return f"{21000021 + index:09d}-AC{4400000 + index * 11:08d}"


def _open_by_customer(db: Database, actor: Actor) -> dict[str, list[Invoice]]:
    rows: list[Invoice] = []
    after = None
    while True:
        page, after = invoices.list_invoices(db, actor, limit=500, after=after)
        rows.extend(page)
        if after is None:
            break
    found: dict[str, list[Invoice]] = defaultdict(list)
    for invoice in sorted(rows, key=lambda inv: (inv.issue_date or date.min, inv.number or "")):
        if invoice.status in ("issued", "partially_paid") and invoice.amount_due_minor > 0:
            found[invoice.customer_id].append(invoice)
    return found


def _typo(number: str) -> str:
    """Two neighbouring digits swapped near the end, as people mistype."""
    digits = [i for i, c in enumerate(number) if c.isdigit()]
    i = digits[-2]
    j = digits[-1]
    if number[i] == number[j]:
        i = digits[-3]
    chars = list(number)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def run(db: Database, admin: Actor, manager: Actor, clerk: Actor, names: dict[str, str],
        countries: dict[str, str], currencies: dict[str, str]) -> CashReport:
    """April 2026 of the demo organisation; returns what to print."""
    report = CashReport()
    order = sorted(names, key=lambda cid: names[cid])
    accounts = {}
    for index, customer_id in enumerate(order):
        accounts[customer_id] = _account(currencies[customer_id], countries[customer_id], index)
        customers.update_customer(
            db, clerk, customer_id, {"bank_accounts": [accounts[customer_id]]}
        )

    open_invoices = _open_by_customer(db, clerk)
    movements: dict[str, list[Movement]] = defaultdict(list)
    cards: list[tuple[str, str]] = []
    day = 0
    for index, customer_id in enumerate(order):
        owed = open_invoices.get(customer_id, [])
        if not owed:
            continue
        currency = currencies[customer_id]
        name = names[customer_id]
        payer = name.upper() if index % 2 else name
        account = accounts[customer_id]
        booked = date(2026, 4, 1 + (day % 9) + 1)
        day += 1
        style = index % 6
        if style == 0:  # the structured reference of each invoice
            for invoice in owed:
                movements[currency].append(Movement(
                    booked, invoice.amount_due_minor, currency, payer, account,
                    None, invoice.payment_reference))
        elif style == 1:  # the number in the text; the first one mistyped
            for position, invoice in enumerate(owed):
                number = _typo(invoice.number) if position == 0 else invoice.number
                movements[currency].append(Movement(
                    booked, invoice.amount_due_minor, currency, payer, account,
                    f"Invoice {number} thank you"))
        elif style == 2:  # one transfer for everything, each invoice named
            movements[currency].append(Movement(
                booked, sum(i.amount_due_minor for i in owed), currency, payer, account,
                "Payment " + ", ".join(i.number for i in owed)))
        elif style == 3:  # no reference: the oldest invoice's exact amount from a known account
            movements[currency].append(Movement(
                booked, owed[0].amount_due_minor, currency, payer, account, "Monthly payment"))
        elif style == 4:  # pays by card on file
            token = "sim_card_declined" if len(cards) == 2 else "sim_card_ok"
            cards.append((customer_id, token))
        # style 5: does not pay; dunning will remind it
    first_partial = next(
        (cid for cid in order[5::6] if open_invoices.get(cid)), None
    )
    if first_partial is not None:  # half of an invoice, by number, from the known account
        invoice = open_invoices[first_partial][0]
        movements[invoice.currency].append(Movement(
            date(2026, 4, 9), invoice.amount_due_minor // 2, invoice.currency,
            names[first_partial], accounts[first_partial], f"Part payment {invoice.number}"))
    movements["GBP"].append(Movement(date(2026, 4, 9), 1234, "GBP", "Barclays Bank PLC", None,
                                     "Credit interest Q1"))
    movements["GBP"].append(Movement(date(2026, 4, 3), -250000, "GBP", "Canary Wharf Estates",
                                     "GB82WEST12345698765432", "Office rent April"))
    statement = write_camt053_accounts(
        [(OUR_ACCOUNTS[currency], currency, lines, 5_000_000)
         for currency, lines in sorted(movements.items())],
        statement_id="NW-STMT-2026-04-10",
        created=STATEMENT_DAY,
        owner="Northwind Cloud Ltd",
    )
    imported = cash_application.import_statement(
        db, clerk, statement, file_name="camt053-2026-04-10.xml"
    )
    report.statement_lines = imported.lines_new
    report.applied, report.review, report.outgoing = (
        imported.applied, imported.review, imported.outgoing)
    report.applied_minor = dict(sorted(imported.applied_minor.items()))
    waiting, _ = cash_application.list_lines(db, clerk, status="review")
    for line in sorted(waiting, key=lambda x: (x.booking_date, x.payer_name or "")):
        reasons = (line.proposal or {}).get("reasons") or ["no match"]
        report.review_lines.append(
            (line.payer_name or "?", format_minor(line.amount_minor, line.currency), reasons[-1]))
        if line.payer_name == "Barclays Bank PLC":
            cash_application.ignore_line(db, clerk, line.id, "credit interest, not a customer")
            report.set_aside = f"{line.payer_name} {format_minor(line.amount_minor, line.currency)}"

    for customer_id, token in cards:
        payment_methods.attach_payment_method(
            db, clerk, customer_id,
            {"provider": "simulated", "token": token, "kind": "card",
             "label": "Visa ending 4242" if token == "sim_card_ok" else "Visa ending 0002"},
        )
    charged = collection.collect_due_invoices(db, clerk, COLLECTION_DAY)
    report.charged = charged.attempted
    report.approved = charged.count("approved")
    report.declined = charged.count("declined")

    dunning.create_policy(db, manager, {
        "name": "Standard reminders",
        "steps": [
            {"offset_days": -3, "level": 1, "name": "friendly reminder"},
            {"offset_days": 0, "level": 1, "name": "due today"},
            {"offset_days": 7, "level": 2, "name": "first reminder"},
            {"offset_days": 14, "level": 2, "name": "second reminder", "late_fee": True},
            {"offset_days": 30, "level": 3, "name": "final notice", "late_fee": True},
        ],
        "late_fee": {"kind": "percent", "percent": "1.5",
                     "cap": {"EUR": "40.00", "USD": "40.00", "GBP": "35.00", "JPY": "5000"}},
    })
    reminded = dunning.run_dunning(db, manager, DUNNING_DAY)
    steps: dict[str, int] = defaultdict(int)
    for reminder in reminded.reminders:
        steps[reminder.name] += 1
    report.reminders = dict(sorted(steps.items()))
    report.fees_minor = dict(sorted(reminded.fees_minor.items()))

    aging = receivables.aging_report(db, manager, DUNNING_DAY)
    report.aging = [(t.currency, t.buckets_minor, t.total_minor) for t in aging.report.totals]
    totals = ledger.summarise(ledger.trial_balance(db, manager, DUNNING_DAY))
    report.trial_balance = {
        currency: (int(t["debit_minor"]), int(t["credit_minor"]))
        for currency, t in sorted(totals.items())
    }
    return report


def print_report(console, report: CashReport, table) -> None:  # noqa: ANN001 - rich objects
    """The April chapter of the demo report."""
    applied = ", ".join(format_minor(v, c) for c, v in report.applied_minor.items())
    bank = table(
        "April: the bank statement (camt.053), matched to open invoices",
        ("lines", "applied automatically", "for review", "outgoing"),
        right=("lines", "applied automatically", "for review", "outgoing"),
        caption=f"Applied: {applied}." + (f" Set aside by the clerk: {report.set_aside}."
                                         if report.set_aside else ""),
    )
    bank.add_row(str(report.statement_lines), str(report.applied), str(report.review),
                 str(report.outgoing))
    console.print(bank)
    queue = table("Review queue: what the clerk is asked", ("payer", "amount", "why not automatic"))
    for payer, amount, why in report.review_lines:
        queue.add_row(payer, amount, why)
    console.print(queue)
    fees = ", ".join(format_minor(v, c) for c, v in report.fees_minor.items()) or "none"
    cash = table(
        f"Cards charged on {COLLECTION_DAY} and dunning on {DUNNING_DAY}",
        ("what", "count"), right=("count",),
        caption=f"Late fees charged as debit notes (1.5 %, capped): {fees}.",
    )
    cash.add_row("card charges approved", str(report.approved))
    cash.add_row("card charges declined (retried on day +1, +3, +7)", str(report.declined))
    for name, count in report.reminders.items():
        cash.add_row(f"reminder: {name}", str(count))
    console.print(cash)
    aging = table(f"Receivables aging as of {DUNNING_DAY}", ("currency", *AGING_BUCKETS, "total"),
                  right=(*AGING_BUCKETS, "total"))
    for currency, buckets, total in report.aging:
        aging.add_row(currency, *(format_minor(b, currency) for b in buckets),
                      format_minor(total, currency))
    console.print(aging)
    books = table("Trial balance (the ledger balances per currency)",
                  ("currency", "debits", "credits"), right=("debits", "credits"))
    for currency, (debit, credit) in report.trial_balance.items():
        books.add_row(currency, format_minor(debit, currency), format_minor(credit, currency))
    console.print(books)
