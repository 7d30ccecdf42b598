"""Network faults between the client and a real sshd, injected by our TCP proxy.

What must hold (PERF-RELIABILITY scenario 9): a connection reset or a stall mid-download is retried
from scratch on a new connection, the result is verified (size, sha256), and no partial file is ever
promoted to the final name, not even when every attempt fails.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from paramiko.auth_handler import AuthHandler

from connectors.filedrop import SftpDropClient
from hub.errors import TransientError
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.sshd

SIZE = 6 * 1024 * 1024  # several prefetch windows: the fault lands mid-transfer
PutFile = Callable[..., Path]


@pytest.fixture
def big_file(drop: Path, put_file: PutFile) -> bytes:
    content = os.urandom(SIZE)  # incompressible, so byte counts on the wire track the file
    put_file(drop, "big.csv", content, done=True)
    return content


def all_files(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def through(proxy: TcpProxy, sshd, drop: Path, downloads: Path, **overrides):
    """Settings that connect via the proxy; the pinned key names the proxy's port."""
    return sshd.settings(
        drop,
        downloads,
        port=proxy.port,
        known_hosts_line=sshd.known_hosts_line(port=proxy.port),
        **overrides,
    )


def test_reset_mid_download_is_retried_from_scratch(sshd, drop, downloads, big_file: bytes) -> None:
    with TcpProxy(sshd.host, sshd.port) as proxy:
        with SftpDropClient(through(proxy, sshd, drop, downloads), sleep=lambda _s: None) as client:
            [remote] = client.list_complete_files()
            proxy.set_faults(reset_after_bytes=SIZE // 3, once=True)  # hits the download connection
            client.close()  # start the download on a fresh connection, under the fault
            got = client.download(remote)
        assert proxy.resets == 1
        assert proxy.connections == 3  # listing, the download that was reset, the retry
        assert client.connections_opened == 3
    assert got.sha256 == hashlib.sha256(big_file).hexdigest()
    assert got.local_path.read_bytes() == big_file
    assert all_files(downloads) == ["big.csv"]  # the aborted attempt's .part file is gone


def test_reset_on_every_attempt_gives_up_and_promotes_nothing(sshd, drop, downloads, big_file: bytes) -> None:
    with TcpProxy(sshd.host, sshd.port) as proxy:
        settings = through(proxy, sshd, drop, downloads)
        with SftpDropClient(settings, sleep=lambda _s: None) as client:
            [remote] = client.list_complete_files()
            proxy.set_faults(reset_after_bytes=SIZE // 2)  # every connection from now on
            client.close()
            with pytest.raises(TransientError):
                client.download(remote)
        assert proxy.resets == settings.retry.max_attempts
    assert all_files(downloads) == []  # no final file and no partial file


def test_stalled_download_is_aborted_by_the_watchdog_and_retried(
    sshd, drop, downloads, big_file: bytes
) -> None:
    with TcpProxy(sshd.host, sshd.port) as proxy:
        settings = through(proxy, sshd, drop, downloads, stall_timeout=1.0)
        with SftpDropClient(settings, sleep=lambda _s: None) as client:
            [remote] = client.list_complete_files()
            proxy.set_faults(hang_after_bytes=SIZE // 4, once=True)  # peer goes silent, socket stays open
            client.close()
            got = client.download(remote)
        assert proxy.hangs == 1
        assert client.connections_opened == 3
    assert got.local_path.read_bytes() == big_file
    assert all_files(downloads) == ["big.csv"]


def test_reset_during_listing_is_retried(sshd, drop, downloads, big_file: bytes) -> None:
    with TcpProxy(sshd.host, sshd.port, reset_after_bytes=1500, once=True) as proxy:
        # The first connection dies during the SSH handshake; the retry lists normally.
        with SftpDropClient(through(proxy, sshd, drop, downloads), sleep=lambda _s: None) as client:
            assert [f.path for f in client.list_complete_files()] == ["big.csv"]
        assert proxy.resets == 1 and client.connections_opened == 2


def test_a_connection_lost_during_the_login_is_retried_not_called_a_refusal(
    sshd, drop, downloads, big_file: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where a reset lands depends on timing: at 1500 bytes it sometimes hits the login, which paramiko
    # reports as an authentication failure ("transport shut down or saw EOF"). Here it always does.
    dropped: list[bool] = []
    wait_for_response = AuthHandler.wait_for_response

    def drop_first(self: AuthHandler, event: Any) -> Any:
        if not dropped:  # the login request went out; the line dies before the answer comes back
            dropped.append(True)
            self.transport.sock.shutdown(socket.SHUT_RD)  # reads now see end of stream
        return wait_for_response(self, event)

    monkeypatch.setattr(AuthHandler, "wait_for_response", drop_first)
    with SftpDropClient(sshd.settings(drop, downloads), sleep=lambda _s: None) as client:
        assert [f.path for f in client.list_complete_files()] == ["big.csv"]
    assert dropped and client.connections_opened == 2


def test_download_through_added_latency(sshd, drop, downloads, big_file: bytes) -> None:
    # Prefetch keeps many reads in flight, so a slow link still finishes (no timing asserted).
    with (
        TcpProxy(sshd.host, sshd.port, latency=0.002) as proxy,
        SftpDropClient(through(proxy, sshd, drop, downloads)) as client,
    ):
        [remote] = client.list_complete_files()
        assert client.download(remote).sha256 == hashlib.sha256(big_file).hexdigest()
