"""OFX bank and credit-card statements: 1.x (SGML, closing tags optional) and 2.x (XML).

Written against the OFX 1.6 / 2.2 specifications rather than taken from PyPI: `ofxtools` is
GPL-3.0 and `ofxparse` has had no release since 2021. Both versions are read into the same small
element tree, so the statement itself is extracted by one piece of code.
"""

from __future__ import annotations

import bisect
import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from lxml import etree

from ._xml import local_name, parse_xml
from .model import (
    Statement,
    StatementError,
    StatementFormat,
    StatementLine,
    clean,
    compact_account,
    find_creditor_reference,
    finish_statement,
)

FORMAT = StatementFormat.OFX
_TAG = re.compile(r"<(/?)([A-Za-z0-9.]+)>")
_AMOUNT = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)")
_CHARSETS = {"1252": "cp1252", "ISO-8859-1": "latin-1", "8859-1": "latin-1", "NONE": "cp1252"}


@dataclass
class _Node:
    tag: str
    line: int
    text: str | None = None
    children: list[_Node] = field(default_factory=list)

    def find(self, path: str) -> _Node | None:
        node: _Node | None = self
        for step in path.split("/"):
            node = next((child for child in node.children if child.tag == step), None)
            if node is None:
                return None
        return node

    def findall(self, tag: str) -> list[_Node]:
        return [child for child in self.children if child.tag == tag]

    def iter(self, tag: str) -> Iterator[_Node]:
        for child in self.children:
            if child.tag == tag:
                yield child
            yield from child.iter(tag)

    def text_of(self, path: str) -> str | None:
        node = self.find(path)
        return clean(node.text) if node is not None else None


def _header(text: str) -> tuple[dict[str, str], int]:
    """The `KEY:VALUE` lines before the first tag of an OFX 1.x file, and where the body starts."""
    start = text.find("<")
    if start < 0:
        raise StatementError("the file holds no OFX elements", format=FORMAT)
    values = {}
    for line in text[:start].splitlines():
        key, _, value = line.partition(":")
        if key.strip():
            values[key.strip().upper()] = value.strip().upper()
    return values, start


def _decode_sgml(data: bytes) -> str:
    ascii_view = data.decode("latin-1")
    values, _ = _header(ascii_view)
    if values.get("ENCODING") == "UTF-8":
        encoding = "utf-8"
    else:
        encoding = _CHARSETS.get(values.get("CHARSET", "1252"), "cp1252")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise StatementError(
            f"the file is not valid {encoding} text as its header says", format=FORMAT
        ) from None


def _parse_sgml(data: bytes) -> _Node:
    text = _decode_sgml(data)
    _, body_start = _header(text)
    newlines = [i for i, char in enumerate(text) if char == "\n"]

    def line_of(offset: int) -> int:
        return bisect.bisect_left(newlines, offset) + 1

    root = _Node("#document", 1)
    stack = [root]
    # The last element closed implicitly (a 1.x leaf), so that a redundant </NAME> is accepted.
    last_leaf: _Node | None = None
    tokens = list(_TAG.finditer(text, body_start))
    for index, token in enumerate(tokens):
        closing, tag = token.group(1) == "/", token.group(2).upper()
        end = tokens[index + 1].start() if index + 1 < len(tokens) else len(text)
        content = text[token.end() : end]
        line = line_of(token.start())
        if closing:
            if stack[-1].tag == tag and len(stack) > 1:
                stack.pop()
            elif last_leaf is not None and last_leaf.tag == tag:
                pass  # an explicit end tag of a leaf element: allowed, and meaningless
            else:
                raise StatementError(
                    f"</{tag}> closes an element that is not open"
                    + (f" (<{stack[-1].tag}> is)" if len(stack) > 1 else ""),
                    format=FORMAT,
                    line=line,
                    element=f"</{tag}>",
                )
            last_leaf = None
            continue
        value = content.strip()
        node = _Node(tag, line)
        stack[-1].children.append(node)
        if value:
            # In OFX 1.x an element followed by text is a leaf whose end tag may be left out.
            node.text = html.unescape(value)
            last_leaf = node
        else:
            stack.append(node)
            last_leaf = None
    if len(stack) > 1:
        open_element = stack[-1]
        raise StatementError(
            f"the file ends inside <{open_element.tag}> (opened on line {open_element.line}); "
            "it was cut off, ask the bank for it again",
            format=FORMAT,
            line=len(newlines) + 1,
        )
    return root


def _from_xml(element: etree._Element) -> _Node:
    node = _Node(local_name(element).upper(), element.sourceline or 0)
    children = [child for child in element if isinstance(child.tag, str)]
    if children:
        node.children = [_from_xml(child) for child in children]
    else:
        node.text = (element.text or "").strip() or None
    return node


def _parse_xml_ofx(data: bytes) -> _Node:
    root = _Node("#document", 1)
    root.children.append(_from_xml(parse_xml(data, format=FORMAT)))
    return root


def parse_ofx(data: bytes) -> tuple[Statement, ...]:
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:200]
    tree = _parse_xml_ofx(data) if head.startswith(b"<?xml") else _parse_sgml(data)
    ofx = tree.find("OFX")
    if ofx is None:
        raise StatementError("the file has no <OFX> element", format=FORMAT)
    responses = list(ofx.iter("STMTRS")) + list(ofx.iter("CCSTMTRS"))
    if not responses:
        _raise_status(ofx.iter("STATUS"))
        raise StatementError(
            "the file holds no bank or credit card statement (<STMTRS> or <CCSTMTRS>)",
            format=FORMAT,
            line=ofx.line,
        )
    wrappers = list(ofx.iter("STMTTRNRS")) + list(ofx.iter("CCSTMTTRNRS"))
    statements = []
    for index, response in enumerate(responses):
        wrapper = next((w for w in wrappers if response in w.children), None)
        statements.append(_statement(response, wrapper, index))
    return tuple(statements)


def _raise_status(statuses: Iterable[_Node]) -> None:
    """A statement request the bank refused comes back as a STATUS with a non-zero code."""
    for status in statuses:
        code = status.text_of("CODE")
        if code and code != "0":
            message = status.text_of("MESSAGE") or "no message"
            raise StatementError(
                f"the bank answered with error {code} ({message}) instead of a statement",
                format=FORMAT,
                line=status.line,
                element="<STATUS>",
            )


def _required(node: _Node, path: str, what: str) -> str:
    value = node.text_of(path)
    if value is None:
        raise StatementError(
            f"{what} is missing (no <{path}> in <{node.tag}>)",
            format=FORMAT,
            line=node.line,
            element=f"<{node.tag}>",
        )
    return value


def _date(node: _Node, path: str, what: str, *, required: bool = False) -> date | None:
    value = _required(node, path, what) if required else node.text_of(path)
    if value is None:
        return None
    try:
        # YYYYMMDD[HHMMSS[.XXX]][[offset:TZ]]: the calendar day as the bank wrote it.
        if not value[:8].isdigit():
            raise ValueError
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        found = node.find(path)
        raise StatementError(
            f"the {what} {value!r} is not a date (expected YYYYMMDD)",
            format=FORMAT,
            line=found.line if found else node.line,
            element=f"<{path}>",
        ) from None


def _amount(node: _Node, path: str, what: str) -> Decimal:
    value = _required(node, path, what)
    if not _AMOUNT.fullmatch(value):
        found = node.find(path)
        raise StatementError(
            f"the {what} {value!r} is not an amount",
            format=FORMAT,
            line=found.line if found else node.line,
            element=f"<{path}>",
        )
    # The specification lets the decimal mark be a point or a comma.
    return Decimal(value.replace(",", "."))


def _statement(response: _Node, wrapper: _Node | None, index: int) -> Statement:
    if wrapper is not None:
        _raise_status(wrapper.findall("STATUS"))
    currency = _required(response, "CURDEF", "the statement currency").upper()
    account_node = response.find("BANKACCTFROM") or response.find("CCACCTFROM")
    if account_node is None:
        raise StatementError(
            "the account (<BANKACCTFROM> or <CCACCTFROM>) is missing",
            format=FORMAT,
            line=response.line,
            element=f"<{response.tag}>",
        )
    account = compact_account(_required(account_node, "ACCTID", "the account number")) or ""
    transactions = response.find("BANKTRANLIST")
    lines = []
    if transactions is not None:
        for number, entry in enumerate(transactions.findall("STMTTRN"), start=1):
            lines.append(_line(entry, number, currency))

    closing = closing_date = None
    ledger = response.find("LEDGERBAL")
    if ledger is not None:
        closing = _amount(ledger, "BALAMT", "closing balance")
        closing_date = _date(ledger, "DTASOF", "closing balance date")
    period_end = _date(transactions, "DTEND", "statement end date") if transactions else None
    transaction_id = wrapper.text_of("TRNUID") if wrapper is not None else None
    statement = Statement(
        format=FORMAT,
        account=account,
        currency=currency,
        # A TRNUID of 0 is what OFX uses when the file was not requested by a client.
        statement_id=transaction_id if transaction_id not in (None, "0") else None,
        statement_date=closing_date or period_end,
        closing_balance=closing,
        closing_date=closing_date,
        lines=tuple(lines),
    )
    return finish_statement(statement)


def _line(entry: _Node, number: int, currency: str) -> StatementLine:
    what = f"transaction {number}"
    amount = _amount(entry, "TRNAMT", f"amount of {what}")
    posted = _date(entry, "DTPOSTED", f"posting date of {what}", required=True)
    assert posted is not None
    memo = entry.text_of("MEMO") or ""
    name = entry.text_of("NAME") or entry.text_of("PAYEE/NAME")
    # With <CURRENCY> the amount is in that currency; <ORIGCURRENCY> only says where it came from.
    line_currency = entry.text_of("CURRENCY/CURSYM") or currency
    return StatementLine(
        position=0,
        booking_date=posted,
        value_date=_date(entry, "DTAVAIL", f"value date of {what}")
        or _date(entry, "DTUSER", f"transaction date of {what}"),
        amount=amount,
        currency=line_currency.upper(),
        payer_name=name,
        payer_account=compact_account(entry.text_of("BANKACCTTO/ACCTID")),
        remittance_text=memo,
        creditor_reference=find_creditor_reference(memo) or find_creditor_reference(name),
        bank_reference=entry.text_of("FITID"),
        customer_reference=entry.text_of("REFNUM") or entry.text_of("CHECKNUM"),
        transaction_code=entry.text_of("TRNTYPE"),
    )
