"""The SFTP client offers AES-GCM first (no separate HMAC per packet) and keeps every other cipher."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest

from connectors.filedrop import SftpDropClient
from connectors.filedrop.sftp import _gcm_first_transport

pytestmark = pytest.mark.sshd


def test_gcm_is_offered_first_and_nothing_is_dropped() -> None:
    left, right = socket.socketpair()
    try:
        transport = _gcm_first_transport(left)
        offered = transport.get_security_options().ciphers
        default = paramiko.Transport(right).get_security_options().ciphers
    finally:
        left.close()
        right.close()
    gcm = [name for name in default if name.endswith("-gcm@openssh.com")]
    assert gcm, "this paramiko offers no AES-GCM: the preference has nothing to act on"
    assert list(offered[: len(gcm)]) == gcm
    assert sorted(offered) == sorted(default)


def test_openssh_negotiates_gcm_and_the_download_is_intact(
    sshd: Any, drop: Path, downloads: Path, put_file: Callable[..., Path]
) -> None:
    content = "物料编码,仓库,数量\n".encode("gbk") + b"".join(
        b"A%05d,WH1,%d\n" % (i, i) for i in range(20_000)
    )
    put_file(drop, "stock.csv", content, done=True)
    with SftpDropClient(sshd.settings(drop, downloads)) as client:
        [remote] = client.list_complete_files()
        downloaded = client.download(remote)
        transport = client._ssh.get_transport() if client._ssh is not None else None  # noqa: SLF001
        assert transport is not None
        assert transport.local_cipher.endswith("-gcm@openssh.com")
        assert transport.remote_cipher.endswith("-gcm@openssh.com")
    assert Path(downloaded.local_path).read_bytes() == content
