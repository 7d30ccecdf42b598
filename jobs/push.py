"""The nightly push of invoiced states for one ERP connection, as assets with checks.

    <conn>/push_validation  (erp_push)  enqueue outbox events, validate, quarantine
        check: failing_share_below_threshold (blocking: a mostly-bad batch stops the push)
    <conn>/invoice_push     (erp_push)  send every due invoice, exactly once (pool erp:<conn>)
        check: no_new_dead_letters (warn)
    <conn>/reconciliation   (finance)   compare the store with the ERP; CSV + XLSX for finance
        check: reconciled (error on any mismatch)

Counts and amounts go to metadata, never one log line per record (P12).
"""

from datetime import timedelta
from pathlib import Path

import dagster as dg

from crm_core.db import hub_home
from crm_core.types import SHANGHAI, now_utc
from hub.push.engine import PushResult, prepare_push, queue_summary, run_push
from hub.push.lock import LockBusy
from hub.push.queue import due_summary
from hub.reconcile import pushed_business_range, reconcile
from hub.runtime import PushTarget, open_sink
from jobs.resources import HubResource, latest_metadata

RUN_RETRY_TAGS = {
    # Run retries cover crashed workers only; a failed asset is not re-run blindly (DAGSTER-GX §2.3).
    "dagster/max_retries": "3",
    "dagster/retry_strategy": "FROM_FAILURE",
    "dagster/retry_on_asset_or_op_failure": "false",
}


def _metadata(result: PushResult) -> dict[str, dg.MetadataValue]:
    return {
        key: dg.MetadataValue.int(value)
        if isinstance(value, int) and not isinstance(value, bool)
        else dg.MetadataValue.text(str(value))
        for key, value in result.as_metadata().items()
    }


def push_definitions(target: PushTarget) -> dg.Definitions:
    """Assets, checks, job, schedule and retry sensor for one connection."""
    name = target.name
    prefix = [name]
    validation_key = dg.AssetKey([*prefix, "push_validation"])
    push_key = dg.AssetKey([*prefix, "invoice_push"])
    recon_key = dg.AssetKey([*prefix, "reconciliation"])

    @dg.asset(
        key=validation_key,
        group_name="erp_push",
        kinds={"kingdee"},
        description=f"Invoices issued since the last push to {name}, validated; failures quarantined.",
    )
    def push_validation(context: dg.AssetExecutionContext, hub: HubResource) -> dg.MaterializeResult:
        project = hub.project()
        with open_sink(project, name) as sink:
            try:
                result = prepare_push(hub.engine(), sink, target.settings)
            except LockBusy as exc:
                raise dg.Failure(str(exc), allow_retries=False) from exc
        return dg.MaterializeResult(metadata=_metadata(result))

    @dg.asset_check(
        asset=validation_key,
        blocking=True,
        name="failing_share_below_threshold",
        description="Stops the push when more invoices fail validation than the threshold allows.",
    )
    def failing_share_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        meta = latest_metadata(context, validation_key)
        blocked = str(meta.get("blocked")) == "True"
        share = meta.get("failing_share", "0")
        return dg.AssetCheckResult(
            passed=not blocked,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "failing_share": dg.MetadataValue.text(str(share)),
                "threshold": dg.MetadataValue.float(target.settings.block_threshold),
            },
        )

    @dg.asset(
        key=push_key,
        deps=[validation_key],
        group_name="erp_push",
        pool=f"erp:{name}",
        kinds={"kingdee"},
        description=f"Every invoice, validated again at sending, sent to {name} exactly once.",
    )
    def invoice_push(context: dg.AssetExecutionContext, hub: HubResource) -> dg.MaterializeResult:
        project = hub.project()
        engine = hub.engine()
        with open_sink(project, name) as sink:
            try:
                # Validated again here, in this step's process, and sent as validated (up to 10,000
                # documents a run; see PushResult.validated): a document edited after the validation
                # step is checked again, not sent as it is. The validation step's quarantines stand, so
                # this pass costs one GX run over what remains.
                result = run_push(engine, sink, target.settings)
            except LockBusy as exc:
                raise dg.Failure(str(exc), allow_retries=False) from exc
        if result.blocked:
            raise dg.Failure(
                f"push to {name} blocked: {result.failing_share:.0%} of the due invoices fail validation "
                f"(threshold {target.settings.block_threshold:.0%}); nothing was sent. See the quarantine.",
                allow_retries=False,
            )
        meta = _metadata(result)
        meta["queue"] = dg.MetadataValue.json(queue_summary(engine, name))
        return dg.MaterializeResult(metadata=meta)

    @dg.asset_check(
        asset=push_key, name="no_dead_letters", description="Warns when documents were dead-lettered."
    )
    def dead_letter_check(context: dg.AssetCheckExecutionContext, hub: HubResource) -> dg.AssetCheckResult:
        summary = queue_summary(hub.engine(), name)
        return dg.AssetCheckResult(
            passed=summary.get("dead", 0) == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"queue": dg.MetadataValue.json(summary)},
        )

    @dg.asset(
        key=recon_key,
        deps=[push_key],
        group_name="finance",
        description=f"Document-by-document reconciliation of {name} over the dates the push touched.",
    )
    def reconciliation(context: dg.AssetExecutionContext, hub: HubResource) -> dg.MaterializeResult:
        today = now_utc().astimezone(SHANGHAI).date()
        out_dir = Path(hub_home()) / "reports"
        engine = hub.engine()
        # Everything this night's push touched, and at least yesterday and today.
        first, last = pushed_business_range(engine, name, now_utc() - timedelta(hours=20), today)
        first = min(first, today - timedelta(days=1))
        with open_sink(hub.project(), name) as sink:
            recon = reconcile(engine, sink, first, last, mapping=target.settings.mapping, out_dir=out_dir)
        return dg.MaterializeResult(
            metadata={
                "counts": dg.MetadataValue.json(recon.counts),
                "mismatches": dg.MetadataValue.int(recon.mismatches),
                "run_id": dg.MetadataValue.int(recon.run_id),
                "xlsx": dg.MetadataValue.path(str(recon.xlsx_path)),
                "csv": dg.MetadataValue.path(str(recon.csv_path)),
            }
        )

    @dg.asset_check(
        asset=recon_key, name="reconciled", description="Fails on any document that does not match."
    )
    def reconciled_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        mismatches = int(latest_metadata(context, recon_key).get("mismatches", 0))  # type: ignore[call-overload]
        return dg.AssetCheckResult(
            passed=mismatches == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"mismatches": dg.MetadataValue.int(mismatches)},
        )

    job = dg.define_asset_job(
        f"{name}_nightly_push",
        selection=dg.AssetSelection.assets(validation_key, push_key, recon_key),
        tags=RUN_RETRY_TAGS,
        description=f"Push invoiced states to {name}, then reconcile.",
    )
    schedule = dg.ScheduleDefinition(
        name=f"{name}_nightly_push_schedule",
        job=job,
        cron_schedule=target.cron,
        execution_timezone=target.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )

    @dg.sensor(
        name=f"{name}_retry_drainer",
        job=job,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Starts a push between nightly runs when queued retries fall due.",
    )
    def retry_drainer(context: dg.SensorEvaluationContext, hub: HubResource) -> dg.SensorResult:
        from crm_core.db import session_scope

        with session_scope(hub.engine()) as session:
            due, highest = due_summary(session, name, now_utc())
        if not due:
            return dg.SensorResult(skip_reason="no retries due")
        # One run per distinct set of due items: the run key stops duplicate runs for the same backlog.
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"retry-{highest}-{due}")])

    return dg.Definitions(
        assets=[push_validation, invoice_push, reconciliation],
        asset_checks=[failing_share_check, dead_letter_check, reconciled_check],
        jobs=[job],
        schedules=[schedule],
        sensors=[retry_drainer],
    )
