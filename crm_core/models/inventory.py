"""Inventory snapshots pulled from the ERP or SFTP drops, incoming supply, and delivery promises."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models.base import Base
from crm_core.types import Quantity, TZDateTime, now_utc

SNAPSHOT_STATUSES = ("loading", "in_force", "superseded", "refused")
PROMISE_REASONS = ("in_stock", "incoming_supply", "made_to_order", "split")


class InventorySnapshot(Base):
    """One complete inventory picture from one source. Exactly one per source is ``in_force``."""

    __tablename__ = "inventory_snapshots"
    __table_args__ = (sa.CheckConstraint(f"status IN {SNAPSHOT_STATUSES}", name="status_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(64), index=True)  # connection name
    taken_at: Mapped[datetime] = mapped_column(TZDateTime())
    status: Mapped[str] = mapped_column(sa.String(16), default="loading")
    row_count: Mapped[int] = mapped_column(default=0)
    rejected_count: Mapped[int] = mapped_column(default=0)
    origin: Mapped[str | None] = mapped_column(sa.String(500))  # file path or API endpoint
    checksum: Mapped[str | None] = mapped_column(sa.String(64))
    refused_reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc)


def _byte_order(length: int) -> sa.types.TypeEngine[str]:
    """A code column compared byte by byte: COLLATE "C" on PostgreSQL (SQLite's BINARY already is)."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


class InventoryPosition(Base):
    """Stock of one (material, warehouse, lot) in one snapshot. Loaded in bulk, never row by row.

    The primary key is the natural key (snapshot_id, material_code, warehouse_code, lot): one index to
    fill per loaded row instead of a surrogate ``id`` plus a unique index. ``snapshot_id`` has no foreign
    key on purpose: only :mod:`hub.inventory.load` writes positions, in the same transaction as their
    snapshot header, and a per-row FK check costed about as much as the COPY itself on a 1M-row load
    (migration 0003). Code that deletes snapshot headers must therefore delete their positions first
    (see ``hub.inventory.load.prune_positions`` / ``delete_snapshots``). The key text columns use
    COLLATE "C" on PostgreSQL (migration 0004): the key index compares bytes, not locale rules.

    On PostgreSQL the table is partitioned by snapshot (migration 0005, :mod:`crm_core.positions`):
    one partition per snapshot, removing a snapshot's positions drops its partition, and each partition
    is keyed by its own unique index on (material_code, warehouse_code, lot) or on their 64-bit hash
    (migration 0006); the parent itself has no primary key there. The model describes the parent's
    columns; its primary key is the ORM's identity and SQLite's key.
    """

    __tablename__ = "inventory_positions"

    snapshot_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    material_code: Mapped[str] = mapped_column(_byte_order(64), primary_key=True)
    warehouse_code: Mapped[str] = mapped_column(_byte_order(32), primary_key=True)
    lot: Mapped[str] = mapped_column(_byte_order(64), primary_key=True, default="")
    on_hand: Mapped[Decimal] = mapped_column(Quantity)
    reserved: Mapped[Decimal] = mapped_column(Quantity, default=Decimal("0"))


class IncomingSupply(Base):
    """A scheduled receipt (purchase or production order) with its expected arrival date."""

    __tablename__ = "incoming_supply"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(64), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # purchase | production
    reference: Mapped[str] = mapped_column(sa.String(64))
    material_code: Mapped[str] = mapped_column(sa.String(64), index=True)
    warehouse_code: Mapped[str | None] = mapped_column(sa.String(32))
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    eta: Mapped[date] = mapped_column(sa.Date)
    snapshot_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("inventory_snapshots.id", ondelete="CASCADE")
    )


class DeliveryPromise(Base):
    """The current promised delivery date of one open order line or quote line, with its reason."""

    __tablename__ = "delivery_promises"
    __table_args__ = (
        sa.UniqueConstraint("line_kind", "line_id"),
        sa.CheckConstraint("line_kind IN ('order', 'quote')", name="line_kind_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    line_kind: Mapped[str] = mapped_column(sa.String(8))
    line_id: Mapped[int] = mapped_column()
    material_code: Mapped[str] = mapped_column(sa.String(64))
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    ready_date: Mapped[date] = mapped_column(sa.Date)
    promised_date: Mapped[date] = mapped_column(sa.Date)
    first_part_quantity: Mapped[Decimal | None] = mapped_column(Quantity)  # split promises
    first_part_date: Mapped[date | None] = mapped_column(sa.Date)
    reason: Mapped[str] = mapped_column(sa.String(24))
    late: Mapped[bool] = mapped_column(default=False)
    computed_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc)
