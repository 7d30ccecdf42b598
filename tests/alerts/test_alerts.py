"""hub/alerts.py: which notifier connections an event reaches (event list, minimum severity, enabled),
delivery to real robots on loopback, one failing notifier not stopping the others, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.notify import DingtalkNotifier, EmailNotifier, WecomNotifier
from hub.alerts import notifiers_for, send_alert
from hub.config.project import Project, load_project
from hub.errors import ConfigError
from hub.secrets import register_secret
from tests.alerts.conftest import Robot

ENV = {
    "ALERT_TEST_WECOM_KEY": "wecom-key-routing-4471",
    "ALERT_TEST_DING_TOKEN": "ding-token-routing-8812",
    "ALERT_TEST_DING_SECRET": "SECding-secret-routing-0093",
    "ALERT_TEST_SMTP_PASSWORD": "smtp-password-routing-5520",
}
CONFIG = """version: 1
connections:
  ops_wecom:
    template: notify_wecom
    connection:
      base_url: {wecom_url}
      webhook_key: ${{ALERT_TEST_WECOM_KEY}}
      message_type: text
    streams:
      alerts:
        events: [push_failed, dead_letter]
        min_severity: warning
  boss_ding:
    template: notify_dingtalk
    connection:
      base_url: {ding_url}
      access_token: ${{ALERT_TEST_DING_TOKEN}}
      sign_secret: ${{ALERT_TEST_DING_SECRET}}
    streams:
      alerts:
        events: [push_failed]
        min_severity: error
  finance_mail:
    template: notify_email
    connection:
      host: 127.0.0.1
      port: 2525
      security: starttls
      username: hub@example.cn
      password: ${{ALERT_TEST_SMTP_PASSWORD}}
      from_address: hub@example.cn
      to: [finance@example.cn]
    streams:
      alerts:
        events: [reconcile_mismatch]
        min_severity: info
  muted_wecom:
    template: notify_wecom
    connection:
      base_url: {wecom_url}
      webhook_key: ${{ALERT_TEST_WECOM_KEY}}
    streams:
      alerts:
        enabled: false
        events: [push_failed, dead_letter, reconcile_mismatch]
        min_severity: info
"""


@pytest.fixture
def project(tmp_path: Path, robot: Robot, second_robot: Robot, monkeypatch: pytest.MonkeyPatch) -> Project:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "hub.yaml"
    path.write_text(CONFIG.format(wecom_url=robot.url, ding_url=second_robot.url), encoding="utf-8")
    return load_project(path)


def names(project: Project, event: str, severity: str) -> list[str]:
    return sorted(n.name for n in notifiers_for(project, event, severity))


@pytest.mark.parametrize(
    ("event", "severity", "expected"),
    [
        ("push_failed", "error", ["boss_ding", "ops_wecom"]),
        ("push_failed", "warning", ["ops_wecom"]),  # below the DingTalk group's minimum
        ("push_failed", "info", []),
        ("dead_letter", "error", ["ops_wecom"]),
        ("reconcile_mismatch", "info", ["finance_mail"]),
        ("reconcile_mismatch", "error", ["finance_mail"]),
        ("snapshot_rejected", "error", []),  # nobody subscribed; the muted connection never counts
    ],
)
def test_routing_by_event_and_severity(
    project: Project, event: str, severity: str, expected: list[str]
) -> None:
    assert names(project, event, severity) == expected


def test_notifiers_are_built_with_the_resolved_secrets_and_settings(project: Project, robot: Robot) -> None:
    built = {n.name: n for n in notifiers_for(project, "push_failed", "error")}
    wecom, ding = built["ops_wecom"], built["boss_ding"]
    assert isinstance(wecom, WecomNotifier) and isinstance(ding, DingtalkNotifier)
    assert (wecom.webhook_key, wecom.base_url, wecom.message_type) == (
        ENV["ALERT_TEST_WECOM_KEY"],
        robot.url,
        "text",
    )
    assert (ding.access_token, ding.sign_secret) == (
        ENV["ALERT_TEST_DING_TOKEN"],
        ENV["ALERT_TEST_DING_SECRET"],
    )
    assert wecom.timeout == (5.0, 10.0)  # the template's connect/read timeouts
    [mail] = notifiers_for(project, "reconcile_mismatch", "info")
    assert isinstance(mail, EmailNotifier)
    assert (mail.security, mail.port, mail.password) == ("starttls", 2525, ENV["ALERT_TEST_SMTP_PASSWORD"])


def test_an_alert_reaches_every_subscribed_robot(project: Project, robot: Robot, second_robot: Robot) -> None:
    assert send_alert(project, "push_failed", "Run erp_nightly_push failed", "run 7") == []
    assert [p["json"]["text"]["content"] for p in robot.posts] == ["Run erp_nightly_push failed\nrun 7"]
    assert second_robot.posts[0]["json"]["text"]["content"] == "Run erp_nightly_push failed\nrun 7"
    assert {"timestamp", "sign"} <= set(second_robot.posts[0]["query"])  # DingTalk 加签 in use
    assert send_alert(project, "push_failed", "t", "b", severity="warning") == []
    assert (len(robot.posts), len(second_robot.posts)) == (2, 1)


def test_one_failing_notifier_does_not_stop_the_others(
    project: Project, robot: Robot, second_robot: Robot, caplog: pytest.LogCaptureFixture
) -> None:
    robot.status, robot.reply = 503, "<html>down</html>"
    assert send_alert(project, "push_failed", "t", "b") == ["ops_wecom"]
    assert len(second_robot.posts) == 1
    assert "ops_wecom" in caplog.text and "503" in caplog.text
    assert not any(value in caplog.text for value in ENV.values())


def test_secrets_in_the_alert_body_are_masked(project: Project, robot: Robot) -> None:
    leaked = "kis-app-secret-in-a-traceback-771"
    register_secret(leaked)
    send_alert(project, "dead_letter", "dead letter", f"error: signature with {leaked} refused")
    content = robot.last()["json"]["text"]["content"]
    assert leaked not in content and "***" in content


def test_an_unset_secret_names_the_file_and_field(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALERT_TEST_DING_TOKEN")
    with pytest.raises(
        ConfigError, match=r"connections\.boss_ding\.connection\.access_token.*ALERT_TEST_DING_TOKEN"
    ):
        notifiers_for(project, "push_failed", "error")
    assert names(project, "push_failed", "warning") == [
        "ops_wecom"
    ]  # a route that doesn't need it still works
