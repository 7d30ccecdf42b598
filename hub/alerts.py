"""Send a hub event (push failed, snapshot refused ...) to every notifier connection subscribed to it."""

from __future__ import annotations

import logging

from connectors.notify import DingtalkNotifier, EmailNotifier, Notifier, WecomNotifier
from hub.config.models import NotifyDingtalkTemplate, NotifyEmailTemplate, NotifyWecomTemplate
from hub.config.models.notify import DingtalkConnection, EmailConnection, WecomConnection
from hub.config.project import Project
from hub.errors import HubError
from hub.secrets import redact, resolve_reference

log = logging.getLogger("hub.alerts")
SEVERITIES = ("info", "warning", "error")


def _wecom(name: str, c: WecomConnection, where: str) -> Notifier:
    key = resolve_reference(c.webhook_key, where=f"{where}.webhook_key")
    return WecomNotifier(
        name, key, c.base_url, c.message_type, tuple(c.mentioned_mobiles), (c.connect_timeout, c.read_timeout)
    )


def _dingtalk(name: str, c: DingtalkConnection, where: str) -> Notifier:
    token = resolve_reference(c.access_token, where=f"{where}.access_token")
    secret = resolve_reference(c.sign_secret, where=f"{where}.sign_secret") if c.sign_secret else None
    return DingtalkNotifier(
        name, token, c.base_url, secret, c.keyword, tuple(c.at_mobiles), (c.connect_timeout, c.read_timeout)
    )


def _email(name: str, c: EmailConnection, where: str) -> Notifier:
    password = resolve_reference(c.password, where=f"{where}.password")
    return EmailNotifier(
        name,
        c.host,
        c.port,
        c.username,
        password,
        c.from_address,
        tuple(c.to),
        c.security,
        c.subject_prefix,
        c.timeout,
    )


def notifiers_for(project: Project, event: str, severity: str) -> list[Notifier]:
    """Notifiers whose alert stream lists ``event`` at or below ``severity``."""
    found: list[Notifier] = []
    for name, template in project.connections.items():
        if not isinstance(template, NotifyWecomTemplate | NotifyDingtalkTemplate | NotifyEmailTemplate):
            continue
        stream = template.streams.alerts
        if not stream.enabled or event not in stream.events:
            continue
        if SEVERITIES.index(severity) < SEVERITIES.index(stream.min_severity):
            continue
        where = f"{project.path}: connections.{name}.connection"
        if isinstance(template, NotifyWecomTemplate):
            found.append(_wecom(name, template.connection, where))
        elif isinstance(template, NotifyDingtalkTemplate):
            found.append(_dingtalk(name, template.connection, where))
        else:
            found.append(_email(name, template.connection, where))
    return found


def send_alert(project: Project, event: str, title: str, body: str, *, severity: str = "error") -> list[str]:
    """Deliver to every subscribed notifier; one failing notifier does not stop the others.

    Returns the names that failed (each failure is logged, redacted).
    """
    failed = []
    for notifier in notifiers_for(project, event, severity):
        try:
            notifier.send(title, redact(body))
        except HubError as exc:
            log.warning("alert %s via %s failed: %s", event, notifier.name, exc)
            failed.append(notifier.name)
    return failed
