"""The quick path of the camt.053 reader (entries flattened by XSLT) gives exactly the lines the
element-by-element reader gives, for the sample files and for generated statements."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.formats.bank_statements import camt053
from tallybook.formats.bank_statements.camt053_writer import Movement, write_camt053_accounts
from tallybook.formats.bank_statements.model import (
    _KEYED_FIELDS,
    StatementError,
    _key,
    _statement_identity,
    generic_key_content,
)

SAMPLES = Path(__file__).parent / "samples"


def slow(data: bytes) -> tuple:
    original = camt053._flatten
    camt053._flatten = lambda root, namespace: None
    try:
        return camt053.parse_camt053(data)
    finally:
        camt053._flatten = original


@pytest.mark.parametrize("name", ["camt053_v02.xml", "camt053_v08.xml"])
def test_samples_read_the_same_both_ways(name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    assert camt053.parse_camt053(data) == slow(data)


def test_the_quick_path_is_taken_for_plain_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_camt053_accounts(
        [("DE02120300000000202051", "EUR",
          [Movement(date(2026, 3, 2), 11900, "EUR", "Kunde AG", "DE44500105175407324931",
                    "INV-2026-000001", "RF18INV2026000001", referred_documents=("A-1",))], 0)],
        statement_id="S", created=date(2026, 3, 3),
    )
    calls = []
    reader = camt053._entry_lines
    monkeypatch.setattr(camt053, "_entry_lines", lambda *a: calls.append(a) or reader(*a))
    (statement,) = camt053.parse_camt053(data)
    assert calls == []  # every entry came from the flattened fields
    (line,) = statement.lines
    assert (line.payer_name, line.remittance_text, line.referred_documents) == (
        "Kunde AG", "INV-2026-000001", ("A-1",)
    )


def test_an_odd_entry_falls_back_to_the_reader_and_its_error() -> None:
    data = write_camt053_accounts(
        [("DE02120300000000202051", "EUR", [Movement(date(2026, 3, 2), 100, "EUR")], 0)],
        statement_id="S", created=date(2026, 3, 3),
    ).replace(b"<BookgDt><Dt>2026-03-02</Dt>", b"<BookgDt><Dt>2026-13-02</Dt>")
    with pytest.raises(StatementError) as error:
        camt053.parse_camt053(data)
    assert "booking date" in str(error.value) and "line" in str(error.value)


def test_the_spelt_out_key_hashes_what_the_generic_rendering_gives() -> None:
    data = (SAMPLES / "camt053_v02.xml").read_bytes()
    (statement,) = camt053.parse_camt053(data)
    identity = _statement_identity(statement)
    for line in statement.lines:
        generic = json.dumps(
            generic_key_content(identity, line.position, line),
            ensure_ascii=False, separators=(",", ":"),
        ).encode()
        assert _key(identity, line.position, line) == hashlib.sha256(generic).hexdigest()[:32]
    assert len(_KEYED_FIELDS) == len(dataclasses.fields(type(statement.lines[0]))) - 2


texts = st.one_of(st.none(), st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=30
))
movements = st.builds(
    Movement,
    booking_date=st.dates(date(2024, 1, 1), date(2027, 12, 31)),
    amount_minor=st.integers(-10**9, 10**9).filter(bool),
    currency=st.just("EUR"),
    payer_name=texts,
    payer_account=st.one_of(st.none(), st.sampled_from(["DE44500105175407324931", "GB33 BUKB"])),
    remittance_text=texts,
    creditor_reference=st.one_of(st.none(), st.sampled_from(["RF18539007547034", "X 1"])),
    bank_reference=st.one_of(st.none(), st.text(alphabet="ABC123-", min_size=1, max_size=8)),
    referred_documents=st.lists(st.text(alphabet="INV-0123", min_size=1, max_size=6),
                                max_size=3).map(tuple),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(movements, min_size=0, max_size=12))
def test_generated_statements_read_the_same_both_ways(lines: list[Movement]) -> None:
    data = write_camt053_accounts(
        [("DE02120300000000202051", "EUR", lines, 0)], statement_id="S", created=date(2026, 1, 1)
    )
    assert camt053.parse_camt053(data) == slow(data)
