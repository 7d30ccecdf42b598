"""A download keeps reading from paramiko's prefetch even when its request thread falls behind.

paramiko marks the prefetch done whenever no request is outstanding; when its request thread is slow
(starved of the GIL by the hub's parser), the replies catch up, the file stops prefetching half-way
and reads the rest with one synchronous round trip per 32 KiB (measured 0.4 s -> 14 s for 66 MB).
Here the request thread is slowed on purpose, against a real OpenSSH server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.sftp import CMD_READ

from connectors.filedrop import SftpDropClient
from connectors.filedrop.prefetch import race_free

pytestmark = pytest.mark.sshd

REQUEST_SIZE = paramiko.SFTPFile.MAX_REQUEST_SIZE


@pytest.fixture
def slow_request_thread(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Pause paramiko's prefetch request thread after every 16 read requests it sends (so the replies
    catch up with it); count them, and note the offsets read synchronously (one round trip each)."""
    counts: dict[str, Any] = {"prefetch_requests": 0, "synchronous_offsets": []}
    send_async = getattr(paramiko.SFTPClient, "_async_request")  # noqa: B009 (private: not in the stubs)
    send_and_wait = getattr(paramiko.SFTPClient, "_request")  # noqa: B009

    def async_request(self: paramiko.SFTPClient, fileobj: Any, t: int, *args: Any) -> Any:
        number = send_async(self, fileobj, t, *args)
        if t == CMD_READ and isinstance(fileobj, paramiko.SFTPFile):  # not a synchronous read's
            counts["prefetch_requests"] += 1
            if counts["prefetch_requests"] % 16 == 0:
                time.sleep(0.05)
        return number

    def request(self: paramiko.SFTPClient, t: int, *args: Any) -> Any:
        if t == CMD_READ:
            counts["synchronous_offsets"].append(int(args[1]))  # (handle, offset, length)
        return send_and_wait(self, t, *args)

    monkeypatch.setattr(paramiko.SFTPClient, "_async_request", async_request)
    monkeypatch.setattr(paramiko.SFTPClient, "_request", request)
    return counts


def test_a_lagging_request_thread_does_not_turn_the_prefetch_off(
    sshd: Any,
    drop: Path,
    downloads: Path,
    put_file: Callable[..., Path],
    slow_request_thread: dict[str, Any],
) -> None:
    content = b"".join(b"A%07d,WH1,%d\n" % (i, i % 97) for i in range(300_000))  # ~5 MB, 150+ requests
    put_file(drop, "stock.csv", content, done=True)
    with SftpDropClient(sshd.settings(drop, downloads)) as client:
        [remote] = client.list_complete_files()
        downloaded = client.download(remote)
    assert Path(downloaded.local_path).read_bytes() == content
    expected_requests = -(-len(content) // REQUEST_SIZE)
    assert slow_request_thread["prefetch_requests"] == expected_requests
    # Every byte came from the prefetch: only the reads that find the end of the file (past the
    # prefetched range) went out synchronously, no byte was asked for twice.
    assert slow_request_thread["synchronous_offsets"]
    assert min(slow_request_thread["synchronous_offsets"]) >= len(content)


def test_a_paramiko_without_the_expected_internals_keeps_its_own_prefetch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class ForeignFile:
        """Stands in for an SFTP file of a paramiko whose prefetch works differently."""

    handle = ForeignFile()
    with caplog.at_level(logging.WARNING, logger="connectors.filedrop.prefetch"):
        assert race_free(handle) is handle  # type: ignore[arg-type]
    assert type(handle) is ForeignFile
    assert "prefetch internals changed" in caplog.text
