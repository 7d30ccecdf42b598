"""SFTP inventory drops end to end: a real OpenSSH sshd on loopback, a real PostgreSQL store.

Files are written in the shipped ``erp_sftp_csv`` template's dialect (GB18030, Chinese headers) and
read through :func:`hub.inventory.sources.csv_dialect`, so the template, the connector and the store
side are exercised together.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.filedrop import HostKeyVerificationError, SftpDropClient
from hub.config import load_template
from hub.errors import ConfigError, TransientError
from hub.inventory.pull import Catalog, pull_sftp
from hub.inventory.sources import csv_dialect
from hub.inventory.validate import SnapshotPolicy
from tests.inventory.conftest import MATERIALS, WAREHOUSES, InvStore
from tests.support.tcp_proxy import TcpProxy

pytestmark = [
    pytest.mark.sshd,
    # A connection reset must not leave a traceback of a dying download thread behind.
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
]

SOURCE = "test_drop"
HEADER = "物料编码,物料名称,仓库编码,批号,单位,库存数量,预留数量,统计时间\n"
PutFile = Callable[..., Path]
DIALECT = csv_dialect(load_template("erp_sftp_csv").model.streams.inventory, where="erp_sftp_csv")  # type: ignore[union-attr]


def csv_bytes(rows: int, *, bad: dict[int, str] | None = None, cut: bool = False) -> bytes:
    """``rows`` data lines; ``bad`` maps a 1-based data row to its on-hand text (line = row + 1)."""
    lines = [HEADER]
    for i in range(1, rows + 1):
        qty = (bad or {}).get(i, f"{i % 90 + 1}.5")
        lines.append(
            f"{MATERIALS[i % 4]},螺栓,{WAREHOUSES[i % 2]},L{i:05d},PCS,{qty},1,2025-06-09 08:00:00\n"
        )
    data = "".join(lines).encode("gb18030")
    return data[:-7] if cut else data


def settings(sshd, drop: Path, downloads: Path, **overrides):  # type: ignore[no-untyped-def]
    overrides.setdefault("pattern", "inventory/INV_*.csv")
    return sshd.settings(drop, downloads, **overrides)


def pull(
    pg_store: InvStore, sshd, drop: Path, downloads: Path, *, policy: SnapshotPolicy | None = None, **over
):  # type: ignore[no-untyped-def]
    with SftpDropClient(settings(sshd, drop, downloads, **over), sleep=lambda _s: None) as client:
        return pull_sftp(
            pg_store.engine,
            client,
            DIALECT,
            source=SOURCE,
            policy=policy,
            catalog=Catalog.from_store(pg_store.engine),
        )


def server_files(drop: Path) -> list[str]:
    return sorted(str(p.relative_to(drop)) for p in drop.rglob("*") if p.is_file())


def test_complete_file_pulled_once_and_archived(
    pg_store: InvStore, sshd, drop, downloads, put_file: PutFile
) -> None:
    content = csv_bytes(300)
    put_file(drop, "inventory/INV_1.csv", content, done=True)
    report = pull(pg_store, sshd, drop, downloads)
    [loaded] = report.loaded
    assert (loaded.rows_read, loaded.rows_loaded, loaded.rows_rejected) == (300, 300, 0)
    assert pg_store.snapshots(SOURCE) == [(loaded.snapshot_id, "in_force")]
    assert server_files(drop) == ["archive/inventory/INV_1.csv", "archive/inventory/INV_1.csv.done"]
    [registered] = pg_store.rows("SELECT path, size, status, snapshot_id FROM processed_files")
    assert (registered.path, registered.size, registered.status) == (
        "inventory/INV_1.csv",
        len(content),
        "loaded",
    )
    assert not [p for p in downloads.rglob("*") if p.is_file()]  # nothing left behind locally
    # The same file dropped again is recognised by its content and not loaded twice.
    put_file(drop, "inventory/INV_1.csv", content, done=True)
    again = pull(pg_store, sshd, drop, downloads)
    assert [f.status for f in again.files] == ["duplicate"]
    assert len(pg_store.snapshots(SOURCE)) == 1
    assert pull(pg_store, sshd, drop, downloads).files == []


def test_file_still_being_written_is_left_alone(
    pg_store: InvStore, sshd, drop, downloads, put_file: PutFile
) -> None:
    put_file(drop, "inventory/INV_1.csv", csv_bytes(300, cut=True))  # no done marker yet
    report = pull(pg_store, sshd, drop, downloads)
    assert [(f.path, f.status) for f in report.files] == [("inventory/INV_1.csv", "waiting")]
    assert pg_store.snapshots(SOURCE) == []
    assert server_files(drop) == ["inventory/INV_1.csv"]
    assert pg_store.scalar("SELECT count(*) FROM processed_files") == 0


def test_wrong_host_key_refused_before_any_credential(
    pg_store: InvStore, sshd, drop, downloads, put_file: PutFile
) -> None:
    put_file(drop, "inventory/INV_1.csv", csv_bytes(300), done=True)
    offset = sshd.log_size()
    with pytest.raises(HostKeyVerificationError, match="host key verification failed"):
        pull(
            pg_store, sshd, drop, downloads,
            known_hosts_line=sshd.known_hosts_line(key=sshd.other_public_key),
            private_key_path=None, password="Sentinel-Pw-3b9e",
        )  # fmt: skip
    log = sshd.wait_for_log(offset, "Connection closed by")
    assert "KEX done" in log and "userauth-request" not in log
    assert pg_store.snapshots(SOURCE) == [] and server_files(drop) == [
        "inventory/INV_1.csv",
        "inventory/INV_1.csv.done",
    ]


def test_disconnect_mid_download_is_retried_and_only_the_whole_file_loaded(
    pg_store: InvStore, sshd, drop, downloads, put_file: PutFile
) -> None:
    content = csv_bytes(60_000)  # about 3.6 MB: the reset lands mid-transfer
    put_file(drop, "inventory/INV_1.csv", content, done=True)
    with TcpProxy(sshd.host, sshd.port) as proxy:
        over = {"port": proxy.port, "known_hosts_line": sshd.known_hosts_line(port=proxy.port)}
        with SftpDropClient(settings(sshd, drop, downloads, **over), sleep=lambda _s: None) as client:
            remotes = client.list_complete_files()
            proxy.set_faults(reset_after_bytes=len(content) // 3, once=True)  # for connections from now on
            client.close()  # so the download starts on a fresh connection, under the fault
            client.list_complete_files = lambda: remotes  # type: ignore[method-assign]  # listing done above
            report = pull_sftp(pg_store.engine, client, DIALECT, source=SOURCE)
        assert proxy.resets == 1
    [loaded] = report.loaded
    assert loaded.rows_loaded == 60_000
    assert pg_store.scalar("SELECT count(*) FROM inventory_positions") == 60_000


def test_disconnect_on_every_attempt_loads_nothing(
    pg_store: InvStore, sshd, drop, downloads, put_file: PutFile
) -> None:
    content = csv_bytes(60_000)
    put_file(drop, "inventory/INV_1.csv", content, done=True)
    with TcpProxy(sshd.host, sshd.port) as proxy:
        over = {"port": proxy.port, "known_hosts_line": sshd.known_hosts_line(port=proxy.port)}
        with SftpDropClient(settings(sshd, drop, downloads, **over), sleep=lambda _s: None) as client:
            remotes = client.list_complete_files()
            proxy.set_faults(reset_after_bytes=len(content) // 2)
            client.close()
            client.list_complete_files = lambda: remotes  # type: ignore[method-assign]
            with pytest.raises(TransientError):
                pull_sftp(pg_store.engine, client, DIALECT, source=SOURCE)
    assert pg_store.snapshots(SOURCE) == []
    assert pg_store.scalar("SELECT count(*) FROM processed_files") == 0
    assert not [p for p in downloads.rglob("*") if p.is_file()]  # no partial file anywhere
    assert server_files(drop) == ["inventory/INV_1.csv", "inventory/INV_1.csv.done"]  # will be retried


def test_malformed_rows_quarantined_with_row_numbers(
    pg_store: InvStore, sshd, drop, downloads, put_file: PutFile
) -> None:
    put_file(drop, "inventory/INV_1.csv", csv_bytes(400, bad={4: "abc", 6: "-5"}), done=True)
    [loaded] = pull(pg_store, sshd, drop, downloads).loaded
    assert (loaded.rows_read, loaded.rows_loaded, loaded.rows_rejected) == (400, 398, 2)
    rows = pg_store.rows("SELECT source_ref, reasons FROM quarantine ORDER BY source_ref")
    assert [r.source_ref for r in rows] == [
        "inventory/INV_1.csv:5",
        "inventory/INV_1.csv:7",
    ]  # header is line 1
    reasons = [r.reasons if isinstance(r.reasons, list) else json.loads(r.reasons) for r in rows]
    assert reasons[0][0]["rule"] == "parse" and reasons[0][0]["value"] == "abc"
    assert reasons[1][0]["reason"] == "on_hand is negative"


def test_shrunken_snapshot_refused_previous_kept(
    pg_store: InvStore, sshd, drop, downloads, put_file: PutFile
) -> None:
    put_file(drop, "inventory/INV_1.csv", csv_bytes(300), done=True)
    [first] = pull(pg_store, sshd, drop, downloads).loaded
    put_file(drop, "inventory/INV_2.csv", csv_bytes(100), done=True)
    report = pull(pg_store, sshd, drop, downloads, policy=SnapshotPolicy(max_shrink=0.5))
    [refused] = report.refused
    assert "shrank from 300 to 100" in (refused.refused_reason or "")
    assert pg_store.snapshots(SOURCE) == [(first.snapshot_id, "in_force"), (refused.snapshot_id, "refused")]
    assert "failed/inventory/INV_2.csv" in server_files(drop)
    assert "shrank" in (drop / "failed/inventory/INV_2.csv.reason.txt").read_text()
    assert (
        pg_store.scalar("SELECT status FROM processed_files WHERE path = 'inventory/INV_2.csv'") == "refused"
    )


def test_truncated_files_refused_previous_kept(
    pg_store: InvStore, sshd, drop, downloads, put_file: PutFile
) -> None:
    put_file(drop, "inventory/INV_1.csv", csv_bytes(300), done=True)
    [first] = pull(pg_store, sshd, drop, downloads).loaded
    # Cut mid-line although the done marker exists: the last line has no line ending.
    put_file(drop, "inventory/INV_2.csv", csv_bytes(300, cut=True), done=True)
    [cut] = pull(pg_store, sshd, drop, downloads).refused
    assert "cut off" in (cut.refused_reason or "") or "line ending" in (cut.refused_reason or "")
    # Whole lines, but fewer than the manifest promises.
    short = csv_bytes(250)
    put_file(drop, "inventory/INV_3.csv", short, manifest_rows=300)
    [manifest] = pull(pg_store, sshd, drop, downloads, completeness="manifest").refused
    assert "promises 300 data rows" in (manifest.refused_reason or "")
    assert pg_store.snapshots(SOURCE)[0] == (first.snapshot_id, "in_force")
    assert [s for _, s in pg_store.snapshots(SOURCE)] == ["in_force", "refused", "refused"]
    assert {"failed/inventory/INV_2.csv", "failed/inventory/INV_3.csv"} <= set(server_files(drop))


def test_paths_that_escape_the_root_are_refused(
    pg_store: InvStore, sshd, tmp_path, drop, downloads, put_file: PutFile
) -> None:
    with pytest.raises(ConfigError, match=r"\.\."):
        settings(sshd, drop, downloads, pattern="../outside/*.csv")
    outside = tmp_path / "outside.csv"
    outside.write_bytes(csv_bytes(300))
    (drop / "inventory").mkdir()
    (drop / "inventory" / "INV_evil.csv").symlink_to(outside)  # a server-side link out of the root
    (drop / "inventory" / "INV_evil.csv.done").write_bytes(b"")
    report = pull(pg_store, sshd, drop, downloads)
    assert report.loaded == [] and pg_store.snapshots(SOURCE) == []
