"""The nightly push through a real Dagster instance against the KIS sandbox on loopback.

Each test runs the job built from a real ``hub.yaml`` (``jobs.definitions.build_definitions``) with
``execute_in_process`` on an instance with SQLite run/event storage, and judges the outcome by the
sandbox's write ledger, the store, the materializations' metadata and the asset-check evaluations.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import openpyxl
import pytest
import sqlalchemy as sa

from connectors.kingdee.kis_sandbox import FaultConfig
from crm_core.db import session_scope
from crm_core.models import DeliveryQueueItem, ExternalBinding, Invoice, QuarantinedRecord
from crm_core.types import now_utc
from hub.errors import TransientError
from hub.push.lock import connection_lock
from hub.push.queue import RetryPattern, enqueue_from_outbox, replay, retry_now, schedule_retry
from jobs.resources import HubResource
from tests.jobs.conftest import CONNECTION, JOB, KIS_ENV, WECOM_KEY, Hub, Robot

VALIDATION = dg.AssetKey([CONNECTION, "push_validation"])
PUSH = dg.AssetKey([CONNECTION, "invoice_push"])
RECON = dg.AssetKey([CONNECTION, "reconciliation"])


# --- helpers: read a run's outcome the way the UI shows it ------------------------------------------


def materialized(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, dict[str, Any]]:
    """Asset key -> metadata values of this run's materializations."""
    out = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        out[materialization.asset_key] = {k: v.value for k, v in materialization.metadata.items()}
    return out


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """Check name -> this run's evaluation."""
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def queue_states(hub: Hub) -> Counter[str]:
    with hub.engine.connect() as conn:
        return Counter(conn.execute(sa.select(DeliveryQueueItem.state)).scalars())


def store_totals(hub: Hub) -> tuple[Decimal, Decimal]:
    """Net and gross totals of every issued invoice in the store."""
    with hub.engine.connect() as conn:
        net, gross = conn.execute(
            sa.select(sa.func.sum(Invoice.total_net), sa.func.sum(Invoice.total_gross)).where(
                Invoice.status == "issued"
            )
        ).one()
    return Decimal(str(net)).quantize(Decimal("0.01")), Decimal(str(gross)).quantize(Decimal("0.01"))


def xlsx_rows(path: str) -> list[tuple[Any, ...]]:
    return list(openpyxl.load_workbook(path, read_only=True).active.iter_rows(values_only=True))


def run_events(hub: Hub, result: dg.ExecuteInProcessResult) -> int:
    return len(hub.instance.get_records_for_run(result.run_id, limit=100_000).records)


# --- the night -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "count"),
    [
        ("sqlite", 2000),
        pytest.param("postgresql", 300, marks=pytest.mark.postgres),
        pytest.param("postgresql", 2000, marks=[pytest.mark.postgres, pytest.mark.slow]),
    ],
)
def test_every_issued_invoice_lands_exactly_once_and_a_quiet_night_writes_nothing(
    backend: str, count: int, hub_factory: Callable[..., Hub], request: pytest.FixtureRequest
) -> None:
    hub = hub_factory(request.getfixturevalue("fresh_sqlite_url" if backend == "sqlite" else "fresh_pg_url"))
    numbers = hub.make_invoices(count)
    net, gross = store_totals(hub)

    first = hub.run()
    assert first.success
    bills = hub.bill_numbers()
    assert len(bills) == count and sorted(bills) == sorted(f"HUB-{n}" for n in numbers)
    meta = materialized(first)
    assert meta[VALIDATION]["enqueued"] == count and meta[VALIDATION]["quarantined"] == 0
    push = meta[PUSH]
    assert (push["pushed"], push["erp_writes"], push["unchanged"]) == (count, count, 0)
    assert (push["quarantined"], push["retry_scheduled"], push["dead_lettered"]) == (0, 0, 0)
    assert Decimal(push["pushed_amount"]) == gross
    assert push["queue"] == {"done": count}
    assert meta[RECON]["counts"] == {"matched": count} and meta[RECON]["mismatches"] == 0
    assert all(e.passed for e in checks(first).values()) and len(checks(first)) == 3

    # Finance's report: one row per document, amounts as numbers, a totals row that adds up.
    rows = xlsx_rows(meta[RECON]["xlsx"])
    assert rows[0][0] == "对账结果" and rows[-1][0] == "合计" and len(rows) == count + 2
    assert {r[0] for r in rows[1:-1]} == {"一致"}
    assert all(isinstance(v, int | float) for r in rows[1:-1] for v in (r[5], r[6]))  # numbers, not text
    assert Decimal(str(rows[-1][5])).quantize(Decimal("0.01")) == net
    assert Decimal(str(rows[-1][6])).quantize(Decimal("0.01")) == net

    # P12: summaries as metadata, never an event per record: only the run's fixed events.
    assert run_events(hub, first) < 60

    writes = hub.writes()
    second = hub.run()
    assert second.success
    assert hub.writes() == writes, "a night with no change wrote to the ERP"
    again = materialized(second)
    assert again[VALIDATION]["enqueued"] == 0
    assert (again[PUSH]["pushed"], again[PUSH]["erp_writes"]) == (0, 0)
    assert again[RECON]["counts"] == {"matched": count}


def test_under_5xx_and_lost_replies_every_document_lands_once_over_repeated_runs(
    hub_factory: Callable[..., Hub], fresh_sqlite_url: str
) -> None:
    # Duplicate bill numbers are accepted here, so only the hub's own lookups stand between a lost
    # reply and a second bill. Three client attempts leave some records to the queue's retries.
    faults = FaultConfig(seed=11, p_5xx=0.3, p_lost_reply=0.1, refuse_duplicate_bill_no=False)
    hub = hub_factory(fresh_sqlite_url, faults=faults, client_attempts=3)
    numbers = hub.make_invoices(150)
    totals: Counter[str] = Counter()
    failed_runs = 0
    for _ in range(10):
        result = hub.run()
        failed_runs += not result.success  # e.g. the material list itself failed: the next run retries
        push = materialized(result).get(PUSH, {})
        totals.update({k: push.get(k, 0) for k in ("pushed", "retry_scheduled", "dead_lettered")})
        if queue_states(hub) == Counter({"done": 150}):
            break
        with session_scope(hub.engine) as session:
            retry_now(session, CONNECTION)  # `hub queue retry`: no waiting out the retry pattern here
    assert queue_states(hub) == Counter({"done": 150})
    bills = Counter(hub.bill_numbers())
    assert set(bills) == {f"HUB-{n}" for n in numbers}
    assert max(bills.values()) == 1, f"created twice: {[b for b, n in bills.items() if n > 1]}"
    stats = hub.admin.stats()
    hub.admin.set_faults(p_5xx=0.0, p_lost_reply=0.0)  # reconcile on a calm ERP (it reads, never writes)
    assert stats["5xx"] > 0 and stats["lost_replies"] > 0, stats
    assert totals["retry_scheduled"] > 0, "the faults never reached the queue's retries"
    assert totals["dead_lettered"] == 0
    # Each document counted as pushed once (found-after-a-lost-reply counts as pushed, not re-sent).
    assert totals["pushed"] == 150
    final = hub.run()
    assert final.success and materialized(final)[RECON]["counts"] == {"matched": 150}


def test_a_poison_invoice_is_quarantined_while_the_rest_land_then_a_replay_after_the_fix_lands_it_once(
    hub: Hub,
) -> None:
    unknown = hub.add_product("SKU-NEW", "M-NEW-01")
    good = hub.make_invoices(9)
    [poison] = hub.make_invoices(1, product_ids=[unknown])
    first = hub.run()
    assert first.success  # quarantine is not a failure: the rest went on
    meta = materialized(first)
    assert meta[VALIDATION]["quarantined"] == 1 and Decimal(meta[VALIDATION]["quarantined_amount"]) > 0
    assert meta[PUSH]["pushed"] == 9
    assert sorted(hub.bill_numbers()) == sorted(f"HUB-{n}" for n in good)
    assert meta[RECON]["counts"] == {"matched": 9, "pending": 1}
    with session_scope(hub.engine) as session:
        reasons = session.scalars(
            sa.select(QuarantinedRecord.reasons)
            .join(Invoice, Invoice.id == QuarantinedRecord.canonical_id)
            .where(Invoice.number == poison)
        ).one()
    assert [r["column"] for r in reasons] == ["materials_resolvable"]

    # Finance creates the material in KIS; ops replay the quarantined item: it lands once.
    hub.admin.seed({"materials": [{"number": "M-NEW-01", "name": "新物料", "model": "M12", "unit": "PCS"}]})
    with session_scope(hub.engine) as session:
        assert replay(session, CONNECTION) == 1
    second = hub.run()
    assert second.success and materialized(second)[PUSH]["pushed"] == 1
    assert sorted(hub.bill_numbers()) == sorted(f"HUB-{n}" for n in [*good, poison])
    assert materialized(second)[RECON]["counts"] == {"matched": 10}
    writes = hub.writes()
    assert hub.run().success and hub.writes() == writes


def test_an_invoice_changed_after_the_validation_step_is_validated_again_before_it_leaves(hub: Hub) -> None:
    """Validation and push are separate steps: a document edited in between must not leave unvalidated."""
    from crm_core.models import InvoiceLine

    no_code = hub.add_product("SKU-NOCODE", None)
    numbers = hub.make_invoices(5)
    job = hub.defs.resolve_job_def(JOB)
    validated = job.execute_in_process(instance=hub.instance, asset_selection=[VALIDATION])
    assert validated.success and materialized(validated)[VALIDATION]["quarantined"] == 0
    with session_scope(hub.engine) as session:  # edited after validation: its product has no ERP code
        invoice_id = session.scalars(sa.select(Invoice.id).where(Invoice.number == numbers[0])).one()
        session.execute(
            sa.update(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id).values(product_id=no_code)
        )
    pushed = job.execute_in_process(instance=hub.instance, asset_selection=[PUSH], raise_on_error=False)
    assert pushed.success
    meta = materialized(pushed)[PUSH]
    assert (meta["pushed"], meta["quarantined"]) == (4, 1)
    assert sorted(hub.bill_numbers()) == sorted(f"HUB-{n}" for n in numbers[1:])


def _blocked_run(hub: Hub) -> dg.ExecuteInProcessResult:
    no_code = hub.add_product("SKU-NOCODE", None)
    hub.make_invoices(3)
    hub.make_invoices(2, product_ids=[no_code])  # 40% fail validation > the 20% threshold
    return hub.run()


def test_a_batch_above_the_threshold_blocks_the_push(hub: Hub) -> None:
    result = _blocked_run(hub)
    assert not result.success
    evaluation = checks(result)["failing_share_below_threshold"]
    assert not evaluation.passed
    assert evaluation.metadata["failing_share"].value == "0.4"
    assert set(materialized(result)) == {VALIDATION}, "invoice_push ran despite the blocking check"
    assert materialized(result)[VALIDATION]["blocked"] == "True"
    assert hub.bill_numbers() == []
    assert queue_states(hub) == Counter({"pending": 5}), "a blocked batch is left for people to look at"


def test_reconciliation_finds_a_bill_deleted_in_the_erp_behind_our_back(hub: Hub) -> None:
    numbers = hub.make_invoices(6)
    first = hub.run()
    assert first.success and checks(first)["reconciled"].passed
    with session_scope(hub.engine) as session:
        fid = int(
            session.scalars(
                sa.select(ExternalBinding.external_id)
                .join(Invoice, Invoice.id == ExternalBinding.canonical_id)
                .where(Invoice.number == numbers[2])
            ).one()
        )
    hub.client.delete_outbound(fid)  # someone in finance deletes the outbound in KIS

    second = hub.run()
    evaluation = checks(second)["reconciled"]
    assert not evaluation.passed and evaluation.metadata["mismatches"].value == 1
    recon = materialized(second)[RECON]
    assert recon["counts"] == {"matched": 5, "missing_in_erp": 1}
    rows = xlsx_rows(recon["xlsx"])
    missing = [r for r in rows[1:-1] if r[0] == "ERP缺失"]
    assert [r[3] for r in missing] == [f"HUB-{numbers[2]}"]
    net, _ = store_totals(hub)
    assert Decimal(str(rows[-1][5])).quantize(Decimal("0.01")) == net  # CRM column: all six
    erp_total = sum((Decimal(str(r[6])) for r in rows[1:-1] if r[6] is not None), Decimal("0"))
    assert Decimal(str(rows[-1][6])).quantize(Decimal("0.01")) == erp_total.quantize(Decimal("0.01"))
    assert erp_total.quantize(Decimal("0.01")) < net
    assert materialized(second)[PUSH]["erp_writes"] == 0  # reported, not silently re-sent


def test_a_second_push_while_one_runs_is_skipped(hub: Hub) -> None:
    hub.make_invoices(2)
    holding, release = threading.Event(), threading.Event()

    def other_push() -> None:  # another process's run holding the connection's lock
        with connection_lock(hub.engine, f"push:{CONNECTION}"):
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=other_push)
    thread.start()
    try:
        assert holding.wait(10)
        result = hub.run()
    finally:
        release.set()
        thread.join()
    assert not result.success
    failure = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error = failure[0].step_failure_data.error
    assert error is not None and "skipped" in error.message
    assert hub.bill_numbers() == [] and queue_states(hub) == Counter()
    assert hub.run().success and len(hub.bill_numbers()) == 2


# --- sensors ---------------------------------------------------------------------------------------


def test_the_retry_drainer_requests_a_run_only_when_retries_are_due(hub: Hub) -> None:
    sensor = hub.defs.get_sensor_def(f"{CONNECTION}_retry_drainer")

    def tick() -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=hub.instance, resources={"hub": HubResource(config_path=str(hub.config))}
        )
        result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        return result

    assert tick().run_requests == []  # empty queue

    hub.make_invoices(3)
    assert hub.run().success
    assert tick().run_requests == []  # all done

    # Two documents change; the night's push fails them transiently and schedules retries (60 s away).
    hub.make_invoices(2)
    with session_scope(hub.engine) as session:
        enqueue_from_outbox(session, CONNECTION)
        for item in session.scalars(sa.select(DeliveryQueueItem).where(DeliveryQueueItem.state == "pending")):
            assert schedule_retry(item, TransientError("KIS 503"), RetryPattern(), now_utc())
    nothing_due = tick()
    assert nothing_due.run_requests == [] and "no retries due" in (nothing_due.skip_reason or "")

    with session_scope(hub.engine) as session:
        assert retry_now(session, CONNECTION) == 2  # the retries fall due
    due = tick()
    assert due.run_requests is not None and len(due.run_requests) == 1
    again = tick().run_requests  # the same backlog gives the same run key: no duplicate runs
    assert again and again[0].run_key == due.run_requests[0].run_key
    assert hub.run().success and len(hub.bill_numbers()) == 5
    assert tick().run_requests == []


def test_a_failed_run_alerts_the_wecom_robot_without_leaking_secrets(
    hub: Hub, robot: Robot, caplog: pytest.LogCaptureFixture
) -> None:
    failed = _blocked_run(hub)
    assert not failed.success
    sensor = hub.defs.get_sensor_def("alert_on_run_failure")

    def evaluate() -> None:
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure",
            dagster_instance=hub.instance,
            dagster_run=failed.dagster_run,
            dagster_event=failed.get_run_failure_event(),
            resources={"hub": HubResource(config_path=str(hub.config))},
        ).for_run_failure()
        sensor(context)

    evaluate()
    assert len(robot.posts) == 1
    post = robot.posts[0]
    assert post["path"].startswith("/cgi-bin/webhook/send?key=")  # the robot's protocol: key in the URL
    message = json.loads(post["body"])
    assert message["msgtype"] == "text"
    assert JOB in message["text"]["content"] and failed.run_id in message["text"]["content"]
    secrets = [WECOM_KEY, *KIS_ENV.values()]
    assert not any(s in post["body"] for s in secrets)

    # A robot that refuses the message and echoes the key back: the sensor survives, says so, leaks nothing.
    robot.reply = {"errcode": 93000, "errmsg": f"invalid webhook url key={WECOM_KEY}"}
    with caplog.at_level(logging.DEBUG):
        evaluate()
    assert len(robot.posts) == 2
    assert "ops_robot" in caplog.text and "93000" in caplog.text
    assert not any(s in caplog.text for s in secrets)


def test_definitions_carry_the_pool_the_schedule_and_the_sensors(hub: Hub, tmp_path: Path) -> None:
    push_asset = hub.defs.resolve_assets_def(PUSH)
    assert push_asset.op.pool == f"erp:{CONNECTION}"
    schedule = hub.defs.get_schedule_def(f"{CONNECTION}_nightly_push_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "Asia/Shanghai")
    assert {s.name for s in hub.defs.sensors or []} == {f"{CONNECTION}_retry_drainer", "alert_on_run_failure"}
