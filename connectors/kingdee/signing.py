"""Kingdee gateway signature ("API 2.0", ``X-Api-*`` headers), shared by KIS cloud and K/3 Cloud.

ERP-APIS.md §1: the string to sign is five ``\\n``-terminated lines (method, path URL-encoded once
with ``/`` -> ``%2F``, query with values URL-encoded twice and keys sorted, then the nonce and the
timestamp lines); the signature is Base64 of the *lowercase hex text* of HMAC-SHA256, not of the
raw digest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote

SIGN_HEADERS = "X-Api-TimeStamp,X-Api-Nonce"


def hmac_hex_base64(secret: str, message: str) -> str:
    """Base64 of the lowercase hex HMAC-SHA256 of ``message`` under ``secret``."""
    digest = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode("ascii")).decode("ascii")


def app_signature(app_key: str, app_secret: str) -> str:
    """The ``app_signature`` query value of ``kingdee_auth_token`` (HMAC of the app key)."""
    return hmac_hex_base64(app_secret, app_key)


def canonical_query(params: Mapping[str, str] | None) -> str:
    """Query line of the string to sign: keys sorted, values URL-encoded twice."""
    if not params:
        return ""
    return "&".join(f"{k}={quote(quote(str(params[k]), safe=''), safe='')}" for k in sorted(params))


def string_to_sign(
    method: str, path: str, params: Mapping[str, str] | None, nonce: str, timestamp: str
) -> str:
    """The exact text that is HMAC-signed (each line ends with a newline, the last one too)."""
    return (
        f"{method.upper()}\n"
        f"{quote(path, safe='')}\n"
        f"{canonical_query(params)}\n"
        f"x-api-nonce:{nonce}\n"
        f"x-api-timestamp:{timestamp}\n"
    )


def api_signature(
    client_secret: str, method: str, path: str, params: Mapping[str, str] | None, nonce: str, timestamp: str
) -> str:
    """Value of the ``X-Api-Signature`` header."""
    return hmac_hex_base64(client_secret, string_to_sign(method, path, params, nonce, timestamp))


def signed_headers(
    client_id: str,
    client_secret: str,
    method: str,
    path: str,
    params: Mapping[str, str] | None,
    nonce: str,
    timestamp: str,
) -> dict[str, str]:
    """All ``X-Api-*`` headers for one signed call."""
    return {
        "X-Api-ClientID": client_id,
        "X-Api-Auth-Version": "2.0",
        "X-Api-TimeStamp": timestamp,
        "X-Api-Nonce": nonce,
        "X-Api-SignHeaders": SIGN_HEADERS,
        "X-Api-Signature": api_signature(client_secret, method, path, params, nonce, timestamp),
    }


def verify_signature(expected: str, given: str) -> bool:
    """Constant-time comparison of two signatures."""
    return hmac.compare_digest(expected.encode("ascii", "replace"), given.encode("ascii", "replace"))
