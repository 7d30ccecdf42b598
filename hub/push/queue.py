"""The retrying delivery queue in the store: outbox events in, per-record state out.

States: pending -> in_flight -> done | retry | dead | quarantined (| discarded by an operator).
An item found ``in_flight`` when a run starts belongs to a run that died mid-call: its outcome is
unknown, so the engine looks the document up in the ERP before sending it again.
Retry timing is data (``RetryPattern``), in the spirit of OCA queue_job's ``retry_pattern``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_core.db import session_scope
from crm_core.models import DeadLetter, DeliveryQueueItem, OutboxEvent, QuarantinedRecord, SyncCursor
from crm_core.types import TZDateTime, now_utc
from hub.secrets import redact, redact_mapping

INVOICE_TOPICS = ("invoice.issued", "invoice.changed")
ACTIVE_STATES = ("pending", "retry", "in_flight")
# PostgreSQL can commit outbox rows out of id order (sequence values are taken before commit): a row
# invisible to one read may get a lower id than rows already read. Each read therefore records a
# horizon, the start of the oldest other transaction still open (every row it could not see was written
# after that), and the next read also re-reads events created since that horizon. Re-reading is
# harmless: an unchanged document is skipped. PG_LOOKBACK widens the window for clock skew between the
# application (which stamps created_at) and the database server (which reports transaction starts).
PG_LOOKBACK = timedelta(minutes=10)
LOOKUP_CHUNK = 5000  # ids per IN (...) list; SQLite refuses statements with more than 32,766 variables


@dataclass(frozen=True)
class RetryPattern:
    """attempt number -> seconds to wait before the next attempt; the last entry repeats."""

    delays: dict[int, int] = field(default_factory=lambda: {1: 60, 2: 300, 3: 1800, 4: 7200, 5: 21600})
    max_attempts: int = 8

    def delay_after(self, attempts: int) -> timedelta:
        eligible = [k for k in sorted(self.delays) if k <= attempts]
        key = eligible[-1] if eligible else min(self.delays)
        return timedelta(seconds=self.delays[key])


def cursor_name(system: str) -> str:
    return f"{system}.invoice_push"


def _visibility_horizon(session: Session) -> datetime:
    """Start of the oldest other open transaction on this database (PostgreSQL), else now.

    Any outbox row this session cannot see yet belongs to such a transaction, so it was created after
    this moment. Needs the hub's role to see the writers' sessions in pg_stat_activity (same role, or
    pg_read_all_stats).
    """
    now = now_utc()
    if session.get_bind().dialect.name != "postgresql":
        return now
    oldest = session.execute(
        sa.text(
            "SELECT min(xact_start) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
        )
    ).scalar()
    return min(oldest, now) if oldest is not None else now


ENQUEUE_WINDOW = 20_000  # outbox ids per read: memory stays bounded whatever the backlog (case 24)
_QUEUE = cast(sa.Table, DeliveryQueueItem.__table__)
_BUMP = (  # a newer event for an item still being worked on
    sa.update(_QUEUE)
    .where(_QUEUE.c.id == sa.bindparam("item_id"))
    .values(last_event_id=sa.bindparam("event_id"))
)
_REOPEN = (  # the document changed after its item settled: look at it again
    sa.update(_QUEUE)
    .where(_QUEUE.c.id == sa.bindparam("item_id"))
    .values(last_event_id=sa.bindparam("event_id"), state="pending", attempts=0, next_attempt_at=None)
)


def enqueue_from_outbox(session: Session, system: str) -> int:
    """Turn new invoice events into queue items (coalesced per invoice), in outbox order.

    Returns how many invoices became due (new, or changed again after they had settled).

    Costs one indexed range read when nothing happened, whatever the size of the store (P6). Events are
    read in windows of ``ENQUEUE_WINDOW`` ids so a three-night backlog needs no more memory than a
    night; queue item ids follow the events' order, and the push sends in item id order.
    """
    cursor = session.scalar(sa.select(SyncCursor).where(SyncCursor.name == cursor_name(system)))
    last_id = int(cursor.value) if cursor and cursor.value else 0
    horizon = _visibility_horizon(session)
    condition = sa.and_(OutboxEvent.topic.in_(INVOICE_TOPICS), OutboxEvent.id > last_id)
    if session.get_bind().dialect.name == "postgresql":
        since = cursor.value_time if cursor and cursor.value_time else horizon
        condition = sa.and_(
            OutboxEvent.topic.in_(INVOICE_TOPICS),
            sa.or_(OutboxEvent.id > last_id, OutboxEvent.created_at >= min(since, horizon) - PG_LOOKBACK),
        )
    first, last = session.execute(
        sa.select(sa.func.min(OutboxEvent.id), sa.func.max(OutboxEvent.id)).where(condition)
    ).one()
    if first is None:
        return 0
    due = 0
    for low in range(first - 1, last, ENQUEUE_WINDOW):
        high = min(low + ENQUEUE_WINDOW, last)
        due += _enqueue_window(session, system, condition, low, high)
    if cursor is None:
        session.add(SyncCursor(name=cursor_name(system), value=str(last), timezone="UTC", value_time=horizon))
    elif last > last_id:
        cursor.value, cursor.value_time = str(last), horizon
    session.flush()
    return due


def _enqueue_window(session: Session, system: str, condition: Any, low: int, high: int) -> int:
    """Enqueue the events with ids in ``(low, high]``; returns how many invoices became due."""
    latest = {
        entity_id: event_id
        for entity_id, event_id in session.execute(
            sa.select(OutboxEvent.entity_id, sa.func.max(OutboxEvent.id))
            .where(condition, OutboxEvent.id > low, OutboxEvent.id <= high)
            .group_by(OutboxEvent.entity_id)
            .order_by(sa.func.max(OutboxEvent.id))
        )
    }
    if not latest:
        return 0
    ids = list(latest)
    existing: dict[int, tuple[int, int | None, str]] = {}  # canonical id -> (item id, last event, state)
    # In chunks: a first push of a large backlog names more ids than SQLite takes in one statement.
    for start in range(0, len(ids), LOOKUP_CHUNK):
        for item_id, canonical_id, last_event_id, state in session.execute(
            sa.select(_QUEUE.c.id, _QUEUE.c.canonical_id, _QUEUE.c.last_event_id, _QUEUE.c.state).where(
                _QUEUE.c.system == system,
                _QUEUE.c.kind == "invoice",
                _QUEUE.c.canonical_id.in_(ids[start : start + LOOKUP_CHUNK]),
            )
        ):
            existing[canonical_id] = (item_id, last_event_id, state)
    now = now_utc()
    new_rows: list[dict[str, Any]] = []
    bumped: list[dict[str, int]] = []
    reopened: list[dict[str, int]] = []
    for entity_id, event_id in latest.items():
        found = existing.get(entity_id)
        if found is None:
            new_rows.append(
                {
                    "system": system,
                    "kind": "invoice",
                    "canonical_id": entity_id,
                    "state": "pending",
                    "attempts": 0,
                    "last_event_id": event_id,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        elif (found[1] or 0) < event_id:
            target = bumped if found[2] in ACTIVE_STATES else reopened
            target.append({"item_id": found[0], "event_id": event_id})
    connection = session.connection()
    if new_rows:
        connection.execute(sa.insert(_QUEUE), new_rows)
    if bumped:
        connection.execute(_BUMP.values(updated_at=now), bumped)
    if reopened:
        connection.execute(_REOPEN.values(updated_at=now), reopened)
    return len(new_rows) + len(reopened)


def _due(system: str, now: datetime) -> list[Any]:
    return [
        DeliveryQueueItem.system == system,
        # `kind || ''` keeps SQLite's planner (no statistics) off the unique (system, kind, ...) index,
        # which scans every settled item, and on ix_delivery_queue_due: O(due), not O(queue) (P6;
        # bench/nightly_push.py). PostgreSQL plans by statistics and is unaffected.
        DeliveryQueueItem.kind.concat("") == "invoice",
        DeliveryQueueItem.state.in_(ACTIVE_STATES),
        sa.or_(DeliveryQueueItem.next_attempt_at.is_(None), DeliveryQueueItem.next_attempt_at <= now),
    ]


def due_item_ids(
    session: Session, system: str, now: datetime, *, after: int = 0, limit: int | None = None
) -> list[int]:
    """Queue item ids to work on now, oldest first; ``after``/``limit`` read them a page at a time."""
    query = (
        sa.select(DeliveryQueueItem.id)
        .where(*_due(system, now), DeliveryQueueItem.id > after)
        .order_by(DeliveryQueueItem.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def due_pages(engine: sa.Engine, system: str, now: datetime, size: int) -> Iterator[list[int]]:
    """Due item ids in pages of ``size``, each read in its own short transaction (bounded memory)."""
    after = 0
    while True:
        with session_scope(engine) as session:
            page = due_item_ids(session, system, now, after=after, limit=size)
        if not page:
            return
        yield page
        after = page[-1]


def due_summary(session: Session, system: str, now: datetime) -> tuple[int, int | None]:
    """How many items :func:`due_item_ids` would return, and the highest of their ids."""
    count, highest = session.execute(
        sa.select(sa.func.count(DeliveryQueueItem.id), sa.func.max(DeliveryQueueItem.id)).where(
            *_due(system, now)
        )
    ).one()
    return int(count or 0), highest


def due_count(session: Session, system: str, now: datetime) -> int:
    """How many items :func:`due_item_ids` would return."""
    return due_summary(session, system, now)[0]


# Core, built once: the ORM's bulk UPDATE (session synchronisation, per-call compile) cost ~10 µs per
# pushed record (P11). Only items still being worked on: one discarded or settled meanwhile (``hub queue
# discard`` during a long run) stays as it is and is not sent.
_IN_FLIGHT = (
    sa.update(_QUEUE)
    .where(_QUEUE.c.id.in_(sa.bindparam("ids", expanding=True)), _QUEUE.c.state.in_(ACTIVE_STATES))
    .values(state="in_flight", updated_at=sa.bindparam("now", type_=TZDateTime()))
)


def mark_in_flight(session: Session, item_ids: Sequence[int]) -> None:
    session.connection().execute(_IN_FLIGHT, {"ids": list(item_ids), "now": now_utc()})


def schedule_retry(
    item: DeliveryQueueItem, error: BaseException, pattern: RetryPattern, now: datetime
) -> bool:
    """Record a transient failure. Returns False when attempts are exhausted (caller dead-letters)."""
    item.attempts += 1
    item.last_error = redact(f"{type(error).__name__}: {error}")
    if item.attempts >= pattern.max_attempts:
        return False
    item.state = "retry"
    retry_after = getattr(error, "retry_after", None)
    delay = pattern.delay_after(item.attempts)
    if retry_after:
        delay = max(delay, timedelta(seconds=float(retry_after)))
    item.next_attempt_at = now + delay
    return True


def dead_letter(
    session: Session, item: DeliveryQueueItem, error: BaseException, context: dict[str, object]
) -> None:
    """Give up on ``item``, keeping the error and a redacted context for the morning's fix."""
    item.state = "dead"
    item.last_error = redact(f"{type(error).__name__}: {error}")
    session.add(
        DeadLetter(
            queue_item_id=item.id,
            system=item.system,
            kind=item.kind,
            canonical_id=item.canonical_id,
            error_type=type(error).__name__,
            error_message=redact(str(error)),
            context=redact_mapping({**getattr(error, "context", {}), **context}),
        )
    )


def replay(session: Session, system: str, item_ids: Sequence[int] | None = None) -> int:
    """Put quarantined or dead items back to pending after the data was fixed; the next push
    re-validates the *current* canonical record, so a fixed document lands once. Returns the count."""
    query = sa.select(DeliveryQueueItem).where(
        DeliveryQueueItem.system == system, DeliveryQueueItem.state.in_(("quarantined", "dead"))
    )
    if item_ids is not None:
        query = query.where(DeliveryQueueItem.id.in_(list(item_ids)))
    items = list(session.scalars(query))
    now = now_utc()
    for item in items:
        item.state, item.attempts, item.next_attempt_at, item.last_error = "pending", 0, None, None
    ids = [i.canonical_id for i in items]
    if ids:
        session.execute(
            sa.update(QuarantinedRecord)
            .where(
                QuarantinedRecord.canonical_id.in_(ids),
                QuarantinedRecord.resolved_at.is_(None),
                QuarantinedRecord.stream == f"{system}.invoiced_states",
            )
            .values(resolved_at=now)
        )
        session.execute(
            sa.update(DeadLetter)
            .where(
                DeadLetter.canonical_id.in_(ids),
                DeadLetter.system == system,
                DeadLetter.resolved_at.is_(None),
            )
            .values(resolved_at=now, resolution="replayed")
        )
    session.flush()
    return len(items)


def discard(session: Session, system: str, item_ids: Sequence[int]) -> int:
    """Stop trying these items (an operator's decision); their dead letters are closed as discarded."""
    items = list(
        session.scalars(
            sa.select(DeliveryQueueItem).where(
                DeliveryQueueItem.system == system, DeliveryQueueItem.id.in_(list(item_ids))
            )
        )
    )
    for item in items:
        item.state = "discarded"
    session.execute(
        sa.update(DeadLetter)
        .where(DeadLetter.queue_item_id.in_([i.id for i in items]), DeadLetter.resolved_at.is_(None))
        .values(resolved_at=now_utc(), resolution="discarded")
    )
    return len(items)


def retry_now(session: Session, system: str, item_ids: Sequence[int] | None = None) -> int:
    """Make retrying items due immediately (``hub queue retry``)."""
    query = sa.update(DeliveryQueueItem).where(
        DeliveryQueueItem.system == system, DeliveryQueueItem.state == "retry"
    )
    if item_ids is not None:
        query = query.where(DeliveryQueueItem.id.in_(list(item_ids)))
    result = session.execute(query.values(next_attempt_at=None))
    return int(getattr(result, "rowcount", 0) or 0)
