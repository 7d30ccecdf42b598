"""One HTTP exchange with the KIS gateway: build, send with timeouts, parse the envelope, classify.

No retries here (the client wraps calls in the one tenacity builder) and no token logic (auth.py).
Query strings carry ``access_token``, so they never appear in error text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from connectors.kingdee.kis.errors import Failure, Phase, classify, read_envelope
from connectors.kingdee.kis.settings import KisQuirks, KisSettings

# Decimal -> its JSON form, for the values seen lately: prices, rates and quantities repeat from bill to
# bill, and the conversion costs ~2 µs a value (P11). Integers as written never enter it, so the text
# of a body does not depend on which value came first (1 and 1.0 are equal keys); 1.5 and 1.50 share an
# entry and become the same float.
_NUMBERS: dict[Decimal, Any] = {}
_NUMBERS_KEPT = 4096


def _json_number(value: Decimal) -> Any:
    # JSON numbers: a float prints the shortest text that round-trips, which for 2-6 decimal places is
    # the decimal itself; anything a float cannot carry exactly goes as a string instead.
    as_float = float(value)
    return as_float if Decimal(repr(as_float)) == value else str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if value.as_tuple().exponent == 0:  # an integer as written
            return int(value)
        number = _NUMBERS.get(value)
        if number is None:
            if len(_NUMBERS) >= _NUMBERS_KEPT:
                _NUMBERS.clear()  # senders share it: clear and refill rather than track recency
            number = _NUMBERS[value] = _json_number(value)
        return number
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(body: Any) -> bytes:
    """UTF-8 JSON as the gateway expects (CJK kept literal, Decimal as number)."""
    return json.dumps(body, ensure_ascii=False, default=_json_default, separators=(",", ":")).encode("utf-8")


class EncodedJson(bytes):
    """A request body already encoded by :func:`dumps` (sent as is; see ``KisClient.prepare_outbound``)."""


def new_session(pool_size: int = 16) -> requests.Session:
    """A ``requests`` session with a connection pool large enough for concurrent pushes."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Transport:
    """Sends one request and returns the envelope's ``data`` or raises a classified :class:`HubError`."""

    def __init__(self, settings: KisSettings, quirks: KisQuirks, session: requests.Session) -> None:
        self.settings = settings
        self.quirks = quirks
        self.session = session
        self._base = settings.base_url.rstrip("/")
        # Requests are prepared and sent directly (``Session.send``) with the session's settings resolved
        # once here. ``Session.request`` re-reads the environment (proxies, CA bundle, ~/.netrc) and merges
        # settings through slow runtime-protocol checks on every call: about 0.8 ms of CPU per call on the
        # reference machine, more than the rest of the client together (see bench/kis_push.py).
        # Session cookies and auth are not used: the KIS gateway authenticates by token and header.
        env_proxies = get_environ_proxies(self._base) if session.trust_env else {}
        self._proxies = {**env_proxies, **session.proxies}
        env_ca = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if session.trust_env
            else None
        )
        session_ca = session.verify if isinstance(session.verify, str) else None
        # TLS is always verified: an explicit ca_bundle wins, then the session's or environment's bundle.
        self._verify: bool | str = settings.ca_bundle or session_ca or env_ca or True
        self._default_headers = {
            k: v if isinstance(v, str) else v.decode() for k, v in session.headers.items()
        }

    def http(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        params: Mapping[str, str] | None,
    ) -> requests.Response:
        """The bare ``requests`` exchange (prepare + send) with explicit timeouts and TLS verification."""
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method, url=url, headers=headers, data=data, params=dict(params) if params else None
        )
        return self.session.send(
            prepared,
            timeout=self.settings.timeout,
            verify=self._verify,
            proxies=self._proxies,
            allow_redirects=False,
            stream=False,
            cert=None,
        )

    def send(
        self,
        method: str,
        path: str,
        *,
        phase: Phase,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send and parse. ``path`` starts with ``/``; ``body`` is JSON-encoded when not None."""
        operation = f"{method} {path}"
        all_headers: dict[str, str] = {**self._default_headers, "Accept": "application/json"}
        data = None
        if body is not None:
            data = body if isinstance(body, EncodedJson) else dumps(body)
            all_headers["Content-Type"] = "application/json; charset=utf-8"
        if headers:
            all_headers.update(headers)
        try:
            response = self.http(method, self._base + path, all_headers, data, params)
        except requests.RequestException as exc:
            # The exception keeps its chain (the TLS reason lies deep in it); errors.exception_text
            # drops query strings (tokens) from every text it takes from it.
            raise classify(
                Failure(operation, exception=exc), phase, self.quirks, self.settings.name
            ) from None
        result, failure = read_envelope(response, operation)
        if failure is not None:
            raise classify(failure, phase, self.quirks, self.settings.name)
        return result
