"""The EPC payment QR payload (EPC069-12, version 002): written and read back for any payment,
bad input refused with the element at fault, and the QR code decoded from its own image."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.core.references import creditor_reference
from tallybook.formats.epc_qr import (
    CreditTransfer,
    EpcError,
    epc_payload,
    epc_qr_png,
    read_epc_payload,
)

IBANS = ["DE44500105175407324931", "FR1420041010050500013M02606", "GB33BUKB20201555555555"]


def test_the_payload_element_by_element() -> None:
    payload = epc_payload(
        CreditTransfer(
            "Northwind Cloud GmbH",
            "DE44 5001 0517 5407 3249 31",
            "INGDDEFFXXX",
            Decimal("1234.50"),
            creditor_reference("INV-2026-000123"),
        )
    )
    assert payload.split("\n") == [
        "BCD",
        "002",
        "1",
        "SCT",
        "INGDDEFFXXX",
        "Northwind Cloud GmbH",
        "DE44500105175407324931",
        "EUR1234.50",
        "",
        "RF98INV2026000123",
    ]


def test_without_reference_the_number_goes_as_text_and_bic_is_optional() -> None:
    payload = epc_payload(CreditTransfer("Acme", IBANS[1], None, Decimal("10.00"), None, "INV-7"))
    assert payload.split("\n")[4] == "" and payload.endswith("\n\nINV-7")
    transfer = read_epc_payload(payload)
    assert (transfer.bic, transfer.reference, transfer.text) == (None, None, "INV-7")


@pytest.mark.parametrize(
    ("transfer", "field"),
    [
        (CreditTransfer("Acme", "DE00 1234"), "iban"),
        (CreditTransfer("Acme", IBANS[0], "NOTABIC!"), "bic"),
        (CreditTransfer("Acme", IBANS[0], amount=Decimal("0")), "amount"),
        (CreditTransfer("Acme", IBANS[0], amount=Decimal("1000000000")), "amount"),
        (CreditTransfer("Acme", IBANS[0], amount=Decimal("1.005")), "amount"),
        (CreditTransfer("Acme", IBANS[0], reference="RF00XYZ"), "reference"),
        (CreditTransfer("  ", IBANS[0]), "name"),
        (CreditTransfer("Acme", IBANS[0], purpose="TOO LONG"), "purpose"),
    ],
)
def test_bad_payments_are_refused_naming_the_element(transfer: CreditTransfer, field: str) -> None:
    with pytest.raises(EpcError) as error:
        epc_payload(transfer)
    assert str(error.value).startswith(field)


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(min_size=1, max_size=120).filter(lambda s: s.split()),
    iban=st.sampled_from(IBANS),
    cents=st.integers(min_value=1, max_value=99_999_999_999),
    number=st.from_regex(r"[A-Z]{2,4}-20[0-9]{2}-[0-9]{6}", fullmatch=True),
    structured=st.booleans(),
)
def test_any_payment_reads_back_as_written(
    name: str, iban: str, cents: int, number: str, structured: bool
) -> None:
    amount = Decimal(cents).scaleb(-2)
    transfer = CreditTransfer(
        name,
        iban,
        "INGDDEFFXXX",
        amount,
        creditor_reference(number) if structured else None,
        None if structured else number,
    )
    payload = epc_payload(transfer)
    assert len(payload.encode()) <= 331
    back = read_epc_payload(payload)
    assert back.amount == amount and back.iban == iban
    assert back.name == " ".join(name.split())[:70].strip()
    assert (back.reference, back.text) == (
        (creditor_reference(number), None) if structured else (None, number)
    )


def test_the_qr_image_decodes_to_the_payload() -> None:
    import zxingcpp
    from PIL import Image

    payload = epc_payload(
        CreditTransfer("Café Müller GmbH", IBANS[0], None, Decimal("99.95"), None, "Rechnung 7")
    )
    image = Image.open(io.BytesIO(epc_qr_png(payload, scale=6)))
    (code,) = zxingcpp.read_barcodes(image)
    assert code.text == payload
