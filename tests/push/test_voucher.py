"""Receivable vouchers (凭证) with the sales outbound, against the real KIS sandbox on loopback: one
balanced voucher per pushed invoice, exactly once under lost replies, none when disabled, never a second
one for changed amounts, red-letter reversal, the wiring from hub.yaml, and reconciliation of vouchers
over more documents than one IN list may carry."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.kingdee.kis.records import Voucher, VoucherEntry
from connectors.kingdee.kis_sandbox import FaultConfig
from crm_core.db import session_scope
from crm_core.documents import InvoiceDocument
from crm_core.invoicing import red_letter
from crm_core.models import DeadLetter, DeliveryQueueItem, ExternalBinding, Invoice
from hub.errors import DataValidationError
from hub.push.engine import run_push
from hub.push.sink import KisOutboundSink
from hub.reconcile import reconcile
from mappings.kis_voucher import VoucherMapping, to_voucher, vouchers_for
from tests.push.conftest import SETTINGS, World

TODAY = date(2026, 11, 28)  # the issue date of every test invoice
VOUCHERS = VoucherMapping()  # the template defaults: 1122 / 6001 / 22210102
TAX_ACCOUNT = {"accounts": [{"number": "22210102", "name": "应交税费-应交增值税-销项税额"}]}


def _voucher_sink(world: World) -> KisOutboundSink:
    world.admin.seed(TAX_ACCOUNT)  # the sandbox's default chart has 2221.01, the template 22210102
    return KisOutboundSink(world.client, VOUCHERS)


def _voucher_creates(world: World) -> Counter[str]:
    """Accepted Voucher/Create writes per reference (the sandbox ledger)."""
    return Counter(w["bill_no"] for w in world.admin.ledger() if w["endpoint"] == "Voucher/Create")


def _drain(world: World, sink: KisOutboundSink, runs: int = 8) -> None:
    for _ in range(runs):
        run_push(world.engine, sink, SETTINGS)
        with world.engine.connect() as conn:
            left = conn.execute(
                sa.select(sa.func.count())
                .select_from(DeliveryQueueItem)
                .where(DeliveryQueueItem.state.in_(("pending", "retry", "in_flight")))
            ).scalar_one()
        if not left:
            return


def _states(world: World) -> Counter[str]:
    with world.engine.connect() as conn:
        return Counter(conn.execute(sa.select(DeliveryQueueItem.state)).scalars())


def _expected(world: World) -> dict[str, tuple[str, Decimal, Decimal, Decimal, str]]:
    """bill number -> (invoice number, gross, net, tax, customer name) of every pushed invoice."""
    from crm_core.models import Customer

    with session_scope(world.engine) as session:
        rows = session.execute(
            sa.select(
                ExternalBinding.external_bill_no,
                Invoice.invoice_number,
                Invoice.total_gross,
                Invoice.total_net,
                Invoice.total_tax,
                Customer.name,
            )
            .join(Invoice, Invoice.id == ExternalBinding.canonical_id)
            .join(Customer, Customer.id == Invoice.customer_id)
        ).all()
    return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}


def _assert_books(voucher: Voucher, gross: Decimal, net: Decimal, tax: Decimal) -> None:
    assert voucher.balanced
    sides = sorted((e.account_number, e.debit, e.credit) for e in voucher.entries)
    wanted = [("1122", gross, Decimal(0)), ("6001", Decimal(0), net)]
    if tax:
        wanted.append(("22210102", Decimal(0), tax))
    assert sides == sorted(wanted), (voucher.reference, sides)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_pushed_invoice_gets_one_balanced_voucher_and_a_quiet_night_writes_none(
    backend: str,
    world_factory,
    request: pytest.FixtureRequest,  # type: ignore[no-untyped-def]
) -> None:
    world = world_factory(
        request.getfixturevalue("fresh_sqlite_url" if backend == "sqlite" else "fresh_pg_url")
    )
    sink = _voucher_sink(world)
    world.make_invoices(40)
    first = run_push(world.engine, sink, SETTINGS)
    assert (first.pushed, first.dead_lettered, first.erp_writes) == (
        40,
        0,
        80,
    )  # an outbound + a voucher each

    expected = _expected(world)
    creates = _voucher_creates(world)
    assert set(creates) == set(expected) and set(creates.values()) == {1}
    posted = {v.reference: v for v in world.client.list_vouchers(TODAY, TODAY)}
    assert set(posted) == set(expected)
    for bill_no, (invoice_no, gross, net, tax, customer) in expected.items():
        voucher = posted[bill_no]
        assert voucher.date == TODAY and voucher.group == "记"
        assert invoice_no in voucher.explanation and customer in voucher.explanation
        _assert_books(voucher, gross, net, tax)

    writes = len(world.admin.ledger())
    second = run_push(world.engine, sink, SETTINGS)
    assert (second.pushed, second.erp_writes) == (0, 0)
    assert len(world.admin.ledger()) == writes


@pytest.mark.parametrize(
    "faults",
    [
        FaultConfig(seed=3, p_lost_reply=1.0),  # every write committed, every reply lost
        FaultConfig(seed=5, p_5xx=0.3, p_lost_reply=0.3, refuse_duplicate_bill_no=False),
    ],
    ids=["all-replies-lost", "5xx-and-lost-replies"],
)
def test_lost_replies_on_voucher_create_still_post_exactly_one(
    faults: FaultConfig,
    world_factory,
    fresh_sqlite_url: str,  # type: ignore[no-untyped-def]
) -> None:
    world = world_factory(fresh_sqlite_url, faults)
    sink = _voucher_sink(world)
    world.make_invoices(30)
    if faults.p_lost_reply == 1.0:  # no 5xx: one run lands everything, and counts each voucher as a write
        assert run_push(world.engine, sink, SETTINGS).erp_writes == 60
    _drain(world, sink)
    assert _states(world) == Counter({"done": 30})
    expected = _expected(world)
    assert len(expected) == 30
    creates = _voucher_creates(world)
    assert set(creates) == set(expected) and max(creates.values()) == 1, "a voucher was posted twice"
    stats = world.admin.stats()
    if faults.p_lost_reply == 1.0:  # then each voucher create above lost its reply
        assert stats["lost_replies"] == len(world.admin.ledger()), stats
    else:
        assert stats["lost_replies"] > 0 and stats["5xx"] > 0, stats
    world.admin.set_faults(p_5xx=0.0, p_lost_reply=0.0)
    for voucher in world.client.list_vouchers(TODAY, TODAY):
        _, gross, net, tax, _ = expected[voucher.reference]
        _assert_books(voucher, gross, net, tax)


def test_vouchers_disabled_posts_none(world: World) -> None:
    world.make_invoices(10)
    result = run_push(world.engine, world.sink, SETTINGS)  # the default sink: vouchers off
    assert (result.pushed, result.erp_writes) == (10, 10)
    assert _voucher_creates(world) == Counter()
    assert list(world.client.list_vouchers()) == []


def test_a_bill_found_after_a_dead_run_gets_its_voucher_once(world: World) -> None:
    """The engine's lookup path (bill already sent by a run that died) completes the voucher."""
    from crm_core.documents import load_documents
    from hub.push.queue import enqueue_from_outbox, mark_in_flight
    from mappings.kis_outbound import to_outbound

    sink = _voucher_sink(world)
    [invoice_id] = world.make_invoices(1)
    with session_scope(world.engine) as session:
        enqueue_from_outbox(session, "erp")
        mark_in_flight(session, list(session.scalars(sa.select(DeliveryQueueItem.id))))
        doc = load_documents(session, [invoice_id])[invoice_id]
    sink.ensure_customer(doc.customer_code, doc.customer_name)
    sink.create(to_outbound(doc, SETTINGS.mapping))  # the dead run sent the bill, not the voucher

    result = run_push(world.engine, sink, SETTINGS)
    assert result.erp_writes == 1 and len(world.ledger_bill_numbers()) == 1
    assert list(_voucher_creates(world).values()) == [1]
    assert run_push(world.engine, sink, SETTINGS).erp_writes == 0


def test_a_voucher_posted_with_other_amounts_is_never_doubled(world: World) -> None:
    """A voucher already under the reference with other amounts: dead letter naming invoice and voucher;
    after finance removes it, a replay posts the right one, once."""
    from hub.push.queue import replay

    sink = _voucher_sink(world)
    [invoice_id] = world.make_invoices(1)
    with session_scope(world.engine) as session:
        number = session.get(Invoice, invoice_id).number  # type: ignore[union-attr]
    bill_no = SETTINGS.mapping.bill_no_pattern.format(number=number)
    wrong = Decimal("1.00")
    world.client.create_voucher(
        Voucher(TODAY, bill_no, (VoucherEntry("1122", debit=wrong), VoucherEntry("6001", credit=wrong)))
    )
    result = run_push(world.engine, sink, SETTINGS)
    assert (result.pushed, result.dead_lettered) == (0, 1)
    assert _voucher_creates(world) == Counter({bill_no: 1})  # only the one posted by hand
    with session_scope(world.engine) as session:
        error = session.scalars(sa.select(DeadLetter.error_message)).one()
    assert number in error and bill_no in error and "1.00" in error and "replay" in error

    with world.sandbox.state.tx() as db:  # finance deletes the wrong voucher in KIS
        db.execute("DELETE FROM vouchers WHERE reference = ?", (bill_no,))
    with session_scope(world.engine) as session:
        assert replay(session, "erp") == 1
    again = run_push(world.engine, sink, SETTINGS)
    assert again.dead_lettered == 0
    assert _voucher_creates(world) == Counter({bill_no: 2})  # the hand-made one (gone) and ours
    [voucher] = world.client.list_vouchers(reference=bill_no)
    _, gross, net, tax, _ = _expected(world)[bill_no]
    _assert_books(voucher, gross, net, tax)


def test_a_red_lettered_invoice_gets_a_negative_voucher_beside_the_blue_one(world: World) -> None:
    sink = _voucher_sink(world)
    [invoice_id] = world.make_invoices(1)
    run_push(world.engine, sink, SETTINGS)
    with session_scope(world.engine) as session:
        red_letter(session, session.get(Invoice, invoice_id))
    result = run_push(world.engine, sink, SETTINGS)
    assert (result.updated, result.erp_writes) == (1, 2)  # the outbound updated, the red voucher posted
    [(bill_no, (_, gross, net, tax, _))] = _expected(world).items()
    assert _voucher_creates(world) == Counter({bill_no: 1, f"{bill_no}-R": 1})
    posted = {v.reference: v for v in world.client.list_vouchers(TODAY, TODAY)}
    _assert_books(posted[bill_no], gross, net, tax)
    _assert_books(posted[f"{bill_no}-R"], -gross, -net, -tax)
    assert "红冲" in posted[f"{bill_no}-R"].explanation
    assert run_push(world.engine, sink, SETTINGS).erp_writes == 0
    assert reconcile(world.engine, sink, TODAY, TODAY, mapping=SETTINGS.mapping).counts == {"matched": 1}


HUB_YAML = """version: 1
connections:
  erp:
    template: kingdee_kis
    connection:
      base_url: {base_url}
      auth_flow: koas
      client_id: "{client_id}"
      client_secret: ${{VOUCHER_TEST_CLIENT_SECRET}}
      auth_code: ${{VOUCHER_TEST_AUTH_CODE}}
      account_number: {account_number}
      app_key: null
      app_secret: null
      outer_instance_id: null
      read_timeout: 10
    streams:
      invoiced_states:
        bill_number_pattern: "HUB-{{external_id}}"
        stock_number: WH01
        receivable_voucher:
          enabled: {enabled}
          voucher_group: 转
          tax_account: "2221.01"
"""


@pytest.mark.parametrize("enabled", [True, False])
def test_hub_yaml_receivable_voucher_reaches_the_sink(
    enabled: bool, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.config.project import load_project
    from hub.runtime import open_sink

    c = world.sandbox.credentials
    config = tmp_path / "hub.yaml"
    config.write_text(
        HUB_YAML.format(
            base_url=world.sandbox.base_url,
            client_id=c.client_id,
            account_number=c.account_number,
            enabled=str(enabled).lower(),
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("VOUCHER_TEST_CLIENT_SECRET", c.client_secret)
    monkeypatch.setenv("VOUCHER_TEST_AUTH_CODE", c.auth_code)
    world.make_invoices(3)
    with open_sink(load_project(config), "erp") as sink:
        result = run_push(world.engine, sink, SETTINGS)
    assert result.pushed == 3
    vouchers = list(world.client.list_vouchers())
    if not enabled:
        assert vouchers == [] and result.erp_writes == 3
        return
    assert len(vouchers) == 3 and result.erp_writes == 6
    assert {v.group for v in vouchers} == {"转"}
    assert {e.account_number for v in vouchers for e in v.entries} == {"1122", "6001", "2221.01"}


@pytest.mark.slow
def test_reconciliation_over_1100_documents_on_sqlite_flags_deleted_and_altered_vouchers(
    world: World, tmp_path: Path
) -> None:
    sink = _voucher_sink(world)
    world.make_invoices(1100, customers=20)
    _drain(world, sink)
    expected = _expected(world)
    assert len(expected) == 1100
    # Older SQLite builds allow 999 bound variables per statement: one IN list over the period fails.
    sa.event.listen(world.engine, "connect", _limit_variables)
    world.engine.dispose()

    clean = reconcile(world.engine, sink, TODAY, TODAY, mapping=SETTINGS.mapping)
    assert clean.counts == {"matched": 1100}

    deleted, altered = sorted(expected)[7], sorted(expected)[700]
    with world.sandbox.state.tx() as db:  # behind our back, in KIS
        db.execute("DELETE FROM vouchers WHERE reference = ?", (deleted,))
        entries = json.loads(
            db.execute("SELECT entries FROM vouchers WHERE reference = ?", (altered,)).fetchone()[0]
        )
        for entry in entries:  # the same, one yuan more on both sides: balanced, wrong
            entry["FAmount"] = str(
                Decimal(str(entry["FAmount"])) + (1 if entry["FAccountNumber"] != "6001" else 0)
            )
        db.execute("UPDATE vouchers SET entries = ? WHERE reference = ?", (json.dumps(entries), altered))
    world.client.create_voucher(
        Voucher(
            TODAY,
            "HUB-STRAY-1",
            (VoucherEntry("1122", debit=Decimal("5.00")), VoucherEntry("6001", credit=Decimal("5.00"))),
        )
    )
    recon = reconcile(world.engine, sink, TODAY, TODAY, mapping=SETTINGS.mapping, out_dir=tmp_path)
    assert recon.counts == {
        "matched": 1098,
        "missing_in_erp": 1,
        "amount_mismatch": 1,
        "unexpected_in_erp": 1,
    }
    by_status = {r.status: r for r in recon.rows if r.status != "matched"}
    assert by_status["missing_in_erp"].bill_no == deleted and "voucher" in by_status["missing_in_erp"].details
    assert (
        by_status["amount_mismatch"].bill_no == altered and "voucher" in by_status["amount_mismatch"].details
    )
    assert by_status["unexpected_in_erp"].bill_no == "HUB-STRAY-1"
    assert recon.mismatches == 3


def _limit_variables(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)


def _doc(net: str, tax: str, gross: str, status: str = "issued") -> InvoiceDocument:
    return InvoiceDocument(
        id=1,
        number="INV-2026-000001",
        invoice_number="20260001",
        invoice_type="normal",
        status=status,
        issue_date=TODAY,
        customer_id=1,
        customer_code="C001",
        customer_name="测试客户有限公司",
        credit_code=None,
        total_net=Decimal(net),
        total_tax=Decimal(tax),
        total_gross=Decimal(gross),
        lines=(),
    )


def test_the_voucher_mapping_balances_to_the_cent_and_refuses_totals_that_do_not_add_up() -> None:
    zero_rated = to_voucher(_doc("100", "0", "100.00"), "HUB-1", VOUCHERS)
    assert zero_rated.balanced and [e.account_number for e in zero_rated.entries] == ["1122", "6001"]
    assert str(zero_rated.entries[0].debit) == "100.00"  # two places, whatever the stored scale
    blue, red = vouchers_for(_doc("88.50", "11.51", "100.01", "red_letter"), "HUB-1", VOUCHERS)
    assert (blue.reference, red.reference) == ("HUB-1", "HUB-1-R") and blue.balanced and red.balanced
    assert [e.debit + e.credit for e in red.entries] == [-(e.debit + e.credit) for e in blue.entries]
    with pytest.raises(DataValidationError, match="INV-2026-000001"):
        to_voucher(_doc("88.50", "11.51", "100.00"), "HUB-1", VOUCHERS)
