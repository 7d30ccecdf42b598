"""Production operation on PostgreSQL: ``deploy/dagster.yaml`` verbatim, run by ``hub ui`` (webserver +
daemon + code server) against a fresh PostgreSQL database for the Dagster instance, the canonical store in
a second PostgreSQL database, and the KIS sandbox on loopback counting every accepted write in its ledger.

- Two pushes launched at the same moment: the ``erp:erp`` pool (one slot, run granularity) holds the
  second run in the queue until the first has finished; both succeed and every document lands once.
- Fault matrix case 17 (PERF-RELIABILITY §B.4): a run whose worker is SIGKILLed mid-push, after at least
  one batch was checkpointed. The code server reports the run failed without any step failure; the daemon's
  run retries (``dagster/retry_strategy`` FROM_FAILURE, tagged by jobs/push.py) start a child run that
  re-executes the push step and what is downstream of it, none of the steps that had succeeded; it resumes
  from the queue's checkpoint (done batches untouched, the in-flight batch looked up by bill number), sends
  no document the ERP had acknowledged, and ends with the ledger check at 0 lost / duplicated / phantom /
  stale (the sandbox is set to *accept* duplicate bill numbers, so only the hub prevents one).

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
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster import DagsterEventType, DagsterRunStatus

from connectors.kingdee.kis_sandbox import FaultConfig
from crm_core.models import DeliveryQueueItem
from hub.config.project import load_project
from hub.ledger import CREATE_ENDPOINT, check_ledger
from hub.runtime import push_target
from tests.jobs.conftest import CONNECTION, Hub
from tests.jobs.dagster_dev import DagsterDev

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DEPLOY_YAML = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"
JOB = f"{CONNECTION}_nightly_push"
VALIDATION_STEP = f"{CONNECTION}__push_validation"
PUSH_STEP = f"{CONNECTION}__invoice_push"
N_KILLED = 400  # documents of the killed push: 4 batches of hub.yaml's 100
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


def _pid(entry: dg.EventLogEntry) -> int:
    """The process that logged ``entry`` (the run worker for RUN_START, the step process for STEP_START)."""
    pid = entry.dagster_event.pid if entry.dagster_event else None
    assert isinstance(pid, int), entry
    return pid


def _queue_states(hub: Hub) -> Counter[str]:
    """Queue items of the connection per state: the push's checkpoint (``done`` is committed per batch)."""
    with hub.engine.connect() as conn:
        return Counter(
            conn.execute(
                sa.select(DeliveryQueueItem.state).where(DeliveryQueueItem.system == CONNECTION)
            ).scalars()
        )


def _settled_ledger(hub: Hub) -> list[dict[str, Any]]:
    """The sandbox's sales-outbound creates once no write is arriving any more (a request the killed
    worker had on the wire may still be committed by the sandbox just after the kill)."""
    last = hub.admin.ledger(CREATE_ENDPOINT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = hub.admin.ledger(CREATE_ENDPOINT)
        if len(now) == len(last):
            return now
        last = now
    raise AssertionError(f"the sandbox kept receiving writes after the kill ({len(last)} creates)")


def _step_keys(production: Production, run_id: str, kind: DagsterEventType) -> set[str]:
    return {e.step_key for e in production.events(run_id, kind) if e.step_key}


def test_a_run_whose_worker_is_killed_mid_push_resumes_at_the_push_step_exactly_once(
    production: Production,
) -> None:
    """PERF-RELIABILITY §B.4 case 17."""
    hub = production.hub
    target = push_target(load_project(hub.config, check_env=False), CONNECTION)
    batch = target.settings.batch_size
    invoices = hub.make_invoices(N_KILLED)
    run_id = production.server.launch(JOB)

    # Wait until the push step is sending and at least one batch is checkpointed (a create of batch 2 is
    # only sent after batch 1's commit), with most documents still to go.
    kill_at = batch + 20
    deadline = time.monotonic() + RUN_DEADLINE_S
    acked = 0
    while time.monotonic() < deadline:
        steps = [e for e in production.events(run_id, DagsterEventType.STEP_START) if e.step_key == PUSH_STEP]
        acked = len(hub.admin.ledger(CREATE_ENDPOINT))
        if steps and acked >= kill_at:
            break
        run = production.instance.get_run_by_id(run_id)
        assert run is not None and run.status not in FINISHED, production.server.tail()
        time.sleep(0.2)
    else:
        raise AssertionError(
            f"the push never reached {kill_at} documents ({acked})\n{production.server.tail()}"
        )
    (run_start,) = production.events(run_id, DagsterEventType.RUN_START)
    # The run worker first (so no one is left to report a step failure), then its step process (the same
    # process under the in-process executor; a separate one under the multiprocess executor).
    _kill(_pid(run_start))
    _kill(_pid(steps[0]))
    killed_at = time.time()

    before = _settled_ledger(hub)
    checkpoint = _queue_states(hub)
    # Nothing has been retried yet: every write in ``before`` is the crashed run's.
    assert production.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": run_id})) == []
    acked_bills = {w["bill_no"] for w in before}
    assert 0 < len(before) < len(invoices), "the kill must land mid-push for this test to mean anything"
    assert len(acked_bills) == len(before)  # no duplicate even before the retry
    # The checkpoint: whole batches done, the batch being sent left in flight, the rest pending.
    assert checkpoint["done"] >= batch and checkpoint["done"] % batch == 0, checkpoint
    assert 0 < checkpoint["in_flight"] <= batch, checkpoint
    assert checkpoint["done"] <= len(before) <= checkpoint["done"] + checkpoint["in_flight"], (
        checkpoint,
        len(before),
    )

    crashed = production.wait_finished(run_id)
    assert crashed.status == DagsterRunStatus.FAILURE
    assert production.events(run_id, DagsterEventType.STEP_FAILURE) == []  # a crash, not a failed asset
    assert crashed.tags.get("dagster/retry_strategy") == "FROM_FAILURE", crashed.tags
    assert int(crashed.tags.get("dagster/max_retries", "0")) >= 1, crashed.tags
    upstream_done = _step_keys(production, run_id, DagsterEventType.STEP_SUCCESS)
    assert VALIDATION_STEP in upstream_done and PUSH_STEP not in upstream_done, upstream_done

    retry = production.child_of(run_id)
    assert retry.tags.get("dagster/retry_number") == "1"
    assert retry.tags.get("dagster/is_resume_retry") == "true", retry.tags  # FROM_FAILURE, not ALL_STEPS
    finished = production.wait_finished(retry.run_id)
    assert finished.status == DagsterRunStatus.SUCCESS, production.server.tail()

    # The child re-ran the failed step and what is downstream of it, none of the steps that had succeeded.
    rerun = _step_keys(production, retry.run_id, DagsterEventType.STEP_START)
    assert PUSH_STEP in rerun and rerun.isdisjoint(upstream_done), (rerun, upstream_done)
    assert rerun == set(finished.step_keys_to_execute or ()), finished.step_keys_to_execute
    assert rerun == _step_keys(production, retry.run_id, DagsterEventType.STEP_SUCCESS)
    materialized = {
        e.asset_materialization.asset_key
        for e in production.events(retry.run_id, DagsterEventType.ASSET_MATERIALIZATION)
        if e.asset_materialization
    }
    assert dg.AssetKey([CONNECTION, "push_validation"]) not in materialized, materialized

    # It resumed from the checkpoint: the done batches were not touched, the in-flight ones were looked
    # up, and only what the ERP had never acknowledged was sent.
    (push,) = [
        e.asset_materialization
        for e in production.events(retry.run_id, DagsterEventType.ASSET_MATERIALIZATION)
        if e.asset_materialization
        and e.asset_materialization.asset_key == dg.AssetKey([CONNECTION, "invoice_push"])
    ]
    assert push.metadata["pushed"].value == len(invoices) - checkpoint["done"], push.metadata
    assert push.metadata["erp_writes"].value == len(invoices) - len(before), push.metadata
    last_seq = max(w["seq"] for w in before)
    resent = [w["bill_no"] for w in hub.admin.ledger(CREATE_ENDPOINT) if w["seq"] > last_seq]
    assert acked_bills.isdisjoint(resent), sorted(acked_bills & set(resent))[:5]

    _assert_every_document_once(hub, invoices)
    report = check_ledger(hub.engine, hub.admin.ledger(), system=CONNECTION, mapping=target.settings.mapping)
    assert report.ok, report.summary()
    assert (report.checked, report.delivered, report.erp_bills, report.unsettled) == (
        len(invoices),
        len(invoices),
        len(invoices),
        0,
    ), report.summary()
    checks = {
        e.asset_check_evaluation.check_name: e.asset_check_evaluation.passed
        for e in production.events(retry.run_id, DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.asset_check_evaluation
    }
    assert checks.get("reconciled") is True, checks
    crash_record = production.instance.get_run_record_by_id(run_id)
    retry_record = production.instance.get_run_record_by_id(retry.run_id)
    assert crash_record and retry_record and crash_record.end_time and retry_record.start_time
    assert retry_record.end_time
    print(
        f"case 17: crash reported {crash_record.end_time - killed_at:.1f} s after the kill, retry ran "
        f"{retry_record.start_time - killed_at:.1f}..{retry_record.end_time - killed_at:.1f} s after it; "
        f"killed at {len(before)}/{len(invoices)} acked, checkpoint {dict(checkpoint)}, "
        f"retry pushed {push.metadata['pushed'].value} with {push.metadata['erp_writes'].value} ERP writes, "
        f"re-ran {sorted(rerun)}; {report.summary()}"
    )
