"""Every K/3 Cloud failure is classified here, once, by one table (STYLE.md principle 5).

Keys are ``("msgcode", n)`` for ``ResponseStatus.MsgCode`` (ERP-APIS §3.5), ``("http", status)`` for
HTTP statuses, ``("exception", type)`` for ``requests`` exceptions and a few ``("body"|"login", ...)``
cases. A :class:`Resolution` names the :mod:`hub.errors` type and what the operator should do.

``ambiguous`` marks failures that may happen *after* the server received the request: for a write
they become :class:`~hub.errors.UnknownOutcomeError`, so the caller looks the bill up before
re-sending it instead of retrying blindly.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from hub.errors import (
    AuthError,
    ConfigError,
    HubError,
    PermanentError,
    RateLimitedError,
    TransientError,
    UnknownOutcomeError,
)

from .records import ResponseStatus


@dataclass(frozen=True)
class Resolution:
    """How one kind of failure is surfaced."""

    error: type[HubError]
    hint: str
    ambiguous: bool = False


_FIX_DATA = "fix the record (or its base data in K/3 Cloud) and re-send it"
_FIX_TEMPLATE = "a form id or field key does not exist in this K/3 Cloud; correct the template or mapping"

ERROR_TABLE: dict[tuple[str, object], Resolution] = {
    # ResponseStatus.MsgCode (official table, ERP-APIS §3.5).
    ("msgcode", 0): Resolution(PermanentError, f"the ERP refused the operation; {_FIX_DATA}"),
    ("msgcode", 1): Resolution(
        AuthError,
        "the session was lost (idle timeout, IIS recycle, login elsewhere) or the signed headers were "
        "refused; check the credentials, the app registration and this machine's clock",
    ),
    ("msgcode", 2): Resolution(AuthError, "the integration user lacks permission; grant it in K/3 Cloud"),
    ("msgcode", 3): Resolution(PermanentError, "the operation was empty (no ids or numbers matched)"),
    ("msgcode", 4): Resolution(TransientError, "the ERP threw a server exception; retry later"),
    ("msgcode", 5): Resolution(ConfigError, "the form id is empty; " + _FIX_TEMPLATE),
    ("msgcode", 6): Resolution(TransientError, "the ERP database failed; retry later"),
    ("msgcode", 7): Resolution(ConfigError, "the K/3 Cloud licence does not allow this; ask the ERP admin"),
    ("msgcode", 8): Resolution(PermanentError, "a request parameter is invalid (batch too big, bad rule id)"),
    ("msgcode", 9): Resolution(ConfigError, _FIX_TEMPLATE),
    ("msgcode", 10): Resolution(PermanentError, "no such data in K/3 Cloud"),
    ("msgcode", 11): Resolution(PermanentError, f"validation failed; {_FIX_DATA}"),
    ("msgcode", 12): Resolution(PermanentError, "the operation is not allowed in the bill's current state"),
    ("msgcode", 13): Resolution(TransientError, "another user is editing the bill (network control); retry"),
    ("msgcode", 14): Resolution(RateLimitedError, "K/3 Cloud throttled the call; backing off"),
    ("msgcode", 15): Resolution(AuthError, "administrators may not log in through the API; use an API user"),
    # HTTP statuses (business errors come back with 200; these are the front end's).
    ("http", 401): Resolution(AuthError, "the server refused the credentials"),
    ("http", 403): Resolution(AuthError, "the server refused access; check the user and IP allow-list"),
    ("http", 404): Resolution(ConfigError, "no K/3 Cloud service at this URL; check base_url (…/K3Cloud/)"),
    ("http", 429): Resolution(RateLimitedError, "throttled by the front end; backing off"),
    ("http", 500): Resolution(TransientError, "server error page; retry later", ambiguous=True),
    ("http", 502): Resolution(TransientError, "bad gateway; retry later", ambiguous=True),
    ("http", 503): Resolution(TransientError, "service unavailable (overload or recycle); retry later", True),
    ("http", 504): Resolution(TransientError, "gateway timeout; retry later", ambiguous=True),
    # Transport exceptions, most specific first (looked up with isinstance in this order).
    ("exception", requests.exceptions.SSLError): Resolution(
        ConfigError, "TLS verification failed; set ca_bundle for a private CA (never disable verification)"
    ),
    ("exception", requests.exceptions.ConnectTimeout): Resolution(
        TransientError, "could not connect in time; check the host and network"
    ),
    ("exception", requests.exceptions.ReadTimeout): Resolution(
        TransientError, "no reply within read_timeout", ambiguous=True
    ),
    ("exception", requests.exceptions.ConnectionError): Resolution(
        TransientError, "the connection failed or was reset", ambiguous=True
    ),
    ("exception", requests.exceptions.RequestException): Resolution(
        TransientError, "the HTTP request failed", ambiguous=True
    ),
    # Bodies that are not a K/3 Cloud result.
    ("body", "response_error"): Resolution(TransientError, "the API gateway reported an error", True),
    ("body", "not_json"): Resolution(TransientError, "the reply was not JSON (error page?)", ambiguous=True),
    ("login", "refused"): Resolution(
        AuthError,
        "check acct_id, username and password / app_id and app_secret of this connection, and this "
        "machine's clock (signed logins are valid for 5 minutes)",
    ),
}

_DEFAULT_MSGCODE = Resolution(PermanentError, "unexpected MsgCode; see the message")
_DEFAULT_HTTP = Resolution(PermanentError, "unexpected HTTP status")


def _build(resolution: Resolution, text: str, *, write: bool, retry_after: float | None = None) -> HubError:
    if resolution.ambiguous and write:
        return UnknownOutcomeError(
            f"{text}. The write may or may not have been applied: look the bill up by number before "
            "re-sending it."
        )
    if issubclass(resolution.error, TransientError):
        return resolution.error(text, retry_after=retry_after)
    return resolution.error(text)


def _where(connection: str, service: str, form_id: str | None) -> str:
    target = f" {form_id}" if form_id else ""
    return f"K/3 Cloud connection {connection!r}: {service}{target}"


def error_for_status(
    status: ResponseStatus, *, connection: str, service: str, form_id: str | None = None
) -> HubError:
    """The error for a reply whose ``IsSuccess`` is false."""
    resolution = ERROR_TABLE.get(("msgcode", status.msg_code), _DEFAULT_MSGCODE)
    text = f"{_where(connection, service, form_id)} failed (MsgCode {status.msg_code}): {status.summary()} — "
    return _build(resolution, text + resolution.hint, write=False)


def error_for_http(
    http_status: int,
    body: str,
    *,
    connection: str,
    service: str,
    form_id: str | None = None,
    write: bool,
    retry_after: float | None = None,
) -> HubError:
    """The error for an HTTP status other than 200/206."""
    resolution = ERROR_TABLE.get(("http", http_status))
    if resolution is None:
        resolution = (
            ERROR_TABLE[("http", 503)] if http_status >= 500 else _DEFAULT_HTTP
        )  # any other 5xx behaves like 503
    snippet = " ".join(body.split())[:200]
    text = f"{_where(connection, service, form_id)}: HTTP {http_status} ({snippet!r}) — {resolution.hint}"
    return _build(resolution, text, write=write, retry_after=retry_after)


def error_for_exception(
    exc: BaseException, *, connection: str, service: str, form_id: str | None = None, write: bool
) -> HubError:
    """The error for a ``requests`` exception raised while calling ``service``."""
    resolution = _DEFAULT_HTTP
    for (kind, key), candidate in ERROR_TABLE.items():
        if kind == "exception" and isinstance(key, type) and isinstance(exc, key):
            resolution = candidate
            break
    if isinstance(exc, requests.exceptions.ConnectionError) and _never_connected(exc):
        # Refused or unreachable: nothing was sent, so even a write is safe to retry.
        resolution = Resolution(TransientError, "connection refused or host unreachable; is the ERP up?")
    text = f"{_where(connection, service, form_id)}: {type(exc).__name__} — {resolution.hint}"
    return _build(resolution, text, write=write)


def error_for_body(
    kind: str, body: str, *, connection: str, service: str, form_id: str | None = None, write: bool
) -> HubError:
    """The error for a 200 reply that is not a K/3 Cloud result (``response_error:`` text, HTML)."""
    resolution = ERROR_TABLE[("body", kind)]
    snippet = " ".join(body.split())[:200]
    text = f"{_where(connection, service, form_id)}: {snippet!r} — {resolution.hint}"
    return _build(resolution, text, write=write)


def error_for_login(message: str, *, connection: str, service: str, acct_id: str, username: str) -> HubError:
    """The error for a login whose ``LoginResultType`` is not 1."""
    resolution = ERROR_TABLE[("login", "refused")]
    return resolution.error(
        f"K/3 Cloud connection {connection!r}: {service} as {username!r} to data centre {acct_id!r} "
        f"refused: {message or 'no message'} — {resolution.hint}"
    )


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the TCP connection was never established (refused, DNS, unreachable)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | NameResolutionError)
