"""The in-process snapshot diff (keys remembered from the previous load) equals the SQL diff.

Runs on SQLite and PostgreSQL: listings are ordered by the key in byte order on both sides (COLLATE "C"
on PostgreSQL, migration 0004), with codes that sort differently under a locale (case, accents, CJK).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hub.inventory import SnapshotPolicy, diff
from hub.inventory.diff import SnapshotDiff, diff_snapshots
from tests.inventory.conftest import InvStore
from tests.inventory.test_snapshot_store import SOURCE, ingest, snap

LOOSE = SnapshotPolicy(max_shrink=0.9, max_reject_share=0.9)
CODES = ("a1", "Z9", "z0", "é2", "e3", "中4", "B5", "b6")


def _rows(seed: int, n: int) -> list[tuple[object, ...]]:
    rng = np.random.default_rng(seed)
    rows = {}
    for _ in range(n):
        key = (str(rng.choice(CODES)), str(rng.choice(CODES[:4])), f"L{int(rng.integers(0, 40))}")
        rows[key] = (float(rng.integers(0, 5)), float(rng.integers(0, 2)))
    return [(*key, *qty) for key, qty in rows.items()]


def _same(a: SnapshotDiff, b: SnapshotDiff) -> None:
    counts = ("disappeared_count", "appeared_count", "changed_count")
    assert [getattr(a, n) for n in counts] == [getattr(b, n) for n in counts]
    for name in ("disappeared", "appeared", "changed"):
        left, right = getattr(a, name), getattr(b, name)
        assert list(left.columns) == list(right.columns), name
        assert left.astype(str).values.tolist() == right.astype(str).values.tolist(), name


def test_in_process_diff_equals_the_sql_diff(inv_store: InvStore) -> None:
    first = ingest(inv_store, snap(_rows(1, 600)), known_materials=None, known_warehouses=None)
    with inv_store.engine.connect() as conn:
        assert diff.remembered(conn, source=SOURCE, snapshot_id=first.snapshot_id) is not None
    second = ingest(
        inv_store,
        snap(_rows(2, 600)),
        known_materials=None,
        known_warehouses=None,
        policy=LOOSE,
        diff_limit=7,
    )
    assert second.diff is not None and second.previous_id == first.snapshot_id
    # Every kind occurred more often than the limit: the listing is the first 7 in key order.
    assert min(second.diff.disappeared_count, second.diff.appeared_count, second.diff.changed_count) > 7
    _same(second.diff, diff_snapshots(inv_store.engine, first.snapshot_id, second.snapshot_id, limit=7))
    stored = sorted(
        tuple(r)
        for r in inv_store.positions(first.snapshot_id)[["material_code", "warehouse_code", "lot"]].values
    )
    assert [tuple(r) for r in second.diff.disappeared.iloc[:, :3].values] == [
        k for k in stored if k in {tuple(r) for r in second.diff.disappeared.iloc[:, :3].values}
    ]


def test_sql_diff_when_the_previous_snapshot_is_not_remembered(inv_store: InvStore) -> None:
    first = ingest(inv_store, snap(_rows(3, 200)), known_materials=None, known_warehouses=None)
    with inv_store.engine.connect() as conn:
        diff.forget(conn, source=SOURCE)  # e.g. a restarted process
    second = ingest(inv_store, snap(_rows(4, 200)), known_materials=None, known_warehouses=None, policy=LOOSE)
    assert second.diff is not None
    _same(second.diff, diff_snapshots(inv_store.engine, first.snapshot_id, second.snapshot_id))
    # The new snapshot is remembered again, and an identical third one diffs as unchanged in process.
    third = ingest(inv_store, snap(_rows(4, 200)), known_materials=None, known_warehouses=None)
    assert third.diff is not None and third.diff.unchanged


def test_remembered_keys_of_another_store_are_not_trusted(inv_store: InvStore) -> None:
    first = ingest(inv_store, snap(_rows(5, 50)), known_materials=None, known_warehouses=None)
    with inv_store.engine.begin() as conn:  # the header no longer matches what was remembered
        conn.exec_driver_sql(
            f"UPDATE inventory_snapshots SET row_count = row_count + 1 WHERE id = {first.snapshot_id}"
        )
        assert diff.remembered(conn, source=SOURCE, snapshot_id=first.snapshot_id) is None
    frame = snap(_rows(6, 50))
    assert isinstance(frame, pd.DataFrame)
    second = ingest(inv_store, frame, known_materials=None, known_warehouses=None, policy=LOOSE)
    assert second.diff is not None
    _same(second.diff, diff_snapshots(inv_store.engine, first.snapshot_id, second.snapshot_id))


def test_streamed_loads_diff_in_process_as_in_sql(inv_store: InvStore) -> None:
    """Blocks (PostgreSQL: COPYed while read) code their lots against the remembered snapshot's."""
    from hub.inventory.snapshot import SnapshotBlock, ingest_snapshot_stream

    def stream(rows: list[tuple[object, ...]]):  # type: ignore[no-untyped-def]
        half = len(rows) // 2
        blocks = [
            SnapshotBlock(snap(rows[:half]), rows_read=half),
            SnapshotBlock(snap(rows[half:], first_line=2 + half), rows_read=len(rows) - half),
        ]
        return ingest_snapshot_stream(
            inv_store.engine, source=SOURCE, blocks=blocks, origin="INV.csv", policy=LOOSE, diff_limit=7
        )

    first = stream(_rows(7, 600))
    second = stream(_rows(8, 600))
    assert second.diff is not None and second.previous_id == first.snapshot_id
    assert min(second.diff.disappeared_count, second.diff.appeared_count, second.diff.changed_count) > 7
    _same(second.diff, diff_snapshots(inv_store.engine, first.snapshot_id, second.snapshot_id, limit=7))
    third = stream(_rows(8, 600))
    assert third.diff is not None and third.diff.unchanged
