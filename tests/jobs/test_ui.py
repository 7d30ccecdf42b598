"""``hub ui`` end to end: the real webserver + daemon on a free port, asserted over GraphQL.

A temp ``HUB_HOME`` holds the demo's ``hub.yaml`` (one kingdee_kis connection; no ERP needs to answer for
the definitions to load). The process group is always stopped (SIGINT, then SIGKILL), see dagster_dev.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.demo import HUB_YAML
from tests.jobs.dagster_dev import HUB, LOCATION, DagsterDev

CONNECTION = "erp"
REPOSITORIES = """{ repositoriesOrError { __typename ... on RepositoryConnection { nodes {
  name location { name } jobs { name }
  schedules { name cronSchedule executionTimezone }
  sensors { name } } } } }"""
ASSETS = """{ assetNodes { assetKey { path } groupName
  assetChecksOrError { __typename ... on AssetChecks { checks { name } } } } }"""


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[DagsterDev]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "hub.yaml").write_text(
        HUB_YAML.format(name=CONNECTION, base_url="http://127.0.0.1:9", stock="WH01"), encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HUB_CONFIG", "HUB_DATABASE_URL", "DAGSTER_HOME")}
    env["HUB_HOME"] = str(home)
    server = DagsterDev.start(home, env, tmp_path / "ui.log")
    try:
        entries = server.wait_loaded()
        # A module that raises on import is LOADED too, as a PythonError: insist on a repository location.
        assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
            (LOCATION, "RepositoryLocation")
        ], json.dumps(entries, ensure_ascii=False)
        yield server
    finally:
        server.stop()
    # The persistent instance under HUB_HOME, with telemetry off; the laptop store was migrated.
    assert "enabled: false" in (home / "dagster" / "dagster.yaml").read_text(encoding="utf-8")
    assert (home / "hub.db").exists()


def test_hub_ui_serves_the_project_definitions(ui: DagsterDev) -> None:
    (repo,) = ui.graphql(REPOSITORIES)["repositoriesOrError"]["nodes"]
    assert repo["location"]["name"] == LOCATION

    schedules = {s["name"]: s for s in repo["schedules"]}
    assert {f"{CONNECTION}_nightly_push_schedule", "crm_process_health_schedule"} <= set(schedules)
    assert {s["executionTimezone"] for s in schedules.values()} == {"Asia/Shanghai"}
    assert schedules[f"{CONNECTION}_nightly_push_schedule"]["cronSchedule"] == "0 2 * * *"
    assert schedules["crm_process_health_schedule"]["cronSchedule"] == "30 7 * * *"

    jobs = {j["name"] for j in repo["jobs"]}
    assert {f"{CONNECTION}_nightly_push", "crm_process_health"} <= jobs
    sensors = {s["name"] for s in repo["sensors"]}
    assert {"alert_on_run_failure", f"{CONNECTION}_retry_drainer"} <= sensors

    nodes = {tuple(n["assetKey"]["path"]): n for n in ui.graphql(ASSETS)["assetNodes"]}
    expected_groups = {
        ("crm", "opportunities"): "crm",
        (CONNECTION, "push_validation"): "erp_push",
        (CONNECTION, "invoice_push"): "erp_push",
        (CONNECTION, "reconciliation"): "finance",
    }
    assert {key: nodes[key]["groupName"] for key in expected_groups if key in nodes} == expected_groups
    assert {n["groupName"] for n in nodes.values()} <= {"crm", "erp_push", "inventory", "finance"}

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


def test_hub_ui_refuses_a_busy_port_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "HUB_HOME": str(tmp_path / "home")}
        done = subprocess.run(
            [str(HUB), "ui", "--port", str(port)], env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in " ".join(done.stderr.split())  # rich may wrap
    assert not (tmp_path / "home").exists()  # nothing written before the check
