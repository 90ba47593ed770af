"""Usage event ingestion: exactly once, nothing lost, fast.

Every event is answered on its own: accepted (committed before the answer leaves), duplicate
(same transaction id, same content), or rejected with the reason. Events for a customer or
metric that does not exist yet are accepted into a quarantine and released once it does.
An event that lands in a period already rated marks that period as late, in the same
transaction, so the draft is re-rated or the difference billed on the next invoice.

On PostgreSQL batches of one organisation write side by side. A batch finds which of its
transaction ids are taken (one index probe each) and COPYs the new ids into usage_event_keys
and the new events straight into usage_events, all in one transaction. A file import looks up
only the ids its earlier lines may have carried and claims the others outright. Either way,
should an id be taken after all (by a batch beside it), the unique key of usage_event_keys
refuses the claim, which is made again with every id looked up.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import attrgetter
from typing import Any

import orjson
import psycopg
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tallybook.core.metering import EARLIEST, LATEST_ALLOWED, Metric, fingerprint_of
from tallybook.db.models import (
    Customer,
    LateUsagePeriod,
    QuarantinedEvent,
    Subscription,
    SubscriptionPeriodInvoice,
    UsageEvent,
    UsageEventKey,
    new_id,
)
from tallybook.services.base import (
    WRITERS,
    Actor,
    Database,
    InvalidInput,
    keyset_page,
    utcnow,
)
from tallybook.services.metering import load_metrics

log = logging.getLogger(__name__)

MAX_BATCH = 10_000
ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"


@dataclass(slots=True)
class EventOutcome:
    index: int
    transaction_id: str | None
    status: str
    reason: str | None = None
    # Accepted but held: the customer or metric does not exist yet.
    quarantined: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "index": self.index,
            "transaction_id": self.transaction_id,
            "status": self.status,
        }
        if self.reason is not None:
            data["reason"] = self.reason
        if self.quarantined is not None:
            data["quarantined"] = self.quarantined
        return data


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    quarantined: int = 0
    late_periods: int = 0
    outcomes: list[EventOutcome] = field(default_factory=list)
    # Claims made again because an id claimed without a lookup was taken (file imports).
    looked_up_again: int = 0

    def add(self, other: IngestResult, keep: int | None = None) -> None:
        self.looked_up_again += other.looked_up_again
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.quarantined += other.quarantined
        self.late_periods += other.late_periods
        for outcome in other.outcomes:
            if keep is None or (outcome.status == REJECTED and len(self.outcomes) < keep):
                self.outcomes.append(outcome)

    def summary(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "quarantined": self.quarantined,
            "late_periods": self.late_periods,
        }


@dataclass(slots=True)
class _Event:
    index: int
    transaction_id: str
    customer: str | None
    subscription_id: str | None
    metric_code: str
    # The UTC instant as datetime.isoformat() writes it: what is fingerprinted and stored.
    occurred_iso: str
    properties: dict[str, Any]
    fingerprint: bytes
    properties_json: str = "{}"
    customer_id: str | None = None
    quarantine: str | None = None
    rejected: str | None = None

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromisoformat(self.occurred_iso)


def _text(raw: Mapping[str, Any], name: str, limit: int, required: bool) -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        if required:
            raise ValueError(f"{name}: is required")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be text")
    if len(value) > limit:
        raise ValueError(f"{name}: at most {limit} characters")
    if "\x00" in value:
        raise ValueError(f"{name}: must not contain NUL characters")
    return value


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("timestamp: not an ISO 8601 date-time") from None
        if instant.tzinfo is None:
            raise ValueError("timestamp: give a time zone offset (Z for UTC)")
        instant = instant.astimezone(UTC)
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            instant = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("timestamp: out of range") from None
    elif value is None:
        raise ValueError("timestamp: is required")
    else:
        raise ValueError("timestamp: give an ISO 8601 date-time or whole Unix seconds")
    if not EARLIEST <= instant < LATEST_ALLOWED:
        raise ValueError("timestamp: must be between 2000 and 2099")
    return instant


# A UTC time as most clients write it (2026-03-01T10:00:00Z, with or without a fraction, Z or
# +00:00): its isoformat() is known from the text alone once its day is known to exist, so the
# common case skips building and formatting a datetime (an aware isoformat() is slow).
_UTC_TEXT = re.compile(
    r"(20[0-9][0-9]-[0-9][0-9]-[0-9][0-9])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.([0-9]{1,6}))?(?:Z|\+00:00)"
)
# Calendar days seen to exist (at most the 36,525 of 2000-2099).
_DAYS: set[str] = set()


def _utc_iso(value: Any) -> str:
    """The instant of a timestamp as sent, in UTC, as datetime.isoformat() writes it."""
    if type(value) is str:
        match = _UTC_TEXT.fullmatch(value)
        if match is not None:
            day = match[1]
            if day not in _DAYS:
                try:
                    date.fromisoformat(day)
                except ValueError:
                    raise ValueError("timestamp: not an ISO 8601 date-time") from None
                _DAYS.add(day)
            fraction = match[2]
            if fraction is None or fraction.count("0") == len(fraction):
                return value[:19] + "+00:00"
            return f"{value[:19]}.{fraction:0<6}+00:00"
    return _timestamp(value).isoformat()


# A NUL character as orjson writes it (an escaped backslash before 'u0000' is just text).
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _sane(value: Any, limit: int) -> bool:
    """The common case in one test: non-empty text within its limit, no NUL."""
    return type(value) is str and 0 < len(value) <= limit and "\x00" not in value


def parse_event(raw: Any, index: int) -> _Event:
    """One event as sent, checked field by field; ValueError names the field at fault."""
    if not isinstance(raw, dict):
        raise ValueError("event: must be an object")
    get = raw.get
    transaction_id, customer = get("transaction_id"), get("customer")
    subscription_id, metric = get("subscription_id"), get("metric")
    # Most events pass one quick test per field; the full checks find the words for the rest.
    if not _sane(transaction_id, 200):
        transaction_id = _text(raw, "transaction_id", 200, True)
    if customer is not None and not _sane(customer, 200):
        customer = _text(raw, "customer", 200, False)
    if subscription_id is not None and not _sane(subscription_id, 40):
        subscription_id = _text(raw, "subscription_id", 40, False)
    if customer is None and subscription_id is None:
        raise ValueError("customer: give the customer's external id or a subscription_id")
    if not _sane(metric, 100):
        metric = _text(raw, "metric", 100, True)
    occurred_iso = _utc_iso(get("timestamp"))
    properties = get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        raise ValueError("properties: must be an object")
    # Keys sorted once: the fingerprint ignores key order, and the same text is stored.
    try:
        properties_json = orjson.dumps(properties, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError) as error:
        raise ValueError(f"properties: not JSON ({error})") from None
    if b"\\u0000" in properties_json and _NUL.search(properties_json):
        raise ValueError("properties: text must not contain NUL characters")
    return _Event(
        index,
        transaction_id,  # type: ignore[arg-type]
        customer,
        subscription_id,
        metric,  # type: ignore[arg-type]
        occurred_iso,
        properties,
        fingerprint_of(customer, subscription_id, metric, occurred_iso, properties_json),  # type: ignore[arg-type]
        properties_json.decode(),
    )


@dataclass
class PreparedBatch:
    """A batch parsed and checked, before any database work: ids unique within it."""

    events: list[_Event]
    outcomes: list[EventOutcome | None]
    # The events by transaction id (those set aside too).
    by_id: dict[str, _Event] = field(default_factory=dict)
    # Set by a file import: the ids to look up (those its earlier chunks may have carried);
    # the others are claimed outright, and should one be taken after all, the unique key
    # refuses the claim, which is then made again with every id looked up. None: every id is
    # looked up.
    lookup: set[str] | None = None


def prepare_events(raw_events: Sequence[Any]) -> PreparedBatch:
    """Parse and check a batch; repeats within it are answered here. No I/O: a file import
    prepares the next chunk while the previous one is being written."""
    if len(raw_events) > MAX_BATCH:
        raise InvalidInput(f"events: at most {MAX_BATCH} per batch", field="events")
    outcomes: list[EventOutcome | None] = [None] * len(raw_events)
    first: dict[str, _Event] = {}
    claim = first.setdefault
    parse = parse_event
    for index, raw in enumerate(raw_events):
        try:
            event = parse(raw, index)
        except ValueError as error:
            tid = raw.get("transaction_id") if isinstance(raw, dict) else None
            outcomes[index] = EventOutcome(
                index, tid if isinstance(tid, str) else None, REJECTED, str(error)
            )
            continue
        seen = claim(event.transaction_id, event)
        if seen is event:
            continue
        if seen.fingerprint == event.fingerprint:
            outcomes[index] = EventOutcome(index, event.transaction_id, DUPLICATE)
        else:
            outcomes[index] = EventOutcome(
                index,
                event.transaction_id,
                REJECTED,
                f"transaction_id: event {seen.index} of this batch has the same id with "
                "different content",
            )
    return PreparedBatch(list(first.values()), outcomes, first)


def set_aside(batch: PreparedBatch, ids: set[str]) -> PreparedBatch | None:
    """Take the events with these ids out of the batch, into a batch of their own (every id
    looked up), to be written later; None if the batch has none of them. The answers given
    when the batch was prepared stay with it, and so do all its ids in `by_id`."""
    later = [e for e in batch.events if e.transaction_id in ids]
    if not later:
        return None
    batch.events = [e for e in batch.events if e.transaction_id not in ids]
    if batch.lookup is not None:
        batch.lookup -= ids
    return PreparedBatch(later, [None] * len(batch.outcomes), {e.transaction_id: e for e in later})


def ingest_events(
    db: Database, actor: Actor, raw_events: Sequence[Any], *, detail: bool = True
) -> IngestResult:
    """Ingest a batch (up to 10,000 events); one answer per event, in order.

    With detail=False (file imports) only rejected events are itemised.
    """
    actor.require(*WRITERS, action="send usage events")
    return store_events_batch(db, actor, prepare_events(raw_events), detail=detail)


def store_events_batch(
    db: Database,
    actor: Actor,
    batch: PreparedBatch,
    *,
    detail: bool = True,
) -> IngestResult:
    """Write a prepared batch in one transaction and answer for each of its events."""
    actor.require(*WRITERS, action="send usage events")
    now = utcnow()
    result = IngestResult()
    events, outcomes = batch.events, batch.outcomes
    existing: Mapping[str, bytes] = {}
    if events:
        if db.dialect == "postgresql":
            instants = [e.occurred_iso for e in events]
            first, last = min(instants), max(instants)
            months = {first[:7]} if first[:7] == last[:7] else {i[:7] for i in instants}
            ensure_partitions(db, {(int(m[:4]), int(m[5:7])) for m in months})
        result.late_periods, existing = _write_with_retry(
            db, actor, events, now, batch.lookup, result
        )
    _answer(events, existing, outcomes, result, detail)
    if result.late_periods:
        # Re-rate drafts now; a failure here leaves the periods marked for the next attempt.
        from tallybook.services.late_usage import rerate_late_drafts

        try:
            rerate_late_drafts(db, actor)
        except Exception:  # noqa: BLE001 - the events are committed; the marks remain
            log.exception("re-rating drafts after late events failed; will retry later")
    return result


def _write_with_retry(
    db: Database,
    actor: Actor,
    events: list[_Event],
    now: datetime,
    lookup: set[str] | None = None,
    result: IngestResult | None = None,
) -> tuple[int, Mapping[str, bytes]]:
    """Write the batch; returns the number of late periods and the ids that were already
    taken, with the fingerprint each was first accepted with."""
    org_id = actor.organization_id
    alone = False
    for attempt in range(5):
        try:
            if db.dialect == "postgresql":
                return _write_postgresql(db, org_id, events, now, lookup, alone, result)
            with db.transaction() as session:
                _attribute(events, _lookup(session, org_id, events))
                return _write_sqlite(session, org_id, events, now)
        except (DBAPIError, psycopg.Error) as error:
            # Nothing was written. (Raw driver statements raise psycopg's own errors.) A
            # deadlock or serialization failure against a billing run, or a claim refused
            # again and again beside other batches (see _claim): the batch is written again,
            # every id looked up, alone: no other batch of the organisation writes meanwhile.
            code = getattr(getattr(error, "orig", error), "sqlstate", None)
            if code not in ("23505", "40P01", "40001") or attempt == 4:
                raise
            if code == "23505" and alone:
                raise
            lookup, alone = None, True
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class _Found:
    """What the database knows of a batch's customers, subscriptions and metrics."""

    metrics: dict[str, Metric]
    by_external: dict[str, str]  # external id -> customer id
    subscriptions: dict[str, tuple[str, str | None]]  # id -> (customer id, external id)


# A control character as orjson escapes it; all else it writes as an array literal would.
_JSON_CONTROL = re.compile(r"\\[bfnrtu]")


def _text_array(values: Iterable[str]) -> str | list[str]:
    """Text values as a PostgreSQL array parameter (cast it: %s::text[]). Psycopg adapts a list
    of strings one element at a time in Python; orjson writes the same literal in one go (its
    escaping of quotes and backslashes is an array literal's), unless some value holds a
    control character."""
    values = list(values)
    literal = orjson.dumps(values).decode()
    if "\\" in literal and _JSON_CONTROL.search(literal):
        return values
    return "{" + literal[1:-1] + "}"


# Array parameters, and never a prepared statement: a generic plan would test each customer
# against every element of the array in turn, where a planned one hashes the array once.
_CUSTOMERS = """
SELECT id, external_id FROM customers
WHERE organization_id = %(org)s
  AND (external_id = ANY(%(externals)s::text[]) OR id = ANY(%(ids)s::text[]))
ORDER BY id"""


def _lookup(session: Session, org_id: str, events: list[_Event], lock: bool = False) -> _Found:
    """The batch's customers, subscriptions and metrics.

    With `lock` (PostgreSQL) the customers are share-locked: a billing run holds them for
    update while it rates their usage, so an event either lands before the rating (and is
    rated) or after it (and finds the rated period, which it marks late).
    """
    metrics = load_metrics(session, org_id, {e.metric_code for e in events})
    if not any([e.subscription_id for e in events]):
        # Every event names its customer (the common case).
        externals: set[str] = {e.customer for e in events}  # type: ignore[misc]
        sub_ids: set[str] = set()
    else:
        externals = {
            e.customer for e in events if e.customer is not None and e.subscription_id is None
        }
        sub_ids = {e.subscription_id for e in events if e.subscription_id is not None}
    by_external: dict[str, str] = {}
    subs: dict[str, tuple[str, str | None]] = {}
    if session.get_bind().dialect.name == "postgresql":
        # Plain SQL with array parameters: a statement with thousands of IN parameters costs
        # more to compile than the batch costs to store. One ordered lock over all customers.
        raw = session.connection().connection.driver_connection
        owners: dict[str, str] = {}
        if sub_ids:
            owners = dict(
                raw.execute(
                    "SELECT id, customer_id FROM subscriptions "
                    "WHERE organization_id = %s AND id = ANY(%s::text[])",
                    (org_id, _text_array(sub_ids)),
                    prepare=False,
                ).fetchall()
            )
        external_of: dict[str, str | None] = {}
        for customer_id, external_id in raw.execute(
            _CUSTOMERS + (" FOR SHARE" if lock else ""),
            {
                "org": org_id,
                "externals": _text_array(externals),
                "ids": _text_array(set(owners.values())),
            },
            prepare=False,
        ).fetchall():
            external_of[customer_id] = external_id
            if external_id in externals:
                by_external[external_id] = customer_id
        subs = {sid: (cid, external_of.get(cid)) for sid, cid in owners.items()}
    else:
        for chunk in _chunks(sorted(externals), 500):
            query = select(Customer.external_id, Customer.id).where(
                Customer.organization_id == org_id, Customer.external_id.in_(chunk)
            )
            by_external.update(session.execute(query).all())
        for chunk in _chunks(sorted(sub_ids), 500):
            rows = session.execute(
                select(Subscription.id, Subscription.customer_id, Customer.external_id)
                .join(Customer, Customer.id == Subscription.customer_id)
                .where(Subscription.organization_id == org_id, Subscription.id.in_(chunk))
            )
            subs.update((sid, (cid, ext)) for sid, cid, ext in rows)
    return _Found(metrics, by_external, subs)


def _attribute(events: list[_Event], found: _Found) -> None:
    """Each event's customer id; the reason to quarantine or reject it, if any."""
    metrics, by_external, subs = found.metrics, found.by_external, found.subscriptions
    customer_of = by_external.get
    for event in events:
        event.quarantine = event.rejected = None
        if event.subscription_id is None:
            event.customer_id = customer_of(event.customer)  # type: ignore[arg-type]
        else:
            event.customer_id = None
            owner = subs.get(event.subscription_id)
            if owner is None:
                event.rejected = f"subscription_id: subscription {event.subscription_id} not found"
                continue
            if event.customer is not None and event.customer != owner[1]:
                event.rejected = (
                    f"customer: subscription {event.subscription_id} belongs to another customer"
                )
                continue
            event.customer_id = owner[0]
        code = event.metric_code
        metric = metrics.get(code)
        if metric is not None:
            reason = metric.check_event(event.properties)
            if reason is not None:
                event.rejected = reason
                continue
        if event.customer_id is None:
            event.quarantine = f"customer {event.customer} does not exist yet"
        elif metric is None:
            event.quarantine = f"metric {code} does not exist yet"


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _answer(
    events: list[_Event],
    existing: Mapping[str, bytes | None],
    outcomes: list[EventOutcome | None],
    result: IngestResult,
    detail: bool,
) -> None:
    """Answers: claimed ids are accepted; the others are duplicates or conflicts, by the
    fingerprint their id was first accepted with (`existing`). Without detail, plainly
    accepted and duplicate events are only counted: a file import itemises the rejected."""
    accepted = duplicates = 0
    for event in events:
        tid = event.transaction_id
        if event.rejected is not None:
            outcomes[event.index] = EventOutcome(event.index, tid, REJECTED, event.rejected)
        elif tid not in existing:
            if detail or event.quarantine is not None:
                outcomes[event.index] = EventOutcome(
                    event.index, tid, ACCEPTED, quarantined=event.quarantine
                )
            else:
                accepted += 1
        elif existing[tid] == event.fingerprint:
            if detail:
                outcomes[event.index] = EventOutcome(event.index, tid, DUPLICATE)
            else:
                duplicates += 1
        else:
            outcomes[event.index] = EventOutcome(
                event.index,
                tid,
                REJECTED,
                "transaction_id: already used for an event with different content",
            )
    # With the answers given when the batch was prepared (repeats within it, unreadable events).
    for outcome in outcomes:
        if outcome is None:
            continue
        status = outcome.status
        if status == ACCEPTED:
            accepted += 1
            if outcome.quarantined is not None:
                result.quarantined += 1
        elif status == DUPLICATE:
            duplicates += 1
        else:
            result.rejected += 1
        if detail or status == REJECTED:
            result.outcomes.append(outcome)
    result.accepted += accepted
    result.duplicates += duplicates


# Batches of one organisation write side by side, each holding the claim lock shared: a batch
# looks its ids up, then claims the new ones with plain COPY (INSERT ... ON CONFLICT costs the
# database 70 % more per id than a lookup and COPY together). Should a batch writing at the same
# time take one of those ids first, the unique key of usage_event_keys refuses the COPY, and the
# claim is made again after a new lookup (_claim). Refused three times, or caught in a deadlock,
# the batch is written again holding the lock alone (_CLAIM): then the ids it finds taken are
# exactly the committed ones. Taken before any other lock of the batch, so that it never waits
# for this one while holding those.
_SHARED_CLAIM = "SELECT pg_advisory_xact_lock_shared(7325002, hashtext(%(org)s))"
_CLAIM = "SELECT pg_advisory_xact_lock(7325002, hashtext(%(org)s))"


def hold_ingestion(session: Session, org_id: str) -> None:
    """Wait for the organisation's usage batches in flight and hold new ones off until this
    transaction ends (PostgreSQL). Releasing quarantine takes it: a batch that found no such
    customer or metric has committed its quarantined events by then, and a later batch sees
    what this transaction created."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().connection.driver_connection.execute(_CLAIM, {"org": org_id})


# One index probe per id, whatever the table's statistics say: `transaction_id = ANY(...)`
# lets the planner scan all of the organisation's keys against the list when the statistics
# are missing or stale (a fresh or truncated table), which grows with every batch.
# The ids go as one JSON text: adapting a list of 10,000 strings as an array parameter costs
# the client more than the lookup costs the server.
_EXISTING = """
SELECT t.id, k.fingerprint FROM json_array_elements_text(%(ids)s::json) AS t(id)
CROSS JOIN LATERAL (
    SELECT fingerprint FROM usage_event_keys
    WHERE organization_id = %(org)s AND transaction_id = t.id LIMIT 1
) AS k
"""


def _existing(raw: psycopg.Connection[Any], org_id: str, ids: list[str]) -> dict[str, bytes]:
    """Those of these ids that are taken, with the fingerprint each was first accepted with."""
    if not ids:
        return {}
    found = raw.execute(
        _EXISTING, {"org": org_id, "ids": orjson.dumps(ids).decode()}, prepare=False
    ).fetchall()
    return {tid: bytes(first) for tid, first in found}


_COPY_KEYS = "COPY usage_event_keys (organization_id, transaction_id, fingerprint) FROM STDIN"

_COPY_EVENTS = (
    "COPY usage_events (organization_id, customer_id, metric_code, occurred_at, "
    "transaction_id, subscription_id, properties, received_at) FROM STDIN"
)

_HOLD = """
INSERT INTO usage_quarantine (id, organization_id, transaction_id, reason,
                              customer_external_id, subscription_id, metric_code,
                              occurred_at, properties, received_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)
"""


def _copy_text(value: str) -> str:
    """A value in COPY's text format: backslash, tab, newline and return are escaped."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


def _copy_rows(org_id: str, events: list[_Event], received: str) -> tuple[list[str], list[str]]:
    """Each event as COPY text rows, for usage_event_keys and for usage_events (quarantined and
    rejected events get an empty one), built directly: several times cheaper than adapting
    each value. Most batches hold no character COPY must escape: one check finds out."""
    null = "\\N"
    supplied = "".join(
        [e.transaction_id for e in events]
        + [e.metric_code for e in events]
        + [e.properties_json for e in events]
    )
    if "\\" in supplied or "\t" in supplied or "\n" in supplied or "\r" in supplied:
        return _escaped_copy_rows(org_id, events, received)
    keys = [f"{org_id}\t{e.transaction_id}\t\\\\x{e.fingerprint.hex()}\n" for e in events]
    rows = [
        f"{org_id}\t{e.customer_id}\t{e.metric_code}\t{e.occurred_iso}\t{e.transaction_id}\t"
        f"{e.subscription_id or null}\t{e.properties_json}\t{received}\n"
        if e.rejected is None and e.quarantine is None
        else ""
        for e in events
    ]
    return keys, rows


def _escaped_copy_rows(
    org_id: str, events: list[_Event], received: str
) -> tuple[list[str], list[str]]:
    keys, rows = [], []
    null = "\\N"
    for e in events:
        tid = _copy_text(e.transaction_id)
        keys.append(f"{org_id}\t{tid}\t\\\\x{e.fingerprint.hex()}\n")
        if e.rejected is None and e.quarantine is None:
            rows.append(
                f"{org_id}\t{e.customer_id}\t{_copy_text(e.metric_code)}\t{e.occurred_iso}\t"
                f"{tid}\t{e.subscription_id or null}\t{_copy_text(e.properties_json)}\t"
                f"{received}\n"
            )
        else:
            rows.append("")
    return keys, rows


@dataclass
class _CopyText:
    """A batch's COPY rows by position (the events sorted by transaction id): for
    usage_event_keys, and for usage_events ("" for an event held in quarantine or rejected)."""

    keys: list[str]
    rows: list[str]
    sure: list[int]  # positions of the valid events claimed without a lookup (file imports)
    unsure: list[int]  # positions of the valid events to look up


def _prepare_copy(
    org_id: str, events: list[_Event], received: str, lookup: set[str] | None
) -> _CopyText:
    keys, rows = _copy_rows(org_id, events, received)
    valid = [i for i, e in enumerate(events) if e.rejected is None]
    if lookup is None:
        sure, unsure = [], valid
    else:
        sure = [i for i in valid if events[i].transaction_id not in lookup]
        unsure = [i for i in valid if events[i].transaction_id in lookup]
    return _CopyText(keys, rows, sure, unsure)


_by_transaction_id = attrgetter("transaction_id")


def _write_postgresql(
    db: Database,
    org_id: str,
    events: list[_Event],
    now: datetime,
    lookup: set[str] | None = None,
    alone: bool = False,
    result: IngestResult | None = None,
) -> tuple[int, dict[str, bytes]]:
    """Claim the ids not yet taken and COPY the claimed events straight into usage_events:
    the database does little more than the raw COPY floor plus one index entry per id.

    With `lookup` (a file import) only those ids are looked up, and the others claimed
    outright. The unique key refuses the COPY if an id was taken after all (see
    _SHARED_CLAIM); `alone` holds the claim lock exclusively. Returns the number of late
    periods and the ids that were already taken, with the fingerprint each was first accepted
    with.
    """
    # Ids claimed in one order by every batch: two batches claiming some of the same new ids
    # wait for each other in turn, never for each other at once (a deadlock).
    events = sorted(events, key=_by_transaction_id)
    with db.transaction() as session:
        raw = session.connection().connection.driver_connection
        raw.execute(_CLAIM if alone else _SHARED_CLAIM, {"org": org_id})
        # Customers share-locked: see _lookup.
        _attribute(events, _lookup(session, org_id, events, lock=True))
        text = _prepare_copy(org_id, events, now.isoformat(), lookup)
        with raw.cursor() as cursor:
            existing, claimed = _claim(raw, cursor, org_id, events, text, alone, result)
            rows = "".join([text.rows[i] for i in claimed])
            if rows:
                with cursor.copy(_COPY_EVENTS) as copy:
                    copy.write(rows)
            held = [events[i] for i in claimed if events[i].quarantine is not None]
            if held:
                cursor.executemany(
                    _HOLD,
                    [
                        (
                            new_id("evq"),
                            org_id,
                            e.transaction_id,
                            e.quarantine,
                            e.customer,
                            e.subscription_id,
                            e.metric_code,
                            e.occurred_at,
                            e.properties_json,
                            now,
                        )
                        for e in held
                    ],
                )
        late = mark_late(
            session,
            org_id,
            [events[i] for i in claimed if events[i].quarantine is None],
            now,
        )
    return late, existing


def _claim(
    raw: psycopg.Connection[Any],
    cursor: psycopg.Cursor[Any],
    org_id: str,
    events: list[_Event],
    text: _CopyText,
    alone: bool,
    result: IngestResult | None,
) -> tuple[dict[str, bytes], list[int]]:
    """Look the batch's ids up and claim the new ones (COPY into usage_event_keys, in the
    order of their ids). Returns the ids already taken, with their fingerprints, and the
    positions of the events claimed.

    Beside other batches (not `alone`), an id found free may be in a batch that has not
    committed yet: the claim waits for that batch, and once it has committed the unique key
    refuses the claim. Only the claim is undone (a savepoint) and made again, every id looked
    up: by then the lookup finds the id taken.
    """
    sure, unsure, doubted = text.sure, text.unsure, []
    if not alone:
        cursor.execute("SAVEPOINT claim")
    for attempt in range(3):
        existing = _existing(raw, org_id, [events[i].transaction_id for i in unsure])
        if result is not None and any(events[i].transaction_id in existing for i in doubted):
            result.looked_up_again += 1  # an id claimed without a lookup was taken after all
        new = [i for i in unsure if events[i].transaction_id not in existing]
        claimed = sorted(sure + new) if sure and new else sure or new
        if not claimed:
            break
        try:
            with cursor.copy(_COPY_KEYS) as copy:
                copy.write("".join([text.keys[i] for i in claimed]))
        except psycopg.errors.UniqueViolation:
            if alone or attempt == 2:
                raise
            cursor.execute("ROLLBACK TO SAVEPOINT claim")
            doubted, sure, unsure = sure, [], sorted(sure + unsure)
            continue
        break
    if not alone:
        cursor.execute("RELEASE SAVEPOINT claim")
    return existing, claimed


def _write_sqlite(
    session: Session, org_id: str, events: list[_Event], now: datetime
) -> tuple[int, dict[str, bytes]]:
    existing: dict[str, bytes] = {}
    ids = [e.transaction_id for e in events]
    for chunk in _chunks(ids, 500):
        existing.update(
            session.execute(
                select(UsageEventKey.transaction_id, UsageEventKey.fingerprint).where(
                    UsageEventKey.organization_id == org_id,
                    UsageEventKey.transaction_id.in_(chunk),
                )
            ).all()
        )
    claimable = [e for e in events if e.transaction_id not in existing and e.rejected is None]
    if claimable:
        session.execute(
            UsageEventKey.__table__.insert(),
            [
                {
                    "organization_id": org_id,
                    "transaction_id": e.transaction_id,
                    "fingerprint": e.fingerprint,
                }
                for e in claimable
            ],
        )
        store_events(session, org_id, [e for e in claimable if e.quarantine is None], now)
        held = [e for e in claimable if e.quarantine is not None]
        if held:
            session.execute(
                QuarantinedEvent.__table__.insert(),
                [
                    {
                        "id": new_id("evq"),
                        "organization_id": org_id,
                        "transaction_id": e.transaction_id,
                        "reason": e.quarantine,
                        "customer_external_id": e.customer,
                        "subscription_id": e.subscription_id,
                        "metric_code": e.metric_code,
                        "occurred_at": e.occurred_at,
                        "properties": e.properties,
                        "received_at": now,
                    }
                    for e in held
                ],
            )
    late = mark_late(
        session,
        org_id,
        [e for e in claimable if e.quarantine is None and e.customer_id is not None],
        now,
    )
    return late, existing


def store_events(session: Session, org_id: str, events: Iterable[Any], now: datetime) -> None:
    rows = [
        {
            "organization_id": org_id,
            "customer_id": e.customer_id,
            "metric_code": e.metric_code,
            "occurred_at": e.occurred_at,
            "transaction_id": e.transaction_id,
            "subscription_id": e.subscription_id,
            "properties": e.properties,
            "received_at": now,
        }
        for e in events
    ]
    if rows:
        session.execute(UsageEvent.__table__.insert(), rows)


_RATED_PERIODS = """
SELECT s.customer_id, s.id, spi.period_start, spi.period_end
FROM subscriptions s
JOIN subscription_period_invoices spi ON spi.subscription_id = s.id
WHERE s.organization_id = %s AND s.customer_id = ANY(%s::text[])
  AND spi.timing = 'in_arrears' AND spi.period_end > %s
"""


def mark_late(
    session: Session,
    org_id: str,
    events: Sequence[_Event],
    now: datetime,
) -> int:
    """Mark rated usage periods that these stored (attributed) events fall in."""
    if not events:
        return 0
    customers = sorted({e.customer_id for e in events})  # type: ignore[type-var]
    # UTC isoformat() texts sort as their instants do.
    earliest = datetime.fromisoformat(min([e.occurred_iso for e in events]))
    candidates: dict[str, list[tuple[str, datetime, datetime]]] = {}
    if session.get_bind().dialect.name == "postgresql":
        # Array parameters: an IN list of a batch's thousand customers costs more to compile
        # than to run.
        raw = session.connection().connection.driver_connection
        found: Iterable[Any] = raw.execute(
            _RATED_PERIODS, (org_id, _text_array(customers), earliest), prepare=False
        )
    else:
        found = (
            row
            for chunk in _chunks(customers, 500)  # type: ignore[arg-type]
            for row in session.execute(
                select(
                    Subscription.customer_id,
                    Subscription.id,
                    SubscriptionPeriodInvoice.period_start,
                    SubscriptionPeriodInvoice.period_end,
                )
                .join(
                    SubscriptionPeriodInvoice,
                    SubscriptionPeriodInvoice.subscription_id == Subscription.id,
                )
                .where(
                    Subscription.organization_id == org_id,
                    Subscription.customer_id.in_(chunk),
                    SubscriptionPeriodInvoice.timing == "in_arrears",
                    SubscriptionPeriodInvoice.period_end > earliest,
                )
            )
        )
    for customer_id, sub_id, start, end in found:
        candidates.setdefault(customer_id, []).append((sub_id, start, end))
    if not candidates:
        return 0
    marks: set[tuple[str, datetime, datetime]] = set()
    for event in events:
        periods = candidates.get(event.customer_id)  # type: ignore[arg-type]
        if not periods:
            continue
        at, subscription_id = event.occurred_at, event.subscription_id
        for sub_id, start, end in periods:
            if start <= at < end and subscription_id in (None, sub_id):
                marks.add((sub_id, start, end))
    if not marks:
        return 0
    rows_to_add = [
        {
            "subscription_id": sub_id,
            "period_start": start,
            "organization_id": org_id,
            "period_end": end,
            "detected_at": now,
        }
        for sub_id, start, end in sorted(marks)
    ]
    if session.get_bind().dialect.name == "postgresql":
        statement = pg_insert(LateUsagePeriod).on_conflict_do_nothing()
    else:
        statement = sqlite_insert(LateUsagePeriod).on_conflict_do_nothing()
    session.execute(statement, rows_to_add)
    return len(marks)


# Monthly partitions of usage_events known to exist, per database URL.
_partitions: dict[str, set[tuple[int, int]]] = {}
_partitions_lock = threading.Lock()


def partition_name(year: int, month: int) -> str:
    return f"usage_events_y{year:04d}m{month:02d}"


def ensure_partitions(db: Database, months: Iterable[tuple[int, int]]) -> None:
    """Create the monthly partitions these events need (PostgreSQL), once per process."""
    with _partitions_lock:
        known = _partitions.setdefault(db.url, set())
        missing = sorted(set(months) - known)
        if not missing:
            return
        with db.engine.begin() as connection:
            # One creator at a time across processes; IF NOT EXISTS makes a repeat harmless.
            connection.execute(text("SELECT pg_advisory_xact_lock(7325001)"))
            for year, month in missing:
                following = (year + month // 12, month % 12 + 1)
                connection.execute(
                    text(
                        f"CREATE TABLE IF NOT EXISTS {partition_name(year, month)} "
                        "PARTITION OF usage_events FOR VALUES "
                        f"FROM ('{year:04d}-{month:02d}-01 00:00:00+00') "
                        f"TO ('{following[0]:04d}-{following[1]:02d}-01 00:00:00+00')"
                    )
                )
        known.update(missing)


def forget_partitions(db: Database) -> None:
    """For tests that drop and recreate a database under the same URL."""
    with _partitions_lock:
        _partitions.pop(db.url, None)


# --- quarantine -------------------------------------------------------------------------------


def list_quarantine(
    db: Database, actor: Actor, *, limit: int = 100, after: str | None = None
) -> tuple[list[QuarantinedEvent], str | None]:
    with db.reading() as session:
        query = select(QuarantinedEvent).where(
            QuarantinedEvent.organization_id == actor.organization_id
        )
        return keyset_page(session, query, QuarantinedEvent, limit, after)


def release_quarantine(
    session: Session,
    org_id: str,
    *,
    customer_external_id: str | None = None,
    metric_code: str | None = None,
    now: datetime | None = None,
) -> int:
    """Move quarantined events whose customer and metric now exist into the event store.

    Runs in the caller's transaction (creating a customer or a metric, or a clerk's
    reprocess). An event the metric cannot measure stays, with that reason.
    """
    now = now or utcnow()
    hold_ingestion(session, org_id)
    query = select(QuarantinedEvent).where(QuarantinedEvent.organization_id == org_id)
    if customer_external_id is not None:
        query = query.where(QuarantinedEvent.customer_external_id == customer_external_id)
    if metric_code is not None:
        query = query.where(QuarantinedEvent.metric_code == metric_code)
    held = list(session.scalars(query.order_by(QuarantinedEvent.id).with_for_update()))
    if not held:
        return 0
    metrics = load_metrics(session, org_id, {h.metric_code for h in held})
    externals = {h.customer_external_id for h in held if h.customer_external_id}
    by_external: dict[str, str] = {}
    for chunk in _chunks(sorted(externals), 500):
        by_external.update(
            session.execute(
                select(Customer.external_id, Customer.id).where(
                    Customer.organization_id == org_id, Customer.external_id.in_(chunk)
                )
            ).all()
        )
    released: list[_Event] = []
    for row in held:
        if row.subscription_id is not None:
            customer_id = session.scalar(
                select(Subscription.customer_id).where(
                    Subscription.id == row.subscription_id,
                    Subscription.organization_id == org_id,
                )
            )
        else:
            customer_id = by_external.get(row.customer_external_id or "")
        metric = metrics.get(row.metric_code)
        if customer_id is None:
            row.reason = f"customer {row.customer_external_id} does not exist yet"
            continue
        if metric is None:
            row.reason = f"metric {row.metric_code} does not exist yet"
            continue
        reason = metric.check_event(row.properties)
        if reason is not None:
            row.reason = reason
            continue
        released.append(
            _Event(
                0,
                row.transaction_id,
                row.customer_external_id,
                row.subscription_id,
                row.metric_code,
                row.occurred_at.astimezone(UTC).isoformat(),
                row.properties,
                b"",
                customer_id=customer_id,
            )
        )
        session.delete(row)
    session.flush()
    store_events(session, org_id, released, now)
    mark_late(session, org_id, released, now)
    return len(released)


def reprocess_quarantine(db: Database, actor: Actor) -> int:
    """A clerk's 'try again': release every quarantined event that can now be attributed."""
    actor.require(*WRITERS, action="reprocess quarantined events")
    with db.transaction() as session:
        return release_quarantine(session, actor.organization_id)
