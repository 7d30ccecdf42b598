"""B.4 case 6 (and the store side of 5): ``kill -9`` of the push process at seeded points.

The push runs in a child process against PostgreSQL (the production store: its advisory lock dies
with the process) and the KIS sandbox, which here accepts a second bill under one number, so only the
hub can prevent a duplicate. The child SIGKILLs itself after the K-th ERP acknowledgement (before the
store records it), before the K-th send, or inside the K-th store transaction. A restart finishes the
push; the ledger check then proves exactly once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from connectors.kingdee.kis_sandbox import FaultConfig
from hub.push.lock import LockBusy
from tests.faults.conftest import drain, ledger_check, states
from tests.faults.push_worker import BATCH
from tests.push.conftest import World

ROOT = Path(__file__).resolve().parents[2]
INVOICES = 20
KINDS = ("ack", "send", "commit")


def kill_point(seed: int) -> tuple[str, int]:
    """The seeded point where the child dies (kind, occurrence)."""
    rng = random.Random(seed)
    kind = rng.choice(KINDS)
    # commits of one run: lock, enqueue, validation, then two per batch; creates: one per invoice
    limit = INVOICES if kind != "commit" else 3 + 2 * (INVOICES // BATCH)
    return kind, rng.randint(1, limit)


def _child(world: World, url: str, kind: str, k: int) -> subprocess.CompletedProcess[str]:
    c = world.sandbox.credentials
    conf = {
        "base_url": world.sandbox.base_url,
        "client_id": c.client_id,
        "client_secret": c.client_secret,
        "auth_code": c.auth_code,
        "account_number": c.account_number,
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
    }
    env = {**os.environ, "KIS_WORKER": json.dumps(conf), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tests.faults.push_worker", url, kind, str(k)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _restart(world: World) -> None:
    """Finish the push. PostgreSQL frees the dead run's advisory lock when its backend notices the
    closed socket, which may take a moment: meanwhile a restart exits as skipped, as designed."""
    for _ in range(100):
        try:
            drain(world)
            return
        except LockBusy:
            time.sleep(0.1)
    raise AssertionError("the killed run's lock was never released")


def _one_seed(world_factory, url: str, seed: int) -> None:  # type: ignore[no-untyped-def]
    world: World = world_factory(url, FaultConfig(refuse_duplicate_bill_no=False))
    world.make_invoices(INVOICES)
    kind, k = kill_point(seed)
    proc = _child(world, url, kind, k)
    assert proc.returncode == -signal.SIGKILL, (kind, k, proc.returncode, proc.stderr[-2000:])
    before = Counter(world.ledger_bill_numbers())
    assert max(before.values(), default=0) <= 1
    _restart(world)
    assert states(world) == Counter({"done": INVOICES})
    report = ledger_check(world)
    assert report.erp_bills == INVOICES and report.delivered == INVOICES


@pytest.mark.parametrize("seed", [0, 2, 5])
def test_case06_kill9_at_seeded_points_then_restart_is_exactly_once(
    world_factory, fresh_pg_url, seed: int
) -> None:  # type: ignore[no-untyped-def]
    _one_seed(world_factory, fresh_pg_url, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 150))
def test_case06_kill9_50_seeds(world_factory, fresh_pg_url, seed: int) -> None:  # type: ignore[no-untyped-def]
    _one_seed(world_factory, fresh_pg_url, seed)


def test_kill_points_cover_every_kind() -> None:
    assert {kill_point(s)[0] for s in (0, 2, 5)} == set(KINDS)
