"""Sandbox authentication: the three login services with sessions, and stateless signed headers.

Sessions expire after ``idle_ttl`` without use and ``absolute_ttl`` after login, die on "IIS recycle"
(``POST /__admin__/recycle``) and, with ``login_elsewhere``, when the same user logs in again. A dead
session gets HTTP 200 with ``MsgCode 1`` and ``会话信息已丢失，请重新登录``.

Signed headers are verified exactly as the official SDK builds them (ERP-APIS §1, §3.3): the gateway
client secret is decoded from the AppId, both ``X-Api-Signature`` and ``X-Kd-Signature`` must match and the
timestamp must lie within ``signature_skew`` seconds of the sandbox clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass
from email.message import Message
from http.cookies import CookieError, SimpleCookie
from typing import Any

from connectors.kingdee.k3cloud.signing import (
    decode_app_secret,
    kd_signature,
    login_sign,
    split_app_id,
)
from connectors.kingdee.signing import api_signature, verify_signature

from .store import Store

log = logging.getLogger(__name__)

SESSION_LOST = "会话信息已丢失，请重新登录"
BAD_PASSWORD = "用户名或密码错误！"  # noqa: S105 - a message, not a password


class NotAuthenticated(Exception):
    """The call carries no valid session or signature (answered with MsgCode 1)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: used for the ledger and the throttle bucket."""

    acct_id: str
    username: str
    via: str  # "session:<sid prefix>" or "app:<client id>"

    @property
    def label(self) -> str:
        """``user@acct`` for the ledger."""
        return f"{self.username}@{self.acct_id}"


def login_reply(
    *, success: bool, message: str | None, sid: str = "", user: Any = None, acct: str = ""
) -> dict:
    """The top-level login object of ERP-APIS §3.3."""
    context = None
    if success:
        context = {
            "UserLocale": "zh-CN",
            "LogLocale": "zh-CN",
            "DBid": acct,
            "DatabaseType": 3,
            "SessionId": sid,
            "UserId": int(user["user_id"]),
            "UserName": user["username"],
            "CustomName": "K3Cloud Sandbox",
            "DisplayVersion": "8.2.0-sandbox",
            "DataCenterName": "沙箱账套",
            "UserToken": sid,
        }
    return {
        "Message": message,
        "MessageCode": "CheckPasswordPolicy" if success else None,
        "LoginResultType": 1 if success else 0,
        "Context": context,
        "KDSVCSessionId": sid if success else None,
        "FormId": None,
        "RedirectFormParam": None,
        "FormInputObject": None,
        "ErrorStackTrace": None,
        "Lcid": 0,
        "AccessToken": None,
        "KdAccessResult": None,
        "IsSuccessByAPI": success,
    }


class Authenticator:
    """Logins and per-request authentication against the :class:`Store`."""

    def __init__(self, store: Store, seed: int) -> None:
        self.store = store
        self.seed = seed

    def _new_sid(self) -> str:
        n = self.store.next_value("session", 1)
        return hashlib.sha256(f"sid:{self.seed}:{n}".encode()).hexdigest()[:32]

    def _open(self, acct: str, user: Any, now: float, settings: dict[str, Any]) -> tuple[dict, str]:
        sid = self._new_sid()
        self.store.new_session(sid, acct, user["username"], now, bool(settings["login_elsewhere"]))
        return login_reply(success=True, message=None, sid=sid, user=user, acct=acct), sid

    def _refused(self, message: str) -> tuple[dict, None]:
        return login_reply(success=False, message=message), None

    def validate_user(self, args: list[Any], now: float, settings: dict[str, Any]) -> tuple[dict, str | None]:
        """``ValidateUser(acctID, username, password, lcid)``."""
        acct, username, password = (str(a or "") for a in args[:3])
        if not self.store.acct_exists(acct):
            return self._refused(f"数据中心“{acct}”不存在，请检查账套ID")
        user = self.store.user(acct, username)
        if user is None or user["password"] != password:
            return self._refused(BAD_PASSWORD)
        return self._open(acct, user, now, settings)

    def login_by_app_secret(
        self, args: list[Any], now: float, settings: dict[str, Any]
    ) -> tuple[dict, str | None]:
        """``LoginByAppSecret(acctId, userName, appId, appSecret, lcid)``."""
        acct, username, app_id, secret = (str(a or "") for a in args[:4])
        app = self.store.app(app_id)
        if app is None or app["app_secret"] != secret or app["acct_id"] != acct:
            return self._refused("第三方系统登录授权验证失败：应用ID或应用密钥错误")
        user = self.store.user(acct, username)
        if user is None:
            return self._refused(BAD_PASSWORD)
        return self._open(acct, user, now, settings)

    def login_by_sign(self, args: list[Any], now: float, settings: dict[str, Any]) -> tuple[dict, str | None]:
        """``LoginBySign(acctId, userName, appId, timestamp, sign, lcid)``."""
        acct, username, app_id, timestamp, sign = (str(a or "") for a in args[:5])
        app = self.store.app(app_id)
        if app is None or app["acct_id"] != acct:
            return self._refused("第三方系统登录授权验证失败：应用ID不存在")
        try:
            skew = abs(now - float(timestamp))
        except ValueError:
            return self._refused("签名时间戳格式错误")
        if skew > float(settings["signature_skew"]):
            return self._refused("签名已过期：时间戳与服务器时间相差超过5分钟，请校准客户端时钟")
        expected = login_sign(acct, username, app_id, app["app_secret"], timestamp)
        if not verify_signature(expected, sign.lower()):
            return self._refused("签名验证失败")
        user = self.store.user(acct, username)
        if user is None:
            return self._refused(BAD_PASSWORD)
        return self._open(acct, user, now, settings)

    def logout(self, sid: str | None) -> None:
        """End a session."""
        if sid:
            self.store.end_session(sid)

    # -------------------------------------------------------------- per request

    @staticmethod
    def session_id(headers: Message) -> str | None:
        """The sid from the ``kdservice-sessionid`` header or cookie."""
        sid = headers.get("kdservice-sessionid")
        if sid:
            return sid.strip()
        for raw in headers.get_all("Cookie") or []:
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(raw)
            except CookieError:
                log.debug("k3cloud sandbox: ignoring a malformed Cookie header")
                continue
            if "kdservice-sessionid" in cookie:
                return cookie["kdservice-sessionid"].value
        return None

    def authenticate(self, headers: Message, path: str, now: float, settings: dict[str, Any]) -> Principal:
        """The caller of a business service; raises :class:`NotAuthenticated` with the server's text."""
        if headers.get("X-Kd-Appkey"):
            return self._signed(headers, path, now, settings)
        sid = self.session_id(headers)
        if not sid:
            raise NotAuthenticated(SESSION_LOST)
        row = self.store.session(sid)
        if row is None or not row["alive"]:
            raise NotAuthenticated(SESSION_LOST)
        if now - float(row["last_used"]) > float(settings["idle_ttl"]) or now - float(row["created"]) > float(
            settings["absolute_ttl"]
        ):
            self.store.end_session(sid)
            raise NotAuthenticated(SESSION_LOST)
        self.store.touch_session(sid, now)
        return Principal(row["acct_id"], row["username"], f"session:{sid[:8]}")

    def _signed(self, headers: Message, path: str, now: float, settings: dict[str, Any]) -> Principal:
        app_id = headers.get("X-Kd-Appkey", "")
        app = self.store.app(app_id)
        if app is None:
            raise NotAuthenticated("第三方系统登录授权验证失败：X-Kd-Appkey对应的应用不存在")
        client_id, blob = split_app_id(app_id)
        if headers.get("X-Api-ClientID", "") != client_id:
            raise NotAuthenticated("签名验证失败：X-Api-ClientID与X-Kd-Appkey不一致")
        timestamp = headers.get("x-api-timestamp", "")
        nonce = headers.get("x-api-nonce", "")
        try:
            skew = abs(now - float(timestamp))
        except ValueError:
            raise NotAuthenticated("签名验证失败：x-api-timestamp缺失或格式错误") from None
        if skew > float(settings["signature_skew"]):
            raise NotAuthenticated("签名已过期：x-api-timestamp与服务器时间相差超过5分钟，请校准客户端时钟")
        secret = decode_app_secret(blob)
        expected = api_signature(secret, "POST", path, None, nonce, timestamp)
        if not secret or not verify_signature(expected, headers.get("X-Api-Signature", "")):
            raise NotAuthenticated("授权密钥校验失败，请获取最新密钥加密（X-Api-Signature不正确）")
        try:
            plain = base64.b64decode(headers.get("X-Kd-Appdata", ""), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise NotAuthenticated("签名验证失败：X-Kd-Appdata不是有效的Base64") from None
        if not verify_signature(
            kd_signature(app_id, app["app_secret"], plain), headers.get("X-Kd-Signature", "")
        ):
            raise NotAuthenticated("签名验证失败：X-Kd-Signature不正确，请检查应用密钥")
        parts = plain.split(",")
        acct, username = (parts + ["", ""])[:2]
        if acct != app["acct_id"] or self.store.user(acct, username) is None:
            raise NotAuthenticated(f"签名验证失败：数据中心“{acct}”或用户“{username}”不存在")
        return Principal(acct, username, f"app:{client_id}")
