"""The pipelined SFTP load (PostgreSQL): a file read in many small blocks, each COPYed while the next is
parsed, gives exactly what the one-frame load gives, and every whole-file refusal still rolls it all back.

Real sshd on loopback and real PostgreSQL (fixtures of tests/inventory/test_pull_sftp.py).
"""

from __future__ import annotations

import json
import logging

import pytest

from connectors.filedrop import SftpDropClient, read_csv_bytes
from hub.errors import TransientError
from hub.inventory.pull import Catalog, pull_sftp, snapshot_frame_from_csv
from hub.inventory.validate import SnapshotPolicy, validate_snapshot
from tests.inventory.conftest import MATERIALS, WAREHOUSES, InvStore
from tests.inventory.test_pull_sftp import DIALECT, HEADER, SOURCE, PutFile, server_files, settings
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.sshd


def rows_bytes(rows: int, *, lots: dict[int, str] | None = None, qty: dict[int, str] | None = None) -> bytes:
    """``rows`` data lines (data row i is on line i + 1); ``lots``/``qty`` override a row's lot/on-hand."""
    lines = [HEADER]
    for i in range(1, rows + 1):
        lot = (lots or {}).get(i, f"L{i:05d}")
        on_hand = (qty or {}).get(i, f"{i % 90 + 1}.5")
        lines.append(
            f"{MATERIALS[i % 4]},螺栓,{WAREHOUSES[i % 2]},{lot},PCS,{on_hand},1,2025-06-09 08:00:00\n"
        )
    return "".join(lines).encode("gb18030")


def pull(pg_store: InvStore, sshd, drop, downloads, *, policy=None, **over):  # type: ignore[no-untyped-def]
    with SftpDropClient(settings(sshd, drop, downloads, **over), sleep=lambda _s: None) as client:
        return pull_sftp(
            pg_store.engine, client, DIALECT, source=SOURCE, policy=policy,
            catalog=Catalog.from_store(pg_store.engine), block_bytes=1,
        )  # fmt: skip


def positions(pg_store: InvStore, snapshot_id: int) -> list[tuple[str, str, str, float, float]]:
    frame = pg_store.positions(snapshot_id)
    return [(m, w, lot, float(a), float(b)) for m, w, lot, a, b in frame.itertuples(index=False)]


def test_blocks_load_exactly_what_the_whole_file_validates_to(
    pg_store: InvStore, sshd, drop, downloads, put_file: PutFile
) -> None:
    # Row 3's key again on row 391 (far apart: different blocks), rows 100/104 the same key (near),
    # a negative and an unparsable quantity, an unknown material.
    content = rows_bytes(400, lots={391: "L00003", 104: "L00100"}, qty={7: "-2", 8: "x"})
    content = content.replace(b"1.01.001,", b"9.99.999,", 1)  # row 4 (MATERIALS[0]): unknown material
    put_file(drop, "inventory/INV_1.csv", content, done=True)
    report = pull(pg_store, sshd, drop, downloads, policy=SnapshotPolicy(max_reject_share=0.05))
    [loaded] = report.loaded
    assert {"download_overlapped", "parse", "validate", "payload_busy", "copy_wait", "finish"} <= set(
        loaded.stages
    )

    parsed = read_csv_bytes(content, DIALECT, name="inventory/INV_1.csv")
    expected = validate_snapshot(
        snapshot_frame_from_csv(parsed.frame, "x"),
        known_materials=MATERIALS, known_warehouses=WAREHOUSES,
        parse_problems=parsed.problems, rows_read=parsed.rows_read,
    )  # fmt: skip
    want = sorted(
        (m, w, lot, a, b)
        for m, w, lot, a, b in expected.accepted[
            ["material_code", "warehouse_code", "lot", "on_hand", "reserved"]
        ].itertuples(index=False)
    )
    assert positions(pg_store, loaded.snapshot_id) == want
    assert (loaded.rows_read, loaded.rows_loaded, loaded.rows_rejected) == (400, len(want), 7)
    assert loaded.rows_loaded == 393
    quarantined = pg_store.rows("SELECT source_ref, reasons FROM quarantine ORDER BY id")
    lines = sorted(int(r.source_ref.rsplit(":", 1)[1]) for r in quarantined)
    assert lines == [4, 5, 8, 9, 101, 105, 392]  # line = data row + 1; every copy of a duplicate
    by_line = {
        int(r.source_ref.rsplit(":", 1)[1]): (
            r.reasons if isinstance(r.reasons, list) else json.loads(r.reasons)
        )
        for r in quarantined
    }
    assert by_line[4][0]["reason"].startswith("the same (material, warehouse, lot)")
    assert by_line[392][0]["reason"].startswith("the same (material, warehouse, lot)")
    assert by_line[9][0]["rule"] == "parse"
    assert (
        pg_store.scalar("SELECT row_count FROM inventory_snapshots WHERE id = :i", i=loaded.snapshot_id)
        == 393
    )


@pytest.mark.parametrize("damage", ["shrunk", "manifest", "encoding", "rejects"])
def test_a_refusal_after_blocks_were_copied_rolls_every_block_back(
    pg_store: InvStore, sshd, drop, downloads, put_file: PutFile, damage: str
) -> None:
    put_file(drop, "inventory/INV_1.csv", rows_bytes(300), done=True)
    [first] = pull(pg_store, sshd, drop, downloads).loaded
    before = positions(pg_store, first.snapshot_id)
    over: dict[str, object] = {}
    if damage == "shrunk":
        put_file(drop, "inventory/INV_2.csv", rows_bytes(100), done=True)
    elif damage == "manifest":
        put_file(drop, "inventory/INV_2.csv", rows_bytes(250), manifest_rows=300)
        over["completeness"] = "manifest"
    elif damage == "encoding":  # an undecodable byte in the last line's lot: found only by the last block
        good = rows_bytes(300)
        cut = good.rindex(b"L00300")
        put_file(drop, "inventory/INV_2.csv", good[:cut] + b"L00\xff00" + good[cut + 6 :], done=True)
    else:
        put_file(
            drop, "inventory/INV_2.csv", rows_bytes(300, qty={i: "-1" for i in range(250, 260)}), done=True
        )
    [refused] = pull(pg_store, sshd, drop, downloads, **over).refused
    reason = refused.refused_reason or ""
    assert {"shrunk": "shrank", "manifest": "promises 300", "encoding": "line 301", "rejects": "rejected"}[
        damage
    ] in reason
    assert pg_store.snapshots(SOURCE) == [(first.snapshot_id, "in_force"), (refused.snapshot_id, "refused")]
    assert positions(pg_store, first.snapshot_id) == before
    assert pg_store.scalar("SELECT count(*) FROM inventory_positions") == 300  # nothing of the refused file
    assert "failed/inventory/INV_2.csv" in server_files(drop)


@pytest.mark.parametrize("every_attempt", [False, True])
def test_a_disconnect_after_blocks_were_copied_loads_only_the_whole_file(
    pg_store: InvStore, sshd, drop, downloads, put_file: PutFile, every_attempt: bool, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="hub.inventory.pull")
    content = rows_bytes(60_000)  # about 3.6 MB, in blocks of about 110 KB: many are COPYed before the reset
    put_file(drop, "inventory/INV_1.csv", content, done=True)
    with TcpProxy(sshd.host, sshd.port) as proxy:
        over = {"port": proxy.port, "known_hosts_line": sshd.known_hosts_line(port=proxy.port)}
        with SftpDropClient(settings(sshd, drop, downloads, **over), sleep=lambda _s: None) as client:
            remotes = client.list_complete_files()
            proxy.set_faults(reset_after_bytes=len(content) // 2, once=not every_attempt)
            client.close()
            client.list_complete_files = lambda: remotes  # type: ignore[method-assign]
            if every_attempt:
                with pytest.raises(TransientError):
                    pull_sftp(pg_store.engine, client, DIALECT, source=SOURCE, block_bytes=1)
            else:
                report = pull_sftp(pg_store.engine, client, DIALECT, source=SOURCE, block_bytes=1)
        assert proxy.resets >= 1
    if every_attempt:
        assert pg_store.snapshots(SOURCE) == []
        assert pg_store.scalar("SELECT count(*) FROM inventory_positions") == 0
        assert pg_store.scalar("SELECT count(*) FROM processed_files") == 0
        assert server_files(drop) == ["inventory/INV_1.csv", "inventory/INV_1.csv.done"]
    else:
        [loaded] = report.loaded
        assert loaded.rows_loaded == 60_000
        assert "the download started over; loading the downloaded file" in caplog.text
        assert pg_store.snapshots(SOURCE) == [(loaded.snapshot_id, "in_force")]
        assert pg_store.scalar("SELECT count(*) FROM inventory_positions") == 60_000
    assert not [p for p in downloads.rglob("*") if p.is_file()]  # no partial or leftover file
