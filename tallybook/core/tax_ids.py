"""Tax identification numbers, validated for their country with python-stdnum."""

from __future__ import annotations

from stdnum import get_cc_module
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError


class TaxIdError(ValueError):
    pass


def validate_tax_id(country: str, value: str, field: str = "tax_ids") -> str:
    """The compact, validated form of a VAT/GST/EIN number, or TaxIdError saying why not."""
    cc = country.lower()
    if cc in eu_vat.MEMBER_STATES or cc == "gr":
        # EU VAT numbers keep their country prefix, as they appear on invoices.
        prefix = "EL" if cc == "gr" else cc.upper()
        candidate = value if value.strip().upper().startswith(prefix) else prefix + value
        try:
            return str(eu_vat.validate(candidate))
        except ValidationError:
            raise TaxIdError(
                f"{field}: {value!r} is not a valid VAT number for {country.upper()}"
            ) from None
    module = None
    for name in ("vat", "gst", "ein", "tin", "abn", "bn", "rfc", "nif"):
        try:
            module = get_cc_module(cc, name)
        except (ImportError, AttributeError):
            module = None
        if module is not None:
            try:
                return str(module.validate(value))
            except ValidationError:
                continue
            except Exception:  # noqa: BLE001 - some modules raise plain errors on odd input
                continue
    if module is None and get_cc_module(cc, "vat") is None:
        raise TaxIdError(f"{field}: no tax id format is known for country {country.upper()}")
    raise TaxIdError(f"{field}: {value!r} is not a valid tax id for {country.upper()}")
