"""Fault injection: throttling, 5xx storms, dropped connections, determinism, exactly-once by ledger."""

from __future__ import annotations

import dataclasses
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from connectors.kingdee.kis_sandbox import FaultConfig, KisSandbox, SandboxAdmin
from connectors.retry import RetryPolicy

from .conftest import FAST_RETRY, ClientFactory, outbound


def test_throttling_is_backed_off_honouring_retry_after(
    make_client: ClientFactory, admin: SandboxAdmin
) -> None:
    # Retry-After (1 s) may exceed FAST_RETRY's 0.2 s cap, so allow waits up to 2 s here.
    client = make_client("koas", retry=dataclasses.replace(FAST_RETRY, max_wait=2.0))
    client.check()
    admin.set_faults(throttle_rate=4.0, throttle_burst=2, throttle_mode="http429")
    for _ in range(8):
        assert len(list(client.list_stocks())) == 2
    stats = admin.stats()
    assert stats["throttled"] >= 1
    assert stats["early_after_429"] == 0  # never came back before Retry-After said
    assert client.stats["retries"] >= stats["throttled"]


def test_throttling_by_errcode_is_backed_off(make_client: ClientFactory, admin: SandboxAdmin) -> None:
    client = make_client("open_platform")
    client.check()
    admin.set_faults(throttle_rate=20.0, throttle_burst=1, throttle_mode="errcode")
    for _ in range(6):
        assert len(list(client.list_units())) == 3
    assert admin.stats()["errcode:1030"] == admin.stats()["throttled"] >= 1


@pytest.mark.parametrize("flow", ["koas", "open_platform"])
def test_5xx_storm_every_write_lands_exactly_once(
    make_client: ClientFactory, admin: SandboxAdmin, flow: str
) -> None:
    # 30% HTTP 5xx on every call (logins included), 10% of commits lose their reply, and the gateway does
    # NOT refuse duplicate bill numbers: only the client's lookup-before-resend keeps it exactly-once.
    admin.set_faults(p_5xx=0.3, p_lost_reply=0.1, refuse_duplicate_bill_no=False)
    client = make_client(flow)
    bill_nos = [f"STORM-{flow}-{n:03d}" for n in range(60)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda no: client.create_outbound(outbound(no)), bill_nos))
    assert sorted(r.bill_no for r in results) == bill_nos

    stats = admin.stats()
    assert stats["5xx"] >= 20 and stats["lost_replies"] >= 1  # the storm really happened
    ledger = Counter(row["bill_no"] for row in admin.ledger("salesdelivery/create"))
    assert ledger == Counter({no: 1 for no in bill_nos})  # nothing lost, nothing duplicated, no phantom
    admin.set_faults(p_5xx=0.0, p_lost_reply=0.0)
    assert {r.fid for r in results} == {client.find_outbound_summary(no).fid for no in bill_nos}


def test_dropped_connections_on_reads_are_retried(make_client: ClientFactory, admin: SandboxAdmin) -> None:
    admin.set_faults(p_drop=0.5, fault_scope="business")
    client = make_client("koas", page_size=1)
    assert len(list(client.list_customers())) == 4
    assert len(list(client.iter_inventory())) == 5
    assert admin.stats()["dropped"] >= 1


def _statuses(base_url: str, n: int) -> list[int]:
    with requests.Session() as s:
        return [
            s.post(base_url + "/koas/oauth2/access_token", json={"code": "x"}, timeout=(2, 5)).status_code
            for _ in range(n)
        ]


def test_faults_are_deterministic_for_a_seed(tmp_path: Path) -> None:
    runs = []
    for n, seed in enumerate((7, 7, 8)):
        with KisSandbox(tmp_path / f"det{n}.sqlite", faults=FaultConfig(seed=seed, p_5xx=0.5)) as box:
            runs.append(_statuses(box.base_url, 30))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert 5 <= sum(s >= 500 for s in runs[0]) <= 25


def test_faults_change_at_run_time_and_reject_bad_values(admin: SandboxAdmin) -> None:
    assert admin.set_faults(latency_ms=5, p_5xx=0.1)["p_5xx"] == 0.1
    assert admin.faults()["latency_ms"] == 5
    with pytest.raises(RuntimeError, match="HTTP 400"):
        admin.set_faults(p_5xx=1.5)
    with pytest.raises(RuntimeError, match="unknown fault settings"):
        admin.set_faults(p_typo=0.1)


def test_retry_budget_runs_out_with_a_clear_error(make_client: ClientFactory, admin: SandboxAdmin) -> None:
    client = make_client("koas", retry=RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.05))
    client.check()
    admin.set_faults(p_5xx=1.0, fault_scope="business")
    with pytest.raises(Exception) as caught:
        client.check()
    assert type(caught.value).__name__ == "TransientError"
    assert "kis-koas" in str(caught.value) and "HTTP 5" in str(caught.value)
    assert admin.stats()["5xx"] == 3
