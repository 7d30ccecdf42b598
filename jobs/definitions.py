"""The project's Dagster definitions: one slice per configured connection, merged.

Loaded by ``hub ui`` (``dagster dev -m jobs.definitions``) and by tests. The project config is read from
``HUB_CONFIG`` at load time; without one the definitions are empty but valid, and the UI says so.
"""

from __future__ import annotations

import dagster as dg

from hub.config.project import config_path, load_project
from hub.runtime import push_targets
from jobs.push import push_definitions
from jobs.resources import HubResource
from jobs.sensors import failure_alerts


def build_definitions(config: str | None = None) -> dg.Definitions:
    path = config_path(config)
    slices: list[dg.Definitions] = []
    if path.exists():
        # check_env=False: secrets are resolved when a run starts, not when the code location loads.
        project = load_project(path, check_env=False)
        slices = [push_definitions(target) for target in push_targets(project)]
    merged = dg.Definitions.merge(*slices) if slices else dg.Definitions()
    jobs = list(merged.jobs or [])
    return dg.Definitions.merge(
        merged,
        dg.Definitions(
            resources={"hub": HubResource(config_path=str(path))},
            sensors=[failure_alerts(jobs)],
        ),
    )


defs = build_definitions()
