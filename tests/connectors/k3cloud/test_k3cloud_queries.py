"""Queries, paging, the invoicing chain and the four request encodings, over real HTTP."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests

from connectors.kingdee.k3cloud import BillQuerySpec, K3CloudClient
from connectors.kingdee.k3cloud_sandbox import K3CloudSandbox
from hub.errors import ConfigError, PermanentError

from .conftest import Admin
from .helpers import outstock

SVC = "Kingdee.BOS.WebApi.ServicesStub."


def test_paging_reaches_the_last_page_in_order(client: K3CloudClient) -> None:
    result = client.batch_save("SAL_OUTSTOCK", [outstock(f"P-{i:03d}") for i in range(45)], batch_size=20)
    assert result.all_saved
    rows = list(client.iter_query("SAL_OUTSTOCK", ["FBillNo", "FID"], order_string="FBillNo", page_size=10))
    assert [r[0] for r in rows] == [f"P-{i:03d}" for i in range(45)]
    exact = list(
        client.iter_query("SAL_OUTSTOCK", ["FBillNo"], filter_string="FBillNo < 'P-040'", page_size=10)
    )
    assert len(exact) == 40  # a full last page is followed by one empty page, not an endless loop


def test_paging_needs_an_order(client: K3CloudClient) -> None:
    with pytest.raises(ConfigError, match="order"):
        list(client.iter_query("SAL_OUTSTOCK", ["FBillNo"], order_string=""))


def test_filter_subset_entry_explosion_and_dotted_keys(client: K3CloudClient) -> None:
    client.save(
        "SAL_OUTSTOCK", outstock("F-1", lines=(("M001", "CK001", "2", "10"), ("M002", "CK002", "3", "20")))
    )
    client.save("SAL_OUTSTOCK", outstock("F-2", customer="C002", lines=(("M001", "CK001", "7", "10"),)))
    keys = ("FBillNo", "FCustomerID.FNumber", "FMaterialId.FNumber", "FRealQty", "FEntity_FSeq", "FAllAmount")
    rows = client.execute_bill_query(
        BillQuerySpec(
            "SAL_OUTSTOCK",
            keys,
            "(FCustomerID.FNumber = 'C001' or FRealQty >= 7) and FMaterialId.FNumber in ('M001','M002') "
            "and FBillNo like 'F-%' and not FRealQty = 3",
            order_string="FBillNo desc, FEntity_FSeq",
        )
    )
    assert rows == [["F-2", "C002", "M001", 7, 1, 70], ["F-1", "C001", "M001", 2, 1, 20]]
    objects = client.bill_query(BillQuerySpec("SAL_OUTSTOCK", ("FBillNo", "FDate"), "FDate >= '2025-03-01'"))
    assert {"FBillNo": "F-1", "FDate": "2025-03-01T00:00:00"} in objects


def test_unknown_query_field_is_an_error_not_a_row(client: K3CloudClient) -> None:
    with pytest.raises(ConfigError) as caught:
        client.execute_bill_query(BillQuerySpec("SAL_OUTSTOCK", ("FBillNo", "FIssueType")))
    assert "元数据中标识为FIssueType的字段不存在" in str(caught.value) and "MsgCode 9" in str(caught.value)
    with pytest.raises(ConfigError, match="SAL_NOPE"):
        client.bill_query(BillQuerySpec("SAL_NOPE", ("FBillNo",)))
    with pytest.raises(PermanentError, match="FilterString"):
        client.execute_bill_query(BillQuerySpec("SAL_OUTSTOCK", ("FBillNo",), "FBillNo = = 'x'"))


def test_invoicing_chain_to_fully_invoiced(client: K3CloudClient, admin: Admin) -> None:
    lines = (("M001", "CK001", "3", "11.30"), ("M002", "CK001", "2", "7.77"))
    client.save_bill("SAL_OUTSTOCK", outstock(lines=lines), "INV-OUT-1")
    client.submit("SAL_OUTSTOCK", ["INV-OUT-1"])
    with pytest.raises(PermanentError, match="未审核"):
        client.push("SAL_OUTSTOCK", numbers=["INV-OUT-1"], target_form_id="AR_receivable")
    client.audit("SAL_OUTSTOCK", ["INV-OUT-1"])
    pushed = client.push("SAL_OUTSTOCK", numbers=["INV-OUT-1"], rule_id="AR_OutStockToReceivableMap")
    (ar,) = pushed.status.success_entities
    assert len(ar.entry_ids["FEntityDetail"]) == 2
    with pytest.raises(PermanentError, match="已全部下推"):
        client.push("SAL_OUTSTOCK", numbers=["INV-OUT-1"], target_form_id="AR_receivable")
    client.submit("AR_receivable", ids=[ar.id])  # type: ignore[list-item]
    client.audit("AR_receivable", ids=[ar.id])  # type: ignore[list-item]

    def open_amounts() -> list[list[object]]:
        return client.execute_bill_query(
            BillQuerySpec(
                "AR_receivable",
                ("FBillNo", "FSRCBILLNO", "FNOINVOICEQTY", "FNOINVOICEAMOUNT"),
                f"FBillNo = '{ar.number}'",
                "FEntityDetail_FSeq",
            )
        )

    assert open_amounts() == [
        [ar.number, "INV-OUT-1", 3, Decimal("33.90")],
        [ar.number, "INV-OUT-1", 2, Decimal("15.54")],
    ]
    invoice = client.push("AR_receivable", numbers=[ar.number], rule_id="IV_ReceivableToSalesIC_Entry")  # type: ignore[list-item]
    (iv,) = invoice.status.success_entities
    assert open_amounts()[0][3] == Decimal("33.90")  # not invoiced until the invoice is audited
    client.submit("IV_SALESIC", [iv.number])  # type: ignore[list-item]
    client.audit("IV_SALESIC", [iv.number])  # type: ignore[list-item]
    assert open_amounts() == [[ar.number, "INV-OUT-1", 0, 0], [ar.number, "INV-OUT-1", 0, 0]]
    fully = client.execute_bill_query(
        BillQuerySpec("AR_receivable", ("FBillNo",), "FSRCBILLNO = 'INV-OUT-1' and FNOINVOICEAMOUNT > 0")
    )
    assert fully == []  # "fully invoiced", read back by query
    by_source = client.execute_bill_query(
        BillQuerySpec("IV_SALESIC", ("FBillNo", "FALLAMOUNTFOR", "FSRCBILLNO"), f"FSRCBILLNO = '{ar.number}'")
    )
    assert sum(Decimal(str(r[1])) for r in by_source) == Decimal("49.44")
    with pytest.raises(PermanentError, match="下游"):
        client.unaudit("AR_receivable", [ar.number])  # type: ignore[list-item]
    actions = [(e["form_id"], e["action"]) for e in admin.ledger() if e["action"] == "push"]
    assert actions == [("AR_receivable", "push"), ("IV_SALESIC", "push")]


def test_strings_mode_is_parsed_leniently(client: K3CloudClient, admin: Admin) -> None:
    admin.set(strings_mode=True)
    saved = client.save("SAL_OUTSTOCK", outstock("S-1"))
    assert saved.id and saved.status.is_success
    result = client.batch_save("SAL_OUTSTOCK", [outstock("S-2"), outstock("S-3", customer="C404")])
    assert sorted(result.saved) == [0] and sorted(result.failed) == [1]
    with pytest.raises(ConfigError, match="MsgCode 9"):
        client.execute_bill_query(BillQuerySpec("SAL_OUTSTOCK", ("FNope",)))


def _login(sandbox: K3CloudSandbox) -> str:
    creds = sandbox.credentials
    reply = requests.post(
        sandbox.base_url + SVC + "AuthService.ValidateUser.common.kdsvc",
        data={
            "acctID": creds.acct_id,
            "username": creds.username,
            "password": creds.password,
            "lcid": "2052",
        },
        timeout=(2, 10),
    ).json()  # form-urlencoded login
    return str(reply["KDSVCSessionId"])


def test_all_four_request_encodings(sandbox: K3CloudSandbox, admin: Admin) -> None:
    sid = _login(sandbox)
    headers = {"kdservice-sessionid": sid}
    url = sandbox.base_url + SVC + "DynamicFormService.Save.common.kdsvc"
    model = json.loads(json.dumps(outstock(), default=str))
    bodies = [
        {"json": {"formid": "SAL_OUTSTOCK", "data": {"Model": {**model, "FBillNo": "E-1"}}}},
        {
            "json": {
                "format": 1,
                "useragent": "ApiClient",
                "rid": "1",
                "v": "1.0",
                "timestamp": "2025-03-01 10:00:00",
                "parameters": ["SAL_OUTSTOCK", json.dumps({"Model": {**model, "FBillNo": "E-2"}})],
            }
        },
        {"json": {"FormId": "SAL_OUTSTOCK", "Data": json.dumps({"Model": {**model, "FBillNo": "E-3"}})}},
        {"data": {"formid": "SAL_OUTSTOCK", "data": json.dumps({"Model": {**model, "FBillNo": "E-4"}})}},
    ]
    for body in bodies:
        reply = requests.post(url, headers=headers, timeout=(2, 10), **body).json()  # type: ignore[arg-type]
        assert reply["Result"]["ResponseStatus"]["IsSuccess"] is True, reply
    # Classic query envelope with CJK escaped as \uXXXX and a lower-case service name.
    query = json.dumps(
        {"FormId": "BD_Customer", "FieldKeys": "FNumber", "FilterString": "FName like '%精工%'"}
    )
    rows = requests.post(
        sandbox.base_url + SVC.lower() + "dynamicformservice.executebillquery.common.kdsvc",
        data=json.dumps({"parameters": [query]}, ensure_ascii=True),
        headers={**headers, "Content-Type": "application/json"},
        timeout=(2, 10),
    ).json()
    assert len(rows) == 1
    # The array form of FilterString (Compare 67 is equality, Logic 1 joins with "or").
    array_filter = [
        {"Left": "(", "FieldName": "FNumber", "Compare": "67", "Value": "C001", "Right": "", "Logic": "1"},
        {"Left": "", "FieldName": "FNumber", "Compare": "67", "Value": "C003", "Right": ")", "Logic": "0"},
    ]
    rows = requests.post(
        sandbox.base_url + SVC + "DynamicFormService.ExecuteBillQuery.common.kdsvc",
        json={
            "data": {
                "FormId": "BD_Customer",
                "FieldKeys": "FNumber",
                "FilterString": array_filter,
                "OrderString": "FNumber desc",
            }
        },
        headers=headers,
        timeout=(2, 10),
    ).json()
    assert rows == [["C003"], ["C001"]]
    assert sorted(admin.creates("SAL_OUTSTOCK")) == ["E-1", "E-2", "E-3", "E-4"]
