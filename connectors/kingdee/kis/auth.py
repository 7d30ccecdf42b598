"""The two KIS cloud authorisation flows (ERP-APIS §2.1) and the business envelope headers (§2.2).

* :class:`KoasAuth` -- (a) OAuth code -> ``access_token`` + ``session_id`` -> account set -> service
  gateway (``auth_data`` + ``gw_router_addr``), with the refresh calls of step 5.
* :class:`OpenPlatformAuth` -- (b) ``push_app_authorize`` (X-Api-signed) for the gateway domain and app
  key, then ``kingdee_auth_token`` (X-Api-signed, ``app_signature``) for ``app-token`` + ``access_token``.

Tokens are cached with their absolute expiry and refreshed ``refresh_margin_seconds`` before it (at most a
fifth of the token's lifetime, so scaled-down sandbox lifetimes still leave room). After an auth error on
a business call the client calls :meth:`recover` once: it refreshes what it can and logs in again
otherwise. A generation counter makes concurrent workers share one recovery instead of stampeding.
"""

from __future__ import annotations

import hashlib
import random
import secrets as pysecrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.kingdee.kis.errors import Phase
from connectors.kingdee.kis.settings import KisQuirks, KisSettings
from connectors.kingdee.kis.transport import Transport
from connectors.kingdee.signing import app_signature, signed_headers
from hub.errors import AuthError, ConfigError
from hub.secrets import register_secret

KIS_VER = "1.0"


@dataclass
class Token:
    """A secret value with an absolute expiry (epoch seconds) and the moment to refresh it."""

    value: str
    expires_at: float
    refresh_at: float

    @classmethod
    def issue(cls, value: Any, expires_at: float, margin: float, now: float) -> Token:
        """Register ``value`` as a secret and schedule its refresh before ``expires_at``."""
        text = str(value)
        register_secret(text)
        lifetime = max(0.0, expires_at - now)
        return cls(text, expires_at, expires_at - min(margin, lifetime / 5))

    def fresh(self, now: float) -> bool:
        """Usable without refreshing first."""
        return now < self.refresh_at

    def alive(self, now: float) -> bool:
        """Not yet expired (may be due for refresh)."""
        return now < self.expires_at


@dataclass(frozen=True)
class BusinessAuth:
    """What a business call carries: query params, headers, and the generation they belong to."""

    params: dict[str, str]
    headers: dict[str, str]
    generation: int


class KisAuth(Protocol):
    """Common face of the two flows."""

    gateway: str

    def business(self) -> BusinessAuth:
        """Fresh credentials for one business call (logs in or refreshes first when due)."""
        ...

    def recover(self, generation: int) -> None:
        """After an auth error with credentials of ``generation``: refresh once (shared between threads)."""
        ...


# KIS-State and KIS-TraceID identify a call for tracing; they are not secrets. One generator seeded
# from the OS once per process: per-call os.urandom (token_hex, uuid4) was two system calls, each
# handing the GIL to the other sender threads, about 10% of a concurrent push's CPU (P11).
_CALL_IDS = random.Random(pysecrets.token_bytes(32))


def envelope_headers(auth_data: str, gateway: str) -> dict[str, str]:
    """The ``KIS-*`` headers of §2.2 for one call."""
    return {
        "KIS-AuthData": auth_data,
        "KIS-State": f"{_CALL_IDS.getrandbits(64):016x}",
        "KIS-Timestamp": str(int(time.time())),
        "KIS-TraceID": str(uuid.UUID(int=_CALL_IDS.getrandbits(128), version=4)),
        "KIS-Ver": KIS_VER,
        "X-GW-Router-Addr": gateway,
    }


def _expiry(data: dict[str, Any], key: str, default_lifetime: float, now: float) -> float:
    # *_expire_in are absolute epoch seconds (§2.1a); accept milliseconds and relative values defensively.
    raw = data.get(key)
    if raw in (None, ""):
        return now + default_lifetime
    value = float(raw)
    if value > 1e12:
        value /= 1000.0
    if value < 1e9:  # a relative lifetime, not an epoch
        value += now
    return value


class _Base:
    def __init__(self, settings: KisSettings, quirks: KisQuirks, transport: Transport) -> None:
        self.settings = settings
        self.quirks = quirks
        self.transport = transport
        self._lock = threading.RLock()
        self._generation = 0
        self.gateway = ""
        self.refreshes: dict[str, int] = {}

    def _count(self, what: str) -> None:
        self.refreshes[what] = self.refreshes.get(what, 0) + 1

    def _where(self) -> str:
        return f"KIS connection {self.settings.name!r}"


class KoasAuth(_Base):
    """Flow (a): OAuth code, account set, service gateway; refresh per §2.1a step 5."""

    def __init__(self, settings: KisSettings, quirks: KisQuirks, transport: Transport) -> None:
        super().__init__(settings, quirks, transport)
        self.access_token: Token | None = None
        self.session_id: Token | None = None
        self.session_secret = ""
        self.auth_data: Token | None = None
        self.refresh_auth_token: Token | None = None
        self.account: dict[str, Any] = {}

    # --- public -------------------------------------------------------------------------------------
    def business(self) -> BusinessAuth:
        """Fresh ``access_token`` + ``auth_data`` (refreshing whichever is due) for one call."""
        with self._lock:
            now = time.time()
            if self.access_token is None or not self.access_token.alive(now):
                self._login()
            elif not self.access_token.fresh(now) or (self.session_id and not self.session_id.fresh(now)):
                self._refresh_login_or_login()
            assert self.access_token is not None
            if self.auth_data is None or not self.auth_data.fresh(time.time()):
                self._refresh_gateway_or_fetch()
            assert self.auth_data is not None
            token, auth_data, gateway, generation = (
                self.access_token.value,
                self.auth_data.value,
                self.gateway,
                self._generation,
            )
        return BusinessAuth({"access_token": token}, envelope_headers(auth_data, gateway), generation)

    def recover(self, generation: int) -> None:
        """Refresh token, session and gateway once; log in again when a refresh is refused."""
        with self._lock:
            if generation != self._generation:
                return  # another worker already recovered
            self._count("recover")
            self._refresh_login_or_login()
            self._refresh_gateway_or_fetch(force=True)

    # --- steps --------------------------------------------------------------------------------------
    def _login(self) -> None:
        s = self.settings
        self._count("login")
        data = self.transport.send(
            "POST",
            "/koas/oauth2/access_token",
            phase=Phase.AUTH,
            params={"client_id": s.client_id, "client_secret": s.client_secret},
            body={"code": s.auth_code},
        )
        self._take_login(data)
        self._select_account()
        self._fetch_gateway()

    def _take_login(self, data: dict[str, Any]) -> None:
        now = time.time()
        margin = self.settings.refresh_margin_seconds
        self.access_token = Token.issue(
            data["access_token"], _expiry(data, "access_token_expire_in", 7 * 86400, now), margin, now
        )
        self.session_id = Token.issue(
            data["session_id"], _expiry(data, "session_id_expire_in", 3 * 3600, now), margin, now
        )
        self.session_secret = str(data.get("session_secret") or "")
        register_secret(self.session_secret)
        self._generation += 1

    def _refresh_login_or_login(self) -> None:
        now = time.time()
        if (
            self.access_token is None
            or not self.access_token.alive(now)
            or not self.session_id
            or not self.session_id.alive(now)
        ):
            self._login()
            return
        try:
            self._count("refresh_login")
            data = self._account_call(
                "/koas/user/refresh_login_access_token", {"session_id": self.session_id.value}
            )
        except AuthError:
            self._login()
            return
        self._take_login(data)

    def _account_call(self, path: str, body: dict[str, Any], params: dict[str, str] | None = None) -> Any:
        """A ``/koas/user/*`` call: ``access_token`` query + ``KIS-Signature`` over the session (§2.2)."""
        assert self.access_token is not None and self.session_id is not None
        state = pysecrets.token_hex(8)
        trace = str(uuid.uuid4())
        timestamp = str(int(time.time()))
        signature = hashlib.sha256(
            (state + self.session_id.value + trace + self.session_secret + timestamp).encode("utf-8")
        ).hexdigest()
        headers = {
            "KIS-State": state,
            "KIS-TraceID": trace,
            "KIS-Timestamp": timestamp,
            "KIS-Ver": KIS_VER,
            "KIS-Signature": signature,
        }
        query = {"access_token": self.access_token.value, **(params or {})}
        return self.transport.send("POST", path, phase=Phase.AUTH, params=query, body=body, headers=headers)

    def _select_account(self) -> None:
        assert self.session_id is not None
        data = self._account_call("/koas/user/account", {"session_id": self.session_id.value})
        accounts = _as_list(data)
        wanted = self.settings.account_number
        match = next((a for a in accounts if str(a.get("acctnumber")) == wanted), None)
        if match is None:
            names = ", ".join(str(a.get("acctnumber")) for a in accounts) or "none"
            raise ConfigError(
                f"{self._where()}: account set (账套) {wanted!r} is not available to this user "
                f"(available: {names}). Check account_number in the template."
            )
        account = dict(match)
        if not account.get("icrmid"):
            apps = _as_list(
                self._account_call(
                    "/koas/user/account_applist",
                    {
                        "session_id": self.session_id.value,
                        "client_id": self.settings.client_id,
                        "acctnumber": wanted,
                        "pid": account.get("pid"),
                    },
                )
            )
            if apps:
                account["icrmid"] = apps[0].get("icrmid")
        self.account = account

    def _fetch_gateway(self) -> None:
        assert self.session_id is not None
        self._count("gateway")
        data = self._account_call(
            "/koas/user/get_service_gateway",
            {
                "session_id": self.session_id.value,
                "pid": self.account.get("pid"),
                "acctnumber": self.account.get("acctnumber"),
                "icrmid": self.account.get("icrmid"),
            },
        )
        self._take_gateway(data)

    def _take_gateway(self, data: dict[str, Any]) -> None:
        now = time.time()
        margin = self.settings.refresh_margin_seconds
        # auth_data's lifetime is not evidenced (§6): use the gateway's value when it sends one.
        self.auth_data = Token.issue(
            data["auth_data"],
            _expiry(data, "auth_data_expire_in", self.quirks.auth_data_lifetime_seconds, now),
            margin,
            now,
        )
        self.gateway = str(data.get("gw_router_addr") or self.gateway)
        extend = data.get("extend_data") or {}
        if extend.get("refresh_auth_data_token"):
            self.refresh_auth_token = Token.issue(
                extend["refresh_auth_data_token"],
                _expiry(extend, "refresh_auth_data_token_expire_in", 86400, now),
                margin,
                now,
            )
        self._generation += 1

    def _refresh_gateway_or_fetch(self, force: bool = False) -> None:
        now = time.time()
        token = self.refresh_auth_token
        if token is not None and token.alive(now) and self.access_token is not None:
            try:
                self._count("refresh_auth_data")
                data = self.transport.send(
                    "POST",
                    "/koas/user/refresh_auth_data",
                    phase=Phase.AUTH,
                    params={
                        "client_id": self.settings.client_id,
                        "client_secret": self.settings.client_secret,
                    },
                    body={"refresh_auth_data_token": token.value, "access_token": self.access_token.value},
                )
                self._take_gateway(data)
                return
            except AuthError:
                pass  # fall back to a fresh gateway grant
        if not self.account:
            self._select_account()
        self._fetch_gateway()


class OpenPlatformAuth(_Base):
    """Flow (b): open.jdy.com app authorisation and app token, both X-Api-signed (§1, §2.1b)."""

    # The app token's lifetime is not returned by the gateway; one client caches it 23 h [L] S9.
    APP_TOKEN_LIFETIME = 23 * 3600.0

    def __init__(self, settings: KisSettings, quirks: KisQuirks, transport: Transport) -> None:
        super().__init__(settings, quirks, transport)
        self.app_key = settings.app_key
        self.app_secret = settings.app_secret
        self.app_token: Token | None = None
        self.access_token: Token | None = None

    def business(self) -> BusinessAuth:
        """Fresh app token + access token for one call."""
        with self._lock:
            now = time.time()
            if not self.gateway or not self.app_key or not self.app_secret:
                self._authorize()
            if (
                self.app_token is None
                or not self.app_token.fresh(now)
                or (self.access_token is not None and not self.access_token.fresh(now))
            ):
                self._fetch_token()
            assert self.app_token is not None and self.access_token is not None
            token, app_token, gateway, generation = (
                self.access_token.value,
                self.app_token.value,
                self.gateway,
                self._generation,
            )
        return BusinessAuth({"access_token": token}, envelope_headers(app_token, gateway), generation)

    def recover(self, generation: int) -> None:
        """Fetch a new app token; ask for the app authorisation again when that is refused."""
        with self._lock:
            if generation != self._generation:
                return
            self._count("recover")
            try:
                self._fetch_token()
            except AuthError:
                self._authorize()
                self._fetch_token()

    def _signed(self, method: str, path: str, params: dict[str, str], body: Any = None) -> Any:
        s = self.settings
        timestamp = str(int(time.time() * 1000))
        nonce = str(pysecrets.randbelow(10**9) + 1)
        headers = signed_headers(s.client_id, s.client_secret, method, path, params, nonce, timestamp)
        return self.transport.send(method, path, phase=Phase.AUTH, params=params, body=body, headers=headers)

    def _authorize(self) -> None:
        self._count("authorize")
        data = self._signed(
            "POST",
            "/jdyconnector/app_management/push_app_authorize",
            {"outerInstanceId": self.settings.outer_instance_id},
            body={},
        )
        entries = _as_list(data)
        if self.settings.app_key:
            entry = next((e for e in entries if str(e.get("appKey")) == self.settings.app_key), None)
        else:
            entry = entries[0] if entries else None
        if entry is None:
            raise ConfigError(
                f"{self._where()}: open.jdy.com lists no authorised app "
                f"{'with app_key ' + repr(self.settings.app_key) if self.settings.app_key else ''} for "
                f"outer_instance_id {self.settings.outer_instance_id!r}. Check the authorisation on "
                "open.jdy.com and outer_instance_id/app_key in the template."
            )
        self.gateway = str(entry.get("domain") or "")
        self.app_key = self.settings.app_key or str(entry.get("appKey") or "")
        self.app_secret = self.settings.app_secret or str(entry.get("appSecret") or "")
        register_secret(self.app_secret)

    def _fetch_token(self) -> None:
        self._count("app_token")
        data = self._signed(
            "GET",
            "/jdyconnector/app_management/kingdee_auth_token",
            {"app_key": self.app_key, "app_signature": app_signature(self.app_key, self.app_secret)},
        )
        token = next((data[k] for k in self.quirks.app_token_keys if data.get(k)), None)
        if token is None or not data.get("access_token"):
            raise AuthError(
                f"{self._where()}: kingdee_auth_token answered without an app token "
                f"(keys seen: {', '.join(sorted(data))}). "
                "Add the key to app_token_keys if the gateway renamed it."
            )
        now = time.time()
        margin = self.settings.refresh_margin_seconds
        expires = _expiry(data, "expire_in", self.APP_TOKEN_LIFETIME, now)
        self.app_token = Token.issue(token, expires, margin, now)
        self.access_token = Token.issue(data["access_token"], expires, margin, now)
        self._generation += 1


def _as_list(data: Any) -> list[dict[str, Any]]:
    """Lists arrive bare or wrapped (``{"List": [...]}``)."""
    if isinstance(data, list):
        return [d for d in data if isinstance(d, dict)]
    if isinstance(data, dict):
        for key in ("List", "list", "Data", "data", "rows"):
            if isinstance(data.get(key), list):
                return [d for d in data[key] if isinstance(d, dict)]
    return []


def make_auth(settings: KisSettings, quirks: KisQuirks, transport: Transport) -> KoasAuth | OpenPlatformAuth:
    """The auth object for ``settings.auth_flow``."""
    if settings.auth_flow == "koas":
        return KoasAuth(settings, quirks, transport)
    return OpenPlatformAuth(settings, quirks, transport)
