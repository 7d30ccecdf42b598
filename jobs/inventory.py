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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from connectors.filedrop.sftp import RemoteFile
from crm_core.db import hub_home
from crm_core.types import SHANGHAI, now_utc
from hub.alerts import send_alert
from hub.config.project import Project
from hub.errors import ConfigError
from hub.inventory.pull import PullReport, pull_source
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


def _pulled_stream_definitions(
    source: InventorySource | SupplySource,
    cron: str,
    timezone: str,
    *,
    key: dg.AssetKey,
    kind: str,
    description: str,
    pull: Callable[..., PullReport[Any]],
    counted: str,
    summed: tuple[str, ...],
    refused_what: str,
    kept_what: str,
    check_name: str,
    check_description: str,
    job_name: str,
    pulled_what: str,
    sensor: Callable[[Any], dg.SensorDefinition] | None,
) -> dg.Definitions:
    """One pulled stream of a connection (inventory snapshot or incoming supply): the asset that pulls and
    alerts ops on each refused file, its check, its job (the stream, then the promises), the job's schedule
    and, when given, its file-landed sensor. The metadata counts ``<counted>_loaded``/``_refused`` files and
    sums the ``summed`` outcome counters over every file taken."""
    name = source.name

    @dg.asset(key=key, group_name="inventory", kinds={kind}, description=description)
    def pulled_stream(context: dg.AssetExecutionContext, hub: HubResource) -> dg.MaterializeResult:
        project = hub.project()
        report = pull(hub.engine(), source, local_dir=Path(hub_home()) / "downloads", where=str(project.path))
        for outcome in report.refused:
            send_alert(
                project,
                "snapshot_rejected",
                f"{refused_what} from {name} refused",
                f"{outcome.origin}: {outcome.refused_reason}\nThe previous {kept_what} stays in force.",
                severity="error",
            )
        return dg.MaterializeResult(
            metadata={
                f"{counted}_loaded": dg.MetadataValue.int(len(report.loaded)),
                f"{counted}_refused": dg.MetadataValue.int(len(report.refused)),
                "rows_loaded": dg.MetadataValue.int(sum(o.rows_loaded for o in report.loaded)),
                **{
                    counter: dg.MetadataValue.int(sum(getattr(o, counter) for o in report.outcomes))
                    for counter in summed
                },
                "refused_reasons": dg.MetadataValue.json([o.refused_reason for o in report.refused]),
            }
        )

    @dg.asset_check(asset=key, name=check_name, description=check_description)
    def pull_accepted(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        refused = int(latest_metadata(context, key).get(f"{counted}_refused", 0))  # type: ignore[call-overload]
        return dg.AssetCheckResult(
            passed=refused == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={f"{counted}_refused": dg.MetadataValue.int(refused)},
        )

    job = dg.define_asset_job(
        job_name,
        selection=dg.AssetSelection.assets(key, PROMISES_KEY),
        description=f"Pull {pulled_what} from {name}, then promise delivery dates.",
    )
    schedule = dg.ScheduleDefinition(
        name=f"{job_name}_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(
        assets=[pulled_stream],
        asset_checks=[pull_accepted],
        jobs=[job],
        schedules=[schedule],
        sensors=[sensor(job)] if sensor else [],
    )


def inventory_definitions(source: InventorySource, cron: str, timezone: str) -> dg.Definitions:
    name = source.name
    return _pulled_stream_definitions(
        source,
        cron,
        timezone,
        key=snapshot_key(name),
        kind="kingdee" if source.kind == "kingdee_kis" else "sftp",
        description=f"On-hand stock from {name}; a suspicious snapshot is refused, the last good one kept.",
        pull=pull_source,
        counted="snapshots",
        summed=("rows_rejected",),
        refused_what="Inventory snapshot",
        kept_what="snapshot",
        check_name="snapshot_accepted",
        check_description="Fails when the last pull's snapshot was refused (previous one kept in force).",
        job_name=f"{name}_inventory",
        pulled_what="inventory",
        sensor=partial(file_landed_sensor, source) if source.kind == "erp_sftp_csv" else None,
    )


def file_landed_sensor(source: InventorySource, job: Any) -> dg.SensorDefinition:
    """Starts a pull as soon as a complete, not yet processed file is on the SFTP server."""
    return _file_landed_sensor(
        source,
        job,
        name=f"{source.name}_file_landed",
        list_files=complete_files,
        skip_reason="no new complete file",
    )


def _file_landed_sensor(
    source: InventorySource | SupplySource,
    job: Any,  # what dg.define_asset_job returns (its class is not public)
    *,
    name: str,
    list_files: Callable[..., list[RemoteFile]],
    skip_reason: str,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name, job=job, minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING
    )
    def file_landed(context: dg.SensorEvaluationContext, hub: HubResource) -> dg.SensorResult:
        landed = list_files(source, where=str(hub.project().path))
        if not landed:
            return dg.SensorResult(skip_reason=skip_reason)
        # One run per file version: the run key makes a re-listed file start nothing new.
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=f"{f.path}:{f.size}:{f.mtime}") for f in landed]
        )

    return file_landed


def supply_definitions(source: SupplySource, cron: str, timezone: str) -> dg.Definitions:
    """The incoming-supply asset of one connection, its check, job, schedule and file-landed sensor."""
    name = source.name
    return _pulled_stream_definitions(
        source,
        cron,
        timezone,
        key=supply_key(name),
        kind="sftp",
        description=f"Open purchase and production orders with ETA from {name}; each file replaces the set.",
        pull=pull_supply,
        counted="files",
        summed=("rows_rejected", "rows_closed"),
        refused_what="Incoming supply file",
        kept_what="incoming supply",
        check_name="supply_accepted",
        check_description=(
            "Fails when the last pull refused a supply file (the previous supply kept in force)."
        ),
        job_name=f"{name}_incoming_supply",
        pulled_what="incoming supply",
        sensor=partial(
            _file_landed_sensor,
            source,
            name=f"{name}_supply_file_landed",
            list_files=complete_supply_files,
            skip_reason="no new complete supply file",
        ),
    )
