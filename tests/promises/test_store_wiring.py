"""Promises wired to the store: open lines and stock in force are read, promises and outbox events written.

Runs on SQLite and on a real PostgreSQL (``empty_store_url``). Dates: 2025-06-09 is a Monday with no
statutory holiday within the following three weeks, so working days are plain Monday..Friday here
(the calendar itself is tested in test_promise_calendar.py). Every promise adds 1 handling day and the
default 2 shipping days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

import crm_core  # noqa: F401  (flush rules)
from crm_core.customers import upsert_customer
from crm_core.db import make_engine, session_scope
from crm_core.migrate import upgrade
from crm_core.models import IncomingSupply, Product, SalesOrder, SalesOrderLine
from crm_core.sales import LineInput, create_opportunity, create_quote, send_quote
from hub.inventory import ingest_snapshot, normalize_snapshot_frame
from hub.promises import PromiseConfig
from hub.promises.store import promise_config_from_mapping, run_promises

TODAY = dt.date(2025, 6, 9)
CONFIG = PromiseConfig(today=TODAY, handling_days=1, default_shipping_days=2)


@dataclass
class World:
    engine: sa.Engine
    url: str
    line_a: int  # tier-1 customer's order line, 80 of material 1.01.001
    line_b: int  # tier-3 customer's order line, 60 of material 1.01.001
    quote_line: int  # sent quote line, 5 of 1.01.002 (no stock: made to order)
    order_b: int

    def promises(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            frame = pd.read_sql(sa.text("SELECT * FROM delivery_promises ORDER BY line_kind, line_id"), conn)
        for column in ("ready_date", "promised_date", "first_part_date"):  # SQLite returns ISO text
            frame[column] = [None if pd.isna(v) else pd.Timestamp(v).date() for v in frame[column]]
        return frame.set_index(["line_kind", "line_id"])

    def events(self) -> list[tuple[str, int]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT entity_type, entity_id FROM outbox_events WHERE topic = 'promise.changed' ORDER BY id"
                )
            )
            return [(r.entity_type, int(r.entity_id)) for r in rows]

    def snapshot(self, rows: list[tuple[str, str, float]]) -> None:
        frame = pd.DataFrame(rows, columns=["material_code", "warehouse_code", "on_hand"])
        outcome = ingest_snapshot(
            self.engine, source="erp", frame=normalize_snapshot_frame(frame), origin="test"
        )
        assert outcome.status == "in_force"


def _order(
    session,
    customer_id: int,
    product_id: int,
    qty: str,
    *,
    number: str,
    order_date: dt.date,  # type: ignore[no-untyped-def]
    requested: dt.date | None = None,
    status: str = "open",
) -> SalesOrderLine:
    order = SalesOrder(number=number, customer_id=customer_id, order_date=order_date, status=status)
    line = SalesOrderLine(
        line_no=1, product_id=product_id, quantity=Decimal(qty), unit_price=Decimal("2.5"),
        tax_rate=Decimal("0.13"), requested_date=requested,
    )  # fmt: skip
    order.lines.append(line)
    session.add(order)
    session.flush()
    return line


@pytest.fixture
def world(empty_store_url: str) -> Iterator[World]:
    upgrade(empty_store_url)
    engine = make_engine(empty_store_url)
    with session_scope(engine) as s:
        vip, _ = upsert_customer(s, name="上海一级客户有限公司", tier=1)
        small, _ = upsert_customer(s, name="苏州三级客户有限公司", tier=3)
        bolt = Product(sku="BOLT", name="螺栓", erp_material_code="1.01.001", lead_time_days=5,
                       safety_stock=Decimal("10"))  # fmt: skip
        nut = Product(sku="NUT", name="螺母", erp_material_code="1.01.002", lead_time_days=7)
        s.add_all([bolt, nut])
        s.flush()
        # The tier-3 customer ordered first, but the tier-1 customer is served first.
        b = _order(s, small.id, bolt.id, "60", number="SO-B", order_date=dt.date(2025, 6, 1))
        a = _order(s, vip.id, bolt.id, "80", number="SO-A", order_date=dt.date(2025, 6, 5),
                   requested=dt.date(2025, 6, 10))  # fmt: skip
        _order(
            s, vip.id, bolt.id, "999", number="SO-DONE", order_date=dt.date(2025, 5, 1), status="delivered"
        )
        opp = create_opportunity(s, small, "螺母报价", year=2025)
        version = create_quote(s, opp, [LineInput(nut.id, Decimal("5"), Decimal("0.3"))],
                               quote_date=dt.date(2025, 6, 6), valid_until=dt.date(2025, 7, 6))  # fmt: skip
        send_quote(s, version)
        expired = create_quote(s, opp, [LineInput(nut.id, Decimal("500"), Decimal("0.3"))],
                               quote_date=dt.date(2025, 5, 1), valid_until=dt.date(2025, 6, 1))  # fmt: skip
        send_quote(s, expired)
        s.add(IncomingSupply(source="erp", kind="purchase", reference="PO-1", material_code="1.01.001",
                             quantity=Decimal("50"), eta=dt.date(2025, 6, 16)))  # fmt: skip
        ids = (a.id, b.id, version.lines[0].id, b.order_id)
    w = World(engine, empty_store_url, *ids)
    w.snapshot([("1.01.001", "WH01", 70), ("1.01.001", "WH02", 40)])  # 110 on hand, 100 after safety stock
    yield w
    engine.dispose()


def test_promises_stored_per_line_with_reasons_and_priority(world: World) -> None:
    run = run_promises(world.engine, CONFIG)
    assert (run.written, run.removed, run.events) == (3, 0, 3)
    assert run.summary.lines_promised == 3 and run.summary.lines_late == 1 and run.summary.made_to_order == 1
    p = world.promises()
    assert len(p) == 3  # the delivered order and the expired quote get no promise
    a = p.loc[("order", world.line_a)]
    assert (a["reason"], a["ready_date"], a["promised_date"]) == (
        "in_stock",
        dt.date(2025, 6, 9),
        dt.date(2025, 6, 12),
    )
    assert bool(a["late"])  # requested 06-10
    b = p.loc[("order", world.line_b)]  # 80 + 60 > 100 in stock: waits for the 50 arriving on 06-16
    assert (b["reason"], b["ready_date"], b["promised_date"]) == (
        "incoming_supply",
        dt.date(2025, 6, 16),
        dt.date(2025, 6, 19),
    )
    assert not bool(b["late"])  # no requested date
    q = p.loc[("quote", world.quote_line)]  # no stock: today + 7 working days lead time, + 3
    assert (q["reason"], q["ready_date"], q["promised_date"]) == (
        "made_to_order",
        dt.date(2025, 6, 18),
        dt.date(2025, 6, 23),
    )
    assert Decimal(str(q["quantity"])) == Decimal("5")
    assert sorted(world.events()) == sorted(
        [("order_line", world.line_a), ("order_line", world.line_b), ("quote_line", world.quote_line)]
    )


def _xmins(world: World) -> list[str]:
    with world.engine.connect() as conn:
        return [str(r[0]) for r in conn.execute(sa.text("SELECT xmin FROM delivery_promises ORDER BY id"))]


def test_rerun_with_nothing_changed_writes_nothing(world: World) -> None:
    run_promises(world.engine, CONFIG)
    before, events_before = world.promises(), world.events()
    xmins = _xmins(world) if world.engine.dialect.name == "postgresql" else None
    again = run_promises(world.engine, CONFIG)
    assert (again.written, again.removed, again.events) == (0, 0, 0)
    pd.testing.assert_frame_equal(world.promises(), before)  # computed_at included: untouched
    assert world.events() == events_before
    if xmins is not None:
        assert _xmins(world) == xmins  # PostgreSQL: not one row version rewritten


def test_only_changed_promises_are_written_with_one_event_each(world: World) -> None:
    run_promises(world.engine, CONFIG)
    before = world.promises()
    n_events = len(world.events())
    world.snapshot([("1.01.001", "WH01", 100), ("1.01.001", "WH02", 60)])  # 150 available: B now in stock
    run = run_promises(world.engine, CONFIG)
    assert (run.written, run.events) == (1, 1)
    assert world.events()[n_events:] == [("order_line", world.line_b)]
    after = world.promises()
    assert after.loc[("order", world.line_b), "reason"] == "in_stock"
    untouched = [("order", world.line_a), ("quote", world.quote_line)]
    pd.testing.assert_frame_equal(after.loc[untouched], before.loc[untouched])


def test_promise_of_a_closed_line_is_removed_with_an_event(world: World) -> None:
    run_promises(world.engine, CONFIG)
    n_events = len(world.events())
    with world.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE sales_orders SET status = 'delivered' WHERE id = :i"), {"i": world.order_b}
        )
    run = run_promises(world.engine, CONFIG)
    assert (run.written, run.removed, run.events) == (0, 1, 1)
    assert world.events()[n_events:] == [("order_line", world.line_b)]
    assert ("order", world.line_b) not in world.promises().index


def test_split_promise_stores_the_first_part(world: World) -> None:
    config = PromiseConfig(today=TODAY, allow_split=True)
    run_promises(world.engine, config)
    b = world.promises().loc[("order", world.line_b)]
    assert b["reason"] == "split"  # 20 of 60 ship from today's stock, the rest with the receipt
    assert Decimal(str(b["first_part_quantity"])) == Decimal("20")
    assert b["first_part_date"] == dt.date(2025, 6, 12)
    assert b["promised_date"] == dt.date(2025, 6, 19)


def test_dry_run_writes_nothing(world: World) -> None:
    run = run_promises(world.engine, CONFIG, dry_run=True)
    assert run.summary.lines_promised == 3
    assert world.promises().empty and world.events() == []


def test_promise_settings_mapping_with_shutdown() -> None:
    config = promise_config_from_mapping(
        {
            "handling_days": 2,
            "shipping_days_by_region": {"华东": 1},
            "calendar": {"shutdowns": [{"start": "2025-06-10", "end": "2025-06-13", "reason": "检修"}]},
        },
        today=TODAY,
        where="promise.yaml",
    )
    assert config.handling_days == 2 and config.shipping_days_by_region["华东"] == 1
    assert config.calendar.shutdowns[0].end == dt.date(2025, 6, 13)
    from hub.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown promise setting"):
        promise_config_from_mapping({"handling": 1}, today=TODAY, where="promise.yaml")
