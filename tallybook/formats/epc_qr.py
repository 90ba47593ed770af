"""The EPC payment QR code ("GiroCode", EPC069-12): a SEPA credit transfer a customer's banking
app reads from the printed invoice, with the amount and the structured RF reference filled in.

`epc_payload` writes the payload (version 002, UTF-8), `read_epc_payload` reads one back and
`epc_qr_svg` draws it (error correction M, at most version 13, as the guideline asks).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal

import segno
from stdnum import bic as bic_number
from stdnum import iban as iban_number
from stdnum import iso11649
from stdnum.exceptions import ValidationError

__all__ = [
    "CreditTransfer",
    "EpcError",
    "epc_payload",
    "epc_qr_png",
    "epc_qr_svg",
    "read_epc_payload",
]

SERVICE_TAG = "BCD"
VERSION = "002"
UTF8 = "1"
SEPA_CREDIT_TRANSFER = "SCT"
MAX_AMOUNT = Decimal("999999999.99")
MAX_PAYLOAD_BYTES = 331
MAX_QR_VERSION = 13
# Every code is drawn with the same mask pattern instead of trying all eight and scoring them:
# scoring was three quarters of the time a code took (a share of every invoice's PDF), and any
# mask gives a valid code that readers decode. Pattern 6 is the one the scoring picked for most
# EPC payloads of the documents benchmark.
MASK = 6
QUIET_ZONE = 4  # modules of light margin around the code


class EpcError(ValueError):
    """A payment the EPC QR code cannot carry, and why."""


@dataclass(frozen=True)
class CreditTransfer:
    """What the customer's bank pre-fills: who to pay, where, how much, with which reference."""

    name: str
    iban: str
    bic: str | None = None
    amount: Decimal | None = None  # euros; None lets the payer type it
    reference: str | None = None  # ISO 11649 RF creditor reference (structured)
    text: str | None = None  # unstructured remittance information, when there is no reference
    purpose: str | None = None
    note: str | None = None  # beneficiary to originator information


def _single_line(value: str) -> str:
    return " ".join(value.split())


def epc_payload(transfer: CreditTransfer) -> str:
    """The QR payload for a euro credit transfer (EPC069-12 version 002, UTF-8).

    The name is cut to the 70 characters the format allows; a bad IBAN, BIC, amount or
    reference raises EpcError naming it.
    """
    name = _single_line(transfer.name)[:70].strip()
    if not name:
        raise EpcError("name: the beneficiary's name is required")
    try:
        account = iban_number.validate(transfer.iban)
    except ValidationError:
        raise EpcError(f"iban: {transfer.iban!r} is not a valid IBAN") from None
    bank = ""
    if transfer.bic:
        try:
            bank = bic_number.validate(transfer.bic)
        except ValidationError:
            raise EpcError(f"bic: {transfer.bic!r} is not a BIC") from None
    amount = ""
    if transfer.amount is not None:
        if not Decimal("0.01") <= transfer.amount <= MAX_AMOUNT:
            raise EpcError(f"amount: {transfer.amount} is outside 0.01 to 999999999.99 EUR")
        if transfer.amount != transfer.amount.quantize(Decimal("0.01")):
            raise EpcError(f"amount: {transfer.amount} has more than two decimals")
        amount = f"EUR{transfer.amount.quantize(Decimal('0.01'))}"
    reference = ""
    text = ""
    if transfer.reference:
        try:
            reference = iso11649.validate(transfer.reference)
        except ValidationError:
            raise EpcError(
                f"reference: {transfer.reference!r} is not an RF creditor reference"
            ) from None
    elif transfer.text:
        text = _single_line(transfer.text)[:140]
    purpose = (transfer.purpose or "").strip().upper()
    if purpose and not (len(purpose) == 4 and purpose.isalnum()):
        raise EpcError(f"purpose: {transfer.purpose!r} is not a four-character purpose code")
    note = _single_line(transfer.note or "")[:70]
    elements = [
        SERVICE_TAG,
        VERSION,
        UTF8,
        SEPA_CREDIT_TRANSFER,
        bank,
        name,
        account,
        amount,
        purpose,
        reference,
        text,
        note,
    ]
    # Trailing empty elements are left out: the last one present ends the payload.
    while elements and not elements[-1]:
        elements.pop()
    payload = "\n".join(elements)
    if len(payload.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise EpcError(f"the payload has more than {MAX_PAYLOAD_BYTES} bytes")
    return payload


def read_epc_payload(payload: str) -> CreditTransfer:
    """A payload back as the transfer it describes (EpcError when it is not an EPC payload)."""
    lines = payload.replace("\r\n", "\n").split("\n")
    if len(lines) < 7 or lines[0] != SERVICE_TAG or lines[3] != SEPA_CREDIT_TRANSFER:
        raise EpcError("not an EPC credit transfer payload (BCD ... SCT)")
    if lines[1] not in ("001", "002") or lines[2] not in "12345678":
        raise EpcError(f"version {lines[1]!r} or character set {lines[2]!r} not supported")
    lines += [""] * (12 - len(lines))
    amount_text = lines[7]
    if amount_text and not amount_text.startswith("EUR"):
        raise EpcError(f"amount: {amount_text!r} is not in euros")
    return CreditTransfer(
        name=lines[5],
        iban=lines[6],
        bic=lines[4] or None,
        amount=Decimal(amount_text[3:]) if amount_text else None,
        purpose=lines[8] or None,
        reference=lines[9] or None,
        text=lines[10] or None,
        note=lines[11] or None,
    )


def _qr(payload: str) -> segno.QRCode:
    code = segno.make_qr(payload, error="m", boost_error=False, encoding="utf-8", mask=MASK)
    if code.version > MAX_QR_VERSION:  # pragma: no cover - 331 bytes always fit version 13
        raise EpcError(f"the payload needs QR version {code.version}; at most 13 is allowed")
    return code


def epc_qr_png(payload: str, scale: int = 1) -> bytes:
    """The QR code as a black and white PNG, `scale` pixels a module, quiet zone of four
    modules. A page shows it enlarged without smoothing (image-rendering: pixelated), so one
    pixel a module is enough; Pillow writes it (segno's own PNG writer is slower), from the
    module rows as bytes (segno's matrix_iter yields module by module)."""
    from PIL import Image

    matrix = _qr(payload).matrix  # rows of 0 (light) and 1 (dark)
    size = len(matrix) + 2 * QUIET_ZONE
    light = b"\xff" * QUIET_ZONE
    shades = bytes.maketrans(b"\x00\x01", b"\xff\x00")
    rows = [light + bytes(row).translate(shades) + light for row in matrix]
    margin = [b"\xff" * size] * QUIET_ZONE
    image = Image.frombytes("L", (size, size), b"".join(margin + rows + margin)).convert("1")
    if scale != 1:
        image = image.resize((size * scale, size * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def epc_qr_svg(payload: str) -> str:
    """The QR code of a payload as an SVG document (one path, quiet zone of four modules, no
    fixed size: the page gives it one)."""
    buffer = io.BytesIO()
    _qr(payload).save(
        buffer, kind="svg", xmldecl=False, scale=1, border=QUIET_ZONE, omitsize=True, nl=False
    )
    return buffer.getvalue().decode("utf-8")
