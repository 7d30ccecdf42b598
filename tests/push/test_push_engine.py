"""The nightly push against a real KIS sandbox on loopback: exactly once, incremental, validated,
retried, replayable, and reconciled."""

from __future__ import annotations

import os
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa

from connectors.kingdee.kis_sandbox import FaultConfig
from crm_core.db import session_scope
from crm_core.invoicing import red_letter
from crm_core.models import DeliveryQueueItem, ExternalBinding, Invoice, Product, QuarantinedRecord
from hub.push.engine import AUDITED_NEEDS_RED_LETTER, run_push
from hub.push.lock import LockBusy
from hub.push.queue import replay
from hub.reconcile import reconcile
from tests.push.conftest import SETTINGS, World

TODAY = date(2026, 11, 28)


def _states(world: World) -> Counter[str]:
    with world.engine.connect() as conn:
        return Counter(conn.execute(sa.select(DeliveryQueueItem.state)).scalars())


def _drain(world: World, runs: int = 6) -> None:
    for _ in range(runs):
        run_push(world.engine, world.sink, SETTINGS)
        if not {"pending", "retry", "in_flight"} & set(_states(world)):
            return


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_issued_invoice_lands_exactly_once_and_a_quiet_night_writes_nothing(
    backend: str,
    world_factory,
    request: pytest.FixtureRequest,  # type: ignore[no-untyped-def]
) -> None:
    url = request.getfixturevalue("fresh_sqlite_url" if backend == "sqlite" else "fresh_pg_url")
    world = world_factory(url)
    ids = world.make_invoices(300)
    first = run_push(world.engine, world.sink, SETTINGS)
    assert (first.pushed, first.quarantined, first.dead_lettered) == (300, 0, 0)
    bills = world.ledger_bill_numbers()
    assert len(bills) == 300 and len(set(bills)) == 300
    with session_scope(world.engine) as session:
        expected = {f"HUB-{n}" for n in session.scalars(sa.select(Invoice.number).where(Invoice.id.in_(ids)))}
        assert set(bills) == expected
        total = sum(session.scalars(sa.select(Invoice.total_gross)), Decimal("0"))
    assert first.pushed_amount == total

    writes_before = len(world.admin.ledger())
    second = run_push(world.engine, world.sink, SETTINGS)
    assert (second.enqueued, second.pushed, second.erp_writes) == (0, 0, 0)
    assert len(world.admin.ledger()) == writes_before


def test_faults_5xx_and_lost_replies_still_land_each_document_once(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    world = world_factory(
        fresh_sqlite_url, FaultConfig(seed=11, p_5xx=0.3, p_lost_reply=0.1, refuse_duplicate_bill_no=False)
    )
    world.make_invoices(120)
    _drain(world)
    assert _states(world) == Counter({"done": 120})
    bills = Counter(world.ledger_bill_numbers())
    assert len(bills) == 120 and max(bills.values()) == 1, "a bill was created twice"
    faults = world.admin.stats()
    assert faults["5xx"] > 0 and faults["lost_replies"] > 0, faults


def test_poison_invoice_is_quarantined_the_rest_land_and_a_replay_after_the_fix_lands_it_once(
    world: World,
) -> None:
    with session_scope(world.engine) as session:
        bad = Product(sku="SKU-NEW", name="未建档物料", erp_material_code="M-UNKNOWN", unit="PCS")
        session.add(bad)
        session.flush()
        bad_id = bad.id
    good = world.make_invoices(9)
    poison = world.make_invoices(1, product_ids_override=[bad_id])[0]
    result = run_push(world.engine, world.sink, SETTINGS)
    assert (result.pushed, result.quarantined) == (9, 1)
    with session_scope(world.engine) as session:
        record = session.scalars(
            sa.select(QuarantinedRecord).where(QuarantinedRecord.canonical_id == poison)
        ).one()
        assert any(r["column"] == "materials_resolvable" for r in record.reasons)
    assert len(world.ledger_bill_numbers()) == len(good)

    # Fix the data (finance creates the material in KIS), then replay: it lands exactly once.
    world.admin.seed(
        {"materials": [{"number": "M-UNKNOWN", "name": "新物料", "model": "M12", "unit": "PCS"}]}
    )
    with session_scope(world.engine) as session:
        assert replay(session, "erp") == 1
    again = run_push(world.engine, world.sink, SETTINGS)
    assert (again.pushed, again.quarantined) == (1, 0)
    assert Counter(world.ledger_bill_numbers()).most_common(1)[0][1] == 1
    assert len(world.ledger_bill_numbers()) == 10
    assert run_push(world.engine, world.sink, SETTINGS).erp_writes == 0


def test_what_leaves_is_what_was_validated_when_the_data_changes_in_between(world: World) -> None:
    """prepare + execute in one process (hub push): the send uses the documents validation read."""
    from crm_core.models import InvoiceLine
    from hub.push.engine import execute_push, prepare_push

    with session_scope(world.engine) as session:
        bad = Product(sku="SKU-NOCODE", name="无编码", erp_material_code=None, unit="PCS")
        session.add(bad)
        session.flush()
        bad_id = bad.id
    ids = world.make_invoices(3)
    result = prepare_push(world.engine, world.sink, SETTINGS)
    assert (len(result.validated), result.quarantined) == (3, 0)
    with session_scope(world.engine) as session:  # a line now points at a product with no ERP code
        session.execute(
            sa.update(InvoiceLine).where(InvoiceLine.invoice_id == ids[0]).values(product_id=bad_id)
        )
    execute_push(world.engine, world.sink, SETTINGS, result)
    assert (result.pushed, result.quarantined, result.dead_lettered) == (3, 0, 0)
    assert result.validated == {}  # released after the send
    assert len(world.ledger_bill_numbers()) == 3
    assert _states(world) == Counter({"done": 3})


def test_an_invoice_voided_after_validation_is_not_sent(world: World) -> None:
    from crm_core.invoicing import void_invoice
    from hub.push.engine import execute_push, prepare_push

    ids = world.make_invoices(3)
    result = prepare_push(world.engine, world.sink, SETTINGS)
    with session_scope(world.engine) as session:
        invoice = session.get(Invoice, ids[0])
        assert invoice is not None
        void_invoice(session, invoice)
    execute_push(world.engine, world.sink, SETTINGS, result)
    assert (result.pushed, result.deferred) == (2, 0)
    with session_scope(world.engine) as session:
        voided = session.scalars(sa.select(Invoice.number).where(Invoice.id == ids[0])).one()
    assert f"HUB-{voided}" not in world.ledger_bill_numbers() and len(world.ledger_bill_numbers()) == 2


def test_an_invoice_red_lettered_after_validation_waits_for_the_next_run_then_leaves_as_such(
    world: World,
) -> None:
    """Issued invoices change only by status; issued -> red_letter stays pushable, with other content."""
    from hub.push.engine import execute_push, prepare_push

    ids = world.make_invoices(3)
    result = prepare_push(world.engine, world.sink, SETTINGS)
    with session_scope(world.engine) as session:  # through the ORM: row_hash and outbox follow
        invoice = session.get(Invoice, ids[0])
        assert invoice is not None
        red_letter(session, invoice)
        number = invoice.number
    execute_push(world.engine, world.sink, SETTINGS, result)
    assert (result.pushed, result.deferred) == (2, 1)
    assert _states(world) == Counter({"done": 2, "pending": 1})
    again = run_push(world.engine, world.sink, SETTINGS)  # validated again, then sent as it is now
    assert (again.pushed, again.deferred, again.quarantined) == (1, 0, 0)
    bills = world.ledger_bill_numbers()
    assert len(bills) == len(set(bills)) == 3
    sent = world.sink.find(f"HUB-{number}", compare_with=None)
    assert sent is not None
    assert world.client.get_outbound(int(sent.external_id)).red  # the content as it is now, validated


def test_a_mostly_bad_batch_blocks_the_whole_push(world: World) -> None:
    with session_scope(world.engine) as session:
        bad = Product(sku="SKU-NOCODE", name="无编码", erp_material_code=None, unit="PCS")
        session.add(bad)
        session.flush()
        bad_id = bad.id
    world.make_invoices(3)
    world.make_invoices(2, product_ids_override=[bad_id])  # 40% > 20%
    result = run_push(world.engine, world.sink, SETTINGS)
    assert result.blocked and result.failing_share == pytest.approx(0.4)
    assert (result.pushed, result.quarantined) == (0, 0)
    assert world.ledger_bill_numbers() == []
    assert _states(world) == Counter({"pending": 5})


def test_a_bill_sent_by_a_run_that_died_is_found_not_sent_again(world: World) -> None:
    [invoice_id] = world.make_invoices(1)
    # The dead run: enqueued and marked in flight, sent the bill, died before recording it.
    from crm_core.documents import load_documents
    from hub.push.queue import enqueue_from_outbox, mark_in_flight
    from mappings.kis_outbound import to_outbound

    with session_scope(world.engine) as session:
        enqueue_from_outbox(session, "erp")
        item_ids = list(session.scalars(sa.select(DeliveryQueueItem.id)))
        mark_in_flight(session, item_ids)
        doc = load_documents(session, [invoice_id])[invoice_id]
    world.sink.ensure_customer(doc.customer_code, doc.customer_name)
    world.sink.create(to_outbound(doc, SETTINGS.mapping))
    assert len(world.ledger_bill_numbers()) == 1

    result = run_push(world.engine, world.sink, SETTINGS)
    assert result.erp_writes == 0 and len(world.ledger_bill_numbers()) == 1
    with session_scope(world.engine) as session:
        binding = session.scalars(sa.select(ExternalBinding)).one()
        assert binding.external_bill_no == doc.number.replace("INV", "HUB-INV", 1)
    assert _states(world) == Counter({"done": 1})


def test_a_change_after_push_updates_an_unaudited_bill_and_quarantines_an_audited_one(world: World) -> None:
    first, second = world.make_invoices(2)
    run_push(world.engine, world.sink, SETTINGS)
    with session_scope(world.engine) as session:
        audited_fid = int(
            session.scalars(
                sa.select(ExternalBinding.external_id).where(ExternalBinding.canonical_id == second)
            ).one()
        )
    world.admin.audit(audited_fid)
    with session_scope(world.engine) as session:
        red_letter(session, session.get(Invoice, first))
        red_letter(session, session.get(Invoice, second))
    result = run_push(world.engine, world.sink, SETTINGS)
    assert (result.updated, result.quarantined, result.pushed) == (1, 1, 0)
    with session_scope(world.engine) as session:
        reasons = session.scalars(
            sa.select(QuarantinedRecord.reasons).where(QuarantinedRecord.canonical_id == second)
        ).one()
    assert AUDITED_NEEDS_RED_LETTER in reasons[0]["reason"]
    assert len(world.ledger_bill_numbers()) == 2  # updates never create bills


def test_dry_run_sends_nothing_and_consumes_nothing(world: World) -> None:
    world.make_invoices(4)
    plan = run_push(world.engine, world.sink, SETTINGS, dry_run=True)
    assert [p["action"] for p in plan.plan] == ["create"] * 4
    assert world.ledger_bill_numbers() == [] and _states(world) == Counter()
    assert run_push(world.engine, world.sink, SETTINGS).pushed == 4


def test_reconciliation_finds_a_bill_deleted_behind_our_back_and_the_xlsx_totals(
    world: World, tmp_path: Path
) -> None:
    ids = world.make_invoices(6)
    run_push(world.engine, world.sink, SETTINGS)
    clean = reconcile(world.engine, world.sink, TODAY, TODAY, mapping=SETTINGS.mapping)
    assert clean.counts == {"matched": 6}
    with session_scope(world.engine) as session:
        victim = session.scalars(
            sa.select(ExternalBinding).where(ExternalBinding.canonical_id == ids[2])
        ).one()
        fid, bill_no = int(victim.external_id), victim.external_bill_no
        expected_net = sum(session.scalars(sa.select(Invoice.total_net)), Decimal("0"))
    world.client.delete_outbound(fid)
    recon = reconcile(world.engine, world.sink, TODAY, TODAY, mapping=SETTINGS.mapping, out_dir=tmp_path)
    assert recon.counts == {"matched": 5, "missing_in_erp": 1} and recon.mismatches == 1
    assert [r.bill_no for r in recon.rows if r.status == "missing_in_erp"] == [bill_no]
    sheet = openpyxl.load_workbook(recon.xlsx_path).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == "对账结果" and rows[-1][0] == "合计"
    assert Decimal(str(rows[-1][5])).quantize(Decimal("0.01")) == expected_net
    assert sum(1 for r in rows[1:-1] if r[0] == "ERP缺失") == 1
    assert recon.csv_path.read_text(encoding="utf-8-sig").splitlines()[0].startswith("对账结果")


def test_a_lock_left_by_a_killed_push_is_taken_over(world: World) -> None:
    """SQLite keeps the lock as a row; a row whose owner process is gone must not block the next night."""
    import socket
    import subprocess
    import sys

    from crm_core.models import SyncLock
    from crm_core.types import now_utc

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    with session_scope(world.engine) as session:
        now = now_utc()
        session.add(
            SyncLock(
                name="push:erp",
                owner=f"{socket.gethostname()}:{dead.stdout.strip()}",
                acquired_at=now,
                expires_at=now.replace(year=now.year + 1),
            )
        )
    world.make_invoices(1)
    assert run_push(world.engine, world.sink, SETTINGS).pushed == 1

    with session_scope(world.engine) as session:  # a live holder still blocks
        now = now_utc()
        session.add(
            SyncLock(
                name="push:erp",
                owner=f"{socket.gethostname()}:{os.getpid()}",
                acquired_at=now,
                expires_at=now.replace(year=now.year + 1),
            )
        )
    with pytest.raises(LockBusy):
        run_push(world.engine, world.sink, SETTINGS)
