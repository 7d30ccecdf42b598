"""B.4 cases 1, 2, 3, 4, 8, 15, 16 against the KIS sandbox: each ends with the ledger check."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace

import pytest
import sqlalchemy as sa

from connectors.kingdee.kis_sandbox import FaultConfig
from connectors.retry import RetryPolicy
from crm_core.db import session_scope
from crm_core.models import DeliveryQueueItem, ExternalBinding, Product
from hub.ledger import check_ledger
from hub.push.engine import run_push
from hub.push.lock import LockBusy, connection_lock
from hub.push.queue import replay
from hub.push.sink import KisOutboundSink
from tests.faults.conftest import client_with, drain, ledger_check, states
from tests.push.conftest import SETTINGS, World


def _storm(world_factory, url: str, n: int) -> None:  # type: ignore[no-untyped-def]
    world = world_factory(url, FaultConfig(seed=1, p_5xx=0.3, refuse_duplicate_bill_no=False))
    world.make_invoices(n)
    drain(world)
    assert states(world) == Counter({"done": n})
    assert world.admin.stats()["5xx"] > n // 10  # the storm really happened
    report = ledger_check(world)
    assert report.delivered == n and report.erp_bills == n


def test_case01_5xx_storm_every_invoice_lands_once(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    _storm(world_factory, fresh_sqlite_url, 300)


@pytest.mark.slow
def test_case01_5xx_storm_10k(world_factory, fresh_pg_url) -> None:  # type: ignore[no-untyped-def]
    _storm(world_factory, fresh_pg_url, 10_000)


def test_cases01_03_with_concurrent_senders_every_invoice_lands_once(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    """The production default sends 4 creates at once: 5xx and lost replies still land each bill once."""
    world = world_factory(
        fresh_sqlite_url, FaultConfig(seed=7, p_5xx=0.3, p_lost_reply=0.1, refuse_duplicate_bill_no=False)
    )
    world.make_invoices(300)
    drain(world, settings=replace(SETTINGS, senders=4))
    assert states(world) == Counter({"done": 300})
    stats = world.admin.stats()
    assert stats["5xx"] > 30 and stats["lost_replies"] > 5, stats
    assert ledger_check(world).erp_bills == 300


def test_case02_429_with_retry_after_is_obeyed_then_errcode_throttling_backs_off(
    world_factory, fresh_sqlite_url
) -> None:  # type: ignore[no-untyped-def]
    world = world_factory(
        fresh_sqlite_url,
        FaultConfig(
            throttle_rate=4.0, throttle_burst=2, throttle_mode="http429", refuse_duplicate_bill_no=False
        ),
    )
    # A production-like policy: Retry-After (1 s here) is below max_wait, so it is obeyed in full.
    # (The fixtures' FAST_RETRY caps every wait at 0.1 s, which by design also caps Retry-After.)
    client = client_with(
        world, RetryPolicy(max_attempts=12, initial_wait=0.05, max_wait=5.0, max_elapsed=120)
    )
    sink = KisOutboundSink(client)
    try:
        world.make_invoices(6, customers=2)
        for _ in range(4):
            run_push(world.engine, sink, SETTINGS)
        stats = world.admin.stats()
        assert stats["throttled"] > 0, stats  # 429s with Retry-After were answered...
        assert stats["early_after_429"] == 0, stats  # ...and no request came before Retry-After expired
        # Now throttling without the header (HTTP 200 + errcode): jittered back-off, still exactly once.
        world.admin.set_faults(throttle_mode="errcode", throttle_rate=4.0)
        world.make_invoices(6, customers=2)
        for _ in range(4):
            run_push(world.engine, sink, SETTINGS)
    finally:
        client.close()
    assert states(world) == Counter({"done": 12})
    assert world.admin.stats()["throttled"] > stats["throttled"]
    ledger_check(world)


def test_case03_lost_replies_after_commit_are_not_sent_twice(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    world = world_factory(
        fresh_sqlite_url, FaultConfig(seed=3, p_lost_reply=0.1, refuse_duplicate_bill_no=False)
    )
    world.make_invoices(200)
    drain(world)
    assert states(world) == Counter({"done": 200})
    assert world.admin.stats()["lost_replies"] > 5
    assert ledger_check(world).erp_bills == 200


@pytest.mark.parametrize("mode", ["502", "drop"])
def test_case03_lost_reply_modes(world_factory, fresh_sqlite_url, mode: str) -> None:  # type: ignore[no-untyped-def]
    world = world_factory(
        fresh_sqlite_url,
        FaultConfig(seed=4, p_lost_reply=0.3, lost_reply_mode=mode, refuse_duplicate_bill_no=False),  # type: ignore[arg-type]
    )
    world.make_invoices(40)
    drain(world)
    assert world.admin.stats()["lost_replies"] > 0
    ledger_check(world)


def test_case04_a_batch_delivered_again_after_a_restart_creates_nothing(
    world_factory, fresh_sqlite_url
) -> None:  # type: ignore[no-untyped-def]
    world = world_factory(fresh_sqlite_url, FaultConfig(refuse_duplicate_bill_no=False))
    world.make_invoices(50)
    drain(world)
    writes = len(world.admin.ledger())
    # The restart replays the whole batch: bindings forgotten, items back in flight (the state a run
    # that died after sending leaves behind).
    with session_scope(world.engine) as session:
        session.execute(sa.delete(ExternalBinding))
        session.execute(sa.update(DeliveryQueueItem).values(state="in_flight"))
    result = run_push(world.engine, world.sink, SETTINGS)
    assert result.erp_writes == 0 and len(world.admin.ledger()) == writes
    assert states(world) == Counter({"done": 50})
    ledger_check(world)


def test_case08_latency_calls_grow_with_batches_not_records(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    world = world_factory(fresh_sqlite_url, FaultConfig(latency_ms=20, refuse_duplicate_bill_no=False))
    world.make_invoices(30, customers=3)
    before = world.admin.stats()["calls"]
    drain(world)
    calls = world.admin.stats()["calls"] - before
    # KIS has no batch create (ERP-APIS): one create per bill, one customer per run, plus a fixed
    # number of reads per run; no retries were needed, so nothing else.
    assert calls <= 30 + 3 + 10, calls
    ledger_check(world)


def test_case15_poison_1_of_n_lands_the_rest_and_replays_once(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    world: World = world_factory(fresh_sqlite_url, FaultConfig(refuse_duplicate_bill_no=False))
    with session_scope(world.engine) as session:
        bad = Product(sku="SKU-POISON", name="毒", erp_material_code="M-NOT-IN-ERP", unit="PCS")
        session.add(bad)
        session.flush()
        bad_id = bad.id
    world.make_invoices(99)
    world.make_invoices(1, product_ids_override=[bad_id])
    drain(world)
    assert states(world) == Counter({"done": 99, "quarantined": 1})
    assert ledger_check(world).erp_bills == 99
    world.admin.seed({"materials": [{"number": "M-NOT-IN-ERP", "name": "新", "model": "X", "unit": "PCS"}]})
    with session_scope(world.engine) as session:
        assert replay(session, "erp") == 1
    drain(world)
    assert states(world) == Counter({"done": 100})
    assert ledger_check(world).erp_bills == 100


def test_case16_two_runs_at_once_one_pushes_the_other_is_skipped(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    world = world_factory(fresh_sqlite_url, FaultConfig(refuse_duplicate_bill_no=False))
    world.make_invoices(20)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with connection_lock(world.engine, "push:erp"):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        with pytest.raises(LockBusy, match="skipped"):
            run_push(world.engine, world.sink, SETTINGS)
    finally:
        release.set()
        thread.join()
    drain(world)
    assert check_ledger(world.engine, world.admin.ledger(), system="erp", mapping=SETTINGS.mapping).ok
    ledger_check(world)
