"""The audit trail's hash chain: canonical content of an audit event, its SHA-256 link to the
event before it, and the walk that recomputes a chain and names the first broken link.

Each organisation has one chain. Event n stores its sequence number n, the hash of event n-1
(64 zeros for the first) and SHA-256 over that previous hash (as 64 lowercase hex characters)
followed by the event's canonical content: UTF-8 JSON with sorted keys and no whitespace, of
id, organization_id, sequence, actor, action, entity, entity_id, data and created_at
(UTC, ISO 8601 with microseconds and a Z). Values in `data` are canonical too: exact decimals
and floats as text, date-times in UTC. An auditor can recompute every hash from an export.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

GENESIS = "0" * 64

# What a broken link can be; the first one found is reported.
CONTENT_CHANGED = "content_changed"
EVENT_MISSING = "event_missing"
EVENT_INSERTED = "event_inserted"
ORDER_CHANGED = "order_changed"
HEAD_MISMATCH = "head_mismatch"


class CanonicalError(ValueError):
    """A value that has no single canonical form (a naive date-time, an unknown type)."""


def canonical_value(value: Any) -> Any:
    """The JSON-safe form of a value that reads back identically from any database: exact
    decimals and floats become text, date-times UTC ISO text, tuples and sets lists."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Enum):
        return canonical_value(value.value)
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        text = format(value, "f")
        return "0" if text in ("-0", "") else text
    if isinstance(value, float):
        # A float must not come near money; when one turns up in an audit record it is kept
        # as the text Python prints for it, which JSON columns cannot reformat.
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        # A file (a logo) is recorded by its digest: the trail says which one, not its bytes.
        return "sha256:" + hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, Mapping):
        return {str(key): canonical_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [canonical_value(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((canonical_value(item) for item in value), key=_sort_key)
    raise CanonicalError(f"{type(value).__name__} has no canonical form in an audit event")


def _sort_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def utc_text(moment: datetime) -> str:
    """2026-01-31T12:00:00.000000Z: one spelling per instant."""
    if moment.tzinfo is None:
        raise CanonicalError(f"naive date-time {moment.isoformat()}: give a time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ChainEvent:
    """An audit event as stored: its content and its place in the chain."""

    id: str
    organization_id: str
    actor: str | None
    action: str
    entity: str
    entity_id: str
    data: Any
    created_at: datetime
    sequence: int | None = None
    previous_hash: str | None = None
    hash: str | None = None


@dataclass(frozen=True)
class ChainHead:
    """The organisation's chain head: where the next event links on."""

    last_sequence: int
    last_hash: str
    last_event_id: str | None = None


@dataclass(frozen=True)
class ChainLink:
    sequence: int
    previous_hash: str
    hash: str


@dataclass(frozen=True)
class ChainBreak:
    """The first place the chain does not hold: what is wrong, and at which event."""

    kind: str
    event_id: str | None
    sequence: int | None
    detail: str


@dataclass(frozen=True)
class ChainReport:
    events_checked: int
    last_sequence: int
    last_hash: str
    first_break: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def canonical_content(event: ChainEvent, sequence: int | None = None) -> bytes:
    """The bytes an event's hash covers (with `sequence` when it is not yet stored)."""
    content = {
        "id": event.id,
        "organization_id": event.organization_id,
        "sequence": event.sequence if sequence is None else sequence,
        "actor": event.actor,
        "action": event.action,
        "entity": event.entity,
        "entity_id": event.entity_id,
        "data": canonical_value(event.data),
        "created_at": utc_text(event.created_at),
    }
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def event_hash(previous_hash: str, event: ChainEvent, sequence: int | None = None) -> str:
    digest = hashlib.sha256(previous_hash.encode("ascii"))
    digest.update(canonical_content(event, sequence))
    return digest.hexdigest()


def extend(head: ChainHead | None, events: Iterable[ChainEvent]) -> list[ChainLink]:
    """Links for new events appended, in order, after the head (None: a new chain)."""
    sequence = head.last_sequence if head else 0
    previous = head.last_hash if head else GENESIS
    links = []
    for event in events:
        sequence += 1
        current = event_hash(previous, event, sequence)
        links.append(ChainLink(sequence, previous, current))
        previous = current
    return links


def verify(
    events: Iterable[ChainEvent],
    head: ChainHead | None,
    locate: Callable[[str], int | None] = lambda _hash: None,
) -> ChainReport:
    """Recompute a chain and name its first broken link.

    `events` are one organisation's events by sequence number, those without one (never
    chained: inserted behind the chain's back) last. `locate(hash)` answers the sequence
    number of the stored event with that hash, if any: it tells a reordering from a removal
    when a link points elsewhere. Only the event after the current one is held, so a chain
    of any length is walked in constant memory.
    """
    expected = 1
    previous = GENESIS
    previous_event: ChainEvent | None = None
    checked = 0
    iterator = iter(events)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        found = _check(current, following, expected, previous, previous_event, head, locate)
        if found is not None:
            return ChainReport(checked, expected - 1, previous, found)
        checked += 1
        expected += 1
        previous = current.hash or ""
        previous_event = current
        current = following
    last = expected - 1
    if head is None:
        if last:
            return ChainReport(
                checked,
                last,
                previous,
                ChainBreak(
                    HEAD_MISMATCH,
                    None,
                    None,
                    f"the chain head is missing although {last} events are chained",
                ),
            )
        return ChainReport(checked, 0, GENESIS, None)
    if head.last_sequence > last:
        missing = head.last_sequence - last
        who = f" (the last is {head.last_event_id})" if head.last_event_id else ""
        return ChainReport(
            checked,
            last,
            previous,
            ChainBreak(
                EVENT_MISSING,
                head.last_event_id,
                head.last_sequence,
                f"{missing} event(s) missing at the end of the chain: the head records "
                f"{head.last_sequence} events{who}, the table ends at {last}",
            ),
        )
    if head.last_hash != previous:
        return ChainReport(
            checked,
            last,
            previous,
            ChainBreak(
                CONTENT_CHANGED if previous_event else HEAD_MISMATCH,
                previous_event.id if previous_event else None,
                last or None,
                "the last event is not the one the chain head records (changed and re-hashed, "
                "or replaced)"
                if previous_event
                else "the chain head records events the table does not have",
            ),
        )
    return ChainReport(checked, last, previous, None)


def _check(
    event: ChainEvent,
    following: ChainEvent | None,
    expected: int,
    previous: str,
    previous_event: ChainEvent | None,
    head: ChainHead | None,
    locate: Callable[[str], int | None],
) -> ChainBreak | None:
    if event.sequence is None:
        return ChainBreak(
            EVENT_INSERTED,
            event.id,
            None,
            f"event {event.id} has no place in the chain: it was inserted without a sequence "
            "number or hash",
        )
    if head is not None and event.sequence > head.last_sequence:
        return ChainBreak(
            EVENT_INSERTED,
            event.id,
            event.sequence,
            f"event {event.id} lies after the last event the chain head records "
            f"({head.last_sequence})",
        )
    if event.sequence < expected:
        return ChainBreak(
            EVENT_INSERTED,
            event.id,
            event.sequence,
            f"event {event.id} repeats sequence number {event.sequence}",
        )
    if event.sequence > expected:
        gap = (
            f"sequence number {expected} is"
            if event.sequence == expected + 1
            else f"sequence numbers {expected} to {event.sequence - 1} are"
        )
        return ChainBreak(
            EVENT_MISSING,
            event.id,
            event.sequence,
            f"{gap} missing before event {event.id} (sequence {event.sequence})",
        )
    recomputed = event_hash(previous if event.previous_hash is None else event.previous_hash, event)
    if event.previous_hash != previous:
        return _broken_link(event, following, previous, previous_event, recomputed, locate)
    if recomputed != event.hash:
        if following is not None and following.previous_hash == previous:
            return ChainBreak(
                EVENT_INSERTED,
                event.id,
                event.sequence,
                f"event {event.id} (sequence {event.sequence}) is not part of the chain: the "
                "event after it links to the one before it",
            )
        return ChainBreak(
            CONTENT_CHANGED,
            event.id,
            event.sequence,
            f"event {event.id} (sequence {event.sequence}) was changed: its content no longer "
            "matches its hash",
        )
    return None


def _broken_link(
    event: ChainEvent,
    following: ChainEvent | None,
    previous: str,
    previous_event: ChainEvent | None,
    recomputed: str,
    locate: Callable[[str], int | None],
) -> ChainBreak:
    """The event does not link to the one before it: say why, as precisely as the rows allow."""
    where = f"event {event.id} (sequence {event.sequence})"
    linked_to = locate(event.previous_hash) if event.previous_hash else None
    if linked_to is not None and linked_to > (event.sequence or 0):
        return ChainBreak(
            ORDER_CHANGED,
            event.id,
            event.sequence,
            f"{where} was moved: it was chained after the event now at sequence {linked_to}",
        )
    if linked_to is not None and linked_to < (event.sequence or 0) - 1:
        return ChainBreak(
            EVENT_INSERTED,
            previous_event.id if previous_event else event.id,
            event.sequence - 1 if event.sequence else None,
            f"{where} links to the event at sequence {linked_to}: the event(s) between, "
            f"from {previous_event.id if previous_event else '?'}, were inserted",
        )
    if following is not None and following.previous_hash == previous:
        return ChainBreak(
            EVENT_INSERTED,
            event.id,
            event.sequence,
            f"{where} is not part of the chain: the event after it links to the one before it",
        )
    if recomputed != event.hash or previous_event is None:
        return ChainBreak(
            EVENT_MISSING,
            event.id,
            event.sequence,
            f"the event {where} was chained to is missing (removed and the rest renumbered)",
        )
    return ChainBreak(
        CONTENT_CHANGED,
        previous_event.id,
        event.sequence - 1 if event.sequence else None,
        f"event {previous_event.id} (sequence {event.sequence - 1 if event.sequence else '?'}) "
        f"was changed or replaced: {where} no longer links to it",
    )
