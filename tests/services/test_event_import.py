"""Importing usage event files: chunks, line and row numbers, both formats, progress."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import make_org
from sqlalchemy import func, select

from tallybook.db.models import UsageEvent
from tallybook.services import customers, events, metering
from tallybook.services.base import Actor, Database, Forbidden, InvalidInput, Role
from tallybook.services.event_import import CHUNKS_IN_FLIGHT, import_events_file
from tallybook.services.organizations import create_api_key


def _world(db: Database) -> Actor:
    actor = make_org(db)
    customers.create_customer(
        db, actor, {"legal_name": "Acme", "country": "US", "currency": "USD", "external_id": "acme"}
    )
    metering.create_metric(db, actor, {"code": "calls", "aggregation": "sum", "field": "n"})
    return actor


def _event(tid: str, n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "transaction_id": tid,
        "customer": "acme",
        "metric": "calls",
        "timestamp": "2026-03-01T10:00:00Z",
        "properties": {"n": n},
        **extra,
    }


def _ndjson(path: Path, lines: list[Any]) -> Path:
    with path.open("wb") as out:
        for line in lines:
            out.write(line if isinstance(line, bytes) else orjson.dumps(line))
            out.write(b"\n")
    return path


def _stored(db: Database, actor: Actor) -> dict[str, dict[str, Any]]:
    with db.reading() as session:
        rows = session.execute(
            select(UsageEvent.transaction_id, UsageEvent.properties).where(
                UsageEvent.organization_id == actor.organization_id
            )
        ).all()
    return {tid: props for tid, props in rows}


def _count(db: Database, actor: Actor) -> int:
    with db.reading() as session:
        return session.scalar(
            select(func.count())
            .select_from(UsageEvent)
            .where(UsageEvent.organization_id == actor.organization_id)
        )


def test_ndjson_across_chunks_numbers_rejections_by_line(db: Database, tmp_path: Path) -> None:
    actor = _world(db)
    lines: list[Any] = [
        _event("t1", 1),  # line 1
        _event("t2", 2),  # line 2
        b"",  # line 3: blank, skipped
        _event("t3", 3),  # line 4
        _event("t1", 1),  # line 5: duplicate of line 1, an earlier chunk
        _event("t4", 4),  # line 6
        _event("t4", 5),  # line 7: same id as line 6 in the same chunk, other content
        b"{not json",  # line 8
        _event("t2", 9),  # line 9: same id as line 2 (earlier chunk), other content
        _event("t5", 5, timestamp="yesterday"),  # line 10
        b"   ",  # line 11: blank
        _event("t6", 6),  # line 12
    ]
    path = _ndjson(tmp_path / "usage.ndjson", lines)
    seen: list[int] = []
    result = import_events_file(db, actor, path, chunk_size=3, progress=seen.append)

    assert result.summary() == {
        "accepted": 5,  # t1 t2 t3 t4 t6
        "duplicates": 1,
        "rejected": 4,
        "quarantined": 0,
        "late_periods": 0,
    }
    rejected = [(o.index, o.transaction_id, o.reason) for o in result.outcomes]
    assert rejected == [
        (
            7,
            "t4",
            "transaction_id: line 6 of this file has the same id with different content",
        ),
        (
            8,
            None,
            "event: not valid JSON (unexpected character, expected a string key at column 2)",
        ),
        (9, "t2", "transaction_id: already used for an event with different content"),
        (10, "t5", "timestamp: not an ISO 8601 date-time"),
    ]
    stored = _stored(db, actor)
    assert sorted(stored) == ["t1", "t2", "t3", "t4", "t6"]
    assert stored["t4"] == {"n": 4} and stored["t2"] == {"n": 2}
    # Called per chunk with growing byte counts, ending at the file's size.
    assert seen == sorted(seen) and len(set(seen)) == len(seen) >= 3
    assert seen[-1] == path.stat().st_size

    again = import_events_file(db, actor, path, chunk_size=5)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 6, 4)
    assert _count(db, actor) == 5
    # On PostgreSQL ids new to the file are claimed without a lookup: the first chunks found
    # their ids taken and were written again looking them up (later chunks look them up).
    assert (again.looked_up_again > 0) == (db.dialect == "postgresql")


def test_ndjson_byte_order_mark_blank_start_and_windows_line_ends(
    db: Database, tmp_path: Path
) -> None:
    actor = _world(db)
    path = tmp_path / "usage.ndjson"
    path.write_bytes(
        b"\xef\xbb\xbf \r\n"  # line 1: a byte order mark, then nothing
        b"\r\n"  # line 2: blank
        + orjson.dumps(_event("w1"))
        + b"\r\n"  # line 3
        + b"\t \r\n"  # line 4: blank
        + orjson.dumps(_event("w2", timestamp="2026-03-01T10:00:00.5+00:00"))
        + b"\r\n"  # line 5
        + b'{"transaction_id": "w3"\r\n'  # line 6: cut short
        + orjson.dumps(_event("w4"))  # line 7: no line end
    )
    seen: list[int] = []
    result = import_events_file(db, actor, path, chunk_size=2, progress=seen.append)
    assert (result.accepted, result.rejected) == (3, 1)
    assert [(o.index, o.reason) for o in result.outcomes] == [
        (6, "event: not valid JSON (unexpected end of data at column 24)")
    ]
    assert sorted(_stored(db, actor)) == ["w1", "w2", "w4"]
    assert seen[-1] == path.stat().st_size
    # Only blank lines: nothing to import. A JSON array after blank lines: refused.
    path.write_bytes(b"\xef\xbb\xbf\n\n  \n")
    assert import_events_file(db, actor, path).summary()["accepted"] == 0
    path.write_bytes(b"\n\n[" + orjson.dumps(_event("a")) + b"]\n")
    with pytest.raises(InvalidInput, match="JSON array"):
        import_events_file(db, actor, path)


def test_csv_columns_properties_and_row_numbers(db: Database, tmp_path: Path) -> None:
    actor = _world(db)
    path = tmp_path / "usage.csv"
    path.write_bytes(
        b"\xef\xbb\xbf"  # a spreadsheet's byte order mark
        b"transaction_id,customer,metric,timestamp,n,region,note\r\n"
        b"c1,acme,calls,2026-03-01T10:00:00+01:00,5,eu,\r\n"  # row 1
        b'c2,acme,calls,1772359200,7,,"two\r\nlines"\r\n'  # row 2 (Unix seconds)
        b"c3,acme,calls,2026-03-01,1,eu,\r\n"  # row 3: no offset
        b"c4,acme,calls,2026-03-01T10:00:00Z,1,eu,x,extra\r\n"  # row 4: one cell too many
        b"c5,nobody,calls,2026-03-01T10:00:00Z,2,us,\r\n"  # row 5: unknown customer
        b"c6,acme,calls,2026-03-01T10:00:00Z,,us,\r\n"  # row 6: no n
        b"c1,acme,calls,2026-03-01T10:00:00+01:00,5,eu,\r\n"  # row 7: duplicate of row 1
    )
    result = import_events_file(db, actor, path, chunk_size=2)
    assert result.summary() == {
        "accepted": 3,
        "duplicates": 1,
        "rejected": 3,
        "quarantined": 1,
        "late_periods": 0,
    }
    assert [(o.index, o.reason) for o in result.outcomes] == [
        (3, "timestamp: give a time zone offset (Z for UTC)"),
        (4, "row: 8 cells, but the header names 7 columns"),
        (6, "properties.n: metric calls needs a number here"),
    ]
    stored = _stored(db, actor)
    # Cells are text; empty cells are left out; other columns are properties.
    assert stored == {
        "c1": {"n": "5", "region": "eu"},
        "c2": {"n": "7", "note": "two\r\nlines"},
    }
    held, _ = events.list_quarantine(db, actor)
    assert [(q.transaction_id, q.customer_external_id) for q in held] == [("c5", "nobody")]


def test_more_than_a_thousand_rejections_keeps_the_first_thousand(
    db: Database, tmp_path: Path
) -> None:
    actor = _world(db)
    lines: list[Any] = [b"oops"] * 1200 + [_event("ok")]
    path = _ndjson(tmp_path / "bad.jsonl", lines)
    result = import_events_file(db, actor, path, chunk_size=500)
    assert (result.accepted, result.rejected) == (1, 1200)
    assert [o.index for o in result.outcomes] == list(range(1, 1001))


def test_only_ids_an_earlier_chunk_still_being_written_carries_wait_for_it(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are written on the import's workers, several at once on PostgreSQL. The events of
    a chunk whose ids an earlier chunk still being written carries wait for it to commit; the
    rest are written at once. The earlier line of the file always wins a conflict."""
    actor = _world(db)
    rows = [_event(f"t{i}") for i in range(10)]
    # Line 9 repeats line 2's id with other content; they are in different chunks.
    rows[8] = {**_event("t1"), "properties": {"n": 999}}
    path = _ndjson(tmp_path / "usage.ndjson", rows)
    real = events.store_events_batch
    calls: list[tuple[str, list[str]]] = []
    side_by_side = db.dialect == "postgresql"
    running = threading.Semaphore(CHUNKS_IN_FLIGHT if side_by_side else 1)
    t9_written = threading.Event()

    def store(db_: Database, actor_: Actor, batch: Any, **options: Any) -> Any:
        assert running.acquire(blocking=False), "more chunks written at once than workers"
        try:
            ids = [e.transaction_id for e in batch.events]
            calls.append((threading.current_thread().name, ids))
            if side_by_side and "t0" in ids:
                # The first chunk is still being written when the third one comes.
                assert t9_written.wait(60)
            answer = real(db_, actor_, batch, **options)
            if "t9" in ids:
                t9_written.set()
            return answer
        finally:
            running.release()

    monkeypatch.setattr(events, "store_events_batch", store)
    result = import_events_file(db, actor, path, chunk_size=4)
    assert (result.accepted, result.rejected) == (9, 1)
    assert [(o.index, o.transaction_id) for o in result.outcomes] == [(9, "t1")]
    if side_by_side:
        # t9 was written while the first chunk was; t1 waited for it, and came last.
        assert sorted(ids for _, ids in calls) == [
            ["t0", "t1", "t2", "t3"],
            ["t1"],
            ["t4", "t5", "t6", "t7"],
            ["t9"],
        ]
        assert calls[-1][1] == ["t1"]
    else:
        assert [ids for _, ids in calls] == [
            ["t0", "t1", "t2", "t3"],
            ["t4", "t5", "t6", "t7"],
            ["t1", "t9"],
        ]
    assert all(name.startswith("event-import") for name, _ in calls)
    with db.reading() as session:
        stored = session.scalar(
            select(UsageEvent.properties).where(
                UsageEvent.organization_id == actor.organization_id,
                UsageEvent.transaction_id == "t1",
            )
        )
    assert stored != {"n": 999}


def test_when_a_chunk_fails_the_later_lines_it_held_back_are_not_written(
    postgres_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Line 9 repeats line 2's id and waits for the first chunk; that chunk fails. Line 9 is
    not written either: importing the file again must store line 2, not line 9."""
    db = postgres_db
    actor = _world(db)
    rows = [_event(f"t{i}") for i in range(10)]
    rows[8] = {**_event("t1"), "properties": {"n": 999}}
    path = _ndjson(tmp_path / "usage.ndjson", rows)
    real = events.store_events_batch
    t9_written = threading.Event()

    def store(db_: Database, actor_: Actor, batch: Any, **options: Any) -> Any:
        ids = [e.transaction_id for e in batch.events]
        if "t0" in ids:
            assert t9_written.wait(60)
            raise RuntimeError("the database went away")
        answer = real(db_, actor_, batch, **options)
        if "t9" in ids:
            t9_written.set()
        return answer

    monkeypatch.setattr(events, "store_events_batch", store)
    with pytest.raises(RuntimeError, match="went away"):
        import_events_file(db, actor, path, chunk_size=4)
    monkeypatch.undo()
    again = import_events_file(db, actor, path, chunk_size=4)
    assert (again.accepted, again.duplicates, again.rejected) == (4, 5, 1)
    assert [(o.index, o.transaction_id) for o in again.outcomes] == [(9, "t1")]
    with db.reading() as session:
        stored = dict(
            session.execute(
                select(UsageEvent.transaction_id, UsageEvent.properties).where(
                    UsageEvent.organization_id == actor.organization_id
                )
            ).all()
        )
    assert sorted(stored) == [f"t{i}" for i in range(10) if i != 8]
    assert stored["t1"] != {"n": 999}


def test_bad_files_are_refused_before_anything_is_written(db: Database, tmp_path: Path) -> None:
    actor = _world(db)
    text = tmp_path / "usage.txt"
    text.write_text('{"transaction_id": "x"}\n')
    with pytest.raises(InvalidInput) as unknown:
        import_events_file(db, actor, text)
    assert unknown.value.field == "format"
    with pytest.raises(InvalidInput) as missing:
        import_events_file(db, actor, tmp_path / "nope.ndjson")
    assert missing.value.field == "file" and "nope.ndjson" in missing.value.detail
    array = tmp_path / "usage.json"
    array.write_text("[\n" + orjson.dumps(_event("a")).decode() + "\n]\n")
    with pytest.raises(InvalidInput, match="JSON array"):
        import_events_file(db, actor, array)
    header = tmp_path / "usage.csv"
    header.write_text("customer,metric,timestamp\nacme,calls,2026-03-01T00:00:00Z\n")
    with pytest.raises(InvalidInput, match="needs a transaction_id column"):
        import_events_file(db, actor, header)
    key = create_api_key(db, actor, "viewer", "viewer")
    viewer = Actor(actor.organization_id, key.id, Role.VIEWER)
    with pytest.raises(Forbidden):
        import_events_file(db, viewer, _ndjson(tmp_path / "ok.ndjson", [_event("v")]))
    # A text file read as CSV when told so.
    text.write_text("transaction_id,customer,metric,timestamp,n\nz,acme,calls,1772359200,3\n")
    assert import_events_file(db, actor, text, format="csv").accepted == 1
    assert sorted(_stored(db, actor)) == ["z"]
