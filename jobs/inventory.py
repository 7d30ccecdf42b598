"""Inventory snapshots and delivery promises as assets.

    <conn>/inventory_snapshot  (inventory)  pull the ERP's stock (KIS ICInventory/List or an SFTP CSV drop)
        check: snapshot_accepted (a shrunken/truncated/mostly-bad snapshot is refused whole; ops alerted)
    <conn>/incoming_supply     (inventory)  open purchase / production orders with ETA (SFTP CSV drop;
        only when the connection's optional incoming_supply stream is configured)
        check: supply_accepted (a shrunken/mostly-bad supply file is refused whole; ops alerted)
    delivery_promises          (inventory)  a date for every open order and quote line

Job ``<conn>_inventory`` runs the snapshot and the promises on the stream's schedule (hourly by default,
Asia/Shanghai); ``<conn>_incoming_supply`` does the same for supply. For SFTP drops a sensor also starts
the job as soon as a complete file lands.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import yaml

from crm_core.db import hub_home
from crm_core.types import SHANGHAI, now_utc
from hub.alerts import send_alert
from hub.config.project import Project
from hub.errors import ConfigError
from hub.inventory.pull import pull_source
from hub.inventory.sources import InventorySource
from hub.inventory.supply import SupplySource, complete_supply_files, pull_supply
from hub.inventory.watch import complete_files
from hub.promises.store import promise_config_from_mapping, run_promises
from jobs.resources import HubResource, latest_metadata

PROMISES_KEY = dg.AssetKey("delivery_promises")


def snapshot_key(connection: str) -> dg.AssetKey:
    return dg.AssetKey([connection, "inventory_snapshot"])


def supply_key(connection: str) -> dg.AssetKey:
    return dg.AssetKey([connection, "incoming_supply"])


PROMISE_SETTINGS_FILE = "promises.yaml"  # beside hub.yaml: handling/shipping days, lead time, calendar


def promise_settings(project: Project, today: dt.date):  # type: ignore[no-untyped-def]
    """Promise settings from ``promises.yaml`` beside hub.yaml, or the defaults."""
    path = project.path.parent / PROMISE_SETTINGS_FILE
    data = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the promise settings must be a mapping of keys to values.")
        data = loaded
    return promise_config_from_mapping(data, today=today, where=str(path))


def _table(frame) -> dg.MetadataValue:  # type: ignore[no-untyped-def]
    records = [
        dg.TableRecord({k: (v if isinstance(v, int | float) else str(v)) for k, v in row.items()})
        for row in frame.head(20).to_dict("records")
    ]
    columns = [dg.TableColumn(str(c)) for c in frame.columns]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def promises_definitions(
    snapshot_keys: list[dg.AssetKey], supply_keys: list[dg.AssetKey] | None = None
) -> dg.Definitions:
    """The promise asset, downstream of every inventory snapshot and incoming-supply asset (so it never
    runs on stale stock or receipts)."""

    @dg.asset(
        key=PROMISES_KEY,
        deps=[*snapshot_keys, *(supply_keys or [])],
        group_name="inventory",
        description="Promised delivery date of every open order and quote line, with its reason.",
    )
    def delivery_promises(context: dg.AssetExecutionContext, hub: HubResource) -> dg.MaterializeResult:
        today = now_utc().astimezone(SHANGHAI).date()
        run = run_promises(hub.engine(), promise_settings(hub.project(), today), top=20)
        s = run.summary
        return dg.MaterializeResult(
            metadata={
                "lines_promised": dg.MetadataValue.int(s.lines_promised),
                "lines_late": dg.MetadataValue.int(s.lines_late),
                "made_to_order": dg.MetadataValue.int(s.made_to_order),
                "split": dg.MetadataValue.int(s.split),
                "written": dg.MetadataValue.int(run.written),
                "crm_events": dg.MetadataValue.int(run.events),
                "most_at_risk": _table(s.at_risk),
            }
        )

    return dg.Definitions(assets=[delivery_promises])


def inventory_definitions(source: InventorySource, cron: str, timezone: str) -> dg.Definitions:
    name = source.name
    key = snapshot_key(name)

    @dg.asset(
        key=key,
        group_name="inventory",
        kinds={"kingdee" if source.kind == "kingdee_kis" else "sftp"},
        description=f"On-hand stock from {name}; a suspicious snapshot is refused, the last good one kept.",
    )
    def inventory_snapshot(context: dg.AssetExecutionContext, hub: HubResource) -> dg.MaterializeResult:
        project = hub.project()
        report = pull_source(
            hub.engine(), source, local_dir=Path(hub_home()) / "downloads", where=str(project.path)
        )
        for outcome in report.refused:
            send_alert(
                project,
                "snapshot_rejected",
                f"Inventory snapshot from {name} refused",
                f"{outcome.origin}: {outcome.refused_reason}\nThe previous snapshot stays in force.",
                severity="error",
            )
        return dg.MaterializeResult(
            metadata={
                "snapshots_loaded": dg.MetadataValue.int(len(report.loaded)),
                "snapshots_refused": dg.MetadataValue.int(len(report.refused)),
                "rows_loaded": dg.MetadataValue.int(sum(o.rows_loaded for o in report.loaded)),
                "rows_rejected": dg.MetadataValue.int(sum(o.rows_rejected for o in report.outcomes)),
                "refused_reasons": dg.MetadataValue.json([o.refused_reason for o in report.refused]),
            }
        )

    @dg.asset_check(
        asset=key,
        name="snapshot_accepted",
        description="Fails when the last pull's snapshot was refused (previous one kept in force).",
    )
    def snapshot_accepted(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        refused = int(latest_metadata(context, key).get("snapshots_refused", 0))  # type: ignore[call-overload]
        return dg.AssetCheckResult(
            passed=refused == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"snapshots_refused": dg.MetadataValue.int(refused)},
        )

    job = dg.define_asset_job(
        f"{name}_inventory",
        selection=dg.AssetSelection.assets(key, PROMISES_KEY),
        description=f"Pull inventory from {name}, then promise delivery dates.",
    )
    schedule = dg.ScheduleDefinition(
        name=f"{name}_inventory_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    sensors = [file_landed_sensor(source, job)] if source.kind == "erp_sftp_csv" else []
    return dg.Definitions(
        assets=[inventory_snapshot],
        asset_checks=[snapshot_accepted],
        jobs=[job],
        schedules=[schedule],
        sensors=sensors,
    )


def file_landed_sensor(source: InventorySource, job) -> dg.SensorDefinition:  # type: ignore[no-untyped-def]
    """Starts a pull as soon as a complete, not yet processed file is on the SFTP server."""

    @dg.sensor(
        name=f"{source.name}_file_landed",
        job=job,
        minimum_interval_seconds=120,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def file_landed(context: dg.SensorEvaluationContext, hub: HubResource) -> dg.SensorResult:
        files = complete_files(source, where=str(hub.project().path))
        if not files:
            return dg.SensorResult(skip_reason="no new complete file")
        # One run per file version: the run key makes a re-listed file start nothing new.
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"{f.path}:{f.size}:{f.mtime}") for f in files]
        )

    return file_landed


def supply_definitions(source: SupplySource, cron: str, timezone: str) -> dg.Definitions:
    """The incoming-supply asset of one connection, its check, job, schedule and file-landed sensor."""
    name = source.name
    key = supply_key(name)

    @dg.asset(
        key=key,
        group_name="inventory",
        kinds={"sftp"},
        description=f"Open purchase and production orders with ETA from {name}; each file replaces the set.",
    )
    def incoming_supply(context: dg.AssetExecutionContext, hub: HubResource) -> dg.MaterializeResult:
        project = hub.project()
        report = pull_supply(
            hub.engine(), source, local_dir=Path(hub_home()) / "downloads", where=str(project.path)
        )
        for outcome in report.refused:
            send_alert(
                project,
                "snapshot_rejected",
                f"Incoming supply file from {name} refused",
                f"{outcome.origin}: {outcome.refused_reason}\nThe previous incoming supply stays in force.",
                severity="error",
            )
        return dg.MaterializeResult(
            metadata={
                "files_loaded": dg.MetadataValue.int(len(report.loaded)),
                "files_refused": dg.MetadataValue.int(len(report.refused)),
                "rows_loaded": dg.MetadataValue.int(sum(o.rows_loaded for o in report.loaded)),
                "rows_rejected": dg.MetadataValue.int(sum(o.rows_rejected for o in report.outcomes)),
                "rows_closed": dg.MetadataValue.int(sum(o.rows_closed for o in report.outcomes)),
                "refused_reasons": dg.MetadataValue.json([o.refused_reason for o in report.refused]),
            }
        )

    @dg.asset_check(
        asset=key,
        name="supply_accepted",
        description="Fails when the last pull refused a supply file (the previous supply kept in force).",
    )
    def supply_accepted(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        refused = int(latest_metadata(context, key).get("files_refused", 0))  # type: ignore[call-overload]
        return dg.AssetCheckResult(
            passed=refused == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"files_refused": dg.MetadataValue.int(refused)},
        )

    job = dg.define_asset_job(
        f"{name}_incoming_supply",
        selection=dg.AssetSelection.assets(key, PROMISES_KEY),
        description=f"Pull incoming supply from {name}, then promise delivery dates.",
    )
    schedule = dg.ScheduleDefinition(
        name=f"{name}_incoming_supply_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )

    @dg.sensor(
        name=f"{name}_supply_file_landed",
        job=job,
        minimum_interval_seconds=120,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def supply_file_landed(context: dg.SensorEvaluationContext, hub: HubResource) -> dg.SensorResult:
        files = complete_supply_files(source, where=str(hub.project().path))
        if not files:
            return dg.SensorResult(skip_reason="no new complete supply file")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"{f.path}:{f.size}:{f.mtime}") for f in files]
        )

    return dg.Definitions(
        assets=[incoming_supply],
        asset_checks=[supply_accepted],
        jobs=[job],
        schedules=[schedule],
        sensors=[supply_file_landed],
    )
