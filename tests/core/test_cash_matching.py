"""Cash application matching: one test per way a statement line is read, each worked out by
hand, and property tests of what must hold for any statement and any open invoices."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.core.cash_matching import (
    DEFAULT_THRESHOLD,
    Allocation,
    ClosedInvoice,
    IncomingLine,
    OpenInvoice,
    Proposal,
    match_lines,
)
from tallybook.core.references import creditor_reference, display

ACME_IBAN = "DE89370400440532013000"
BECKER_IBAN = "DE02120300000000202051"
NORDLICHT_IBAN = "AT611904300234573201"
STRANGER_IBAN = "GB29NWBK60161331926819"
BOOKED = date(2026, 3, 4)


def invoice(
    seq: int,
    amount: int = 11_900,
    *,
    customer: str = "cus_acme",
    name: str = "Acme Logistik GmbH",
    currency: str = "EUR",
    accounts: tuple[str, ...] = (ACME_IBAN,),
    due: date = date(2026, 2, 15),
    year: int = 2026,
) -> OpenInvoice:
    number = f"INV-{year}-{seq:06d}"
    return OpenInvoice(
        id=f"inv_{year}_{seq:06d}",
        number=number,
        customer_id=customer,
        customer_name=name,
        currency=currency,
        amount_due_minor=amount,
        issue_date=due - timedelta(days=30),
        due_date=due,
        reference=creditor_reference(number),
        payer_accounts=frozenset(accounts),
    )


def becker(seq: int, amount: int = 11_900, **fields) -> OpenInvoice:
    return invoice(
        seq, amount, customer="cus_becker", name="Becker Bau AG", accounts=(BECKER_IBAN,), **fields
    )


def line(
    amount: int = 11_900,
    *,
    text: str | None = None,
    reference: str | None = None,
    payer: str | None = None,
    account: str | None = None,
    currency: str = "EUR",
    documents: tuple[str, ...] = (),
    key: str = "L1",
) -> IncomingLine:
    return IncomingLine(
        key=key,
        amount_minor=amount,
        currency=currency,
        booking_date=BOOKED,
        payer_name=payer,
        payer_account=account,
        remittance_text=text,
        creditor_reference=reference,
        referred_documents=documents,
    )


def one(statement_line: IncomingLine, invoices: list[OpenInvoice], **options) -> Proposal:
    (proposal,) = match_lines([statement_line], invoices, **options)
    return proposal


def allocated(proposal: Proposal) -> dict[str, int]:
    return {item.invoice_id: item.amount_minor for item in proposal.allocations}


def said(proposal: Proposal) -> str:
    return " | ".join(proposal.reasons)


# -- by reference ----------------------------------------------------------------------------


def test_rf_reference_in_the_structured_field_posts_even_from_an_unknown_payer() -> None:
    invoices = [invoice(123), invoice(124, 5_000)]
    reference = creditor_reference("INV-2026-000123")  # RF98INV2026000123
    proposal = one(line(11_900, reference=reference, account=STRANGER_IBAN), invoices)
    assert proposal.auto
    assert proposal.method == "reference"
    assert proposal.confidence == 99
    assert allocated(proposal) == {"inv_2026_000123": 11_900}
    assert proposal.unapplied_minor == 0
    assert proposal.customer_id == "cus_acme"


def test_rf_reference_typed_in_groups_of_four_in_the_remittance() -> None:
    invoices = [invoice(123), invoice(124, 5_000)]
    printed = display(creditor_reference("INV-2026-000124"))  # "RF71 INV2 0260 0012 4"
    proposal = one(line(5_000, text=f"Zahlung {printed} danke"), invoices)
    assert proposal.auto
    assert allocated(proposal) == {"inv_2026_000124": 5_000}


def test_rf_reference_with_a_typo_fails_its_check_digits_and_is_not_trusted_alone() -> None:
    invoices = [invoice(123), invoice(124, 5_000)]
    reference = creditor_reference("INV-2026-000123")
    mistyped = reference[:-1] + "8"  # ...0123 typed ...0128: mod 97 no longer leaves 1
    unknown_payer = one(line(11_900, text=f"Ref {mistyped}", account=STRANGER_IBAN), invoices)
    assert not unknown_payer.auto
    assert allocated(unknown_payer) == {"inv_2026_000123": 11_900}  # suggested for review
    assert "fails its check digits" in said(unknown_payer)
    # The payer's known account and the exact amount confirm the reading.
    known_payer = one(line(11_900, text=f"Ref {mistyped}", account=ACME_IBAN), invoices)
    assert known_payer.auto
    assert known_payer.confidence == 94
    assert allocated(known_payer) == {"inv_2026_000123": 11_900}


def test_a_valid_reference_of_no_open_invoice_makes_the_line_doubtful() -> None:
    invoices = [invoice(123)]
    someone_elses = creditor_reference("INV-2026-000999")
    proposal = one(line(11_900, reference=someone_elses, account=ACME_IBAN), invoices)
    # Amount and account point at INV-2026-000123, but the reference says something else.
    assert not proposal.auto
    assert "is not the reference of any open invoice" in said(proposal)


# -- by invoice number -------------------------------------------------------------------------


def test_invoice_number_typed_exactly() -> None:
    invoices = [invoice(123), invoice(124, 5_000)]
    known = one(line(11_900, text="Rechnung INV-2026-000123 vom 01.02.2026", account=ACME_IBAN),
                invoices)  # fmt: skip
    assert known.auto
    assert (known.method, known.confidence) == ("invoice_number", 97)
    assert allocated(known) == {"inv_2026_000123": 11_900}
    unknown = one(line(11_900, text="INV-2026-000123"), invoices)
    assert unknown.auto
    assert unknown.confidence == 93


def test_invoice_number_as_a_referred_document() -> None:
    invoices = [invoice(123), invoice(124, 5_000)]
    proposal = one(line(5_000, text="Zahlung", documents=("INV-2026-000124",)), invoices)
    assert proposal.auto
    assert allocated(proposal) == {"inv_2026_000124": 5_000}


def test_number_with_one_typo_is_read_when_the_payers_iban_supports_it() -> None:
    invoices = [invoice(123), invoice(555, 5_000), becker(321, 7_700)]
    text = "Rechnung INV-2026-000132"  # 23 typed as 32; INV-2026-000132 is nobody's
    supported = one(line(11_900, text=text, account=ACME_IBAN), invoices)
    assert supported.auto
    assert supported.confidence == 94
    assert allocated(supported) == {"inv_2026_000123": 11_900}
    assert "1 typo" in said(supported)
    unsupported = one(line(11_900, text=text, account=STRANGER_IBAN), invoices)
    assert not unsupported.auto
    assert allocated(unsupported) == {"inv_2026_000123": 11_900}


def test_a_typo_that_is_another_customers_number_is_read_as_the_payers_invoice() -> None:
    # 000123 typed as 000321: that is Becker's invoice, for another amount; Acme pays.
    invoices = [invoice(123), becker(321, 7_700)]
    proposal = one(line(11_900, text="INV-2026-000321", account=ACME_IBAN), invoices)
    assert proposal.auto
    assert allocated(proposal) == {"inv_2026_000123": 11_900}
    assert "which is Becker Bau AG's" in said(proposal)


@pytest.mark.parametrize(
    "typed",
    [
        "INV 2026 123",  # without leading zeros
        "inv-2026-123",
        "INV/2026/000123",  # other separators
        "INV2026000123",
        "INV 2026 000 123",
        "2026-000123",  # without its letters
        "2026/000123",
    ],
)
def test_invoice_number_however_it_is_spaced(typed: str) -> None:
    invoices = [invoice(123), invoice(6, 5_000), invoice(1230, 7_000)]
    proposal = one(line(11_900, text=f"Zahlung {typed}", account=ACME_IBAN), invoices)
    assert proposal.auto
    assert allocated(proposal) == {"inv_2026_000123": 11_900}


def test_groups_run_together_are_not_read_without_their_zeros() -> None:
    # "INV 20266" is not INV 2026 6 (INV-2026-000006), however its zeros are dropped.
    invoices = [invoice(6, 5_000)]
    proposal = one(line(5_000, text="INV 20266"), invoices)
    assert proposal.allocations == ()


def test_a_number_already_paid_is_not_taken_for_a_typo_of_an_open_one() -> None:
    # Acme pays INV-2026-000124 a second time; 000123, one digit away, is open for the same.
    invoices = [invoice(123)]
    paid = ClosedInvoice("inv_paid", "INV-2026-000124", "cus_acme", "EUR", 11_900)
    statement = [line(11_900, text="INV-2026-000124", account=ACME_IBAN)]
    (proposal,) = match_lines(statement, invoices, closed=[paid])
    assert not proposal.auto
    assert "no longer open" in said(proposal)
    assert "paid twice" in said(proposal)


def test_a_typo_onto_another_customers_paid_invoice_is_still_a_typo() -> None:
    invoices = [invoice(123)]
    paid = ClosedInvoice("inv_paid", "INV-2026-000124", "cus_becker", "EUR", 4_000)
    statement = [line(11_900, text="INV-2026-000124", account=ACME_IBAN)]
    (proposal,) = match_lines(statement, invoices, closed=[paid])
    assert proposal.auto
    assert allocated(proposal) == {"inv_2026_000123": 11_900}


def test_a_settled_invoices_look_alike_for_the_same_amount_goes_to_review() -> None:
    # 000123 typed as 000125: open 000123 and paid 000128 are both a typo away, both 119.00.
    invoices = [invoice(123)]
    paid = ClosedInvoice("inv_paid", "INV-2026-000128", "cus_acme", "EUR", 11_900)
    statement = [line(11_900, text="INV-2026-000125", account=ACME_IBAN)]
    (proposal,) = match_lines(statement, invoices, closed=[paid])
    assert not proposal.auto
    assert "paid twice" in said(proposal)


def test_a_number_that_is_no_open_invoices_makes_the_payers_amount_doubtful() -> None:
    # Without being told what is paid: a number nowhere near an open one, from a known payer.
    invoices = [invoice(123)]
    proposal = one(line(11_900, text="Rechnung INV-2025-009876", account=ACME_IBAN), invoices)
    assert not proposal.auto
    assert "no open invoice's number" in said(proposal)


# -- by payer and amount ------------------------------------------------------------------------


def test_exact_amount_from_a_known_iban() -> None:
    invoices = [invoice(123), invoice(124, 5_000), becker(125)]
    proposal = one(line(5_000, text="Danke", account="DE89 3704 0044 0532 0130 00"), invoices)
    assert proposal.auto
    assert (proposal.method, proposal.confidence) == ("amount_and_payer", 94)
    assert allocated(proposal) == {"inv_2026_000124": 5_000}


@pytest.mark.parametrize(
    "payer",
    ["Acme Logistik GmbH", "ACME LOGISTIK GMBH", "Acme Logistik", "acme logistik gmbh."],
)
def test_exact_amount_and_the_payers_name(payer: str) -> None:
    invoices = [invoice(123), invoice(124, 5_000), becker(125)]
    proposal = one(line(5_000, payer=payer, account=STRANGER_IBAN), invoices)
    assert proposal.auto
    assert proposal.confidence == 91
    assert allocated(proposal) == {"inv_2026_000124": 5_000}


def test_a_name_spelt_without_umlauts_or_cut_by_the_bank() -> None:
    name = "Müller Zahntechnik UG (haftungsbeschränkt)"
    invoices = [invoice(7, 4_000, customer="cus_m", name=name, accounts=())]
    for payer in ("MUELLER ZAHNTECHNIK UG", name[:27]):  # 'Müller Zahntechnik UG (haftu'
        proposal = one(line(4_000, payer=payer), invoices)
        assert proposal.auto, payer
        assert allocated(proposal) == {"inv_2026_000007": 4_000}


def test_a_lone_surname_identifies_no_company() -> None:
    invoices = [
        invoice(1, 4_000, customer="cus_b1", name="Becker GmbH", accounts=()),
        invoice(2, 9_000, customer="cus_b2", name="Becker Logistik GmbH", accounts=()),
    ]
    proposal = one(line(4_000, payer="Becker"), invoices)
    assert not proposal.auto


def test_a_set_of_one_customers_open_invoices_adding_up_to_the_amount() -> None:
    invoices = [invoice(1, 10_000), invoice(2, 25_000), invoice(3, 8_000), invoice(4, 4_550)]
    proposal = one(line(33_000, text="Sammelzahlung", account=ACME_IBAN), invoices)
    # 250.00 + 80.00 is the only set adding up to 330.00.
    assert proposal.auto
    assert (proposal.method, proposal.confidence) == ("combination", 92)
    assert allocated(proposal) == {"inv_2026_000002": 25_000, "inv_2026_000003": 8_000}


def test_two_sets_adding_up_go_to_review() -> None:
    invoices = [invoice(1, 10_000), invoice(2, 20_000), invoice(3, 15_000), invoice(4, 15_000)]
    proposal = one(line(30_000, account=ACME_IBAN), invoices)  # 100+200 or 150+150
    assert not proposal.auto
    assert "other combinations" in said(proposal)


# -- several invoices, part and over-payments ---------------------------------------------------


def test_several_named_invoices_paid_together() -> None:
    invoices = [invoice(1, 10_000), invoice(2, 25_000), invoice(3, 8_000)]
    reference = creditor_reference("INV-2026-000003")
    proposal = one(line(18_000, text=f"INV-2026-000001 + {reference}", account=ACME_IBAN),
                   invoices)  # fmt: skip
    assert proposal.auto
    assert proposal.confidence == 96
    assert allocated(proposal) == {"inv_2026_000001": 10_000, "inv_2026_000003": 8_000}


def test_several_named_invoices_paid_short_go_to_review() -> None:
    invoices = [invoice(1, 10_000), invoice(2, 25_000)]
    proposal = one(line(30_000, text="INV-2026-000001 INV-2026-000002", account=ACME_IBAN),
                   invoices)  # fmt: skip
    assert not proposal.auto
    # Oldest due first is the suggestion; both are due the same day, so by number.
    assert sum(allocated(proposal).values()) == 30_000


def test_partial_payment_of_a_named_invoice() -> None:
    invoices = [invoice(123, 50_000)]
    text = "INV-2026-000123 abzgl. 2% Skonto"
    proposal = one(line(49_000, text=text, account=ACME_IBAN), invoices)
    assert proposal.auto
    assert proposal.confidence == 93
    assert allocated(proposal) == {"inv_2026_000123": 49_000}
    assert proposal.unapplied_minor == 0
    # From a payer we do not know, a part payment may be meant for another firm's INV-...
    stranger = one(line(49_000, text=text, account=STRANGER_IBAN), invoices)
    assert not stranger.auto
    assert allocated(stranger) == {"inv_2026_000123": 49_000}
    # ...but a reference's check digits make it ours.
    reference = creditor_reference("INV-2026-000123")
    assert one(line(49_000, reference=reference, account=STRANGER_IBAN), invoices).auto


def test_partial_payment_when_a_look_alike_is_due_for_exactly_the_amount() -> None:
    # 490.00 is part of 000123, or all of 000128 with one digit mistyped: a clerk decides.
    invoices = [invoice(123, 50_000), invoice(128, 49_000)]
    proposal = one(line(49_000, text="INV-2026-000123", account=ACME_IBAN), invoices)
    assert not proposal.auto
    assert "INV-2026-000128, 1 typo away, is open for exactly 490.00 EUR" in said(proposal)


def test_over_payment_leaves_the_rest_unapplied() -> None:
    invoices = [invoice(123, 11_900), invoice(124, 5_000)]
    proposal = one(line(12_000, text="INV-2026-000123", account=ACME_IBAN), invoices)
    assert proposal.auto
    assert proposal.confidence == 91
    assert allocated(proposal) == {"inv_2026_000123": 11_900}
    assert proposal.unapplied_minor == 100


def test_over_payment_whose_excess_is_another_open_invoice_goes_to_review() -> None:
    invoices = [invoice(123, 11_900), invoice(124, 5_000)]
    proposal = one(line(16_900, text="INV-2026-000123", account=ACME_IBAN), invoices)
    assert not proposal.auto
    assert allocated(proposal) == {"inv_2026_000123": 11_900, "inv_2026_000124": 5_000}
    assert "which the remittance does not name" in said(proposal)


# -- review ------------------------------------------------------------------------------------


def test_two_open_invoices_for_the_amount_go_to_review_with_reasons() -> None:
    invoices = [invoice(1, 11_900, due=date(2026, 1, 15)), invoice(2, 11_900)]
    proposal = one(line(11_900, account=ACME_IBAN), invoices)
    assert not proposal.auto
    assert proposal.confidence == 60
    assert allocated(proposal) == {"inv_2026_000001": 11_900}  # the oldest, suggested
    assert "2 open invoices are due for exactly 119.00 EUR" in said(proposal)


def test_a_contradicting_payer_goes_to_review() -> None:
    invoices = [invoice(123), becker(124, 7_700)]
    proposal = one(line(11_900, text="INV-2026-000123", account=BECKER_IBAN), invoices)
    assert not proposal.auto
    assert allocated(proposal) == {"inv_2026_000123": 11_900}
    assert f"payer account {BECKER_IBAN} is known for Becker Bau AG, not for Acme" in said(proposal)


def test_an_account_shared_by_many_customers_says_nothing_about_the_payer() -> None:
    provider = "IE29AIBK93115212345678"  # a payment provider's pooled account
    invoices = [
        invoice(seq, 1_000 * seq, customer=f"cus_{seq}", name=f"Kunde {seq} GmbH",
                accounts=(provider, f"DE{seq:020d}"))
        for seq in range(1, 8)
    ]  # fmt: skip
    by_number = one(line(3_000, text="INV-2026-000003", account=provider), invoices)
    assert by_number.auto
    assert "shared by many customers" in said(by_number)
    by_amount = one(line(3_000, account=provider), invoices)
    assert not by_amount.auto


def test_payment_in_another_currency_than_the_named_invoice() -> None:
    invoices = [invoice(123), invoice(7, 8_000, currency="USD")]
    mismatch = one(line(12_900, text="INV-2026-000123", currency="USD", account=ACME_IBAN),
                   invoices)  # fmt: skip
    assert not mismatch.auto
    assert mismatch.allocations == ()
    assert mismatch.unapplied_minor == 12_900
    assert "billed in EUR; the payment is in USD" in said(mismatch)
    in_dollars = one(line(8_000, text="INV-2026-000007", currency="usd", account=ACME_IBAN),
                     invoices)  # fmt: skip
    assert in_dollars.auto
    assert allocated(in_dollars) == {"inv_2026_000007": 8_000}


@pytest.mark.parametrize("amount", [-11_900, 0])
def test_money_going_out_is_never_applied(amount: int) -> None:
    invoices = [invoice(123)]
    proposal = one(line(amount, text="Erstattung INV-2026-000123", account=ACME_IBAN), invoices)
    assert not proposal.auto
    assert proposal.allocations == ()
    assert proposal.unapplied_minor == 0
    assert proposal.reasons


def test_unknown_payer_without_reference() -> None:
    proposal = one(line(11_900, text="Miete 03/2026", payer="Jonas Engel"), [invoice(123)])
    assert not proposal.auto
    assert proposal.allocations == ()
    assert "the payer is not a known customer" in said(proposal)


def test_confidence_at_the_threshold_posts_and_one_below_does_not() -> None:
    invoices = [invoice(123), invoice(124, 5_000)]
    by_name = line(5_000, payer="Acme Logistik GmbH")  # confidence 91
    assert one(by_name, invoices, threshold=91).auto
    assert not one(by_name, invoices, threshold=92).auto
    assert one(by_name, invoices, threshold=92).confidence == 91
    assert DEFAULT_THRESHOLD == 90


@pytest.mark.parametrize("threshold", [-1, 101])
def test_threshold_must_be_a_percentage(threshold: int) -> None:
    with pytest.raises(ValueError, match="threshold"):
        match_lines([], [], threshold=threshold)


# -- lines of one statement together ------------------------------------------------------------


def test_an_invoice_paid_twice_in_one_statement_is_taken_once() -> None:
    invoices = [invoice(123)]
    first = line(11_900, text="INV-2026-000123", account=ACME_IBAN, key="L1")
    second = replace(first, key="L2")
    one_, two = match_lines([first, second], invoices)
    assert one_.auto and allocated(one_) == {"inv_2026_000123": 11_900}
    assert not two.auto
    assert two.allocations == ()
    assert "already settled by an earlier line" in said(two)


def test_paying_an_invoice_twice_in_one_statement_is_not_read_as_a_typo_of_another() -> None:
    invoices = [invoice(123), invoice(124)]  # both 119.00, one digit apart
    first = line(11_900, text="INV-2026-000123", account=ACME_IBAN, key="L1")
    again = replace(first, key="L2")
    one_, two = match_lines([first, again], invoices)
    assert one_.auto
    assert not two.auto
    assert "already settled by an earlier line" in said(two)


def test_a_sure_line_takes_its_invoice_first_and_makes_the_other_line_certain() -> None:
    # Two invoices of 119.00; one is named by reference, the other line only has the IBAN.
    invoices = [invoice(1, 11_900), invoice(2, 11_900)]
    by_iban = line(11_900, account=ACME_IBAN, key="L1")
    by_reference = line(11_900, reference=creditor_reference("INV-2026-000001"), key="L2")
    iban, reference = match_lines([by_iban, by_reference], invoices)
    assert reference.auto and allocated(reference) == {"inv_2026_000001": 11_900}
    assert iban.auto and allocated(iban) == {"inv_2026_000002": 11_900}


def test_a_guess_for_review_never_makes_another_line_look_certain() -> None:
    # L1's typo'd number from an unknown payer is a guess at 000001; L2 from Acme's IBAN could
    # be 000001 or 000002: only an automatic posting may settle which.
    invoices = [invoice(1, 11_900), invoice(2, 11_900)]
    guess = line(11_900, text="INV-2026-000010", account=STRANGER_IBAN, key="L1")
    by_iban = line(11_900, account=ACME_IBAN, key="L2")
    first, second = match_lines([guess, by_iban], invoices)
    assert not first.auto
    assert not second.auto
    assert not set(allocated(first)) & set(allocated(second))  # suggestions do not overlap


def test_proposals_come_in_line_order() -> None:
    invoices = [invoice(1, 1_000), invoice(2, 2_000)]
    statement = [
        line(-500, key="out"),
        line(2_000, text="INV-2026-000002", key="second"),
        line(1_000, text="INV-2026-000001", key="first"),
    ]
    assert [p.line_key for p in match_lines(statement, invoices)] == ["out", "second", "first"]


def test_open_invoices_are_checked() -> None:
    with pytest.raises(ValueError, match="given twice"):
        match_lines([], [invoice(1), invoice(1)])
    with pytest.raises(ValueError, match="must be positive"):
        match_lines([], [invoice(1, 0)])
    with pytest.raises(ValueError, match="not a valid ISO 11649"):
        match_lines([], [replace(invoice(1), reference="RF00INV2026000001")])


# -- properties ---------------------------------------------------------------------------------

CUSTOMERS = [
    ("cus_acme", "Acme Logistik GmbH", ACME_IBAN),
    ("cus_becker", "Becker Bau AG", BECKER_IBAN),
    ("cus_nord", "Nordlicht Medien KG", NORDLICHT_IBAN),
]
AMOUNTS = st.sampled_from([11_900, 11_900, 5_000, 23_800, 999, 35_700]) | st.integers(1, 60_000)


@st.composite
def open_invoices(draw) -> list[OpenInvoice]:
    # Few sequence numbers and amounts, so numbers are a typo apart and amounts repeat.
    sequences = draw(st.lists(st.integers(1, 60), min_size=1, max_size=10, unique=True))
    found = []
    for seq in sequences:
        customer, name, iban = draw(st.sampled_from(CUSTOMERS))
        found.append(
            invoice(
                seq,
                draw(AMOUNTS),
                customer=customer,
                name=name,
                accounts=(iban,),
                currency=draw(st.sampled_from(["EUR", "EUR", "EUR", "USD"])),
                due=date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 60))),
            )
        )
    return found


@st.composite
def statement_lines(draw, invoices: list[OpenInvoice]) -> list[IncomingLine]:
    lines = []
    for position in range(draw(st.integers(1, 8))):
        named = draw(st.lists(st.sampled_from(invoices), min_size=0, max_size=3, unique_by=id))
        owed = sum(item.amount_due_minor for item in named) or draw(AMOUNTS)
        amount = draw(st.sampled_from([owed, owed, owed - 100, owed + 100, -owed, 0]) | AMOUNTS)
        words = []
        for item in named:
            how = draw(st.sampled_from(["number", "rf", "unpadded", "typo", "bare"]))
            seq = int(item.number[-6:])
            if how == "number":
                words.append(item.number)
            elif how == "rf":
                words.append(item.reference or "")
            elif how == "unpadded":
                words.append(f"INV {item.number[4:8]} {seq}")
            elif how == "bare":
                words.append(item.number[4:])
            else:
                words.append(f"INV-2026-{(seq + draw(st.sampled_from([1, 9, 10]))):06d}")
        customer = draw(st.sampled_from(CUSTOMERS))
        if named and draw(st.booleans()):  # most often the named invoices' own customer pays
            customer = next(c for c in CUSTOMERS if c[0] == named[0].customer_id)
        payer = draw(st.sampled_from(["account", "account", "name", "stranger", "none"]))
        lines.append(
            line(
                amount,
                text=" ".join(words) or None,
                account=customer[2]
                if payer == "account"
                else STRANGER_IBAN
                if payer == "stranger"
                else None,
                payer=customer[1] if payer == "name" else None,
                currency=draw(st.sampled_from(["EUR", "EUR", "USD"])),
                key=f"L{position}",
            )  # fmt: skip
        )
    return lines


@st.composite
def statements(draw) -> tuple[list[OpenInvoice], list[IncomingLine], int]:
    invoices = draw(open_invoices())
    lines = draw(statement_lines(invoices))
    threshold = draw(st.sampled_from([DEFAULT_THRESHOLD, 0, 50, 95, 100]))
    return invoices, lines, threshold


PROPERTY = settings(max_examples=250, deadline=None)


@PROPERTY
@given(statements())
def test_no_invoice_is_allocated_more_than_it_has_open(world) -> None:
    invoices, lines, threshold = world
    taken: dict[str, int] = {}
    for proposal in match_lines(lines, invoices, threshold=threshold):
        for item in proposal.allocations:
            taken[item.invoice_id] = taken.get(item.invoice_id, 0) + item.amount_minor
    due = {item.id: item.amount_due_minor for item in invoices}
    assert all(amount <= due[invoice_id] for invoice_id, amount in taken.items())


@PROPERTY
@given(statements())
def test_every_cent_received_is_allocated_or_left_unapplied(world) -> None:
    invoices, lines, threshold = world
    for statement_line, proposal in zip(lines, match_lines(lines, invoices, threshold=threshold),
                                        strict=True):  # fmt: skip
        assert proposal.line_key == statement_line.key
        assert all(item.amount_minor > 0 for item in proposal.allocations)
        received = max(statement_line.amount_minor, 0)
        applied = sum(item.amount_minor for item in proposal.allocations)
        assert applied + proposal.unapplied_minor == received
        assert proposal.unapplied_minor >= 0


@PROPERTY
@given(statements())
def test_an_allocation_is_always_in_the_lines_currency(world) -> None:
    invoices, lines, threshold = world
    currency = {item.id: item.currency for item in invoices}
    for statement_line, proposal in zip(lines, match_lines(lines, invoices, threshold=threshold),
                                        strict=True):  # fmt: skip
        for item in proposal.allocations:
            assert currency[item.invoice_id] == statement_line.currency.upper()


@PROPERTY
@given(statements())
def test_automatic_means_allocated_to_one_customer_at_or_above_the_threshold(world) -> None:
    invoices, lines, threshold = world
    owner = {item.id: item.customer_id for item in invoices}
    for proposal in match_lines(lines, invoices, threshold=threshold):
        assert 0 <= proposal.confidence <= 100
        if proposal.auto:
            assert proposal.allocations
            assert proposal.confidence >= threshold
            assert proposal.customer_id is not None
            assert {owner[item.invoice_id] for item in proposal.allocations} == {
                proposal.customer_id
            }


@PROPERTY
@given(statements(), st.randoms(use_true_random=False))
def test_the_order_of_the_open_invoices_changes_nothing(world, random) -> None:
    invoices, lines, threshold = world
    shuffled = list(invoices)
    random.shuffle(shuffled)
    assert match_lines(lines, shuffled, threshold=threshold) == match_lines(
        lines, invoices, threshold=threshold
    )


@PROPERTY
@given(statements())
def test_every_proposal_gives_a_reason(world) -> None:
    invoices, lines, threshold = world
    for proposal in match_lines(lines, invoices, threshold=threshold):
        assert proposal.reasons
        assert all(reason.strip() for reason in proposal.reasons)


@PROPERTY
@given(open_invoices(), st.data())
def test_an_open_invoices_reference_for_its_amount_always_posts(invoices, data) -> None:
    target = data.draw(st.sampled_from(invoices))
    own = next(iban for customer, _, iban in CUSTOMERS if customer == target.customer_id)
    account = data.draw(st.sampled_from([own, STRANGER_IBAN, ""]))
    statement_line = line(
        target.amount_due_minor,
        reference=data.draw(st.sampled_from([target.reference, display(target.reference or "")])),
        account=account or None,
        currency=target.currency,
    )
    proposal = one(statement_line, invoices)
    assert proposal.auto
    assert allocated(proposal) == {target.id: target.amount_due_minor}


@PROPERTY
@given(statements())
def test_a_payers_known_account_never_posts_to_another_customers_invoice(world) -> None:
    invoices, lines, threshold = world
    # Accounts the matcher knows: those on the open invoices.
    customer_of_account = {
        account: item.customer_id for item in invoices for account in item.payer_accounts
    }
    owner = {item.id: item.customer_id for item in invoices}
    for statement_line, proposal in zip(lines, match_lines(lines, invoices, threshold=threshold),
                                        strict=True):  # fmt: skip
        payer = customer_of_account.get(statement_line.payer_account or "")
        if proposal.auto and payer is not None:
            assert {owner[item.invoice_id] for item in proposal.allocations} == {payer}


def _cash_data():
    """bench/cash_data.py, the benchmark's generator: a statement with the truth of each line."""
    path = Path(__file__).resolve().parents[2] / "bench" / "cash_data.py"
    spec = importlib.util.spec_from_file_location("bench_cash_data", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [11, 12])
def test_a_generated_statement_gets_no_wrong_automatic_posting(seed: int) -> None:
    data = _cash_data().generate(seed, invoices=600, lines=1_200)
    proposals = match_lines(data.lines, data.invoices, closed=data.settled)
    matchable = correct = 0
    for truth, proposal in zip(data.truth, proposals, strict=True):
        if proposal.auto:
            assert proposal.allocations == truth.allocations or sorted(
                proposal.allocations, key=lambda item: item.invoice_id
            ) == list(truth.allocations), (truth, proposal)
        matchable += truth.matchable
        correct += truth.matchable and proposal.auto
    assert matchable > 300
    assert correct >= 0.95 * matchable


def test_allocation_is_the_public_record_of_what_goes_where() -> None:
    proposal = one(line(11_900, text="INV-2026-000123"), [invoice(123)])
    assert proposal.allocations == (Allocation("inv_2026_000123", 11_900),)
