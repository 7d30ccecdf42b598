"""The sync tables: outbox, cursors, bindings, delivery queue, dead letters, quarantine,
reconciliation, processed files and locks."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models.base import Base
from crm_core.types import Money, TZDateTime, now_utc

QUEUE_STATES = ("pending", "in_flight", "retry", "done", "dead", "quarantined", "discarded")
RECONCILIATION_STATUSES = (
    "matched",
    "missing_in_erp",
    "amount_mismatch",
    "duplicated_in_erp",
    "unexpected_in_erp",
    "pending",
    "dead_lettered",
)

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class OutboxEvent(Base):
    """A change a push cares about, written in the same transaction as the change itself.

    Events are small (what changed, not the payload): a push coalesces them per document and reads
    the document's current state, so replaying an event is harmless.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (sa.Index("ix_outbox_events_topic_id", "topic", "id"),)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    topic: Mapped[str] = mapped_column(sa.String(48))  # e.g. invoice.issued, customer.upserted
    entity_type: Mapped[str] = mapped_column(sa.String(32))
    entity_id: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc, index=True)


class SyncCursor(Base):
    """Where a stream stopped. ``timezone`` says which zone ``value_time`` was read in at the source."""

    __tablename__ = "sync_cursors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)  # "<connection>.<stream>"
    value: Mapped[str | None] = mapped_column(sa.String(200))  # e.g. last outbox id, or an opaque token
    value_time: Mapped[datetime | None] = mapped_column(TZDateTime())
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Asia/Shanghai")
    updated_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc, onupdate=now_utc)


class ExternalBinding(Base):
    """Identity between a canonical record and its twin in an external system. Unique both ways."""

    __tablename__ = "external_bindings"
    __table_args__ = (
        sa.UniqueConstraint("system", "kind", "canonical_id"),
        sa.UniqueConstraint("system", "kind", "external_id"),
        sa.UniqueConstraint("system", "kind", "external_bill_no"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    system: Mapped[str] = mapped_column(sa.String(64))  # connection name
    kind: Mapped[str] = mapped_column(sa.String(32))  # customer, material, outbound, voucher ...
    canonical_id: Mapped[int] = mapped_column()
    external_id: Mapped[str] = mapped_column(sa.String(64))
    external_bill_no: Mapped[str | None] = mapped_column(sa.String(64))
    payload_hash: Mapped[str | None] = mapped_column(sa.String(64))
    mapping_version: Mapped[str | None] = mapped_column(sa.String(32))
    synced_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc)


class DeliveryQueueItem(Base):
    """Per-record push state with attempts and the next attempt time (retry pattern is data)."""

    __tablename__ = "delivery_queue"
    __table_args__ = (
        sa.UniqueConstraint("system", "kind", "canonical_id"),
        sa.CheckConstraint(f"state IN {QUEUE_STATES}", name="state_known"),
        sa.Index("ix_delivery_queue_due", "system", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    system: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(32))
    canonical_id: Mapped[int] = mapped_column()
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    last_event_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    payload_hash: Mapped[str | None] = mapped_column(sa.String(64))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc, onupdate=now_utc)


class DeadLetter(Base):
    """A record the hub gave up on, with redacted error context, until someone replays or discards it."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    queue_item_id: Mapped[int | None] = mapped_column(sa.ForeignKey("delivery_queue.id", ondelete="SET NULL"))
    system: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(32))
    canonical_id: Mapped[int] = mapped_column()
    error_type: Mapped[str] = mapped_column(sa.String(64))
    error_message: Mapped[str] = mapped_column(sa.Text)
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc)
    resolved_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    resolution: Mapped[str | None] = mapped_column(sa.String(16))  # replayed | discarded


class QuarantinedRecord(Base):
    """A record stopped by validation before it left (or an inventory row refused), with reasons."""

    __tablename__ = "quarantine"
    __table_args__ = (sa.Index("ix_quarantine_stream_open", "stream", "resolved_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stream: Mapped[str] = mapped_column(sa.String(128))  # "<connection>.<stream>"
    canonical_id: Mapped[int | None] = mapped_column()
    source_ref: Mapped[str | None] = mapped_column(sa.String(500))  # file:line, bill no ...
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc)
    resolved_at: Mapped[datetime | None] = mapped_column(TZDateTime())


class ReconciliationRun(Base):
    __tablename__ = "reconciliation_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    system: Mapped[str] = mapped_column(sa.String(64))
    business_date: Mapped[datetime | None] = mapped_column(sa.Date)
    started_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc)
    finished_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class ReconciliationResult(Base):
    __tablename__ = "reconciliation_results"
    __table_args__ = (sa.CheckConstraint(f"status IN {RECONCILIATION_STATUSES}", name="status_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(
        sa.ForeignKey("reconciliation_runs.id", ondelete="CASCADE"), index=True
    )
    canonical_id: Mapped[int | None] = mapped_column()
    canonical_number: Mapped[str | None] = mapped_column(sa.String(32))
    bill_no: Mapped[str | None] = mapped_column(sa.String(64))
    external_id: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(24))
    canonical_amount: Mapped[Decimal | None] = mapped_column(Money)
    erp_amount: Mapped[Decimal | None] = mapped_column(Money)
    canonical_tax: Mapped[Decimal | None] = mapped_column(Money)
    erp_tax: Mapped[Decimal | None] = mapped_column(Money)
    details: Mapped[str | None] = mapped_column(sa.Text)


class ProcessedFile(Base):
    """A file drop already processed, so each file is processed once."""

    __tablename__ = "processed_files"
    __table_args__ = (sa.UniqueConstraint("source", "path", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(64))
    path: Mapped[str] = mapped_column(sa.String(500))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))  # loaded | refused
    snapshot_id: Mapped[int | None] = mapped_column(sa.ForeignKey("inventory_snapshots.id"))
    processed_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc)


class SyncLock(Base):
    """A named lock so only one push per ERP connection runs at a time (PostgreSQL also takes an
    advisory lock; this row makes the holder visible and covers SQLite)."""

    __tablename__ = "sync_locks"

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(128))
    acquired_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc)
    expires_at: Mapped[datetime] = mapped_column(TZDateTime())


class NumberSequence(Base):
    """Counters for human document numbers such as ``OPP-2026-000123`` (one row per prefix and year)."""

    __tablename__ = "number_sequences"

    prefix: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)
    last_value: Mapped[int] = mapped_column(default=0)
