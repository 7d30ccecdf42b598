"""Sales outbounds and vouchers through the client: create, read, list, rules, idempotency."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connectors.kingdee.kis import KisClient, OutboundBill, OutboundLine, Voucher, VoucherEntry
from connectors.kingdee.kis_sandbox import SandboxAdmin
from hub.errors import DataValidationError, PermanentError

from .conftest import ClientFactory, outbound


def test_create_read_and_list_an_outbound(client: KisClient, admin: SandboxAdmin) -> None:
    bill = outbound("XOUT-0001", qty="3", price="0.125", lines=2)
    created = client.create_outbound(bill)
    assert created.created and created.bill_no == "XOUT-0001"

    got = client.get_outbound(created.fid)
    assert got.fid == created.fid and got.bill_no == "XOUT-0001" and got.date == dt.date(2025, 3, 1)
    assert got.customer_id == client.resolve_customer("C001")
    assert [line.qty for line in got.lines] == [Decimal(3), Decimal(4)]
    assert [line.amount for line in got.lines] == [Decimal("0.38"), Decimal("0.50")]  # half up, 2 places
    assert all(line.material_id == client.resolve_material("M-BOLT-M8") for line in got.lines)
    assert not got.audited and got.lines[0].qty_invoiced == 0

    client.create_outbound(outbound("XOUT-0002"))
    client.create_outbound(
        OutboundBill(
            bill_no="XOUT-0003",
            date=dt.date(2025, 4, 2),
            customer_code="C002",
            stock_code="WH01",
            lines=(OutboundLine(qty=Decimal(1), price=Decimal("9.90"), material_code="M-BRKT-L01"),),
        )
    )
    march = list(client.list_outbounds(dt.date(2025, 3, 1), dt.date(2025, 3, 31)))
    assert sorted(b.bill_no for b in march) == ["XOUT-0001", "XOUT-0002"]
    assert all(b.lines for b in march)
    assert client.find_outbound_by_bill_no("XOUT-0003").customer_id == client.resolve_customer("C002")
    assert client.find_outbound_by_bill_no("XOUT-9999") is None
    assert len(admin.ledger("salesdelivery/create")) == 3


def test_duplicate_bill_number_is_refused_and_resolves_to_the_existing_bill(
    client: KisClient, admin: SandboxAdmin
) -> None:
    first = client.create_outbound(outbound("XOUT-DUP"))
    again = client.create_outbound(outbound("XOUT-DUP"))
    assert again.fid == first.fid and not again.created
    assert admin.stats()["errcode:10201"] == 1  # the gateway refused the second bill
    with pytest.raises(PermanentError, match="already exists in KIS"):
        client.create_outbound(outbound("XOUT-DUP", qty="99"))  # same number, different content
    assert admin.bills("XOUT-DUP") == [first.fid]
    assert len(admin.ledger("salesdelivery/create")) == 1


def test_check_first_avoids_a_second_bill_when_the_gateway_accepts_duplicates(
    client: KisClient, admin: SandboxAdmin
) -> None:
    admin.set_faults(refuse_duplicate_bill_no=False)
    first = client.create_outbound(outbound("XOUT-REPLAY"))
    replay = client.create_outbound(outbound("XOUT-REPLAY"), check_first=True)
    assert replay.fid == first.fid and not replay.created
    assert admin.bills("XOUT-REPLAY") == [first.fid]


@pytest.mark.parametrize("mode", ["drop", "502"])
@pytest.mark.parametrize("refuse_duplicates", [True, False])
def test_lost_reply_after_commit_finds_the_bill_instead_of_creating_another(
    client: KisClient, admin: SandboxAdmin, mode: str, refuse_duplicates: bool
) -> None:
    admin.set_faults(p_lost_reply=1.0, lost_reply_mode=mode, refuse_duplicate_bill_no=refuse_duplicates)
    created = client.create_outbound(outbound("XOUT-LOST"))
    assert not created.created  # the reply was lost; the lookup found the committed bill
    assert admin.stats()["lost_replies"] == 1
    assert admin.bills("XOUT-LOST") == [created.fid]
    assert [row["fid"] for row in admin.ledger("salesdelivery/create")] == [created.fid]
    assert client.stats["lookups"] == 1


def test_unknown_internal_id_is_refused(client: KisClient) -> None:
    bill = OutboundBill(
        bill_no="XOUT-BADID",
        date=dt.date(2025, 3, 1),
        customer_id=424242,
        lines=(OutboundLine(qty=Decimal(1), price=Decimal(1), material_id=1, stock_id=1),),
    )
    with pytest.raises(PermanentError, match="FSupplyID=424242"):
        client.create_outbound(bill)


def test_a_bill_needs_a_number(client: KisClient) -> None:
    with pytest.raises(DataValidationError, match="FBillNo"):
        client.create_outbound(outbound(""))


def test_audit_locks_the_bill_and_takes_stock(client: KisClient, admin: SandboxAdmin) -> None:
    def on_hand() -> Decimal:
        return next(
            r.base_qty
            for r in client.iter_inventory()
            if (r.material_number, r.stock_number, r.batch_no) == ("M-BOLT-M8", "WH01", "")
        )

    before = on_hand()
    created = client.create_outbound(outbound("XOUT-AUD", qty="40"))
    client.update_outbound(created.fid, outbound("XOUT-AUD", qty="30"))
    assert client.get_outbound(created.fid).lines[0].qty == 30
    assert on_hand() == before  # only an audit moves stock

    admin.audit(created.fid)
    audited = client.get_outbound(created.fid)
    assert audited.audited and audited.check_date is not None and audited.check_date.tzinfo is not None
    assert on_hand() == before - 30
    with pytest.raises(PermanentError, match="已审核"):
        client.update_outbound(created.fid, outbound("XOUT-AUD", qty="31"))
    with pytest.raises(PermanentError, match="已审核"):
        client.delete_outbound(created.fid)

    other = client.create_outbound(outbound("XOUT-DEL"))
    client.delete_outbound(other.fid)
    assert client.find_outbound_by_bill_no("XOUT-DEL") is None


def test_simulated_invoice_sets_invoiced_quantity(client: KisClient, admin: SandboxAdmin) -> None:
    created = client.create_outbound(outbound("XOUT-INV", qty="10", lines=2))
    detail = client.get_outbound(created.fid)
    admin.invoice(
        created.fid,
        tran_type=80,
        invoice_no="FP-001",
        lines=[{"entry_id": detail.lines[0].entry_id, "qty": "4"}],
    )
    partly = client.get_outbound(created.fid)
    assert partly.lines[0].qty_invoiced == 4 and not partly.fully_invoiced
    admin.invoice(created.fid, tran_type=86, invoice_no="FP-002")  # the rest
    full = client.get_outbound(created.fid)
    assert [line.qty_invoiced for line in full.lines] == [Decimal(10), Decimal(11)] and full.fully_invoiced


def test_invoice_number_travels_in_the_configured_head_field(client: KisClient) -> None:
    bill = outbound("XOUT-FP")
    created = client.create_outbound(OutboundBill(**{**bill.__dict__, "invoice_no": "INV-2025-0042"}))
    assert client.get_outbound(created.fid).invoice_no == "INV-2025-0042"


def test_vouchers_post_once_and_list(make_client: ClientFactory, admin: SandboxAdmin) -> None:
    client = make_client("koas")
    voucher = Voucher(
        date=dt.date(2025, 3, 31),
        reference="CRM-INV-0042",
        explanation="销售收入确认",
        entries=(
            VoucherEntry("1122", debit=Decimal("113.00")),
            VoucherEntry("6001", credit=Decimal("100.00")),
            VoucherEntry("2221.01", credit=Decimal("13.00")),
        ),
    )
    admin.set_faults(p_lost_reply=1.0)
    created = client.create_voucher(voucher)
    admin.set_faults(p_lost_reply=0.0)
    assert not created.created and len(admin.ledger("Voucher/Create")) == 1
    [listed] = list(client.list_vouchers(dt.date(2025, 3, 1), dt.date(2025, 3, 31)))
    assert listed.reference == "CRM-INV-0042" and listed.balanced and listed.fid == created.fid
    assert sum(e.debit for e in listed.entries) == Decimal("113.00")
    unbalanced = Voucher(date=voucher.date, reference="X", entries=(VoucherEntry("1122", debit=Decimal(1)),))
    with pytest.raises(DataValidationError, match="debits equal credits"):
        client.create_voucher(unbalanced)
