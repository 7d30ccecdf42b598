"""B.4 case 24: the ERP is out for 3 nights, then the backlog drains (issue 9).

Each night new invoices are issued (bulk path) and the nightly push runs in its own process
(:mod:`tests.faults.backlog_worker`) while the ERP is down: night 1 unreachable (connection refused),
nights 2 and 3 answering 5xx to every call (``PUT /__admin__/faults p_5xx=1``). Each of those runs must
fail with a transient error before any write, leave every document pending (no attempt counted, nothing
dead-lettered, nothing lost). Then the ERP is back and one run drains the backlog:

- every document lands exactly once (:func:`hub.ledger.check_ledger`: 0 lost, duplicated, phantom, stale);
- **in order**: the ERP's write ledger (by its sequence number) lists the bills in the order the invoices
  were issued: all of night 1 before any of night 2, and within a night by invoice id, which is the order
  of their outbox events; that is also the queue's order (item id, "oldest first");
- no retry, no dead letter, no quarantine: no timeout cut the run short;
- the peak resident set of the pushing process (``wait4`` rusage of the child, cross-checked with its own
  ``VmHWM``) is printed and stays under a fixed budget that does not grow with the backlog; the slow
  variants also compare the peaks of two backlog sizes (growth < 30 % + 8 MB).

Hub CPU per pushed record (P11) is printed: the drain run's CPU minus the CPU inside ``requests``.

Findings of the first version of this test, now fixed in the engine and asserted here: the memory of a run
grew with the backlog (the whole outbox read and every due id held at once; now windows and pages);
on PostgreSQL a night of tens of thousands of events was queued, and so sent, out of outbox order (GROUP
BY without ORDER BY); an outage that began after a run's first ERP read dead-lettered the backlog after
``RetryPattern.max_attempts`` nights (now ``OUTAGE_AFTER`` documents failing in a row stop the run with no
attempt counted: ``test_case24_outage_starting_mid_run_dead_letters_nothing``).

Durations on the shared 2-core box (SQLite store for the quick one, PostgreSQL for the slow ones; the KIS
sandbox in the test process, from its own SQLite file): quick 20-55 s (load-dependent); 2k + 20k ~3 min; 100k ~12 min;
the 1M variant (skipped unless ``HUB_BACKLOG_1M=1``) ~2-3 h by extrapolation (drain ~250 docs/s,
sandbox-bound), and by the projection of the 2k/20k peaks a run reading 1M outbox events needs ~0.8-2 GB.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.kingdee.kis import KisClient
from connectors.kingdee.kis_sandbox import FaultConfig
from connectors.retry import RetryPolicy
from crm_core.credit_code import make_credit_code
from crm_core.customers import upsert_customer
from crm_core.db import session_scope
from crm_core.demo.issuing import InvoiceIssuer
from crm_core.models import DeadLetter, DeliveryQueueItem, Invoice
from crm_core.types import SHANGHAI, now_utc
from hub.errors import InfrastructureError, TransientError
from hub.push.engine import run_push
from hub.push.sink import KisOutboundSink
from tests.faults.conftest import client_with, ledger_check, states
from tests.push.conftest import SETTINGS, World

ROOT = Path(__file__).resolve().parents[2]
NIGHTS = 3
BATCH = 500  # B of PERF-RELIABILITY B.4
# Peak resident set of one push process, whatever the backlog: the interpreter with SQLAlchemy, pandas,
# Great Expectations and the KIS client is about 150-200 MB before the first record.
MEMORY_BUDGET_MB = 400
GROWTH_SHARE, GROWTH_MB = 0.30, 8.0  # allowed peak growth between two backlog sizes


class MemoryGrows(AssertionError):
    """The pushing process's peak memory is over budget, or would be at the 1M backlog (a finding)."""


class OutOfOrder(AssertionError):
    """The ERP received a bill before an older one of the same night (a finding)."""


@dataclass
class ChildRun:
    """What one push process reported, plus its peak RSS as its parent saw it."""

    outcome: str
    error: str
    result: dict[str, Any]
    wall_s: float
    cpu_s: float
    prepare_cpu_s: float
    prepare_http_cpu_s: float
    http_cpu_s: float
    http_wall_s: float
    erp_calls: int
    rss_before_kb: int
    vm_hwm_kb: int
    maxrss_kb: int  # wait4(2) rusage of the child

    def push_cpu_us(self, records: int) -> float:
        """The hub's own CPU per record in the push phase (execute_push minus time inside requests)."""
        own = (self.cpu_s - self.prepare_cpu_s) - (self.http_cpu_s - self.prepare_http_cpu_s)
        return own / records * 1e6

    @property
    def peak_mb(self) -> float:
        # The child's own VmHWM: its wait4 ru_maxrss is no use here, because subprocess starts children
        # with vfork + exec and Linux then carries the parent's (pytest's) peak into the child's figure.
        return self.vm_hwm_kb / 1024


@dataclass
class Figures:
    per_night: int
    nights: list[ChildRun] = field(default_factory=list)
    drain: ChildRun | None = None
    load_s: float = 0.0

    def line(self) -> str:
        assert self.drain is not None
        d, n = self.drain, self.per_night * NIGHTS
        hub_us = (d.cpu_s - d.http_cpu_s) / n * 1e6
        push_us = d.push_cpu_us(n)
        erp_ms = (d.http_wall_s / n) * 1e3
        return (
            f"[case24] backlog {n:,} ({NIGHTS} nights x {self.per_night:,}): drain {d.wall_s:.1f} s "
            f"= {n / d.wall_s:,.0f} docs/s, {d.erp_calls:,} ERP calls; peak RSS drain {d.peak_mb:.0f} MB "
            f"(ru_maxrss {d.maxrss_kb / 1024:.0f}, VmHWM {d.vm_hwm_kb / 1024:.0f}, before the run "
            f"{d.rss_before_kb / 1024:.0f}), outage nights {', '.join(f'{r.peak_mb:.0f}' for r in self.nights)}"
            f" MB ({', '.join(f'{r.wall_s:.1f}' for r in self.nights)} s to fail); hub CPU per record {hub_us:.0f} µs of which push phase {push_us:.0f} µs "
            f"(prepare incl. GX {hub_us - push_us:.0f} µs; requests +{d.http_cpu_s / n * 1e6:.0f} µs); "
            f"ERP call time {erp_ms:.2f} ms/record -> push-phase share {push_us / 10 / erp_ms:.1f}%; "
            f"bulk load {self.load_s:.1f} s"
        )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def push_in_child(
    url: str, base_url: str, world: World, timeout: float, window: int | None = None
) -> ChildRun:
    """One nightly push in a fresh process (its peak RSS is its own); fails the test on a crash."""
    c = world.sandbox.credentials
    conf = {
        "base_url": base_url,
        "client_id": c.client_id,
        "client_secret": c.client_secret,
        "auth_code": c.auth_code,
        "account_number": c.account_number,
    }
    env = {**os.environ, "KIS_WORKER": json.dumps(conf), "GX_ANALYTICS_ENABLED": "false"}
    if window is not None:
        env["BACKLOG_WINDOW"] = str(window)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.backlog_worker", url, str(BATCH)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )
        # Reap the child with wait4(2): its rusage carries the child's own peak RSS (ru_maxrss, kB).
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"the push process ran longer than {timeout:.0f} s")
            time.sleep(0.1)
        out.seek(0)
        err.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
        assert lines and proc.returncode in (0, 3), (
            f"push process exit {proc.returncode}: {err.read()[-2000:]}"
        )
    return ChildRun(**json.loads(lines[-1]), maxrss_kb=usage.ru_maxrss)


def issuer_for(world: World) -> InvoiceIssuer:
    """Issues invoices through the bulk loader, numbered in issue order, to five new customers."""
    with session_scope(world.engine) as session:
        customers = [
            upsert_customer(
                session,
                name=f"积压客户{i:03d}有限公司",
                credit_code=make_credit_code(f"9132050077{i:07d}"),
            )[0].id
            for i in range(5)
        ]
    return InvoiceIssuer(
        world.engine, customers, world.product_ids, "INV-BL-{n:07d}", 60000000, Decimal("8.40")
    )


def _today() -> date:
    return now_utc().astimezone(SHANGHAI).date()


def _dead_letters(world: World) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(DeadLetter)).scalar_one())


def _attempts(world: World) -> int:
    with world.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.coalesce(sa.func.sum(DeliveryQueueItem.attempts), 0))).scalar_one()
        )


def outage_then_drain(  # noqa: ANN401
    world_factory: Any, url: str, per_night: int, timeout: float, window: int | None = None
) -> Figures:
    """Three nights of outage with ``per_night`` new invoices each, then the drain; every assertion of
    the module docstring except the memory comparison. Returns the figures. ``window`` shrinks the
    engine's read windows (outbox ids per read, documents per validation) so that a small backlog
    spans many of them, as a 1M one does."""
    world: World = world_factory(url, FaultConfig(seed=24, refuse_duplicate_bill_no=False))
    issuer, figures = issuer_for(world), Figures(per_night)
    for night in range(1, NIGHTS + 1):
        started = time.perf_counter()
        issuer.issue(per_night, _today())
        figures.load_s += time.perf_counter() - started
        if night == 1:  # nothing listens: connection refused
            base_url = f"http://127.0.0.1:{_closed_port()}"
        else:  # the gateway answers, with a 5xx to every call (login included)
            base_url = world.sandbox.base_url
            world.admin.set_faults(p_5xx=1.0)
        run = push_in_child(url, base_url, world, timeout, window)
        figures.nights.append(run)
        assert run.outcome == TransientError.__name__, run  # the run fails, as retryable
        assert world.admin.ledger() == []  # no ERP write
        assert states(world) == Counter({"pending": night * per_night})  # nothing lost or dead
        assert _attempts(world) == 0 and _dead_letters(world) == 0  # the outage costs no attempt
    assert world.admin.stats()["5xx"] > 0  # the 5xx nights really got 5xx answers
    world.admin.set_faults(p_5xx=0.0)
    total = NIGHTS * per_night
    drain = figures.drain = push_in_child(url, world.sandbox.base_url, world, timeout, window)
    assert drain.outcome == "ok", drain
    r = drain.result
    assert (r["pushed"], r["retry_scheduled"], r["dead_lettered"], r["quarantined"]) == (total, 0, 0, 0), r
    assert not r["blocked"] and r["erp_writes"] == total, r
    assert states(world) == Counter({"done": total})
    report = ledger_check(world)
    assert report.delivered == report.erp_bills == total and report.unsettled == 0, report.summary()
    print(figures.line())
    peak = max(run.peak_mb for run in [*figures.nights, drain])
    if peak >= MEMORY_BUDGET_MB:
        raise MemoryGrows(f"peak RSS {peak:.0f} MB >= {MEMORY_BUDGET_MB} MB; " + figures.line())
    _assert_in_order(world, total, per_night)
    return figures


def _assert_in_order(world: World, total: int, per_night: int) -> None:
    """The ERP received the bills in issue order (= outbox order = queue order); see the docstring.

    Checked in three steps, weakest first: the ERP follows the queue (item id); no bill of a later night
    goes before one of an earlier night; within a night, bills go in invoice (= outbox event) order. Only
    the last raises :class:`OutOfOrder`.
    """
    creates = sorted(world.admin.ledger("salesdelivery/create"), key=lambda w: int(w["seq"]))
    prefix = SETTINGS.mapping.bill_no_pattern.split("{", 1)[0]
    with world.engine.connect() as conn:
        by_number = dict(conn.execute(sa.select(Invoice.number, Invoice.id)).all())
        queue_order = dict(
            conn.execute(sa.select(DeliveryQueueItem.canonical_id, DeliveryQueueItem.id)).all()
        )
    sent = [by_number[w["bill_no"].removeprefix(prefix)] for w in creates]
    assert len(sent) == total
    queue = [queue_order[i] for i in sent]
    assert queue == sorted(queue), "the ERP order does not follow the queue order (oldest item first)"
    first = min(sent)
    nights = [(i - first) // per_night for i in sent]  # invoice ids are consecutive, issued night by night
    assert nights == sorted(nights), "a bill of a later night was sent before one of an earlier night"
    late = [(a, b) for a, b in zip(sent, sent[1:], strict=False) if b < a]
    if late:
        raise OutOfOrder(
            f"{len(late)} of {total} bills sent right after a newer invoice of the same night "
            f"(invoice ids, e.g. {late[:3]}): the queue items were not created in outbox order"
        )


def test_case24_outage_three_nights_then_backlog_drains_quick(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    outage_then_drain(world_factory, fresh_sqlite_url, 300, timeout=120)


def _projected(small: float, large: float, n_small: int, n_large: int, n: int) -> float:
    """Linear extrapolation of a peak (MB) measured at two sizes to size ``n``."""
    return large + (large - small) / (n_large - n_small) * (n - n_large)


def _compare(small: Figures, large: Figures) -> None:
    """Peak RSS and per-record CPU at two backlog sizes: small growth, and within budget at 1M."""
    assert small.drain and large.drain
    n_a, n_b = NIGHTS * small.per_night, NIGHTS * large.per_night
    a, b = small.drain.peak_mb, large.drain.peak_mb
    night_a = max(r.peak_mb for r in small.nights)
    night_b = max(r.peak_mb for r in large.nights)
    drain_1m = _projected(a, b, n_a, n_b, 1_000_000)
    # On PostgreSQL each night re-reads the outbox of the last PG_LOOKBACK (10 min): in this test, where
    # the nights are minutes apart, night 3 reads every event; so the slope is per event read, projected
    # at 1M events in one run (a hub that did not run during the outage reads them all at once).
    night_1m = _projected(night_a, night_b, n_a, n_b, 1_000_000)
    print(
        f"[case24] drain peak RSS {a:.0f} MB at {n_a:,} vs {b:.0f} MB at {n_b:,} documents "
        f"(+{b - a:.1f} MB = {(b - a) * 2**20 / (n_b - n_a):.0f} B/document; projected at 1M: "
        f"{drain_1m:.0f} MB); outage-night peak {night_a:.0f} -> {night_b:.0f} MB "
        f"({(night_b - night_a) * 2**20 / (n_b - n_a):.0f} B/event read; projected at 1M events read "
        f"in one run: {night_1m:.0f} MB)"
    )
    assert b <= a * (1 + GROWTH_SHARE) + GROWTH_MB, f"peak RSS grows with the backlog: {a:.0f} -> {b:.0f} MB"
    # Per-record cost must not grow with the backlog either (no per-record scan of the queue).
    us_a, us_b = small.drain.push_cpu_us(n_a), large.drain.push_cpu_us(n_b)
    print(f"[case24] push-phase hub CPU {us_a:.0f} -> {us_b:.0f} µs/record")
    assert us_b <= 1.5 * us_a + 50, (us_a, us_b)
    if max(drain_1m, night_1m) >= MEMORY_BUDGET_MB:
        raise MemoryGrows(
            f"memory grows with the backlog: projected peak at 1M {drain_1m:.0f} MB (drain), "
            f"{night_1m:.0f} MB (an outage night), budget {MEMORY_BUDGET_MB} MB"
        )


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_case24_backlog_20k_memory_does_not_grow(world_factory, fresh_pg_url, another_pg_url) -> None:  # type: ignore[no-untyped-def]
    # Windows of 1,000: both sizes span many reads, so the slope is what a 1M backlog would show (with
    # the production windows, 20,000 outbox ids and 10,000 documents, both sizes fit in one or two).
    small = outage_then_drain(world_factory, fresh_pg_url, 667, timeout=600, window=1000)  # 2k
    large = outage_then_drain(world_factory, another_pg_url, 6667, timeout=1800, window=1000)  # 20k
    _compare(small, large)


@pytest.mark.slow
@pytest.mark.timeout(6 * 3600)
@pytest.mark.parametrize(
    "total",
    [
        pytest.param(100_000),
        pytest.param(1_000_000),
    ],
)
def test_case24_backlog_large(world_factory, fresh_pg_url, total: int) -> None:  # type: ignore[no-untyped-def]
    if total >= 1_000_000 and os.environ.get("HUB_BACKLOG_1M") != "1":
        pytest.skip("the 1M backlog takes about 2.5 h on a 2-core box: run with HUB_BACKLOG_1M=1")
    outage_then_drain(world_factory, fresh_pg_url, total // NIGHTS, timeout=5 * 3600)


@pytest.fixture
def another_pg_url(pg_admin_url: str) -> Iterator[str]:
    """A second fresh PostgreSQL database (the comparison needs two stores); dropped afterwards."""
    name = f"hubtest_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


class FlappingSink(KisOutboundSink):
    """The real sink; the ERP is up when a run starts (its material read succeeds) and goes down right
    after it: every call of the rest of the run gets a 5xx (a test harness, not the code under test)."""

    def __init__(self, world: World, client: KisClient) -> None:
        super().__init__(client)
        self.admin = world.admin

    def known_material_codes(self) -> set[str]:
        self.admin.set_faults(p_5xx=0.0)
        codes = super().known_material_codes()
        self.admin.set_faults(p_5xx=1.0)
        return codes


def test_case24_outage_starting_mid_run_dead_letters_nothing(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    world: World = world_factory(fresh_sqlite_url, FaultConfig(seed=24, refuse_duplicate_bill_no=False))
    issuer_for(world).issue(10, _today())
    # A short client retry budget keeps the test fast; the engine's reaction does not depend on it.
    client = client_with(world, RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01))
    sink = FlappingSink(world, client)
    try:
        for night in range(1, SETTINGS.retry.max_attempts + 1):  # one run a night, the ERP down mid-run
            try:
                result = run_push(world.engine, sink, SETTINGS)
            except InfrastructureError as exc:  # failing the run (not the items) is what an outage should do
                assert "looks unavailable" in str(exc)
                assert _attempts(world) == 0, "an outage must not spend the documents' attempts"
                continue
            assert result.dead_lettered == 0, (
                f"night {night}: {result.dead_lettered} of 10 dead-lettered by the outage alone "
                f"({result.retry_scheduled} rescheduled, {_attempts(world)} attempts counted)"
            )
        assert _dead_letters(world) == 0
        world.admin.set_faults(p_5xx=0.0)
        run_push(world.engine, KisOutboundSink(client), SETTINGS)
    finally:
        client.close()
    assert states(world) == Counter({"done": 10})
    ledger_check(world)
