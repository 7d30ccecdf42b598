"""A migrated store with issued invoices, the KIS sandbox on loopback, and a sink pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

import crm_core  # noqa: F401
from connectors.kingdee.kis import KisClient, KisSettings
from connectors.kingdee.kis_sandbox import FaultConfig, KisSandbox, SandboxAdmin
from connectors.retry import RetryPolicy
from crm_core.credit_code import make_credit_code
from crm_core.customers import upsert_customer
from crm_core.db import session_scope
from crm_core.invoicing import create_invoice, issue_invoice
from crm_core.sales import LineInput
from hub.push.engine import PushSettings
from hub.push.queue import RetryPattern
from hub.push.sink import KisOutboundSink
from mappings.kis_outbound import OutboundMapping
from tests.support.store import store_with_products

FAST_RETRY = RetryPolicy(
    max_attempts=12,
    initial_wait=0.01,
    max_wait=0.1,
    multiplier=2.0,
    max_elapsed=60.0,
    retry_unknown_outcome=True,
)
# Queue retries due at once so a test can drain the queue in a few runs.
IMMEDIATE = RetryPattern(delays={1: 0}, max_attempts=5)
SETTINGS = PushSettings(mapping=OutboundMapping(stock_code="WH01"), retry=IMMEDIATE, batch_size=100)
MATERIALS = ("M-BOLT-M8", "M-BOLT-M10", "M-BRKT-L01", "M-BRKT-U02")  # seeded in the sandbox


@dataclass
class World:
    engine: sa.Engine
    sandbox: KisSandbox
    admin: SandboxAdmin
    client: KisClient
    sink: KisOutboundSink
    product_ids: list[int]
    make_invoices: Callable[..., list[int]]

    def ledger_bill_numbers(self) -> list[str]:
        return [w["bill_no"] for w in self.admin.ledger() if "salesdelivery/create" in w["endpoint"].lower()]


def _invoices(engine: sa.Engine, product_ids: list[int]) -> Callable[..., list[int]]:
    counter = {"n": 0}

    def make(count: int, *, customers: int = 5, product_ids_override: list[int] | None = None) -> list[int]:
        pids = product_ids_override or product_ids
        ids = []
        with session_scope(engine) as session:
            custs = [
                upsert_customer(
                    session,
                    name=f"测试客户{i:03d}有限公司",
                    credit_code=make_credit_code(f"9131000066{i:07d}"),
                )[0]
                for i in range(customers)
            ]
            for _ in range(count):
                n = counter["n"] = counter["n"] + 1
                lines = [
                    LineInput(
                        pids[(n + k) % len(pids)],
                        Decimal(1 + (n * 7 + k) % 50),
                        Decimal("0.85") + Decimal(k),
                        Decimal("0.13"),
                    )
                    for k in range(1 + n % 3)
                ]
                invoice = create_invoice(session, custs[n % customers], lines, year=2026)
                issue_invoice(
                    session, invoice, invoice_number=f"{10000000 + n}", issue_date=date(2026, 11, 28)
                )
                ids.append(invoice.id)
        return ids

    return make


@pytest.fixture
def world_factory(tmp_path: Path) -> Iterator[Callable[[str], World]]:
    started: list[tuple[KisSandbox, KisClient, sa.Engine]] = []

    def build(url: str, faults: FaultConfig | None = None) -> World:
        engine, product_ids = store_with_products(url, MATERIALS)
        sandbox = KisSandbox(tmp_path / f"kis_{len(started)}.sqlite", seed=7, faults=faults or FaultConfig())
        sandbox.start()
        c = sandbox.credentials
        client = KisClient(
            KisSettings(
                name="erp",
                base_url=sandbox.base_url,
                auth_flow="koas",
                client_id=c.client_id,
                client_secret=c.client_secret,
                auth_code=c.auth_code,
                account_number=c.account_number,
                connect_timeout=2.0,
                read_timeout=5.0,
                retry=FAST_RETRY,
            )
        )
        started.append((sandbox, client, engine))
        return World(
            engine,
            sandbox,
            SandboxAdmin(sandbox.base_url),
            client,
            KisOutboundSink(client),
            product_ids,
            _invoices(engine, product_ids),
        )

    yield build
    for sandbox, client, engine in started:
        client.close()
        sandbox.stop()
        engine.dispose()


@pytest.fixture
def world(world_factory: Callable[..., World], fresh_sqlite_url: str) -> World:
    return world_factory(fresh_sqlite_url)
