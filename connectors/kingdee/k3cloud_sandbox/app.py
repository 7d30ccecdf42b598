"""Request handling of the sandbox, independent of the HTTP server: ``SandboxApp.handle`` maps
(method, path, headers, body) to a :class:`Reply`. Business calls pass through fault injection,
authentication, the throttle and the engine, in that order; ``/__admin__/`` calls manage the sandbox.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import config as cfg
from .auth import Authenticator, NotAuthenticated
from .documents import Doc, Engine, Outcome, PackageFailed
from .faults import FaultInjector, TokenBucket
from .forms import form
from .queries import QueryProblem, run_query
from .seed import base_records, credentials_for, opening_stock
from .store import Store
from .values import ci
from .wire import (
    BadRequest,
    decode,
    encode,
    error_result,
    response_status,
    service_of,
    stringify,
    wrap_query_error,
)

IIS_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>Runtime Error</title></head><body>"
    "<h1>Server Error in '/K3Cloud' Application.</h1><h2><i>Runtime Error</i></h2>"
    "<p>An application error occurred on the server.</p></body></html>"
)
GATEWAY_PAGES = {
    502: "<html><head><title>502 - Bad Gateway</title></head><body><h1>502 - Web server received an invalid "
    "response while acting as a gateway or proxy server.</h1></body></html>",
    503: "<html><head><title>Service Unavailable</title></head><body><h1>Service Unavailable</h1>"
    "<p>HTTP Error 503. The service is unavailable.</p></body></html>",
    504: "<html><head><title>504 - Gateway Timeout</title></head>"
    "<body><h1>504 - Gateway Timeout</h1></body></html>",
}
THROTTLED = "接口调用次数超出限制（调用频率过高），请稍后再试"
_QUERY_OPS = ("ExecuteBillQuery", "BillQuery")
_STATE_OPS = ("Submit", "Audit", "UnAudit", "Delete")


@dataclass
class Reply:
    """What to send back: a body, or ``reset`` to drop the connection without a reply."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    reset: bool = False


def _json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8"))


class SandboxApp:
    """The K/3 Cloud sandbox, minus the socket layer."""

    def __init__(
        self,
        state_path: str,
        seed: int = 0,
        *,
        base_path: str = "/K3Cloud/",
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.store = Store(state_path)
        self.base_path = "/" + base_path.strip("/") + "/"
        self._overrides = dict(settings or {})
        self._lock = threading.RLock()
        stored_seed = self.store.kv_get("seed")
        if stored_seed is None:
            self._initialise(seed)
        else:
            seed = int(stored_seed)
        self.seed = seed
        self._settings: dict[str, Any] = self.store.kv_get("config") or cfg.defaults()
        if self._overrides:
            self.update_settings(self._overrides)
        self._clock_offset = float(self.store.kv_get("clock_offset", 0.0))
        self.auth = Authenticator(self.store, seed)
        self.engine = Engine(self.store, self.settings, self.now)
        self.faults = FaultInjector(seed)
        self.bucket = TokenBucket()
        self.stats: Counter[str] = Counter()

    # -------------------------------------------------------------- state

    def settings(self) -> dict[str, Any]:
        """The effective settings (see :mod:`.config`)."""
        return self._settings

    def update_settings(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a partial settings object (validated) and persist it."""
        with self._lock:
            self._settings = cfg.merged(self._settings, patch)
            self.store.kv_set("config", self._settings)
            if "throttle" in patch and hasattr(self, "bucket"):
                self.bucket.clear()
            return self._settings

    def _save_script(self, script: list[dict[str, Any]]) -> None:
        with self._lock:
            self._settings = {**self._settings, "script": script}
            self.store.kv_set("config", self._settings)

    def now(self) -> float:
        """The sandbox clock: wall time plus the offset set through ``/__admin__/clock``."""
        return time.time() + self._clock_offset

    @property
    def credentials(self) -> Any:
        """Logins of this sandbox (see :func:`.seed.credentials_for`)."""
        return credentials_for(self.seed)

    def _initialise(self, seed: int) -> None:
        """Wipe everything and load the fixture of ``seed`` with default settings."""
        with self.store.lock:
            self.store.wipe()
            self.store.kv_set("seed", seed)
            settings = cfg.merged(cfg.defaults(), self._overrides) if self._overrides else cfg.defaults()
            self.store.kv_set("config", settings)
            creds = credentials_for(seed)
            self.store.add_user(creds.acct_id, creds.username, creds.password, 100008)
            self.store.add_user(creds.acct_id, "administrator", "888888", 100001)
            self.store.add_app(creds.app_id, creds.app_secret, creds.acct_id, creds.username)
            self._load_fixture(seed)

    def _load_fixture(self, seed: int, extra: dict[str, Any] | None = None) -> dict[str, int]:
        """Create missing base records and set opening stock (plus ``extra`` customers/materials/stock)."""
        extra = extra or {}
        records = [(r.form_id, r.number, r.name, dict(r.extra), r.forbidden) for r in base_records(seed)]
        for c in extra.get("customers", []):
            records.append(("BD_Customer", str(c["number"]), str(c["name"]), {}, bool(c.get("forbidden"))))
        for m in extra.get("materials", []):
            records.append(("BD_MATERIAL", str(m["number"]), str(m["name"]), {}, bool(m.get("forbidden"))))
        created = 0
        now = time.time()
        engine = Engine(self.store, cfg.defaults, lambda: now)
        with self.store.transaction():
            for form_id, number, name, fields, forbidden in records:
                if self.store.find_docs(form_id, number):
                    continue
                fm = form(form_id)
                assert fm is not None
                head = {
                    "FNumber": number,
                    "FName": name,
                    "FForbidStatus": "B" if forbidden else "A",
                    **fields,
                }
                doc = Doc(0, form_id, number, "C", {"head": head, "entities": {}}, now, now)
                engine._defaults_and_required(fm, doc, validate=False)  # noqa: SLF001 - fills reference defaults
                self.store.insert_doc(form_id, number, "C", doc.body, now)
                created += 1
            stock = [(m, s, lot, org, q) for m, s, lot, org, q in opening_stock(seed)]
            stock += [
                (
                    str(r["material"]),
                    str(r["stock"]),
                    str(r.get("lot", "")),
                    str(r.get("org", "100")),
                    r["qty"],
                )
                for r in extra.get("stock", [])
            ]
            for material, stock_no, lot, org, qty in stock:
                self.store.set_stock(material, stock_no, lot, org, Decimal(str(qty)))
        return {"base_records_created": created, "stock_rows": len(stock)}

    # -------------------------------------------------------------- entry point

    def handle(self, method: str, raw_path: str, headers: Message, body: bytes) -> Reply:
        """Answer one HTTP request."""
        parts = urlsplit(raw_path)
        path = parts.path
        if path.startswith("/__admin__/"):
            return self._admin(method, path, parse_qs(parts.query), body)
        if not path.lower().startswith(self.base_path.lower()):
            return Reply(
                404, b"<html><body><h1>404 - File or directory not found.</h1></body></html>", "text/html"
            )
        service = service_of(path)
        if service is None:
            return Reply(
                404, b"<html><body><h1>404 - File or directory not found.</h1></body></html>", "text/html"
            )
        if method != "POST":
            return Reply(405, b"<html><body><h1>405 - Method Not Allowed</h1></body></html>", "text/html")
        self.stats[f"calls:{service}"] += 1
        settings = self.settings()
        fault = (
            None
            if service == "AuthService.Logout"
            else self.faults.decide(service, self.settings, self._save_script)
        )
        if fault:
            self.stats[f"fault:{fault}"] += 1
        pre = self._pre_fault(fault, settings, service)
        if pre is not None:
            return pre
        reply = self._serve(service, path, headers, body, settings, forced_throttle=fault == "throttle")
        if fault == "lost_reply":
            mode = settings["lost_reply_mode"]
            if mode == "reset":
                return Reply(reset=True)
            if mode == "delay":
                time.sleep(float(settings["delay_seconds"]))
                return reply
            return Reply(502, GATEWAY_PAGES[502].encode("utf-8"), "text/html")
        return reply

    def _pre_fault(self, fault: str | None, settings: dict[str, Any], service: str) -> Reply | None:
        if fault == "http_500":
            return Reply(500, IIS_ERROR_PAGE.encode("utf-8"), "text/html; charset=utf-8")
        if fault in ("http_502", "http_503", "http_504"):
            code = int(fault[-3:])
            return Reply(code, GATEWAY_PAGES[code].encode("utf-8"), "text/html")
        if fault == "reset":
            return Reply(reset=True)
        if fault == "response_error":
            return Reply(
                200,
                "response_error: 网关转发请求失败（sandbox injected）".encode(),
                "text/plain; charset=utf-8",
            )
        if fault == "delay":
            time.sleep(float(settings["delay_seconds"]))
        if fault == "session_lost":
            with self.store.lock:
                self.store.kill_all_sessions()
        return None

    def _throttled(self, service: str, settings: dict[str, Any]) -> Reply:
        self.stats["throttled"] += 1
        if settings["throttle"]["mode"] == "http503":
            time.sleep(float(settings["throttle"]["slow_seconds"]))
            return Reply(503, GATEWAY_PAGES[503].encode("utf-8"), "text/html")
        return self._business_reply(service, error_result(THROTTLED, 14), settings)

    def _business_reply(self, service: str, payload: Any, settings: dict[str, Any]) -> Reply:
        if service.split(".")[-1] in _QUERY_OPS and isinstance(payload, dict):
            payload = wrap_query_error(payload)
        if settings.get("strings_mode"):
            payload = stringify(payload)
        return Reply(200, encode(payload))

    def _serve(
        self,
        service: str,
        path: str,
        headers: Message,
        body: bytes,
        settings: dict[str, Any],
        forced_throttle: bool,
    ) -> Reply:
        try:
            decoded = decode(headers.get("Content-Type", ""), body)
        except BadRequest as exc:
            return self._business_reply(service, error_result(str(exc), 8), settings)
        if service.startswith(("AuthService.", "AccountService.")):
            return self._auth_service(service, decoded, headers, settings)
        with self.store.lock:
            try:
                principal = self.auth.authenticate(headers, path, self.now(), settings)
            except NotAuthenticated as exc:
                self.stats["not_authenticated"] += 1
                return self._business_reply(service, error_result(str(exc), 1), settings)
        throttle = settings["throttle"]
        if forced_throttle or (
            throttle["enabled"] and not self.bucket.allow(principal.via, throttle["rate"], throttle["burst"])
        ):
            return self._throttled(service, settings)
        op = service.split(".")[-1]
        form_id, data = decoded.form_and_data()
        packages = 1
        with self.store.lock:
            payload = self._dispatch(op, service, form_id, data, principal.label, settings)
            if op == "BatchSave" and isinstance(data, dict) and isinstance(ci(data, "Model"), list):
                packages = len(ci(data, "Model"))
        latency = float(settings.get("latency_per_package") or 0.0) * packages
        if latency > 0:
            time.sleep(latency)
        self.stats[f"ok:{service}"] += 1
        return self._business_reply(service, payload, settings) if not isinstance(payload, Reply) else payload

    def _auth_service(self, service: str, decoded: Any, headers: Message, settings: dict[str, Any]) -> Reply:
        now = self.now()
        with self.store.lock:
            if service == "AuthService.Logout":
                self.auth.logout(self.auth.session_id(headers))
                return self._business_reply(
                    service, {"Result": {"ResponseStatus": response_status(success=True)}}, settings
                )
            if service == "AccountService.GetDataCenterList":
                creds = self.credentials
                return Reply(200, encode([{"Id": creds.acct_id, "Number": "SANDBOX", "Name": "沙箱账套"}]))
            if service == "AuthService.ValidateUser":
                payload, sid = self.auth.validate_user(
                    decoded.login_args(("acctID", "username", "password", "lcid")), now, settings
                )
            elif service == "AuthService.LoginByAppSecret":
                payload, sid = self.auth.login_by_app_secret(
                    decoded.login_args(("acctID", "username", "appId", "appSecret", "lcid")), now, settings
                )
            else:
                payload, sid = self.auth.login_by_sign(
                    decoded.login_args(("acctID", "username", "appId", "timestamp", "sign", "lcid")),
                    now,
                    settings,
                )
        reply = Reply(200, encode(payload))
        if sid:
            reply.headers.append(("Set-Cookie", f"kdservice-sessionid={sid}; path=/"))
            reply.headers.append(("Set-Cookie", f"ASP.NET_SessionId={sid[:24]}; path=/; HttpOnly"))
        return reply

    # -------------------------------------------------------------- business services

    def _dispatch(
        self, op: str, service: str, form_id: str | None, data: Any, principal: str, settings: dict[str, Any]
    ) -> Any:
        if op in _QUERY_OPS:
            if not isinstance(data, dict):
                return error_result("查询参数data格式错误，应为JSON对象", 8)
            try:
                keys, rows = run_query(self.store, data)
            except QueryProblem as exc:
                return error_result(exc.message, exc.msg_code)
            return [dict(zip(keys, row, strict=True)) for row in rows] if op == "BillQuery" else rows
        if not isinstance(data, dict):
            return error_result("请求参数data格式错误，应为JSON对象", 8)
        try:
            fm = self.engine.form_or_fail(form_id)
        except PackageFailed as exc:
            return error_result(exc.problems[0].message, exc.msg_code)
        if op in ("Save", "Draft"):
            try:
                saved = self.engine.save_package(
                    fm, data, ci(data, "Model"), service=service, principal=principal, draft=op == "Draft"
                )
            except PackageFailed as exc:
                outcome = Outcome()
                outcome.fail(0, exc)
                return {
                    "Result": {
                        "ResponseStatus": self._status(outcome),
                        "Id": "",
                        "Number": "",
                        "NeedReturnData": [],
                    }
                }
            entity = {"Id": saved["Id"], "Number": saved["Number"], "DIndex": 0}
            return {
                "Result": {
                    "ResponseStatus": response_status(success=True, successes=[entity]),
                    "Id": saved["Id"],
                    "Number": saved["Number"],
                    "NeedReturnData": saved["NeedReturnData"],
                }
            }
        if op == "BatchSave":
            models = ci(data, "Model")
            if not isinstance(models, list):
                return error_result("BatchSave的Model必须是数组", 8)
            cap = int(settings["batch_cap"])
            if len(models) > cap:
                return error_result(f"BatchSave一次最多允许{cap}个数据包，本次{len(models)}个", 8)
            outcome = Outcome()
            returned: list[Any] = []
            for dindex, model in enumerate(models):
                try:
                    saved = self.engine.save_package(fm, data, model, service=service, principal=principal)
                except PackageFailed as exc:
                    outcome.fail(dindex, exc)
                    continue
                outcome.successes.append({"Id": saved["Id"], "Number": saved["Number"], "DIndex": dindex})
                returned.extend(saved["NeedReturnData"])
            return {"Result": {"ResponseStatus": self._status(outcome), "NeedReturnData": returned}}
        if op in _STATE_OPS:
            outcome = self.engine.state_op(op, fm, data, service=service, principal=principal)
            return {"Result": {"ResponseStatus": self._status(outcome)}}
        if op == "Push":
            outcome = self.engine.push(fm, data, service=service, principal=principal)
            return {"Result": {"ResponseStatus": self._status(outcome)}}
        if op == "View":
            try:
                bill = self.engine.view(fm, data)
            except PackageFailed as exc:
                outcome = Outcome()
                outcome.fail(0, exc)
                return {"Result": {"ResponseStatus": self._status(outcome)}}
            return {"Result": {"ResponseStatus": response_status(success=True), "Result": bill}}
        return error_result(f"sandbox does not implement {op}", 4)  # pragma: no cover

    @staticmethod
    def _status(outcome: Outcome) -> dict[str, Any]:
        return response_status(
            success=not outcome.errors,
            errors=outcome.errors,
            successes=outcome.successes,
            msg_code=outcome.msg_code,
        )

    # -------------------------------------------------------------- admin

    def _admin(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        name = path[len("/__admin__/") :].strip("/")
        try:
            payload = json.loads(body.decode("utf-8")) if body.strip() else {}
        except ValueError:
            return _json_reply({"error": "body must be JSON"}, 400)
        if not isinstance(payload, dict):
            return _json_reply({"error": "body must be a JSON object"}, 400)
        route = (method, name)
        if route == ("GET", "faults"):
            return _json_reply(self.settings())
        if route == ("PUT", "faults"):
            try:
                return _json_reply(self.update_settings(payload))
            except cfg.ConfigProblem as exc:
                return _json_reply({"error": str(exc)}, 400)
        if route == ("GET", "ledger"):
            since = int((query.get("since") or ["0"])[0])
            entries = self.store.ledger(since)
            if query.get("form_id"):
                entries = [e for e in entries if e["form_id"] == query["form_id"][0]]
            return _json_reply({"entries": entries})
        if route == ("POST", "recycle"):
            with self.store.lock:
                return _json_reply({"killed_sessions": self.store.kill_all_sessions()})
        if route == ("POST", "seed"):
            with self.store.lock:
                return _json_reply(self._load_fixture(int(payload.get("seed", self.seed)), payload))
        if route == ("POST", "reset"):
            with self.store.lock:
                seed = int(payload.get("seed", self.seed))
                self._initialise(seed)
                self.seed = seed
                self.auth = Authenticator(self.store, seed)
                self._settings = self.store.kv_get("config")
                self._clock_offset = 0.0
                self.faults.reseed(seed)
                self.bucket.clear()
                self.stats.clear()
            return _json_reply({"seed": seed})
        if route == ("POST", "clock"):
            with self._lock:
                if "offset" in payload:
                    self._clock_offset = float(payload["offset"])
                self._clock_offset += float(payload.get("advance", 0.0))
                self.store.kv_set("clock_offset", self._clock_offset)
            return _json_reply({"now": self.now(), "offset": self._clock_offset})
        if route == ("GET", "stats"):
            return _json_reply(dict(self.stats))
        if route == ("GET", "credentials"):
            return _json_reply(self.credentials.__dict__)
        return _json_reply({"error": f"no admin route {method} /__admin__/{name}"}, 404)
