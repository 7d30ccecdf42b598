"""Send a hub event (push failed, snapshot refused ...) to every notifier connection subscribed to it."""

from __future__ import annotations

import logging

from connectors.notify import DingtalkNotifier, EmailNotifier, Notifier, WecomNotifier
from hub.config.models import NotifyDingtalkTemplate, NotifyEmailTemplate, NotifyWecomTemplate
from hub.config.project import Project
from hub.errors import HubError
from hub.secrets import redact, resolve_reference

log = logging.getLogger("hub.alerts")
SEVERITIES = ("info", "warning", "error")


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
        c = template.connection
        if isinstance(template, NotifyWecomTemplate):
            found.append(
                WecomNotifier(
                    name,
                    resolve_reference(c.webhook_key, where=f"{where}.webhook_key"),
                    c.base_url,
                    c.message_type,
                    tuple(c.mentioned_mobiles),
                    (c.connect_timeout, c.read_timeout),
                )
            )
        elif isinstance(template, NotifyDingtalkTemplate):
            secret = resolve_reference(c.sign_secret, where=f"{where}.sign_secret") if c.sign_secret else None
            found.append(
                DingtalkNotifier(
                    name,
                    resolve_reference(c.access_token, where=f"{where}.access_token"),
                    c.base_url,
                    secret,
                    c.keyword,
                    tuple(c.at_mobiles),
                    (c.connect_timeout, c.read_timeout),
                )
            )
        else:
            found.append(
                EmailNotifier(
                    name,
                    c.host,
                    c.port,
                    c.username,
                    resolve_reference(c.password, where=f"{where}.password"),
                    c.from_address,
                    tuple(c.to),
                    c.security,
                    c.subject_prefix,
                    c.timeout,
                )
            )
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
