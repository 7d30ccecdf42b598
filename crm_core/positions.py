"""``inventory_positions`` on PostgreSQL: one partition per snapshot (migration 0005).

Why partitions: a snapshot is written once, read while it is in force or diffed against, then thrown
away. Written into a fresh table without its key, with the key built once at the end, a 1M-row
snapshot costs PostgreSQL about a third of filling the one shared primary key row by row while the
file is still being parsed (keys arrive in one ascending run per block, and every run is merged into
the same index); a superseded snapshot is dropped whole (no million-row DELETE, no dead rows to
vacuum). Readers see no difference: they query ``inventory_positions`` and PostgreSQL reads the
partitions of the snapshots asked for.

There is no DEFAULT partition on purpose: attaching a partition next to one would lock and scan it,
and a row for a snapshot without its partition fails loudly instead of landing in a catch-all.

SQLite keeps one plain table: every function here does nothing there and :func:`target` names the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import sqlalchemy as sa

from crm_core.models import InventoryPosition

PARENT = "inventory_positions"
# The partition key column comes last: within a partition it is one constant value, and as the first
# column it made every comparison of the key build fall through to the codes and kept PostgreSQL from
# sorting on abbreviated keys (1M keys: 3.1 s serial -> 1.6 s with the material code first).
KEY_COLUMNS = ("material_code", "warehouse_code", "lot", "snapshot_id")
# Sort memory for building a snapshot's key (PostgreSQL's default of 64 MB spills ~1M keys to disk).
_KEY_BUILD_MEMORY = "256MB"


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

    For small, row-wise writers (demo data, tests). Bulk loads use :func:`create_detached` and
    :func:`attach` instead: PARTITION OF locks the parent table until the transaction ends.
    """
    if partitioned(conn):
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {partition_name(snapshot_id)} PARTITION OF {PARENT} "
            f"FOR VALUES IN ({int(snapshot_id)})"
        )


def create_detached(conn: sa.Connection, snapshot_id: int) -> str:
    """A fresh table shaped like ``inventory_positions`` (columns, types, collations), without its key.

    A bulk load COPYs into it, then :func:`build_key` and :func:`attach` make it the snapshot's
    partition, in the same transaction: nobody sees it before it is complete, a rollback removes it.
    Takes no lock on the parent table. Returns the table name (the parent's own on SQLite, where
    nothing is created).
    """
    if not partitioned(conn):
        return PARENT
    name = partition_name(snapshot_id)
    # Spelled out from the model rather than LIKE inventory_positions: LIKE would hold a lock on the
    # parent for the whole load (a streamed load lasts as long as its download) and make other sources'
    # retention (DROP of their old partitions) wait behind it. ATTACH refuses a table whose columns
    # differ from the parent's, so a drift between model and migrations fails loudly, not silently.
    conn.execute(sa.schema.CreateTable(_unkeyed_copy(name)))
    return name


def _unkeyed_copy(name: str) -> sa.Table:
    """``inventory_positions``' columns (types, collations, NOT NULL) as a table ``name`` without a key."""
    parent = cast(sa.Table, InventoryPosition.__table__)
    return sa.Table(
        name,
        sa.MetaData(),
        *(sa.Column(column.name, column.type, nullable=False) for column in parent.columns),
    )


def key_statements(snapshot_id: int) -> tuple[str, ...]:
    """SQL that builds a snapshot table's key (and the CHECK that lets ATTACH skip its scan).

    A repeated position fails it with a unique violation. Given as statements so that a loader can
    run them on its COPY thread, under a savepoint, while it validates the last rows.
    """
    name, number = partition_name(snapshot_id), int(snapshot_id)
    return (
        f"SET LOCAL maintenance_work_mem = '{_KEY_BUILD_MEMORY}'",  # until the transaction ends
        f"ALTER TABLE {name} ADD CONSTRAINT {name}_snapshot CHECK (snapshot_id = {number}), "
        f"ADD CONSTRAINT {name}_pkey PRIMARY KEY ({', '.join(KEY_COLUMNS)})",
    )


def build_key(conn: sa.Connection, snapshot_id: int) -> None:
    """Run :func:`key_statements` (PostgreSQL)."""
    if partitioned(conn):
        for statement in key_statements(snapshot_id):
            conn.exec_driver_sql(statement)


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
