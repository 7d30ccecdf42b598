"""connectors/notify.py against real servers on loopback: what each robot receives, how its answers are
classified, DingTalk's 加签, and e-mail over implicit TLS and STARTTLS with a verified certificate."""

from __future__ import annotations

import base64
import email.policy
import hashlib
import hmac
import logging
import ssl
from email import message_from_bytes
from urllib.parse import quote

import pytest

from connectors.notify import DingtalkNotifier, EmailNotifier, WecomNotifier
from hub.errors import PermanentError, TransientError
from tests.alerts.conftest import Mailbox, Robot, SelfSignedCert

WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"  # the shape of a real key; fake value
DING_TOKEN = "dt-access-token-5a1f0c77e2"
DING_SECRET = "SEC0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4"


def wecom(robot: Robot, **kwargs: object) -> WecomNotifier:
    return WecomNotifier("ops_wecom", WECOM_KEY, robot.url, timeout=(2.0, 5.0), **kwargs)  # type: ignore[arg-type]


# --- WeCom -------------------------------------------------------------------------------------------


def test_wecom_markdown_goes_to_the_webhook_with_the_key(robot: Robot) -> None:
    wecom(robot).send("推送失败", "run 42\n3 张发票进入死信")
    post = robot.last()
    assert post["path"] == "/cgi-bin/webhook/send" and post["query"] == {"key": WECOM_KEY}
    assert post["json"] == {
        "msgtype": "markdown",
        "markdown": {"content": "**推送失败**\nrun 42\n3 张发票进入死信"},
    }


def test_wecom_text_mentions_the_mobiles(robot: Robot) -> None:
    wecom(robot, message_type="text", mentioned_mobiles=("13800000000",)).send("title", "body")
    assert robot.last()["json"] == {
        "msgtype": "text",
        "text": {"content": "title\nbody", "mentioned_mobile_list": ["13800000000"]},
    }


def test_a_key_with_reserved_characters_is_url_quoted(robot: Robot) -> None:
    WecomNotifier("w", "a&b=c d/e", robot.url).send("t", "b")
    assert robot.last()["raw_query"] == f"key={quote('a&b=c d/e')}" and robot.last()["query"] == {
        "key": "a&b=c d/e"
    }


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_throttling_are_transient(robot: Robot, status: int) -> None:
    robot.status, robot.reply = status, "<html>busy</html>"
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        wecom(robot).send("t", "b")


def test_the_robots_rate_limit_code_is_transient_with_a_retry_after(robot: Robot) -> None:
    robot.reply = {"errcode": 45009, "errmsg": "api freq out of limit"}
    with pytest.raises(TransientError) as caught:
        wecom(robot).send("t", "b")
    assert caught.value.retry_after == 60


def test_a_refused_message_is_permanent_and_the_key_echoed_back_is_masked(
    robot: Robot, caplog: pytest.LogCaptureFixture
) -> None:
    robot.reply = {"errcode": 93000, "errmsg": f"invalid webhook url, key={WECOM_KEY}"}
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentError) as caught:
        wecom(robot).send("t", "b")
    text = str(caught.value)
    assert "93000" in text and "ops_wecom" in text and "webhook key" in text
    assert WECOM_KEY not in text
    # urllib3 logs the request line (URL with ?key=) at DEBUG: masked too.
    assert "/cgi-bin/webhook/send" in caplog.text and WECOM_KEY not in caplog.text


def test_an_answer_without_json_is_permanent(robot: Robot) -> None:
    robot.reply = "<html>not a robot</html>"
    with pytest.raises(PermanentError, match="without JSON"):
        wecom(robot).send("t", "b")


def test_an_unreachable_robot_is_transient_and_names_no_key(closed_port: int) -> None:
    notifier = WecomNotifier("ops_wecom", WECOM_KEY, f"http://127.0.0.1:{closed_port}", timeout=(1.0, 1.0))
    with pytest.raises(TransientError, match="could not reach") as caught:
        notifier.send("t", "b")
    assert WECOM_KEY not in str(caught.value) and "ops_wecom" in str(caught.value)


# --- DingTalk ----------------------------------------------------------------------------------------


def expected_sign(secret: str, timestamp: str) -> str:
    """DingTalk's documented 加签: Base64(HMAC-SHA256(key=secret, msg=timestamp + "\\n" + secret))."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def test_dingtalk_signs_with_the_millisecond_timestamp(robot: Robot) -> None:
    notifier = DingtalkNotifier(
        "ops_ding", DING_TOKEN, robot.url, sign_secret=DING_SECRET, clock=lambda: 1_764_460_800.1234
    )
    notifier.send("对账不符", "2 documents")
    post = robot.last()
    assert post["path"] == "/robot/send"
    assert post["query"]["access_token"] == DING_TOKEN
    assert post["query"]["timestamp"] == "1764460800123"
    assert post["query"]["sign"] == expected_sign(DING_SECRET, "1764460800123")
    # The sign is Base64 (may hold + / =): it must arrive intact, i.e. URL-encoded on the wire.
    assert "sign=" + quote(post["query"]["sign"], safe="") in post["raw_query"]
    assert post["json"] == {
        "msgtype": "text",
        "text": {"content": "对账不符\n2 documents"},
        "at": {"atMobiles": []},
    }


def test_dingtalk_without_signing_sends_only_the_token(robot: Robot) -> None:
    DingtalkNotifier("d", DING_TOKEN, robot.url).send("t", "b")
    assert robot.last()["query"] == {"access_token": DING_TOKEN}


def test_dingtalk_keyword_is_added_once_and_mobiles_are_mentioned(robot: Robot) -> None:
    notifier = DingtalkNotifier("d", DING_TOKEN, robot.url, keyword="告警", at_mobiles=("13900000000",))
    notifier.send("推送失败", "b")
    assert robot.last()["json"]["text"]["content"] == "告警 推送失败\nb"
    assert robot.last()["json"]["at"] == {"atMobiles": ["13900000000"]}
    notifier.send("告警: 推送失败", "b")
    assert robot.last()["json"]["text"]["content"] == "告警: 推送失败\nb"


def test_dingtalk_refusal_masks_token_and_secret(robot: Robot) -> None:
    robot.reply = {"errcode": 310000, "errmsg": f"sign not match, token {DING_TOKEN} secret {DING_SECRET}"}
    notifier = DingtalkNotifier("ops_ding", DING_TOKEN, robot.url, sign_secret=DING_SECRET)
    with pytest.raises(PermanentError) as caught:
        notifier.send("t", "b")
    assert "310000" in str(caught.value)
    assert DING_TOKEN not in str(caught.value) and DING_SECRET not in str(caught.value)


def test_dingtalk_rate_limit_is_transient(robot: Robot) -> None:
    robot.reply = {"errcode": 130101, "errmsg": "send too fast"}
    with pytest.raises(TransientError):
        DingtalkNotifier("d", DING_TOKEN, robot.url).send("t", "b")


# --- e-mail ------------------------------------------------------------------------------------------


def mailer(box: Mailbox, certificate: SelfSignedCert, *, password: str | None = None) -> EmailNotifier:
    return EmailNotifier(
        "ops_mail",
        box.host,
        box.port,
        box.username,
        password if password is not None else box.password,
        "hub@example.cn",
        ("finance@example.cn", "it@example.cn"),
        security=box.security,
        subject_prefix="[同步中心]",
        timeout=5.0,
        ssl_context=certificate.client_context(),
    )


def test_email_is_delivered_over_tls_after_login(smtp: Mailbox, certificate: SelfSignedCert) -> None:
    mailer(smtp, certificate).send("推送失败", "run 42 failed\n第二行")
    [message] = smtp.messages
    assert message["tls"] and smtp.auth_attempts == ["PLAIN"]
    assert message["from"] == "<hub@example.cn>"
    assert message["to"] == ["<finance@example.cn>", "<it@example.cn>"]
    parsed = message_from_bytes(message["data"], policy=email.policy.default)
    assert parsed["Subject"] == "[同步中心] 推送失败"  # decoded from its RFC 2047 encoding
    body = parsed.get_content()  # an EmailMessage under policy.default
    assert body.replace("\r\n", "\n") == "run 42 failed\n第二行\n"  # SMTP lines end in CRLF


def test_a_wrong_password_is_permanent_and_not_repeated(smtp: Mailbox, certificate: SelfSignedCert) -> None:
    wrong = "wrong-pass-31c0d9"
    with pytest.raises(PermanentError, match="SMTP login refused for alerts@example.cn") as caught:
        mailer(smtp, certificate, password=wrong).send("t", "b")
    assert wrong not in str(caught.value) and smtp.messages == []


def test_an_untrusted_certificate_is_refused(smtp: Mailbox, certificate: SelfSignedCert) -> None:
    notifier = mailer(smtp, certificate)
    untrusting = EmailNotifier(
        **{**notifier.__dict__, "ssl_context": ssl.create_default_context()}  # system CAs only
    )
    with pytest.raises(TransientError, match="SMTP 127.0.0.1") as caught:
        untrusting.send("t", "b")
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value) or "certificate" in str(caught.value).lower()
    assert smtp.password not in str(caught.value) and smtp.messages == []


def test_an_unreachable_smtp_server_is_transient(closed_port: int, certificate: SelfSignedCert) -> None:
    box = Mailbox("127.0.0.1", closed_port, "u@example.cn", "pw-unused-1234", "starttls")
    with pytest.raises(TransientError, match=f"127.0.0.1:{closed_port}"):
        mailer(box, certificate).send("t", "b")
