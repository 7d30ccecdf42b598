"""Cross-cutting sensors: alert ops through the configured notifiers when a run fails."""

import dagster as dg

from hub.alerts import send_alert
from jobs.resources import HubResource


def failure_alerts(jobs: list) -> dg.SensorDefinition:  # type: ignore[type-arg]
    @dg.run_failure_sensor(
        name="alert_on_run_failure",
        monitored_jobs=jobs or None,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends push_failed alerts to WeCom / DingTalk / e-mail connections.",
    )
    def alert_on_run_failure(context: dg.RunFailureSensorContext, hub: HubResource) -> None:
        run = context.dagster_run
        message = context.failure_event.message or "run failed"
        failed = send_alert(
            hub.project(), "push_failed", f"Run {run.job_name} failed", f"run {run.run_id}\n{message}"
        )
        if failed:
            context.log.warning(f"alert could not be delivered through: {', '.join(failed)}")

    return alert_on_run_failure
