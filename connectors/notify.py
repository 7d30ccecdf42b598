"""Alert transports: WeCom and DingTalk group robots (webhooks) and e-mail (SMTP). Transport only.

Each notifier takes resolved settings (secrets already read from the environment) and sends one short
message. A failure raises :class:`hub.errors.TransientError` (network, 5xx, robot rate limit) or
:class:`PermanentError` (bad key, rejected message), never leaking the webhook key or password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import smtplib
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

import requests

from hub.errors import PermanentError, TransientError
from hub.secrets import redact, register_secret


class Notifier(Protocol):
    @property
    def name(self) -> str: ...

    def send(self, title: str, body: str) -> None: ...


def _post(name: str, url: str, payload: dict[str, Any], timeout: tuple[float, float]) -> dict[str, Any]:
    try:
        response = requests.post(url, json=payload, timeout=timeout)
    except requests.RequestException as exc:
        raise TransientError(
            redact(f"notifier {name!r}: could not reach the robot ({type(exc).__name__})")
        ) from None
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(f"notifier {name!r}: robot answered HTTP {response.status_code}")
    try:
        answer: dict[str, Any] = response.json()
    except ValueError:
        raise PermanentError(
            f"notifier {name!r}: robot answered HTTP {response.status_code} without JSON"
        ) from None
    code = int(answer.get("errcode", 0))
    if code == 45009 or code == 130101:  # WeCom / DingTalk: sending too fast
        raise TransientError(f"notifier {name!r}: robot rate limit ({code})", retry_after=60)
    if code != 0:
        raise PermanentError(
            redact(
                f"notifier {name!r}: robot refused the message ({code}: {answer.get('errmsg')}). "
                "Check the webhook key/token and any required keyword."
            )
        )
    return answer


@dataclass(frozen=True)
class WecomNotifier:
    """企业微信群机器人: POST {base_url}/cgi-bin/webhook/send?key=..."""

    name: str
    webhook_key: str
    base_url: str = "https://qyapi.weixin.qq.com"
    message_type: str = "markdown"
    mentioned_mobiles: tuple[str, ...] = ()
    timeout: tuple[float, float] = (5.0, 10.0)

    def send(self, title: str, body: str) -> None:
        register_secret(self.webhook_key)
        url = f"{self.base_url.rstrip('/')}/cgi-bin/webhook/send?key={urllib.parse.quote(self.webhook_key)}"
        if self.message_type == "markdown":
            payload: dict[str, Any] = {"msgtype": "markdown", "markdown": {"content": f"**{title}**\n{body}"}}
        else:
            payload = {
                "msgtype": "text",
                "text": {
                    "content": f"{title}\n{body}",
                    "mentioned_mobile_list": list(self.mentioned_mobiles),
                },
            }
        _post(self.name, url, payload, self.timeout)


@dataclass(frozen=True)
class DingtalkNotifier:
    """钉钉自定义机器人, with the optional 加签 (HMAC-SHA256 over "timestamp\\nsecret")."""

    name: str
    access_token: str
    base_url: str = "https://oapi.dingtalk.com"
    sign_secret: str | None = None
    keyword: str | None = None
    at_mobiles: tuple[str, ...] = ()
    timeout: tuple[float, float] = (5.0, 10.0)
    clock: Any = field(default=time.time, compare=False, repr=False)

    def signed_query(self) -> dict[str, str]:
        query = {"access_token": self.access_token}
        if self.sign_secret:
            timestamp = str(int(self.clock() * 1000))
            digest = hmac.new(
                self.sign_secret.encode(), f"{timestamp}\n{self.sign_secret}".encode(), hashlib.sha256
            ).digest()
            query.update(timestamp=timestamp, sign=base64.b64encode(digest).decode())
        return query

    def send(self, title: str, body: str) -> None:
        register_secret(self.access_token)
        register_secret(self.sign_secret)
        url = f"{self.base_url.rstrip('/')}/robot/send?{urllib.parse.urlencode(self.signed_query())}"
        text = f"{title}\n{body}"
        if self.keyword and self.keyword not in text:
            text = f"{self.keyword} {text}"
        _post(
            self.name,
            url,
            {"msgtype": "text", "text": {"content": text}, "at": {"atMobiles": list(self.at_mobiles)}},
            self.timeout,
        )


@dataclass(frozen=True)
class EmailNotifier:
    """Plain-text e-mail over SMTP with TLS (implicit SSL or STARTTLS), certificates verified."""

    name: str
    host: str
    port: int
    username: str
    password: str
    from_address: str
    to: tuple[str, ...]
    security: str = "ssl"
    subject_prefix: str = "[hub]"
    timeout: float = 20.0
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    def send(self, title: str, body: str) -> None:
        register_secret(self.password)
        message = EmailMessage()
        message["Subject"] = f"{self.subject_prefix} {title}"
        message["From"] = self.from_address
        message["To"] = ", ".join(self.to)
        message.set_content(body)
        context = self.ssl_context or ssl.create_default_context()
        try:
            if self.security == "ssl":
                with smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context) as smtp:
                    smtp.login(self.username, self.password)
                    smtp.send_message(message)
            else:
                with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                    smtp.starttls(context=context)
                    smtp.login(self.username, self.password)
                    smtp.send_message(message)
        except smtplib.SMTPAuthenticationError:
            raise PermanentError(f"notifier {self.name!r}: SMTP login refused for {self.username}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(
                redact(f"notifier {self.name!r}: SMTP {self.host}:{self.port} failed: {exc}")
            ) from None
