"""Sandbox knobs (ERP-APIS §5): quirks default on, faults default off, all changeable at run time.

The effective settings live in the SQLite file (``kv['config']``) and are changed through
``PUT /__admin__/faults`` with a partial object; unknown keys are refused so a typo cannot silently
disable a test.
"""

from __future__ import annotations

import copy
from typing import Any

FAULT_KINDS = (
    "http_500",  # IIS error page (HTML), nothing applied
    "http_502",
    "http_503",
    "http_504",
    "reset",  # connection closed without a reply, nothing applied
    "delay",  # sleep delay_seconds, then process and reply (usually after the client gave up)
    "response_error",  # 200 with a plain-text "response_error: ..." body (SDK gateway path)
    "lost_reply",  # apply the write, then lose the reply as lost_reply_mode says
    "session_lost",  # kill every session just before the call (IIS recycle mid-batch)
    "throttle",  # answer as if over the call limit
)

DEFAULTS: dict[str, Any] = {
    # Sessions (seconds of sandbox clock; POST /__admin__/clock moves that clock).
    "idle_ttl": 1200.0,
    "absolute_ttl": 43200.0,
    "login_elsewhere": True,
    # Signed requests and LoginBySign: allowed clock skew.
    "signature_skew": 300.0,
    # Leniency trap: emit IsSuccess/ErrorCode/MsgCode/DIndex as strings like the doc template.
    "strings_mode": False,
    # Duplicate bill numbers; {form_name} and {number} are filled in.
    "duplicate_message": "{form_name}单据编号“{number}”已存在，不允许重复保存",
    "repeat_json_window": 600.0,
    "batch_cap": 100,
    # Token bucket per session / app: mode "msgcode" (MsgCode 14) or "http503" (slow, then 503).
    "throttle": {"enabled": True, "rate": 50.0, "burst": 200, "mode": "msgcode", "slow_seconds": 1.0},
    "latency_per_package": 0.0,
    # Fault probabilities per business call (seeded RNG) and the scripted faults consumed in order.
    "faults": {kind: 0.0 for kind in FAULT_KINDS if kind not in ("session_lost", "throttle")},
    "delay_seconds": 5.0,
    "lost_reply_mode": "502",  # "502" | "reset" | "delay"
    "script": [],  # [{"service": "Save", "fault": "lost_reply", "count": 1, "skip": 0}]
}


class ConfigProblem(ValueError):
    """A PUT to /__admin__/faults contained an unknown key or a bad value."""


def merged(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``patch`` applied (nested objects merged one level deep), validated."""
    result = copy.deepcopy(current)
    for key, value in patch.items():
        if key not in DEFAULTS:
            raise ConfigProblem(f"unknown setting {key!r}; known: {', '.join(sorted(DEFAULTS))}")
        if isinstance(DEFAULTS[key], dict):
            if not isinstance(value, dict):
                raise ConfigProblem(f"{key} must be an object")
            unknown = set(value) - set(DEFAULTS[key])
            if unknown:
                raise ConfigProblem(f"unknown {key} keys {sorted(unknown)}; known: {sorted(DEFAULTS[key])}")
            result[key] = {**result[key], **value}
        else:
            result[key] = value
    for entry in result["script"]:
        if not isinstance(entry, dict) or entry.get("fault") not in FAULT_KINDS:
            raise ConfigProblem(f"script entries need a fault out of {', '.join(FAULT_KINDS)}: {entry!r}")
    if result["lost_reply_mode"] not in ("502", "reset", "delay"):
        raise ConfigProblem("lost_reply_mode must be 502, reset or delay")
    if result["throttle"]["mode"] not in ("msgcode", "http503"):
        raise ConfigProblem("throttle.mode must be msgcode or http503")
    return result


def defaults() -> dict[str, Any]:
    """A fresh copy of the default settings."""
    return copy.deepcopy(DEFAULTS)
