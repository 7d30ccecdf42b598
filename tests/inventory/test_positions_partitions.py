"""inventory_positions on PostgreSQL: one LIST partition per snapshot (migration 0005, crm_core.positions),
each keyed by its own unique index (migration 0006): hashed after a bulk load, exact otherwise.

PostgreSQL only: on SQLite the table stays plain and the partition functions do nothing.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from crm_core import positions
from crm_core.db import make_engine
from crm_core.migrate import alembic_config, upgrade
from crm_core.models import Base
from hub.inventory import SnapshotPolicy
from hub.inventory import load as store
from hub.inventory.snapshot import SnapshotBlock, ingest_snapshot_stream
from tests.inventory.conftest import MATERIALS, WAREHOUSES, InvStore
from tests.inventory.test_snapshot_store import LENIENT, SOURCE, base_rows, ingest, snap

PARENT = "inventory_positions"
KEY = ["material_code", "warehouse_code", "lot"]


# --- looking into the catalog -------------------------------------------------------------------------


def attached(engine: sa.Engine) -> dict[str, str]:
    """Partitions attached to inventory_positions: table name -> partition bound."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'inventory_positions'::regclass"
        ).all()
    return {str(name): str(bound) for name, bound in rows}


def snapshot_tables(engine: sa.Engine) -> set[str]:
    """Every table named like a snapshot partition, attached or not."""
    with engine.connect() as conn:
        names = conn.exec_driver_sql(
            "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') "
            "AND relname LIKE 'inventory\\_positions\\_s%%'"
        ).scalars()
        return {str(n) for n in names}


def relkind(engine: sa.Engine, table: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.exec_driver_sql(
                "SELECT relkind FROM pg_class WHERE relname = %(t)s", {"t": table}
            ).scalar_one()
        )


def primary_key(engine: sa.Engine, table: str) -> list[str]:
    return list(sa.inspect(engine).get_pk_constraint(table)["constrained_columns"])


def count_in(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM ONLY {table}").scalar_one())


# crm_core.positions.HASHED_KEY as PostgreSQL spells it back.
HASHED = (
    "hashtextextended((lot)::text, hashtextextended((warehouse_code)::text, "
    "hashtextextended((material_code)::text, (0)::bigint)))"
)


def key_of(engine: sa.Engine, table: str) -> str | None:
    """How a snapshot table is keyed: "hashed" or "exact" (its one unique index), None without one."""
    with engine.connect() as conn:
        indexes = conn.exec_driver_sql(
            "SELECT c.relname, i.indisunique, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %(t)s::regclass",
            {"t": table},
        ).all()
    if not indexes:
        return None
    [(name, unique, definition)] = indexes
    assert (name, unique) == (f"{table}_key", True)
    if definition.endswith(f"btree ({HASHED})"):
        return "hashed"
    assert definition.endswith(f"({', '.join(KEY)})"), definition
    return "exact"


def assert_partition_of(engine: sa.Engine, snapshot_id: int, rows: int, key: str = "hashed") -> None:
    """The snapshot's rows are in its own table, attached for its id and keyed (``key``)."""
    name = f"{PARENT}_s{snapshot_id}"
    assert attached(engine).get(name) == f"FOR VALUES IN ({snapshot_id})"
    assert relkind(engine, name) == "r"
    assert primary_key(engine, name) == []
    assert key_of(engine, name) == key
    assert count_in(engine, name) == rows
    with engine.connect() as conn:
        ids = conn.exec_driver_sql(f"SELECT DISTINCT snapshot_id FROM {name}").scalars().all()
    assert ids == [snapshot_id]


# --- 1. migrations 0005-0006 and back ----------------------------------------------------------------

_OLD_ROWS = {
    7: [("1.01.001", "WH01", "", "100", "10"), ("1.01.002", "WH02", "L1", "7.5", "0")],
    12: [
        ("1.01.001", "WH01", "", "90", "0"),
        ("2.02.001", "WH01", "", "3", "1"),
        ("1.01.003", "WH02", "", "1", "0"),
    ],
}


def _positions(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.exec_driver_sql(
                "SELECT snapshot_id, material_code, warehouse_code, lot, on_hand, reserved "
                "FROM inventory_positions ORDER BY snapshot_id, material_code, warehouse_code, lot"
            )
        ]


def test_migration_moves_rows_into_one_partition_per_snapshot_and_back(fresh_pg_url: str) -> None:
    upgrade(fresh_pg_url, "0004")
    engine = make_engine(fresh_pg_url)
    try:
        now = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
        with engine.begin() as conn:
            for snapshot_id, status in ((7, "superseded"), (12, "in_force")):
                conn.execute(
                    sa.text(
                        "INSERT INTO inventory_snapshots (id, source, taken_at, status, row_count, "
                        "rejected_count, created_at) VALUES (:i, 'erp', :t, :s, :n, 0, :t)"
                    ),
                    {"i": snapshot_id, "t": now, "s": status, "n": len(_OLD_ROWS[snapshot_id])},
                )
                for row in _OLD_ROWS[snapshot_id]:
                    conn.execute(
                        sa.text(
                            "INSERT INTO inventory_positions (snapshot_id, material_code, warehouse_code, lot, "
                            "on_hand, reserved) VALUES (:i, :m, :w, :l, :o, :r)"
                        ),
                        {"i": snapshot_id, "m": row[0], "w": row[1], "l": row[2], "o": row[3], "r": row[4]},
                    )
        assert relkind(engine, PARENT) == "r"
        before = _positions(engine)
        assert len(before) == 5
        assert before[0][4] == Decimal("100")

        upgrade(fresh_pg_url)
        assert relkind(engine, PARENT) == "p"  # partitioned
        assert _positions(engine) == before
        for snapshot_id, rows in _OLD_ROWS.items():
            assert_partition_of(engine, snapshot_id, len(rows), key="exact")
        assert snapshot_tables(engine) == {f"{PARENT}_s7", f"{PARENT}_s12"}
        assert count_in(engine, PARENT) == 0  # the parent itself holds nothing
        assert primary_key(engine, PARENT) == []  # each partition has its own key (migration 0006)
        with engine.connect() as conn:  # the byte collation of migration 0004 carried over
            collations = conn.exec_driver_sql(
                "SELECT table_name, collation_name FROM information_schema.columns "
                "WHERE column_name = 'material_code' AND table_name LIKE 'inventory\\_positions%%'"
            ).all()
        assert {str(t): str(c) for t, c in collations} == {
            PARENT: "C",
            f"{PARENT}_s7": "C",
            f"{PARENT}_s12": "C",
        }

        insert = sa.text(
            "INSERT INTO inventory_positions (snapshot_id, material_code, warehouse_code, lot, on_hand, "
            "reserved) VALUES (:i, '1.01.001', 'WH01', '', 1, 0)"
        )
        with pytest.raises(sa.exc.IntegrityError, match="duplicate key"), engine.begin() as conn:
            conn.execute(insert, {"i": 12})
        with pytest.raises(sa.exc.IntegrityError, match="no partition"), engine.begin() as conn:
            conn.execute(insert, {"i": 99})
        assert _positions(engine) == before

        command.downgrade(alembic_config(fresh_pg_url), "0004")
        assert relkind(engine, PARENT) == "r"
        assert attached(engine) == {}
        assert snapshot_tables(engine) == set()
        pk = sa.inspect(engine).get_pk_constraint(PARENT)
        assert pk["name"] == "pk_inventory_positions"
        assert pk["constrained_columns"] == ["snapshot_id", *KEY]
        assert _positions(engine) == before
        with pytest.raises(sa.exc.IntegrityError, match="duplicate key"), engine.begin() as conn:
            conn.execute(insert, {"i": 7})

        upgrade(fresh_pg_url)  # and up again
        assert relkind(engine, PARENT) == "p"
        assert _positions(engine) == before
        assert set(attached(engine)) == {f"{PARENT}_s7", f"{PARENT}_s12"}
    finally:
        engine.dispose()


# --- 2. a snapshot's life: loaded into its partition, pruned, deleted ---------------------------------


def test_ingest_puts_each_snapshot_in_its_own_keyed_partition(pg_store: InvStore) -> None:
    engine = pg_store.engine
    first = ingest(pg_store, snap(base_rows()))
    assert first.status == "in_force"
    assert_partition_of(engine, first.snapshot_id, len(base_rows()))
    assert len(pg_store.positions(first.snapshot_id)) == len(base_rows())  # read through the parent
    assert count_in(engine, PARENT) == 0

    second = ingest(pg_store, snap(base_rows()), keep_positions=2)
    third = ingest(pg_store, snap(base_rows()), keep_positions=2)
    assert pg_store.snapshots(SOURCE) == [
        (first.snapshot_id, "superseded"),
        (second.snapshot_id, "superseded"),
        (third.snapshot_id, "in_force"),
    ]
    names = {f"{PARENT}_s{second.snapshot_id}", f"{PARENT}_s{third.snapshot_id}"}
    assert set(attached(engine)) == names
    assert snapshot_tables(engine) == names  # the first one's table is gone, not just detached
    assert pg_store.positions(first.snapshot_id).empty
    assert_partition_of(engine, third.snapshot_id, len(base_rows()))

    with engine.begin() as conn:
        assert store.delete_snapshots(conn, [second.snapshot_id]) == 1
    assert snapshot_tables(engine) == {f"{PARENT}_s{third.snapshot_id}"}
    assert set(attached(engine)) == {f"{PARENT}_s{third.snapshot_id}"}
    assert pg_store.snapshots(SOURCE) == [(first.snapshot_id, "superseded"), (third.snapshot_id, "in_force")]
    assert len(pg_store.positions(third.snapshot_id)) == len(base_rows())


def _stream(pg_store: InvStore, rows: list[tuple[object, ...]], **kwargs: object):  # type: ignore[no-untyped-def]
    half = len(rows) // 2
    blocks = [
        SnapshotBlock(snap(rows[:half]), rows_read=half),
        SnapshotBlock(snap(rows[half:], first_line=2 + half), rows_read=len(rows) - half),
    ]
    return ingest_snapshot_stream(
        pg_store.engine,
        source=SOURCE,
        blocks=blocks,
        origin="inventory/INV_1.csv",
        known_materials=MATERIALS,
        known_warehouses=WAREHOUSES,
        **kwargs,  # type: ignore[arg-type]
    )


def test_streamed_snapshot_lands_in_its_keyed_partition(pg_store: InvStore) -> None:
    engine = pg_store.engine
    outcome = _stream(pg_store, base_rows())
    assert outcome.status == "in_force" and outcome.rows_loaded == 4
    assert_partition_of(engine, outcome.snapshot_id, 4)
    # A key repeated across blocks: the key build on the COPY thread fails, both copies are taken out,
    # and the partition still gets its key before it is attached.
    rows = base_rows() + [("1.01.001", "WH01", "", 1, 0)]
    again = _stream(pg_store, rows, policy=LENIENT)
    assert (again.status, again.rows_loaded, again.rows_rejected) == ("in_force", 3, 2)
    assert_partition_of(engine, again.snapshot_id, 3)
    stored = pg_store.positions(again.snapshot_id)
    assert not ((stored["material_code"] == "1.01.001") & (stored["warehouse_code"] == "WH01")).any()
    assert snapshot_tables(engine) == {
        f"{PARENT}_s{outcome.snapshot_id}",
        f"{PARENT}_s{again.snapshot_id}",
    }


def test_a_hash_collision_is_not_a_duplicate_the_exact_key_is_built(
    pg_store: InvStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a hash of the material alone, the two positions of 1.01.001 (WH01 and WH02/L1) collide:
    # different positions, not a repeated one. Both load paths fall back to the exact key and load.
    monkeypatch.setattr(positions, "HASHED_KEY", "hashtextextended(material_code, 0)")
    engine = pg_store.engine
    whole = ingest(pg_store, snap(base_rows()))
    assert (whole.status, whole.rows_loaded, whole.rows_rejected) == ("in_force", 4, 0)
    assert_partition_of(engine, whole.snapshot_id, 4, key="exact")
    streamed = _stream(pg_store, base_rows())
    assert (streamed.status, streamed.rows_loaded, streamed.rows_rejected) == ("in_force", 4, 0)
    assert_partition_of(engine, streamed.snapshot_id, 4, key="exact")
    assert len(pg_store.positions(streamed.snapshot_id)) == 4
    # The exact key refuses a repeated position as the hashed one does.
    with pytest.raises(sa.exc.IntegrityError, match="duplicate key"), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO inventory_positions (snapshot_id, material_code, warehouse_code, lot, on_hand, "
                "reserved) VALUES (:i, '1.01.001', 'WH02', 'L1', 1, 0)"
            ),
            {"i": streamed.snapshot_id},
        )


def _index_of(conn: sa.Connection, table: str) -> list[str]:
    return [
        str(d)
        for d in conn.exec_driver_sql(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %(t)s::regclass", {"t": table}
        ).scalars()
    ]


def test_rows_added_after_the_key_was_built_are_keyed_again_and_a_repeat_is_a_loud_bug(
    pg_store: InvStore,
) -> None:
    engine = pg_store.engine
    frame = snap(base_rows())
    with engine.begin() as conn:
        sid = store.insert_snapshot(conn, source=SOURCE, taken_at=datetime.now(UTC), status="loading")
        copier = store.BlockCopier(conn, sid)
        try:
            copier.submit(frame.iloc[:3])
            copier.build_key()
            copier.drain()
            assert [d.endswith(f"btree ({HASHED})") for d in _index_of(conn, copier.table)] == [True]
            assert copier.copy_now(frame.iloc[3:]) == 1  # a late row: the key is dropped first ...
            assert _index_of(conn, copier.table) == []
            copier.attach()  # ... and built again before the table becomes the partition
        finally:
            copier.close()
    assert_partition_of(engine, sid, 4)

    # A repeated position that got past validation: the key refuses it, the load rolls back and says why.
    with (
        pytest.raises(
            RuntimeError,
            match=r"refused a repeated .*\(1\.01\.002, WH01, \) is duplicated.* Report this as a bug",
        ),
        engine.begin() as conn,
    ):
        again = store.insert_snapshot(conn, source=SOURCE, taken_at=datetime.now(UTC), status="loading")
        store.copy_positions(conn, again, snap(base_rows() + [("1.01.002", "WH01", "", 1, 0)]))
    assert snapshot_tables(engine) == {f"{PARENT}_s{sid}"}


# --- 3. a refused snapshot leaves no table -------------------------------------------------------------


def test_refused_snapshot_leaves_no_partition_behind(pg_store: InvStore) -> None:
    engine = pg_store.engine
    rows = [(MATERIALS[i % 4], WAREHOUSES[i % 2], f"L{i}", i, 0) for i in range(20)]
    first = ingest(pg_store, snap(rows))
    kept = {f"{PARENT}_s{first.snapshot_id}"}
    shrunk = ingest(pg_store, snap(rows[:8]), policy=SnapshotPolicy(max_shrink=0.5))
    assert shrunk.refused and "shrank" in (shrunk.refused_reason or "")
    # Streamed: the blocks were COPYed into a table of their own before the refusal was decided.
    streamed = _stream(pg_store, rows[:8], policy=SnapshotPolicy(max_shrink=0.5))
    assert streamed.refused and "shrank" in (streamed.refused_reason or "")
    assert snapshot_tables(engine) == kept
    assert set(attached(engine)) == kept
    for refused in (shrunk, streamed):
        assert f"{PARENT}_s{refused.snapshot_id}" not in snapshot_tables(engine)
        assert pg_store.positions(refused.snapshot_id).empty
    assert pg_store.snapshots(SOURCE) == [
        (first.snapshot_id, "in_force"),
        (shrunk.snapshot_id, "refused"),
        (streamed.snapshot_id, "refused"),
    ]
    assert_partition_of(engine, first.snapshot_id, 20)


# --- 4. pruning does not queue behind readers ----------------------------------------------------------


def test_prune_gives_up_after_prune_lock_wait_and_the_next_load_prunes(
    pg_store: InvStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(store, "PRUNE_LOCK_WAIT", "300ms")
    engine = pg_store.engine
    a = ingest(pg_store, snap(base_rows()))
    b = ingest(pg_store, snap(base_rows()))
    reader_engine = make_engine(pg_store.url)
    reader = reader_engine.connect()
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        reader.begin()
        assert reader.exec_driver_sql("SELECT count(*) FROM inventory_positions").scalar_one() == 8
        pid = reader.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with engine.connect() as conn:
            held = conn.exec_driver_sql(
                "SELECT mode FROM pg_locks WHERE pid = %(p)s AND relation = 'inventory_positions'::regclass",
                {"p": pid},
            ).scalars()
            assert "AccessShareLock" in set(held)

        caplog.set_level(logging.WARNING, logger="hub.inventory.load")
        started = time.perf_counter()
        future = pool.submit(ingest, pg_store, snap(base_rows()))
        try:
            c = future.result(timeout=60)
        except TimeoutError:  # blocked behind the reader: let it go so the load can end, then fail
            reader.rollback()
            future.result(timeout=60)
            pytest.fail("the load waited for the reader of inventory_positions")
        elapsed = time.perf_counter() - started
        assert c.status == "in_force" and c.previous_id == b.snapshot_id
        assert elapsed < 5, f"the load took {elapsed:.1f} s with PRUNE_LOCK_WAIT = 300ms"
        warnings = [
            r for r in caplog.records if r.name == "hub.inventory.load" and r.levelno == logging.WARNING
        ]
        assert len(warnings) == 1 and "300ms" in warnings[0].getMessage()
        assert SOURCE in warnings[0].getMessage()
        # Not pruned: a's partition is still there, next to b's and c's (attached while the reader read).
        ids = (a.snapshot_id, b.snapshot_id, c.snapshot_id)
        assert set(attached(engine)) == {f"{PARENT}_s{i}" for i in ids}
        assert_partition_of(engine, c.snapshot_id, len(base_rows()))
        # The reader's transaction goes on (READ COMMITTED: its next statement sees c's partition too).
        assert reader.exec_driver_sql("SELECT count(*) FROM inventory_positions").scalar_one() == 12
    finally:
        reader.rollback()
        reader.close()
        reader_engine.dispose()
        pool.shutdown(wait=True)

    caplog.clear()
    d = ingest(pg_store, snap(base_rows()))
    assert not [r for r in caplog.records if r.name == "hub.inventory.load" and r.levelno == logging.WARNING]
    kept = {f"{PARENT}_s{c.snapshot_id}", f"{PARENT}_s{d.snapshot_id}"}
    assert set(attached(engine)) == kept
    assert snapshot_tables(engine) == kept
    assert pg_store.positions(a.snapshot_id).empty and pg_store.positions(b.snapshot_id).empty


def test_a_load_in_progress_does_not_hold_up_another_sources_retention(pg_store: InvStore) -> None:
    """The table a load fills is created without a lock on inventory_positions, so dropping an old
    partition (retention of another source) need not wait for that load to commit."""
    first = ingest(pg_store, snap(base_rows()))
    loader_engine = make_engine(pg_store.url)
    loading = loader_engine.connect()
    try:
        loading.begin()
        positions.create_detached(loading, 999_999)  # a streamed load between its first and last block
        with pg_store.engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '1s'")
            assert store.delete_snapshots(conn, [first.snapshot_id]) == 1
    finally:
        loading.rollback()
        loading.close()
        loader_engine.dispose()
    assert f"{PARENT}_s{first.snapshot_id}" not in snapshot_tables(pg_store.engine)
    assert f"{PARENT}_s999999" not in snapshot_tables(pg_store.engine)


# --- 5. schema comparison leaves the partitions out -----------------------------------------------------


def _not_a_snapshot_partition(name: str | None, type_: str, _parents: object) -> bool:
    """The include_name filter of crm_core/migrations/env.py (env.py runs migrations on import)."""
    return not (type_ == "table" and name is not None and positions.is_partition(name))


def test_compare_metadata_ignores_snapshot_partitions_only_with_the_filter(pg_store: InvStore) -> None:
    first = ingest(pg_store, snap(base_rows()))
    second = ingest(pg_store, snap(base_rows()))
    names = {f"{PARENT}_s{first.snapshot_id}", f"{PARENT}_s{second.snapshot_id}"}
    assert set(attached(pg_store.engine)) == names
    with pg_store.engine.connect() as conn:
        filtered = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": _not_a_snapshot_partition}
        )
        assert compare_metadata(filtered, Base.metadata) == []
        unfiltered = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    removed = {d[1].name for d in unfiltered if isinstance(d, tuple) and d[0] == "remove_table"}
    assert removed == names
    keys = {d[1].name for d in unfiltered if isinstance(d, tuple) and d[0] == "remove_index"}
    assert keys == {f"{name}_key" for name in names}
    assert len(unfiltered) == 2 * len(names)  # the partitions and their keys are the only difference


def test_alembic_check_through_env_py_passes_with_partitions(pg_store: InvStore) -> None:
    """env.py's own include_name: ``alembic check`` (autogenerate through env.py) finds nothing to do."""
    first = ingest(pg_store, snap(base_rows()))
    assert positions.partition_name(first.snapshot_id) in attached(pg_store.engine)
    command.check(alembic_config(pg_store.url))  # raises AutogenerateDiffsDetected on any difference
    assert positions.is_partition(f"inventory_positions_s{first.snapshot_id}")
    for name in (
        "inventory_positions",
        "inventory_positions_s",
        "inventory_positions_sx1",
        "inventory_snapshots",
    ):
        assert not positions.is_partition(name)
