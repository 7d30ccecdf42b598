"""``hub sandbox kis --tls-cert/--tls-key``: HTTPS from the command line, and a clear error (exit code
EXIT_CONFIG) for a certificate that is missing or does not load -- never "cannot listen on host:port"."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.kingdee.kis import KisClient, KisSettings
from connectors.kingdee.kis_sandbox import SandboxAdmin
from connectors.kingdee.kis_sandbox.seed import SandboxCredentials
from hub.cli.main import EXIT_CONFIG, app
from hub.errors import ConfigError
from tests.faults.test_tls import Pki, pki  # noqa: F401  (module-scoped certificate fixture)

REPO = Path(__file__).resolve().parents[3]
HUB = str(Path(sys.executable).parent / "hub")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(base_url: str, **overrides: str) -> KisSettings:
    c = SandboxCredentials.from_env()
    return KisSettings(
        name="kis-cli-tls",
        base_url=base_url,
        auth_flow="koas",
        client_id=c.client_id,
        client_secret=c.client_secret,
        auth_code=c.auth_code,
        account_number=c.account_number,
        connect_timeout=2.0,
        read_timeout=10.0,
        **overrides,  # type: ignore[arg-type]
    )


def test_cli_serves_https_with_the_given_certificate(tmp_path: Path, pki: Pki) -> None:  # noqa: F811
    port = _free_port()
    cert, key = pki.good
    proc = subprocess.Popen(
        [HUB, "sandbox", "kis", "--port", str(port), "--state", str(tmp_path / "tls.sqlite")]
        + ["--tls-cert", str(cert), "--tls-key", str(key)],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                banner.append(line)
                if "app_secret=" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        assert ready.wait(30), "".join(banner)
        text = "".join(banner)
        base_url = f"https://127.0.0.1:{port}"
        assert f"listening on {base_url}" in text and f"certificate {cert}" in text, text

        # A client trusting the private CA logs in and reads over HTTPS ...
        with KisClient(_settings(base_url, ca_bundle=str(pki.ca))) as client:
            assert client.check().stocks_total == 2
        assert SandboxAdmin(base_url, ca_bundle=pki.ca).stats()["route:/koas/oauth2/access_token"] == 1
        # ... one that does not is refused during the handshake, with the verify reason,
        with KisClient(_settings(base_url)) as client, pytest.raises(ConfigError) as refused:
            client.check()
        assert "certificate verify failed: unable to get local issuer certificate" in str(refused.value)
        # ... and plain http on that port gets no KIS answer (it is HTTPS only).
        with KisClient(_settings(f"http://127.0.0.1:{port}")) as client, pytest.raises(Exception):
            client.check()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["sandbox", "kis", "--port", "0", "--state", str(tmp_path / "bad.sqlite"), *args],
    )
    return result.exit_code, " ".join(result.output.split())


def test_missing_certificate_or_key_is_named_with_the_config_exit_code(
    tmp_path: Path,
    pki: Pki,  # noqa: F811
) -> None:
    missing = tmp_path / "missing.pem"
    code, out = _run(tmp_path, "--tls-cert", str(missing))
    assert code == EXIT_CONFIG, out
    assert f"--tls-cert {missing} does not exist" in out and "cannot listen" not in out

    code, out = _run(tmp_path, "--tls-cert", str(pki.good[0]), "--tls-key", str(missing))
    assert code == EXIT_CONFIG, out
    assert f"--tls-key {missing} does not exist" in out and "cannot listen" not in out

    code, out = _run(tmp_path, "--tls-key", str(pki.good[1]))
    assert code == EXIT_CONFIG and "--tls-key needs --tls-cert" in out, out
    assert not (tmp_path / "bad.sqlite").exists()  # refused before the sandbox was built


def test_certificate_that_does_not_load_is_reported_with_the_config_exit_code(
    tmp_path: Path,
    pki: Pki,  # noqa: F811
) -> None:
    # The CA's certificate with another certificate's key: both files exist, the pair does not load.
    code, out = _run(tmp_path, "--tls-cert", str(pki.ca), "--tls-key", str(pki.good[1]))
    assert code == EXIT_CONFIG, out
    assert f"cannot load certificate '{pki.ca}' with key '{pki.good[1]}'" in out, out
    assert re.search(r"\(\[\w+: KEY_VALUES_MISMATCH\] key values mismatch", out), out  # not eaten as markup
    assert "cannot listen" not in out
