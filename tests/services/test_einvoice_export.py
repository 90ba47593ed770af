"""A period's invoices as one ZIP of e-invoices, read in a few queries for all of them: the
same documents as one by one, each valid."""

from __future__ import annotations

import io
import zipfile
from datetime import date

import pytest
from test_einvoices import checker, german_customer, seller_org  # noqa: F401

from tallybook.core.einvoice import DocumentKind
from tallybook.formats.ubl import to_ubl
from tallybook.services import catalog, einvoices, invoices
from tallybook.services.base import Conflict, Database, InvalidInput, NotFound


def _issue(db: Database, actor, customer, product_id: str, hours: str, discount: str | None):
    draft = invoices.create_draft(db, actor, customer.id, {"po_number": "PO-7781"})
    invoices.add_line(
        db,
        actor,
        draft.id,
        {"description": "Workshop", "quantity": hours, "unit_price": "135",
         "product_id": product_id},
    )
    if discount:
        invoices.update_draft(
            db, actor, draft.id, {"discounts": [{"kind": "percent", "value": discount}]}
        )
    return invoices.issue_invoice(db, actor, draft.id, issue_date=date(2026, 3, 2))


def test_a_period_exports_every_issued_invoice_valid_and_as_one_by_one(
    db: Database, checker  # noqa: F811
) -> None:
    actor = seller_org(db)
    customer = german_customer(db, actor)
    days = catalog.create_product(
        db, actor, {"code": "services", "name": "Services", "unit_label": "days"}
    )
    issued = [
        _issue(db, actor, customer, days.id, hours, discount)
        for hours, discount in (("3", "20"), ("1.5", None), ("2", "5"))
    ]
    draft = invoices.create_draft(db, actor, customer.id)  # drafts are never exported
    batch = einvoices.invoice_einvoices(db, actor, [i.id for i in issued])
    single = [einvoices.einvoice_for(db, actor, i.id, "invoice") for i in issued]
    assert batch == single
    assert all(doc.kind is DocumentKind.INVOICE for doc in batch)

    day = issued[0].issue_date
    content = einvoices.export_invoices(db, actor, day, day, "ubl")
    assert content == einvoices.export_invoices(db, actor, day, day, "ubl")  # same bytes
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        names = archive.namelist()
        assert names == sorted(f"{i.number}-ubl.xml" for i in issued)
        for name, document in zip(names, sorted(single, key=lambda d: d.number), strict=True):
            xml = archive.read(name)
            assert xml == to_ubl(document)
            report = checker.validate(xml)
            assert report.valid, report
    cii = einvoices.export_invoices(db, actor, day, day, "cii")
    with zipfile.ZipFile(io.BytesIO(cii)) as archive:
        for name in archive.namelist():
            assert checker.validate(archive.read(name)).valid
    assert draft.id not in str(names)

    with pytest.raises(Conflict):
        einvoices.invoice_einvoices(db, actor, [issued[0].id, draft.id])
    with pytest.raises(InvalidInput):
        einvoices.export_invoices(db, actor, day, day, "pdf")
    with pytest.raises(InvalidInput):
        einvoices.export_invoices(db, actor, date(2026, 2, 1), date(2026, 1, 1), "ubl")
    stranger = seller_org(db)
    with pytest.raises(NotFound):
        einvoices.invoice_einvoices(db, stranger, [issued[0].id])
    empty = einvoices.export_invoices(db, stranger, day, day, "ubl")
    assert zipfile.ZipFile(io.BytesIO(empty)).namelist() == []


def test_the_export_over_http_and_the_command_line(db: Database, tmp_path) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from tallybook.api.app import create_app
    from tallybook.cli.main import app as cli
    from tallybook.services import organizations

    actor = seller_org(db)
    customer = german_customer(db, actor)
    days = catalog.create_product(db, actor, {"code": "days", "name": "Days", "unit_label": "days"})
    invoice = _issue(db, actor, customer, days.id, "2", None)
    key = organizations.create_api_key(db, actor, "export", "viewer").secret
    client = TestClient(create_app(db))
    answer = client.get(
        "/v1/einvoices/export",
        params={"from": "2026-03-01", "to": "2026-03-31", "syntax": "cii"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
    assert names == [f"{invoice.number}-cii.xml"]
    bad = client.get(
        "/v1/einvoices/export",
        params={"from": "2026-03-31", "to": "2026-03-01"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert bad.status_code == 422 and bad.json()["field"] == "to"
    result = CliRunner().invoke(
        cli,
        ["einvoice", "export", "--from", "2026-03-01", "--to", "2026-03-31",
         "-o", str(tmp_path / "march.zip")],
        env={"TALLYBOOK_API_KEY": key, "TALLYBOOK_DATABASE_URL": db.url},
    )
    assert result.exit_code == 0, result.output
    assert "1 UBL invoices" in result.stdout
    assert zipfile.ZipFile(tmp_path / "march.zip").namelist() == [f"{invoice.number}-ubl.xml"]
