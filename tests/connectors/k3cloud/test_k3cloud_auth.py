"""Logins, signed headers and session loss, over real HTTP against the sandbox."""

from __future__ import annotations

import time

import pytest
import requests

from connectors.kingdee.k3cloud import BillQuerySpec
from connectors.kingdee.k3cloud_sandbox import K3CloudSandbox
from hub.errors import AuthError

from .conftest import Admin, MakeClient
from .helpers import outstock

CUSTOMERS = BillQuerySpec("BD_Customer", ("FNumber", "FName"), order_string="FNumber")


@pytest.mark.parametrize("mode", ["password", "app_secret", "sign", "signed_headers"])
def test_every_auth_mode_reads_and_writes(make_client: MakeClient, admin: Admin, mode: str) -> None:
    client = make_client(mode)
    check = client.check()
    assert check.rows_read == 1 and check.auth_mode == mode
    saved = client.save("SAL_OUTSTOCK", outstock(f"AUTH-{mode}"))
    assert saved.number == f"AUTH-{mode}"
    assert admin.ledger("SAL_OUTSTOCK")[-1]["principal"].startswith("api_user@")


def test_session_cookie_is_set_and_accepted_as_cookie(sandbox: K3CloudSandbox) -> None:
    creds = sandbox.credentials
    http = requests.Session()
    login = http.post(
        sandbox.base_url + "Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser.common.kdsvc",
        json={"acctID": creds.acct_id, "username": creds.username, "password": creds.password, "lcid": 2052},
        timeout=(2, 10),
    )
    assert login.json()["LoginResultType"] == 1
    assert http.cookies.get("kdservice-sessionid") == login.json()["KDSVCSessionId"]
    # The cookie jar alone (no header) carries the session, like the SDK's cookie replay.
    rows = http.post(
        sandbox.base_url + "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery.common.kdsvc",
        json={"data": {"FormId": "BD_Currency", "FieldKeys": "FNumber", "OrderString": "FNumber"}},
        timeout=(2, 10),
    ).json()
    assert rows == [["PRE001"], ["PRE007"]]


@pytest.mark.parametrize(
    ("mode", "override", "expected"),
    [
        ("password", {"password": "wrong-password-123"}, "用户名或密码错误"),
        ("app_secret", {"app_secret": "0" * 32}, "应用ID或应用密钥错误"),
        ("sign", {"app_secret": "0" * 32}, "签名验证失败"),
        ("signed_headers", {"app_secret": "0" * 32}, "X-Kd-Signature"),
        ("password", {"acct_id": "no-such-dc"}, "数据中心"),
    ],
)
def test_wrong_credentials_give_one_clear_auth_error(
    make_client: MakeClient, admin: Admin, mode: str, override: dict[str, str], expected: str
) -> None:
    client = make_client(mode, **override)
    with pytest.raises(AuthError) as caught:
        client.execute_bill_query(CUSTOMERS)
    text = str(caught.value)
    assert expected in text
    assert "erp-test" in text  # names the connection
    for secret in override.values():
        assert secret not in text or secret == "no-such-dc"  # secrets are redacted, the data centre is not
    # One login attempt (or two signed calls: the first plus one fresh-signature retry), not a retry storm.
    stats = admin.stats()
    assert sum(v for k, v in stats.items() if k.startswith("calls:")) <= 2


@pytest.mark.parametrize("mode", ["signed_headers", "sign"])
def test_expired_signature_is_rejected_with_a_clear_error(make_client: MakeClient, mode: str) -> None:
    client = make_client(mode, clock=lambda: time.time() - 600)  # this machine's clock is 10 minutes slow
    with pytest.raises(AuthError) as caught:
        client.execute_bill_query(CUSTOMERS)
    assert "时间戳" in str(caught.value) or "签名已过期" in str(caught.value)
    assert "clock" in str(caught.value)  # the hint says what to do


def test_signature_within_skew_is_accepted(make_client: MakeClient) -> None:
    client = make_client("signed_headers", clock=lambda: time.time() - 120)
    assert len(client.execute_bill_query(CUSTOMERS)) == 11


def test_tampered_api_signature_is_refused(sandbox: K3CloudSandbox) -> None:
    from connectors.kingdee.k3cloud.signing import k3_signed_headers

    creds = sandbox.credentials
    url = (
        sandbox.base_url + "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery.common.kdsvc"
    )
    headers = k3_signed_headers(
        url=url,
        app_id=creds.app_id,
        app_secret=creds.app_secret,
        acct_id=creds.acct_id,
        username=creds.username,
        lcid=2052,
        org_number="100",
        timestamp=int(time.time()),
    )
    headers["X-Api-Signature"] = headers["X-Api-Signature"][:-4] + "AAA="
    reply = requests.post(
        url,
        json={"data": {"FormId": "BD_Currency", "FieldKeys": "FNumber"}},
        headers=headers,
        timeout=(2, 10),
    ).json()
    status = reply[0][0]["Result"]["ResponseStatus"]
    assert status["MsgCode"] == 1 and "X-Api-Signature" in status["Errors"][0]["Message"]


def test_idle_timeout_is_recovered_by_one_relogin(make_client: MakeClient, admin: Admin) -> None:
    client = make_client()
    client.execute_bill_query(CUSTOMERS)
    admin.advance_clock(1201)  # past the 20-minute idle timeout
    assert len(client.execute_bill_query(CUSTOMERS)) == 11
    stats = admin.stats()
    assert stats["calls:AuthService.ValidateUser"] == 2
    assert stats["not_authenticated"] == 1


def test_absolute_expiry_and_recycle_and_login_elsewhere(make_client: MakeClient, admin: Admin) -> None:
    client = make_client()
    other = make_client()
    client.execute_bill_query(CUSTOMERS)
    admin.set(absolute_ttl=100.0)
    admin.advance_clock(101)
    client.execute_bill_query(CUSTOMERS)  # absolute expiry -> re-login
    assert admin.recycle() == 1
    client.execute_bill_query(CUSTOMERS)  # IIS recycle -> re-login
    other.execute_bill_query(CUSTOMERS)  # same user logs in elsewhere: client's session dies
    client.execute_bill_query(CUSTOMERS)
    stats = admin.stats()
    assert stats["calls:AuthService.ValidateUser"] == 5
    assert stats["not_authenticated"] == 3


def test_session_that_stays_lost_gives_auth_error_after_one_relogin(
    make_client: MakeClient, admin: Admin
) -> None:
    client = make_client()
    client.execute_bill_query(CUSTOMERS)
    admin.script({"service": "ExecuteBillQuery", "fault": "session_lost", "count": 2})
    with pytest.raises(AuthError, match="会话信息已丢失"):
        client.execute_bill_query(CUSTOMERS)
    assert admin.stats()["calls:AuthService.ValidateUser"] == 2


def test_session_lost_mid_batch_is_recovered_without_duplicates(
    make_client: MakeClient, admin: Admin
) -> None:
    client = make_client(batch_size=3)
    models = [outstock(f"MID-{i:02d}") for i in range(9)]
    # The second of three BatchSave calls finds every session killed (IIS recycle mid-batch).
    admin.script({"service": "BatchSave", "fault": "session_lost", "skip": 1, "count": 1})
    result = client.batch_save("SAL_OUTSTOCK", models)
    assert result.all_saved and sorted(result.saved) == list(range(9))
    creates = admin.creates("SAL_OUTSTOCK")
    assert sorted(creates) == [f"MID-{i:02d}" for i in range(9)]  # each exactly once
    stats = admin.stats()
    assert stats["calls:DynamicFormService.BatchSave"] == 4 and stats["calls:AuthService.ValidateUser"] == 2


def test_logout_ends_the_session(make_client: MakeClient, admin: Admin) -> None:
    client = make_client()
    client.execute_bill_query(CUSTOMERS)
    client.logout()
    client.execute_bill_query(CUSTOMERS)
    assert admin.stats()["calls:AuthService.ValidateUser"] == 2
