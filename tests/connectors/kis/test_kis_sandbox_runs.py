"""The sandbox keeps its state across restarts and runs from both command lines."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from connectors.kingdee.kis import KisClient
from connectors.kingdee.kis_sandbox import KisSandbox, SandboxAdmin

from .conftest import ClientFactory, SettingsFactory, outbound

REPO = Path(__file__).resolve().parents[3]


def test_restart_keeps_bills_ledger_and_sessions(
    sandbox: KisSandbox, make_settings: SettingsFactory, make_client: ClientFactory
) -> None:
    client = make_client("koas")
    created = client.create_outbound(outbound("XOUT-KEEP"))
    SandboxAdmin(sandbox.base_url).audit(created.fid)
    state, port = sandbox.state.path, sandbox.port
    sandbox.stop()

    with KisSandbox(state, port=port) as again:
        assert again.base_url == client.settings.base_url
        # The same client goes on with its cached tokens: the gateway kept them too.
        kept = client.get_outbound(created.fid)
        assert kept.bill_no == "XOUT-KEEP" and kept.audited
        assert client.stats["auth_recoveries"] == 0
        assert [r["bill_no"] for r in SandboxAdmin(again.base_url).ledger("salesdelivery/create")] == [
            "XOUT-KEEP"
        ]
        fresh = KisClient(dataclasses.replace(make_settings("open_platform"), base_url=again.base_url))
        assert fresh.find_outbound_by_bill_no("XOUT-KEEP").fid == created.fid  # type: ignore[union-attr]
        fresh.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "command",
    [
        [str(Path(sys.executable).parent / "hub"), "sandbox", "kis"],
        [sys.executable, "-m", "connectors.kingdee.kis_sandbox"],
    ],
    ids=["hub-cli", "python-m"],
)
def test_sandbox_runs_in_the_foreground(
    tmp_path: Path, make_settings: SettingsFactory, command: list[str]
) -> None:
    port = _free_port()
    env = {**os.environ, "KIS_SANDBOX_CLIENT_SECRET": "from-the-env-secret", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            *command,
            "--port",
            str(port),
            "--state",
            str(tmp_path / "fg.sqlite"),
            "--seed",
            "3",
            "--latency-ms",
            "1",
        ],
        cwd=REPO,
        env=env,
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
        assert f"http://127.0.0.1:{port}" in text and "client_secret=from-the-env-secret" in text
        settings = dataclasses.replace(
            make_settings("koas"), base_url=f"http://127.0.0.1:{port}", client_secret="from-the-env-secret"
        )
        with KisClient(settings) as client:
            assert client.check().stocks_total == 2
        assert SandboxAdmin(settings.base_url).faults()["latency_ms"] == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
