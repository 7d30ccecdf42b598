"""The ``crm/opportunities`` asset and its three process-health checks, materialized through Dagster."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import sqlalchemy as sa

from crm_core.types import now_utc
from jobs.health import (
    ASSET_KEY,
    FOLLOW_UP_CHECK,
    REGRESSION_CHECK,
    SKIP_CHECK,
    health_definitions,
    opportunities,
)
from jobs.resources import HubResource
from tests.health.crafted import FORWARD, add_interaction, entered, make_opportunity, walk


def _materialize(engine: sa.Engine) -> dg.ExecuteInProcessResult:
    url = engine.url.render_as_string(hide_password=False)
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(
            [opportunities], resources={"hub": HubResource(database_url=url)}, instance=instance
        )


def test_checks_warn_on_missed_goals_and_name_the_deals(engine: sa.Engine) -> None:
    now = now_utc()
    start = now - timedelta(days=20)
    skipper = make_opportunity(engine, "跳级商机", walk(["线索", "需求确认"], start=start))
    late_path = walk([*FORWARD, "谈判", "需求确认"], start=start)
    late = make_opportunity(engine, "回退商机", late_path)
    add_interaction(engine, late, "feedback", entered(late_path, "方案提交") + timedelta(hours=72))

    result = _materialize(engine)

    assert result.success  # WARN checks never fail the run
    (materialization,) = result.asset_materializations_for_node("crm__opportunities")
    assert materialization.metadata["opportunities"].value == 2
    assert materialization.metadata["by_stage"].value == {"需求确认": 2}
    checks = {ev.check_name: ev for ev in result.get_asset_check_evaluations()}
    assert set(checks) == {SKIP_CHECK, FOLLOW_UP_CHECK, REGRESSION_CHECK}
    for ev in checks.values():
        assert ev.asset_key == ASSET_KEY and not ev.passed
        assert ev.severity == dg.AssetCheckSeverity.WARN

    skip = checks[SKIP_CHECK].metadata
    assert skip["skip_rate"].value == 0.5 and skip["goal_below"].value == 0.05
    assert [r.data["number"] for r in skip["deals"].value.records] == [skipper]
    follow = checks[FOLLOW_UP_CHECK].metadata
    assert follow["on_time_share"].value == 0.0 and follow["goal_above"].value == 0.85
    assert [r.data["number"] for r in follow["late_deals"].value.records] == [late]
    regress = checks[REGRESSION_CHECK].metadata
    assert regress["regressions"].value == 1
    assert [r.data["number"] for r in regress["at_risk_deals"].value.records] == [late]


def test_checks_pass_on_a_healthy_pipeline(engine: sa.Engine) -> None:
    start = now_utc() - timedelta(days=60)
    path = walk([*FORWARD, "谈判", "成交"], start=start)
    number = make_opportunity(engine, "顺利成交", path)
    add_interaction(engine, number, "feedback", entered(path, "方案提交") + timedelta(hours=20))

    result = _materialize(engine)

    assert {ev.check_name: ev.passed for ev in result.get_asset_check_evaluations()} == {
        SKIP_CHECK: True,
        FOLLOW_UP_CHECK: True,
        REGRESSION_CHECK: True,
    }


def test_daily_schedule_in_shanghai() -> None:
    defs = health_definitions()
    (schedule,) = defs.schedules
    assert schedule.execution_timezone == "Asia/Shanghai"
    assert schedule.cron_schedule == "30 7 * * *"
    defs = dg.Definitions.merge(defs, dg.Definitions(resources={"hub": HubResource()}))
    assert defs.resolve_job_def("crm_process_health").asset_layer.executable_asset_keys == {ASSET_KEY}
