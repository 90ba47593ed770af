"""Bank statement import: every format read into the same model, exactly, or refused clearly."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallybook.formats.bank_statements import (
    CsvMapping,
    Statement,
    StatementError,
    StatementFormat,
    detect_format,
    parse_statement,
    parse_statements,
)
from tallybook.formats.bank_statements.model import find_creditor_reference

SAMPLES = Path(__file__).parent / "samples"

GERMAN_CSV = CsvMapping(
    date="Buchungstag",
    value_date="Valutadatum",
    payer="Auftraggeber / Empfänger",
    payer_account="IBAN",
    reference=("Verwendungszweck", "Zusatz"),
    amount="Betrag",
    currency_column="Währung",
    date_format="%d.%m.%Y",
    decimal_separator=",",
    thousands_separator=".",
    delimiter=";",
    skip_rows=4,
    account="DE89 3704 0044 0532 0130 00",
)
US_CSV = CsvMapping(
    date="Date",
    debit="Debit",
    credit="Credit",
    reference="Description",
    bank_reference="Reference",
    currency="USD",
    date_format="%m/%d/%Y",
    thousands_separator=",",
    account="987654321",
)
MAPPINGS = {"statement_de.csv": GERMAN_CSV, "statement_us.csv": US_CSV}
EXPECTED_FORMATS = {
    "camt053_v02.xml": "camt.053",
    "camt053_v08.xml": "camt.053",
    "mt940.sta": "mt940",
    "bai2.bai": "bai2",
    "ofx1.ofx": "ofx",
    "ofx2.ofx": "ofx",
    "statement_de.csv": "csv",
    "statement_us.csv": "csv",
}


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def parse_sample(name: str, data: bytes | None = None) -> Statement:
    return parse_statement(sample(name) if data is None else data, mapping=MAPPINGS.get(name))


def replace_once(data: bytes, old: str, new: str) -> bytes:
    encoded = old.encode()
    assert encoded in data, old
    return data.replace(encoded, new.encode(), 1)


# --- detection ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_FORMATS))
def test_detects_every_sample_format_from_content_and_name(name: str) -> None:
    assert detect_format(sample(name), name) == EXPECTED_FORMATS[name]


def test_content_wins_over_a_misleading_file_name() -> None:
    assert detect_format(sample("mt940.sta"), "export.csv") == "mt940"
    assert detect_format(sample("camt053_v02.xml"), "statement.txt") == "camt.053"


def test_csv_is_recognised_by_name_or_shape_and_unknown_files_are_refused() -> None:
    assert detect_format(b"a;b\n1;2\n", None) == "csv"
    with pytest.raises(StatementError, match="not a bank statement"):
        detect_format(b"%PDF-1.7 binary", "statement.pdf")
    with pytest.raises(StatementError, match="not a camt.053"):
        detect_format(
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"/>', "n.xml"
        )


def test_parse_without_a_format_detects_it() -> None:
    assert parse_statement(sample("bai2.bai")).format is StatementFormat.BAI2


def test_unknown_format_name_is_a_statement_error() -> None:
    with pytest.raises(StatementError, match="unknown statement format 'qif'"):
        parse_statement(sample("bai2.bai"), "qif")


# --- camt.053 -----------------------------------------------------------------------------


def test_camt053_v02_statement_header_and_balances() -> None:
    statement = parse_sample("camt053_v02.xml")
    assert statement.format is StatementFormat.CAMT053
    assert statement.account == "DE89370400440532013000"
    assert statement.currency == "EUR"
    assert statement.statement_id == "DE89370400440532013000-2026-03-03"
    assert statement.statement_number == "42"
    assert statement.statement_date == date(2026, 3, 3)
    assert statement.opening_balance == Decimal("10000.00")
    assert statement.opening_date == date(2026, 3, 1)
    assert statement.closing_balance == Decimal("12800.10")
    assert statement.total == Decimal("2800.10")


def test_camt053_v02_lines_to_the_cent_with_references_and_payers() -> None:
    lines = parse_sample("camt053_v02.xml").lines
    # Four booked entries; the batched one is split into its three payments; PDNG is left out.
    assert [line.amount for line in lines] == [
        Decimal("1190.00"),
        Decimal("500.00"),
        Decimal("250.50"),
        Decimal("1249.50"),
        Decimal("-89.90"),
        Decimal("-300.00"),
    ]
    first = lines[0]
    assert first.booking_date == date(2026, 3, 2)
    assert first.value_date == date(2026, 3, 2)
    assert first.payer_name == "Müller & Söhne GmbH"
    assert first.payer_account == "DE44500105175407324931"
    assert first.remittance_text == "Rechnung INV-2026-00042"
    assert first.creditor_reference == "RF36INV202600042"
    assert first.end_to_end_id == "E2E-2026-0302-001"
    assert first.bank_reference == "BANKREF-0001-1"
    assert first.transaction_code == "PMNT/RCDT/ESCT"
    assert all(line.currency == "EUR" for line in lines)


def test_camt053_batched_entry_keeps_each_payment_and_its_payer() -> None:
    batch = parse_sample("camt053_v02.xml").lines[1:4]
    assert [line.payer_name for line in batch] == [
        "Łukasz Żółć",
        "Ærøskøbing ApS",
        "株式会社 東京商事",
    ]
    assert [line.payer_account for line in batch] == [
        "PL61109010140000071219812874",
        "DK5000400440116243",
        None,
    ]
    assert batch[0].remittance_text == "Faktura INV-2026-00043"
    # Printed in groups of four in <Ref>, stored compact.
    assert batch[1].creditor_reference == "RF84INV202600051"
    assert batch[1].end_to_end_id is None  # NOTPROVIDED identifies nothing
    assert batch[2].remittance_text == "Invoices INV-2026-00052 and INV-2026-00053"
    assert {line.booking_date for line in batch} == {date(2026, 3, 2)}
    assert {line.value_date for line in batch} == {date(2026, 3, 3)}
    assert {line.bank_reference for line in batch} == {"BANKREF-0002"}
    assert sum(line.amount for line in batch) == Decimal("2000.00")


def test_camt053_entry_without_details_and_outgoing_payment() -> None:
    fee, transfer = parse_sample("camt053_v02.xml").lines[4:]
    assert fee.remittance_text == "Kontoführungsgebühr März 2026"
    assert fee.transaction_code == "NCHG"
    assert fee.payer_name is None
    # For money out, the other party is the creditor we paid.
    assert transfer.payer_name == "Office Supplies Ltd"
    assert transfer.payer_account == "GB29NWBK60161331926819"
    assert transfer.end_to_end_id == "PO-7781-PAY"


def test_camt053_v08_parties_dates_documents_and_reversal() -> None:
    statement = parse_sample("camt053_v08.xml")
    assert statement.account == "CH9300762011623852957"
    assert statement.statement_id == "STMT-2026-03-10"
    assert statement.opening_balance == Decimal("5000.00")  # from PRCD
    assert statement.closing_balance == Decimal("8378.00")
    assert statement.closing_date == date(2026, 3, 10)  # from a DtTm
    sweden, france, card, returned = statement.lines
    assert sweden.amount == Decimal("1190.00")
    assert sweden.payer_name == "Zoë Ångström AB"
    assert sweden.payer_account == "SE4550000000058398257466"
    assert sweden.creditor_reference == "RF09INV202600043"
    assert sweden.customer_reference == "SE-INSTR-9"
    assert sweden.bank_reference == "ZKB-20260310-0001-A"
    assert france.amount == Decimal("2380.00")
    assert france.referred_documents == ("INV-2026-00060", "INV-2026-00061")
    assert france.payer_account == "FR1420041010050500013M02606"
    assert card.amount == Decimal("-42.00")
    assert card.booking_date == date(2026, 3, 10)
    assert card.value_date == date(2026, 3, 9)
    assert card.payer_name == "Café Zürich"
    assert returned.amount == Decimal("-150.00")
    assert returned.reversal is True
    assert "INV-2026-00077" in returned.remittance_text


# --- MT940 --------------------------------------------------------------------------------


def test_mt940_statement_header_and_balances() -> None:
    statement = parse_sample("mt940.sta")
    assert statement.format is StatementFormat.MT940
    assert statement.account == "DE89370400440532013000"
    assert statement.statement_id == "STMT20260303"
    assert statement.statement_number == "00042/001"
    assert statement.currency == "EUR"
    assert statement.opening_balance == Decimal("10000.00")
    assert statement.closing_balance == Decimal("11425.60")
    assert statement.statement_date == date(2026, 3, 3)
    assert [line.amount for line in statement.lines] == [
        Decimal("1190.00"),
        Decimal("250.50"),
        Decimal("-89.90"),
        Decimal("75.00"),
    ]


def test_mt940_structured_86_over_several_lines() -> None:
    line = parse_sample("mt940.sta").lines[0]
    assert line.booking_date == line.value_date == date(2026, 3, 2)
    assert line.payer_name == "Müller & Söhne GmbH"
    assert line.payer_account == "DE44500105175407324931"
    assert line.end_to_end_id == "E2E-2026-0302-001"
    assert line.remittance_text == "RF36INV202600042 Rechnung INV-2026-00042"
    assert line.creditor_reference == "RF36INV202600042"
    assert line.bank_reference == "BANKREF-0001"
    assert line.customer_reference is None  # NONREF
    assert line.transaction_code == "NTRF/166"


def test_mt940_free_text_86_over_several_lines() -> None:
    line = parse_sample("mt940.sta").lines[1]
    assert line.remittance_text == (
        "Zahlung INV-2026-00043 von Łukasz Żółć Kundennummer 4711, danke für die schnelle Lieferung"
    )
    assert line.customer_reference == "INV-2026-00043"


def test_mt940_reversal_of_a_debit_is_money_in() -> None:
    line = parse_sample("mt940.sta").lines[3]
    assert line.amount == Decimal("75.00")
    assert line.reversal is True
    assert line.payer_name == "Omega Supplies"
    assert "INV-2026-00040" in line.remittance_text


def test_mt940_file_with_two_statements() -> None:
    first = sample("mt940.sta").decode("utf-8")
    second = (
        ":20:STMT20260304\r\n:25:DE89370400440532013000\r\n:28C:00043/001\r\n"
        ":60F:C260303EUR11425,60\r\n:61:2603040304C10,00NTRFNONREF//BANKREF-0010\r\n"
        ":86:INV-2026-00099\r\n:62F:C260304EUR11435,60\r\n"
    )
    data = (first + second).encode()
    statements = parse_statements(data)
    assert [s.statement_number for s in statements] == ["00042/001", "00043/001"]
    assert statements[1].lines[0].amount == Decimal("10.00")
    with pytest.raises(StatementError, match="holds 2 statements"):
        parse_statement(data)


# --- BAI2 ---------------------------------------------------------------------------------


def test_bai2_amounts_from_cents_with_signs_from_type_codes() -> None:
    statement = parse_sample("bai2.bai")
    assert statement.format is StatementFormat.BAI2
    assert statement.account == "123456789"
    assert statement.currency == "USD"
    assert statement.statement_id == "FILE0302"
    assert statement.statement_date == date(2026, 3, 1)
    assert statement.opening_balance == Decimal("10000.00")
    assert statement.closing_balance == Decimal("13475.50")
    assert [line.amount for line in statement.lines] == [
        Decimal("2500.00"),
        Decimal("1100.50"),
        Decimal("250.00"),
        Decimal("-375.00"),
    ]
    assert statement.total == statement.closing_balance - statement.opening_balance


def test_bai2_continuation_records_join_the_text() -> None:
    wire, ach, deposit, check = parse_sample("bai2.bai").lines
    assert wire.remittance_text == (
        "ACME CORP PAYMENT FOR INV-2026-00042 RF36INV202600042 THANK YOU"
    )
    assert wire.creditor_reference == "RF36INV202600042"
    assert wire.value_date == date(2026, 3, 2)  # value-dated funds type V
    assert wire.bank_reference == "WIRE0001"
    assert wire.customer_reference == "INV-2026-00042"
    assert wire.transaction_code == "195"
    assert ach.payer_name == "Société Générale Services"
    assert ach.remittance_text.endswith("ENTRY DESC:INVOICE INV-2026-00043")
    assert deposit.remittance_text == ""
    assert check.customer_reference == "1042"


# --- OFX ----------------------------------------------------------------------------------


def test_ofx1_sgml_with_implicit_end_tags_and_windows_1252() -> None:
    statement = parse_sample("ofx1.ofx")
    assert statement.format is StatementFormat.OFX
    assert statement.account == "987654321"
    assert statement.currency == "USD"
    assert statement.statement_id == "20260303-1001"
    assert statement.closing_balance == Decimal("5402.10")
    assert statement.statement_date == date(2026, 3, 3)
    assert statement.opening_balance is None
    credit, deposit, fee, check = statement.lines
    assert credit.payer_name == "Café Olé LLC"
    assert credit.amount == Decimal("1190.00")
    assert credit.booking_date == date(2026, 3, 2)
    assert credit.value_date == date(2026, 3, 1)
    assert credit.creditor_reference == "RF36INV202600042"
    assert credit.bank_reference == "202603020001"
    assert deposit.payer_name == "Smith & Sons"
    assert deposit.amount == Decimal("250.50")
    assert deposit.customer_reference == "ACH-778"
    assert fee.amount == Decimal("-89.90")
    assert check.payer_name == "Acme Office Rentals"  # from <PAYEE><NAME>
    assert check.customer_reference == "1042"
    assert check.transaction_code == "CHECK"


def test_ofx2_xml() -> None:
    statement = parse_sample("ofx2.ofx")
    assert statement.account == "DE89370400440532013000"
    assert statement.currency == "EUR"
    assert statement.closing_balance == Decimal("3245.43")
    credit, transfer, greek = statement.lines
    assert credit.payer_name == "Jürgen Groß e.K."
    assert credit.payer_account == "DE44500105175407324931"
    assert credit.creditor_reference == "RF35INV202600060"
    assert transfer.amount == Decimal("-1234.56")  # decimal comma, allowed by the spec
    assert transfer.payer_name == "Lieferant & Partner"
    assert greek.payer_name == "Ἀθηνᾶ Papadopoulou"
    assert greek.remittance_text == "INV-2026-00077"


# --- CSV ----------------------------------------------------------------------------------


def test_csv_with_decimal_comma_thousands_and_preamble() -> None:
    statement = parse_sample("statement_de.csv")
    assert statement.format is StatementFormat.CSV
    assert statement.account == "DE89370400440532013000"
    assert statement.currency == "EUR"
    assert [line.amount for line in statement.lines] == [
        Decimal("1190.00"),
        Decimal("250.50"),
        Decimal("-89.90"),
        Decimal("-1300.00"),
        Decimal("12499.50"),
    ]
    first, second, _, office, tokyo = statement.lines
    assert first.booking_date == date(2026, 3, 2)
    assert first.payer_account == "DE44500105175407324931"
    assert first.creditor_reference == "RF36INV202600042"
    assert first.remittance_text == "RF36 INV2 0260 0042 Rechnung INV-2026-00042"
    assert second.value_date == date(2026, 3, 3)
    assert second.remittance_text == "Faktura INV-2026-00043; dziękuję"
    assert office.payer_name == 'Office "Supplies" Ltd'
    assert tokyo.payer_name == "株式会社 東京商事"


def test_csv_with_debit_and_credit_columns() -> None:
    lines = parse_sample("statement_us.csv").lines
    assert [line.amount for line in lines] == [
        Decimal("1190.00"),
        Decimal("1250.50"),
        Decimal("-89.90"),
        Decimal("-1200.00"),
    ]
    assert lines[0].booking_date == date(2026, 3, 2)
    assert lines[1].remittance_text == "DEPOSIT Société Générale INV-2026-00043"
    assert lines[3].bank_reference == "CHK0004"


def test_csv_needs_a_mapping_and_a_sensible_one() -> None:
    with pytest.raises(StatementError, match="needs a column mapping"):
        parse_statement(sample("statement_us.csv"), "csv")
    with pytest.raises(StatementError, match="no amount column"):
        CsvMapping(date="Date", currency="USD")
    with pytest.raises(StatementError, match="both an amount column and debit/credit"):
        CsvMapping(date="Date", amount="A", debit="D", currency="USD")
    with pytest.raises(StatementError, match="no currency"):
        CsvMapping(date="Date", amount="A")
    with pytest.raises(StatementError, match="only applies to CSV"):
        parse_statement(sample("bai2.bai"), mapping=US_CSV)


# --- line keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_FORMATS))
def test_line_keys_are_stable_across_parses_and_unique_within_a_file(name: str) -> None:
    first = parse_sample(name)
    second = parse_sample(name)
    assert first == second
    keys = [line.line_key for line in first.lines]
    assert all(len(key) == 32 for key in keys)
    assert len(set(keys)) == len(keys)
    assert [line.position for line in first.lines] == list(range(len(first.lines)))


def test_changing_one_line_changes_only_its_key() -> None:
    before = parse_sample("statement_us.csv")
    after = parse_sample(
        "statement_us.csv", replace_once(sample("statement_us.csv"), "89.90", "89.91")
    )
    changed = [
        index
        for index, (old, new) in enumerate(zip(before.lines, after.lines, strict=True))
        if old.line_key != new.line_key
    ]
    assert changed == [2]


def test_changing_the_remittance_of_a_camt_payment_changes_its_key() -> None:
    before = parse_sample("camt053_v02.xml")
    data = replace_once(
        sample("camt053_v02.xml"), "Faktura INV-2026-00043", "Faktura INV-2026-00044"
    )
    after = parse_sample("camt053_v02.xml", data)
    assert before.lines[1].line_key != after.lines[1].line_key
    assert before.lines[0].line_key == after.lines[0].line_key


def test_identical_payments_on_one_statement_get_different_keys() -> None:
    row = "03/02/2026,ACME PAYMENT,,100.00,,\n"
    data = ("Date,Description,Debit,Credit,Check or Slip #,Reference\n" + row + row).encode()
    lines = parse_statement(data, "csv", US_CSV).lines
    assert lines[0].line_key != lines[1].line_key


# --- malformed files ----------------------------------------------------------------------

CAMT = "camt053_v02.xml"
MALFORMED = [
    # (sample, how to damage it, expected words in the error, expected line or None)
    (CAMT, lambda d: d[: len(d) // 2], "cut off", True),
    (CAMT, lambda d: replace_once(d, ">1190.00</Amt>", ">11,90.00</Amt>"), "not an amount", 65),
    (
        CAMT,
        lambda d: replace_once(d, '<Amt Ccy="EUR">89.90</Amt>', "<Amt>89.90</Amt>"),
        "no valid currency",
        True,
    ),
    (
        CAMT,
        lambda d: replace_once(d, "<CdtDbtInd>DBIT</CdtDbtInd>", ""),
        "money in or out",
        True,
    ),
    (
        CAMT,
        lambda d: replace_once(d, "<IBAN>DE89370400440532013000</IBAN>", "<Prtry>X</Prtry>"),
        "neither an IBAN",
        True,
    ),
    (CAMT, lambda d: replace_once(d, ">1249.50<", ">1249.00<"), "add up to 1999.50 EUR", True),
    (CAMT, lambda d: replace_once(d, ">12800.10<", ">12800.11<"), "incomplete or damaged", None),
    (
        CAMT,
        lambda d: replace_once(d, "<Dt>2026-03-02</Dt>", "<Dt>2026-02-30</Dt>"),
        "not a date",
        True,
    ),
    (
        CAMT,
        lambda d: replace_once(d, "camt.053.001.02", "camt.052.001.02"),
        "camt.052 message, not a camt.053",
        None,
    ),
    (
        "camt053_v08.xml",
        lambda d: replace_once(d, "<Acct>", "<Acct-broken>"),
        "not complete, well-formed XML",
        True,
    ),
    ("mt940.sta", lambda d: d[: d.index(b":62F:")], "closing balance (:62F:) is missing", True),
    ("mt940.sta", lambda d: replace_once(d, "C1190,00NTRF", "C11.90,00NTRF"), "'11.90,00'", 6),
    ("mt940.sta", lambda d: replace_once(d, ":61:260302", ":61:260231"), "not a date", 6),
    (
        "mt940.sta",
        lambda d: replace_once(d, ":60F:C260301EUR10000,00", ":60F:C260301EUR10.000,00"),
        "not in the form",
        5,
    ),
    ("mt940.sta", lambda d: replace_once(d, ":25:DE89370400440532013000\r\n", ""), ":25:", True),
    (
        "mt940.sta",
        lambda d: replace_once(d, ":62F:C260303EUR11425,60", ":62F:C260303EUR11425,61"),
        "lines add up to 1425.60 EUR",
        None,
    ),
    ("bai2.bai", lambda d: replace_once(d, "49,2770100,8/", "49,2770000,8/"), "control total", 10),
    ("bai2.bai", lambda d: replace_once(d, "49,2770100,8/", "49,2770100,9/"), "counts 9", 10),
    ("bai2.bai", lambda d: d[: d.index(b"99,")], "file trailer (99) is missing", 11),
    ("bai2.bai", lambda d: replace_once(d, "16,142,110050", "16,142,1100.50"), "whole", 6),
    ("bai2.bai", lambda d: replace_once(d, "16,301", "17,301"), "not a BAI2 record", 8),
    ("ofx1.ofx", lambda d: d[: d.index(b"</BANKTRANLIST>")], "ends inside <BANKTRANLIST>", True),
    (
        "ofx1.ofx",
        lambda d: replace_once(d, "<TRNAMT>1190.00", "<TRNAMT>11O0.00"),
        "not an amount",
        47,
    ),
    ("ofx1.ofx", lambda d: replace_once(d, "<DTPOSTED>20260303\r\n", ""), "posting date", True),
    ("ofx1.ofx", lambda d: replace_once(d, "</BANKACCTFROM>", "</STMTRS>"), "not open", 39),
    ("ofx1.ofx", lambda d: replace_once(d, "<CURDEF>USD", ""), "currency is missing", True),
    ("ofx2.ofx", lambda d: d[: len(d) - 100], "cut off", True),
    (
        "ofx2.ofx",
        lambda d: replace_once(d, "20260310</DTPOSTED>", "2026-03-10</DTPOSTED>"),
        "date",
        47,
    ),
    ("statement_de.csv", lambda d: replace_once(d, "1.190,00", "1.19O,00"), "'1.19O,00'", 6),
    (
        "statement_de.csv",
        lambda d: replace_once(d, "02.03.2026;02", "2026-03-02;02"),
        "date format",
        6,
    ),
    ("statement_de.csv", lambda d: replace_once(d, ";Betrag;", ";Summe;"), "no column 'Betrag'", 5),
    ("statement_de.csv", lambda d: replace_once(d, "-89,90;EUR", "-89,90;EURO"), "EURO", 8),
    ("statement_us.csv", lambda d: replace_once(d, "89.90,,", "89.90,1.00,"), "both the debit", 4),
]


@pytest.mark.parametrize(
    ("name", "damage", "words", "line"),
    MALFORMED,
    ids=[f"{case[0]}-{index}" for index, case in enumerate(MALFORMED)],
)
def test_malformed_files_are_refused_with_a_clear_error(
    name: str, damage, words: str, line: int | bool | None
) -> None:
    with pytest.raises(StatementError) as raised:
        parse_sample(name, damage(sample(name)))
    error = raised.value
    assert isinstance(error, ValueError)
    assert words in str(error)
    assert str(error).startswith(
        ("camt.053 statement", "MT940", "BAI2", "OFX", "CSV", "bank statement")
    )
    if line is True:
        assert error.line is not None or error.element is not None
    elif isinstance(line, int):
        assert error.line == line, str(error)


def test_error_message_reads_like_a_sentence_for_a_clerk() -> None:
    damaged = replace_once(sample("bai2.bai"), "49,2770100,8/", "49,2770000,8/")
    with pytest.raises(StatementError) as raised:
        parse_statement(damaged)
    assert str(raised.value) == (
        "BAI2 statement, line 10, account trailer (49): the account control total says 2770000 "
        "cents but the records add up to 2770100; the file is incomplete or damaged, ask the "
        "bank for it again"
    )


def test_xml_with_entity_declarations_is_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">&lol2;</Document>'
    )
    with pytest.raises(StatementError, match="document type"):
        parse_statement(bomb, "camt.053")


def test_empty_file_is_refused() -> None:
    with pytest.raises(StatementError, match="empty"):
        parse_statement(b"  \n")


# --- creditor references ------------------------------------------------------------------


def test_creditor_reference_is_found_only_with_valid_check_digits() -> None:
    assert find_creditor_reference("pay RF18 5390 0754 7034 thanks") == "RF18539007547034"
    assert find_creditor_reference("ref:RF18539007547034/INV") == "RF18539007547034"
    assert find_creditor_reference("RF19539007547034") is None
    assert find_creditor_reference("PERFORMANCE RF12 FOO") is None
    assert find_creditor_reference(None) is None


# --- properties ---------------------------------------------------------------------------

amounts = st.decimals(
    min_value=Decimal("-99999999.99"),
    max_value=Decimal("99999999.99"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
).filter(lambda amount: amount != 0)
dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2068, 12, 31))
names = st.text(
    alphabet=st.characters(categories=("L", "N", "Zs"), include_characters="&-.,'\";"),
    max_size=40,
)


def _german_amount(amount: Decimal) -> str:
    sign = "-" if amount < 0 else ""
    whole, cents = f"{abs(amount):.2f}".split(".")
    grouped = f"{int(whole):,}".replace(",", ".")
    return f"{sign}{grouped},{cents}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(dates, amounts, names, names), min_size=1, max_size=15))
def test_csv_round_trip_keeps_amounts_dates_and_text(rows) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(["Buchungstag", "Betrag", "Auftraggeber", "Verwendungszweck"])
    for booked, amount, payer, reference in rows:
        writer.writerow([booked.strftime("%d.%m.%Y"), _german_amount(amount), payer, reference])
    mapping = CsvMapping(
        date="Buchungstag",
        amount="Betrag",
        payer="Auftraggeber",
        reference="Verwendungszweck",
        currency="EUR",
        date_format="%d.%m.%Y",
        decimal_separator=",",
        thousands_separator=".",
        delimiter=";",
    )
    statement = parse_statement(buffer.getvalue().encode(), "csv", mapping)
    assert [line.amount for line in statement.lines] == [row[1] for row in rows]
    assert [line.booking_date for line in statement.lines] == [row[0] for row in rows]
    assert [line.payer_name for line in statement.lines] == [
        " ".join(row[2].split()) or None for row in rows
    ]
    assert [line.remittance_text for line in statement.lines] == [
        " ".join(row[3].split()) for row in rows
    ]


def _swift_amount(amount: Decimal) -> str:
    return f"{abs(amount):.2f}".replace(".", ",")


def _mark(amount: Decimal) -> str:
    return "C" if amount >= 0 else "D"


@settings(max_examples=60, deadline=None)
@given(
    opening=st.decimals(
        min_value=Decimal("-1000000"), max_value=Decimal("1000000"), places=2, allow_nan=False
    ),
    movements=st.lists(amounts, max_size=12),
    day=st.dates(min_value=date(2001, 1, 1), max_value=date(2060, 12, 1)),
)
def test_mt940_lines_add_up_to_the_balance_movement(opening, movements, day) -> None:
    closing = opening + sum(movements, Decimal(0))
    text = [
        ":20:GEN",
        ":25:DE89370400440532013000",
        ":28C:1/1",
        f":60F:{_mark(opening)}{day:%y%m%d}EUR{_swift_amount(opening)}",
    ]
    for index, amount in enumerate(movements):
        booked = day + timedelta(days=index % 3)
        text.append(
            f":61:{booked:%y%m%d}{booked:%m%d}{_mark(amount)}{_swift_amount(amount)}"
            f"NTRFNONREF//REF{index}"
        )
        text.append(f":86:INV-2026-{index:05d}")
    text.append(f":62F:{_mark(closing)}{day:%y%m%d}EUR{_swift_amount(closing)}")
    statement = parse_statement("\r\n".join(text).encode(), "mt940")
    assert [line.amount for line in statement.lines] == movements
    assert statement.total == statement.closing_balance - statement.opening_balance
    assert statement.opening_balance == opening and statement.closing_balance == closing

    off_by_a_cent = "\r\n".join(text[:-1]) + (
        f"\r\n:62F:{_mark(closing + Decimal('0.01'))}{day:%y%m%d}EUR"
        f"{_swift_amount(closing + Decimal('0.01'))}"
    )
    with pytest.raises(StatementError, match="lines add up to"):
        parse_statement(off_by_a_cent.encode(), "mt940")


def test_statement_and_lines_are_immutable() -> None:
    statement = parse_sample("mt940.sta")
    with pytest.raises(dataclasses.FrozenInstanceError):
        statement.lines[0].amount = Decimal("1")  # type: ignore[misc]
    assert isinstance(statement.lines, tuple)
