"""A real KIS sandbox on a free loopback port per test, and clients of both auth flows pointed at it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.kingdee.kis import KisClient, KisSettings, OutboundBill, OutboundLine
from connectors.kingdee.kis_sandbox import FaultConfig, KisSandbox, SandboxAdmin
from connectors.retry import RetryPolicy

# Short waits keep the suite fast; the attempt budget still rides out a 30% fault storm.
FAST_RETRY = RetryPolicy(max_attempts=10, initial_wait=0.01, max_wait=0.2, multiplier=2.0, max_elapsed=60.0)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[KisSandbox]:
    """A running sandbox with default seed data and no faults."""
    box = KisSandbox(tmp_path / "kis_sandbox.sqlite", seed=20250301, faults=FaultConfig())
    box.start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def admin(sandbox: KisSandbox) -> SandboxAdmin:
    """HTTP client of the sandbox's /__admin__/ endpoints."""
    return SandboxAdmin(sandbox.base_url)


SettingsFactory = Callable[..., KisSettings]
ClientFactory = Callable[..., KisClient]


@pytest.fixture
def make_settings(sandbox: KisSandbox) -> SettingsFactory:
    """``make_settings(flow, **overrides)`` -> settings accepted by the sandbox."""

    def build(flow: str = "koas", **overrides: Any) -> KisSettings:
        c = sandbox.credentials
        base = KisSettings(
            name=f"kis-{flow}",
            base_url=sandbox.base_url,
            auth_flow=flow,  # type: ignore[arg-type]
            client_id=c.client_id,
            client_secret=c.client_secret,
            auth_code=c.auth_code,
            account_number=c.account_number,
            outer_instance_id=c.outer_instance_id,
            connect_timeout=2.0,
            read_timeout=10.0,
            retry=FAST_RETRY,
        )
        return dataclasses.replace(base, **overrides)

    return build


@pytest.fixture
def make_client(make_settings: SettingsFactory) -> Iterator[ClientFactory]:
    """``make_client(flow, **settings_overrides)``; closed after the test."""
    made: list[KisClient] = []

    def build(flow: str = "koas", **overrides: Any) -> KisClient:
        client = KisClient(make_settings(flow, **overrides))
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


@pytest.fixture(params=["koas", "open_platform"])
def client(request: pytest.FixtureRequest, make_client: ClientFactory) -> KisClient:
    """A client of each auth flow."""
    return make_client(request.param)


def outbound(
    bill_no: str,
    *,
    qty: str = "5",
    price: str = "12.50",
    material: str = "M-BOLT-M8",
    customer: str = "C001",
    stock: str = "WH01",
    lines: int = 1,
) -> OutboundBill:
    """A sales outbound in codes (the client resolves them to ids)."""
    return OutboundBill(
        bill_no=bill_no,
        date=dt.date(2025, 3, 1),
        customer_code=customer,
        stock_code=stock,
        lines=tuple(
            OutboundLine(qty=Decimal(qty) + n, price=Decimal(price), material_code=material)
            for n in range(lines)
        ),
    )
