"""Bank statement import for cash application: camt.053, MT940, BAI2, OFX and mapped CSV.

Each format is read into the same immutable `Statement` of `StatementLine`s, from the bytes given
and nothing else (no database, no files, no clock). A file that cannot be read completely raises
`StatementError`; nothing partial is ever returned.

    statement = parse_statement(data)                       # format detected from the content
    statement = parse_statement(data, "csv", mapping=CsvMapping(date="Date", amount="Amount",
                                                                currency="EUR"))
"""

from __future__ import annotations

import re

from .bai2_file import parse_bai2
from .camt053 import parse_camt053
from .csv_mapping import CsvMapping, parse_csv
from .model import Statement, StatementError, StatementFormat, StatementLine
from .ofx import parse_ofx
from .swift_mt940 import parse_mt940

__all__ = [
    "CsvMapping",
    "Statement",
    "StatementError",
    "StatementFormat",
    "StatementLine",
    "detect_format",
    "parse_statement",
    "parse_statements",
]

_EXTENSIONS = {
    ".xml": StatementFormat.CAMT053,
    ".053": StatementFormat.CAMT053,
    ".camt": StatementFormat.CAMT053,
    ".sta": StatementFormat.MT940,
    ".940": StatementFormat.MT940,
    ".mt940": StatementFormat.MT940,
    ".swi": StatementFormat.MT940,
    ".bai": StatementFormat.BAI2,
    ".bai2": StatementFormat.BAI2,
    ".ofx": StatementFormat.OFX,
    ".qfx": StatementFormat.OFX,
    ".csv": StatementFormat.CSV,
    ".txt": None,
}
_MT940_TAGS = re.compile(rb"^:(?:20|25|28C?|60[FM]|61|62[FM]):", re.MULTILINE)


def detect_format(data: bytes, filename: str | None = None) -> str:
    """Which statement format the bytes are in, from their content first and the name second.

    Content decides because file names lie (a camt.053 saved as .txt, an MT940 as .dat); the
    name only settles what content cannot, such as a CSV export.
    """
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"OFXHEADER") or b"<OFX>" in head.upper() or b"<?OFX" in head:
        return StatementFormat.OFX
    if head.startswith(b"<"):
        if b"camt.053" in head:
            return StatementFormat.CAMT053
        other = re.search(rb"camt\.\d{3}", head)
        if other:
            raise StatementError(
                f"this is an ISO 20022 {other.group(0).decode()} message, not a camt.053 "
                "account statement"
            )
        raise StatementError("this XML file is neither a camt.053 statement nor OFX")
    if head.startswith(b"01,"):
        return StatementFormat.BAI2
    if head.startswith(b"{1:") or len(_MT940_TAGS.findall(head)) >= 2:
        return StatementFormat.MT940
    if filename:
        extension = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        known = _EXTENSIONS.get(extension)
        if known is not None:
            return known
    if head and (b";" in head or b"," in head or b"\t" in head) and b"\n" in head:
        return StatementFormat.CSV
    raise StatementError(
        "the file is not a bank statement Tallybook can read "
        "(camt.053, MT940, BAI2, OFX or CSV)" + (f": {filename}" if filename else "")
    )


def parse_statements(
    data: bytes, format: str | None = None, mapping: CsvMapping | None = None
) -> tuple[Statement, ...]:
    """Every statement in the file: MT940 and camt.053 files may hold several accounts or days."""
    if not data.strip():
        raise StatementError("the file is empty")
    if format is None:
        format = detect_format(data)
    try:
        chosen = StatementFormat(format.lower())
    except ValueError:
        known = ", ".join(str(known) for known in StatementFormat)
        raise StatementError(f"unknown statement format {format!r} (known: {known})") from None
    if chosen is StatementFormat.CSV:
        return parse_csv(data, mapping)
    if mapping is not None:
        raise StatementError(
            f"a column mapping only applies to CSV files, and this is {chosen}", format=chosen
        )
    readers = {
        StatementFormat.CAMT053: parse_camt053,
        StatementFormat.MT940: parse_mt940,
        StatementFormat.BAI2: parse_bai2,
        StatementFormat.OFX: parse_ofx,
    }
    return readers[chosen](data)


def parse_statement(
    data: bytes, format: str | None = None, mapping: CsvMapping | None = None
) -> Statement:
    """The one statement in the file; a file with several must go through `parse_statements`."""
    statements = parse_statements(data, format, mapping)
    if len(statements) != 1:
        accounts = ", ".join(
            f"{statement.account} ({statement.statement_id})" for statement in statements
        )
        raise StatementError(
            f"the file holds {len(statements)} statements ({accounts}); import them together "
            "with parse_statements",
            format=statements[0].format,
        )
    return statements[0]
