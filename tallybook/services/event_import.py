"""Usage event files: stream an NDJSON or CSV file of any size through event ingestion.

The file is read and parsed a chunk at a time (never whole) on the calling thread; each parsed
chunk is written by `events.store_events_batch` (COPY on PostgreSQL) on a worker, so reading
and writing overlap (on PostgreSQL several chunks in flight; on SQLite one). Every event is
answered as in a batch; rejected events are reported by their place in the file: the line
number for NDJSON, the data row number for CSV (the first row after the header is row 1).
"""

from __future__ import annotations

import codecs
import csv
import heapq
import io
import itertools
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from tallybook.runtime import throughput_gc
from tallybook.services import events
from tallybook.services.base import WRITERS, Actor, Database, InvalidInput
from tallybook.services.events import REJECTED, EventOutcome, IngestResult

FORMATS = ("ndjson", "csv")
SUFFIXES = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson", ".csv": "csv"}
# Chunks written at once on PostgreSQL. Measured on 2 cores (a million events, as in
# bench/ingest.py): three took 13-16 s, six 10.1-11.8 s. A writer often waits, for the database
# or for an earlier chunk; with more chunks in flight the parser waits for the writers less.
CHUNKS_IN_FLIGHT = 6
# Rejected events kept for the report; the counts cover all of them.
KEEP_REJECTED = 1000
# CSV columns that are the event's own fields; every other column is a property.
EVENT_COLUMNS = frozenset({"transaction_id", "customer", "subscription_id", "metric", "timestamp"})
_BOM = codecs.BOM_UTF8
_IN_BATCH = re.compile(r"event (\d+) of this batch")


def detect_format(path: Path, format: str | None = None) -> str:
    """ndjson or csv: as given, else from the file name's suffix."""
    if format is not None:
        chosen = format.strip().lower()
        if chosen == "jsonl":
            chosen = "ndjson"
        if chosen not in FORMATS:
            raise InvalidInput("format: must be ndjson or csv", field="format")
        return chosen
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise InvalidInput(
            f"format: cannot tell the format of {path.name} from its name; give ndjson or csv",
            field="format",
        )
    return found


def position_label(format: str) -> str:
    """What an outcome's index counts in a file of this format."""
    return "row" if format == "csv" else "line"


@dataclass
class _Chunk:
    """Up to chunk_size records of the file, with where each came from."""

    events: list[Any] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    # Records rejected before ingestion (not JSON, a malformed row), in file order.
    unreadable: list[EventOutcome] = field(default_factory=list)
    bytes_read: int = 0

    def __len__(self) -> int:
        return len(self.events) + len(self.unreadable)


# A record of the file: (position, the event as sent or None, why it is unreadable or None).
_Record = tuple[int, Any, str | None]


class _Source:
    """Reads records from a binary stream, counting the bytes read for progress."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.bytes_read = 0

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        for number, line in enumerate(self.stream, start=1):
            self.bytes_read += len(line)
            if number == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            yield number, line

    def records(self) -> Iterator[_Record]:
        raise NotImplementedError

    def chunks(self, size: int) -> Iterator[_Chunk]:
        """The records in chunks of up to `size`."""
        chunk = _Chunk()
        for position, raw, unreadable in self.records():
            if unreadable is not None:
                chunk.unreadable.append(EventOutcome(position, None, REJECTED, unreadable))
            else:
                chunk.events.append(raw)
                chunk.positions.append(position)
            if len(chunk) >= size:
                chunk.bytes_read = self.bytes_read
                yield chunk
                chunk = _Chunk()
        if len(chunk):
            chunk.bytes_read = self.bytes_read
            yield chunk


class _NdjsonSource(_Source):
    def chunks(self, size: int) -> Iterator[_Chunk]:
        """As records() would give them, in one loop: a line costs little more than parsing
        its JSON (a blank line is recognised on the way out, when the line is not JSON)."""
        loads, invalid = orjson.loads, orjson.JSONDecodeError
        lines = iter(self.stream)
        number = read = 0
        first = None
        for line in lines:  # up to the first line that is not blank
            if number == 0 and line.startswith(_BOM):
                read += len(_BOM)
                line = line[len(_BOM) :]
            if line.strip():
                first = line
                break
            number += 1
            read += len(line)
        if first is None:
            self.bytes_read = read
            return
        if first.lstrip().startswith(b"["):
            raise InvalidInput(
                "file: this is a JSON array; give one event object per line (NDJSON)",
                field="file",
            )
        chunk = _Chunk()
        events, positions, unreadable = chunk.events, chunk.positions, chunk.unreadable
        for text in itertools.chain((first,), lines):
            number += 1
            read += len(text)
            try:
                events.append(loads(text))
            except invalid as error:
                if not text.strip():
                    continue
                # The line's end is not part of the event: a truncated event ends at its text.
                column = min(error.pos, len(text.rstrip())) + 1
                unreadable.append(
                    EventOutcome(
                        number,
                        None,
                        REJECTED,
                        f"event: not valid JSON ({error.msg} at column {column})",
                    )
                )
            else:
                positions.append(number)
            if len(events) + len(unreadable) >= size:
                chunk.bytes_read = self.bytes_read = read
                yield chunk
                chunk = _Chunk()
                events, positions, unreadable = chunk.events, chunk.positions, chunk.unreadable
        self.bytes_read = read
        if len(chunk):
            chunk.bytes_read = read
            yield chunk


class _CsvSource(_Source):
    def __init__(self, stream: BinaryIO) -> None:
        super().__init__(stream)
        self.not_utf8: set[int] = set()

    def _text(self) -> Iterator[str]:
        for number, line in self._lines():
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                self.not_utf8.add(number)
                yield line.decode("utf-8", "replace")

    def records(self) -> Iterator[_Record]:
        reader = csv.reader(self._text())
        header = next(reader, None)
        if header is None:
            return
        names = _header(header)
        width = len(names)
        row = 0
        while True:
            before = reader.line_num
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                row += 1
                yield row, None, f"row: not readable as CSV ({error})"
                continue
            row += 1
            if not cells:
                continue
            if any(n in self.not_utf8 for n in range(before + 1, reader.line_num + 1)):
                yield row, None, "row: not UTF-8 text"
                continue
            if len(cells) > width:
                yield row, None, f"row: {len(cells)} cells, but the header names {width} columns"
                continue
            event: dict[str, Any] = {}
            properties: dict[str, str] = {}
            for name, cell in zip(names, cells, strict=False):
                if cell == "":
                    continue
                if name in EVENT_COLUMNS:
                    event[name] = cell
                else:
                    properties[name] = cell
            stamp = event.get("timestamp")
            if stamp is not None and stamp.strip().isascii() and stamp.strip().isdigit():
                event["timestamp"] = int(stamp)
            if properties:
                event["properties"] = properties
            yield row, event, None


def _header(cells: list[str]) -> list[str]:
    names = [cell.strip() for cell in cells]
    for position, name in enumerate(names, start=1):
        if not name:
            raise InvalidInput(f"header: column {position} has no name", field="header")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidInput(f"header: column {repeated[0]!r} appears twice", field="header")
    for required in ("transaction_id", "metric", "timestamp"):
        if required not in names:
            raise InvalidInput(f"header: the file needs a {required} column", field="header")
    if "customer" not in names and "subscription_id" not in names:
        raise InvalidInput(
            "header: the file needs a customer or a subscription_id column", field="header"
        )
    return names


def _in_file(outcome: EventOutcome, positions: list[int], label: str) -> EventOutcome:
    """An outcome numbered by its place in the chunk, renumbered by its place in the file."""
    reason = outcome.reason
    if reason is not None and "of this batch" in reason:
        reason = _IN_BATCH.sub(
            lambda m: f"{label} {positions[int(m.group(1))]} of this file", reason
        )
    return replace(outcome, index=positions[outcome.index], reason=reason)


class _SeenIds:
    """The transaction ids earlier chunks of a file may have carried, as one byte per slot of
    their hashes (a Bloom filter with one hash function).

    An id whose slot is empty is new to the file: unless it was stored before the import
    began, it is not taken, so it is claimed without looking it up (a lookup is an index probe
    per id, as dear to the database as storing the key); the unique key catches the exception,
    and the claim is made again with every id looked up. The others are looked up. Sized for
    about one slot in eight taken at the end of the file; once an id claimed without a lookup
    was found taken (a file imported twice, say) every id is looked up.
    """

    def __init__(self, file_size: int) -> None:
        # Every event takes at least 80 bytes or so: 10 slots per 100 bytes, within bounds.
        wanted = file_size // 10 if file_size else 1 << 22
        self.slots = bytearray(1 << min(max(wanted.bit_length(), 16), 25))
        self.mask = len(self.slots) - 1
        self.off = False

    def lookup(self, ids: Iterable[str]) -> set[str] | None:
        """The ids to look up; those seen now are remembered. None: all of them."""
        if self.off:
            return None
        slots, mask = self.slots, self.mask
        again = set()
        for tid in ids:
            slot = hash(tid) & mask
            if slots[slot]:
                again.add(tid)
            else:
                slots[slot] = 1
        return again

    def give_up(self) -> None:
        self.off = True


def _size(stream: BinaryIO) -> int:
    try:
        return os.fstat(stream.fileno()).st_size
    except (OSError, ValueError, io.UnsupportedOperation):
        return 0


@dataclass
class _Writing:
    """A chunk submitted: its ids (those set aside too), and how its writing ended."""

    ids: dict[str, Any] = field(default_factory=dict)
    ended: threading.Event = field(default_factory=threading.Event)
    failed: bool = False


def _store(
    db: Database,
    actor: Actor,
    batch: events.PreparedBatch,
    later: events.PreparedBatch | None,
    earlier: list[_Writing],
    mine: _Writing,
) -> IngestResult:
    """Write one chunk. The events whose ids an earlier chunk still being written also carries
    (`later`) are written once those chunks have committed, so that the earlier line of a file
    always wins; the rest at once, beside them. If an earlier chunk failed, its lines were not
    written and these are not either: the import stops at that chunk."""
    try:
        result = events.store_events_batch(db, actor, batch, detail=False)
        if later is not None:
            for chunk in earlier:
                chunk.ended.wait()
            if any(chunk.failed for chunk in earlier):
                raise RuntimeError("an earlier chunk of the file was not written")
            result.add(events.store_events_batch(db, actor, later, detail=False))
            result.outcomes.sort(key=lambda o: o.index)
        return result
    except BaseException:
        mine.failed = True
        raise
    finally:
        mine.ended.set()


def import_events_file(
    db: Database,
    actor: Actor,
    path: Path,
    *,
    format: str | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 10_000,
) -> IngestResult:
    """Ingest every event of an NDJSON or CSV file; the first 1,000 rejections itemised.

    `progress(bytes_read)` is called as each chunk is written. Chunks already written stay
    written if a later one fails; importing the file again only adds what is missing, since
    events already received answer as duplicates.
    """
    actor.require(*WRITERS, action="send usage events")
    if not 1 <= chunk_size <= events.MAX_BATCH:
        raise InvalidInput(
            f"chunk_size: between 1 and {events.MAX_BATCH} events", field="chunk_size"
        )
    kind = detect_format(path, format)
    label = position_label(kind)
    try:
        stream = path.open("rb")
    except OSError as error:
        raise InvalidInput(
            f"file: cannot read {path}: {error.strerror or error}", field="file"
        ) from None
    source: _Source = _CsvSource(stream) if kind == "csv" else _NdjsonSource(stream)
    result = IngestResult()
    reported = -1
    # On PostgreSQL a chunk looks up only the ids that earlier chunks may have carried.
    seen = _SeenIds(_size(stream)) if db.dialect == "postgresql" else None

    def collect(chunk: _Chunk, future: Future[IngestResult] | None) -> None:
        nonlocal reported
        part = future.result() if future is not None else IngestResult()
        written = [_in_file(o, chunk.positions, label) for o in part.outcomes]
        part.outcomes = list(heapq.merge(written, chunk.unreadable, key=lambda o: o.index))
        part.rejected += len(chunk.unreadable)
        result.add(part, keep=KEEP_REJECTED)
        if part.looked_up_again and seen is not None:
            seen.give_up()
        if progress is not None:
            progress(chunk.bytes_read)
            reported = chunk.bytes_read

    # On PostgreSQL several chunks are in flight, each on its own connection, written side by
    # side while the next is parsed and prepared. SQLite has one writer: one chunk after
    # another.
    workers = CHUNKS_IN_FLIGHT if db.dialect == "postgresql" else 1
    with (
        stream,
        throughput_gc(),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="event-import") as worker,
    ):
        # Chunks submitted and not collected yet.
        pending: deque[tuple[_Chunk, Future[IngestResult] | None, _Writing]] = deque()
        for chunk in source.chunks(chunk_size):
            future = None
            mine = _Writing()
            if chunk.events:
                # Parsing (the Python half of the work) happens here, meanwhile.
                batch = events.prepare_events(chunk.events)
                mine.ids = batch.by_id
                if seen is not None:
                    batch.lookup = seen.lookup(batch.by_id)
                # Ids the Bloom filter has not seen are new to the file: only the others can
                # be in an earlier chunk still being written.
                maybe = batch.lookup if batch.lookup is not None else batch.by_id
                earlier = [w for _, _, w in pending if not w.ended.is_set()]
                later = None
                if earlier and maybe:
                    taken = {tid for tid in maybe if any(tid in w.ids for w in earlier)}
                    if taken:
                        later = events.set_aside(batch, taken)
                future = worker.submit(_store, db, actor, batch, later, earlier, mine)
            else:
                mine.ended.set()
            pending.append((chunk, future, mine))
            while len(pending) >= workers:
                collect(*pending.popleft()[:2])
        while pending:
            collect(*pending.popleft()[:2])
    if progress is not None and reported != source.bytes_read:
        progress(source.bytes_read)
    return result
