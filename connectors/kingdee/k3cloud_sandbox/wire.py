"""The four request encodings of ERP-APIS §3.2 and the reply templates of §3.3/§3.5/§3.7.

Encodings accepted for every service (keys case-insensitive, ``data``/``parameters[i]`` as object or
JSON text):

1. ``{"formid": "SAL_OUTSTOCK", "data": {...}}`` (official Python SDK v8; queries ``{"data": {...}}``)
2. ``{"format":1, "useragent":"ApiClient", "rid":.., "parameters": [formId, "<json>"], ...}`` (classic)
3. ``{"FormId": "AR_receivable", "Data": "<json text>"}``
4. ``application/x-www-form-urlencoded`` with ``data=<json>`` (and ``formid=``)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from .values import ci

SERVICES = (
    "AuthService.ValidateUser",
    "AuthService.LoginByAppSecret",
    "AuthService.LoginBySign",
    "AuthService.Logout",
    "DynamicFormService.Save",
    "DynamicFormService.BatchSave",
    "DynamicFormService.Draft",
    "DynamicFormService.Submit",
    "DynamicFormService.Audit",
    "DynamicFormService.UnAudit",
    "DynamicFormService.Delete",
    "DynamicFormService.View",
    "DynamicFormService.ExecuteBillQuery",
    "DynamicFormService.BillQuery",
    "DynamicFormService.Push",
    "AccountService.GetDataCenterList",
)
_BY_NAME = {s.lower(): s for s in SERVICES}
_BY_NAME["authservice.logout"] = "AuthService.Logout"
PREFIXES = ("kingdee.bos.webapi.servicesstub.", "kingdee.bos.servicefacade.servicesstub.account.")
SUFFIX = ".common.kdsvc"


class BadRequest(ValueError):
    """The body could not be decoded."""


def service_of(path_tail: str) -> str | None:
    """Canonical service name of the last path segment (case-insensitive), or None."""
    name = path_tail.rsplit("/", 1)[-1].lower()
    if not name.endswith(SUFFIX):
        return None
    name = name[: -len(SUFFIX)]
    for prefix in PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return _BY_NAME.get(name)


def _json(value: Any) -> Any:
    """Decode JSON text (numbers with a fraction as Decimal); other values pass through."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "["):
            try:
                return json.loads(text, parse_float=Decimal)
            except ValueError as exc:
                raise BadRequest(f"请求参数转换成JSON对象异常：{exc}") from None
    return value


@dataclass(frozen=True)
class Decoded:
    """A request body reduced to what the services need."""

    top: dict[str, Any]
    parameters: list[Any] | None

    def form_and_data(self) -> tuple[str | None, Any]:
        """(form id, data) for DynamicFormService calls in any of the four encodings."""
        form_id = ci(self.top, "formid")
        data = _json(ci(self.top, "data"))
        params = self.parameters
        if params:
            if len(params) >= 2:
                form_id, data = params[0], _json(params[1])
            else:
                data = _json(params[0])
        if isinstance(data, dict) and not form_id:
            form_id = ci(data, "FormId")
        return (str(form_id) if form_id not in (None, "") else None), data

    def login_args(self, names: tuple[str, ...]) -> list[Any]:
        """Positional login arguments from ``parameters`` or from named keys (top level or in ``data``)."""
        if self.parameters:
            return list(self.parameters) + [None] * (len(names) - len(self.parameters))
        source = self.top
        nested = _json(ci(self.top, "data"))
        if isinstance(nested, dict) and all(ci(self.top, n) is None for n in names):
            source = nested
        return [ci(source, n) for n in names]


def decode(content_type: str, body: bytes) -> Decoded:
    """Decode a request body (JSON or form-urlencoded)."""
    text = body.decode("utf-8-sig", errors="replace").strip()
    if not text:
        return Decoded({}, None)
    if "x-www-form-urlencoded" in content_type.lower() or (text[:1] not in ("{", "[")):
        top: Any = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
    else:
        try:
            top = json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            raise BadRequest(f"请求参数转换成JSON对象异常：{exc}") from None
    if isinstance(top, list):
        return Decoded({}, top)
    if not isinstance(top, dict):
        raise BadRequest("请求体必须是JSON对象")
    params = _json(ci(top, "parameters"))
    if params is not None and not isinstance(params, list):
        params = [params]
    return Decoded(top, params)


# ---------------------------------------------------------------- replies


def response_status(
    *,
    success: bool,
    errors: list[dict[str, Any]] | None = None,
    successes: list[dict[str, Any]] | None = None,
    msg_code: int = 0,
) -> dict[str, Any]:
    """A ``ResponseStatus`` object."""
    return {
        "ErrorCode": 0 if success else 500,
        "IsSuccess": success,
        "Errors": errors or [],
        "SuccessEntitys": successes or [],
        "SuccessMessages": [],
        "MsgCode": msg_code,
    }


def error_result(message: str, msg_code: int, field_name: str | None = None) -> dict[str, Any]:
    """``{"Result": {"ResponseStatus": ...}}`` for one call-level error."""
    errors = [{"FieldName": field_name, "Message": message, "DIndex": 0}]
    return {"Result": {"ResponseStatus": response_status(success=False, errors=errors, msg_code=msg_code)}}


def wrap_query_error(result: dict[str, Any]) -> list[Any]:
    """Query services return errors as ``[[{...}]]`` with HTTP 200 (ERP-APIS §3.7)."""
    return [[result]]


def stringify(payload: Any) -> Any:
    """The doc-template spelling: IsSuccess/ErrorCode/MsgCode/DIndex/Id as strings (leniency trap)."""
    if isinstance(payload, list):
        return [stringify(v) for v in payload]
    if not isinstance(payload, dict):
        return payload
    out = {}
    for key, value in payload.items():
        if key == "IsSuccess" and isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif (
            key in ("ErrorCode", "MsgCode", "DIndex", "Id")
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            out[key] = "" if key == "ErrorCode" and value == 0 else str(value)
        else:
            out[key] = stringify(value)
    return out


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Plain JSON numbers, like the real server; integral values without a fraction.
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def encode(payload: Any) -> bytes:
    """UTF-8 JSON reply body."""
    return json.dumps(payload, ensure_ascii=False, default=_default).encode("utf-8")
