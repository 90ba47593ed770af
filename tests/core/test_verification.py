"""Pre-flight verification (pure core): each check catches its mistake with the right severity
and a message a billing specialist can act on, and lets the clean case through."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.core.verification import (
    CHECKS,
    ContractPrice,
    ContractTerms,
    Discount,
    DraftInvoice,
    DraftLine,
    DueItem,
    Finding,
    InvoiceContext,
    OtherInvoice,
    OtherLine,
    Period,
    PurchaseOrder,
    PurchaseOrderLine,
    ServiceReport,
    Severity,
    TimeEntry,
    VerificationSettings,
    unbilled_findings,
    verify_invoice,
)

JAN = Period(date(2026, 1, 1), date(2026, 2, 1))
FEB = Period(date(2026, 2, 1), date(2026, 3, 1))


def line(position: int = 1, **values: object) -> DraftLine:
    quantity = D(str(values.pop("quantity", "10")))
    unit_price = D(str(values.pop("unit_price", "100.00")))
    base: dict[str, object] = {
        "id": f"line_{position}",
        "position": position,
        "description": "Consulting",
        "quantity": quantity,
        "unit_price": unit_price,
        "amount": quantity * unit_price,
        "kind": "time_and_materials",
        "product_id": "prod_consulting",
        "product_code": "consulting",
        "period": JAN,
        "bills_time": True,
    }
    base.update(values)
    return DraftLine(**base)  # type: ignore[arg-type]


def draft(*lines: DraftLine, **values: object) -> DraftInvoice:
    lines = lines or (line(),)
    subtotal = sum(int(x.amount * 100) for x in lines)
    base: dict[str, object] = {
        "id": "inv_draft",
        "customer_id": "cus_1",
        "customer_name": "Kunde AG",
        "currency": "EUR",
        "billing_date": date(2026, 2, 1),
        "subtotal_minor": subtotal,
        "total_minor": subtotal * 119 // 100,
        "lines": lines,
    }
    base.update(values)
    return DraftInvoice(**base)  # type: ignore[arg-type]


def po(**values: object) -> PurchaseOrder:
    base: dict[str, object] = {
        "id": "po_1",
        "number": "4500012",
        "currency": "EUR",
        "valid_from": date(2025, 12, 1),
        "valid_to": date(2026, 6, 30),
        "ceiling_minor": 5_000_000,
        "consumed_minor": 1_000_000,
        "lines": (
            PurchaseOrderLine(
                id="pol_1",
                position=1,
                description="Consulting",
                quantity=D(100),
                unit_price=D("100.00"),
                consumed_quantity=D(20),
                product_id="prod_consulting",
            ),
        ),
    }
    base.update(values)
    return PurchaseOrder(**base)  # type: ignore[arg-type]


def hours(*entries: tuple[str, str, str], status: str = "approved") -> tuple[TimeEntry, ...]:
    return tuple(
        TimeEntry(
            id=entry_id,
            work_date=date.fromisoformat(day),
            hours=D(amount),
            status=status,
            product_id="prod_consulting",
            worker="ana",
        )
        for entry_id, day, amount in entries
    )


CLEAN_TIME = hours(("te_1", "2026-01-12", "6"), ("te_2", "2026-01-20", "4"))


def clean_context(**values: object) -> InvoiceContext:
    base: dict[str, object] = {"purchase_orders": (po(),), "time_entries": CLEAN_TIME}
    base.update(values)
    return InvoiceContext(**base)  # type: ignore[arg-type]


def only(findings: tuple[Finding, ...], check: str) -> Finding:
    matching = [f for f in findings if f.check == check]
    assert len(matching) == 1, findings
    return matching[0]


def checks(findings: tuple[Finding, ...]) -> list[str]:
    return [f.check for f in findings]


def test_a_clean_invoice_has_no_findings() -> None:
    assert verify_invoice(draft(po_number="4500012"), clean_context()) == ()


# -- purchase orders -------------------------------------------------------------------------------


def test_po_required_but_missing_blocks() -> None:
    findings = verify_invoice(draft(po_required=True), clean_context())
    finding = only(findings, "po_missing")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == "draft inv_draft has no purchase order number"
    assert "Kunde AG requires a purchase order number" in finding.why
    assert (finding.expected, finding.actual) == ("a purchase order number", "none")


def test_an_unquoted_open_po_that_covers_the_draft_is_a_warning() -> None:
    finding = only(verify_invoice(draft(), clean_context()), "po_missing")
    assert finding.severity is Severity.WARNING
    assert "open PO 4500012 covers everything it bills" in finding.what
    assert finding.where.purchase_order_id == "po_1"
    # Without any PO on file, a draft without a PO number is fine.
    assert verify_invoice(draft(), InvoiceContext(time_entries=CLEAN_TIME)) == ()


def test_unknown_po_number_is_a_warning() -> None:
    finding = only(verify_invoice(draft(po_number="999"), clean_context()), "po_unknown")
    assert finding.severity is Severity.WARNING
    assert finding.what == "purchase order 999 is not on file for Kunde AG"


def test_closed_po_blocks() -> None:
    context = clean_context(purchase_orders=(po(status="closed"),))
    finding = only(verify_invoice(draft(po_number="4500012"), context), "po_closed")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == "purchase order 4500012 is closed"


def test_expired_po_blocks_and_names_the_day() -> None:
    context = clean_context(purchase_orders=(po(valid_to=date(2026, 1, 15)),))
    finding = only(verify_invoice(draft(po_number="4500012"), context), "po_expired")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == (
        "line 1 (Consulting) bills 2026-01-31, after PO 4500012 expired (2026-01-15)"
    )
    assert (finding.expected, finding.actual) == ("2025-12-01 to 2026-01-15", "2026-01-31")
    assert finding.where.line_position == 1


def test_po_not_yet_valid_blocks() -> None:
    context = clean_context(purchase_orders=(po(valid_from=date(2026, 1, 10)),))
    finding = only(verify_invoice(draft(po_number="4500012"), context), "po_expired")
    assert "before PO 4500012 starts (2026-01-10)" in finding.what


def test_po_currency_mismatch_blocks() -> None:
    context = clean_context(purchase_orders=(po(currency="USD"),))
    finding = only(verify_invoice(draft(po_number="4500012"), context), "po_currency")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == "draft inv_draft is in EUR but PO 4500012 is in USD"
    assert (finding.expected, finding.actual) == ("USD", "EUR")


def test_line_price_differs_from_the_po_blocks() -> None:
    invoice = draft(line(unit_price="110.00"), po_number="4500012")
    finding = only(verify_invoice(invoice, clean_context()), "po_price")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == (
        "line 1 (Consulting) is priced 110.00 but PO 4500012 line 1 says 100.00"
    )
    assert (finding.expected, finding.actual) == ("100.00", "110.00")
    assert finding.where.purchase_order_line_id == "pol_1"


def test_sub_cent_po_prices_are_compared_exactly() -> None:
    order = po(
        lines=(
            PurchaseOrderLine("pol_1", 1, "API calls", D(1_000_000), D("0.0006"), D(0), "prod_api"),
        ),
        ceiling_minor=None,
    )
    calls = line(
        description="API calls",
        product_id="prod_api",
        quantity="100000",
        unit_price="0.00061",
        kind="usage",
        bills_time=False,
    )
    finding = only(
        verify_invoice(draft(calls, po_number="4500012"), InvoiceContext(purchase_orders=(order,))),
        "po_price",
    )
    assert (finding.expected, finding.actual) == ("0.0006", "0.00061")


def test_a_line_not_on_the_po_is_a_warning() -> None:
    extra = line(
        2,
        description="Travel",
        product_id="prod_travel",
        quantity="1",
        unit_price="80",
        bills_time=False,
    )
    invoice = draft(line(), extra, po_number="4500012")
    finding = only(verify_invoice(invoice, clean_context()), "po_unlisted_line")
    assert finding.severity is Severity.WARNING
    assert finding.what == "line 2 (Travel) matches no line of PO 4500012"


def test_po_lines_match_by_description_when_there_is_no_product() -> None:
    manual = line(product_id=None, description="  consulting ", kind="manual", bills_time=False)
    invoice = draft(manual, po_number="4500012")
    assert "po_unlisted_line" not in checks(verify_invoice(invoice, clean_context()))


def test_quantity_above_the_po_remainder_blocks() -> None:
    context = clean_context(
        purchase_orders=(po(lines=(replace(po().lines[0], consumed_quantity=D("95")),)),)
    )
    finding = only(verify_invoice(draft(po_number="4500012"), context), "po_quantity")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == (
        "draft inv_draft bills 10 of PO 4500012 line 1 (Consulting) but only 5 of 100 remain"
    )
    assert (finding.expected, finding.actual) == ("at most 5", "10")


def test_quantities_of_several_lines_add_up_against_the_po_line() -> None:
    order = po(lines=(replace(po().lines[0], consumed_quantity=D(85)),))
    invoice = draft(
        line(1, quantity="8", time_entry_ids=("te_1",)),
        line(2, quantity="8", period=FEB, time_entry_ids=("te_2",)),
        po_number="4500012",
    )
    context = clean_context(
        purchase_orders=(order,),
        time_entries=hours(("te_1", "2026-01-10", "8"), ("te_2", "2026-02-10", "8")),
    )
    finding = only(verify_invoice(invoice, context), "po_quantity")
    assert finding.actual == "16"


def test_total_above_the_po_ceiling_blocks() -> None:
    context = clean_context(purchase_orders=(po(ceiling_minor=1_050_000),))
    finding = only(verify_invoice(draft(po_number="4500012"), context), "po_ceiling")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == (
        "draft inv_draft comes to 1000.00 EUR before tax but only 500.00 EUR of PO 4500012's "
        "10500.00 EUR ceiling is left"
    )
    # Exactly at the ceiling is fine.
    exact = clean_context(purchase_orders=(po(ceiling_minor=1_100_000),))
    assert "po_ceiling" not in checks(verify_invoice(draft(po_number="4500012"), exact))


def test_the_ceiling_counts_discounts_but_not_tax() -> None:
    context = clean_context(purchase_orders=(po(ceiling_minor=1_090_000),))
    discounted = draft(po_number="4500012", discount_minor=10_000)
    assert "po_ceiling" not in checks(verify_invoice(discounted, context))


# -- contracts -------------------------------------------------------------------------------------


def contract(**values: object) -> ContractTerms:
    base: dict[str, object] = {
        "id": "ctr_1",
        "reference": "MSA-2026",
        "start_date": date(2025, 7, 1),
        "end_date": date(2026, 6, 30),
        "prices": (
            ContractPrice("prod_consulting", D("90.00"), date(2025, 7, 1), date(2025, 12, 31)),
            ContractPrice("prod_consulting", D("100.00"), date(2026, 1, 1)),
        ),
        "discount_percent_max": D(5),
    }
    base.update(values)
    return ContractTerms(**base)  # type: ignore[arg-type]


def test_price_differs_from_the_contracted_price_version_blocks() -> None:
    context = InvoiceContext(contracts=(contract(),), time_entries=CLEAN_TIME)
    assert verify_invoice(draft(), context) == ()
    # December work is billed at December's version.
    december = line(period=Period(date(2025, 12, 1), date(2026, 1, 1)), quantity="4")
    december_time = hours(("te_9", "2025-12-03", "4"))
    finding = only(
        verify_invoice(draft(december), replace(context, time_entries=december_time)),
        "contract_price",
    )
    assert finding.severity is Severity.BLOCKING
    assert finding.what == (
        "line 1 (Consulting) is priced 100.00 but contract MSA-2026 says 90.00 from 2025-07-01"
    )
    assert (finding.expected, finding.actual) == ("90.00", "100.00")
    assert finding.where.contract_reference == "MSA-2026"


def test_no_contracted_price_in_force_blocks() -> None:
    gap = contract(
        prices=(ContractPrice("prod_consulting", D(90), date(2025, 7, 1), date(2025, 12, 31)),)
    )
    finding = only(
        verify_invoice(draft(), InvoiceContext(contracts=(gap,), time_entries=CLEAN_TIME)),
        "contract_price",
    )
    assert "has no price for consulting in force on 2026-01-01" in finding.what


def test_billed_outside_the_contract_dates_blocks() -> None:
    ended = contract(end_date=date(2026, 1, 20))
    finding = only(
        verify_invoice(draft(), InvoiceContext(contracts=(ended,), time_entries=CLEAN_TIME)),
        "contract_dates",
    )
    assert finding.severity is Severity.BLOCKING
    assert finding.what == (
        "line 1 (Consulting) bills 2026-01-01 to 2026-01-31, outside contract MSA-2026 "
        "(2025-07-01 to 2026-01-20)"
    )
    # A line explicitly under a contract is held to its dates even without contract prices.
    bare = contract(prices=(), end_date=date(2025, 12, 31))
    linked = draft(line(contract_id="ctr_1"))
    assert checks(
        verify_invoice(linked, InvoiceContext(contracts=(bare,), time_entries=CLEAN_TIME))
    ) == ["contract_dates"]


def test_discount_not_in_the_contract_blocks() -> None:
    context = InvoiceContext(contracts=(contract(),), time_entries=CLEAN_TIME)
    allowed = draft(discounts=(Discount("manual-1", "Loyalty 5%", "percent", D(5)),))
    assert verify_invoice(allowed, context) == ()
    too_much = draft(discounts=(Discount("manual-1", "Goodwill 10%", "percent", D(10)),))
    finding = only(verify_invoice(too_much, context), "contract_discount")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == "discount Goodwill 10% (10%) is not in contract MSA-2026"
    assert (finding.expected, finding.actual) == ("at most 5%", "10%")


def test_fixed_discounts_and_coupons_against_the_contract() -> None:
    terms = contract(discount_percent_max=None, allowed_coupon_codes=("PARTNER",))
    context = InvoiceContext(contracts=(terms,), time_entries=CLEAN_TIME)
    coupon = draft(discounts=(Discount("PARTNER", "Partner", "percent", D(20), "PARTNER"),))
    assert verify_invoice(coupon, context) == ()
    fixed = draft(discounts=(Discount("manual-1", "Goodwill", "fixed", D("50.00")),))
    finding = only(verify_invoice(fixed, context), "contract_discount")
    assert finding.actual == "50.00 EUR (5.00%)"
    assert finding.expected == "no discount or coupons PARTNER"


# -- time sheets and service reports ---------------------------------------------------------------


def test_billed_hours_above_approved_hours_block() -> None:
    finding = only(verify_invoice(draft(line(quantity="12")), clean_context()), "time_hours")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == (
        "line 1 (Consulting) bills 12 hours but the approved time sheets show 10 for "
        "2026-01-01 to 2026-01-31"
    )
    assert finding.where.time_entry_ids == ("te_1", "te_2")


def test_billed_hours_below_approved_hours_warn() -> None:
    finding = only(verify_invoice(draft(line(quantity="8")), clean_context()), "time_hours")
    assert finding.severity is Severity.WARNING
    assert "revenue not billed" in finding.why


def test_unapproved_and_other_periods_time_does_not_count() -> None:
    entries = (
        CLEAN_TIME
        + hours(("te_3", "2026-01-25", "5"), status="draft")
        + hours(("te_4", "2026-02-02", "7"))
    )
    assert "time_hours" not in checks(verify_invoice(draft(), clean_context(time_entries=entries)))


def test_billing_named_time_entries_that_are_not_approved_blocks() -> None:
    entries = hours(("te_1", "2026-01-12", "6")) + hours(
        ("te_2", "2026-01-20", "4"), status="rejected"
    )
    invoice = draft(line(time_entry_ids=("te_1", "te_2")))
    finding = only(verify_invoice(invoice, InvoiceContext(time_entries=entries)), "time_hours")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == "line 1 (Consulting) bills 1 time entries that are not approved"
    assert finding.where.time_entry_ids == ("te_2",)


def test_lines_without_time_are_not_matched_against_time_sheets() -> None:
    fee = line(
        description="Setup", product_id="prod_setup", kind="one_off", quantity="1", bills_time=False
    )
    assert verify_invoice(draft(fee), InvoiceContext()) == ()


def test_service_billed_without_a_service_report_blocks() -> None:
    visit = line(
        description="On-site repair",
        product_id="prod_repair",
        kind="one_off",
        quantity="2",
        unit_price="250",
        bills_time=False,
    )
    context = InvoiceContext(report_products=frozenset({"prod_repair"}))
    finding = only(verify_invoice(draft(visit), context), "service_report")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == "line 1 (On-site repair) bills a service with no approved service report"
    reports = (
        ServiceReport("sr_1", "prod_repair", date(2026, 1, 14), D(1), "approved"),
        ServiceReport("sr_2", "prod_repair", date(2026, 1, 28), D(1), "draft"),
    )
    short = only(
        verify_invoice(draft(visit), replace(context, service_reports=reports)), "service_report"
    )
    assert short.what == "line 1 (On-site repair) bills 2 but approved service reports cover 1"
    approved = tuple(replace(r, status="approved") for r in reports)
    assert verify_invoice(draft(visit), replace(context, service_reports=approved)) == ()


# -- duplicates ------------------------------------------------------------------------------------


def issued(**values: object) -> OtherInvoice:
    base: dict[str, object] = {
        "id": "inv_old",
        "number": "INV-2026-000007",
        "status": "issued",
        "currency": "EUR",
        "total_minor": 99_900,
        "day": date(2026, 1, 2),
        "lines": (OtherLine("ol_1", 1, D("100"), "subscription", "prod_platform", JAN, "sub_1"),),
    }
    base.update(values)
    return OtherInvoice(**base)  # type: ignore[arg-type]


def platform(position: int = 1, **values: object) -> DraftLine:
    base: dict[str, object] = {
        "description": "Platform",
        "product_id": "prod_platform",
        "product_code": "platform",
        "kind": "subscription",
        "subscription_id": "sub_1",
        "quantity": "1",
        "unit_price": "100",
        "period": FEB,
        "bills_time": False,
    }
    base.update(values)
    return line(position, **base)


def test_same_customer_product_and_period_billed_twice_blocks() -> None:
    context = InvoiceContext(other_invoices=(issued(),))
    assert verify_invoice(draft(platform()), context) == ()
    again = draft(platform(period=JAN))
    finding = only(verify_invoice(again, context), "duplicate_charge")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == (
        "line 1 (Platform) bills platform for 2026-01-01 to 2026-01-31, already billed on "
        "invoice INV-2026-000007"
    )
    assert finding.where.other_invoice_number == "INV-2026-000007"


def test_duplicates_on_the_same_invoice_block() -> None:
    twice = draft(platform(1), platform(2))
    finding = only(verify_invoice(twice, InvoiceContext()), "duplicate_charge")
    assert finding.where.line_position == 2
    assert "line 1 already does" in finding.what


def test_corrections_and_other_subscriptions_are_not_duplicates() -> None:
    credit = platform(2, kind="adjustment", amount=D(-50), quantity="-1")
    other_seat = platform(3, subscription_id="sub_2")
    assert verify_invoice(draft(platform(1), credit, other_seat), InvoiceContext()) == ()


def test_the_same_time_entry_on_two_invoices_is_a_duplicate() -> None:
    old = issued(
        lines=(
            OtherLine(
                "ol_1",
                1,
                D(600),
                "time_and_materials",
                "prod_consulting",
                JAN,
                time_entry_ids=("te_1",),
            ),
        )
    )
    invoice = draft(line(quantity="6", time_entry_ids=("te_1",)))
    context = InvoiceContext(time_entries=CLEAN_TIME, other_invoices=(old,))
    assert checks(verify_invoice(invoice, context)) == ["duplicate_charge"]
    # Two workers' lines for the same month are not duplicates of each other.
    split = draft(
        line(1, quantity="6", time_entry_ids=("te_1",)),
        line(2, quantity="4", time_entry_ids=("te_2",)),
    )
    assert verify_invoice(split, InvoiceContext(time_entries=CLEAN_TIME)) == ()


def test_a_po_line_billed_twice_blocks() -> None:
    setup = PurchaseOrderLine("pol_9", 9, "Implementation", D(1), D(5000), D(1), "prod_impl")
    order = po(lines=(setup,), ceiling_minor=None)
    fee = line(
        description="Implementation",
        product_id="prod_impl",
        kind="one_off",
        quantity="1",
        unit_price="5000",
        period=None,
        bills_time=False,
    )
    before = issued(
        lines=(
            OtherLine(
                "ol_9",
                1,
                D(5000),
                "one_off",
                "prod_impl",
                purchase_order_line_id="pol_9",
                quantity=D(1),
            ),
        )
    )
    context = InvoiceContext(purchase_orders=(order,), other_invoices=(before,))
    findings = verify_invoice(draft(fee, po_number="4500012"), context)
    finding = only(findings, "duplicate_po_line")
    assert finding.severity is Severity.BLOCKING
    assert finding.what == (
        "line 1 (Implementation) bills PO 4500012 line 9 (Implementation), already billed on "
        "invoice INV-2026-000007"
    )
    assert "po_quantity" in checks(findings)


def test_monthly_billing_of_one_po_line_is_not_a_duplicate() -> None:
    order = po(
        lines=(PurchaseOrderLine("pol_1", 1, "Platform", D(12), D(100), D(1), "prod_platform"),),
        ceiling_minor=None,
    )
    before = issued(
        lines=(
            OtherLine(
                "ol_1",
                1,
                D(100),
                "subscription",
                "prod_platform",
                JAN,
                "sub_1",
                purchase_order_line_id="pol_1",
            ),
        )
    )
    context = InvoiceContext(purchase_orders=(order,), other_invoices=(before,))
    assert verify_invoice(draft(platform(), po_number="4500012"), context) == ()
    findings = verify_invoice(draft(platform(period=JAN), po_number="4500012"), context)
    assert set(checks(findings)) == {"duplicate_charge", "duplicate_po_line"}


def test_near_duplicate_invoice_warns() -> None:
    invoice = draft(platform())
    close = issued(total_minor=invoice.total_minor, day=date(2026, 1, 28), lines=())
    finding = only(
        verify_invoice(invoice, InvoiceContext(other_invoices=(close,))), "near_duplicate"
    )
    assert finding.severity is Severity.WARNING
    assert finding.what == (
        "draft inv_draft for 119.00 EUR looks like invoice INV-2026-000007 of 2026-01-28 "
        "(4 days apart, same amount)"
    )
    far = replace(close, day=date(2026, 1, 2))
    assert verify_invoice(invoice, InvoiceContext(other_invoices=(far,))) == ()
    wide = VerificationSettings(near_duplicate_days=30)
    assert checks(verify_invoice(invoice, InvoiceContext(other_invoices=(far,)), wide)) == [
        "near_duplicate"
    ]


# -- anomaly ---------------------------------------------------------------------------------------


def history(*totals: int) -> tuple[OtherInvoice, ...]:
    return tuple(
        issued(id=f"inv_{i}", number=f"INV-{i}", total_minor=t, day=date(2025, 6 + i, 1), lines=())
        for i, t in enumerate(totals)
    )


def test_a_total_far_from_the_trailing_average_warns() -> None:
    invoice = draft(platform())  # 119.00 EUR
    usual = InvoiceContext(other_invoices=history(10_000, 12_000, 11_000))
    assert verify_invoice(invoice, usual) == ()
    low = InvoiceContext(other_invoices=history(30_000, 28_000, 32_000))
    finding = only(verify_invoice(invoice, low), "anomaly")
    assert finding.severity is Severity.WARNING
    assert finding.what == (
        "draft inv_draft totals 119.00 EUR, 60.3% below Kunde AG's trailing average of 300.00 "
        "EUR (the median of the last 3 invoices)"
    )
    assert finding.expected == "within 50% of 300.00 EUR"
    strict = VerificationSettings(anomaly_percent=D(10))
    assert checks(
        verify_invoice(
            invoice, InvoiceContext(other_invoices=history(10_000, 10_000, 10_000)), strict
        )
    ) == ["anomaly"]
    off = VerificationSettings(anomaly_percent=None)
    assert verify_invoice(invoice, low, off) == ()


def test_too_little_history_is_no_anomaly() -> None:
    invoice = draft(platform())
    assert verify_invoice(invoice, InvoiceContext(other_invoices=history(1_000, 1_000))) == ()


# -- revenue leakage -------------------------------------------------------------------------------


def due(kind: str, **values: object) -> DueItem:
    base: dict[str, object] = {
        "kind": kind,
        "id": f"{kind}_1",
        "customer_id": "cus_1",
        "customer_name": "Kunde AG",
        "description": "Plan Pro",
        "due_on": date(2026, 1, 1),
    }
    base.update(values)
    return DueItem(**base)  # type: ignore[arg-type]


def test_every_kind_of_unbilled_item_warns_and_attaches_to_the_customers_draft() -> None:
    items = [
        due("subscription", description="Subscription to Pro"),
        due("charge", description="Travel costs", amount=D("80"), currency="EUR"),
        due(
            "milestone",
            description="MSA-2026: milestone Go-live",
            contract_id="ctr_1",
            contract_reference="MSA-2026",
        ),
        due("usage", description="12 usage events for metric api_calls wait in quarantine"),
        due("time", description="6 hours of consulting in 2026-01", time_entry_ids=("te_1",)),
        due("charge", id="later", due_on=date(2026, 3, 1)),
    ]
    findings = unbilled_findings(items, date(2026, 2, 1), {"cus_1": draft()})
    assert sorted(checks(findings)) == [
        "unbilled_charge",
        "unbilled_milestone",
        "unbilled_subscription",
        "unbilled_time",
        "unbilled_usage",
    ]
    assert all(f.severity is Severity.WARNING for f in findings)
    assert all(f.where.invoice_id == "inv_draft" for f in findings)
    charge = only(findings, "unbilled_charge")
    assert charge.what == "Travel costs: due since 2026-01-01 and on no invoice (Kunde AG)"
    assert charge.actual == "not invoiced: 80.00 EUR"
    milestone = only(findings, "unbilled_milestone")
    assert milestone.where.contract_reference == "MSA-2026"
    assert milestone.what == (
        "MSA-2026: milestone Go-live: completed on 2026-01-01 and not invoiced (Kunde AG)"
    )
    assert only(findings, "unbilled_subscription").what == (
        "Subscription to Pro: a billing period was due on 2026-01-01 and is on no invoice "
        "(Kunde AG)"
    )
    assert only(findings, "unbilled_time").what == (
        "6 hours of consulting in 2026-01: approved and not billed (Kunde AG)"
    )
    assert only(findings, "unbilled_usage").what == (
        "12 usage events for metric api_calls wait in quarantine (Kunde AG)"
    )
    assert only(findings, "unbilled_time").where.time_entry_ids == ("te_1",)
    alone = unbilled_findings(items[:1], date(2026, 2, 1))
    assert alone[0].where.invoice_id is None and alone[0].where.subject_id == "subscription_1"


def test_the_check_table_is_complete() -> None:
    families = {c.family for c in CHECKS.values()}
    assert families == {"po", "contract", "time", "duplicate", "leakage", "anomaly"}


# -- properties ------------------------------------------------------------------------------------


@st.composite
def clean_cases(draw: st.DrawFn) -> tuple[DraftInvoice, InvoiceContext]:
    """A draft built from its own PO and approved time sheets: nothing to find."""
    count = draw(st.integers(1, 5))
    prices = draw(
        st.lists(st.decimals(D("0.01"), D("999.99"), places=2), min_size=count, max_size=count)
    )
    quantities = draw(st.lists(st.integers(1, 40), min_size=count, max_size=count))
    consumed = draw(st.lists(st.integers(0, 60), min_size=count, max_size=count))
    lines, po_lines, entries = [], [], []
    for i in range(count):
        product = f"prod_{i}"
        po_lines.append(
            PurchaseOrderLine(
                f"pol_{i}",
                i + 1,
                f"Service {i}",
                D(quantities[i] + consumed[i] + draw(st.integers(0, 5))),
                prices[i],
                D(consumed[i]),
                product,
            )
        )
        split = draw(st.integers(1, quantities[i]))
        entries += [
            TimeEntry(
                f"te_{i}_a", date(2026, 1, draw(st.integers(1, 31))), D(split), "approved", product
            ),
            TimeEntry(
                f"te_{i}_b",
                date(2026, 1, draw(st.integers(1, 31))),
                D(quantities[i] - split),
                "approved",
                product,
            ),
        ]
        lines.append(
            DraftLine(
                id=f"line_{i}",
                position=i + 1,
                description=f"Service {i}",
                quantity=D(quantities[i]),
                unit_price=prices[i],
                amount=quantities[i] * prices[i],
                kind="time_and_materials",
                product_id=product,
                period=JAN,
                bills_time=True,
            )
        )
    subtotal = sum(int(x.amount * 100) for x in lines)
    invoice = draft(*lines, po_number="4500012", subtotal_minor=subtotal, total_minor=subtotal)
    order = po(
        lines=tuple(po_lines),
        ceiling_minor=subtotal + draw(st.integers(0, 10_000)),
        consumed_minor=0,
    )
    return invoice, InvoiceContext(purchase_orders=(order,), time_entries=tuple(entries))


@settings(max_examples=150)
@given(clean_cases())
def test_a_draft_built_from_its_own_po_and_time_sheets_has_no_findings(
    case: tuple[DraftInvoice, InvoiceContext],
) -> None:
    invoice, context = case
    assert verify_invoice(invoice, context) == ()


@st.composite
def messy_cases(draw: st.DrawFn) -> tuple[DraftInvoice, InvoiceContext]:
    invoice, context = draw(clean_cases())
    lines = list(invoice.lines)
    for index, current in enumerate(lines):
        lines[index] = replace(
            current,
            unit_price=current.unit_price + draw(st.sampled_from([D(0), D("0.5")])),
            quantity=current.quantity + draw(st.integers(0, 3)),
            period=draw(st.sampled_from([JAN, FEB, Period(date(2026, 1, 15), date(2026, 2, 15))])),
            product_id=draw(st.sampled_from([current.product_id, "prod_0", "prod_x"])),
        )
    order = context.purchase_orders[0]
    order = replace(
        order,
        valid_to=draw(st.sampled_from([None, date(2026, 1, 20)])),
        ceiling_minor=draw(st.sampled_from([None, 100, order.ceiling_minor])),
    )
    return replace(invoice, lines=tuple(lines), po_required=draw(st.booleans())), replace(
        context, purchase_orders=(order,)
    )


@settings(max_examples=150)
@given(messy_cases(), st.randoms(use_true_random=False))
def test_findings_are_deterministic_and_independent_of_line_order(
    case: tuple[DraftInvoice, InvoiceContext], random: object
) -> None:
    invoice, context = case
    first = verify_invoice(invoice, context)
    assert verify_invoice(invoice, context) == first
    shuffled = list(invoice.lines)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    assert verify_invoice(replace(invoice, lines=tuple(shuffled)), context) == first
    assert len({f.key for f in first}) == len(first)
    # Blocking findings come first.
    severities = [f.severity for f in first]
    assert severities == sorted(severities, key=lambda s: s is not Severity.BLOCKING)


@settings(max_examples=100)
@given(messy_cases())
def test_every_priced_line_that_differs_from_its_po_line_is_caught(
    case: tuple[DraftInvoice, InvoiceContext],
) -> None:
    invoice, context = case
    order = context.purchase_orders[0]
    by_product = {p.product_id: p for p in order.lines}
    caught = {f.where.line_id for f in verify_invoice(invoice, context) if f.check == "po_price"}
    for current in invoice.lines:
        po_line = by_product.get(current.product_id)
        if po_line is not None and current.unit_price != po_line.unit_price:
            assert current.id in caught
