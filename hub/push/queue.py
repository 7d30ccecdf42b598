"""The retrying delivery queue in the store: outbox events in, per-record state out.

States: pending -> in_flight -> done | retry | dead | quarantined (| discarded by an operator).
An item found ``in_flight`` when a run starts belongs to a run that died mid-call: its outcome is
unknown, so the engine looks the document up in the ERP before sending it again.
Retry timing is data (``RetryPattern``), in the spirit of OCA queue_job's ``retry_pattern``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_core.models import DeadLetter, DeliveryQueueItem, OutboxEvent, QuarantinedRecord, SyncCursor
from crm_core.types import now_utc
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


def enqueue_from_outbox(session: Session, system: str) -> int:
    """Turn new invoice events into queue items (coalesced per invoice).

    Returns how many invoices became due (new, or changed again after they had settled).

    Costs one indexed range read when nothing happened, whatever the size of the store (P6).
    """
    cursor = session.scalar(sa.select(SyncCursor).where(SyncCursor.name == cursor_name(system)))
    last_id = int(cursor.value) if cursor and cursor.value else 0
    horizon = _visibility_horizon(session)
    condition = OutboxEvent.id > last_id
    if session.get_bind().dialect.name == "postgresql":
        since = cursor.value_time if cursor and cursor.value_time else horizon
        condition = sa.or_(condition, OutboxEvent.created_at >= min(since, horizon) - PG_LOOKBACK)
    rows = session.execute(
        sa.select(OutboxEvent.entity_id, sa.func.max(OutboxEvent.id))
        .where(OutboxEvent.topic.in_(INVOICE_TOPICS), condition)
        .group_by(OutboxEvent.entity_id)
    ).all()
    if not rows:
        return 0
    latest = {entity_id: event_id for entity_id, event_id in rows}
    ids = list(latest)
    existing: dict[int, DeliveryQueueItem] = {}
    # In chunks: a first push of a large backlog names more ids than SQLite takes in one statement.
    for start in range(0, len(ids), LOOKUP_CHUNK):
        existing.update(
            (item.canonical_id, item)
            for item in session.scalars(
                sa.select(DeliveryQueueItem).where(
                    DeliveryQueueItem.system == system,
                    DeliveryQueueItem.kind == "invoice",
                    DeliveryQueueItem.canonical_id.in_(ids[start : start + LOOKUP_CHUNK]),
                )
            )
        )
    now = now_utc()
    new_rows = []
    reopened = 0
    for entity_id, event_id in latest.items():
        item = existing.get(entity_id)
        if item is None:
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
        elif (item.last_event_id or 0) < event_id:
            item.last_event_id = event_id
            if item.state not in ACTIVE_STATES:  # the document changed after it settled: look at it again
                item.state, item.attempts, item.next_attempt_at = "pending", 0, None
                reopened += 1
    if new_rows:
        session.execute(sa.insert(DeliveryQueueItem), new_rows)
    max_id = max(latest.values())
    if cursor is None:
        session.add(
            SyncCursor(name=cursor_name(system), value=str(max_id), timezone="UTC", value_time=horizon)
        )
    elif max_id > last_id:
        cursor.value, cursor.value_time = str(max_id), horizon
    session.flush()
    return len(new_rows) + reopened


def due_item_ids(session: Session, system: str, now: datetime) -> list[int]:
    """Queue item ids to work on now, oldest first."""
    return list(
        session.scalars(
            sa.select(DeliveryQueueItem.id)
            .where(
                DeliveryQueueItem.system == system,
                # `kind || ''` keeps SQLite's planner (no statistics) off the unique (system, kind, ...)
                # index, which scans every settled item, and on ix_delivery_queue_due: O(due), not O(queue)
                # (P6; bench/nightly_push.py). PostgreSQL plans by statistics and is unaffected.
                DeliveryQueueItem.kind.concat("") == "invoice",
                DeliveryQueueItem.state.in_(ACTIVE_STATES),
                sa.or_(DeliveryQueueItem.next_attempt_at.is_(None), DeliveryQueueItem.next_attempt_at <= now),
            )
            .order_by(DeliveryQueueItem.id)
        )
    )


def mark_in_flight(session: Session, item_ids: Sequence[int]) -> None:
    session.execute(
        sa.update(DeliveryQueueItem)
        .where(DeliveryQueueItem.id.in_(item_ids))
        .values(state="in_flight", updated_at=now_utc())
    )


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
