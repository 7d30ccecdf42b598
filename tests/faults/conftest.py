"""Fixtures of the fault matrix: the push world of tests/push (store + KIS sandbox + sink) and a
``settle`` helper that drains the queue and ends with the ledger check."""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from connectors.kingdee.kis import KisClient, KisSettings
from connectors.retry import RetryPolicy
from crm_core.models import DeliveryQueueItem
from hub.ledger import LedgerReport, check_ledger
from hub.push.engine import PushSettings, run_push
from tests.push.conftest import SETTINGS, World, world, world_factory  # noqa: F401 - fixtures

UNSETTLED = {"pending", "retry", "in_flight"}


def states(world: World) -> Counter[str]:  # noqa: F811 - a helper, not the fixture
    """Queue items per state."""
    with world.engine.connect() as conn:
        return Counter(conn.execute(sa.select(DeliveryQueueItem.state)).scalars())


def drain(w: World, runs: int = 8, settings: PushSettings = SETTINGS) -> None:
    """Run the push until nothing is left to try (retries are due at once in SETTINGS)."""
    for _ in range(runs):
        run_push(w.engine, w.sink, settings)
        if not UNSETTLED & set(states(w)):
            return


def ledger_check(w: World) -> LedgerReport:
    """The ledger check of ``w``; asserts exactly once (0 lost, duplicated, phantom, stale)."""
    report = check_ledger(w.engine, w.admin.ledger(), system=w.sink.system, mapping=SETTINGS.mapping)
    assert report.ok, report.summary()
    return report


@pytest.fixture
def no_dup_refusal() -> dict[str, bool]:
    """Fault settings that let the sandbox accept a second bill under one number: the hub alone must
    prevent duplicates (the real KIS refusal is unverified, ERP-APIS)."""
    return {"refuse_duplicate_bill_no": False}


def client_with(w: World, policy: RetryPolicy) -> KisClient:
    """A second client of ``w``'s sandbox with its own retry policy (the caller closes it)."""
    c = w.sandbox.credentials
    return KisClient(
        KisSettings(
            name="erp",
            base_url=w.sandbox.base_url,
            auth_flow="koas",
            client_id=c.client_id,
            client_secret=c.client_secret,
            auth_code=c.auth_code,
            account_number=c.account_number,
            connect_timeout=2.0,
            read_timeout=5.0,
            retry=policy,
        )
    )
