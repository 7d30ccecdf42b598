"""Fault injection of the KIS sandbox: settable at start and at run time (``PUT /__admin__/faults``).

Random decisions are deterministic for a given seed: each one is drawn from a generator seeded with
``(seed, request fingerprint, how many times that fingerprint was seen)``, where the fingerprint is the
path and body (never tokens, nonces or trace ids). So the same client run meets the same faults whatever
the thread interleaving. Throttling is a token bucket and therefore time-based (documented, not seeded).

Two paging knobs are counted, not random (B.4 case 14): ``fail_page`` answers page P of one list op with
a 5xx the first K times it is asked for, and ``shift_on_page`` changes the list right after page P was
served (a row inserted at, or deleted from, the head of the list), so every later page is shifted by one
row: the reader sees one row twice (insert) or misses one (delete). Setting either knob again restarts
its count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

TOKEN_KINDS = ("access_token", "session_id", "auth_data", "refresh_auth_data_token", "app_token")

#: Real-life lifetimes before scaling: access token ≈30 d and session ≈3 h are evidenced (ERP-APIS §2.1a);
#: auth_data, its refresh token and the app token (24 h, [L]) are guesses.
#: List ops whose rows ``shift_on_page`` can insert/delete (the ``items`` lists, ordered by ``FItemID``).
SHIFTABLE_LISTS = ("customer/list", "material/list", "stock/list", "measureunit/list")
SHIFT_ACTIONS = ("insert", "delete")
STATUS_5XX = (500, 502, 503, 504)

BASE_TTL_SECONDS: dict[str, float] = {
    "access_token": 30 * 86400.0,
    "session_id": 3 * 3600.0,
    "auth_data": 2 * 3600.0,
    "refresh_auth_data_token": 7 * 86400.0,
    "app_token": 24 * 3600.0,
}


@dataclass
class FaultConfig:
    """The knobs (all off by default except the realistic duplicate-bill refusal).

    Attributes:
        seed: seed of every random decision.
        p_5xx: probability that a call is answered 500/502/503/504 before it is processed.
        latency_ms: added to every non-admin call.
        throttle_rate: requests per second the gateway lets through (0 = no throttling).
        throttle_burst: bucket size.
        throttle_mode: ``http429`` (HTTP 429 + ``Retry-After``) or ``errcode`` (HTTP 200, errcode 1030).
        p_drop: probability that the connection is dropped before the call is processed.
        p_lost_reply: probability that a write is committed and then its reply is lost.
        lost_reply_mode: ``drop`` (connection closed) or ``502`` (gateway error page).
        page_count_key: ``TotalPages`` or ``TotalPage`` in list replies.
        emit_has_next_page: include ``HasNextPage`` in list replies (off: the page count alone must do).
        refuse_duplicate_bill_no: refuse a second bill with an existing ``FBillNo`` (unverified on real KIS).
        token_ttl_scale: multiplies every token lifetime (e.g. 0.0001 turns 3 h into about 1 s).
        ttl_seconds: per-kind lifetime overrides in seconds (after which no scaling applies).
        fault_scope: ``all`` (auth calls too) or ``business``.
        allow_negative_stock: let an audit drive stock below zero.
        app_token_key: key of the app token in ``kingdee_auth_token`` (``app-token`` or ``app_token``).
        fail_page: ``{"op": "customer/list", "page": 7, "times": 2, "status": 503}``: answer that page of
            that list op (``obj/list`` or ``app/obj/list``, any case) with ``status`` (default 503) the
            first ``times`` (default 1) times it is asked for, whatever its other fields; ``{}`` = off.
        shift_on_page: ``{"op": "customer/list", "page": 7, "action": "insert", "times": 1}``: right after
            that page was served, ``insert`` a row at the head of the list (a new item with the lowest
            ``FItemID``) or ``delete`` the head row, ``times`` (default 1) times; ``{}`` = off. Only the
            item lists (:data:`SHIFTABLE_LISTS`).
    """

    seed: int = 0
    p_5xx: float = 0.0
    latency_ms: float = 0.0
    throttle_rate: float = 0.0
    throttle_burst: int = 5
    throttle_mode: Literal["http429", "errcode"] = "http429"
    p_drop: float = 0.0
    p_lost_reply: float = 0.0
    lost_reply_mode: Literal["drop", "502"] = "drop"
    page_count_key: Literal["TotalPages", "TotalPage"] = "TotalPages"
    emit_has_next_page: bool = True
    refuse_duplicate_bill_no: bool = True
    token_ttl_scale: float = 1.0
    ttl_seconds: dict[str, float] = field(default_factory=dict)
    fault_scope: Literal["all", "business"] = "all"
    allow_negative_stock: bool = False
    app_token_key: Literal["app-token", "app_token"] = "app-token"  # noqa: S105 - a JSON key
    fail_page: dict[str, Any] = field(default_factory=dict)
    shift_on_page: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError on an impossible setting."""
        for name in ("p_5xx", "p_drop", "p_lost_reply"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1, not {value}")
        if self.latency_ms < 0 or self.throttle_rate < 0 or self.token_ttl_scale <= 0:
            raise ValueError("latency_ms and throttle_rate must be >= 0, token_ttl_scale > 0")
        if self.throttle_mode not in ("http429", "errcode") or self.lost_reply_mode not in ("drop", "502"):
            raise ValueError("throttle_mode is http429|errcode, lost_reply_mode is drop|502")
        if self.page_count_key not in ("TotalPages", "TotalPage"):
            raise ValueError("page_count_key is TotalPages|TotalPage")
        if self.fault_scope not in ("all", "business"):
            raise ValueError("fault_scope is all|business")
        unknown = set(self.ttl_seconds) - set(TOKEN_KINDS)
        if unknown:
            raise ValueError(f"ttl_seconds keys must be among {TOKEN_KINDS}, not {sorted(unknown)}")
        if self.fail_page:
            rule = _page_rule("fail_page", self.fail_page, {"status"})
            if rule.get("status", 503) not in STATUS_5XX:
                raise ValueError(f"fail_page.status must be one of {STATUS_5XX}, not {rule['status']!r}")
        if self.shift_on_page:
            rule = _page_rule("shift_on_page", self.shift_on_page, {"action"})
            if list_op(rule["op"]) not in SHIFTABLE_LISTS:
                raise ValueError(f"shift_on_page.op must be one of {SHIFTABLE_LISTS}, not {rule['op']!r}")
            if rule.get("action") not in SHIFT_ACTIONS:
                raise ValueError(f"shift_on_page.action must be one of {SHIFT_ACTIONS}")

    def ttl(self, kind: str) -> float:
        """Lifetime in seconds of a token of ``kind``."""
        if kind in self.ttl_seconds:
            return float(self.ttl_seconds[kind])
        return BASE_TTL_SECONDS[kind] * self.token_ttl_scale

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return dataclasses.asdict(self)


def list_op(op: str) -> str:
    """``"APP006992/Customer/List"`` or ``"/customer/list"`` -> ``"customer/list"``."""
    parts = [p for p in str(op).lower().split("/") if p]
    return "/".join(parts[-2:])


def _page_rule(name: str, rule: Any, extra: set[str]) -> dict[str, Any]:
    if not isinstance(rule, dict):
        raise ValueError(f"{name} must be an object like {{'op': 'customer/list', 'page': 7, 'times': 2}}")
    unknown = set(rule) - {"op", "page", "times"} - extra
    if unknown:
        raise ValueError(f"{name}: unknown keys {sorted(unknown)}")
    op = list_op(str(rule.get("op") or ""))
    if op.count("/") != 1 or not op.endswith("/list"):
        raise ValueError(f"{name}.op must name a list op such as 'customer/list', not {rule.get('op')!r}")
    for key, default in (("page", None), ("times", 1)):
        value = rule.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}.{key} must be an integer >= 1, not {value!r}")
    return rule


@dataclass(frozen=True)
class Decision:
    """What happens to one request."""

    drop: bool = False
    status_5xx: int | None = None
    lose_reply: bool = False


class FaultInjector:
    """Holds the live :class:`FaultConfig` and draws the per-request decisions."""

    def __init__(self, config: FaultConfig) -> None:
        config.validate()
        self.config = config
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._fired: dict[str, int] = {"fail_page": 0, "shift_on_page": 0}
        self._tokens = float(config.throttle_burst)
        self._last_refill = time.monotonic()

    def update(self, changes: dict[str, Any]) -> FaultConfig:
        """Apply a partial update (unknown keys and bad values raise ValueError, nothing changes)."""
        known = {f.name for f in dataclasses.fields(FaultConfig)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}; known: {sorted(known)}")
        merged = dataclasses.replace(self.config, **changes)
        merged.validate()
        with self._lock:
            if merged.seed != self.config.seed:
                self._seen.clear()
            for knob in self._fired:
                if knob in changes:
                    self._fired[knob] = 0
            self.config = merged
            self._tokens = min(self._tokens, float(merged.throttle_burst)) if merged.throttle_rate else 0.0
            if merged.throttle_rate and "throttle_rate" in changes:
                self._tokens = float(merged.throttle_burst)
            self._last_refill = time.monotonic()
        return merged

    def decide(self, fingerprint: str, *, write: bool) -> Decision:
        """Deterministic fault decision for this request."""
        cfg = self.config
        if not (cfg.p_5xx or cfg.p_drop or cfg.p_lost_reply):
            return Decision()
        with self._lock:
            n = self._seen.get(fingerprint, 0)
            self._seen[fingerprint] = n + 1
        digest = hashlib.sha256(f"{cfg.seed}|{fingerprint}|{n}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        drop = rng.random() < cfg.p_drop
        fail = rng.random() < cfg.p_5xx
        code = rng.choice((500, 502, 503, 504))
        lose = rng.random() < cfg.p_lost_reply
        if drop:
            return Decision(drop=True)
        if fail:
            return Decision(status_5xx=code)
        return Decision(lose_reply=write and lose)

    def _fire(self, knob: str, rule: dict[str, Any], op: str, page: int) -> bool:
        if not rule or list_op(rule["op"]) != list_op(op) or page != rule["page"]:
            return False
        with self._lock:
            if self._fired[knob] >= int(rule.get("times", 1)):
                return False
            self._fired[knob] += 1
            return True

    def page_fault(self, op: str, page: int) -> int | None:
        """The 5xx status for this read of page ``page`` of list ``op`` (``fail_page``), or None."""
        rule = self.config.fail_page
        return int(rule.get("status", 503)) if self._fire("fail_page", rule, op, page) else None

    def page_shift(self, op: str, page: int) -> str | None:
        """``insert``/``delete`` when the list must change after serving this page (``shift_on_page``)."""
        rule = self.config.shift_on_page
        return str(rule["action"]) if self._fire("shift_on_page", rule, op, page) else None

    def throttle(self) -> float | None:
        """None when the call may pass; otherwise seconds until a token is available."""
        cfg = self.config
        if not cfg.throttle_rate:
            return None
        with self._lock:
            now = time.monotonic()
            self._tokens = min(
                float(cfg.throttle_burst), self._tokens + (now - self._last_refill) * cfg.throttle_rate
            )
            self._last_refill = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            return (1.0 - self._tokens) / cfg.throttle_rate


def retry_after_header(wait: float) -> str:
    """``Retry-After`` delta-seconds (an integer, rounded up so obeying it is always enough)."""
    return str(max(1, math.ceil(wait)))
