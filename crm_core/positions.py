"""``inventory_positions`` on PostgreSQL: one partition per snapshot (migration 0005).

Why partitions: a snapshot is written once, read while it is in force or diffed against, then thrown
away. Written into a fresh table without its key, with the key built once at the end, a 1M-row
snapshot costs PostgreSQL about a third of filling the one shared primary key row by row while the
file is still being parsed (keys arrive in one ascending run per block, and every run is merged into
the same index); a superseded snapshot is dropped whole (no million-row DELETE, no dead rows to
vacuum). Readers see no difference: they query ``inventory_positions`` and PostgreSQL reads the
partitions of the snapshots asked for.

The key (migration 0006): each partition has its own unique index, named ``<partition>_key``; the
parent has none (the unique key of a partitioned table cannot be an expression). A bulk load gives
its partition a unique index on a 64-bit hash of (material_code, warehouse_code, lot)
(:data:`HASHED_KEY`). It guards exactly what the composite key guarded: two rows with the same key
have the same hash, so a repeated position always fails the build. It costs about half: PostgreSQL
sorts one integer per row instead of three strings (1M rows: 0.8-1.0 s of CPU instead of 2.0-2.4 s,
measured serially; the build was the last second or two of a 1M-row pull). Two different keys with
the same hash (about 3 in 10^8 for a million positions) are not a duplicate: the build then falls back
to the exact index on the three columns, so a collision costs time, never a refused snapshot. Tables
filled row by row (:func:`create_attached`) get the exact index from the start.

There is no DEFAULT partition on purpose: attaching a partition next to one would lock and scan it,
and a row for a snapshot without its partition fails loudly instead of landing in a catch-all.

SQLite keeps one plain table: every function here does nothing there and :func:`target` names the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import sqlalchemy as sa

from crm_core.models import InventoryPosition

PARENT = "inventory_positions"
# A snapshot partition's exact key. Its snapshot_id is one constant value, so it is not part of it (as
# a leading column it made every comparison fall through to the codes, and kept PostgreSQL from
# sorting on abbreviated keys).
KEY_COLUMNS = ("material_code", "warehouse_code", "lot")
# The hash the bulk-loaded key indexes: each code hashed with the previous hash as seed (no separator,
# so no two splits of the same characters meet by construction). The columns compare bytes (COLLATE
# "C"), and the hash of a deterministic collation is the hash of the bytes: equal keys, equal hashes.
HASHED_KEY = "hashtextextended(lot, hashtextextended(warehouse_code, hashtextextended(material_code, 0)))"
# Sort memory for building a snapshot's key (PostgreSQL's default of 64 MB spills ~1M keys to disk).
_KEY_BUILD_MEMORY = "256MB"
_UNIQUE_VIOLATION = "23505"  # SQLSTATE unique_violation


def partitioned(conn: sa.Connection) -> bool:
    """True where positions live in one partition per snapshot (PostgreSQL)."""
    return conn.dialect.name == "postgresql"


def partition_name(snapshot_id: int) -> str:
    """The table that holds one snapshot's positions on PostgreSQL."""
    return f"{PARENT}_s{int(snapshot_id)}"


def target(conn: sa.Connection, snapshot_id: int) -> str:
    """Where a bulk load of ``snapshot_id`` writes: its partition on PostgreSQL, the table on SQLite."""
    return partition_name(snapshot_id) if partitioned(conn) else PARENT


def create_attached(conn: sa.Connection, snapshot_id: int) -> None:
    """Give a snapshot its partition, attached and keyed, before rows are inserted through the parent.

    For small, row-wise writers (demo data, tests): the partition has the exact key from the start
    (a hashed key could refuse one of two different positions whose hashes collide). Bulk loads use
    :func:`create_detached` and :func:`attach` instead: PARTITION OF locks the parent table until the
    transaction ends.
    """
    if partitioned(conn):
        name = partition_name(snapshot_id)
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {PARENT} FOR VALUES IN ({int(snapshot_id)})"
        )
        conn.exec_driver_sql(_exact_key(snapshot_id, if_not_exists=True))


def create_detached(conn: sa.Connection, snapshot_id: int) -> str:
    """A fresh table shaped like ``inventory_positions`` (columns, types, collations), without its key.

    A bulk load COPYs into it, then :func:`build_key` and :func:`attach` make it the snapshot's
    partition, in the same transaction: nobody sees it before it is complete, a rollback removes it.
    Takes no lock on the parent table. The table carries the CHECK that its rows are the snapshot's
    (each row is checked as it is copied; ATTACH then needs no scan). Returns the table name (the
    parent's own on SQLite, where nothing is created).
    """
    if not partitioned(conn):
        return PARENT
    name = partition_name(snapshot_id)
    # Spelled out from the model rather than LIKE inventory_positions: LIKE would hold a lock on the
    # parent for the whole load (a streamed load lasts as long as its download) and make other sources'
    # retention (DROP of their old partitions) wait behind it. ATTACH refuses a table whose columns
    # differ from the parent's, so a drift between model and migrations fails loudly, not silently.
    conn.execute(sa.schema.CreateTable(_unkeyed_copy(name, snapshot_id)))
    return name


def _unkeyed_copy(name: str, snapshot_id: int) -> sa.Table:
    """``inventory_positions``' columns (types, collations, NOT NULL) as a table ``name`` without a key,
    with the CHECK that its rows are ``snapshot_id``'s."""
    parent = cast(sa.Table, InventoryPosition.__table__)
    return sa.Table(
        name,
        sa.MetaData(),
        *(sa.Column(column.name, column.type, nullable=False) for column in parent.columns),
        sa.CheckConstraint(f"snapshot_id = {int(snapshot_id)}", name=f"{name}_snapshot"),
    )


def key_name(snapshot_id: int) -> str:
    """The unique index that keys a snapshot's table (hashed or exact, see the module's docstring)."""
    return f"{partition_name(snapshot_id)}_key"


def _exact_key(snapshot_id: int, *, if_not_exists: bool = False) -> str:
    """SQL for the exact key of a snapshot's table: a unique index on :data:`KEY_COLUMNS`."""
    guard = "IF NOT EXISTS " if if_not_exists else ""
    return (
        f"CREATE UNIQUE INDEX {guard}{key_name(snapshot_id)} ON {partition_name(snapshot_id)} "
        f"({', '.join(KEY_COLUMNS)})"
    )


def is_unique_violation(exc: BaseException) -> bool:
    """True for PostgreSQL's unique_violation, raised by the driver or wrapped by SQLAlchemy."""
    cause = getattr(exc, "orig", exc)
    return getattr(cause, "pgcode", None) == _UNIQUE_VIOLATION


def build_key(cursor: Any, snapshot_id: int, *, exact_on_collision: bool = True) -> None:
    """Give a snapshot's table its key on a DBAPI ``cursor`` of the loading transaction (PostgreSQL).

    The hashed key first, under a savepoint. When it fails and ``exact_on_collision``, the exact key:
    it fails only for a real repeated position (the driver's unique violation is raised), while a hash
    collision of two different positions builds it and the load goes on. Without
    ``exact_on_collision`` the hashed key's failure is raised (a caller that may still take repeated
    positions out first).
    """
    name = partition_name(snapshot_id)
    cursor.execute(f"SET LOCAL maintenance_work_mem = '{_KEY_BUILD_MEMORY}'")  # until the transaction ends
    cursor.execute("SAVEPOINT inventory_hashed_key")
    try:
        cursor.execute(f"CREATE UNIQUE INDEX {key_name(snapshot_id)} ON {name} (({HASHED_KEY}))")
    except Exception as exc:
        cursor.execute("ROLLBACK TO SAVEPOINT inventory_hashed_key")
        cursor.execute("RELEASE SAVEPOINT inventory_hashed_key")
        if not (exact_on_collision and is_unique_violation(exc)):
            raise
        cursor.execute(_exact_key(snapshot_id))
        return
    cursor.execute("RELEASE SAVEPOINT inventory_hashed_key")


def drop_key(cursor: Any, snapshot_id: int) -> None:
    """Remove a snapshot table's key (before rows are added to it: a new row could collide with the
    hash of another; :func:`build_key` then builds it again)."""
    cursor.execute(f"DROP INDEX IF EXISTS {key_name(snapshot_id)}")


def attach(conn: sa.Connection, snapshot_id: int) -> None:
    """Make the keyed snapshot table the snapshot's partition and give it fresh statistics.

    Takes only a SHARE UPDATE EXCLUSIVE lock on the parent: readers and writers of other snapshots go
    on. Fresh statistics matter: without them the planner takes a million-row snapshot for a tiny one
    and picks nested loops for the SQL diff and the promise reads; a small sample (3,000 rows) is enough.
    """
    if not partitioned(conn):
        return
    name, number = partition_name(snapshot_id), int(snapshot_id)
    conn.exec_driver_sql(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES IN ({number})")
    conn.exec_driver_sql("SET LOCAL default_statistics_target = 10")  # until the transaction ends
    conn.exec_driver_sql(f"ANALYZE {name}")


def holding_positions(conn: sa.Connection, snapshot_ids: Iterable[int]) -> list[int]:
    """Those of ``snapshot_ids`` that still have positions stored (PostgreSQL: a partition)."""
    ids = sorted({int(i) for i in snapshot_ids})
    if not ids:
        return []
    if partitioned(conn):
        names = conn.exec_driver_sql(
            f"SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            f"WHERE i.inhparent = '{PARENT}'::regclass"
        ).scalars()
        have = {int(name.rsplit("_s", 1)[1]) for name in names if is_partition(name)}
        return [i for i in ids if i in have]
    listed = ", ".join(map(str, ids))
    found = conn.exec_driver_sql(f"SELECT DISTINCT snapshot_id FROM {PARENT} WHERE snapshot_id IN ({listed})")
    return sorted(int(i) for i in found.scalars())


def drop(conn: sa.Connection, snapshot_ids: Iterable[int]) -> list[int]:
    """Remove the positions of these snapshots: their partitions (PostgreSQL) or rows (SQLite).

    Returns the snapshots that had positions. Dropping a partition takes a short exclusive lock on the
    parent table: the caller bounds the wait (``lock_timeout``) where a long reader may hold it.
    """
    ids = holding_positions(conn, snapshot_ids)
    if partitioned(conn):
        for number in ids:
            conn.exec_driver_sql(f"DROP TABLE {partition_name(number)}")
    elif ids:
        conn.exec_driver_sql(f"DELETE FROM {PARENT} WHERE snapshot_id IN ({', '.join(map(str, ids))})")
    return ids


def is_partition(name: str) -> bool:
    """True for a snapshot partition's table name (schema comparisons leave them out)."""
    prefix = f"{PARENT}_s"
    return name.startswith(prefix) and name[len(prefix) :].isdigit()
