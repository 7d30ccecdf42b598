"""SFTP drop client against a real OpenSSH sshd: completeness, pull-once, host keys, auth, paths, moves.

Each test gets its own drop directory on the (shared, session-wide) server and its own download dir.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.filedrop import (
    FileRejectedError,
    HostKeyVerificationError,
    RemoteFile,
    RemoteFileMissingError,
    SftpDropClient,
    UnsafePathError,
)
from hub.errors import AuthError, ConfigError

pytestmark = pytest.mark.sshd

CSV = "物料编码,仓库,数量\nA001,WH1,10\nA002,WH1,5\n".encode("gbk")
PutFile = Callable[..., Path]


def local_files(directory: Path) -> list[str]:
    """Every file under ``directory`` (hidden ones included), relative, sorted."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


# ------------------------------------------------------------------ complete files, pulled once


def test_complete_file_is_pulled_once_and_archived(sshd, drop, downloads, put_file: PutFile) -> None:
    put_file(drop, "inv_20240105.csv", CSV, done=True)
    registry: set[tuple[str, int, object]] = set()

    def already_processed(remote: RemoteFile) -> bool:
        return (remote.path, remote.size, remote.mtime) in registry

    with SftpDropClient(sshd.settings(drop, downloads)) as client:
        pulled = list(client.pull(already_processed))
        assert [d.path for d in pulled] == ["inv_20240105.csv"]
        got = pulled[0]
        assert got.local_path == (downloads / "inv_20240105.csv").resolve()
        assert got.local_path.read_bytes() == CSV
        assert got.sha256 == hashlib.sha256(CSV).hexdigest()
        assert got.size == len(CSV) and got.mtime.tzinfo is not None
        registry.add((got.path, got.size, got.mtime))

        # Still on the server (not archived yet): the registry predicate keeps it from a second pull.
        assert client.list_candidates()[0].path == "inv_20240105.csv"
        assert list(client.pull(already_processed)) == []

        assert client.archive(got.remote) == "archive/inv_20240105.csv"
        assert list(client.pull()) == []  # gone from the drop even without a registry
    assert (drop / "archive" / "inv_20240105.csv").read_bytes() == CSV
    assert (drop / "archive" / "inv_20240105.csv.done").exists()
    assert not (drop / "inv_20240105.csv").exists() and not (drop / "inv_20240105.csv.done").exists()
    assert local_files(downloads) == ["inv_20240105.csv"]  # no temporary file left behind


def test_pattern_with_directories_and_archive_excluded(sshd, drop, downloads, put_file: PutFile) -> None:
    put_file(drop, "2024/stock_a.csv", CSV, done=True)
    put_file(drop, "2025/stock_b.csv", CSV, done=True)
    put_file(drop, "2025/other.csv", CSV, done=True)
    put_file(drop, "archive/stock_old.csv", CSV, done=True)  # must never be picked up again
    with SftpDropClient(sshd.settings(drop, downloads, pattern="*/stock_*.csv")) as client:
        files = client.list_complete_files()
        assert sorted(f.path for f in files) == ["2024/stock_a.csv", "2025/stock_b.csv"]
        downloaded = client.download(next(f for f in files if f.path == "2025/stock_b.csv"))
    assert downloaded.local_path == (downloads / "2025" / "stock_b.csv").resolve()


# ------------------------------------------------------------------ a file still being written is left alone


def test_done_file_policy_waits_for_the_marker(sshd, drop, downloads, put_file: PutFile) -> None:
    put_file(drop, "inv.csv", CSV[:10])  # producer still writing, no marker yet
    with SftpDropClient(sshd.settings(drop, downloads)) as client:
        assert client.list_complete_files() == []
        assert client.waiting == [("inv.csv", "no inv.csv.done yet")]
        put_file(drop, "inv.csv", CSV, done=True)
        assert [f.path for f in client.list_complete_files()] == ["inv.csv"]
    assert local_files(downloads) == []  # listing never downloads


def test_manifest_policy_checks_size_and_carries_rows(sshd, drop, downloads, put_file: PutFile) -> None:
    settings = sshd.settings(drop, downloads, completeness="manifest")
    with SftpDropClient(settings) as client:
        put_file(drop, "inv.csv", CSV[:12])
        assert client.list_complete_files() == []
        assert client.waiting[0][1] == "no inv.csv.manifest.json yet"

        # Manifest written first, data still growing: size differs, left alone.
        put_file(drop, "inv.csv", CSV[:12], manifest_rows=2, manifest_size=len(CSV))
        assert client.list_complete_files() == []
        assert "differs from the manifest" in client.waiting[0][1]

        (drop / "inv.csv.manifest.json").write_text('{"size": 5')  # half-written manifest
        assert client.list_complete_files() == []
        assert "not valid JSON" in client.waiting[0][1]

        put_file(drop, "inv.csv", CSV, manifest_rows=2, manifest_sha256=hashlib.sha256(CSV).hexdigest())
        [remote] = client.list_complete_files()
        assert remote.expected_rows == 2
        assert client.download(remote).expected_rows == 2


def test_manifest_sha256_mismatch_is_refused_without_a_local_file(
    sshd, drop, downloads, put_file: PutFile
) -> None:
    put_file(drop, "inv.csv", CSV, manifest_rows=2, manifest_sha256="0" * 64)
    with SftpDropClient(sshd.settings(drop, downloads, completeness="manifest")) as client:
        [remote] = client.list_complete_files()
        with pytest.raises(FileRejectedError, match="manifest says"):
            client.download(remote)
        assert client.move_to_failed(remote, reason="sha256 mismatch") == "failed/inv.csv"
    assert local_files(downloads) == []
    assert (drop / "failed" / "inv.csv.reason.txt").read_text() == "sha256 mismatch"
    assert (drop / "failed" / "inv.csv.manifest.json").exists()


def test_stable_size_policy_leaves_a_growing_file_alone(sshd, drop, downloads, put_file: PutFile) -> None:
    path = put_file(drop, "inv.csv", CSV[:8])

    def producer_keeps_writing(_seconds: float) -> None:
        # The client waits between its two listings; the producer appends meanwhile.
        with open(path, "ab") as handle:
            handle.write(CSV[8:20])

    settings = sshd.settings(drop, downloads, completeness="stable_size")
    with SftpDropClient(settings, sleep=producer_keeps_writing) as client:
        assert client.list_complete_files() == []
        assert client.waiting == [("inv.csv", "size or mtime changed between two polls")]
    with SftpDropClient(settings, sleep=lambda _s: None) as client:
        [remote] = client.list_complete_files()  # nobody writes any more: complete
        assert remote.size == 20


def test_file_that_changes_after_listing_is_not_promoted(sshd, drop, downloads, put_file: PutFile) -> None:
    path = put_file(drop, "inv.csv", CSV, done=True)
    with SftpDropClient(sshd.settings(drop, downloads)) as client:
        [remote] = client.list_complete_files()
        path.write_bytes(CSV + b"A003,WH2,1\n")  # producer rewrote it after the marker
        with pytest.raises(Exception, match="still being written"):
            client.download(remote)
    assert local_files(downloads) == []


# ------------------------------------------------------------------ host key pinning


def test_wrong_host_key_is_refused_before_any_credential_is_sent(sshd, drop, downloads) -> None:
    password = "Sentinel-Pw-7f3a9c"  # would show up in sshd's log as an auth attempt if sent
    settings = sshd.settings(
        drop,
        downloads,
        password=password,
        known_hosts_line=sshd.known_hosts_line(key=sshd.other_public_key),
    )
    offset = sshd.log_size()
    with pytest.raises(HostKeyVerificationError) as caught, SftpDropClient(settings) as client:
        client.list_candidates()
    message = str(caught.value)
    assert sshd.fingerprint in message and "before authentication" in message
    assert password not in message
    log = sshd.wait_for_log(offset, "Connection closed by")
    assert "KEX done" in log  # the connection really reached the server...
    assert "userauth-request" not in log  # ...but not one authentication request did
    assert client.connections_opened == 1  # refused, not retried


def test_control_right_host_key_wrong_password_does_reach_auth(sshd, drop, downloads) -> None:
    # The same log probe sees an authentication attempt when the key is right: the test above can fail.
    settings = sshd.settings(drop, downloads, private_key_path=None, password="Wrong-Pw-51d2e8")
    offset = sshd.log_size()
    with pytest.raises(AuthError) as caught, SftpDropClient(settings) as client:
        client.list_candidates()
    assert "Wrong-Pw-51d2e8" not in str(caught.value)
    log = sshd.wait_for_log(offset, "method password")
    assert "userauth-request for user" in log and "method password" in log
    assert client.connections_opened == 1  # an auth failure is not retried


def test_known_hosts_line_for_another_port_is_refused(sshd, drop, downloads) -> None:
    settings = sshd.settings(drop, downloads, known_hosts_line=sshd.known_hosts_line(port=sshd.port + 1))
    with pytest.raises(HostKeyVerificationError, match="no entry for"), SftpDropClient(settings) as client:
        client.connect()


def test_fingerprint_pin_accepts_only_that_key(sshd, drop, downloads, put_file: PutFile) -> None:
    put_file(drop, "inv.csv", CSV, done=True)
    good = sshd.settings(drop, downloads, known_hosts_line=None, host_key_fingerprint=sshd.fingerprint)
    with SftpDropClient(good) as client:
        [remote] = client.list_complete_files()
        assert client.download(remote).local_path.read_bytes() == CSV
    from connectors.filedrop.settings import key_fingerprint

    other = key_fingerprint(sshd.other_public_key.asbytes())
    bad = sshd.settings(drop, downloads, known_hosts_line=None, host_key_fingerprint=other)
    with pytest.raises(HostKeyVerificationError, match="pinned fingerprint"), SftpDropClient(bad) as client:
        client.connect()


def test_encrypted_client_key_with_passphrase(sshd, drop, downloads, put_file: PutFile) -> None:
    put_file(drop, "inv.csv", CSV, done=True)
    settings = sshd.settings(
        drop,
        downloads,
        private_key_path=str(sshd.encrypted_client_key),
        private_key_passphrase=sshd.encrypted_client_passphrase,
    )
    with SftpDropClient(settings) as client:
        assert [f.path for f in client.list_complete_files()] == ["inv.csv"]
    wrong = sshd.settings(
        drop, downloads, private_key_path=str(sshd.encrypted_client_key), private_key_passphrase="nope-nope"
    )
    with pytest.raises(ConfigError, match="private key") as caught, SftpDropClient(wrong) as client:
        client.connect()
    assert "nope-nope" not in str(caught.value)


# ------------------------------------------------------------------ the root cannot be escaped


def test_paths_escaping_the_root_are_refused(sshd, tmp_path, drop, downloads, put_file: PutFile) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_bytes(b"do not read\n")
    (drop / "evil.csv").symlink_to(outside)
    (drop / "evil.csv.done").write_bytes(b"")
    put_file(drop, "back\\slash.csv", CSV, done=True)
    put_file(drop, "ok.csv", CSV, done=True)
    with SftpDropClient(sshd.settings(drop, downloads)) as client:
        assert [f.path for f in client.list_complete_files()] == ["ok.csv"]
        assert {path for path, _ in client.rejected} == {"evil.csv", "back\\slash.csv"}
        forged = RemoteFile("../secret.csv", 12, client.list_candidates()[0].mtime)
        with pytest.raises(UnsafePathError, match=r"'\.\.' segment"):
            client.download(forged)
        with pytest.raises(UnsafePathError):
            client.download(RemoteFile("/etc/passwd", 1, forged.mtime))
        with pytest.raises(UnsafePathError):
            client.archive(RemoteFile("sub/../../secret.csv", 1, forged.mtime))
    assert outside.read_bytes() == b"do not read\n"
    assert local_files(downloads) == []


def test_pattern_or_root_that_escapes_is_a_config_error(sshd, drop, downloads) -> None:
    for root, overrides in (
        (drop, {"pattern": "../*.csv"}),
        (drop, {"pattern": "/etc/*.csv"}),
        (drop, {"pattern": "a\\b.csv"}),
        (drop, {"pattern": "inv\x00.csv"}),
        (Path(str(drop) + "/../other"), {}),
        (drop, {"archive_dir": "../archive"}),
    ):
        with pytest.raises(ConfigError):
            sshd.settings(root, downloads, **overrides)


def test_local_symlink_cannot_redirect_the_download(
    sshd, tmp_path, drop, downloads, put_file: PutFile
) -> None:
    put_file(drop, "sub/inv.csv", CSV, done=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    downloads.mkdir()
    os.symlink(elsewhere, downloads / "sub")
    with SftpDropClient(sshd.settings(drop, downloads, pattern="sub/*.csv")) as client:
        [remote] = client.list_complete_files()
        with pytest.raises(UnsafePathError, match="outside the download directory"):
            client.download(remote)
    assert list(elsewhere.iterdir()) == []


# ------------------------------------------------------------------ moves


def test_archive_keeps_an_earlier_file_of_the_same_name(sshd, drop, downloads, put_file: PutFile) -> None:
    put_file(drop, "archive/inv.csv", b"old\n")
    put_file(drop, "inv.csv", CSV, done=True)
    with SftpDropClient(sshd.settings(drop, downloads)) as client:
        [remote] = client.list_complete_files()
        moved = client.archive(remote)
        assert moved.startswith("archive/inv.csv.") and moved != "archive/inv.csv"
        with pytest.raises(RemoteFileMissingError):
            client.move_to_failed(remote)  # already moved: nothing there any more
    assert (drop / "archive" / "inv.csv").read_bytes() == b"old\n"
    assert (drop / moved).read_bytes() == CSV
