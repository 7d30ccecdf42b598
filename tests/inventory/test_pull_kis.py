"""KIS 即时库存 (ICInventory/List) into the store through the real KIS sandbox over HTTP."""

from __future__ import annotations

from hub.inventory.pull import Catalog, pull_kis
from hub.inventory.validate import SnapshotPolicy
from tests.inventory.conftest import InvStore

SEEDED = {  # the sandbox's default seed (connectors/kingdee/kis_sandbox/seed.py)
    ("M-BOLT-M8", "WH01", ""): 5000,
    ("M-BOLT-M8", "WH02", "B2025-01"): 800,
    ("M-BOLT-M10", "WH01", ""): 3000,
    ("M-BRKT-L01", "WH01", ""): 1200,
    ("M-BRKT-U02", "WH01", ""): 300,
}


def test_kis_listing_becomes_the_snapshot_in_force(inv_store: InvStore, make_client, admin) -> None:  # type: ignore[no-untyped-def]
    client = make_client("koas", page_size=2)  # several pages
    report = pull_kis(inv_store.engine, client, source="kis", catalog=Catalog(None, None))
    [outcome] = report.loaded
    stored = inv_store.positions(outcome.snapshot_id)
    got = {(r.material_code, r.warehouse_code, r.lot): float(r.on_hand) for r in stored.itertuples()}
    assert got == SEEDED
    # Stock moves in the ERP; the next pull supersedes and the diff names the position that went away.
    admin.seed({"inventory": [{"material": "M-BRKT-U02", "stock": "WH01", "batch": "", "qty": "0"}]})
    admin.seed({"inventory": [{"material": "M-BOLT-M10", "stock": "WH01", "batch": "", "qty": "2500"}]})
    second = pull_kis(inv_store.engine, client, source="kis", catalog=Catalog(None, None)).loaded[0]
    assert second.previous_id == outcome.snapshot_id and second.diff is not None
    assert second.diff.changed_count >= 1
    assert inv_store.snapshots("kis") == [
        (outcome.snapshot_id, "superseded"),
        (second.snapshot_id, "in_force"),
    ]


def test_kis_rows_of_unknown_materials_refuse_the_snapshot(inv_store: InvStore, make_client) -> None:  # type: ignore[no-untyped-def]
    client = make_client("koas")
    report = pull_kis(inv_store.engine, client, source="kis", policy=SnapshotPolicy())
    [refused] = report.refused  # the store's catalog knows none of the sandbox materials: 5 of 5 rejected
    assert "5 of 5 rows rejected" in (refused.refused_reason or "")
    assert inv_store.snapshots("kis") == [(refused.snapshot_id, "refused")]
