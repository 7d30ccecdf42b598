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
import logging
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
import pyarrow.csv as pacsv
import sqlalchemy as sa

from crm_core import positions as partitions
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
# Into the snapshot's own table (crm_core.positions), created without its key for the load.
_COPY_SQL = (
    f"COPY {{table}} ({', '.join(_POSITION_COLUMNS)}) FROM STDIN "
    "WITH (FORMAT csv, FORCE_NOT_NULL (material_code, warehouse_code, lot))"
)
_INSERT_SQLITE = (
    f"INSERT INTO inventory_positions ({', '.join(_POSITION_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _POSITION_COLUMNS)})"
)
_COPY_CHUNK = 1 << 20  # bytes per read from the payload (psycopg2's default is 8 KiB)
PRUNE_LOCK_WAIT = "5s"  # longest wait of a prune for readers of inventory_positions (PostgreSQL)
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout
log = logging.getLogger(__name__)


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


_EXACT_INTEGERS = float(1 << 53)


def _quantity_column(values: pd.Series) -> pa.Array:
    """A quantity column as the store keeps it (4 places); whole numbers as integers, because writing
    a float's shortest text costs about four times as much (0.1 s per million values)."""
    quantities = c.quantities(values)
    if np.array_equal(quantities, np.trunc(quantities)) and bool(
        (np.abs(quantities) < _EXACT_INTEGERS).all()
    ):  # no NaN (it equals nothing), no fraction, and every value exact as an integer
        return pa.array(quantities.astype(np.int64))
    return pa.array(quantities)


def _copy_payload(snapshot_id: int, frame: pd.DataFrame) -> bytes:
    """The positions as CSV for COPY, built column-wise with Arrow (no Python loop per row).

    In file order: the snapshot's table has no key while it is filled (crm_core.positions), so the
    order of the rows costs PostgreSQL nothing; the key is built once, sorted, at the end.
    """
    n = len(frame)
    table = pa.table(
        {
            "snapshot_id": pa.array(np.full(n, snapshot_id, dtype=np.int64)),
            # Straight from the Series: pandas' Arrow-backed strings convert without a copy (going through
            # an object ndarray cost 0.5 s at 1M rows); object columns convert too.
            "material_code": pa.array(frame[c.MATERIAL], type=pa.string()),
            "warehouse_code": pa.array(frame[c.WAREHOUSE], type=pa.string()),
            "lot": pa.array(frame[c.LOT].fillna(""), type=pa.string()),
            "on_hand": _quantity_column(frame[c.ON_HAND]),
            "reserved": _quantity_column(frame[c.RESERVED]),
        }
    )
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


def copy_positions(
    conn: sa.Connection,
    snapshot_id: int,
    frame: pd.DataFrame,
    *,
    before_copy: Callable[[], object] | None = None,
) -> int:
    """Insert every row of a validated snapshot frame in one statement; returns the row count.

    On PostgreSQL the rows go into the snapshot's own table, which then gets its key and becomes the
    snapshot's partition (crm_core.positions). ``before_copy`` is called once the payload is built,
    just before the rows are sent (to start work that overlaps the server's ingest).
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
        if partitions.partitioned(conn):
            payload = io.BytesIO(_copy_payload(snapshot_id, frame))
            table = partitions.create_detached(conn, snapshot_id)
            if before_copy is not None:
                before_copy()
            cursor.copy_expert(_COPY_SQL.format(table=table), payload, size=_COPY_CHUNK)
            _build_key(cursor, snapshot_id)
            partitions.attach(conn, snapshot_id)
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


def _build_key(cursor: Any, snapshot_id: int) -> None:
    """Key a snapshot's table (crm_core.positions.build_key) whose rows were all validated: a repeated
    position here got past the duplicate check, which is a bug, not bad input."""
    try:
        partitions.build_key(cursor, snapshot_id)
    except Exception as exc:
        if not partitions.is_unique_violation(exc):
            raise
        said = " ".join(str(getattr(exc, "orig", exc)).split())  # PostgreSQL's DETAIL names the key
        raise RuntimeError(
            f"snapshot {snapshot_id}: the store refused a repeated (material, warehouse, lot) that "
            f"validation had let through ({said}); rolled back, nothing changed. Report this as a bug."
        ) from exc


class BlockCopier:
    """COPY blocks of positions on a background thread while the caller prepares the next block.

    PostgreSQL only. The blocks go into the snapshot's own table, created here without its key
    (crm_core.positions), on the caller's connection and inside its transaction: nothing is decided
    while blocks arrive. After the last block, :meth:`build_key` has the worker build the key (the
    hashed one, crm_core.positions) while the caller validates the whole snapshot; a key that turns out
    repeated (a duplicate the caller finds only then) fails that build alone, under a savepoint. The
    caller then takes such rows out with :meth:`delete_keys`, adds late rows with :meth:`copy_now` (the
    key is dropped first if built), and :meth:`attach` builds the key if it is missing and makes the
    table the snapshot's partition. An error of a block is raised by
    :meth:`drain` (or the next :meth:`submit`); the caller then rolls the whole transaction back. The
    caller must not use the connection between :meth:`submit` and :meth:`drain` (or :meth:`close`):
    the worker owns it meanwhile.
    """

    def __init__(self, conn: sa.Connection, snapshot_id: int) -> None:
        dbapi = conn.connection.dbapi_connection
        if dbapi is None:  # pragma: no cover - a live Connection always has one
            raise RuntimeError("the SQLAlchemy connection has no DBAPI connection")
        self.snapshot_id = snapshot_id
        self.table = partitions.create_detached(conn, snapshot_id)
        self._copy_sql = _COPY_SQL.format(table=self.table)
        self._conn = conn
        self.rows_copied = 0  # as PostgreSQL counted them (cursor.rowcount of each COPY)
        self.busy_seconds = 0.0  # time the worker spent copying (overlapped with the caller's work)
        self.payload_seconds = 0.0  # time the worker spent building payloads (overlapped likewise)
        self.key_seconds = 0.0  # time the worker spent building the key (overlapped with validation)
        self._key_built = False
        self._cursor = dbapi.cursor()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inventory-copy")
        # Payloads are built one step ahead on a thread of their own: on a single worker the payload
        # (Arrow, no GIL) and the COPY (PostgreSQL) took turns and the COPY fell behind the parser,
        # so the key build at the end started that much later.
        self._payloads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inventory-payload")
        self._futures: list[Future[None]] = []
        self._key: Future[bool] | None = None

    def submit(self, frame: pd.DataFrame) -> None:
        """Queue a validated block (rows that pass every per-row check) for COPY."""
        for done in self._futures:  # surface a failed block early instead of parsing on for nothing
            if done.done() and done.exception() is not None:
                raise cast(BaseException, done.exception())
        if len(frame):
            payload = self._payloads.submit(self._payload, frame)
            self._futures.append(self._pool.submit(self._copy, payload))

    def _payload(self, frame: pd.DataFrame) -> bytes:
        # Not on the caller's thread: Arrow writes the CSV without holding the GIL, so it runs beside
        # the parsing of the next block instead of in its way.
        started = time.perf_counter()
        try:
            return _copy_payload(self.snapshot_id, frame)
        finally:
            self.payload_seconds += time.perf_counter() - started

    def _copy(self, pending: Future[bytes]) -> None:
        payload = pending.result()
        started = time.perf_counter()
        try:
            self._cursor.copy_expert(self._copy_sql, io.BytesIO(payload), size=_COPY_CHUNK)
        finally:
            self.busy_seconds += time.perf_counter() - started
        self.rows_copied += max(self._cursor.rowcount, 0)

    def build_key(self) -> None:
        """No more blocks: build the key on the worker once the queued blocks are in."""
        self._key = self._pool.submit(self._try_key)

    def _try_key(self) -> bool:
        started = time.perf_counter()
        try:
            partitions.build_key(self._cursor, self.snapshot_id, exact_on_collision=False)
        except Exception as exc:
            # A repeated position (the caller deletes it first) or, rarely, a hash collision: attach()
            # builds the key once the caller's duplicates are out, falling back to the exact key.
            if not partitions.is_unique_violation(exc):
                raise
            return False
        finally:
            self.key_seconds = time.perf_counter() - started
        return True

    def drain(self) -> None:
        """Wait for every queued block and the key build (raises the first error)."""
        for future in self._futures:
            future.result()
        self._key_built = self._key is not None and self._key.result()

    def copy_now(self, frame: pd.DataFrame) -> int:
        """COPY rows on the caller's thread (after :meth:`drain`); returns the rows PostgreSQL took."""
        if not len(frame):
            return 0
        if self._key_built:  # a new row could collide with another's hash: attach() keys the table again
            partitions.drop_key(self._cursor, self.snapshot_id)
            self._key_built = False
        self._cursor.copy_expert(
            self._copy_sql, io.BytesIO(_copy_payload(self.snapshot_id, frame)), size=_COPY_CHUNK
        )
        return max(self._cursor.rowcount, 0)

    def delete_keys(self, frame: pd.DataFrame) -> int:
        """Delete the copied positions with the keys of ``frame``'s rows, every copy (after :meth:`drain`)."""
        if not len(frame):
            return 0
        self._cursor.execute(
            f"DELETE FROM {self.table} p USING (SELECT unnest(%s::text[]) AS m, "
            "unnest(%s::text[]) AS w, unnest(%s::text[]) AS l) d "
            "WHERE p.material_code = d.m AND p.warehouse_code = d.w AND p.lot = d.l",
            (frame[c.MATERIAL].tolist(), frame[c.WAREHOUSE].tolist(), frame[c.LOT].fillna("").tolist()),
        )
        return max(self._cursor.rowcount, 0)

    def attach(self) -> None:
        """Build the key unless the worker did, and make the table the snapshot's partition (after
        :meth:`drain`, :meth:`delete_keys` and :meth:`copy_now`)."""
        if not self._key_built:
            _build_key(self._cursor, self.snapshot_id)
        partitions.attach(self._conn, self.snapshot_id)

    def close(self) -> None:
        """Stop the worker: queued blocks are dropped, a running COPY is waited for."""
        self._payloads.shutdown(wait=False, cancel_futures=True)  # a COPY waiting on one gets cancelled
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._payloads.shutdown(wait=True)
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
    """Drop the positions of all but the ``keep`` newest loaded snapshots of ``source``; returns how
    many snapshots lost theirs.

    The headers stay (history of what was loaded, refused, superseded); only the bulky rows go. Two are
    kept by default: the one in force and its predecessor, which the next diff compares against. On
    PostgreSQL their partitions are dropped, which waits at most :data:`PRUNE_LOCK_WAIT` for readers
    of ``inventory_positions`` (a promise run, a report) to finish; after that the pruning is left to
    the next load (logged) rather than making new readers queue behind it.
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
    try:
        with conn.begin_nested():
            if partitions.partitioned(conn):
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{PRUNE_LOCK_WAIT}'")
            return len(partitions.drop(conn, stale))
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "pgcode", None) != _LOCK_NOT_AVAILABLE:
            raise
        log.warning(
            "positions of %s's old snapshots kept for now: readers held inventory_positions for over %s; "
            "the next load of %s prunes them",
            source,
            PRUNE_LOCK_WAIT,
            source,
        )
        return 0


def delete_snapshots(conn: sa.Connection, snapshot_ids: Iterable[int]) -> int:
    """Delete snapshot headers and their positions; returns how many headers went.

    ``inventory_positions.snapshot_id`` has no foreign key (migration 0003: the per-row check cost as
    much as the COPY), so nothing cascades: positions are removed here first, explicitly (their
    partitions dropped on PostgreSQL).
    """
    ids = sorted({int(i) for i in snapshot_ids})
    if not ids:
        return 0
    partitions.drop(conn, ids)
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
