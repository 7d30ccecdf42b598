"""B.4 case 18: the outbox cursor's edges.

PostgreSQL hands out outbox ids when a row is inserted, not when its transaction commits, so a
transaction holding a *lower* id can commit after a push already moved the cursor past a *higher* id.
The reader re-reads a look-back window (``hub.push.queue.PG_LOOKBACK``) to catch it. Events written in
the same instant (a bulk load stamps one ``created_at`` on all of them) must not be told apart by time.
Each case ends with the ledger check: none missed, none pushed twice.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from connectors.kingdee.kis_sandbox import FaultConfig
from crm_core.db import session_scope
from crm_core.invoicing import create_invoice, issue_invoice
from crm_core.models import Customer, OutboxEvent, SyncCursor
from crm_core.sales import LineInput
from hub.push.engine import run_push
from hub.push.queue import cursor_name
from tests.faults.conftest import drain, ledger_check, states
from tests.push.conftest import SETTINGS, World


def _open_invoice_transaction(world: World) -> tuple[Session, int]:
    """A transaction that issued one invoice (its outbox row has an id) and has not committed.

    It numbers its invoice in another year than ``make_invoices`` so it holds no row lock that the
    concurrent transaction needs (the number counter is one row per prefix and year)."""
    session = Session(bind=world.engine, expire_on_commit=False)
    customer = session.scalars(sa.select(Customer).order_by(Customer.id)).first()
    assert customer is not None
    line = LineInput(world.product_ids[0], Decimal("3"), Decimal("12.50"), Decimal("0.13"))
    invoice = create_invoice(session, customer, [line], year=2025)
    issue_invoice(session, invoice, invoice_number="20000001", issue_date=date(2026, 11, 28))
    event_id = session.scalar(
        sa.select(sa.func.max(OutboxEvent.id)).where(OutboxEvent.entity_id == invoice.id)
    )
    assert event_id is not None
    return session, int(event_id)


def _cursor(world: World) -> int:
    with world.engine.connect() as conn:
        value = conn.scalar(sa.select(SyncCursor.value).where(SyncCursor.name == cursor_name("erp")))
    return int(value or 0)


def test_case18_event_committed_after_the_cursor_passed_its_id_is_pushed_once(
    world_factory, fresh_pg_url
) -> None:  # type: ignore[no-untyped-def]
    world: World = world_factory(fresh_pg_url, FaultConfig(refuse_duplicate_bill_no=False))
    world.make_invoices(3)  # customers and the 2026 counter exist before the race
    drain(world)
    late, late_id = _open_invoice_transaction(world)  # holds the lower id, uncommitted
    try:
        world.make_invoices(4)  # commits higher ids
        run_push(world.engine, world.sink, SETTINGS)
        assert _cursor(world) > late_id  # the cursor really passed the uncommitted event
        assert states(world) == Counter({"done": 7})
        late.commit()
    finally:
        late.close()
    drain(world)
    assert states(world) == Counter({"done": 8})
    report = ledger_check(world)
    assert report.erp_bills == 8 and report.delivered == 8
    # Later runs re-read the look-back window; nothing is sent again.
    writes = len(world.admin.ledger())
    assert run_push(world.engine, world.sink, SETTINGS).erp_writes == 0
    assert len(world.admin.ledger()) == writes


def test_case18_a_transaction_longer_than_the_skew_margin_is_still_caught(
    world_factory, fresh_pg_url, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The re-read window starts at the oldest transaction open at the previous read, not at "now minus
    a margin": with the clock-skew margin set to zero (as if the late transaction had taken longer than
    any fixed margin), the late event is still queued."""
    from datetime import timedelta

    import hub.push.queue as queue

    monkeypatch.setattr(queue, "PG_LOOKBACK", timedelta(0))
    world: World = world_factory(fresh_pg_url, FaultConfig(refuse_duplicate_bill_no=False))
    world.make_invoices(2)
    drain(world)
    late, late_id = _open_invoice_transaction(world)
    try:
        world.make_invoices(3)
        run_push(world.engine, world.sink, SETTINGS)
        assert _cursor(world) > late_id
        late.commit()
    finally:
        late.close()
    world.make_invoices(1)  # later activity: the read after the late commit starts from a new "now"
    drain(world)
    assert states(world) == Counter({"done": 7})
    report = ledger_check(world)
    assert report.erp_bills == 7 and report.delivered == 7


def _same_instant_events(world_factory, url: str) -> None:  # type: ignore[no-untyped-def]
    world: World = world_factory(url, FaultConfig(refuse_duplicate_bill_no=False))
    world.make_invoices(5)

    def stamp() -> None:
        # Every event so far gets one and the same created_at (what a bulk load writes).
        with session_scope(world.engine) as session:
            first = session.scalar(sa.select(sa.func.min(OutboxEvent.created_at)))
            session.execute(sa.update(OutboxEvent).values(created_at=first))

    stamp()
    run_push(world.engine, world.sink, SETTINGS)
    world.make_invoices(5)
    stamp()  # the second batch carries the first batch's timestamp: only the id tells them apart
    drain(world)
    assert states(world) == Counter({"done": 10})
    report = ledger_check(world)
    assert report.erp_bills == 10 and report.delivered == 10


def test_case18_events_in_the_same_instant_sqlite(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    _same_instant_events(world_factory, fresh_sqlite_url)


def test_case18_events_in_the_same_instant_pg(world_factory, fresh_pg_url) -> None:  # type: ignore[no-untyped-def]
    _same_instant_events(world_factory, fresh_pg_url)
