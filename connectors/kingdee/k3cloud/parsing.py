"""Lenient parsing of K/3 Cloud replies and exact JSON for requests.

The vendor's doc template shows ``"IsSuccess": "false"`` and ``"ErrorCode": ""`` while real servers send
booleans and ints; query errors arrive wrapped as ``[[{"Result": ...}]]`` with HTTP 200. Everything
here accepts all of those shapes.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from .records import ResponseStatus, RowError, SuccessEntity

_TRUE_TEXT = {"true", "1", "yes"}
_DECIMAL_MARK = "\u0000DEC:"
_DECIMAL_TOKEN = re.compile(r'"\\u0000DEC:(-?[0-9.]+(?:[Ee][-+]?[0-9]+)?)"')


def as_bool(value: Any) -> bool:
    """``True``, ``"true"``, ``"True"``, ``1`` and ``"1"`` are true; everything else is false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_TEXT
    return False


def as_int(value: Any, default: int | None = 0) -> int | None:
    """An int from an int, a numeric string or a Decimal; ``default`` for ``""``/``None``/garbage."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return default


def ci_get(data: dict[str, Any], key: str, default: Any = None) -> Any:
    """``data[key]`` with a case-insensitive key (``Result``/``result``, ``MsgCode``/``msgcode``)."""
    if key in data:
        return data[key]
    lowered = key.lower()
    for k, v in data.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return default


def loads(text: str) -> Any:
    """JSON with every non-integer number as an exact :class:`~decimal.Decimal` (money stays exact)."""
    return json.loads(text, parse_float=Decimal)


def _mark_decimals(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{_DECIMAL_MARK}{value}"
    if isinstance(value, dict):
        return {k: _mark_decimals(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mark_decimals(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """JSON text where Decimals become exact number literals (``Decimal("12.30")`` -> ``12.30``)."""
    text = json.dumps(_mark_decimals(value), ensure_ascii=False, separators=(",", ":"))
    return _DECIMAL_TOKEN.sub(r"\1", text)


def find_response_status(payload: Any) -> dict[str, Any] | None:
    """The ``ResponseStatus`` object inside a reply, a ``[[{...}]]``-wrapped query error included."""
    node = payload
    # Unwrap up to two list levels: [[{"Result": ...}]] or [{"Result": ...}].
    for _ in range(2):
        if isinstance(node, list) and len(node) >= 1 and isinstance(node[0], list | dict):
            node = node[0]
    if not isinstance(node, dict):
        return None
    result = ci_get(node, "Result")
    if isinstance(result, dict):
        status = ci_get(result, "ResponseStatus")
        if isinstance(status, dict):
            return status
    status = ci_get(node, "ResponseStatus")
    return status if isinstance(status, dict) else None


def parse_status(status: dict[str, Any]) -> ResponseStatus:
    """A :class:`ResponseStatus` from the raw object, tolerant of strings, blanks and missing keys."""
    errors = tuple(
        RowError(
            message=str(ci_get(e, "Message") or ""),
            field_name=(ci_get(e, "FieldName") or None),
            dindex=as_int(ci_get(e, "DIndex"), 0) or 0,
        )
        for e in _as_list(ci_get(status, "Errors"))
        if isinstance(e, dict)
    )
    entities = tuple(
        SuccessEntity(
            id=as_int(ci_get(e, "Id"), None),
            number=(str(ci_get(e, "Number")) if ci_get(e, "Number") not in (None, "") else None),
            dindex=as_int(ci_get(e, "DIndex"), 0) or 0,
            entry_ids=_entry_ids(ci_get(e, "EntryIds")),
        )
        for e in _as_list(ci_get(status, "SuccessEntitys"))
        if isinstance(e, dict)
    )
    messages = tuple(
        str(ci_get(m, "Message") if isinstance(m, dict) else m)
        for m in _as_list(ci_get(status, "SuccessMessages"))
    )
    return ResponseStatus(
        is_success=as_bool(ci_get(status, "IsSuccess")),
        msg_code=as_int(ci_get(status, "MsgCode"), 0) or 0,
        error_code=as_int(ci_get(status, "ErrorCode"), None),
        errors=errors,
        success_entities=entities,
        success_messages=messages,
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _entry_ids(value: Any) -> dict[str, list[int]]:
    if not isinstance(value, dict):
        return {}
    out: dict[str, list[int]] = {}
    for key, ids in value.items():
        out[str(key)] = [i for i in (as_int(x, None) for x in _as_list(ids)) if i is not None]
    return out


def is_login_reply(payload: Any) -> bool:
    """True for the top-level login object (``LoginResultType`` present)."""
    return isinstance(payload, dict) and ci_get(payload, "LoginResultType") is not None
