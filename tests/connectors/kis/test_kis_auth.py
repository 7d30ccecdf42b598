"""Both KIS authorisation flows against the sandbox: login, signatures, timestamps, expiry and refresh."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from pathlib import Path

import pytest
import requests

from connectors.kingdee.kis import KisClient
from connectors.kingdee.kis_sandbox import FaultConfig, KisSandbox, SandboxAdmin, SandboxCredentials
from connectors.kingdee.signing import app_signature, signed_headers
from hub.errors import AuthError, HubError

from .conftest import ClientFactory

# ERP-APIS §1 test vector: app_key "abc", app_secret "abc123".
VECTOR_SIGNATURE = "ZDljMTI3NGIyNTE1MTRkYzlkNjc1MDNhYjUzMzgzNWMyY2M4YTdjMzdmNmM3YTVlNDkxMTkzNjdiOTFjNzUyZQ=="
TOKEN_PATH = "/jdyconnector/app_management/kingdee_auth_token"


def _signed_get(
    base_url: str,
    creds: SandboxCredentials,
    params: dict[str, str],
    *,
    secret: str | None = None,
    timestamp_ms: int | None = None,
) -> dict:
    stamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    nonce = str(secrets.randbelow(10**9) + 1)
    headers = signed_headers(
        creds.client_id, secret or creds.client_secret, "GET", TOKEN_PATH, params, nonce, stamp
    )
    reply = requests.get(base_url + TOKEN_PATH, params=params, headers=headers, timeout=(2, 10))
    assert reply.status_code == 200  # errors are in the envelope, not the status
    return reply.json()


def test_both_flows_log_in_and_read(client: KisClient, admin: SandboxAdmin) -> None:
    report = client.check()
    assert report.connection == client.settings.name
    assert report.gateway == "gw-kis001.sandbox.kis"
    assert report.stocks_total == 2
    stats = admin.stats()
    if client.settings.auth_flow == "koas":
        for path in ("/koas/oauth2/access_token", "/koas/user/account", "/koas/user/get_service_gateway"):
            assert stats[f"route:{path}"] == 1
    else:
        assert stats["route:/jdyconnector/app_management/push_app_authorize"] == 1
        assert stats[f"route:{TOKEN_PATH}"] == 1
    assert stats["route:app006992/stock/list"] == 1


def test_signature_test_vector_verifies_in_the_sandbox(tmp_path: Path) -> None:
    creds = SandboxCredentials(app_key="abc", app_secret="abc123")
    with KisSandbox(tmp_path / "vector.sqlite", credentials=creds) as box:
        assert app_signature("abc", "abc123") == VECTOR_SIGNATURE
        ok = _signed_get(box.base_url, creds, {"app_key": "abc", "app_signature": VECTOR_SIGNATURE})
        assert ok["errcode"] == 0
        assert ok["data"]["app-token"] and ok["data"]["access_token"]
        bad = _signed_get(
            box.base_url, creds, {"app_key": "abc", "app_signature": app_signature("abc", "abc124")}
        )
        assert bad["errcode"] != 0
        assert "授权密钥校验失败" in bad["description"]


def test_bad_x_api_signature_is_refused(sandbox: KisSandbox) -> None:
    creds = sandbox.credentials
    params = {"app_key": creds.app_key, "app_signature": app_signature(creds.app_key, creds.app_secret)}
    assert _signed_get(sandbox.base_url, creds, params)["errcode"] == 0
    refused = _signed_get(sandbox.base_url, creds, params, secret="not-the-client-secret")
    assert refused["errcode"] == 1010
    assert refused["data"] is None


def test_stale_timestamp_is_refused(sandbox: KisSandbox) -> None:
    creds = sandbox.credentials
    params = {"app_key": creds.app_key, "app_signature": app_signature(creds.app_key, creds.app_secret)}
    six_minutes_ago = int((time.time() - 360) * 1000)
    refused = _signed_get(sandbox.base_url, creds, params, timestamp_ms=six_minutes_ago)
    assert refused["errcode"] == 1011
    four_minutes_ago = int((time.time() - 240) * 1000)
    assert _signed_get(sandbox.base_url, creds, params, timestamp_ms=four_minutes_ago)["errcode"] == 0


def test_koas_account_call_checks_kis_signature_and_timestamp(sandbox: KisSandbox) -> None:
    creds = sandbox.credentials
    login = requests.post(
        sandbox.base_url + "/koas/oauth2/access_token",
        params={"client_id": creds.client_id, "client_secret": creds.client_secret},
        json={"code": creds.auth_code},
        timeout=(2, 10),
    ).json()["data"]

    def account_call(stamp: int, secret: str) -> dict:
        state, trace = "abcdef0123456789", str(uuid.uuid4())
        sign = hashlib.sha256(f"{state}{login['session_id']}{trace}{secret}{stamp}".encode()).hexdigest()
        headers = {
            "KIS-State": state,
            "KIS-TraceID": trace,
            "KIS-Timestamp": str(stamp),
            "KIS-Signature": sign,
        }
        return requests.post(
            sandbox.base_url + "/koas/user/account",
            params={"access_token": login["access_token"]},
            json={"session_id": login["session_id"]},
            headers=headers,
            timeout=(2, 10),
        ).json()

    now = int(time.time())
    assert account_call(now, login["session_secret"])["errcode"] == 0
    assert account_call(now, "wrong-session-secret")["errcode"] == 1010
    assert account_call(now - 600, login["session_secret"])["errcode"] == 1011


@pytest.mark.parametrize("flow", ["koas", "open_platform"])
def test_wrong_credentials_give_one_clear_auth_error(make_client: ClientFactory, flow: str) -> None:
    client = make_client(flow, client_secret="definitely-wrong-secret")
    with pytest.raises(AuthError) as caught:
        client.check()
    text = str(caught.value)
    assert "kis-" + flow in text and "client_secret" in text
    assert "definitely-wrong-secret" not in text
    assert "\n" not in text


def test_wrong_auth_code_names_it(make_client: ClientFactory) -> None:
    client = make_client("koas", auth_code="stale-oauth-code")
    with pytest.raises(AuthError, match="auth_code"):
        client.list_stocks().__next__()


def test_token_expiry_and_refresh_mid_run(make_client: ClientFactory, admin: SandboxAdmin) -> None:
    # Access token and session live 2 s, auth_data 1.5 s (the client is not told that lifetime).
    admin.set_faults(ttl_seconds={"access_token": 2.0, "session_id": 2.0, "auth_data": 1.5})
    client = make_client("koas")
    started = time.monotonic()
    reads = 0
    while time.monotonic() - started < 4.5:
        assert len(list(client.list_stocks())) == 2
        reads += 1
        time.sleep(0.1)
    assert reads >= 5
    # Proactive refresh from the absolute *_expire_in, and recovery after auth_data ran out.
    assert client.auth.refreshes.get("refresh_login", 0) + client.auth.refreshes.get("login", 0) >= 2
    assert client.stats["auth_recoveries"] >= 1


def test_open_platform_token_expiry_recovers(make_client: ClientFactory, admin: SandboxAdmin) -> None:
    admin.set_faults(ttl_seconds={"app_token": 1.0})
    client = make_client("open_platform")
    assert len(list(client.list_units())) == 3
    time.sleep(1.2)
    assert len(list(client.list_units())) == 3
    assert client.stats["auth_recoveries"] == 1
    assert client.auth.refreshes["app_token"] == 2


def test_revoked_session_recovers_once(client: KisClient, admin: SandboxAdmin) -> None:
    assert client.check().stocks_total == 2
    assert admin.revoke_tokens() > 0
    assert client.check().stocks_total == 2
    assert client.stats["auth_recoveries"] == 1


def test_refresh_is_tried_once_then_fails_loudly(make_client: ClientFactory, admin: SandboxAdmin) -> None:
    admin.set_faults(ttl_seconds={"auth_data": 0.0})  # every auth_data is born expired
    client = make_client("koas")
    with pytest.raises(AuthError) as caught:
        client.check()
    assert "kis-koas" in str(caught.value)
    assert admin.stats()["errcode:1003"] == 2  # the first call and exactly one retry after refreshing
    assert isinstance(caught.value, HubError)


def test_sandbox_ttl_scale_shortens_every_token(tmp_path: Path) -> None:
    with KisSandbox(tmp_path / "scaled.sqlite", faults=FaultConfig(token_ttl_scale=0.001)) as box:
        creds = box.credentials
        before = time.time()
        data = requests.post(
            box.base_url + "/koas/oauth2/access_token",
            params={"client_id": creds.client_id, "client_secret": creds.client_secret},
            json={"code": creds.auth_code},
            timeout=(2, 10),
        ).json()["data"]
        # 30 days * 0.001 ≈ 43 min; 3 h * 0.001 ≈ 11 s (absolute epoch seconds)
        assert 2000 < data["access_token_expire_in"] - before < 2700
        assert 5 < data["session_id_expire_in"] - before < 15
