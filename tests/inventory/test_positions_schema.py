"""inventory_positions after migration 0003 (natural primary key, no FK) and the configured ``max_shrink``.

Store tests run on SQLite and on a real PostgreSQL (``inv_store`` is parametrised over both).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from crm_core.models import InventoryPosition
from hub.config import load_project
from hub.inventory import SnapshotPolicy, ingest_snapshot
from hub.inventory.load import delete_snapshots
from hub.inventory.pull import policy_for
from hub.inventory.sources import inventory_sources
from tests.inventory.conftest import MATERIALS, WAREHOUSES, InvStore
from tests.inventory.test_snapshot_store import SOURCE, base_rows, ingest, snap

REPO = Path(__file__).resolve().parents[2]


def test_primary_key_is_the_natural_key_and_no_foreign_key(inv_store: InvStore) -> None:
    inspector = sa.inspect(inv_store.engine)
    pk = inspector.get_pk_constraint("inventory_positions")
    key = ["material_code", "warehouse_code", "lot"]
    # PostgreSQL: one partition per snapshot, each with its own unique key (test_positions_partitions).
    expected = [] if inv_store.engine.dialect.name == "postgresql" else ["snapshot_id", *key]
    assert pk["constrained_columns"] == expected
    assert inspector.get_foreign_keys("inventory_positions") == []
    assert inspector.get_unique_constraints("inventory_positions") == []
    assert "id" not in {c["name"] for c in inspector.get_columns("inventory_positions")}


def test_primary_key_still_rejects_a_duplicate_position(inv_store: InvStore) -> None:
    outcome = ingest(inv_store, snap(base_rows()))
    with pytest.raises(sa.exc.IntegrityError), inv_store.engine.begin() as conn:
        conn.execute(
            sa.insert(InventoryPosition).values(
                snapshot_id=outcome.snapshot_id,
                material_code="1.01.001",
                warehouse_code="WH01",
                lot="",
                on_hand=1,
                reserved=0,
            )
        )
    assert inv_store.scalar(
        "SELECT count(*) FROM inventory_positions WHERE snapshot_id = :i", i=outcome.snapshot_id
    ) == len(base_rows())


def test_delete_snapshots_removes_their_positions_too(inv_store: InvStore) -> None:
    first = ingest(inv_store, snap(base_rows()))
    second = ingest(inv_store, snap(base_rows()), keep_positions=0)
    with inv_store.engine.begin() as conn:
        assert delete_snapshots(conn, [first.snapshot_id]) == 1
    assert inv_store.snapshots(SOURCE) == [(second.snapshot_id, "in_force")]
    counts = inv_store.rows("SELECT snapshot_id, count(*) AS n FROM inventory_positions GROUP BY snapshot_id")
    assert [(r.snapshot_id, r.n) for r in counts] == [(second.snapshot_id, len(base_rows()))]


def test_diff_counts_with_the_composite_key(inv_store: InvStore) -> None:
    ingest(inv_store, snap(base_rows()))
    rows = base_rows()
    rows[0] = ("1.01.001", "WH01", "", 99, 10)  # changed
    rows[3] = ("2.02.001", "WH02", "", 7.5, 0)  # one disappeared, one appeared
    second = ingest(inv_store, snap(rows))
    assert second.diff is not None
    assert (second.diff.disappeared_count, second.diff.appeared_count, second.diff.changed_count) == (1, 1, 1)


# --- max_shrink from the template ----------------------------------------------------------------------


def _project(tmp_path: Path, template: str, max_shrink: float | None) -> Path:
    """A hub.yaml with one connection of the shipped ``template`` and, if given, a copy of that template
    (in templates_dir, shadowing the shipped one) whose ``max_shrink`` line says ``max_shrink``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    shipped = (REPO / "templates" / f"{template}.yaml").read_text(encoding="utf-8")
    assert shipped.count("    max_shrink: 0.5\n") == 1, "the shipped template states max_shrink: 0.5"
    if max_shrink is not None:
        (tmp_path / "templates").mkdir()
        (tmp_path / "templates" / f"{template}.yaml").write_text(
            shipped.replace("    max_shrink: 0.5\n", f"    max_shrink: {max_shrink}\n"), encoding="utf-8"
        )
    connection = {
        "erp_sftp_csv": "      host: 127.0.0.1\n      username: erp\n      root: /drop\n"
        "      host_key_fingerprint: SHA256:" + "A" * 43 + "\n",
        "kingdee_kis": '      account_number: "002"\n',
    }[template]
    config = tmp_path / "hub.yaml"
    config.write_text(
        "version: 1\n"
        + ("templates_dir: templates\n" if max_shrink is not None else "")
        + f"connections:\n  erp:\n    template: {template}\n    connection:\n{connection}",
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize("template", ["erp_sftp_csv", "kingdee_kis"])
def test_policy_takes_max_shrink_from_the_template_and_the_cli_wins(tmp_path: Path, template: str) -> None:
    [shipped] = inventory_sources(load_project(_project(tmp_path / "a", template, None), check_env=False))
    assert policy_for(shipped).max_shrink == 0.5
    [custom] = inventory_sources(load_project(_project(tmp_path / "b", template, 0.1), check_env=False))
    assert policy_for(custom).max_shrink == 0.1
    assert policy_for(custom, max_shrink=0.7).max_shrink == 0.7


def test_template_max_shrink_refuses_what_the_default_would_load(tmp_path: Path, inv_store: InvStore) -> None:
    [source] = inventory_sources(load_project(_project(tmp_path, "erp_sftp_csv", 0.1), check_env=False))
    policy = policy_for(source)
    first = ingest(inv_store, snap(base_rows()), policy=policy)
    # 3 of 4 rows: a 25% shrink, fine under the default 0.5 but more than the template's 0.1.
    shrunk = ingest_snapshot(
        inv_store.engine,
        source=SOURCE,
        frame=snap(base_rows()[:3]),
        origin="inventory/INV_2.csv",
        policy=policy,
        known_materials=MATERIALS,
        known_warehouses=WAREHOUSES,
    )
    assert shrunk.refused and shrunk.refused_reason and "shr" in shrunk.refused_reason.lower()
    assert inv_store.snapshots(SOURCE) == [(first.snapshot_id, "in_force"), (shrunk.snapshot_id, "refused")]
    assert SnapshotPolicy().max_shrink == 0.5
