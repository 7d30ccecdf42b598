"""Write inventory snapshots into the store at bulk speed (PERF-RELIABILITY P3, P8).

Positions go in with one statement whatever their number: ``COPY ... FROM STDIN`` on PostgreSQL
(psycopg2 ``copy_expert`` on the DBAPI connection under the SQLAlchemy transaction) and one
``executemany`` on SQLite. The small rows around them (the snapshot header, status flips, processed-
file registry, quarantine) go through SQLAlchemy Core on the same connection, so everything of one
snapshot commits or rolls back together.

A snapshot is inserted as ``loading``, its positions copied, then in the same transaction the
previous ``in_force`` snapshot of the same source becomes ``superseded`` and the new one ``in_force``:
readers see either the old picture or the new one, never a half-loaded one. On PostgreSQL a
transaction-scoped advisory lock per source serialises two loads of the same source (without it, both
could supersede the same predecessor and end up in force together).

The functions taking a ``conn`` are the building blocks (:mod:`hub.inventory.snapshot` composes
them); :func:`load_snapshot` is the one-call form for a frame that is already validated.
"""

from __future__ import annotations

import io
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

from crm_core.models import InventoryPosition, InventorySnapshot, ProcessedFile, QuarantinedRecord
from crm_core.types import now_utc
from hub.errors import DataValidationError
from hub.inventory import columns as c
from hub.inventory.validate import RowReject

SNAPSHOTS = cast(sa.Table, InventorySnapshot.__table__)
POSITIONS = cast(sa.Table, InventoryPosition.__table__)
PROCESSED = cast(sa.Table, ProcessedFile.__table__)
QUARANTINE = cast(sa.Table, QuarantinedRecord.__table__)

_POSITION_COLUMNS = ("snapshot_id", "material_code", "warehouse_code", "lot", "on_hand", "reserved")
_COPY_SQL = (
    f"COPY inventory_positions ({', '.join(_POSITION_COLUMNS)}) FROM STDIN "
    "WITH (FORMAT csv, FORCE_NOT_NULL (material_code, warehouse_code, lot))"
)
_INSERT_SQLITE = (
    f"INSERT INTO inventory_positions ({', '.join(_POSITION_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _POSITION_COLUMNS)})"
)
_COPY_CHUNK = 1 << 20  # bytes per read from the payload (psycopg2's default is 8 KiB)
_ANALYZE_TARGET = 10  # statistics target of the post-load ANALYZE (sample = 300 x target rows)


@dataclass(frozen=True)
class FileIdentity:
    """A downloaded file as the processed-file registry keys it."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load_snapshot` did: the new snapshot, the one it superseded, rows and time."""

    snapshot_id: int
    previous_id: int | None
    rows: int
    seconds: float


@dataclass(frozen=True)
class InForce:
    """The source's current snapshot: its id and how many rows it was read with (loaded + rejected)."""

    snapshot_id: int
    rows_read: int


def lock_source(conn: sa.Connection, source: str) -> None:
    """Serialise snapshot writes of one source until the transaction ends (PostgreSQL advisory lock).

    SQLite needs none: it has one writer at a time, and the caller's transaction writes before it reads
    the in-force snapshot again.
    """
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"hub.inventory:{source}".encode())
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def in_force(conn: sa.Connection, source: str) -> InForce | None:
    """The source's ``in_force`` snapshot, if any."""
    row = conn.execute(
        sa.select(SNAPSHOTS.c.id, SNAPSHOTS.c.row_count, SNAPSHOTS.c.rejected_count)
        .where(SNAPSHOTS.c.source == source, SNAPSHOTS.c.status == "in_force")
        .order_by(SNAPSHOTS.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else InForce(int(row.id), int(row.row_count) + int(row.rejected_count))


def insert_snapshot(
    conn: sa.Connection,
    *,
    source: str,
    taken_at: datetime,
    status: str,
    row_count: int = 0,
    rejected_count: int = 0,
    origin: str | None = None,
    checksum: str | None = None,
    refused_reason: str | None = None,
) -> int:
    """Insert a snapshot header and return its id."""
    result = conn.execute(
        SNAPSHOTS.insert()
        .values(
            source=source,
            taken_at=taken_at,
            status=status,
            row_count=row_count,
            rejected_count=rejected_count,
            origin=origin[:500] if origin else origin,
            checksum=checksum,
            refused_reason=refused_reason,
            created_at=now_utc(),
        )
        .returning(SNAPSHOTS.c.id)
    )
    return int(result.scalar_one())


def _copy_payload(snapshot_id: int, frame: pd.DataFrame, keys: c.PositionKeys | None = None) -> bytes:
    """The positions as CSV for COPY, built column-wise with Arrow (no Python loop per row)."""
    keys = keys if keys is not None and len(keys) == len(frame) else c.PositionKeys.of(frame)
    n = len(frame)
    table = pa.table(
        {
            "snapshot_id": pa.array(np.full(n, snapshot_id, dtype=np.int64)),
            # Straight from the Series: pandas' Arrow-backed strings convert without a copy (going through
            # an object ndarray cost 0.5 s at 1M rows); object columns convert too.
            "material_code": pa.array(frame[c.MATERIAL], type=pa.string()),
            "warehouse_code": pa.array(frame[c.WAREHOUSE], type=pa.string()),
            "lot": pa.array(frame[c.LOT].fillna(""), type=pa.string()),
            "on_hand": pa.array(keys.on_hand),
            "reserved": pa.array(keys.reserved),
        }
    )
    # In key order the primary key (snapshot_id, material, warehouse, lot) is filled by appending at its
    # right edge instead of random page splits: about twice as fast at 1M rows. (material, warehouse)
    # order is enough for that (a pair holds a few lots, on one page). The order comes from the codes
    # validation already computed: only the dictionaries are sorted as strings (byte order, which is
    # the key columns' COLLATE "C" order on PostgreSQL, migration 0004).
    table = table.take(keys.copy_order())
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


def copy_positions(
    conn: sa.Connection,
    snapshot_id: int,
    frame: pd.DataFrame,
    keys: c.PositionKeys | None = None,
    *,
    before_copy: Callable[[], object] | None = None,
) -> int:
    """Insert every row of a validated snapshot frame in one statement; returns the row count.

    ``keys`` are the frame's :class:`~hub.inventory.columns.PositionKeys` when the caller has them
    (validation computes them); they are computed here otherwise. ``before_copy`` is called once the
    payload is built, just before the rows are sent (to start work that overlaps the server's ingest).
    """
    if frame.empty:
        return 0
    if frame[[c.MATERIAL, c.WAREHOUSE, c.ON_HAND, c.RESERVED]].isna().any().any():
        raise DataValidationError(
            f"snapshot {snapshot_id}: positions with missing values reached the loader; validate the frame "
            "first (hub.inventory.validate.validate_snapshot).",
            context={"snapshot_id": snapshot_id},
        )
    dbapi = conn.connection.dbapi_connection
    if dbapi is None:  # pragma: no cover - a live Connection always has one
        raise RuntimeError("the SQLAlchemy connection has no DBAPI connection")
    cursor = dbapi.cursor()
    try:
        if conn.dialect.name == "postgresql":
            payload = io.BytesIO(_copy_payload(snapshot_id, frame, keys))
            if before_copy is not None:
                before_copy()
            cursor.copy_expert(_COPY_SQL, payload, size=_COPY_CHUNK)
            # Fresh statistics: without them the planner takes a million-row snapshot for a tiny one and
            # picks nested loops for the SQL diff and the promise reads (minutes instead of a second).
            # A small sample is enough for that (the snapshot_id frequencies and the row count): 3,000
            # rows instead of the default 30,000 (0.3 -> ~0.05 s with a 1M-row snapshot next to another).
            cursor.execute(f"SET LOCAL default_statistics_target = {_ANALYZE_TARGET}")
            cursor.execute("ANALYZE inventory_positions")
            cursor.execute("RESET default_statistics_target")
        else:
            if before_copy is not None:
                before_copy()
            rows = zip(
                [snapshot_id] * len(frame),
                frame[c.MATERIAL].to_numpy(dtype=object).tolist(),
                frame[c.WAREHOUSE].to_numpy(dtype=object).tolist(),
                frame[c.LOT].fillna("").to_numpy(dtype=object).tolist(),
                c.quantities(frame[c.ON_HAND]).tolist(),
                c.quantities(frame[c.RESERVED]).tolist(),
                strict=True,
            )
            cursor.executemany(_INSERT_SQLITE, rows)  # type: ignore[arg-type]  # sqlite3 takes any iterable
    finally:
        cursor.close()
    return len(frame)


def _block_payload(snapshot_id: int, frame: pd.DataFrame) -> bytes:
    """One block of positions as CSV for COPY, in (material, warehouse) byte order within the block."""
    n = len(frame)
    table = pa.table(
        {
            "snapshot_id": pa.array(np.full(n, snapshot_id, dtype=np.int64)),
            "material_code": pa.array(frame[c.MATERIAL], type=pa.string()),
            "warehouse_code": pa.array(frame[c.WAREHOUSE], type=pa.string()),
            "lot": pa.array(frame[c.LOT].fillna(""), type=pa.string()),
            "on_hand": pa.array(c.quantities(frame[c.ON_HAND])),
            "reserved": pa.array(c.quantities(frame[c.RESERVED])),
        }
    )
    # Arrow sorts strings by their bytes: the key columns' COLLATE "C" order (see _copy_payload).
    order = pc.sort_indices(
        table, sort_keys=[("material_code", "ascending"), ("warehouse_code", "ascending")]
    )
    sink = io.BytesIO()
    pacsv.write_csv(table.take(order), sink, write_options=pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


class BlockCopier:
    """COPY blocks of positions on a background thread while the caller prepares the next block.

    PostgreSQL only. Every block goes in under its own savepoint, on the caller's connection and inside
    its transaction: a block whose key repeats one copied before (a duplicate across blocks, which the
    caller finds only once every block was read) fails alone with a unique violation, is rolled back to
    its savepoint and reported as not copied (:meth:`drain`); the caller loads its rows later. Any other
    error is raised by :meth:`drain` (or the next :meth:`submit`); the caller then rolls the whole
    transaction back. The caller must not use the connection between :meth:`submit` and :meth:`drain`
    (or :meth:`close`): the worker owns it meanwhile.
    """

    def __init__(self, conn: sa.Connection, snapshot_id: int) -> None:
        dbapi = conn.connection.dbapi_connection
        if dbapi is None:  # pragma: no cover - a live Connection always has one
            raise RuntimeError("the SQLAlchemy connection has no DBAPI connection")
        self.snapshot_id = snapshot_id
        self.rows_copied = 0  # as PostgreSQL counted them (cursor.rowcount of each COPY)
        self.busy_seconds = 0.0  # time the worker spent copying (overlapped with the caller's work)
        self.payload_seconds = 0.0  # time submit() spent building payloads (on the caller's thread)
        self._cursor = dbapi.cursor()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inventory-copy")
        self._futures: list[Future[bool]] = []

    def submit(self, frame: pd.DataFrame) -> None:
        """Queue a validated block (rows that pass every per-row check) for COPY."""
        for done in self._futures:  # surface a failed block early instead of parsing on for nothing
            if done.done() and done.exception() is not None:
                raise cast(BaseException, done.exception())
        started = time.perf_counter()
        payload = _block_payload(self.snapshot_id, frame) if len(frame) else b""
        self.payload_seconds += time.perf_counter() - started
        self._futures.append(self._pool.submit(self._copy, len(self._futures), payload))

    def _copy(self, number: int, payload: bytes) -> bool:
        if not payload:
            return True
        import psycopg2.errors

        started = time.perf_counter()
        cursor = self._cursor
        savepoint = f"inventory_block_{number}"
        cursor.execute(f"SAVEPOINT {savepoint}")
        try:
            cursor.copy_expert(_COPY_SQL, io.BytesIO(payload), size=_COPY_CHUNK)
        except psycopg2.errors.UniqueViolation:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
            return False
        finally:
            self.busy_seconds += time.perf_counter() - started
        self.rows_copied += max(cursor.rowcount, 0)
        cursor.execute(f"RELEASE SAVEPOINT {savepoint}")
        return True

    def drain(self) -> list[bool]:
        """Wait for every queued block; per block, True when it was copied (False: duplicate key)."""
        return [future.result() for future in self._futures]

    def copy_now(self, frame: pd.DataFrame) -> int:
        """COPY rows on the caller's thread (after :meth:`drain`); returns the rows PostgreSQL took."""
        if not len(frame):
            return 0
        self._cursor.copy_expert(
            _COPY_SQL, io.BytesIO(_block_payload(self.snapshot_id, frame)), size=_COPY_CHUNK
        )
        return max(self._cursor.rowcount, 0)

    def delete_keys(self, frame: pd.DataFrame) -> int:
        """Delete this snapshot's positions with the keys of ``frame``'s rows (after :meth:`drain`)."""
        if not len(frame):
            return 0
        self._cursor.execute(
            "DELETE FROM inventory_positions p USING (SELECT unnest(%s::text[]) AS m, "
            "unnest(%s::text[]) AS w, unnest(%s::text[]) AS l) d "
            "WHERE p.snapshot_id = %s AND p.material_code = d.m AND p.warehouse_code = d.w AND p.lot = d.l",
            (
                frame[c.MATERIAL].tolist(),
                frame[c.WAREHOUSE].tolist(),
                frame[c.LOT].fillna("").tolist(),
                self.snapshot_id,
            ),
        )
        return max(self._cursor.rowcount, 0)

    def analyze(self) -> None:
        """Fresh statistics after the load (see :func:`copy_positions`)."""
        self._cursor.execute(f"SET LOCAL default_statistics_target = {_ANALYZE_TARGET}")
        self._cursor.execute("ANALYZE inventory_positions")
        self._cursor.execute("RESET default_statistics_target")

    def close(self) -> None:
        """Stop the worker: queued blocks are dropped, a running COPY is waited for."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._cursor.close()


def activate_snapshot(conn: sa.Connection, *, source: str, snapshot_id: int, row_count: int) -> int | None:
    """Supersede the source's in-force snapshot and put ``snapshot_id`` in force; returns the old id."""
    previous = (
        conn.execute(
            SNAPSHOTS.update()
            .where(
                SNAPSHOTS.c.source == source, SNAPSHOTS.c.status == "in_force", SNAPSHOTS.c.id != snapshot_id
            )
            .values(status="superseded")
            .returning(SNAPSHOTS.c.id)
        )
        .scalars()
        .all()
    )
    conn.execute(
        SNAPSHOTS.update().where(SNAPSHOTS.c.id == snapshot_id).values(status="in_force", row_count=row_count)
    )
    return max(previous) if previous else None


def write_quarantine(
    conn: sa.Connection, *, stream: str, origin: str, snapshot_id: int | None, rejects: Iterable[RowReject]
) -> int:
    """Record each held-back row with ``<origin>:<line>`` and its reasons; returns how many."""
    now = now_utc()
    rows: list[dict[str, Any]] = [
        {
            "stream": stream,
            "canonical_id": None,
            "source_ref": f"{origin}:{reject.line}"[:500],
            "reasons": [
                {**reason, "snapshot_id": snapshot_id, "line": reject.line} for reason in reject.reasons
            ],
            "created_at": now,
        }
        for reject in rejects
    ]
    if rows:
        conn.execute(QUARANTINE.insert(), rows)
    return len(rows)


def record_processed_file(
    conn: sa.Connection, *, source: str, file: FileIdentity, status: str, snapshot_id: int | None
) -> None:
    """Register a file as processed (``loaded`` or ``refused``) so it is never processed again."""
    conn.execute(
        PROCESSED.insert().values(
            source=source,
            path=file.path[:500],
            size=file.size,
            sha256=file.sha256,
            status=status,
            snapshot_id=snapshot_id,
            processed_at=now_utc(),
        )
    )


def already_processed(conn: sa.Connection, *, source: str, path: str, sha256: str) -> bool:
    """True when this exact file (same path and content) was processed before."""
    found = conn.execute(
        sa.select(PROCESSED.c.id).where(
            PROCESSED.c.source == source, PROCESSED.c.path == path, PROCESSED.c.sha256 == sha256
        )
    ).first()
    return found is not None


def prune_positions(conn: sa.Connection, *, source: str, keep: int = 2) -> int:
    """Delete the positions of all but the ``keep`` newest loaded snapshots of ``source``.

    The headers stay (history of what was loaded, refused, superseded); only the bulky rows go. Two are
    kept by default: the one in force and its predecessor, which the next diff compares against.
    """
    loaded = (
        sa.select(SNAPSHOTS.c.id)
        .where(SNAPSHOTS.c.source == source, SNAPSHOTS.c.status.in_(("in_force", "superseded")))
        .order_by(SNAPSHOTS.c.id.desc())
        .offset(keep)
    )
    stale = [int(i) for i in conn.execute(loaded).scalars()]
    if not stale:
        return 0
    return int(conn.execute(POSITIONS.delete().where(POSITIONS.c.snapshot_id.in_(stale))).rowcount or 0)


def delete_snapshots(conn: sa.Connection, snapshot_ids: Iterable[int]) -> int:
    """Delete snapshot headers and their positions; returns how many headers went.

    ``inventory_positions.snapshot_id`` has no foreign key (migration 0003: the per-row check cost as
    much as the COPY), so nothing cascades: positions are deleted here first, explicitly.
    """
    ids = sorted({int(i) for i in snapshot_ids})
    if not ids:
        return 0
    conn.execute(POSITIONS.delete().where(POSITIONS.c.snapshot_id.in_(ids)))
    return int(conn.execute(SNAPSHOTS.delete().where(SNAPSHOTS.c.id.in_(ids))).rowcount or 0)


def load_snapshot(
    engine: sa.Engine,
    *,
    source: str,
    frame: pd.DataFrame,
    taken_at: datetime | None = None,
    origin: str | None = None,
    checksum: str | None = None,
    rejected_count: int = 0,
) -> LoadResult:
    """Load an already validated snapshot frame and put it in force, in one transaction."""
    started = time.perf_counter()
    with engine.begin() as conn:
        lock_source(conn, source)
        snapshot_id = insert_snapshot(
            conn,
            source=source,
            taken_at=taken_at or now_utc(),
            status="loading",
            rejected_count=rejected_count,
            origin=origin,
            checksum=checksum,
        )
        rows = copy_positions(conn, snapshot_id, frame)
        previous = activate_snapshot(conn, source=source, snapshot_id=snapshot_id, row_count=rows)
    return LoadResult(snapshot_id, previous, rows, time.perf_counter() - started)
