"""B.4 case 22: sentinel secrets never show, with DEBUG logging, forced auth failures and dead letters.

Nothing but what production installs redacts here (no extra log filter in the test)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import sqlalchemy as sa

from connectors.kingdee.kis import KisClient
from connectors.retry import RetryPolicy
from crm_core.db import session_scope
from crm_core.models import DeadLetter, DeliveryQueueItem
from hub.errors import AuthError
from hub.push.engine import run_push
from hub.push.sink import KisOutboundSink
from hub.secrets import register_secret
from tests.faults.conftest import drain, ledger_check
from tests.push.conftest import SETTINGS, World

SENTINEL = "S3NTINEL-kis-secret-7f3a9c"  # noqa: S105 - a sentinel, not a credential
ONE_TRY = RetryPolicy(max_attempts=1, initial_wait=0.01, max_wait=0.01)


def _sink(world: World, **changes: object) -> tuple[KisClient, KisOutboundSink]:
    client = KisClient(replace(world.client.settings, **changes))  # type: ignore[arg-type]
    return client, KisOutboundSink(client)


def _hub_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured log line except the sandbox's own access log (the ERP's side, not the hub's)."""
    return "\n".join(
        caplog.handler.format(r)
        for r in caplog.records
        if not r.name.startswith("connectors.kingdee.kis_sandbox")
    )


def _stored_text(world: World) -> str:
    with session_scope(world.engine) as session:
        rows = [repr(tuple(r)) for r in session.execute(sa.select(DeadLetter.__table__))]
        rows += [str(e) for e in session.scalars(sa.select(DeliveryQueueItem.last_error))]
    return "\n".join(rows)


def test_case22_wrong_secret_with_debug_logging_never_shows_it(
    world_factory, fresh_sqlite_url, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    import connectors.notify  # noqa: F401 - what the Dagster code location imports (jobs -> hub.alerts)

    _wrong_secret(world_factory, fresh_sqlite_url, caplog)


def _wrong_secret(world_factory, url: str, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    world: World = world_factory(url)
    world.make_invoices(3)
    register_secret(SENTINEL)  # what the config bridge does with every ${NAME} it resolves
    caplog.set_level(logging.DEBUG)
    client, sink = _sink(world, client_secret=SENTINEL)
    try:
        with pytest.raises(AuthError) as info:
            run_push(world.engine, sink, SETTINGS)
    finally:
        client.close()
    text = f"{info.value}\n{info.value!r}\n{info.getrepr()}\n{_hub_logs(caplog)}\n{_stored_text(world)}"
    assert "erp" in str(info.value)  # the error names the connection...
    assert SENTINEL not in text  # ...never the secret
    assert world.ledger_bill_numbers() == []


def test_case22_real_secret_under_faults_and_debug_logging_is_redacted(
    world_factory, fresh_sqlite_url, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    import connectors.notify  # noqa: F401 - as in the Dagster code location

    world: World = world_factory(fresh_sqlite_url)
    secret = world.sandbox.credentials.client_secret
    register_secret(secret)
    world.make_invoices(20)
    caplog.set_level(logging.DEBUG)
    world.admin.set_faults(p_5xx=0.3, p_lost_reply=0.2, refuse_duplicate_bill_no=False)
    drain(world)
    assert world.admin.stats()["5xx"] > 0
    assert secret in world.client.settings.client_secret  # the sentinel really was in play
    assert "client_secret=***" in _hub_logs(caplog)  # the auth URL was logged, masked
    assert secret not in _hub_logs(caplog) and secret not in _stored_text(world)
    ledger_check(world)
