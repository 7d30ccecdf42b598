# ruff: noqa: F811  (the sshd / store fixtures are imported by name and used as test arguments)
"""Fault matrix cases 9-13 (PERF-RELIABILITY §B.4) on the SFTP inventory side, each ending with the
snapshot ledger check (:func:`hub.inventory.ledger.check_snapshot`): 0 lost, 0 duplicated, 0 phantom,
0 stale, every rejected row quarantined with its line.

A real OpenSSH sshd on loopback (``tests/support/sshd.py``), the store on SQLite and on the real
PostgreSQL (``HUB_TEST_PG_URL``), files in the shipped ``erp_sftp_csv`` template's dialect (GB18030,
Chinese headers). Case 9 puts ``tests/support/tcp_proxy.py`` between the client and sshd.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.filedrop import HostKeyVerificationError, SftpDropClient
from crm_core import positions
from hub.config import load_template
from hub.errors import TransientError
from hub.inventory.ledger import SnapshotLedgerReport, check_snapshot
from hub.inventory.pull import PullReport, pull_sftp
from hub.inventory.snapshot import ingest_snapshot
from hub.inventory.sources import csv_dialect
from tests.connectors.filedrop.conftest import downloads, drop, put_file, sshd  # noqa: F401 - fixtures
from tests.inventory.conftest import MATERIALS, WAREHOUSES, InvStore, inv_store  # noqa: F401 - fixtures
from tests.support.tcp_proxy import TcpProxy

pytestmark = [
    pytest.mark.sshd,
    # A connection reset must not leave a traceback of a dying download thread behind.
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
]

SOURCE = "drop_faults"
DIALECT = csv_dialect(load_template("erp_sftp_csv").model.streams.inventory, where="erp_sftp_csv")  # type: ignore[union-attr]
COLUMNS = ["物料编码", "物料名称", "仓库编码", "批号", "单位", "库存数量", "预留数量", "统计时间"]
PutFile = Callable[..., Path]
# Malformed values of case 12, by kind: (column, text)
BAD = {
    "date": ("统计时间", "2025-02-30 08:00:00"),
    "negative": ("库存数量", "-3"),
    "text": ("库存数量", "12箱"),
}


def inventory_csv(
    rows: int,
    *,
    version: int = 1,
    bad: dict[int, str] | None = None,
    columns: list[str] | None = None,
    extra: dict[str, str] | None = None,
) -> bytes:
    """``rows`` data lines (line = row + 1); quantities depend on ``version``; ``bad`` maps a row to a
    kind of :data:`BAD`; ``columns`` reorders/renames the header (a missing name drops the column);
    ``extra`` adds columns with a constant value."""
    header = list(columns or COLUMNS) + list(extra or {})
    lines = [",".join(header) + "\n"]
    for i in range(1, rows + 1):
        values = {
            "物料编码": MATERIALS[i % 4],
            "物料名称": "螺栓",
            "仓库编码": WAREHOUSES[i % 2],
            "批号": f"L{i:06d}",
            "单位": "PCS",
            "库存数量": f"{(i * 7 + version * 13) % 900 + 1}.25",
            "预留数量": str((i + version) % 5),
            "统计时间": f"2025-06-{version % 28 + 1:02d} 08:00:00",
            **(extra or {}),
        }
        kind = (bad or {}).get(i)
        if kind is not None:
            column, text = BAD[kind]
            values[column] = text
        lines.append(",".join(values.get(h, values.get(_renamed_from(h), "")) for h in header) + "\n")
    return "".join(lines).encode("gb18030")


def _renamed_from(header: str) -> str:
    return {"库存量": "库存数量"}.get(header, header)


def spread(rows: int, count: int, kinds: tuple[str, ...] = tuple(BAD)) -> dict[int, str]:
    """``count`` bad rows spread evenly over ``rows``, cycling through ``kinds``."""
    step = rows // count
    return {step * k + 1: kinds[k % len(kinds)] for k in range(count)}


def keep(tmp_path: Path, name: str, content: bytes) -> Path:
    """A local copy of what was dropped: the source file the ledger check compares with."""
    path = tmp_path / "sent" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def pull(store: InvStore, sshd, drop: Path, downloads: Path, **over: Any) -> PullReport:  # type: ignore[no-untyped-def]
    dialect = over.pop("dialect", DIALECT)
    over.setdefault("pattern", "inventory/INV_*.csv")
    with SftpDropClient(sshd.settings(drop, downloads, **over), sleep=lambda _s: None) as client:
        return pull_sftp(store.engine, client, dialect, source=SOURCE)


def ledger(store: InvStore, path: Path, **kwargs: Any) -> SnapshotLedgerReport:
    """The ledger check; asserts exactly once and every rejected row accounted for."""
    kwargs.setdefault("dialect", DIALECT)
    report = check_snapshot(store.engine, SOURCE, path=path, **kwargs)
    assert report.ok, report.summary()
    assert (report.lost, report.duplicated, report.phantom, report.stale) == (0, 0, 0, 0)
    return report


def server_files(drop: Path) -> list[str]:
    return sorted(str(p.relative_to(drop)) for p in drop.rglob("*") if p.is_file())


def local_files(downloads: Path) -> list[Path]:
    return [p for p in downloads.rglob("*") if p.is_file()] if downloads.exists() else []


def registered(store: InvStore) -> list[tuple[str, str]]:
    return [
        (str(r.path), str(r.status))
        for r in store.rows("SELECT path, status FROM processed_files ORDER BY id")
    ]


def first_snapshot(store: InvStore, sshd, drop: Path, downloads: Path, put_file: PutFile, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Load v1 (300 rows) cleanly: the snapshot every fault must leave in force."""
    content = inventory_csv(300, version=1)
    put_file(drop, "inventory/INV_1.csv", content, done=True)
    [loaded] = pull(store, sshd, drop, downloads).loaded
    v1 = keep(tmp_path, "INV_1.csv", content)
    assert ledger(store, v1, snapshot_id=loaded.snapshot_id).accepted == 300
    return loaded, v1


# ------------------------------------------------------------------------------------------- case 9


def test_case09_sftp_reset_mid_file_partial_never_promoted(
    inv_store: InvStore,
    sshd,
    drop,
    downloads,
    put_file: PutFile,
    tmp_path: Path,
) -> None:
    first, v1 = first_snapshot(inv_store, sshd, drop, downloads, put_file, tmp_path)
    content = inventory_csv(60_000, version=2)  # ~3.5 MB: the reset lands mid-transfer
    assert len(content) > 3_000_000
    put_file(drop, "inventory/INV_2.csv", content, done=True)
    with TcpProxy(sshd.host, sshd.port) as proxy:
        over = {"port": proxy.port, "known_hosts_line": sshd.known_hosts_line(port=proxy.port)}
        # Reset at 50% on every connection: every attempt fails, nothing is promoted or registered.
        proxy.set_faults(reset_after_bytes=len(content) // 2)
        with pytest.raises(TransientError):
            pull(inv_store, sshd, drop, downloads, **over)
        assert proxy.resets >= 2  # the first attempt and its retries were all cut
        assert not local_files(downloads)  # no partial file anywhere
        assert server_files(drop)[-2:] == ["inventory/INV_2.csv", "inventory/INV_2.csv.done"]
        assert registered(inv_store) == [("inventory/INV_1.csv", "loaded")]
        ledger(inv_store, v1, snapshot_id=first.snapshot_id)  # v1 still in force, unchanged
        # Reset once at 50%: the retry downloads from scratch and loads the whole file once.
        resets = proxy.resets
        proxy.set_faults(reset_after_bytes=len(content) // 2, once=True)
        [loaded] = pull(inv_store, sshd, drop, downloads, **over).loaded
        assert proxy.resets == resets + 1
    assert (loaded.rows_read, loaded.rows_loaded, loaded.rows_rejected) == (60_000, 60_000, 0)
    archived = drop / "archive/inventory/INV_2.csv"
    assert archived.read_bytes() == content
    # Compared with the server's own archived file; the snapshot's checksum must be that file's.
    report = ledger(inv_store, archived, snapshot_id=loaded.snapshot_id)
    assert (report.accepted, report.stored, report.registrations) == (60_000, 60_000, 1)
    # Dropped again: recognised by its content, not processed a second time.
    snapshots = inv_store.snapshots(SOURCE)
    put_file(drop, "inventory/INV_2.csv", content, done=True)
    assert [f.status for f in pull(inv_store, sshd, drop, downloads).files] == ["duplicate"]
    assert inv_store.snapshots(SOURCE) == snapshots
    assert len(registered(inv_store)) == 2
    assert not local_files(downloads)


# ------------------------------------------------------------------------------------------ case 10


def test_case10_truncated_or_still_written_file_keeps_previous(
    inv_store: InvStore,
    sshd,
    drop,
    downloads,
    put_file: PutFile,
    tmp_path: Path,
) -> None:
    first, v1 = first_snapshot(inv_store, sshd, drop, downloads, put_file, tmp_path)
    # A file still being written (half of it, cut mid-line, no done marker yet) is left alone.
    content = inventory_csv(400, version=2)
    half = content[: len(content) // 2 + 7]
    assert not half.endswith(b"\n")
    put_file(drop, "inventory/INV_2.csv", half)
    report = pull(inv_store, sshd, drop, downloads)
    assert [(f.path, f.status) for f in report.files] == [("inventory/INV_2.csv", "waiting")]
    ledger(inv_store, v1, snapshot_id=first.snapshot_id)
    # The writer finishes and drops the marker: the whole file is loaded.
    put_file(drop, "inventory/INV_2.csv", content, done=True)
    [second] = pull(inv_store, sshd, drop, downloads).loaded
    v2 = keep(tmp_path, "INV_2.csv", content)
    assert ledger(inv_store, v2, snapshot_id=second.snapshot_id).accepted == 400
    # Cut mid-line although the done marker exists (writer crashed, limit_data): refused whole.
    put_file(drop, "inventory/INV_3.csv", inventory_csv(400, version=3)[:-9], done=True)
    [cut] = pull(inv_store, sshd, drop, downloads).refused
    assert "no line ending" in (cut.refused_reason or "")
    # Whole lines, but fewer than the manifest promises: refused whole.
    put_file(drop, "inventory/INV_4.csv", inventory_csv(350, version=4), manifest_rows=400)
    [short] = pull(inv_store, sshd, drop, downloads, completeness="manifest").refused
    assert "promises 400 data rows but the file holds 350" in (short.refused_reason or "")
    ledger(inv_store, v2, snapshot_id=second.snapshot_id, refused_ids=[cut.snapshot_id, short.snapshot_id])
    assert [s for _, s in inv_store.snapshots(SOURCE)] == ["superseded", "in_force", "refused", "refused"]
    assert {"failed/inventory/INV_3.csv", "failed/inventory/INV_4.csv"} <= set(server_files(drop))


# ------------------------------------------------------------------------------------------ case 11


def test_case11_unknown_or_changed_host_key_refused_before_auth(
    inv_store: InvStore,
    sshd,
    drop,
    downloads,
    put_file: PutFile,
    tmp_path: Path,
) -> None:
    first, v1 = first_snapshot(inv_store, sshd, drop, downloads, put_file, tmp_path)
    content = inventory_csv(300, version=2)
    put_file(drop, "inventory/INV_2.csv", content, done=True)
    wrong = [
        {"known_hosts_line": sshd.known_hosts_line(key=sshd.other_public_key)},  # changed key
        {"known_hosts_line": None, "host_key_fingerprint": _fingerprint(sshd.other_public_key)},  # unknown
    ]
    for pin in wrong:
        offset = sshd.log_size()
        with pytest.raises(HostKeyVerificationError, match="host key verification failed") as caught:
            pull(inv_store, sshd, drop, downloads, **pin, private_key_path=None, password="Sentinel-Pw-9c1f")
        assert sshd.fingerprint in str(caught.value)  # names the key the server presented
        assert "Sentinel-Pw-9c1f" not in str(caught.value)
        log = _session_log(sshd, offset)
        assert "KEX done" in log and "userauth-request" not in log, log
    assert server_files(drop)[-2:] == ["inventory/INV_2.csv", "inventory/INV_2.csv.done"]  # untouched
    ledger(inv_store, v1, snapshot_id=first.snapshot_id)
    assert len(inv_store.snapshots(SOURCE)) == 1
    # With the right key the file is loaded exactly once.
    [second] = pull(inv_store, sshd, drop, downloads).loaded
    ledger(inv_store, keep(tmp_path, "INV_2.csv", content), snapshot_id=second.snapshot_id)


def _session_log(sshd, offset: int, timeout: float = 10.0) -> str:  # type: ignore[no-untyped-def]
    """sshd's log of the connection that started after ``offset``, once it has ended (sshd logs
    ``do_cleanup`` when a connection ends, ``KEX done`` after key exchange)."""
    deadline = time.monotonic() + timeout
    text = sshd.log_since(offset)
    while time.monotonic() < deadline and "do_cleanup" not in text.partition("KEX done")[2]:
        time.sleep(0.05)
        text = sshd.log_since(offset)
    return text


def _fingerprint(key) -> str:  # type: ignore[no-untyped-def]
    from connectors.filedrop.settings import key_fingerprint

    return key_fingerprint(key.asbytes())


# ------------------------------------------------------------------------------------------ case 12


def test_case12_malformed_rows_quarantined_and_over_one_percent_refused(
    inv_store: InvStore,
    sshd,
    drop,
    downloads,
    put_file: PutFile,
    tmp_path: Path,
) -> None:
    rows = 3_000
    # 0.1%: one bad date, one negative quantity, one text in a number -> loaded, 3 rows quarantined.
    few = spread(rows, 3)
    content = inventory_csv(rows, version=1, bad=few)
    put_file(drop, "inventory/INV_1.csv", content, done=True)
    [loaded] = pull(inv_store, sshd, drop, downloads).loaded
    assert (loaded.rows_read, loaded.rows_loaded, loaded.rows_rejected) == (rows, rows - 3, 3)
    v1 = keep(tmp_path, "INV_1.csv", content)
    report = ledger(inv_store, v1, snapshot_id=loaded.snapshot_id)
    lines = sorted(row + 1 for row in few)  # the header is line 1
    assert report.rejected_lines == report.quarantined_lines == lines
    assert (report.rows_read, report.accepted, report.rejected) == (rows, rows - 3, 3)
    reasons = {
        str(r.source_ref): str(r.reasons)
        for r in inv_store.rows(
            "SELECT source_ref, reasons FROM quarantine WHERE stream = :s", s=f"{SOURCE}.inventory"
        )
    }
    assert set(reasons) == {f"inventory/INV_1.csv:{line}" for line in lines}
    assert sum("does not match the datetime format" in r for r in reasons.values()) == 1
    assert sum("on_hand is negative" in r for r in reasons.values()) == 1
    assert sum("is not a number" in r for r in reasons.values()) == 1
    # 2% -> the snapshot is refused whole; the previous one stays in force, unchanged.
    many = spread(rows, 60)
    refused_content = inventory_csv(rows, version=2, bad=many)
    put_file(drop, "inventory/INV_2.csv", refused_content, done=True)
    [refused] = pull(inv_store, sshd, drop, downloads).refused
    assert "60 of 3000 rows rejected (2.00%" in (refused.refused_reason or "")
    ledger(inv_store, v1, snapshot_id=loaded.snapshot_id, refused_ids=[refused.snapshot_id])
    # The refused snapshot holds no position, and its quarantine accounts for its 60 rows.
    v2 = keep(tmp_path, "INV_2.csv", refused_content)
    refused_report = ledger(inv_store, v2, snapshot_id=refused.snapshot_id, expect="refused")
    assert refused_report.quarantined_lines == sorted(row + 1 for row in many)
    assert "failed/inventory/INV_2.csv" in server_files(drop)


# ------------------------------------------------------------------------------------------ case 13


def test_case13_schema_drift_fails_fast_nothing_applied(
    inv_store: InvStore,
    sshd,
    drop,
    downloads,
    put_file: PutFile,
    tmp_path: Path,
) -> None:
    first, v1 = first_snapshot(inv_store, sshd, drop, downloads, put_file, tmp_path)
    drifted = {
        "INV_2.csv": (inventory_csv(300, version=2, extra={"库位": "A-01"}), "unexpected ['库位']"),
        "INV_3.csv": (
            inventory_csv(300, version=3, columns=[h for h in COLUMNS if h != "预留数量"]),
            "missing ['预留数量']",
        ),
        "INV_4.csv": (
            inventory_csv(300, version=4, columns=["库存量" if h == "库存数量" else h for h in COLUMNS]),
            "missing ['库存数量']; unexpected ['库存量'] (a renamed column",
        ),
    }
    for name, (content, _) in drifted.items():
        put_file(drop, f"inventory/{name}", content, done=True)
    report = pull(inv_store, sshd, drop, downloads)
    results = {f.path: f for f in report.files}
    assert sorted(results) == [f"inventory/{name}" for name in drifted]
    for name, (_, diff) in drifted.items():
        result = results[f"inventory/{name}"]
        assert result.status == "refused", result
        assert diff in result.message and "nothing from this file was loaded" in result.message
    refused_ids = [o.snapshot_id for o in report.refused]
    ledger(inv_store, v1, snapshot_id=first.snapshot_id, refused_ids=refused_ids)
    assert inv_store.scalar("SELECT count(*) FROM quarantine") == 0
    # The tolerant mode ignores an added column only.
    tolerant = dataclasses.replace(DIALECT, tolerate_added_columns=True)
    content = inventory_csv(300, version=5, extra={"库位": "A-01"})
    put_file(drop, "inventory/INV_5.csv", content, done=True)
    [loaded] = pull(inv_store, sshd, drop, downloads, dialect=tolerant).loaded
    ledger(inv_store, keep(tmp_path, "INV_5.csv", content), snapshot_id=loaded.snapshot_id, dialect=tolerant)


# ---------------------------------------------------------------------------------- the checker itself


def test_check_snapshot_sees_each_kind_of_damage(inv_store: InvStore, tmp_path: Path) -> None:
    """Without this, a ledger check that always says "ok" would pass every case above."""
    from connectors.filedrop import read_csv_bytes
    from hub.inventory.pull import snapshot_frame_from_csv

    content = inventory_csv(200, version=1, bad={5: "negative", 9: "text"})
    path = keep(tmp_path, "INV_1.csv", content)
    parsed = read_csv_bytes(content, DIALECT, name="INV_1.csv")
    outcome = ingest_snapshot(
        inv_store.engine, source=SOURCE, frame=snapshot_frame_from_csv(parsed.frame, "INV_1.csv"),
        origin="INV_1.csv", parse_problems=parsed.problems, rows_read=parsed.rows_read,
    )  # fmt: skip
    sid = outcome.snapshot_id

    def check(**kw: Any) -> SnapshotLedgerReport:
        return check_snapshot(inv_store.engine, SOURCE, path=path, dialect=DIALECT, snapshot_id=sid, **kw)

    clean = check()
    assert clean.ok, clean.summary()
    assert (clean.rows_read, clean.accepted, clean.rejected, clean.stored) == (200, 198, 2, 198)
    with inv_store.engine.begin() as conn:
        key = conn.execute(
            sa.text("SELECT material_code, warehouse_code, lot FROM inventory_positions LIMIT 2")
        ).all()
        conn.execute(sa.text("DELETE FROM inventory_positions WHERE lot = :l"), {"l": key[0].lot})  # lost
        conn.execute(
            sa.text("UPDATE inventory_positions SET on_hand = on_hand + 1 WHERE lot = :l"), {"l": key[1].lot}
        )
        conn.execute(
            sa.text(
                "INSERT INTO inventory_positions (snapshot_id, material_code, warehouse_code, lot, on_hand, "
                "reserved) VALUES (:s, 'X.99', 'WH01', 'L000005', 1, 0)"  # phantom (and a held-back line's lot)
            ),
            {"s": sid},
        )
    damaged = check()
    assert (damaged.lost, damaged.stale, damaged.phantom, damaged.duplicated) == (1, 1, 1, 0), (
        damaged.summary()
    )
    assert damaged.problems == []  # 198 - 1 + 1 stored: the header's row count still agrees
    # A second snapshot of the same source in force: every key duplicated.
    with inv_store.engine.begin() as conn:
        other = conn.execute(
            sa.text(
                "INSERT INTO inventory_snapshots (source, taken_at, status, row_count, rejected_count, created_at)"
                " VALUES (:src, CURRENT_TIMESTAMP, 'in_force', 198, 0, CURRENT_TIMESTAMP) RETURNING id"
            ),
            {"src": SOURCE},
        ).scalar_one()
        positions.create_attached(conn, other)  # on PostgreSQL a snapshot's rows need its partition
        conn.execute(
            sa.text(
                "INSERT INTO inventory_positions (snapshot_id, material_code, warehouse_code, lot, on_hand, "
                "reserved) SELECT :o, material_code, warehouse_code, lot, on_hand, reserved "
                "FROM inventory_positions WHERE snapshot_id = :s"
            ),
            {"o": other, "s": sid},
        )
        conn.execute(sa.text("DELETE FROM quarantine WHERE source_ref = 'INV_1.csv:6'"))  # unaccounted
    twice = check()
    assert twice.duplicated == 198 and not twice.ok
    assert any("in force" in p for p in twice.problems), twice.problems
    assert twice.unaccounted == 1 and twice.examples["unaccounted"][0].startswith("line 6")
    # A refused snapshot that kept positions is phantom.
    assert (
        check_snapshot(
            inv_store.engine, SOURCE, path=path, dialect=DIALECT, snapshot_id=other, refused_ids=[sid]
        ).phantom
        >= 198
    )
