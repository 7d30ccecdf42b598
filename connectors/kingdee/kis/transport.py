"""One HTTP exchange with the KIS gateway: build, send with timeouts, parse the envelope, classify.

No retries here (the client wraps calls in the one tenacity builder) and no token logic (auth.py).
Query strings carry ``access_token``, so they never appear in error text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from connectors.kingdee.kis.errors import Failure, Phase, classify, read_envelope
from connectors.kingdee.kis.settings import KisQuirks, KisSettings

_QUERY = re.compile(r"\?[^\s'\")]*")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # JSON numbers: a float prints the shortest text that round-trips, which for 2-6 decimal places is
        # the decimal itself; anything a float cannot carry exactly goes as a string instead.
        if value == value.to_integral_value() and abs(value) < 10**15:
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(body: Any) -> bytes:
    """UTF-8 JSON as the gateway expects (CJK kept literal, Decimal as number)."""
    return json.dumps(body, ensure_ascii=False, default=_json_default, separators=(",", ":")).encode("utf-8")


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
        self._verify: bool | str = settings.ca_bundle or True

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
        all_headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = dumps(body)
            all_headers["Content-Type"] = "application/json; charset=utf-8"
        if headers:
            all_headers.update(headers)
        try:
            response = self.session.request(
                method,
                self._base + path,
                params=dict(params) if params else None,
                data=data,
                headers=all_headers,
                timeout=self.settings.timeout,
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            cleaned = type(exc)(_QUERY.sub("?…", str(exc)))
            raise classify(
                Failure(operation, exception=cleaned), phase, self.quirks, self.settings.name
            ) from None
        result, failure = read_envelope(response, operation)
        if failure is not None:
            raise classify(failure, phase, self.quirks, self.settings.name)
        return result
