"""Saving bills: per-row validation, partial BatchSave, duplicates, lost replies, state machine, stock."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from connectors.kingdee.k3cloud import BillQuerySpec, K3CloudClient
from hub.errors import ConfigError, PermanentError, UnknownOutcomeError

from .conftest import Admin, MakeClient
from .helpers import outstock


def stock_of(client: K3CloudClient, material: str, stock: str = "CK001") -> Decimal:
    rows = client.execute_bill_query(
        BillQuerySpec(
            "STK_Inventory",
            ("FBaseQty",),
            f"FMaterialId.FNumber = '{material}' and FStockId.FNumber = '{stock}'",
        )
    )
    return sum((Decimal(r[0]) for r in rows), Decimal(0))


def test_save_returns_id_number_and_need_return_data(client: K3CloudClient) -> None:
    result = client.save(
        "SAL_OUTSTOCK", outstock("W-0001"), NeedReturnFields=["FBillNo", "FEntity.FMaterialId"]
    )
    assert result.number == "W-0001" and result.id
    assert result.status.success_entities[0].number == "W-0001"
    assert result.need_return_data[0]["FBillNo"] == "W-0001"
    viewed = client.view("SAL_OUTSTOCK", number="W-0001")
    assert viewed is not None and viewed["DocumentStatus"] == "A"
    assert viewed["CustomerID"]["Number"] == "C001"
    assert viewed["Entity"][0]["AllAmount"] == Decimal("56.50")
    assert client.view("SAL_OUTSTOCK", number="NOPE") is None


def test_row_errors_name_field_and_row(client: K3CloudClient) -> None:
    model = outstock("W-0002", lines=(("M001", "CK001", "1", "1"), ("M999", "CK001", "1", "1")))
    with pytest.raises(PermanentError) as caught:
        client.save("SAL_OUTSTOCK", model)
    text = str(caught.value)
    assert "MsgCode 11" in text and "FMaterialId" in text and "第2行" in text and "M999" in text


def test_unknown_field_and_unknown_form_are_config_errors(client: K3CloudClient) -> None:
    model = outstock("W-0003")
    model["FIssueType"] = "x"
    with pytest.raises(ConfigError, match="FIssueType"):
        client.save("SAL_OUTSTOCK", model)
    with pytest.raises(ConfigError, match="SAL_OUTSTOCKX"):
        client.save("SAL_OUTSTOCKX", outstock("W-0004"))


def test_partial_batch_save_is_reported_per_index_and_recovered(client: K3CloudClient, admin: Admin) -> None:
    models = [outstock(f"B-{i}") for i in range(5)]
    models[1] = outstock("B-1", customer="C404")  # unknown customer
    del models[3]["FDate"]  # required field missing
    result = client.batch_save("SAL_OUTSTOCK", models)
    assert sorted(result.saved) == [0, 2, 4] and sorted(result.failed) == [1, 3]
    assert "C404" in str(result.failed[1]) and "FDate" in str(result.failed[3])
    assert all(isinstance(e, PermanentError) for e in result.failed.values())
    assert {result.saved[i].number for i in (0, 2, 4)} == {"B-0", "B-2", "B-4"}
    # Fix the two and re-send only them: nothing is duplicated.
    fixed = [outstock("B-1"), outstock("B-3")]
    again = client.batch_save("SAL_OUTSTOCK", fixed)
    assert again.all_saved
    assert sorted(admin.creates("SAL_OUTSTOCK")) == [f"B-{i}" for i in range(5)]


def test_batch_cap_is_a_call_level_error(client: K3CloudClient, admin: Admin) -> None:
    admin.set(batch_cap=3)
    with pytest.raises(PermanentError, match="MsgCode 8"):
        client.batch_save("SAL_OUTSTOCK", [outstock(f"CAP-{i}") for i in range(4)], batch_size=4)
    assert admin.creates("SAL_OUTSTOCK") == []


def test_duplicate_number_refused_and_blank_number_double_posts(client: K3CloudClient, admin: Admin) -> None:
    client.save("SAL_OUTSTOCK", outstock("DUP-1"))
    with pytest.raises(PermanentError, match="DUP-1.*已存在"):
        client.save("SAL_OUTSTOCK", outstock("DUP-1"))
    # Without a number the server auto-numbers, so a naive retry creates a second bill.
    first = client.save("SAL_OUTSTOCK", outstock())
    second = client.save("SAL_OUTSTOCK", outstock())
    assert first.number == "XSCKD000001" and second.number == "XSCKD000002"
    assert len(admin.creates("SAL_OUTSTOCK")) == 3


def test_validate_repeat_json_rejects_identical_package(client: K3CloudClient) -> None:
    client.save("SAL_OUTSTOCK", outstock(), ValidateRepeatJson="true")
    with pytest.raises(PermanentError, match="重复提交"):
        client.save("SAL_OUTSTOCK", outstock(), ValidateRepeatJson="true")


@pytest.mark.parametrize("mode", ["502", "reset", "delay"])
def test_lost_reply_is_resolved_by_lookup_never_a_second_bill(
    make_client: MakeClient, admin: Admin, mode: str
) -> None:
    client = make_client(read_timeout=0.5)
    admin.set(lost_reply_mode=mode, delay_seconds=1.5)
    admin.script({"service": "Save", "fault": "lost_reply", "count": 1})
    saved = client.save_bill("SAL_OUTSTOCK", outstock(), "LOST-1")
    assert saved.created is False and saved.number == "LOST-1" and saved.attempts == 2
    assert admin.creates("SAL_OUTSTOCK") == ["LOST-1"]
    assert admin.stats()["calls:DynamicFormService.Save"] == 1  # looked up, not re-sent


def test_plain_save_surfaces_unknown_outcome(client: K3CloudClient, admin: Admin) -> None:
    admin.script({"service": "Save", "fault": "lost_reply", "count": 1})
    with pytest.raises(UnknownOutcomeError, match="look the bill up"):
        client.save("SAL_OUTSTOCK", outstock("LOST-2"))


def test_reply_before_commit_lost_is_resent_once(client: K3CloudClient, admin: Admin) -> None:
    # A 504 before anything was applied: lookup finds nothing, the bill is sent again and created once.
    admin.script({"service": "Save", "fault": "http_504", "count": 1})
    saved = client.save_bill("SAL_OUTSTOCK", outstock(), "LOST-3")
    assert saved.created is True and saved.attempts == 2
    assert admin.creates("SAL_OUTSTOCK") == ["LOST-3"]


def test_slow_save_racing_its_retry_still_creates_one_bill(make_client: MakeClient, admin: Admin) -> None:
    client = make_client(read_timeout=0.5)
    admin.set(delay_seconds=1.5)
    admin.script({"service": "Save", "fault": "delay", "count": 1})
    client.save_bill("SAL_OUTSTOCK", outstock(), "SLOW-1")
    deadline = time.monotonic() + 30
    while admin.stats().get("ok:DynamicFormService.Save", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # wait for the delayed first request to be processed (it must be refused)
    assert admin.creates("SAL_OUTSTOCK") == ["SLOW-1"]


def test_earlier_run_bill_is_reported_not_duplicated(client: K3CloudClient, admin: Admin) -> None:
    first = client.save_bill("SAL_OUTSTOCK", outstock(), "RUN-1")
    again = client.save_bill("SAL_OUTSTOCK", outstock(), "RUN-1")
    assert first.created and not again.created and again.id == first.id
    assert admin.creates("SAL_OUTSTOCK") == ["RUN-1"]


def test_batch_save_lost_reply_resends_only_missing(make_client: MakeClient, admin: Admin) -> None:
    client = make_client(batch_size=4)
    admin.script({"service": "BatchSave", "fault": "lost_reply", "count": 1})
    result = client.batch_save("SAL_OUTSTOCK", [outstock(f"BL-{i}") for i in range(6)])
    assert result.all_saved
    assert sorted(admin.creates("SAL_OUTSTOCK")) == [f"BL-{i}" for i in range(6)]


def test_state_machine_and_stock_on_audit(client: K3CloudClient, admin: Admin) -> None:
    before = stock_of(client, "M002")
    client.save("SAL_OUTSTOCK", outstock("SM-1", lines=(("M002", "CK001", "4", "10"),)))
    with pytest.raises(PermanentError, match="未提交"):
        client.audit("SAL_OUTSTOCK", ["SM-1"])
    client.submit("SAL_OUTSTOCK", ["SM-1"])
    with pytest.raises(PermanentError, match="MsgCode 12"):
        client.delete("SAL_OUTSTOCK", ["SM-1"])  # B may not be deleted
    client.audit("SAL_OUTSTOCK", ["SM-1"])
    assert stock_of(client, "M002") == before - 4
    with pytest.raises(PermanentError, match="已审核"):
        client.audit("SAL_OUTSTOCK", ["SM-1"])
    assert stock_of(client, "M002") == before - 4  # re-audit had no side effect
    client.unaudit("SAL_OUTSTOCK", ["SM-1"])
    assert stock_of(client, "M002") == before
    client.delete("SAL_OUTSTOCK", ["SM-1"])  # D may be deleted
    assert client.find_bill("SAL_OUTSTOCK", "SM-1") is None
    actions = [e["action"] for e in admin.ledger("SAL_OUTSTOCK")]
    assert actions == ["create", "submit", "audit", "unaudit", "delete"]


def test_negative_stock_is_refused_unless_allowed(client: K3CloudClient, admin: Admin) -> None:
    admin.seed(stock=[{"material": "M003", "stock": "CK001", "qty": 3}])
    client.save("SAL_OUTSTOCK", outstock("NEG-1", lines=(("M003", "CK001", "5", "10"),)))
    client.submit("SAL_OUTSTOCK", ["NEG-1"])
    with pytest.raises(PermanentError, match="库存不足"):
        client.audit("SAL_OUTSTOCK", ["NEG-1"])
    assert stock_of(client, "M003") == 3
    bill = client.find_bill("SAL_OUTSTOCK", "NEG-1")
    assert bill is not None and bill.status == "B"
    client.audit("SAL_OUTSTOCK", ["NEG-1"], InterationFlags="STK_InvCheckResult")
    assert stock_of(client, "M003") == -2


def test_auto_submit_and_audit_and_update_by_fid(client: K3CloudClient) -> None:
    saved = client.save("SAL_OUTSTOCK", outstock("AUTO-1"), IsAutoSubmitAndAudit="true")
    assert client.find_bill("SAL_OUTSTOCK", "AUTO-1").status == "C"  # type: ignore[union-attr]
    with pytest.raises(PermanentError, match="不能修改"):
        client.save("SAL_OUTSTOCK", {"FID": saved.id, "FNote": "x"}, NeedUpDateFields=["FNote"])
    draft = client.save("SAL_OUTSTOCK", outstock("UPD-1"))
    client.save("SAL_OUTSTOCK", {"FID": draft.id, "FNote": "改过"}, NeedUpDateFields=["FNote"])
    rows = client.execute_bill_query(
        BillQuerySpec("SAL_OUTSTOCK", ("FNote", "FRealQty"), "FBillNo = 'UPD-1'")
    )
    assert rows == [["改过", 5]]


def test_disabled_customer_checked_only_when_asked(client: K3CloudClient) -> None:
    client.save("SAL_OUTSTOCK", outstock("DIS-1", customer="C099"))
    with pytest.raises(PermanentError, match="已禁用"):
        client.save("SAL_OUTSTOCK", outstock("DIS-2", customer="C099"), IsVerifyBaseDataField="true")
