"""Fixtures for the file-drop tests: a real OpenSSH ``sshd`` on a free loopback port, started once per
test session (see :mod:`tests.support.sshd`), and per-test drop and download directories.

When no ``sshd`` binary is installed the SFTP tests are skipped, unless ``HUB_REQUIRE_SSHD=1`` (CI),
which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.sshd import SshdServer, find_sshd, start_sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """A private OpenSSH sshd on 127.0.0.1:<free port> for the whole session."""
    binary = find_sshd()
    if binary is None:
        message = "OpenSSH sshd/ssh-keygen not installed (apt-get install -y openssh-server)"
        if os.environ.get("HUB_REQUIRE_SSHD") == "1":
            pytest.fail(message + " and HUB_REQUIRE_SSHD=1", pytrace=False)
        pytest.skip(message)
    with start_sshd(tmp_path_factory.mktemp("sshd"), binary) as server:
        yield server


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    """An empty server-side drop directory (sshd runs as this user, so it sees the same filesystem)."""
    root = tmp_path / "drop"
    root.mkdir()
    return root


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    """The local download directory."""
    return tmp_path / "downloads"


@pytest.fixture
def put_file() -> Callable[..., Path]:
    """Write a file into a drop directory, with optional done marker or manifest."""

    def put(
        root: Path,
        name: str,
        content: bytes,
        *,
        done: bool = False,
        manifest_rows: int | None = None,
        manifest_size: int | None = None,
        manifest_sha256: str | None = None,
    ) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if done:
            (root / (name + ".done")).write_bytes(b"")
        if manifest_rows is not None:
            manifest: dict[str, Any] = {
                "size": len(content) if manifest_size is None else manifest_size,
                "rows": manifest_rows,
            }
            if manifest_sha256 is not None:
                manifest["sha256"] = manifest_sha256
            (root / (name + ".manifest.json")).write_text(json.dumps(manifest))
        return path

    return put
