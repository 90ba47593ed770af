"""The customer portal's service (SQLite and PostgreSQL): links signed over the organisation,
the customer and the expiry, refused once expired, forged, revoked or signed for someone else;
key rotation; a link sees its own customer's documents and nothing of any other customer's or
organisation's; disputes recorded with the right invoice and line, once per form; downloads
are the very bytes of the documents; the tokens' properties (hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from portal_world import OTHER_SECRET_KEY, TEST_SECRET_KEY, portal_world

from tallybook.db.models import AuditEvent, Discrepancy, Invoice, PortalLink
from tallybook.services import (
    credit_notes,
    discrepancies,
    documents,
    einvoices,
    invoices,
    organizations,
    portal,
)
from tallybook.services.base import (
    Actor,
    Conflict,
    Database,
    Forbidden,
    InvalidInput,
    NotFound,
    Role,
    utcnow,
)
from tallybook.services.webhooks import NotConfigured

PUBLIC = "https://billing.northwind.example"


@pytest.fixture(autouse=True)
def signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLYBOOK_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("TALLYBOOK_PUBLIC_URL", PUBLIC + "/")


def token_of(url: str) -> str:
    assert url.startswith(PUBLIC + "/portal/")
    return url.removeprefix(PUBLIC + "/portal/")


def refused(reason: str, call, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(portal.PortalRefused) as caught:
        call(*args, **kwargs)
    assert caught.value.reason == reason


def disputes_of(db: Database, invoice_id: str) -> list[Discrepancy]:
    with db.reading() as session:
        return list(
            session.query(Discrepancy).filter_by(invoice_id=invoice_id, source="dispute").all()
        )


# -- links ----------------------------------------------------------------------------------------


def test_a_link_is_signed_over_organisation_customer_and_expiry(db: Database) -> None:
    world = portal_world(db)
    before = utcnow()
    issued = portal.create_portal_link(db, world.actor, world.customer.id, 14)
    token = token_of(issued.url)
    assert issued.token == token and len(token) < 400

    claims = portal.read_token(token)
    assert claims == portal.LinkClaims(
        issued.link.id, world.actor.organization_id, world.customer.id, issued.link.expires_at
    )
    # Whole seconds, 14 days from now.
    assert issued.link.expires_at.microsecond == 0
    assert timedelta(days=14) - timedelta(seconds=1) <= issued.link.expires_at - before
    assert issued.link.expires_at - before <= timedelta(days=14, seconds=5)
    # The same claims always sign to the same token: nothing random, nothing stored.
    assert portal.sign_token(claims) == token

    with db.reading() as session:
        row = session.get(PortalLink, issued.link.id)
        assert (row.organization_id, row.customer_id, row.revoked_at) == (
            world.actor.organization_id,
            world.customer.id,
            None,
        )
        assert row.created_by == world.actor.key_id
        event = session.query(AuditEvent).filter_by(entity_id=row.id).one()
    assert event.action == "portal_link.created"
    assert event.data["customer_id"] == world.customer.id and event.data["expires_in_days"] == 14
    assert token not in str(event.data)  # the token itself is kept nowhere

    access = portal.open_portal(db, token)
    assert (access.link_id, access.organization_id, access.customer_id) == (
        issued.link.id,
        world.actor.organization_id,
        world.customer.id,
    )


def test_a_link_opens_until_it_expires(db: Database) -> None:
    world = portal_world(db)
    issued = portal.create_portal_link(db, world.actor, world.customer.id, 1)
    expires = issued.link.expires_at
    portal.open_portal(db, issued.token, now=expires - timedelta(seconds=1))
    refused("expired", portal.open_portal, db, issued.token, now=expires)
    refused("expired", portal.open_portal, db, issued.token, now=expires + timedelta(days=400))
    # Made two days ago for one day: expired now.
    old = portal.create_portal_link(
        db, world.actor, world.customer.id, 1, now=utcnow() - timedelta(days=2)
    )
    refused("expired", portal.open_portal, db, old.token)


def test_forged_and_foreign_tokens_are_refused(db: Database, monkeypatch) -> None:
    world = portal_world(db)
    issued = portal.create_portal_link(db, world.actor, world.customer.id)
    token = issued.token
    payload, signature = token.rsplit(".", 1)
    other_signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    for forged in (
        f"{payload}.{other_signature}",
        f"{payload}X.{signature}",
        payload,
        "",
        "not-a-token",
        token + "." + signature,
        "x" * 5000,
    ):
        refused("invalid", portal.open_portal, db, forged)

    # Validly signed, but the claims do not match the link: another customer, another
    # organisation, another expiry, a link that does not exist.
    link = issued.link
    other_org = portal_world(db)
    for claims in (
        portal.LinkClaims(link.id, link.organization_id, world.other_customer.id, link.expires_at),
        portal.LinkClaims(
            link.id, other_org.actor.organization_id, other_org.customer.id, link.expires_at
        ),
        portal.LinkClaims(
            link.id, link.organization_id, link.customer_id, link.expires_at + timedelta(days=9)
        ),
        portal.LinkClaims("ptl_nothing", link.organization_id, link.customer_id, link.expires_at),
    ):
        refused("invalid", portal.open_portal, db, portal.sign_token(claims))

    # Signed with another key: refused; the key rotated (new key first, old one kept after a
    # comma): still opens, and new links are signed with the new key.
    monkeypatch.setenv("TALLYBOOK_SECRET_KEY", OTHER_SECRET_KEY)
    refused("invalid", portal.open_portal, db, token)
    monkeypatch.setenv("TALLYBOOK_SECRET_KEY", f"{OTHER_SECRET_KEY},{TEST_SECRET_KEY}")
    portal.open_portal(db, token)
    rotated = portal.create_portal_link(db, world.actor, world.customer.id)
    monkeypatch.setenv("TALLYBOOK_SECRET_KEY", OTHER_SECRET_KEY)
    portal.open_portal(db, rotated.token)


def test_revoking_one_link_or_all_of_a_customers_links(db: Database) -> None:
    world = portal_world(db)
    first = portal.create_portal_link(db, world.actor, world.customer.id)
    second = portal.create_portal_link(db, world.actor, world.customer.id)
    theirs = portal.create_portal_link(db, world.actor, world.other_customer.id)

    revoked = portal.revoke_portal_link(db, world.actor, first.link.id)
    assert revoked.revoked_at is not None and revoked.revoked_by == world.actor.key_id
    refused("revoked", portal.open_portal, db, first.token)
    portal.open_portal(db, second.token)
    again = portal.revoke_portal_link(db, world.actor, first.link.id)
    assert again.revoked_at == revoked.revoked_at  # revoking twice changes nothing
    with pytest.raises(NotFound):  # not this customer's link: nothing changes
        portal.revoke_portal_link(db, world.actor, theirs.link.id, customer_id=world.customer.id)
    portal.open_portal(db, theirs.token)

    assert portal.revoke_portal_links(db, world.actor, world.customer.id) == 1  # the second
    refused("revoked", portal.open_portal, db, second.token)
    portal.open_portal(db, theirs.token)  # another customer's link is untouched
    assert [
        portal.link_status(x) for x in portal.list_portal_links(db, world.actor, world.customer.id)
    ] == [
        "revoked",
        "revoked",
    ]
    fresh = portal.create_portal_link(db, world.actor, world.customer.id)
    portal.open_portal(db, fresh.token)
    assert portal.revoke_portal_links(db, world.actor, world.customer.id) == 1


def test_who_may_make_and_revoke_links(db: Database) -> None:
    world = portal_world(db)
    viewer = Actor(world.actor.organization_id, "key_viewer", Role.VIEWER)
    clerk = Actor(world.actor.organization_id, "key_clerk", Role.BILLING_CLERK)
    with pytest.raises(Forbidden):
        portal.create_portal_link(db, viewer, world.customer.id)
    issued = portal.create_portal_link(db, clerk, world.customer.id)
    assert [x.id for x in portal.list_portal_links(db, viewer, world.customer.id)] == [
        issued.link.id
    ]
    with pytest.raises(Forbidden):
        portal.revoke_portal_link(db, viewer, issued.link.id)
    with pytest.raises(Forbidden):
        portal.revoke_portal_links(db, viewer, world.customer.id)

    # Another organisation's customer and link are simply not found.
    other = portal_world(db)
    for call, args in (
        (portal.create_portal_link, (other.customer.id,)),
        (portal.list_portal_links, (other.customer.id,)),
        (portal.revoke_portal_links, (other.customer.id,)),
    ):
        with pytest.raises(NotFound):
            call(db, world.actor, *args)
    other_link = portal.create_portal_link(db, other.actor, other.customer.id)
    with pytest.raises(NotFound):
        portal.revoke_portal_link(db, world.actor, other_link.link.id)
    portal.open_portal(db, other_link.token)


@pytest.mark.parametrize("days", [0, -1, 367, "ten", True, 2.5, None])
def test_the_expiry_must_be_1_to_366_days(db: Database, days) -> None:
    world = portal_world(db)
    with pytest.raises(InvalidInput) as caught:
        portal.create_portal_link(db, world.actor, world.customer.id, days)
    assert caught.value.field == "expires_in_days"
    assert portal.list_portal_links(db, world.actor, world.customer.id) == []


def test_without_a_secret_key_no_link_is_made_or_opened(db: Database, monkeypatch) -> None:
    world = portal_world(db)
    issued = portal.create_portal_link(db, world.actor, world.customer.id)
    monkeypatch.delenv("TALLYBOOK_SECRET_KEY")
    with pytest.raises(NotConfigured):
        portal.create_portal_link(db, world.actor, world.customer.id)
    with pytest.raises(NotConfigured):
        portal.open_portal(db, issued.token)
    assert len(portal.list_portal_links(db, world.actor, world.customer.id)) == 1
    monkeypatch.setenv("TALLYBOOK_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("TALLYBOOK_PUBLIC_URL", "ftp://nowhere")
    with pytest.raises(NotConfigured):
        portal.create_portal_link(db, world.actor, world.customer.id)


# -- what a link shows ----------------------------------------------------------------------------


def test_the_overview_shows_the_customers_issued_documents_only(db: Database) -> None:
    world = portal_world(db)
    _, lines = invoices.get_invoice(db, world.actor, world.invoice.id)
    note = credit_notes.create_credit_note(
        db,
        world.actor,
        world.invoice.id,
        {"reason": "One hour too many", "lines": [{"line_id": lines[0].id, "quantity": "1"}]},
    )
    draft = invoices.create_draft(db, world.actor, world.customer.id, {})
    access = portal.open_portal(
        db, portal.create_portal_link(db, world.actor, world.customer.id).token
    )
    overview = portal.portal_overview(db, access)
    assert [i.number for i in overview.invoices] == [world.invoice.number]
    assert draft.id not in {i.id for i in overview.invoices}
    assert [(n.number, number, n.total_minor) for n, number in overview.credit_notes] == [
        (note.number, world.invoice.number, 14280)  # 120.00 + 19 %
    ]
    assert overview.debit_notes == [] and overview.disputed == frozenset()
    assert overview.customer.id == world.customer.id
    assert overview.seller.name == "Northwind Cloud GmbH"

    detail = portal.portal_invoice(db, access, world.invoice.id)
    assert [(x.position, x.line.description, x.tax_percent) for x in detail.lines] == [
        (1, "Consulting", 19),
        (2, "Handbook", 7),
    ]
    assert "DE VAT 19% on 1200.00 EUR = 228.00 EUR" in detail.lines[0].explanation
    assert "DE VAT reduced 7% on 49.90 EUR = 3.49 EUR" in detail.lines[1].explanation
    assert [n.id for n in detail.credit_notes] == [note.id]
    assert (detail.invoice.total_minor, detail.invoice.amount_due_minor) == (148139, 133859)


def test_a_link_sees_nothing_of_another_customer_or_organisation(db: Database) -> None:
    world = portal_world(db)
    elsewhere = portal_world(db)
    access = portal.open_portal(
        db, portal.create_portal_link(db, world.actor, world.customer.id).token
    )
    _, their_lines = invoices.get_invoice(db, world.actor, world.other_invoice.id)
    their_note = credit_notes.create_credit_note(
        db,
        world.actor,
        world.other_invoice.id,
        {"reason": "x", "lines": [{"line_id": their_lines[0].id, "quantity": "1"}]},
    )
    their_dispute = discrepancies.open_dispute(db, world.actor, world.other_invoice.id, "no")
    draft = invoices.create_draft(db, world.actor, world.customer.id, {})
    invoices.add_line(db, world.actor, draft.id, {"description": "Draft", "unit_price": "1"})

    # Invoices of another customer, another organisation, a draft, an invoice number: 404.
    for invoice_id in (
        world.other_invoice.id,
        elsewhere.invoice.id,
        draft.id,
        world.invoice.number,
    ):
        with pytest.raises(NotFound):
            portal.portal_invoice(db, access, invoice_id)
        for file_format in ("pdf", "ubl", "facturx"):
            with pytest.raises(NotFound):
                portal.portal_file(db, access, "invoice", invoice_id, file_format)
        with pytest.raises(NotFound):
            portal.file_dispute(
                db, portal.sign_token(portal_claims(access)), invoice_id, "Not mine"
            )
    for kind, document_id in (("credit_note", their_note.id), ("debit_note", their_note.id)):
        with pytest.raises(NotFound):
            portal.portal_file(db, access, kind, document_id, "pdf")
    with pytest.raises(NotFound):
        portal.portal_dispute(db, access, their_dispute.discrepancy.id)
    with pytest.raises(NotFound):
        portal.portal_file(db, access, "invoice", world.invoice.id, "exe")
    assert portal.portal_overview(db, access).invoices[0].id == world.invoice.id
    assert disputes_of(db, elsewhere.invoice.id) == []
    assert [d.id for d in disputes_of(db, world.other_invoice.id)] == [their_dispute.discrepancy.id]


def portal_claims(access: portal.PortalAccess) -> portal.LinkClaims:
    return portal.LinkClaims(
        access.link_id, access.organization_id, access.customer_id, access.expires_at
    )


def test_downloads_are_the_documents_own_bytes(db: Database) -> None:
    world = portal_world(db)
    _, lines = invoices.get_invoice(db, world.actor, world.invoice.id)
    note = credit_notes.create_credit_note(
        db,
        world.actor,
        world.invoice.id,
        {"reason": "One hour too many", "lines": [{"line_id": lines[0].id, "quantity": "1"}]},
    )
    access = portal.open_portal(
        db, portal.create_portal_link(db, world.actor, world.customer.id).token
    )
    a = world.actor
    pdf = portal.portal_file(db, access, "invoice", world.invoice.id, "pdf")
    assert pdf.media_type == "application/pdf" and pdf.file_name == f"{world.invoice.number}.pdf"
    assert pdf.content.startswith(b"%PDF")
    assert pdf.content == documents.document_pdf(db, a, "invoice", world.invoice.id).content
    french = portal.portal_file(db, access, "invoice", world.invoice.id, "pdf", language="fr")
    assert french.content == (
        documents.document_pdf(db, a, "invoice", world.invoice.id, language="fr").content
    )
    ubl = portal.portal_file(db, access, "invoice", world.invoice.id, "ubl")
    assert ubl.media_type == "application/xml"
    assert ubl.content == einvoices.einvoice_file(db, a, world.invoice.id, "invoice", "ubl").content
    assert b'<cbc:PayableAmount currencyID="EUR">1481.39</cbc:PayableAmount>' in ubl.content
    facturx = portal.portal_file(db, access, "invoice", world.invoice.id, "facturx")
    assert facturx.content == documents.document_facturx(db, a, world.invoice.id).content
    note_pdf = portal.portal_file(db, access, "credit_note", note.id, "pdf")
    assert note_pdf.content == documents.document_pdf(db, a, "credit_note", note.id).content
    note_ubl = portal.portal_file(db, access, "credit_note", note.id, "ubl")
    assert note_ubl.content == einvoices.einvoice_file(db, a, note.id, "credit_note", "ubl").content
    period = {"date_from": date(2026, 1, 1), "date_to": date(2026, 3, 31)}
    statement = portal.portal_file(db, access, "statement", "ignored", "pdf", **period)
    assert statement.content == (
        documents.document_pdf(db, a, "statement", world.customer.id, **period).content
    )


def test_the_statement_defaults_to_six_months_to_today(db: Database) -> None:
    world = portal_world(db)
    access = portal.open_portal(
        db, portal.create_portal_link(db, world.actor, world.customer.id).token
    )
    shown = portal.portal_statement(db, access, None, None)
    s = shown.view.statement
    months = (s.period_end.year * 12 + s.period_end.month) - (
        s.period_start.year * 12 + s.period_start.month
    )
    assert (s.period_start.day, months) == (1, 5)
    march = portal.portal_statement(db, access, date(2026, 3, 1), date(2026, 3, 31)).view.statement
    assert (march.opening_balance_minor, march.closing_balance_minor) == (0, 148139)
    assert [(x.kind, x.reference, x.debit_minor) for x in march.lines] == [
        ("invoice", world.invoice.number, 148139)
    ]
    with pytest.raises(InvalidInput):
        portal.portal_statement(db, access, date(2026, 4, 1), date(2026, 3, 1))


# -- disputes -------------------------------------------------------------------------------------


def test_a_dispute_of_a_line_is_recorded_once_and_pauses_dunning(db: Database) -> None:
    world = portal_world(db)
    issued = portal.create_portal_link(db, world.actor, world.customer.id)
    _, lines = invoices.get_invoice(db, world.actor, world.invoice.id)

    row = portal.file_dispute(
        db,
        issued.token,
        world.invoice.id,
        "  The handbook\nnever arrived ",
        "2",
        submission="form-0001",
    )
    assert (row.source, row.check, row.status) == ("dispute", "customer_dispute", "open")
    assert (row.invoice_id, row.invoice_line_id, row.customer_id) == (
        world.invoice.id,
        lines[1].id,
        world.customer.id,
    )
    assert row.actual == "The handbook never arrived"
    assert row.location["line_position"] == 2
    assert row.location["via"] == "customer_portal"
    assert row.location["portal_link_id"] == issued.link.id
    assert row.opened_by == issued.link.id
    assert "Kunde GmbH disputes invoice INV-" in row.what and "line 2 (Handbook)" in row.what

    # The same form sent twice: one dispute.
    twice = portal.file_dispute(
        db,
        issued.token,
        world.invoice.id,
        "The handbook never arrived",
        "2",
        submission="form-0001",
    )
    assert twice.id == row.id
    whole = portal.file_dispute(db, issued.token, world.invoice.id, "Too expensive")
    assert whole.invoice_line_id is None and "line_position" not in whole.location

    with db.reading() as session:
        invoice = session.get(Invoice, world.invoice.id)
        actions = [
            e.action for e in session.query(AuditEvent).filter_by(actor=issued.link.id).all()
        ]
    assert invoice.disputed_at is not None and invoice.dispute_reason == row.actual
    assert actions.count("discrepancy.opened") == 2 and actions.count("invoice.disputed") == 1
    assert sorted(d.id for d in disputes_of(db, world.invoice.id)) == sorted([row.id, whole.id])
    # The billing team sees them in the discrepancy workflow.
    listed, _ = discrepancies.list_discrepancies(db, world.actor, source="dispute")
    assert {d.id for d in listed} == {row.id, whole.id}

    access = portal.open_portal(db, issued.token)
    shown = portal.portal_dispute(db, access, row.id)
    assert (shown.dispute.id, shown.invoice_number) == (row.id, world.invoice.number)
    assert portal.portal_overview(db, access).disputed == frozenset({world.invoice.id})
    shown_disputes = portal.portal_invoice(db, access, world.invoice.id).disputes
    assert {d.id for d in shown_disputes} == {row.id, whole.id}


def test_a_dispute_that_cannot_be_recorded_writes_nothing(db: Database) -> None:
    world = portal_world(db)
    issued = portal.create_portal_link(db, world.actor, world.customer.id)
    for reason, line, field in (
        ("", None, "reason"),
        ("  ", None, "reason"),
        ("x" * 2001, None, "reason"),
        ("Wrong", "3", "line"),
        ("Wrong", "zero", "line"),
    ):
        with pytest.raises(InvalidInput) as caught:
            portal.file_dispute(db, issued.token, world.invoice.id, reason, line)
        assert caught.value.field == field
    assert disputes_of(db, world.invoice.id) == []

    # A link revoked a moment ago records nothing.
    portal.revoke_portal_link(db, world.actor, issued.link.id)
    refused("revoked", portal.file_dispute, db, issued.token, world.invoice.id, "Wrong")
    assert disputes_of(db, world.invoice.id) == []

    # A voided invoice is shown, but cannot be disputed.
    invoices.void_invoice(db, world.actor, world.invoice.id, "issued twice")
    fresh = portal.create_portal_link(db, world.actor, world.customer.id)
    access = portal.open_portal(db, fresh.token)
    assert portal.portal_invoice(db, access, world.invoice.id).invoice.status == "void"
    with pytest.raises(Conflict):
        portal.file_dispute(db, fresh.token, world.invoice.id, "Wrong")
    assert disputes_of(db, world.invoice.id) == []


def test_form_tokens_belong_to_their_link(db: Database) -> None:
    world = portal_world(db)
    one = portal.open_portal(
        db, portal.create_portal_link(db, world.actor, world.customer.id).token
    )
    two = portal.open_portal(
        db, portal.create_portal_link(db, world.actor, world.customer.id).token
    )
    portal.check_form_token(one, portal.form_token(one))
    mine = portal.form_token(one)
    changed = ("A" if mine[0] != "A" else "B") + mine[1:]
    for bad in (portal.form_token(two), "", None, "x" * 300, changed):
        refused("form", portal.check_form_token, one, bad)


def test_keys_and_organisations_of_the_world_are_not_shared(db: Database) -> None:
    """Two organisations' admins: each can make links for its own customers only."""
    first = portal_world(db)
    second = portal_world(db)
    key = organizations.create_api_key(db, second.actor, "clerk", "billing_clerk")
    clerk = organizations.authenticate(db, key.secret)
    with pytest.raises(NotFound):
        portal.create_portal_link(db, clerk, first.customer.id)
    portal.create_portal_link(db, clerk, second.customer.id)


# -- the tokens' properties ------------------------------------------------------------------------

ids = st.text(alphabet="abcdef0123456789", min_size=1, max_size=32)
SOME_CLAIMS = portal.LinkClaims(
    "ptl_0123456789abcdef0123456789abcdef",
    "org_0123456789abcdef0123456789abcdef",
    "cus_0123456789abcdef0123456789abcdef",
    datetime(2030, 1, 1, tzinfo=UTC),
)


@settings(max_examples=200, deadline=None)
@given(link=ids, organization=ids, customer=ids, seconds=st.integers(1, 10**9))
def test_a_token_reads_back_as_what_was_signed(link, organization, customer, seconds) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TALLYBOOK_SECRET_KEY", TEST_SECRET_KEY)
        expires = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
        claims = portal.LinkClaims(f"ptl_{link}", f"org_{organization}", f"cus_{customer}", expires)
        token = portal.sign_token(claims)
        assert portal.read_token(token, now=expires - timedelta(seconds=1)) == claims
        with pytest.raises(portal.PortalRefused):
            portal.read_token(token, now=expires)


TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_changed_character_makes_a_token_invalid(data) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TALLYBOOK_SECRET_KEY", TEST_SECRET_KEY)
        token = portal.sign_token(SOME_CLAIMS)
        position = data.draw(st.integers(0, len(token) - 1))
        replacement = data.draw(
            st.sampled_from(TOKEN_ALPHABET).filter(lambda c: c != token[position])
        )
        forged = token[:position] + replacement + token[position + 1 :]
        # base64 padding bits: a few changes of the last character decode to the same bytes;
        # those are the same signature, not a forgery.
        try:
            claims = portal.read_token(forged, now=datetime(2029, 1, 1, tzinfo=UTC))
        except portal.PortalRefused as refused_error:
            assert refused_error.reason == "invalid"
        else:
            assert claims == SOME_CLAIMS and position == len(token) - 1
