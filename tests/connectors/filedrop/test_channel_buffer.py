"""The SFTP channel's bytearray receive buffer reads exactly like paramiko's own, and is in use."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from paramiko.buffered_pipe import BufferedPipe, PipeTimeout

from connectors.filedrop import SftpDropClient
from connectors.filedrop.channel_buffer import trim_reads_in_place


def _converted(pipe: BufferedPipe) -> BufferedPipe:
    trim_reads_in_place(SimpleNamespace(in_buffer=pipe))  # type: ignore[arg-type]
    return pipe


def test_reads_match_paramikos_buffer_byte_for_byte() -> None:
    rng = random.Random(11)
    plain, fast = BufferedPipe(), BufferedPipe()
    plain.feed(b"fed before the switch|")
    fast.feed(b"fed before the switch|")
    _converted(fast)
    assert type(fast) is not BufferedPipe
    for step in range(3_000):
        if rng.random() < 0.4:
            chunk = rng.randbytes(rng.choice([4, 13, 32_768, 70_000]))
            plain.feed(chunk)
            fast.feed(chunk)
        elif len(plain):
            size = rng.choice([1, 4, 1_000, 32_781, 1 << 20])
            assert fast.read(size) == plain.read(size), f"step {step}"
        assert len(fast) == len(plain)
    assert fast.empty() == plain.empty()
    assert len(fast) == 0


def test_waiting_timeouts_and_closing_behave_as_before() -> None:
    pipe = _converted(BufferedPipe())
    with pytest.raises(PipeTimeout):
        pipe.read(10, timeout=0.05)
    feeder = threading.Timer(0.05, pipe.feed, args=(b"late bytes",))
    feeder.start()
    assert pipe.read(4, timeout=5) == b"late"  # a reader waits for the transport thread's feed
    feeder.join()
    pipe.close()
    assert pipe.read(100) == b" bytes"
    assert pipe.read(100) == b""  # closed and drained: end of stream


def test_a_foreign_buffer_is_left_alone_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    class ForeignPipe:
        """A receive buffer of a paramiko whose internals differ."""

    pipe = ForeignPipe()
    with caplog.at_level(logging.WARNING, logger="connectors.filedrop.channel_buffer"):
        trim_reads_in_place(SimpleNamespace(in_buffer=pipe))  # type: ignore[arg-type]
    assert type(pipe) is ForeignPipe
    assert "internals changed" in caplog.text


@pytest.mark.sshd
def test_the_sftp_session_reads_through_the_bytearray_buffer(
    sshd: Any, drop: Path, downloads: Path, put_file: Callable[..., Path]
) -> None:
    content = random.Random(5).randbytes(3_000_000)
    put_file(drop, "stock.csv", content, done=True)
    with SftpDropClient(sshd.settings(drop, downloads)) as client:
        [remote] = client.list_complete_files()
        downloaded = client.download(remote)
        channel = client._sftp.get_channel() if client._sftp is not None else None  # noqa: SLF001
        assert channel is not None
        assert isinstance(channel.in_buffer._buffer, bytearray)  # noqa: SLF001
    assert Path(downloaded.local_path).read_bytes() == content
