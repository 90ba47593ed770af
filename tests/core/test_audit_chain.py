"""The audit hash chain: canonical content, links, and naming the first broken link."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallybook.core.audit_chain import (
    CONTENT_CHANGED,
    EVENT_INSERTED,
    EVENT_MISSING,
    GENESIS,
    HEAD_MISMATCH,
    ORDER_CHANGED,
    CanonicalError,
    ChainEvent,
    ChainHead,
    canonical_content,
    canonical_value,
    event_hash,
    extend,
    verify,
)

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def make_events(count: int, organization_id: str = "org_1") -> list[ChainEvent]:
    events = [
        ChainEvent(
            id=f"aud_{index:04d}",
            organization_id=organization_id,
            actor="key_clerk" if index % 2 else "key_manager",
            action="invoice.issued" if index % 3 else "payment.recorded",
            entity="invoice",
            entity_id=f"inv_{index}",
            data={"total_minor": 1000 * index, "reason": f"step {index}"},
            created_at=T0 + timedelta(seconds=index),
        )
        for index in range(count)
    ]
    links = extend(None, events)
    return [
        replace(event, sequence=link.sequence, previous_hash=link.previous_hash, hash=link.hash)
        for event, link in zip(events, links, strict=True)
    ]


def head_of(events: list[ChainEvent]) -> ChainHead | None:
    if not events:
        return None
    last = events[-1]
    assert last.sequence is not None and last.hash is not None
    return ChainHead(last.sequence, last.hash, last.id)


def check(events: list[ChainEvent], head: ChainHead | None):  # type: ignore[no-untyped-def]
    by_hash = {event.hash: event.sequence for event in events if event.hash}
    return verify(sorted(events, key=_order), head, by_hash.get)


def _order(event: ChainEvent) -> tuple[bool, int]:
    return (event.sequence is None, event.sequence or 0)


def test_canonical_content_is_sorted_compact_utc_and_exact() -> None:
    event = ChainEvent(
        id="aud_1",
        organization_id="org_1",
        actor=None,
        action="credit_note.issued",
        entity="credit_note",
        entity_id="cn_1",
        data={
            "z": Decimal("0.10"),
            "a": datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        },
        created_at=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5))),
        sequence=7,
    )
    assert canonical_content(event) == (
        b'{"action":"credit_note.issued","actor":null,"created_at":"2026-01-01T17:00:00.000000Z",'
        b'"data":{"a":"2026-01-01T00:00:00.000000Z","z":"0.10"},"entity":"credit_note",'
        b'"entity_id":"cn_1","id":"aud_1","organization_id":"org_1","sequence":7}'
    )
    expected = hashlib.sha256(GENESIS.encode() + canonical_content(event)).hexdigest()
    assert event_hash(GENESIS, event) == expected


def test_canonical_values_read_back_the_same_from_json() -> None:
    value = {
        "amount": Decimal("1E+3"),
        "rate": 0.1,
        "on": date(2026, 2, 28),
        "tags": {"b", "a"},
        "pair": (1, "x"),
        "nested": [{"k": Decimal("-0")}],
    }
    canonical = canonical_value(value)
    assert canonical == {
        "amount": "1000",
        "rate": "0.1",
        "on": "2026-02-28",
        "tags": ["a", "b"],
        "pair": [1, "x"],
        "nested": [{"k": "0"}],
    }
    assert canonical_value(json.loads(json.dumps(canonical))) == canonical
    with pytest.raises(CanonicalError):
        canonical_value({"at": datetime(2026, 1, 1)})
    with pytest.raises(CanonicalError):
        canonical_value({"x": object()})


def test_an_intact_chain_verifies_and_an_empty_one_too() -> None:
    events = make_events(5)
    report = check(events, head_of(events))
    assert report.ok and report.events_checked == 5 and report.last_sequence == 5
    assert report.last_hash == events[-1].hash
    assert check([], None).ok
    assert events[0].previous_hash == GENESIS
    assert all(b.previous_hash == a.hash for a, b in zip(events, events[1:], strict=False))


def test_extend_carries_on_from_the_head() -> None:
    events = make_events(6)
    first, rest = events[:3], events[3:]
    links = extend(head_of(first), [replace(e, sequence=None, hash=None) for e in rest])
    assert [link.hash for link in links] == [e.hash for e in rest]
    assert [link.sequence for link in links] == [4, 5, 6]


def test_changed_content_is_named() -> None:
    events = make_events(6)
    events[2] = replace(events[2], data={"total_minor": 1})
    report = check(events, head_of(make_events(6)))
    assert report.first_break is not None
    assert report.first_break.kind == CONTENT_CHANGED
    assert report.first_break.event_id == "aud_0002" and report.first_break.sequence == 3
    assert report.events_checked == 2


def test_a_removed_event_is_named_by_the_gap() -> None:
    events = make_events(6)
    head = head_of(events)
    del events[3]
    report = check(events, head)
    assert report.first_break is not None
    assert report.first_break.kind == EVENT_MISSING
    assert report.first_break.sequence == 5
    assert "sequence number 4 is missing" in report.first_break.detail


def test_removing_the_last_event_is_caught_by_the_head() -> None:
    events = make_events(4)
    head = head_of(events)
    report = check(events[:-1], head)
    assert report.first_break is not None
    assert report.first_break.kind == EVENT_MISSING
    assert report.first_break.event_id == "aud_0003" and report.first_break.sequence == 4


def test_removed_and_renumbered_is_missing() -> None:
    events = make_events(5)
    head = head_of(events)
    shifted = events[:2] + [replace(e, sequence=(e.sequence or 0) - 1) for e in events[3:]]
    report = check(shifted, head)
    assert report.first_break is not None and report.first_break.kind == EVENT_MISSING
    assert report.first_break.event_id == "aud_0003"


def test_swapped_events_are_an_order_change() -> None:
    events = make_events(5)
    head = head_of(events)
    a, b = events[1], events[2]
    swapped = [events[0], replace(b, sequence=2), replace(a, sequence=3), *events[3:]]
    report = check(swapped, head)
    assert report.first_break is not None and report.first_break.kind == ORDER_CHANGED
    assert report.first_break.event_id == "aud_0002"


def test_inserted_events_are_named() -> None:
    events = make_events(4)
    head = head_of(events)
    stranger = replace(events[1], id="aud_forged", sequence=None, previous_hash=None, hash=None)
    report = check([*events, stranger], head)
    assert report.first_break is not None and report.first_break.kind == EVENT_INSERTED
    assert report.first_break.event_id == "aud_forged"

    # Appended after the head, even with a correct hash.
    extra = replace(events[-1], id="aud_tail", sequence=5, previous_hash=events[-1].hash)
    extra = replace(extra, hash=event_hash(events[-1].hash or "", extra))
    report = check([*events, extra], head)
    assert report.first_break is not None and report.first_break.kind == EVENT_INSERTED
    assert report.first_break.event_id == "aud_tail"

    # Slipped into the middle with a valid link, the rest renumbered: the next link breaks.
    forged = replace(events[1], id="aud_middle", data={"x": 1}, sequence=3)
    forged = replace(
        forged, previous_hash=events[1].hash, hash=event_hash(events[1].hash or "", forged)
    )
    moved = [replace(e, sequence=(e.sequence or 0) + 1) for e in events[2:]]
    report = check([*events[:2], forged, *moved], ChainHead(5, moved[-1].hash or "", "x"))
    assert report.first_break is not None and report.first_break.kind == EVENT_INSERTED
    assert report.first_break.event_id == "aud_middle"


def test_a_rehashed_change_names_the_changed_event() -> None:
    events = make_events(5)
    head = head_of(events)
    changed = replace(events[1], data={"total_minor": 0})
    changed = replace(changed, hash=event_hash(changed.previous_hash or "", changed))
    report = check([events[0], changed, *events[2:]], head)
    assert report.first_break is not None and report.first_break.kind == CONTENT_CHANGED
    assert report.first_break.event_id == "aud_0001"


def test_a_missing_or_wrong_head_is_reported() -> None:
    events = make_events(3)
    report = check(events, None)
    assert report.first_break is not None and report.first_break.kind == HEAD_MISMATCH
    report = check(events, ChainHead(3, "f" * 64, "aud_0002"))
    assert report.first_break is not None and report.first_break.kind == CONTENT_CHANGED


def _mutations(event: ChainEvent) -> list[ChainEvent]:
    return [
        replace(event, id=event.id + "x"),
        replace(event, organization_id="org_2"),
        replace(event, actor="key_other"),
        replace(event, action="invoice.voided"),
        replace(event, entity="payment"),
        replace(event, entity_id="inv_other"),
        replace(event, data={**event.data, "total_minor": -1}),
        replace(event, data={}),
        replace(event, created_at=event.created_at + timedelta(microseconds=1)),
        replace(event, sequence=(event.sequence or 0) + 100),
        replace(event, sequence=None),
        replace(event, previous_hash="1" * 64),
        replace(event, hash="2" * 64),
    ]


@given(
    count=st.integers(min_value=1, max_value=12),
    position=st.integers(min_value=0, max_value=11),
    which=st.integers(min_value=0, max_value=12),
)
def test_any_single_field_change_of_any_event_is_detected(
    count: int, position: int, which: int
) -> None:
    events = make_events(count)
    head = head_of(events)
    index = position % count
    events[index] = _mutations(events[index])[which]
    assert not check(events, head).ok


@given(count=st.integers(min_value=1, max_value=12), position=st.integers(0, 11))
def test_any_single_removal_is_detected(count: int, position: int) -> None:
    events = make_events(count)
    head = head_of(events)
    del events[position % count]
    report = check(events, head)
    assert report.first_break is not None and report.first_break.kind == EVENT_MISSING


@given(
    count=st.integers(min_value=2, max_value=12),
    first=st.integers(0, 11),
    second=st.integers(0, 11),
)
def test_any_swap_of_two_events_is_detected(count: int, first: int, second: int) -> None:
    events = make_events(count)
    head = head_of(events)
    i, j = first % count, second % count
    if i == j:
        return
    a, b = events[i], events[j]
    events[i], events[j] = replace(b, sequence=a.sequence), replace(a, sequence=b.sequence)
    report = check(events, head)
    assert report.first_break is not None
    assert report.first_break.kind in (ORDER_CHANGED, CONTENT_CHANGED)


def test_files_are_recorded_by_their_digest() -> None:
    logo = b"\x89PNG\r\n\x1a\n..."
    assert canonical_value({"logo": logo}) == {"logo": "sha256:" + hashlib.sha256(logo).hexdigest()}
