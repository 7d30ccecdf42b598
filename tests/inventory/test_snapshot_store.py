"""Taking inventory snapshots into the store: load, supersede, diff, quarantine and whole refusals.

Runs on SQLite and on a real PostgreSQL (``inv_store`` is parametrised over both).
"""

from __future__ import annotations

import json
from decimal import Decimal

import pandas as pd
import psycopg2.extensions

from hub.inventory import SnapshotPolicy, ingest_snapshot, normalize_snapshot_frame
from hub.inventory.validate import ParseProblem
from tests.inventory.conftest import MATERIALS, WAREHOUSES, InvStore

SOURCE = "erp_drop"
LENIENT = SnapshotPolicy(max_reject_share=0.9)


def snap(rows: list[tuple[object, ...]], *, first_line: int = 2) -> pd.DataFrame:
    """(material, warehouse, lot, on_hand, reserved) tuples as a snapshot frame; lines from 2."""
    frame = pd.DataFrame(rows, columns=["material_code", "warehouse_code", "lot", "on_hand", "reserved"])
    frame["source_line"] = range(first_line, first_line + len(rows))
    return normalize_snapshot_frame(frame)


def base_rows() -> list[tuple[object, ...]]:
    return [
        ("1.01.001", "WH01", "", 100, 10),
        ("1.01.001", "WH02", "L1", 50, 0),
        ("1.01.002", "WH01", "", 30, 5),
        ("1.01.003", "WH02", "", 7.5, 0),
    ]


def ingest(store: InvStore, frame: pd.DataFrame, **kwargs: object):  # type: ignore[no-untyped-def]
    kwargs.setdefault("known_materials", MATERIALS)
    kwargs.setdefault("known_warehouses", WAREHOUSES)
    kwargs.setdefault("origin", "inventory/INV_1.csv")
    return ingest_snapshot(store.engine, source=SOURCE, frame=frame, **kwargs)  # type: ignore[arg-type]


def test_snapshot_loaded_in_force_with_exact_quantities(inv_store: InvStore) -> None:
    outcome = ingest(inv_store, snap(base_rows()))
    assert outcome.status == "in_force" and not outcome.refused
    assert (outcome.rows_read, outcome.rows_loaded, outcome.rows_rejected) == (4, 4, 0)
    assert inv_store.snapshots(SOURCE) == [(outcome.snapshot_id, "in_force")]
    stored = inv_store.positions(outcome.snapshot_id)
    assert list(stored["material_code"]) == ["1.01.001", "1.01.001", "1.01.002", "1.01.003"]
    assert [Decimal(str(v)).normalize() for v in stored["on_hand"]] == [
        Decimal(x) for x in ("1E+2", "5E+1", "3E+1", "7.5")
    ]
    assert list(stored["lot"]) == ["", "L1", "", ""]
    assert (
        inv_store.scalar("SELECT row_count FROM inventory_snapshots WHERE id = :i", i=outcome.snapshot_id)
        == 4
    )


def test_new_snapshot_supersedes_and_diff_reports_disappeared_positions(inv_store: InvStore) -> None:
    first = ingest(inv_store, snap(base_rows()))
    rows = base_rows()
    rows.remove(("1.01.001", "WH02", "L1", 50, 0))  # disappeared
    rows[1] = ("1.01.002", "WH01", "", 25, 5)  # changed
    rows.append(("2.02.001", "WH01", "", 1, 0))  # appeared
    second = ingest(inv_store, snap(rows), policy=SnapshotPolicy(max_shrink=0.9))
    assert inv_store.snapshots(SOURCE) == [
        (first.snapshot_id, "superseded"),
        (second.snapshot_id, "in_force"),
    ]
    assert second.previous_id == first.snapshot_id
    diff = second.diff
    assert diff is not None
    assert (diff.disappeared_count, diff.appeared_count, diff.changed_count) == (1, 1, 1)
    gone = diff.disappeared.iloc[0]
    assert (gone["material_code"], gone["warehouse_code"], gone["lot"]) == ("1.01.001", "WH02", "L1")
    assert float(gone["on_hand"]) == 50
    assert diff.appeared.iloc[0]["material_code"] == "2.02.001"
    changed = diff.changed.iloc[0]
    assert (float(changed["old_on_hand"]), float(changed["new_on_hand"])) == (30, 25)


def test_unchanged_snapshot_diff_is_empty(inv_store: InvStore) -> None:
    ingest(inv_store, snap(base_rows()))
    again = ingest(inv_store, snap(base_rows()))
    assert again.diff is not None and again.diff.unchanged


def test_shrunken_snapshot_refused_and_previous_kept(inv_store: InvStore) -> None:
    rows = [(MATERIALS[i % 4], WAREHOUSES[i % 2], f"L{i}", i, 0) for i in range(20)]
    first = ingest(inv_store, snap(rows))
    shrunk = ingest(inv_store, snap(rows[:8]), policy=SnapshotPolicy(max_shrink=0.5))
    assert shrunk.refused
    assert "shrank from 20 to 8 rows" in (shrunk.refused_reason or "")
    assert inv_store.snapshots(SOURCE) == [(first.snapshot_id, "in_force"), (shrunk.snapshot_id, "refused")]
    reason = inv_store.scalar(
        "SELECT refused_reason FROM inventory_snapshots WHERE id = :i", i=shrunk.snapshot_id
    )
    assert "shrank" in str(reason)
    assert (
        inv_store.scalar(
            "SELECT count(*) FROM inventory_positions WHERE snapshot_id = :i", i=shrunk.snapshot_id
        )
        == 0
    )
    assert len(inv_store.positions(first.snapshot_id)) == 20
    # Within the limit it loads.
    fine = ingest(inv_store, snap(rows[:11]), policy=SnapshotPolicy(max_shrink=0.5))
    assert fine.status == "in_force"


def test_truncated_snapshot_refused_and_previous_kept(inv_store: InvStore) -> None:
    first = ingest(inv_store, snap(base_rows()))
    cut = ingest(inv_store, snap(base_rows()[:3] + [("1.01.003", "WH01", "", 1, 0)]), expected_rows=6)
    assert cut.refused and "truncated" in (cut.refused_reason or "")
    empty = ingest(inv_store, snap([]))
    assert empty.refused and "empty" in (empty.refused_reason or "")
    assert inv_store.snapshots(SOURCE) == [
        (first.snapshot_id, "in_force"),
        (cut.snapshot_id, "refused"),
        (empty.snapshot_id, "refused"),
    ]


def test_malformed_rows_quarantined_with_row_numbers_rest_loaded(inv_store: InvStore) -> None:
    rows = [
        ("1.01.001", "WH01", "", 100, 0),  # line 2
        ("1.01.002", "WH01", "", -3, 0),  # line 3: negative
        ("9.99.999", "WH01", "", 4, 0),  # line 4: unknown material
        ("1.01.003", "WH99", "", 4, 0),  # line 5: unknown warehouse
        ("1.01.003", "WH01", "", None, 0),  # line 6: missing quantity
        ("1.01.003", "WH02", "", 9, "x"),  # line 7: text in a number
        ("2.02.001", "WH02", "", 1, 0),  # line 8
    ]
    parse = [
        ParseProblem(
            line=9, column="on_hand", value="1,2,3", reason="value in column 库存数量 is not a number"
        )
    ]
    outcome = ingest(inv_store, snap(rows), parse_problems=parse, policy=LENIENT)
    assert outcome.status == "in_force"
    assert (outcome.rows_read, outcome.rows_loaded, outcome.rows_rejected) == (8, 2, 6)
    assert sorted(inv_store.positions(outcome.snapshot_id)["material_code"]) == ["1.01.001", "2.02.001"]
    quarantined = {
        r.source_ref: json.loads(r.reasons) if isinstance(r.reasons, str) else r.reasons
        for r in inv_store.rows(
            "SELECT source_ref, reasons FROM quarantine WHERE stream = :s", s=f"{SOURCE}.inventory"
        )
    }
    assert sorted(quarantined) == [f"inventory/INV_1.csv:{n}" for n in (3, 4, 5, 6, 7, 9)]
    assert quarantined["inventory/INV_1.csv:3"][0]["reason"] == "on_hand is negative"
    assert quarantined["inventory/INV_1.csv:4"][0]["value"] == "9.99.999"
    assert "unknown warehouse" in quarantined["inventory/INV_1.csv:5"][0]["reason"]
    assert "on_hand" in quarantined["inventory/INV_1.csv:6"][0]["reason"]
    assert "reserved" in quarantined["inventory/INV_1.csv:7"][0]["reason"]
    assert quarantined["inventory/INV_1.csv:9"][0]["rule"] == "parse"
    assert all(r["snapshot_id"] == outcome.snapshot_id for rs in quarantined.values() for r in rs)
    assert (
        inv_store.scalar(
            "SELECT rejected_count FROM inventory_snapshots WHERE id = :i", i=outcome.snapshot_id
        )
        == 6
    )


def test_quantities_stored_to_four_places_whole_or_not(inv_store: InvStore) -> None:
    # All whole (written to COPY as integers), then fractions rounded to the store's 4 places, and a
    # whole number too large for a float to hold as an exact integer.
    whole = ingest(inv_store, snap([("1.01.001", "WH01", "", 100, 0), ("1.01.002", "WH01", "", 12345678, 3)]))
    assert [Decimal(str(v)) for v in inv_store.positions(whole.snapshot_id)["on_hand"]] == [100, 12345678]
    rows = [
        ("1.01.001", "WH01", "", 1.23456, 0.5),
        ("1.01.002", "WH01", "", 99_999_999_999_999.9, 0),  # the largest the store holds, about
        ("1.01.003", "WH01", "", 2.0**60, 0),  # line 4: more than Numeric(18, 4) holds
        ("1.01.003", "WH02", "", 1, float("inf")),  # line 5: infinite
    ]
    frac = ingest(inv_store, snap(rows), policy=LENIENT)
    assert (frac.status, frac.rows_loaded, frac.rows_rejected) == ("in_force", 2, 2)
    stored = inv_store.positions(frac.snapshot_id)
    assert [Decimal(str(v)) for v in stored["reserved"]] == [Decimal("0.5"), 0]
    on_hand = [Decimal(str(v)) for v in stored["on_hand"]]
    assert on_hand[0] == Decimal("1.2346") and abs(on_hand[1] - Decimal("99999999999999.9")) < 1
    reasons = {
        r.source_ref: json.loads(r.reasons) if isinstance(r.reasons, str) else r.reasons
        for r in inv_store.rows(
            "SELECT source_ref, reasons FROM quarantine WHERE stream = :s", s=f"{SOURCE}.inventory"
        )
    }
    assert sorted(reasons) == ["inventory/INV_1.csv:4", "inventory/INV_1.csv:5"]
    assert all("too large for the store" in r[0]["reason"] for r in reasons.values())


def test_duplicate_positions_held_back_every_copy(inv_store: InvStore) -> None:
    rows = base_rows() + [("1.01.001", "WH02", "L1", 55, 0)]  # same key as line 3, on line 6
    outcome = ingest(inv_store, snap(rows), policy=LENIENT)
    assert (outcome.rows_loaded, outcome.rows_rejected) == (3, 2)
    refs = sorted(r.source_ref for r in inv_store.rows("SELECT source_ref FROM quarantine"))
    assert refs == ["inventory/INV_1.csv:3", "inventory/INV_1.csv:6"]
    stored = inv_store.positions(outcome.snapshot_id)
    assert not ((stored["warehouse_code"] == "WH02") & (stored["lot"] == "L1")).any()


def test_too_many_rejects_refuse_the_whole_snapshot(inv_store: InvStore) -> None:
    first = ingest(inv_store, snap(base_rows()))
    rows = [(MATERIALS[i % 4], WAREHOUSES[i % 2], f"L{i}", i, 0) for i in range(198)]
    rows += [("1.01.001", "WH01", "BAD1", -1, 0), ("1.01.001", "WH01", "BAD2", -2, 0)]
    at_limit = ingest(inv_store, snap(rows))  # 2 of 200 = 1.0%: allowed
    assert at_limit.status == "in_force" and at_limit.rows_rejected == 2
    rows.append(("1.01.001", "WH01", "BAD3", -3, 0))  # 3 of 201 > 1%
    over = ingest(inv_store, snap(rows))
    assert over.refused and "3 of 201 rows rejected" in (over.refused_reason or "")
    assert inv_store.snapshots(SOURCE) == [
        (first.snapshot_id, "superseded"),
        (at_limit.snapshot_id, "in_force"),
        (over.snapshot_id, "refused"),
    ]


class CountingCursor(psycopg2.extensions.cursor):
    """Counts every statement psycopg2 sends (execute, executemany, copy) on this connection."""

    calls: list[str] = []

    def execute(self, query, vars=None):  # type: ignore[no-untyped-def]  # noqa: A002
        CountingCursor.calls.append("execute")
        return super().execute(query, vars)

    def executemany(self, query, vars_list):  # type: ignore[no-untyped-def]
        CountingCursor.calls.append("executemany")
        return super().executemany(query, vars_list)

    def copy_expert(self, sql, file, size=8192):  # type: ignore[no-untyped-def]
        CountingCursor.calls.append("copy")
        return super().copy_expert(sql, file, size)


def test_postgres_load_uses_copy_with_constant_statements(pg_store: InvStore) -> None:
    from crm_core.db import make_engine

    engine = make_engine(pg_store.url, connect_args={"cursor_factory": CountingCursor})
    counts = {}
    try:
        with (
            engine.connect() as conn
        ):  # open the pooled connection first: its setup queries are not the load's
            conn.exec_driver_sql("SELECT 1")
        for rows in (10, 5000):
            frame = snap([(MATERIALS[i % 4], WAREHOUSES[i % 2], f"L{i}", i, 0) for i in range(rows)])
            CountingCursor.calls = []
            outcome = ingest_snapshot(engine, source=f"src{rows}", frame=frame, origin="x.csv")
            assert outcome.rows_loaded == rows
            assert len(pg_store.positions(outcome.snapshot_id)) == rows
            counts[rows] = list(CountingCursor.calls)
    finally:
        engine.dispose()
    assert counts[10] == counts[5000]  # O(1): the same statements whatever the number of rows
    assert counts[5000].count("copy") == 1
    assert "executemany" not in counts[5000]
    # header, lock, in force, the snapshot's table, COPY, key (memory, savepoint, index, release: 4),
    # attach + statistics (3), activation (2), processed-file registry, transaction control: a fixed
    # handful.
    assert len(counts[5000]) <= 18, counts[5000]
