"""Sales process health as asset checks on the canonical store (DOMAIN.md, "Process health").

    crm/opportunities  (crm)  opportunities per stage, with the managers' three figures as checks:
        check: stage_skip_rate_below_5pct          (warn)  share of deals that skipped a stage
        check: proposal_follow_up_within_48h       (warn)  feedback within 48 h after 方案提交, goal > 85 %
        check: no_recent_negotiation_regressions   (warn)  谈判 -> 需求确认 in the last 30 days

The asset reads the store and computes all three in one pass (hub.health), so the check results always
describe the same snapshot as the asset's metadata. WARN severity: a missed goal is a conversation for
the sales manager, never a reason to stop a run. A daily schedule in Asia/Shanghai refreshes it before
the working day starts. This slice is always present, with or without ERP connections.
"""

import dagster as dg

from hub.health import Deal, ProcessHealth, process_health
from jobs.resources import HubResource

ASSET_KEY = dg.AssetKey(["crm", "opportunities"])
SKIP_CHECK = "stage_skip_rate_below_5pct"
FOLLOW_UP_CHECK = "proposal_follow_up_within_48h"
REGRESSION_CHECK = "no_recent_negotiation_regressions"
HEALTH_CRON = "30 7 * * *"  # 07:30 Shanghai, before the morning sales meeting
HEALTH_TZ = "Asia/Shanghai"
MAX_TABLE_ROWS = 50  # event-log rows live in the instance DB: name the worst deals, not all of them

_DEAL_SCHEMA = dg.TableSchema(
    columns=[dg.TableColumn(name) for name in ("number", "title", "owner", "stage", "at", "detail")]
)


def _deal_table(deals: tuple[Deal, ...]) -> dg.MetadataValue:
    # Most recent first: those are the deals a manager can still rescue.
    recent = sorted(deals, key=lambda d: d.at, reverse=True)[:MAX_TABLE_ROWS]
    return dg.MetadataValue.table(
        records=[dg.TableRecord(deal.as_row()) for deal in recent], schema=_DEAL_SCHEMA
    )


def _percent(share: float | None) -> str:
    return "n/a (no data yet)" if share is None else f"{share:.1%}"


def check_results(report: ProcessHealth) -> list[dg.AssetCheckResult]:
    """The three process-health checks for one report (public for tests and the CLI)."""
    skips, follow_ups, regressions = report.skips, report.follow_ups, report.regressions
    return [
        dg.AssetCheckResult(
            check_name=SKIP_CHECK,
            passed=skips.meets_goal,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"Stage-skip rate {_percent(skips.rate)} (goal below {skips.goal:.0%}).",
            metadata={
                "skip_rate": dg.MetadataValue.float(skips.rate if skips.rate is not None else 0.0),
                "goal_below": dg.MetadataValue.float(skips.goal),
                "opportunities_moved": dg.MetadataValue.int(skips.moved),
                "skipped": dg.MetadataValue.int(skips.skipped),
                "deals": _deal_table(skips.deals),
            },
        ),
        dg.AssetCheckResult(
            check_name=FOLLOW_UP_CHECK,
            passed=follow_ups.meets_goal,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"Customer feedback within 48 h of 方案提交: {_percent(follow_ups.share)} "
                f"(goal above {follow_ups.goal:.0%})."
            ),
            metadata={
                "on_time_share": dg.MetadataValue.float(
                    follow_ups.share if follow_ups.share is not None else 1.0
                ),
                "goal_above": dg.MetadataValue.float(follow_ups.goal),
                "due": dg.MetadataValue.int(follow_ups.due),
                "on_time": dg.MetadataValue.int(follow_ups.on_time),
                "pending": dg.MetadataValue.int(follow_ups.pending),
                "late_deals": _deal_table(follow_ups.late),
            },
        ),
        dg.AssetCheckResult(
            check_name=REGRESSION_CHECK,
            passed=not regressions.deals,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"{len(regressions.deals)} deal(s) sent back from 谈判 to 需求确认 since "
                f"{regressions.since:%Y-%m-%d}: at risk."
            ),
            metadata={
                "regressions": dg.MetadataValue.int(len(regressions.deals)),
                "since": dg.MetadataValue.text(regressions.since.isoformat(timespec="minutes")),
                "at_risk_deals": _deal_table(regressions.deals),
            },
        ),
    ]


@dg.asset(
    key=ASSET_KEY,
    group_name="crm",
    kinds={"sql"},
    description="Opportunities (商机) per stage in the store, with the sales process-health checks.",
    check_specs=[
        dg.AssetCheckSpec(SKIP_CHECK, asset=ASSET_KEY, description="Stage-skip rate below 5 %."),
        dg.AssetCheckSpec(
            FOLLOW_UP_CHECK, asset=ASSET_KEY, description="Feedback within 48 h after 方案提交 above 85 %."
        ),
        dg.AssetCheckSpec(
            REGRESSION_CHECK, asset=ASSET_KEY, description="No 谈判 -> 需求确认 regressions in 30 days."
        ),
    ],
)
def opportunities(context: dg.AssetExecutionContext, hub: HubResource) -> dg.MaterializeResult:
    """Counts per stage as metadata; the three checks from the same snapshot."""
    report = process_health(hub.engine())
    return dg.MaterializeResult(
        metadata={
            "opportunities": dg.MetadataValue.int(report.opportunities),
            "by_stage": dg.MetadataValue.json(report.by_stage),
            "as_of": dg.MetadataValue.text(report.as_of.isoformat(timespec="seconds")),
        },
        check_results=check_results(report),
    )


def health_definitions() -> dg.Definitions:
    """The process-health asset, its job and its daily schedule."""
    job = dg.define_asset_job(
        "crm_process_health",
        selection=dg.AssetSelection.assets(ASSET_KEY),
        description="Refresh the sales process-health figures from the canonical store.",
    )
    schedule = dg.ScheduleDefinition(
        name="crm_process_health_schedule",
        job=job,
        cron_schedule=HEALTH_CRON,
        execution_timezone=HEALTH_TZ,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(assets=[opportunities], jobs=[job], schedules=[schedule])
