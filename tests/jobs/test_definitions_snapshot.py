"""A snapshot of the wiring the Dagster UI shows: asset keys, groups, kinds, pools, dependencies, checks,
jobs (selection, run-retry tags, executor), schedules (cron + time zone), sensors and resources.

The definitions are built exactly as ``dagster dev -m jobs.definitions`` loads them, from the demo's
``hub.yaml`` (one kingdee_kis connection). Any change to the wiring fails this test with a readable diff;
when the change is intended, regenerate the committed snapshot and review it in the commit:

    HUB_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/jobs/test_definitions_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from hub.demo import HUB_YAML
from jobs.definitions import build_definitions

SNAPSHOT = Path(__file__).with_name("snapshots") / "definitions.json"
UPDATE_ENV = "HUB_UPDATE_SNAPSHOTS"


def _status(status: Any) -> str:
    return getattr(status, "value", str(status))


def describe(defs: dg.Definitions) -> dict[str, Any]:
    """The parts of ``defs`` that ops and the UI depend on, as plain sorted JSON-able data."""
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "pools": sorted(node.pools),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "checks": {
                check.name: {"blocking": graph.get(check).blocking}
                for check in sorted(node.check_keys, key=lambda c: c.name)
            },
        }
    jobs = {
        job.name: {
            "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
            "tags": dict(sorted(job.tags.items())),
            "executor": job.executor_def.name,
        }
        for job in sorted(repo.get_all_jobs(), key=lambda j: j.name)
        if not job.name.startswith("__")  # Dagster's implicit __ASSET_JOB
    }
    schedules = {
        s.name: {
            "cron": s.cron_schedule,
            "timezone": s.execution_timezone,
            "job": s.job_name,
            "default_status": _status(s.default_status),
        }
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    sensors = {
        s.name: {
            "type": type(s).__name__,
            "jobs": sorted(t.job_name for t in s.targets),
            "default_status": _status(s.default_status),
            "minimum_interval_seconds": s.minimum_interval_seconds,
        }
        for s in sorted(repo.sensor_defs, key=lambda s: s.name)
    }
    return {
        "assets": assets,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
        "resources": sorted(repo.get_top_level_resources()),
    }


@pytest.fixture
def project_defs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    config = tmp_path / "hub.yaml"
    config.write_text(
        HUB_YAML.format(name="erp", base_url="http://127.0.0.1:9", stock="WH01"), encoding="utf-8"
    )
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    return build_definitions(str(config))


def test_definitions_match_the_committed_snapshot(project_defs: dg.Definitions) -> None:
    project_defs.get_repository_def().load_all_definitions()  # the same validation as `dg check defs`
    current = json.dumps(describe(project_defs), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current, encoding="utf-8")
    assert SNAPSHOT.exists(), f"no snapshot yet: run with {UPDATE_ENV}=1 and commit {SNAPSHOT}"
    assert json.loads(current) == json.loads(SNAPSHOT.read_text(encoding="utf-8")), (
        f"the Dagster wiring changed; if intended, rerun with {UPDATE_ENV}=1 and review the diff"
    )


def test_without_a_project_only_the_health_slice_loads(tmp_path: Path) -> None:
    described = describe(build_definitions(str(tmp_path / "missing.yaml")))
    assert list(described["assets"]) == ["crm/opportunities"]
    assert list(described["schedules"]) == ["crm_process_health_schedule"]
    assert described["schedules"]["crm_process_health_schedule"]["timezone"] == "Asia/Shanghai"
    assert list(described["sensors"]) == ["alert_on_run_failure"]


def test_snapshot_holds_the_promises_ops_rely_on() -> None:
    """Independent of how the snapshot was regenerated: the production invariants stay true."""
    snap = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert {s["timezone"] for s in snap["schedules"].values()} == {"Asia/Shanghai"}
    assert {a["group"] for a in snap["assets"].values()} <= {"crm", "erp_push", "inventory", "finance"}
    push = snap["assets"]["erp/invoice_push"]
    assert push["pools"] == ["erp:erp"] and push["deps"] == ["erp/push_validation"]
    assert (
        snap["assets"]["erp/push_validation"]["checks"]["failing_share_below_threshold"]["blocking"] is True
    )
    assert snap["jobs"]["erp_nightly_push"]["tags"]["dagster/retry_on_asset_or_op_failure"] == "false"
    assert len(snap["assets"]["crm/opportunities"]["checks"]) == 3
