"""The KIS cloud gateway as the sandbox plays it (ERP-APIS §5.2): routing, auth checks, faults, envelope.

HTTP-free: :meth:`Gateway.handle` takes a :class:`Request` and returns a :class:`Reply`; server.py puts it
on a real socket. Error codes are placeholders (the real ones are unknown, §6); every failure carries a
non-zero ``errcode`` in an HTTP 200 envelope, as the real gateway does, except injected transport faults.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from connectors.kingdee.kis_sandbox.faults import FaultInjector, retry_after_header
from connectors.kingdee.kis_sandbox.seed import DEFAULT_SEED, SandboxCredentials
from connectors.kingdee.kis_sandbox.state import FIRST_ITEM_ID, Refusal, SandboxState
from connectors.kingdee.signing import api_signature, app_signature, verify_signature

E_TOKEN = 1001  # access_token invalid or expired
E_SESSION = 1002  # session_id invalid or expired
E_AUTH_DATA = 1003  # auth_data / app-token invalid or expired
E_GATEWAY = 1004  # X-GW-Router-Addr does not match the auth_data
E_HEADER = 1005  # a required KIS-* header is missing
E_SIGNATURE = 1010
E_TIMESTAMP = 1011
E_CREDENTIALS = 1012
E_ACCOUNT = 1013
E_THROTTLED = 1030
E_BUSINESS = 10201

TIMESTAMP_WINDOW = 300.0  # seconds either side, "valid 5 min" (ERP-APIS §1)
BUSINESS = re.compile(r"^/koas/(app\d+)/api/([a-z]+)/([a-z]+)$", re.IGNORECASE)
WRITE_OPS = {"create", "update", "delete"}
#: ``shift_on_page``: list object -> kind in the ``items`` table.
SHIFT_KINDS = {"customer": "customer", "material": "material", "stock": "stock", "measureunit": "unit"}
CORE_STATS = ("calls", "throttled", "early_after_429", "dropped", "5xx", "lost_replies")


@dataclass
class Request:
    """One HTTP request, already read off the socket."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    client: str = ""


@dataclass
class Reply:
    """What to send back; ``drop`` closes the connection without a reply."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    ok: bool = False  # an envelope with errcode 0 (what a lost reply throws away)


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps(obj, ensure_ascii=False, default=_default).encode("utf-8")
    return Reply(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < 10**15:
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    raise TypeError(type(value).__name__)


def envelope(data: Any = None, errcode: int = 0, description: str = "成功") -> Reply:
    """The gateway's JSON envelope (always HTTP 200)."""
    reply = _json({"errcode": errcode, "description": description, "data": data})
    reply.ok = errcode == 0
    return reply


def business_error(reason: str) -> Reply:
    """A backend refusal as the gateway wraps it (code 10201, ERP-APIS §2.2)."""
    return envelope(None, E_BUSINESS, f"业务接口返回失败结果，失败原因：{reason}")


class Fail(Exception):
    """Raised inside a handler to answer an error envelope."""

    def __init__(self, errcode: int, description: str) -> None:
        super().__init__(description)
        self.errcode = errcode
        self.description = description


@dataclass
class TokenRecord:
    """An issued token."""

    kind: str
    subject: str
    expires_at: float
    extra: dict[str, Any]


class Gateway:
    """Routes, checks and answers requests against a :class:`SandboxState`."""

    def __init__(self, state: SandboxState, faults: FaultInjector, credentials: SandboxCredentials) -> None:
        self.state = state
        self.faults = faults
        self.creds = credentials
        self.stats: Counter[str] = Counter(dict.fromkeys(CORE_STATS, 0))
        self._lock = threading.Lock()
        self._tokens: dict[str, TokenRecord] = {}
        self._not_before: dict[str, float] = {}
        for row in state.load_tokens():
            self._tokens[row["token"]] = TokenRecord(
                row["kind"], row["subject"], row["expires_at"], json.loads(row["extra"])
            )
        self._auth_routes: dict[tuple[str, str], Callable[[Request, dict[str, Any]], Any]] = {
            ("POST", "/koas/oauth2/access_token"): self._oauth_access_token,
            ("POST", "/koas/user/account"): self._user_account,
            ("POST", "/koas/user/account_applist"): self._user_applist,
            ("POST", "/koas/user/get_service_gateway"): self._user_gateway,
            ("POST", "/koas/user/refresh_login_access_token"): self._user_refresh_login,
            ("POST", "/koas/user/refresh_auth_data"): self._refresh_auth_data,
            ("POST", "/koas/user/login_status"): self._login_status,
            ("POST", "/jdyconnector/app_management/push_app_authorize"): self._push_app_authorize,
            ("GET", "/jdyconnector/app_management/kingdee_auth_token"): self._kingdee_auth_token,
        }
        self._business: dict[tuple[str, str, str], Callable[[dict[str, Any]], Any]] = {
            ("app006992", "customer", "list"): lambda b: self._page(
                b, lambda o, n: state.list_items("customer", o, n)
            ),
            ("app006992", "customer", "create"): self._customer_create,
            ("app006992", "material", "list"): lambda b: self._page(
                b, lambda o, n: state.list_items("material", o, n)
            ),
            ("app006992", "material", "getdetail"): self._material_detail,
            ("app006992", "material", "getlistdetails"): self._material_details,
            ("app006992", "stock", "list"): lambda b: self._page(
                b, lambda o, n: state.list_items("stock", o, n)
            ),
            ("app006992", "measureunit", "list"): lambda b: self._page(
                b, lambda o, n: state.list_items("unit", o, n)
            ),
            ("app007104", "salesdelivery", "create"): self._sd_create,
            ("app007104", "salesdelivery", "update"): self._sd_update,
            ("app007104", "salesdelivery", "delete"): self._sd_delete,
            ("app007104", "salesdelivery", "getdetail"): lambda b: state.bill_detail(_int(b.get("Id"))),
            ("app007104", "salesdelivery", "list"): lambda b: self._page(
                b, lambda o, n: state.list_bills(_filters(b), o, n)
            ),
            ("app007104", "icinventory", "list"): lambda b: self._page(b, state.list_inventory),
            ("app007155", "voucher", "create"): self._voucher_create,
            ("app007155", "voucher", "list"): lambda b: self._page(
                b, lambda o, n: state.list_vouchers(_filters(b), o, n)
            ),
            ("app007155", "voucher", "getdetail"): lambda b: state.voucher_detail(_int(b.get("Id"))),
        }

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def stats_snapshot(self) -> dict[str, int]:
        """A copy of the counters."""
        with self._lock:
            return dict(self.stats)

    # --- entry point --------------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        """Answer one non-admin request (faults included)."""
        path = req.path
        auth_handler = self._auth_routes.get((req.method, path))
        match = BUSINESS.match(path) if auth_handler is None else None
        route: tuple[str, str, str] | None = None
        if match:
            route = (match.group(1).lower(), match.group(2).lower(), match.group(3).lower())
            if route not in self._business or req.method != "POST":
                route = None
        if auth_handler is None and route is None:
            self._count("status:404")
            return Reply(404, b"Not Found", {"Content-Type": "text/plain"})
        name = "/".join(route) if route else path
        self._count("calls")
        self._count(f"route:{name}")
        cfg = self.faults.config
        faulted = cfg.fault_scope == "all" or route is not None
        write = route is not None and route[2] in WRITE_OPS
        lose_reply = False
        list_page = 0  # the page asked for, when a paging knob watches list calls
        if route is not None and route[2] == "list" and (cfg.fail_page or cfg.shift_on_page):
            list_page = _list_page(req.body)
        client = req.query.get("access_token") or req.client
        if faulted:
            now = time.time()
            if self._not_before.get(client, 0.0) > now + 0.05:
                self._count("early_after_429")
            wait = self.faults.throttle()
            if wait is not None:
                self._count("throttled")
                if cfg.throttle_mode == "errcode":
                    self._count(f"errcode:{E_THROTTLED}")
                    return envelope(None, E_THROTTLED, "请求过于频繁，请稍后再试")
                header = retry_after_header(wait)
                self._not_before[client] = now + float(header)
                return _json(
                    {"errcode": E_THROTTLED, "description": "Too Many Requests"}, 429, {"Retry-After": header}
                )
            if cfg.latency_ms:
                time.sleep(cfg.latency_ms / 1000.0)
            page_status = self.faults.page_fault(name, list_page) if list_page else None
            if page_status:
                self._count("5xx")
                self._count("fail_page")
                html = f"<html><body><h1>{page_status} Server Error</h1></body></html>".encode()
                return Reply(page_status, html, {"Content-Type": "text/html"})
            fingerprint = req.method + " " + path.lower() + " " + hashlib.sha256(req.body).hexdigest()
            decision = self.faults.decide(fingerprint, write=write)
            if decision.drop:
                self._count("dropped")
                return Reply(drop=True)
            if decision.status_5xx:
                self._count("5xx")
                html = f"<html><body><h1>{decision.status_5xx} Server Error</h1></body></html>".encode()
                return Reply(decision.status_5xx, html, {"Content-Type": "text/html"})
            lose_reply = decision.lose_reply
        reply = self._answer(req, auth_handler, route)
        if list_page and reply.ok and route is not None:
            action = self.faults.page_shift(name, list_page)
            if action:
                self._shift(SHIFT_KINDS[route[1]], action)
        if lose_reply and reply.ok:
            self._count("lost_replies")  # committed; now the client never hears of it
            if cfg.lost_reply_mode == "502":
                return Reply(502, b"<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"})
            return Reply(drop=True)
        return reply

    def _answer(self, req: Request, auth_handler: Any, route: tuple[str, str, str] | None) -> Reply:
        try:
            try:
                body = json.loads(req.body.decode("utf-8"), parse_float=Decimal) if req.body.strip() else {}
            except (ValueError, UnicodeDecodeError):
                raise Fail(E_BUSINESS, "业务接口返回失败结果，失败原因：请求参数转换成JSON对象异常") from None
            if not isinstance(body, dict):
                raise Fail(E_BUSINESS, "业务接口返回失败结果，失败原因：请求参数转换成JSON对象异常")
            if auth_handler is not None:
                return envelope(auth_handler(req, body))
            assert route is not None
            self._check_business_auth(req)
            return envelope(self._business[route](body))
        except Fail as fail:
            self._count(f"errcode:{fail.errcode}")
            return envelope(None, fail.errcode, fail.description)
        except Refusal as refusal:
            self._count(f"errcode:{E_BUSINESS}")
            return business_error(str(refusal))

    # --- tokens -------------------------------------------------------------------------------------
    def _issue(
        self, kind: str, subject: str, extra: dict[str, Any] | None = None, ttl_kind: str | None = None
    ) -> tuple[str, float]:
        token = secrets.token_urlsafe(24)
        expires = time.time() + self.faults.config.ttl(ttl_kind or kind)
        record = TokenRecord(kind, subject, expires, dict(extra or {}))
        with self._lock:
            self._tokens[token] = record
        self.state.save_token(token, kind, subject, expires, record.extra)
        return token, expires

    def _token(self, value: str | None, kinds: tuple[str, ...], errcode: int, label: str) -> TokenRecord:
        record = self._tokens.get(value or "")
        if record is None or record.kind not in kinds:
            raise Fail(errcode, f"{label} 无效")
        if time.time() >= record.expires_at:
            raise Fail(errcode, f"{label} 已过期")
        return record

    def _revoke(self, value: str) -> None:
        with self._lock:
            self._tokens.pop(value, None)
        self.state.revoke_token(value)

    def revoke_all(self, kind: str | None = None) -> int:
        """Invalidate every token (or every token of ``kind``): the gateway forgot all sessions."""
        with self._lock:
            doomed = [t for t, r in self._tokens.items() if kind is None or r.kind == kind]
            for t in doomed:
                del self._tokens[t]
        self.state.revoke_all(kind)
        return len(doomed)

    @staticmethod
    def _check_timestamp(value: str | None, label: str) -> None:
        try:
            stamp = float(value or "")
        except ValueError:
            raise Fail(E_HEADER, f"{label} 缺失或格式错误") from None
        if stamp > 1e11:  # milliseconds
            stamp /= 1000.0
        if abs(time.time() - stamp) > TIMESTAMP_WINDOW:
            raise Fail(E_TIMESTAMP, f"{label} 已过期，请检查服务器时间")

    # --- koas flow (a) ------------------------------------------------------------------------------
    def _check_client(self, req: Request) -> None:
        if not _same(req.query.get("client_id", ""), self.creds.client_id) or not _same(
            req.query.get("client_secret", ""), self.creds.client_secret
        ):
            raise Fail(E_CREDENTIALS, "client_id 或 client_secret 错误")

    def _oauth_access_token(self, req: Request, body: dict[str, Any]) -> Any:
        self._check_client(req)
        if not _same(str(body.get("code") or ""), self.creds.auth_code):
            raise Fail(E_CREDENTIALS, "授权码 code 无效或已使用")
        uid = "sandbox-uid-1"
        access, access_exp = self._issue("access_token", uid)
        secret = secrets.token_hex(16)
        session, session_exp = self._issue("session_id", uid, {"secret": secret})
        return {
            "uid": uid,
            "nickname": "沙箱用户",
            "access_token": access,
            "access_token_expire_in": int(access_exp),
            "session_id": session,
            "session_id_expire_in": int(session_exp),
            "session_secret": secret,
        }

    def _account_auth(self, req: Request, body: dict[str, Any]) -> TokenRecord:
        """``/koas/user/*``: access token, session and ``KIS-Signature`` (§2.2)."""
        self._token(req.query.get("access_token"), ("access_token",), E_TOKEN, "access_token")
        session_id = str(body.get("session_id") or "")
        session = self._token(session_id, ("session_id",), E_SESSION, "session_id")
        h = req.headers
        self._check_timestamp(h.get("KIS-Timestamp"), "KIS-Timestamp")
        expected = hashlib.sha256(
            (
                h.get("KIS-State", "")
                + session_id
                + h.get("KIS-TraceID", "")
                + session.extra.get("secret", "")
                + h.get("KIS-Timestamp", "")
            ).encode("utf-8")
        ).hexdigest()
        if not verify_signature(expected, h.get("KIS-Signature", "")):
            raise Fail(E_SIGNATURE, "KIS-Signature 校验失败")
        return session

    def _accounts(self) -> list[dict[str, Any]]:
        return [
            {
                "acctnumber": self.creds.account_number,
                "acctname": "沙箱精工五金",
                "pid": "P-1001",
                "icrmid": "ICRM-1001",
            },
            {"acctnumber": "DEMO", "acctname": "演示账套", "pid": "P-1002", "icrmid": "ICRM-1002"},
        ]

    def _user_account(self, req: Request, body: dict[str, Any]) -> Any:
        self._account_auth(req, body)
        return self._accounts()

    def _user_applist(self, req: Request, body: dict[str, Any]) -> Any:
        self._account_auth(req, body)
        acct = next((a for a in self._accounts() if a["acctnumber"] == body.get("acctnumber")), None)
        if acct is None:
            raise Fail(E_ACCOUNT, f"账套 {body.get('acctnumber')!r} 不存在")
        return [{"appid": app, "icrmid": acct["icrmid"]} for app in ("APP006992", "APP007104", "APP007155")]

    def _grant_gateway(self, subject: str, acct: dict[str, Any]) -> dict[str, Any]:
        gw = f"gw-{acct['acctnumber'].lower()}.sandbox.kis"
        auth_data, _ = self._issue("auth_data", subject, {"gw": gw, "acct": acct["acctnumber"]})
        refresh, refresh_exp = self._issue("refresh_auth_data_token", subject, {"acct": acct["acctnumber"]})
        return {
            "auth_data": auth_data,
            "gw_router_addr": gw,
            "extend_data": {
                "refresh_auth_data_token": refresh,
                "refresh_auth_data_token_expire_in": int(refresh_exp),
            },
        }

    def _user_gateway(self, req: Request, body: dict[str, Any]) -> Any:
        session = self._account_auth(req, body)
        acct = next(
            (
                a
                for a in self._accounts()
                if a["acctnumber"] == body.get("acctnumber") and a["pid"] == body.get("pid")
            ),
            None,
        )
        if acct is None:
            raise Fail(E_ACCOUNT, f"账套 {body.get('acctnumber')!r} 不存在或无权限")
        return self._grant_gateway(session.subject, acct)

    def _user_refresh_login(self, req: Request, body: dict[str, Any]) -> Any:
        session = self._account_auth(req, body)
        old_access, old_session = req.query.get("access_token", ""), str(body.get("session_id"))
        access, access_exp = self._issue("access_token", session.subject)
        secret = secrets.token_hex(16)
        new_session, session_exp = self._issue("session_id", session.subject, {"secret": secret})
        self._revoke(old_access)
        self._revoke(old_session)
        return {
            "uid": session.subject,
            "access_token": access,
            "access_token_expire_in": int(access_exp),
            "session_id": new_session,
            "session_id_expire_in": int(session_exp),
            "session_secret": secret,
        }

    def _refresh_auth_data(self, req: Request, body: dict[str, Any]) -> Any:
        self._check_client(req)
        self._token(str(body.get("access_token") or ""), ("access_token",), E_TOKEN, "access_token")
        old = str(body.get("refresh_auth_data_token") or "")
        record = self._token(old, ("refresh_auth_data_token",), E_AUTH_DATA, "refresh_auth_data_token")
        acct = next(a for a in self._accounts() if a["acctnumber"] == record.extra.get("acct"))
        self._revoke(old)
        return self._grant_gateway(record.subject, acct)

    def _login_status(self, req: Request, body: dict[str, Any]) -> Any:
        self._account_auth(req, body)
        return {"status": 1, "description": "已登录"}

    # --- open platform flow (b) ---------------------------------------------------------------------
    def _check_xapi(self, req: Request) -> None:
        h = req.headers
        if h.get("X-Api-ClientID") != self.creds.client_id:
            raise Fail(E_CREDENTIALS, "X-Api-ClientID 无效")
        self._check_timestamp(h.get("X-Api-TimeStamp"), "X-Api-TimeStamp")
        expected = api_signature(
            self.creds.client_secret,
            req.method,
            req.path,
            req.query,
            h.get("X-Api-Nonce", ""),
            h.get("X-Api-TimeStamp", ""),
        )
        if not verify_signature(expected, h.get("X-Api-Signature", "")):
            raise Fail(E_SIGNATURE, "授权密钥校验失败，请获取最新密钥加密")

    def _domain(self) -> str:
        return f"gw-{self.creds.account_number.lower()}.sandbox.kis"

    def _push_app_authorize(self, req: Request, body: dict[str, Any]) -> Any:
        self._check_xapi(req)
        if req.query.get("outerInstanceId") != self.creds.outer_instance_id:
            return []
        return [
            {
                "accountId": self.creds.account_number,
                "serviceId": "KIS-CLOUD",
                "domain": self._domain(),
                "appKey": self.creds.app_key,
                "appSecret": self.creds.app_secret,
                "client_id": self.creds.client_id,
                "outer_instance_id": self.creds.outer_instance_id,
                "status": 1,
            }
        ]

    def _kingdee_auth_token(self, req: Request, body: dict[str, Any]) -> Any:
        self._check_xapi(req)
        if req.query.get("app_key") != self.creds.app_key:
            raise Fail(E_CREDENTIALS, "app_key 无效")
        expected = app_signature(self.creds.app_key, self.creds.app_secret)
        if not verify_signature(expected, req.query.get("app_signature", "")):
            raise Fail(E_SIGNATURE, "授权密钥校验失败，请获取最新密钥加密")
        uid = "sandbox-app-uid"
        app_token, _ = self._issue(
            "app_token", uid, {"gw": self._domain(), "acct": self.creds.account_number}
        )
        access, _ = self._issue("op_access_token", uid, ttl_kind="app_token")
        return {self.faults.config.app_token_key: app_token, "access_token": access, "uid": uid}

    # --- business -----------------------------------------------------------------------------------
    def _check_business_auth(self, req: Request) -> None:
        h = req.headers
        self._token(
            req.query.get("access_token"), ("access_token", "op_access_token"), E_TOKEN, "access_token"
        )
        auth = self._token(h.get("KIS-AuthData"), ("auth_data", "app_token"), E_AUTH_DATA, "KIS-AuthData")
        if h.get("X-GW-Router-Addr") != auth.extra.get("gw"):
            raise Fail(E_GATEWAY, "X-GW-Router-Addr 与授权数据不符")
        for name in ("KIS-State", "KIS-TraceID", "KIS-Ver"):
            if not h.get(name):
                raise Fail(E_HEADER, f"缺少请求头 {name}")
        self._check_timestamp(h.get("KIS-Timestamp"), "KIS-Timestamp")

    def _page(
        self, body: dict[str, Any], fetch: Callable[[int, int], tuple[list[dict[str, Any]], int]]
    ) -> Any:
        try:
            page = max(1, int(body.get("CurrentPage") or 1))
            size = min(1000, max(1, int(body.get("ItemsOfPage") or 20)))
        except (TypeError, ValueError):
            raise Refusal("CurrentPage/ItemsOfPage 必须是整数") from None
        rows, total = fetch((page - 1) * size, size)
        pages = (total + size - 1) // size
        data: dict[str, Any] = {"List": rows, "TotalItems": total, self.faults.config.page_count_key: pages}
        if self.faults.config.emit_has_next_page:
            data["HasNextPage"] = page < pages
        return data

    def _shift(self, kind: str, action: str) -> None:
        """``shift_on_page``: insert a row at the head of the ``kind`` list, or delete its head row.

        The list is ordered by ``FItemID``; a new item takes an id below every existing one (the shared
        sequence counts up from :data:`FIRST_ITEM_ID`, so ids below it are free), so it sorts first.
        """
        with self.state.tx() as db:
            if action == "insert":
                low = db.execute("SELECT MIN(fitemid) FROM items").fetchone()[0]
                fitemid = min(int(low or FIRST_ITEM_ID), FIRST_ITEM_ID) - 1
                if fitemid < 1:
                    return  # no free id below the first item (after ~1000 inserts): nothing shifts
                db.execute(
                    "INSERT INTO items VALUES (?,?,?,?,?)",
                    (fitemid, kind, f"SHIFT{fitemid}", f"翻页中插入{fitemid}", "{}"),
                )
            else:
                db.execute(
                    "DELETE FROM items WHERE fitemid = (SELECT MIN(fitemid) FROM items WHERE kind=?)", (kind,)
                )
        self._count(f"shift:{action}")

    def _customer_create(self, body: dict[str, Any]) -> Any:
        obj = body.get("Object") or {}
        number, name = str(obj.get("FNumber") or "").strip(), str(obj.get("FName") or "").strip()
        if not number or not name:
            raise Refusal("客户代码 FNumber 和名称 FName 不能为空")
        extra = {k: v for k, v in obj.items() if k not in ("FNumber", "FName")}
        fitemid = self.state.create_item("customer", number, name, extra)
        self.state.record_write("Customer/Create", number, fitemid, obj)
        return {"FItemID": fitemid, "FNumber": number}

    def _material_detail(self, body: dict[str, Any]) -> Any:
        row = self.state.item("material", _int(body.get("Id")))
        if row is None:
            raise Refusal(f"物料内码 {body.get('Id')!r} 不存在")
        return self.state.item_row(row)

    def _material_details(self, body: dict[str, Any]) -> Any:
        ids = body.get("ItemIds") or []
        if not isinstance(ids, list) or len(ids) > 20:
            raise Refusal("ItemIds 必须是不超过 20 个内码的数组")
        rows = [self.state.item("material", _int(i)) for i in ids]
        return [self.state.item_row(r) for r in rows if r is not None]

    def _sd_create(self, body: dict[str, Any]) -> Any:
        fid, bill_no = self.state.create_bill(
            body.get("Object"), refuse_duplicate=self.faults.config.refuse_duplicate_bill_no
        )
        return {"FID": fid, "FBillNo": bill_no}

    def _sd_update(self, body: dict[str, Any]) -> Any:
        fid, bill_no = self.state.update_bill(
            body.get("Object"), refuse_duplicate=self.faults.config.refuse_duplicate_bill_no
        )
        return {"FID": fid, "FBillNo": bill_no}

    def _sd_delete(self, body: dict[str, Any]) -> Any:
        self.state.delete_bill(_int(body.get("Id")))
        return {}

    def _voucher_create(self, body: dict[str, Any]) -> Any:
        fid, number = self.state.create_voucher(body.get("Object"))
        return {"FVoucherID": fid, "FNumber": number}

    # --- admin --------------------------------------------------------------------------------------
    def admin(self, req: Request) -> Reply:
        """``/__admin__/*``: faults, ledger, stats, seed, audit, invoice, reset, revoke_tokens, info."""
        sub = req.path[len("/__admin__/") :].strip("/")
        try:
            body = json.loads(req.body.decode("utf-8")) if req.body.strip() else {}
        except ValueError:
            return _json({"error": "body is not JSON"}, 400)
        try:
            if sub == "faults" and req.method == "GET":
                return _json(self.faults.config.to_dict())
            if sub == "faults" and req.method == "PUT":
                return _json(self.faults.update(body).to_dict())
            if sub == "ledger" and req.method == "GET":
                return _json({"ledger": self.state.ledger(req.query.get("endpoint"))})
            if sub == "stats" and req.method == "GET":
                return _json(self.stats_snapshot())
            if sub == "bills" and req.method == "GET":
                return _json({"fids": self.state.bills_by_no(req.query.get("bill_no", ""))})
            if sub == "info" and req.method == "GET":
                return _json(
                    {
                        "client_id": self.creds.client_id,
                        "account_number": self.creds.account_number,
                        "app_key": self.creds.app_key,
                        "outer_instance_id": self.creds.outer_instance_id,
                    }
                )
            if req.method == "POST":
                if sub == "seed":
                    return _json({"ids": self.state.seed(body)})
                if sub.startswith("audit/"):
                    stamp = self.state.audit(
                        int(sub.split("/", 1)[1]), allow_negative=self.faults.config.allow_negative_stock
                    )
                    return _json({"FCheckDate": stamp})
                if sub == "invoice":
                    detail = self.state.invoice(
                        int(body["fid"]),
                        int(body.get("tran_type", 86)),
                        str(body.get("invoice_no") or ""),
                        body.get("lines"),
                    )
                    return _json(detail)
                if sub == "reset":
                    self.revoke_all()
                    self.state.reset()
                    if body.get("seed_defaults", True):
                        self.state.seed(DEFAULT_SEED)
                    with self._lock:
                        self.stats = Counter(dict.fromkeys(CORE_STATS, 0))
                    return _json({"reset": True})
                if sub == "revoke_tokens":
                    return _json({"revoked": self.revoke_all(body.get("kind"))})
        except Refusal as refusal:
            return _json({"error": str(refusal)}, 409)
        except (KeyError, ValueError, TypeError) as exc:
            return _json({"error": f"{type(exc).__name__}: {exc}"}, 400)
        return _json({"error": f"no admin endpoint {req.method} {req.path}"}, 404)


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _list_page(raw: bytes) -> int:
    """``CurrentPage`` of a list call's body (1 when absent, 0 when the body is not a JSON object)."""
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        return max(1, int(body.get("CurrentPage") or 1)) if isinstance(body, dict) else 0
    except (ValueError, TypeError, UnicodeDecodeError):
        return 0


def _filters(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("Data")
    return data if isinstance(data, dict) else {}


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def split_path(raw: str) -> str:
    """The decoded path part of a request target."""
    return unquote(raw.split("?", 1)[0])
