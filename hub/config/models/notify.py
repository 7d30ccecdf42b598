"""Alert templates: WeCom (企业微信) and DingTalk group robots, and e-mail."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from hub.config.models.base import Strict, TemplateBase
from hub.config.types import HttpUrl, NonEmpty, SecretRef

Address = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]

AlertEvent = Literal[
    "push_failed",
    "push_blocked",
    "dead_letter",
    "reconcile_mismatch",
    "pull_failed",
    "snapshot_rejected",
    "sync_stale",
    "auth_failed",
]


class AlertStream(Strict):
    """Which hub events are sent, from which severity on."""

    direction: Literal["push"] = "push"
    enabled: bool = True
    reads: Literal["alerts"] = "alerts"
    events: list[AlertEvent] = Field(min_length=1)
    min_severity: Literal["info", "warning", "error"] = "warning"


class AlertStreams(Strict):
    """Notification templates have one stream: the alerts."""

    alerts: AlertStream


class WecomConnection(Strict):
    """A WeCom group robot: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=<webhook_key>."""

    base_url: HttpUrl = "https://qyapi.weixin.qq.com"
    webhook_key: SecretRef = Field(description="The key= part of the robot's webhook URL (it is a secret).")
    message_type: Literal["markdown", "text"] = "markdown"
    mentioned_mobiles: list[str] = Field(default_factory=list, description="Mobiles to @ (text messages).")
    connect_timeout: float = Field(5.0, gt=0, le=60)
    read_timeout: float = Field(10.0, gt=0, le=120)


class NotifyWecomTemplate(TemplateBase):
    """Alerts to a WeCom group."""

    kind: Literal["notify_wecom"]
    connection: WecomConnection
    streams: AlertStreams


class DingtalkConnection(Strict):
    """A DingTalk custom robot (https://oapi.dingtalk.com/robot/send?access_token=...)."""

    base_url: HttpUrl = "https://oapi.dingtalk.com"
    access_token: SecretRef
    sign_secret: SecretRef | None = Field(
        None, description="加签 secret (SEC...), when the robot uses signing."
    )
    keyword: str | None = Field(None, description="Custom keyword the robot requires in every message.")
    at_mobiles: list[str] = Field(default_factory=list)
    connect_timeout: float = Field(5.0, gt=0, le=60)
    read_timeout: float = Field(10.0, gt=0, le=120)


class NotifyDingtalkTemplate(TemplateBase):
    """Alerts to a DingTalk group."""

    kind: Literal["notify_dingtalk"]
    connection: DingtalkConnection
    streams: AlertStreams


class EmailConnection(Strict):
    """An SMTP server (TLS verified)."""

    host: NonEmpty
    port: int = Field(465, ge=1, le=65_535)
    security: Literal["ssl", "starttls"] = "ssl"
    username: NonEmpty
    password: SecretRef
    from_address: Address
    to: list[Address] = Field(min_length=1, description="Recipients.")
    subject_prefix: str = "[hub]"
    timeout: float = Field(20.0, gt=0, le=300)


class NotifyEmailTemplate(TemplateBase):
    """Alerts by e-mail."""

    kind: Literal["notify_email"]
    connection: EmailConnection
    streams: AlertStreams
