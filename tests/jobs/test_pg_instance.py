"""Production operation on PostgreSQL: ``deploy/dagster.yaml`` verbatim, run by ``hub ui`` (webserver +
daemon + code server) against a fresh PostgreSQL database for the Dagster instance, the canonical store in
a second PostgreSQL database, and the KIS sandbox on loopback counting every accepted write in its ledger.

- Two pushes launched at the same moment: the ``erp:erp`` pool (one slot, run granularity) holds the
  second run in the queue until the first has finished; both succeed and every document lands once.
- A run whose worker is SIGKILLed mid-push: the code server reports the run failed without any step
  failure, the daemon's run retries start a child run from the failure, and it finishes the push without
  a duplicate document (the sandbox is set to *accept* duplicate bill numbers, so only the hub prevents one).

Uses the ``hub_factory`` fixture of tests/jobs/conftest.py (store, sandbox, hub.yaml, environment).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster import DagsterEventType, DagsterRunStatus

from connectors.kingdee.kis_sandbox import FaultConfig
from tests.jobs.conftest import Hub
from tests.jobs.dagster_dev import DagsterDev

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DEPLOY_YAML = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"
JOB = "erp_nightly_push"
PUSH_STEP = "erp__invoice_push"
RUN_DEADLINE_S = 300.0
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@pytest.fixture
def store_pg_url(pg_admin_url: str) -> Iterator[str]:
    """A second fresh database: the canonical store lives apart from the Dagster instance."""
    name = f"hubstore_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@dataclass
class Production:
    hub: Hub
    server: DagsterDev
    instance: dg.DagsterInstance

    def wait_finished(self, run_id: str) -> dg.DagsterRun:
        deadline = time.monotonic() + RUN_DEADLINE_S
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.status in FINISHED:
                return run
            time.sleep(0.5)
        raise AssertionError(f"run {run_id} did not finish in {RUN_DEADLINE_S:.0f} s\n{self.server.tail()}")

    def events(self, run_id: str, kind: DagsterEventType) -> list[dg.EventLogEntry]:
        return list(self.instance.all_logs(run_id, of_type=kind))

    def span(self, run_id: str) -> tuple[float, float]:
        """Wall-clock start and end of a finished run, from its own events."""
        (start,) = self.events(run_id, DagsterEventType.RUN_START)
        (end,) = self.events(run_id, DagsterEventType.RUN_SUCCESS)
        return start.timestamp, end.timestamp

    def child_of(self, run_id: str) -> dg.DagsterRun:
        deadline = time.monotonic() + RUN_DEADLINE_S
        while time.monotonic() < deadline:
            runs = self.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))
            if runs:
                return runs[0]
            time.sleep(0.5)
        raise AssertionError(f"no retry of run {run_id} in {RUN_DEADLINE_S:.0f} s\n{self.server.tail()}")


@pytest.fixture
def production(
    hub_factory: Callable[..., Hub],
    fresh_pg_url: str,
    store_pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Production]:
    # 30 ms per ERP call: a push of a few hundred documents lasts long enough to be caught mid-flight.
    hub = hub_factory(store_pg_url, faults=FaultConfig(latency_ms=30, refuse_duplicate_bill_no=False))
    home = tmp_path / "prod"
    (home / "dagster").mkdir(parents=True)
    shutil.copy(DEPLOY_YAML, home / "dagster" / "dagster.yaml")  # the production file, unchanged
    instance_url = sa.engine.make_url(fresh_pg_url)
    for key, value in {
        "DAGSTER_PG_USER": instance_url.username or "",
        "DAGSTER_PG_PASSWORD": instance_url.password or "",
        "DAGSTER_PG_HOST": instance_url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(instance_url.port or 5432),
        "DAGSTER_PG_DB": instance_url.database or "",
    }.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    # The deployment step deploy/README.md prescribes for every ERP connection: the pool's slot exists
    # before the first night (default_limit alone is applied lazily, after two queued runs may both start).
    subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "instance", "concurrency", "set", "erp:erp", "1"],
        env=dict(os.environ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = DagsterDev.start(home, dict(os.environ), tmp_path / "ui.log")
    try:
        server.wait_loaded()
        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            yield Production(hub, server, instance)
    finally:
        server.stop()


def _assert_every_document_once(hub: Hub, invoices: list[str]) -> None:
    bills = Counter(hub.bill_numbers())
    assert len(bills) == len(invoices), f"{len(bills)} distinct bills in the ERP for {len(invoices)} invoices"
    assert [bill for bill, n in bills.items() if n > 1] == []


def test_two_pushes_at_once_are_serialised_by_the_erp_pool(production: Production) -> None:
    hub = production.hub
    invoices = hub.make_invoices(60)
    first, second = production.server.launch(JOB), production.server.launch(JOB)

    runs = [production.wait_finished(first), production.wait_finished(second)]

    assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS] * 2, production.server.tail()
    (a_start, a_end), (b_start, b_end) = sorted(production.span(r.run_id) for r in runs)
    assert a_end <= b_start, "the second push started before the first had finished"
    later = max(runs, key=lambda r: production.span(r.run_id)[0])
    # The daemon held it in the queue because of the pool (not, say, because the first was quick).
    assert f"Run {later.run_id} is blocked by global concurrency limits" in production.server.tail(10**7)
    # It went second and found nothing left to send.
    (push,) = [
        e.asset_materialization
        for e in production.events(later.run_id, DagsterEventType.ASSET_MATERIALIZATION)
        if e.asset_materialization
        and e.asset_materialization.asset_key == dg.AssetKey(["erp", "invoice_push"])
    ]
    assert push.metadata["erp_writes"].value == 0 and push.metadata["pushed"].value == 0
    _assert_every_document_once(hub, invoices)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_a_run_whose_worker_is_killed_is_retried_without_a_duplicate_document(production: Production) -> None:
    hub = production.hub
    invoices = hub.make_invoices(400)
    run_id = production.server.launch(JOB)

    # Wait until the push step is sending (some documents acknowledged, most still to go).
    deadline = time.monotonic() + RUN_DEADLINE_S
    while time.monotonic() < deadline:
        steps = [e for e in production.events(run_id, DagsterEventType.STEP_START) if e.step_key == PUSH_STEP]
        if steps and len(hub.bill_numbers()) >= 20:
            break
        run = production.instance.get_run_by_id(run_id)
        assert run is not None and run.status not in FINISHED, production.server.tail()
        time.sleep(0.2)
    else:
        raise AssertionError(f"the push never started\n{production.server.tail()}")
    (run_start,) = production.events(run_id, DagsterEventType.RUN_START)
    # The run worker first (so no one is left to report a step failure), then its step process (the same
    # process under the in-process executor; a separate one under the multiprocess executor).
    _kill(run_start.dagster_event.pid)
    _kill(steps[0].dagster_event.pid)
    sent_before_crash = len(hub.bill_numbers())
    assert 0 < sent_before_crash < len(invoices), "the kill must land mid-push for this test to mean anything"

    crashed = production.wait_finished(run_id)
    assert crashed.status == DagsterRunStatus.FAILURE
    assert production.events(run_id, DagsterEventType.STEP_FAILURE) == []  # a crash, not a failed asset

    retry = production.child_of(run_id)
    assert retry.tags.get("dagster/retry_number") == "1"
    finished = production.wait_finished(retry.run_id)
    assert finished.status == DagsterRunStatus.SUCCESS, production.server.tail()

    _assert_every_document_once(hub, invoices)
    checks = {
        e.asset_check_evaluation.check_name: e.asset_check_evaluation.passed
        for e in production.events(retry.run_id, DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.asset_check_evaluation
    }
    assert checks.get("reconciled") is True, checks
