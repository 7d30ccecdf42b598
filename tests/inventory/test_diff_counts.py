"""Diff counts when the two snapshots differ in size (matched positions counted once each side)."""

from __future__ import annotations

from hub.inventory import SnapshotPolicy
from tests.inventory.conftest import InvStore
from tests.inventory.test_snapshot_store import ingest, snap


def test_counts_with_unequal_sizes_and_a_reserved_only_change(inv_store: InvStore) -> None:
    ingest(
        inv_store,
        snap(
            [
                ("1.01.001", "WH01", "", 100, 10),
                ("1.01.001", "WH02", "L1", 50, 0),
                ("1.01.002", "WH01", "", 30, 5),
                ("1.01.003", "WH02", "", 7.5, 0),
            ]
        ),
    )
    second = ingest(
        inv_store,
        snap(
            [
                ("1.01.001", "WH01", "", 100, 9),  # reserved changed
                ("1.01.003", "WH02", "", 7.5, 0),  # unchanged
                ("2.02.001", "WH01", "", 1, 0),  # appeared
                ("2.02.001", "WH02", "", 2, 0),  # appeared
                ("2.02.001", "WH02", "L9", 3, 0),  # appeared
            ]
        ),
        policy=SnapshotPolicy(max_shrink=0.9),
    )
    diff = second.diff
    assert diff is not None
    assert (diff.disappeared_count, diff.appeared_count, diff.changed_count) == (2, 3, 1)
    assert sorted(diff.disappeared["material_code"] + "/" + diff.disappeared["warehouse_code"]) == [
        "1.01.001/WH02",
        "1.01.002/WH01",
    ]
    assert len(diff.appeared) == 3
    assert float(diff.changed.iloc[0]["new_reserved"]) == 9
