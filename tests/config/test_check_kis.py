"""`hub check` against the real KIS sandbox on loopback: success, wrong credentials, stopped sandbox.

Runs the CLI in-process (Typer's runner) against a KisSandbox HTTP server on a free port; the hub.yaml is
the kingdee_kis template with only base_url and identifiers overridden, secrets from the environment.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connectors.kingdee.kis_sandbox import KisSandbox, SandboxCredentials
from hub.cli import app

runner = CliRunner()
CREDS = SandboxCredentials()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[KisSandbox]:
    box = KisSandbox(tmp_path / "kis.db", credentials=CREDS)
    box.start()
    try:
        yield box
    finally:
        box.stop()


def project(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "hub.yaml"
    path.write_text(
        f"""version: 1
connections:
  erp:
    template: kingdee_kis
    connection:
      base_url: {base_url}
      client_id: "{CREDS.client_id}"
      app_key: {CREDS.app_key}
      outer_instance_id: {CREDS.outer_instance_id}
    retry: {{max_attempts: 2, initial_wait: 0.05, max_wait: 0.1, max_elapsed: 5}}
  alerts:
    template: notify_wecom
    connection:
      webhook_key: ${{WECOM_WEBHOOK_KEY}}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("KIS_CLIENT_SECRET", CREDS.client_secret)
    monkeypatch.setenv("KIS_APP_SECRET", CREDS.app_secret)
    monkeypatch.setenv("WECOM_WEBHOOK_KEY", "wecom-key-not-used")
    return monkeypatch


def run_check(config: Path) -> tuple[int, dict]:
    result = runner.invoke(app, ["check", "--json", "-c", str(config)])
    return result.exit_code, json.loads(result.output.strip().splitlines()[-1])


def test_check_succeeds_against_the_sandbox(
    tmp_path: Path, sandbox: KisSandbox, env: pytest.MonkeyPatch
) -> None:
    code, report = run_check(project(tmp_path, sandbox.base_url))
    assert code == 0, report
    by_name = {c["connection"]: c for c in report["connections"]}
    assert by_name["erp"]["status"] == "ok"
    assert by_name["erp"]["detail"]["auth_flow"] == "open_platform"
    assert by_name["erp"]["detail"]["stocks_total"] >= 1
    assert by_name["alerts"]["status"] == "skipped"


def test_wrong_credentials_fail_clearly_without_leaking(
    tmp_path: Path, sandbox: KisSandbox, env: pytest.MonkeyPatch
) -> None:
    env.setenv("KIS_APP_SECRET", "wrong-app-secret-value")
    code, report = run_check(project(tmp_path, sandbox.base_url))
    assert code == 1, report
    erp = next(c for c in report["connections"] if c["connection"] == "erp")
    assert erp["status"] == "failed"
    assert "erp" in erp["detail"] and "app_secret" in erp["detail"]
    assert "wrong-app-secret-value" not in json.dumps(report)


def test_stopped_sandbox_is_unreachable(tmp_path: Path, sandbox: KisSandbox, env: pytest.MonkeyPatch) -> None:
    config = project(tmp_path, sandbox.base_url)
    sandbox.stop()
    code, report = run_check(config)
    assert code == 3, report
    erp = next(c for c in report["connections"] if c["connection"] == "erp")
    assert erp["status"] == "unreachable"
    assert "cannot connect" in erp["detail"]
