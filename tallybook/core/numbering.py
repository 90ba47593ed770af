"""Document numbers from a series pattern such as 'INV-{YYYY}-{seq:06}'."""

from __future__ import annotations

import re
from datetime import date

_TOKEN = re.compile(r"\{(YYYY|YY|MM|seq(?::0?(\d+))?)\}")


class NumberPatternError(ValueError):
    pass


def validate_pattern(pattern: str, field: str = "number_pattern") -> None:
    if "{seq" not in pattern:
        raise NumberPatternError(f"{field}: must contain {{seq}} or {{seq:06}}")
    leftover = _TOKEN.sub("", pattern)
    if "{" in leftover or "}" in leftover:
        raise NumberPatternError(
            f"{field}: unknown placeholder; use {{YYYY}}, {{YY}}, {{MM}} and {{seq:0N}}"
        )
    if len(pattern) > 40:
        raise NumberPatternError(f"{field}: at most 40 characters")


def series_scope(pattern: str, issue_date: date) -> str:
    """The counter a number is drawn from: a pattern with the year restarts each year."""
    scope = ""
    if "{YYYY}" in pattern or "{YY}" in pattern:
        scope = f"{issue_date.year:04d}"
    if "{MM}" in pattern:
        scope += f"-{issue_date.month:02d}"
    return scope


def format_number(pattern: str, issue_date: date, sequence: int) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(1)
        if token == "YYYY":
            return f"{issue_date.year:04d}"
        if token == "YY":
            return f"{issue_date.year % 100:02d}"
        if token == "MM":
            return f"{issue_date.month:02d}"
        width = int(match.group(2) or 0)
        return f"{sequence:0{width}d}"

    return _TOKEN.sub(replace, pattern)
