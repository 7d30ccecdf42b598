"""The project's Dagster definitions: one slice per configured connection, merged.

Loaded by ``hub ui`` (``dagster dev -m jobs.definitions``) and by tests. The project config is read from
``HUB_CONFIG`` at load time; without one the definitions are empty but valid, and the UI says so.
"""

from __future__ import annotations

import dagster as dg

from hub.config.project import config_path, load_project
from hub.inventory.sources import inventory_sources
from hub.inventory.supply import supply_sources
from hub.runtime import push_targets
from jobs.health import health_definitions
from jobs.inventory import (
    inventory_definitions,
    promises_definitions,
    snapshot_key,
    supply_definitions,
    supply_key,
)
from jobs.push import push_definitions
from jobs.resources import HubResource
from jobs.sensors import failure_alerts

DEFAULT_INVENTORY_CRON = "0 * * * *"  # hourly


def build_definitions(config: str | None = None) -> dg.Definitions:
    path = config_path(config)
    slices: list[dg.Definitions] = []
    if path.exists():
        # check_env=False: secrets are resolved when a run starts, not when the code location loads.
        project = load_project(path, check_env=False)
        slices = [push_definitions(target) for target in push_targets(project)]
        sources = inventory_sources(project)
        for source in sources:
            stream = source.template.streams.inventory
            schedule = getattr(stream, "schedule", None)
            slices.append(
                inventory_definitions(
                    source,
                    schedule.cron if schedule else DEFAULT_INVENTORY_CRON,
                    schedule.timezone if schedule else "Asia/Shanghai",
                )
            )
        supplies = supply_sources(project)
        for supply in supplies:
            supply_schedule = getattr(supply.stream, "schedule", None)
            slices.append(
                supply_definitions(
                    supply,
                    supply_schedule.cron if supply_schedule else DEFAULT_INVENTORY_CRON,
                    supply_schedule.timezone if supply_schedule else "Asia/Shanghai",
                )
            )
        if sources or supplies:
            slices.append(
                promises_definitions(
                    [snapshot_key(source.name) for source in sources],
                    [supply_key(supply.name) for supply in supplies],
                )
            )
    merged = dg.Definitions.merge(*slices) if slices else dg.Definitions()
    jobs = list(merged.jobs or [])
    return dg.Definitions.merge(
        merged,
        health_definitions(),  # always present: process health of the canonical store
        dg.Definitions(
            resources={"hub": HubResource(config_path=str(path))},
            sensors=[failure_alerts(jobs)],
            # The steps are small and I/O-bound: one process per run, not one per step (P12).
            executor=dg.in_process_executor,
        ),
    )


defs = build_definitions()
