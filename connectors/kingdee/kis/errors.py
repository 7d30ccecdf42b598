"""The KIS gateway envelope and the ONE table that classifies every failure.

The gateway answers ``{"errcode": 0, "description": "成功", "data": ...}``; success is keyed on
``errcode == 0``, never on the HTTP status (ERP-APIS §2.2, §5.2 item 4). Everything that can go wrong --
a transport exception, an HTTP status, a non-JSON body, a non-zero ``errcode`` -- is described as a
:class:`Failure` and turned into a :mod:`hub.errors` exception by the first matching row of
:data:`ERROR_TABLE`. Each row says what a read and what a write become: a write that may have reached
the gateway becomes :class:`~hub.errors.UnknownOutcomeError` so the caller looks the bill up before
sending it again.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import requests

from connectors.kingdee.kis.settings import KisQuirks
from hub.errors import (
    AuthError,
    ConfigError,
    HubError,
    PermanentError,
    RateLimitedError,
    TransientError,
    UnknownOutcomeError,
)


class Phase(Enum):
    """What kind of call failed: it decides how an ambiguous failure is classified."""

    AUTH = "auth"  # login/token calls: any refusal is an AuthError
    READ = "read"  # idempotent business reads: safe to repeat
    WRITE = "write"  # business writes: an ambiguous failure is an UnknownOutcomeError


@dataclass(frozen=True)
class Failure:
    """Everything known about one failed call."""

    operation: str  # e.g. "POST /koas/APP007104/api/salesdelivery/create" (never the query: it holds tokens)
    status: int | None = None
    exception: BaseException | None = None
    errcode: int | None = None
    description: str = ""
    retry_after: float | None = None


Predicate = Callable[[Failure, KisQuirks], bool]


@dataclass(frozen=True)
class ErrorRule:
    """One row of the table: when it matches, what reads/writes/auth calls become, what to tell the user."""

    when: str
    matches: Predicate
    read: type[HubError]
    write: type[HubError]
    advice: str
    auth: type[HubError] | None = None  # None: same as ``read``


def _exc(*types: type[BaseException]) -> Predicate:
    return lambda f, q: f.exception is not None and isinstance(f.exception, types)


def _not_connected(f: Failure, q: KisQuirks) -> bool:
    # The request never left this machine: connection refused, DNS failure, connect timeout.
    exc = f.exception
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = repr(exc.args)
        return any(
            marker in text
            for marker in (
                "NewConnectionError",
                "NameResolutionError",
                "Connection refused",
                "Failed to resolve",
            )
        )
    return False


def _status(low: int, high: int) -> Predicate:
    return lambda f, q: f.exception is None and f.status is not None and low <= f.status <= high


def _errcode_in(attr: str) -> Predicate:
    return lambda f, q: f.errcode is not None and f.errcode in getattr(q, attr)


def _bad_envelope(f: Failure, q: KisQuirks) -> bool:
    return f.exception is None and f.errcode is None and f.status is not None and 200 <= f.status < 300


_CHECK_URL = (
    "Check base_url (the gateway root, e.g. https://api.kingdee.com) and that the gateway or sandbox runs."
)
_RETRY_LATER = "Retried with back-off; if it persists, check the gateway's status and the network."

#: The one classification table. First match wins; order matters (specific before general).
ERROR_TABLE: tuple[ErrorRule, ...] = (
    ErrorRule(
        "TLS verification failed",
        _exc(requests.exceptions.SSLError),
        ConfigError,
        ConfigError,
        "Check base_url and ca_bundle: the gateway's certificate did not verify (TLS is never skipped).",
    ),
    ErrorRule("cannot connect", _not_connected, TransientError, TransientError, _CHECK_URL),
    ErrorRule(
        "read timed out",
        _exc(requests.exceptions.ReadTimeout),
        TransientError,
        UnknownOutcomeError,
        "The gateway accepted the request but did not answer within read_timeout. " + _RETRY_LATER,
    ),
    ErrorRule(
        "connection dropped",
        _exc(requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError),
        TransientError,
        UnknownOutcomeError,
        "The connection was reset or closed mid-call. " + _RETRY_LATER,
    ),
    ErrorRule(
        "HTTP transport error",
        _exc(requests.exceptions.RequestException),
        TransientError,
        UnknownOutcomeError,
        _RETRY_LATER,
    ),
    ErrorRule(
        "throttled (HTTP 429)",
        _status(429, 429),
        RateLimitedError,
        RateLimitedError,
        "The gateway asked us to slow down; waits honour Retry-After. Lower the concurrency if it persists.",
    ),
    ErrorRule(
        "gateway error (HTTP 5xx)", _status(500, 599), TransientError, UnknownOutcomeError, _RETRY_LATER
    ),
    ErrorRule(
        "throttled (errcode)",
        _errcode_in("throttle_errcodes"),
        RateLimitedError,
        RateLimitedError,
        "The gateway asked us to slow down. Lower the concurrency if it persists.",
    ),
    ErrorRule(
        "token or session refused",
        _errcode_in("auth_errcodes"),
        AuthError,
        AuthError,
        "The client refreshed its tokens once and was still refused: check the credentials and that the "
        "app is still authorised for this account set.",
    ),
    ErrorRule(
        "temporary gateway failure (errcode)",
        _errcode_in("transient_errcodes"),
        TransientError,
        TransientError,
        _RETRY_LATER,
    ),
    ErrorRule(
        "refused by KIS",
        lambda f, q: f.errcode is not None and q.unknown_errcode_is_permanent,
        PermanentError,
        PermanentError,
        "KIS refused this record; fix the data it names and re-send.",
        auth=AuthError,
    ),
    ErrorRule(
        "failed (errcode, treated as transient)",
        lambda f, q: f.errcode is not None,
        TransientError,
        TransientError,
        _RETRY_LATER,
        auth=AuthError,
    ),
    ErrorRule(
        "HTTP 401/403",
        _status(401, 403),
        AuthError,
        AuthError,
        "Check client_id/client_secret (and the app authorisation on open.jdy.com).",
    ),
    ErrorRule(
        "endpoint not found",
        _status(404, 405),
        ConfigError,
        ConfigError,
        "Check base_url (no extra path) and the app codes (base_data_app, stock_app, voucher_app).",
    ),
    ErrorRule("unexpected HTTP status", _status(300, 499), PermanentError, PermanentError, _CHECK_URL),
    ErrorRule(
        "reply is not the KIS JSON envelope",
        _bad_envelope,
        ConfigError,
        ConfigError,
        "The server at base_url is not a KIS gateway, or a proxy answered. " + _CHECK_URL,
    ),
)

#: Extra advice for the sandbox's placeholder codes met during login.
AUTH_ADVICE: dict[int, str] = {
    1010: "The X-Api signature was refused: check client_secret (and app_secret for app_signature).",
    1011: "The request timestamp was refused: check this machine's clock (NTP); 5 minutes of skew allowed.",
    1012: "Check client_id, client_secret and auth_code (koas) or outer_instance_id/app_key (open platform).",
    1013: "Check account_number: the account set (账套) is not available to this user/app.",
}


def classify(failure: Failure, phase: Phase, quirks: KisQuirks, connection: str) -> HubError:
    """Turn ``failure`` into the :mod:`hub.errors` exception the first matching table row names."""
    for rule in ERROR_TABLE:
        if not rule.matches(failure, quirks):
            continue
        if phase is Phase.AUTH:
            cls = rule.auth or rule.read
            if cls is PermanentError:
                cls = AuthError
        else:
            cls = rule.write if phase is Phase.WRITE else rule.read
        return _build(cls, rule, failure, connection)
    return _build(PermanentError, ERROR_TABLE[-1], failure, connection)  # pragma: no cover - table is total


def _build(cls: type[HubError], rule: ErrorRule, failure: Failure, connection: str) -> HubError:
    detail = []
    if failure.status is not None:
        detail.append(f"HTTP {failure.status}")
    if failure.errcode is not None:
        detail.append(f"errcode {failure.errcode}")
    if failure.description:
        detail.append(failure.description[:300])
    advice = AUTH_ADVICE.get(failure.errcode or 0, rule.advice) if cls is AuthError else rule.advice
    if failure.exception is not None:
        text = exception_text(failure.exception)
        detail.append(f"{type(failure.exception).__name__}: {text}")
        if isinstance(failure.exception, requests.exceptions.SSLError):
            advice = _tls_advice(failure.exception, advice)
    message = (
        f"KIS connection {connection!r}: {failure.operation}: {rule.when} ({'; '.join(detail)}). {advice}"
    )
    context: dict[str, Any] = {"connection": connection, "operation": failure.operation, "rule": rule.when}
    if failure.errcode is not None:
        context["errcode"] = failure.errcode
    if failure.status is not None:
        context["status"] = failure.status
    if issubclass(cls, TransientError):
        return cls(message, retry_after=failure.retry_after, context=context)
    return cls(message, context=context)


_QUERY = re.compile(r"\?[^\s'\")]*")
_SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)")
# "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)"
# as it appears inside the text of an exception whose chain is gone (repr quotes around it).
_SSL_IN_TEXT = re.compile(r"\[SSL: (?P<reason>\w+)\] (?P<message>.*?)(?:\s*\(_ssl\.c:\d+\))?['\"]\)")
_VERIFY_FAILED = "CERTIFICATE_VERIFY_FAILED"
_PLAIN_HTTP_ADVICE = (
    "The server did not answer TLS: is base_url https:// pointing at a plain-http port? "
    "Use http:// only for a sandbox that serves plain HTTP, or the gateway's HTTPS port."
)
_MISMATCH_ADVICE = " The certificate does not name base_url's host: use a host name it was issued for."


def exception_text(exc: BaseException, limit: int = 200) -> str:
    """What went wrong, short and without any URL query string (it may carry tokens).

    For TLS failures this is the innermost reason (``certificate verify failed: self-signed
    certificate``, ``... IP address mismatch ...``, ``[SSL: WRONG_VERSION_NUMBER] wrong version
    number``) instead of the pool/URL preamble ``requests`` puts in front of it (which would cut it).
    """
    found = ssl_reason(exc)
    text = found[1] if found else str(exc)
    return _QUERY.sub("?…", text)[:limit]


def ssl_reason(exc: BaseException) -> tuple[str, str] | None:
    """``(OpenSSL reason code, message)`` of the TLS failure inside ``exc``, or None.

    Walks ``__cause__``/``__context__``/``args``/``reason`` down to the :class:`ssl.SSLError` (a
    :class:`ssl.SSLCertVerificationError` and its ``verify_message`` win); when that chain is gone
    (an exception rebuilt from its text), the ``[SSL: REASON] message`` inside the text is used.
    """
    inner = _innermost_ssl_error(exc)
    if isinstance(inner, ssl.SSLCertVerificationError) and inner.verify_message:
        return _VERIFY_FAILED, f"certificate verify failed: {inner.verify_message.rstrip('.')}"
    if inner is not None:
        text = str(inner.args[1] if len(inner.args) > 1 else inner)
        match = _SSL_IN_TEXT.search(text + "')")
        if match:
            return _from_match(match)
        return str(getattr(inner, "reason", None) or ""), _SSL_LOCATION.sub("", text)
    match = _SSL_IN_TEXT.search(str(exc))
    return _from_match(match) if match else None


def _from_match(match: re.Match[str]) -> tuple[str, str]:
    reason, message = match["reason"], match["message"].rstrip(".")
    if reason == _VERIFY_FAILED:
        return reason, message  # already "certificate verify failed: <why>"
    return reason, f"[SSL: {reason}] {message}"


def _innermost_ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl`` error at the bottom of ``exc``'s chain (causes, contexts, wrapped args, reasons);
    a certificate verification error wins over any other ``ssl.SSLError``."""
    found: ssl.SSLError | None = None
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo and len(seen) < 50:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        if isinstance(current, ssl.SSLError):
            found = current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        todo.extend(e for e in linked if isinstance(e, BaseException))
    return found


def _tls_advice(exc: BaseException, advice: str) -> str:
    """The certificate advice, or what a plain-HTTP port answering a TLS client means."""
    found = ssl_reason(exc)
    if found is None:
        return advice
    reason, message = found
    if reason == "WRONG_VERSION_NUMBER":
        return _PLAIN_HTTP_ADVICE
    if reason == _VERIFY_FAILED and "mismatch" in message:
        return advice + _MISMATCH_ADVICE
    return advice


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


# One decoder for every reply: json.loads with parse_float builds a new decoder (and scanner) per call.
_DECODER = json.JSONDecoder(parse_float=Decimal)


def read_envelope(response: requests.Response, operation: str) -> tuple[Any, Failure | None]:
    """Parse a reply. Returns ``(data, None)`` on ``errcode == 0``, else ``(None, failure)``.

    The body decides: an envelope with a non-zero ``errcode`` is classified by that code whatever the HTTP
    status; only bodies that are not an envelope fall back to the status. Numbers are parsed as
    :class:`~decimal.Decimal` so money never passes through float.
    """
    status = response.status_code
    try:
        encoding = (response.encoding or "utf-8").lower()
        content = response.content
        # utf-8-sig: a gateway reply starting with a BOM parses, as json.loads(bytes) allowed
        text = content.decode("utf-8-sig" if encoding in ("utf-8", "utf8") else encoding)
        body = _DECODER.decode(text)
    except (ValueError, UnicodeDecodeError, LookupError):
        body = None
    if status < 300 and isinstance(body, dict) and body.get("errcode") in (0, "0"):
        return body.get("data"), None  # the usual reply: nothing else to read
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if not isinstance(body, dict) or "errcode" not in body:
        return None, Failure(
            operation, status=status, description=_snippet(response), retry_after=retry_after
        )
    try:
        errcode = int(str(body["errcode"]).strip() or "0")
    except ValueError:
        return None, Failure(operation, status=status, description=f"errcode {body['errcode']!r}")
    if errcode == 0:
        if status >= 300:
            return None, Failure(
                operation, status=status, description=_snippet(response), retry_after=retry_after
            )
        return body.get("data"), None
    return None, Failure(
        operation,
        status=status,
        errcode=errcode,
        description=str(body.get("description") or body.get("msg") or ""),
        retry_after=retry_after,
    )


def _snippet(response: requests.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:160]
