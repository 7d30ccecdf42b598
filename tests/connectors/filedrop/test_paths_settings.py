"""Path checks (CWE-22) and settings validation, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.filedrop.paths import (
    UnsafePathError,
    check_listing_name,
    local_target,
    normalize_root,
    remote_join,
    safe_relative,
)
from connectors.filedrop.settings import SftpSettings, key_fingerprint, parse_fingerprint
from hub.errors import ConfigError
from hub.secrets import redact

BASE = {
    "name": "kis_stock",
    "host": "sftp.example.cn",
    "port": 2222,
    "username": "erp",
    "root": "/data/erp",
    "pattern": "stock_*.csv",
    "local_dir": Path("/tmp/x"),
    "host_key_fingerprint": "SHA256:" + "A" * 43,  # an all-zero digest
}


@pytest.mark.parametrize(
    "name", ["../x.csv", "a/../../x.csv", "/etc/passwd", "a\\b.csv", "a\x00.csv", "", ".", "..", "a/\nb"]
)
def test_unsafe_relative_paths_are_refused(name: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_relative(name)


def test_safe_relative_normalises() -> None:
    assert safe_relative("a//b/./c.csv") == "a/b/c.csv"
    assert remote_join("/data/erp", "sub/x.csv") == "/data/erp/sub/x.csv"
    assert remote_join("inbox", "x.csv") == "inbox/x.csv"
    assert normalize_root("/data//erp/") == "/data/erp"
    assert normalize_root("//data") == "/data"


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", "x\x00"])
def test_listing_entries_must_be_one_plain_name(name: str) -> None:
    with pytest.raises(UnsafePathError):
        check_listing_name(name)


def test_local_target_stays_under_the_download_dir(tmp_path: Path) -> None:
    assert local_target(tmp_path, "a/b.csv") == (tmp_path / "a" / "b.csv").resolve()
    (tmp_path / "link").symlink_to("/")
    with pytest.raises(UnsafePathError):
        local_target(tmp_path, "link/etc/passwd")


def test_settings_need_a_pinned_host_key_and_credentials() -> None:
    with pytest.raises(ConfigError, match="must be pinned"):
        SftpSettings(**{**BASE, "host_key_fingerprint": None, "password": "pw-123456"})
    with pytest.raises(ConfigError, match="password or private_key_path"):
        SftpSettings(**BASE)
    with pytest.raises(ConfigError, match="completeness"):
        SftpSettings(**BASE, password="pw-123456", completeness="eventually")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="SHA256"):
        SftpSettings(**{**BASE, "host_key_fingerprint": "MD5:aa:bb"}, password="pw-123456")


def test_fingerprint_accepts_ssh_keygen_output() -> None:
    token = key_fingerprint(b"any public key blob")
    assert parse_fingerprint(f"256 {token} root@host (ED25519)", where="x") == token
    assert parse_fingerprint(token + "=", where="x") == token


def test_secrets_come_from_environment_references_and_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SFTP_PW", "Sentinel-Sftp-Pw-0042")
    settings = SftpSettings.from_mapping(
        {**BASE, "password": "${TEST_SFTP_PW}", "retry": {"max_attempts": 2}}, where="hub.yaml: drops.kis"
    )
    assert settings.password == "Sentinel-Sftp-Pw-0042"
    assert settings.retry.max_attempts == 2
    assert "Sentinel-Sftp-Pw-0042" not in repr(settings)
    assert redact("login with Sentinel-Sftp-Pw-0042 failed") == "login with *** failed"
    with pytest.raises(ConfigError, match="environment reference"):
        SftpSettings.from_mapping({**BASE, "password": "literal-password"}, where="hub.yaml: drops.kis")
    with pytest.raises(ConfigError, match="unknown sftp setting"):
        SftpSettings.from_mapping({**BASE, "pasword": "${TEST_SFTP_PW}"}, where="hub.yaml: drops.kis")
