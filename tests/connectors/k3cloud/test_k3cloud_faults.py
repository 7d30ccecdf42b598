"""Throttling, transient faults, determinism and the ways to start the sandbox."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from connectors.kingdee.k3cloud import BillQuerySpec, K3CloudClient, K3CloudSettings
from connectors.kingdee.k3cloud_sandbox import K3CloudSandbox
from connectors.retry import RetryPolicy
from hub.errors import ConfigError, RateLimitedError, TransientError

from .conftest import Admin, MakeClient

CUSTOMERS = BillQuerySpec("BD_Customer", ("FNumber", "FName"), order_string="FNumber")
ROOT = Path(__file__).resolve().parents[3]


def test_throttled_calls_back_off_and_succeed(make_client: MakeClient, admin: Admin) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    client = make_client(sleep=sleep)
    client.execute_bill_query(CUSTOMERS)
    admin.script({"service": "ExecuteBillQuery", "fault": "throttle", "count": 2})
    assert len(client.execute_bill_query(CUSTOMERS)) == 11
    assert admin.stats()["throttled"] == 2
    assert len(slept) == 2 and all(s > 0 for s in slept)


def test_token_bucket_throttles_per_caller(make_client: MakeClient, admin: Admin) -> None:
    admin.set(throttle={"rate": 0.0, "burst": 2})  # never refills: the third call is over the limit
    client = make_client(
        "signed_headers", retry=RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.05)
    )
    client.execute_bill_query(CUSTOMERS)
    client.execute_bill_query(CUSTOMERS)
    with pytest.raises(RateLimitedError, match="MsgCode 14"):
        client.execute_bill_query(CUSTOMERS)
    admin.set(throttle={"rate": 1000.0, "burst": 10})
    assert len(client.execute_bill_query(CUSTOMERS)) == 11


def test_throttle_mode_503_is_transient(make_client: MakeClient, admin: Admin) -> None:
    admin.set(throttle={"mode": "http503", "slow_seconds": 0.1})
    admin.script({"service": "*", "fault": "throttle", "count": 1, "skip": 1})
    client = make_client()
    assert (
        len(client.execute_bill_query(CUSTOMERS)) == 11
    )  # login passes, the query is slowed then 503, retried
    assert admin.stats()["throttled"] == 1


@pytest.mark.parametrize("fault", ["http_500", "http_502", "http_503", "reset", "response_error"])
def test_transient_faults_on_reads_are_retried(client: K3CloudClient, admin: Admin, fault: str) -> None:
    client.execute_bill_query(CUSTOMERS)
    admin.script({"service": "ExecuteBillQuery", "fault": fault, "count": 2})
    assert len(client.execute_bill_query(CUSTOMERS)) == 11
    assert admin.stats()[f"fault:{fault}"] == 2


def test_faults_that_outlast_the_policy_surface_as_transient(make_client: MakeClient, admin: Admin) -> None:
    client = make_client(retry=RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.05))
    client.execute_bill_query(CUSTOMERS)
    admin.script({"service": "ExecuteBillQuery", "fault": "http_500", "count": 5})
    with pytest.raises(TransientError, match="HTTP 500"):
        client.execute_bill_query(CUSTOMERS)


def test_unreachable_server_is_transient_and_named(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = K3CloudSettings(
        name="erp-down",
        base_url=f"http://127.0.0.1:{port}/K3Cloud",
        auth_mode="password",
        acct_id="x",
        username="u",
        password="secret-pw-1",
        connect_timeout=1,
        retry=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(TransientError, match="erp-down.*refused"):
        K3CloudClient(settings).check()


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="needs password"):
        K3CloudSettings(
            name="e", base_url="http://h/K3Cloud/", auth_mode="password", acct_id="a", username="u"
        )
    with pytest.raises(ConfigError, match="app_id"):
        K3CloudSettings(
            name="e",
            base_url="http://h/K3Cloud/",
            auth_mode="sign",
            acct_id="a",
            username="u",
            app_id="noseparator",
            app_secret="s",
        )


def test_random_faults_are_deterministic_by_seed(tmp_path: Path) -> None:
    def run(path: Path) -> list[int]:
        with K3CloudSandbox(path, seed=5, settings={"faults": {"http_503": 0.3}}) as sb:
            url = sb.base_url + "Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser.common.kdsvc"
            return [requests.post(url, json={}, timeout=(2, 10)).status_code for _ in range(20)]

    first, second = run(tmp_path / "a.sqlite"), run(tmp_path / "b.sqlite")
    assert first == second and 503 in first and 200 in first


def test_state_survives_restart_and_seed_fixes_base_data(tmp_path: Path) -> None:
    path = tmp_path / "k3.sqlite"
    with K3CloudSandbox(path, seed=3) as sb:
        creds = sb.credentials
        client = K3CloudClient(
            K3CloudSettings(
                name="erp",
                base_url=sb.base_url,
                auth_mode="password",
                acct_id=creds.acct_id,
                username=creds.username,
                password=creds.password,
            )
        )
        names = client.execute_bill_query(CUSTOMERS)
        client.save_bill("BD_Customer", {"FName": "新客户有限公司"}, "C777", number_field="FNumber")
    with K3CloudSandbox(path) as again:  # the file's seed (3) wins over the default
        assert again.credentials == creds
        rows = requests.post(
            again.base_url
            + "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery.common.kdsvc",
            json={"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber,FName", "OrderString": "FNumber"}},
            headers={"X-Kd-Appkey": "missing"},
            timeout=(2, 10),
        ).json()
        assert rows[0][0]["Result"]["ResponseStatus"]["MsgCode"] == 1
    with K3CloudSandbox(tmp_path / "other.sqlite", seed=3) as twin:
        assert twin.credentials == creds
        twin_client = K3CloudClient(
            K3CloudSettings(
                name="erp",
                base_url=twin.base_url,
                auth_mode="password",
                acct_id=creds.acct_id,
                username=creds.username,
                password=creds.password,
            )
        )
        assert twin_client.execute_bill_query(CUSTOMERS) == names
        assert twin_client.find_bill("BD_Customer", "C777", number_field="FNumber") is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "argv",
    [
        [str(ROOT / ".venv" / "bin" / "hub"), "sandbox", "k3cloud"],
        [sys.executable, "-m", "connectors.kingdee.k3cloud_sandbox"],
    ],
    ids=["hub-cli", "python-m"],
)
def test_sandbox_starts_from_the_command_line(tmp_path: Path, argv: list[str]) -> None:
    if not Path(argv[0]).exists():
        pytest.skip(f"{argv[0]} not installed")
    port = _free_port()
    state = tmp_path / "cli.sqlite"
    proc = subprocess.Popen(
        [*argv, "--port", str(port), "--state", str(state), "--seed", "4"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                creds = requests.get(f"{base}/__admin__/credentials", timeout=(1, 5)).json()
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "sandbox did not start"
                time.sleep(0.1)
        client = K3CloudClient(
            K3CloudSettings(
                name="erp",
                base_url=f"{base}/K3Cloud/",
                auth_mode="sign",
                acct_id=creds["acct_id"],
                username=creds["username"],
                app_id=creds["app_id"],
                app_secret=creds["app_secret"],
            )
        )
        assert client.check().rows_read == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert state.exists()
