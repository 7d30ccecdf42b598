"""K/3 Cloud variants of the Kingdee signatures (ERP-APIS §1 and §3.3).

Three things differ from the generic gateway signature in :mod:`connectors.kingdee.signing`:

* the stateless mode signs with a *client secret hidden in the AppId*: ``AppId = "<clientId>_<blob>"``,
  the 32-character base64 blob is decoded, XOR-ed with a fixed 32-byte key and re-encoded;
* timestamps are epoch **seconds**, the nonce repeats the timestamp and the sign-header names are
  lower case (``x-api-timestamp,x-api-nonce``), as the official Python SDK sends them;
* an extra ``X-Kd-Signature`` covers ``AppId + "<acctId>,<user>,<lcid>,<orgNum>"`` under the AppSecret.

``LoginBySign`` uses yet another scheme: SHA-256 hex of the sorted, concatenated login values.

The golden values in ``tests/connectors/k3cloud/test_signing.py`` were produced by the official SDK
(kingdee-cdp-webapi-sdk 8.2.0), so client and sandbox cannot drift together unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from urllib.parse import urlsplit

from connectors.kingdee.signing import api_signature, hmac_hex_base64

# The SDK stores this key rot13-ed ("0054s397p6234378o09pn7q3r5qropr7"); a deployment may override it.
DEFAULT_XOR_KEY = "0054f397c6234378b09ca7d3e5debce7"
K3_SIGN_HEADERS = "x-api-timestamp,x-api-nonce"
_APP_SECRET_BLOB_LENGTH = 32


def decode_app_secret(blob: str, xor_key: str = DEFAULT_XOR_KEY) -> str:
    """Gateway client secret hidden in the second half of an AppId; ``""`` when the blob is malformed.

    Mirrors the SDK, which also answers ``""`` for a blob that is not 32 base64 characters.
    """
    if len(blob) != _APP_SECRET_BLOB_LENGTH:
        return ""
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return ""
    key = xor_key.encode("ascii")
    return base64.b64encode(bytes(b ^ key[i % len(key)] for i, b in enumerate(raw))).decode("ascii")


def split_app_id(app_id: str) -> tuple[str, str]:
    """``(client_id, blob)`` of an AppId such as ``"230001_YWJj..."``; blob is ``""`` when absent."""
    client_id, _, blob = app_id.partition("_")
    return client_id, blob


def app_data(acct_id: str, username: str, lcid: int | str, org_number: str | int) -> str:
    """The plain ``"<acctId>,<user>,<lcid>,<orgNum>"`` text that ``X-Kd-Appdata`` carries in base64."""
    return f"{acct_id},{username},{lcid},{org_number}"


def kd_signature(app_id: str, app_secret: str, plain_app_data: str) -> str:
    """Value of ``X-Kd-Signature``."""
    return hmac_hex_base64(app_secret, app_id + plain_app_data)


def k3_signed_headers(
    *,
    url: str,
    app_id: str,
    app_secret: str,
    acct_id: str,
    username: str,
    lcid: int,
    org_number: str,
    timestamp: int,
) -> dict[str, str]:
    """All ``X-Api-*`` and ``X-Kd-*`` headers of one stateless K/3 Cloud call to ``url`` (POST).

    The signed path is the URL path only (``/K3Cloud/Kingdee.BOS...kdsvc``), as in the SDK.
    """
    client_id, blob = split_app_id(app_id)
    client_secret = decode_app_secret(blob)
    ts = str(int(timestamp))
    path = urlsplit(url).path
    plain = app_data(acct_id, username, lcid, org_number)
    return {
        "X-Api-ClientID": client_id,
        "X-Api-Auth-Version": "2.0",
        "x-api-timestamp": ts,
        "x-api-nonce": ts,
        "x-api-signheaders": K3_SIGN_HEADERS,
        "X-Api-Signature": api_signature(client_secret, "POST", path, None, ts, ts),
        "X-Kd-Appkey": app_id,
        "X-Kd-Appdata": base64.b64encode(plain.encode("utf-8")).decode("ascii"),
        "X-Kd-Signature": kd_signature(app_id, app_secret, plain),
    }


def login_sign(acct_id: str, username: str, app_id: str, app_secret: str, timestamp: int | str) -> str:
    """The ``sign`` parameter of ``AuthService.LoginBySign``: sha256 hex of the sorted values joined."""
    parts = sorted([acct_id, username, app_id, app_secret, str(timestamp)])
    return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()
