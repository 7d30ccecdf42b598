"""``hub ui`` end to end: the real webserver + daemon on a free port, asserted over GraphQL.

The command runs in its own session (``start_new_session``) with SIGINT/SIGTERM reset to their defaults
(some CI runners start children with them ignored, DAGSTER-GX §4.2); the whole process group is stopped
with SIGINT, then SIGKILL if Dagster has not shut down, whatever the test outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from hub.demo import HUB_YAML

HUB = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hub"
LOAD_DEADLINE_S = 180  # a loaded 2-core machine: code server import + webserver start
CONNECTION = "erp"

WORKSPACE = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
REPOSITORIES = """{ repositoriesOrError { __typename ... on RepositoryConnection { nodes {
  name location { name } jobs { name }
  schedules { name cronSchedule executionTimezone }
  sensors { name } } } } }"""
ASSETS = """{ assetNodes { assetKey { path } groupName
  assetChecksOrError { __typename ... on AssetChecks { checks { name } } } } }"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _default_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def _graphql(base: str, query: str) -> dict[str, Any]:
    response = requests.post(f"{base}/graphql", json={"query": query}, timeout=(5, 60))
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(ProcessLookupError):  # children may outlive a stuck parent: clear the group
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[str]:
    home = tmp_path / "home"
    home.mkdir()
    # The demo's hub.yaml: one kingdee_kis connection. Nothing listens there; loading needs no ERP.
    (home / "hub.yaml").write_text(
        HUB_YAML.format(name=CONNECTION, base_url="http://127.0.0.1:9", stock="WH01"), encoding="utf-8"
    )
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("HUB_CONFIG", "HUB_DATABASE_URL", "DAGSTER_HOME")}
    env["HUB_HOME"] = str(home)
    log = (tmp_path / "ui.log").open("wb")
    process = subprocess.Popen(
        [str(HUB), "ui", "--port", str(port), "--host", "127.0.0.1"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_default_signals,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_loaded(base, process, tmp_path / "ui.log")
        yield base
    finally:
        _stop(process)
        log.close()
    assert (home / "dagster" / "dagster.yaml").exists()  # the persistent instance under HUB_HOME


def _wait_loaded(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``workspaceOrError`` until every location is LOADED, then insist it loaded without error."""
    deadline = time.monotonic() + LOAD_DEADLINE_S
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"hub ui exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            data = _graphql(base, WORKSPACE)
        except requests.RequestException:
            time.sleep(1)
            continue
        entries = data["workspaceOrError"].get("locationEntries", [])
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            break
        time.sleep(1)
    else:
        pytest.fail(f"code location not loaded in {LOAD_DEADLINE_S} s: {entries}\n{log.read_text()[-3000:]}")
    # A module that raises on import is LOADED too, as a PythonError: insist on a repository location.
    assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
        ("jobs.definitions", "RepositoryLocation")
    ], json.dumps(entries, ensure_ascii=False)


def test_hub_ui_serves_the_project_definitions(ui: str) -> None:
    (repo,) = _graphql(ui, REPOSITORIES)["repositoriesOrError"]["nodes"]
    assert repo["location"]["name"] == "jobs.definitions"

    schedules = {s["name"]: s for s in repo["schedules"]}
    assert {f"{CONNECTION}_nightly_push_schedule", "crm_process_health_schedule"} <= set(schedules)
    assert {s["executionTimezone"] for s in schedules.values()} == {"Asia/Shanghai"}
    assert schedules[f"{CONNECTION}_nightly_push_schedule"]["cronSchedule"] == "0 2 * * *"
    assert schedules["crm_process_health_schedule"]["cronSchedule"] == "30 7 * * *"

    jobs = {j["name"] for j in repo["jobs"]}
    assert {f"{CONNECTION}_nightly_push", "crm_process_health"} <= jobs
    sensors = {s["name"] for s in repo["sensors"]}
    assert {"alert_on_run_failure", f"{CONNECTION}_retry_drainer"} <= sensors

    nodes = {tuple(n["assetKey"]["path"]): n for n in _graphql(ui, ASSETS)["assetNodes"]}
    expected_groups = {
        ("crm", "opportunities"): "crm",
        (CONNECTION, "push_validation"): "erp_push",
        (CONNECTION, "invoice_push"): "erp_push",
        (CONNECTION, "reconciliation"): "finance",
    }
    assert {key: nodes[key]["groupName"] for key in expected_groups if key in nodes} == expected_groups

    def checks(key: tuple[str, ...]) -> set[str]:
        result = nodes[key]["assetChecksOrError"]
        assert result["__typename"] == "AssetChecks", result
        return {c["name"] for c in result["checks"]}

    assert checks(("crm", "opportunities")) == {
        "stage_skip_rate_below_5pct",
        "proposal_follow_up_within_48h",
        "no_recent_negotiation_regressions",
    }
    assert checks((CONNECTION, "push_validation")) == {"failing_share_below_threshold"}
    assert checks((CONNECTION, "invoice_push")) == {"no_dead_letters"}
    assert checks((CONNECTION, "reconciliation")) == {"reconciled"}
