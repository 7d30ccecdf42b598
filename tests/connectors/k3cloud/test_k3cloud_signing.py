"""Signatures and lenient parsing, pinned to values produced by the official Kingdee Python SDK.

The golden values come from kingdee-cdp-webapi-sdk 8.2.0 (recorded in a public Go client's parity test),
so the client and the sandbox cannot agree on a wrong scheme unnoticed.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from connectors.kingdee.k3cloud.parsing import as_bool, dumps, find_response_status, loads, parse_status
from connectors.kingdee.k3cloud.signing import decode_app_secret, k3_signed_headers, login_sign
from connectors.kingdee.signing import hmac_hex_base64

SDK_APP_ID = "123456_YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4"


def test_app_secret_decoding_matches_sdk() -> None:
    assert decode_app_secret("YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4") == "UVJWUANVXl8KXFlfWV1YSBNCShcUQRNL"
    assert decode_app_secret("too-short") == ""
    assert decode_app_secret("!" * 32) == ""


def test_hmac_matches_sdk() -> None:
    text = "POST\n%2Ftest\n\nx-api-nonce:1\nx-api-timestamp:1\n"
    expected = "MThmZGFiM2U5MGZhNmU0MDQ0MWI1NTNkNmNmMjY2MDY0YzEzZTllNTA0OTBmM2M0NDI2NzFiMTI3NTFkZmU1ZQ=="
    assert hmac_hex_base64("key123", text) == expected


def test_signed_headers_match_sdk() -> None:
    headers = k3_signed_headers(
        url="https://erp.example.com/K3Cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService."
        "ExecuteBillQuery.common.kdsvc",
        app_id=SDK_APP_ID,
        app_secret="test-app-secret-value",
        acct_id="dcid-1",
        username="user-1",
        lcid=2052,
        org_number="100",
        timestamp=1700000000,
    )
    assert headers == {
        "X-Api-ClientID": "123456",
        "X-Api-Auth-Version": "2.0",
        "x-api-timestamp": "1700000000",
        "x-api-nonce": "1700000000",
        "x-api-signheaders": "x-api-timestamp,x-api-nonce",
        "X-Api-Signature": "MjNhMzg5MmZiMWE1MTQ1ZGE5NWFkYmZiZWYxYzhlY2NjNzcwM2ZjNDJlZTczMzBhNzkxOTk1ODhjNDZkMTEzYw==",
        "X-Kd-Appkey": SDK_APP_ID,
        "X-Kd-Appdata": "ZGNpZC0xLHVzZXItMSwyMDUyLDEwMA==",
        "X-Kd-Signature": "NjI5MzRiZGVhNGJhOWY2N2Y2YzQ2MzQ5ODA3N2JiZTRiMDRmOTUwNjI3YWIzODU1ODBkZDdhNzgwMzdmMDgxMg==",
    }


def test_login_sign_sorts_before_hashing() -> None:
    # Same values in any role give the same sign: they are sorted first (ERP-APIS §3.3).
    assert login_sign("a", "b", "c", "d", 5) == login_sign("d", "c", "b", "a", 5)
    assert len(login_sign("a", "b", "c", "d", 5)) == 64


@pytest.mark.parametrize("value", [True, "true", "True", " TRUE ", 1, "1"])
def test_is_success_true_spellings(value: object) -> None:
    assert as_bool(value) is True


@pytest.mark.parametrize("value", [False, "false", "", None, 0, "0", "no"])
def test_is_success_false_spellings(value: object) -> None:
    assert as_bool(value) is False


def test_wrapped_query_error_is_found_and_parsed() -> None:
    payload = loads(
        '[[{"Result":{"ResponseStatus":{"ErrorCode":"500","IsSuccess":"false","Errors":[{"FieldName":null,'
        '"Message":"元数据中标识为FIssueType的字段不存在","DIndex":"0"}],"SuccessEntitys":[],"SuccessMessages":[],'
        '"MsgCode":"9"}}}]]'
    )
    status = parse_status(find_response_status(payload))  # type: ignore[arg-type]
    assert (status.is_success, status.msg_code, status.error_code) == (False, 9, 500)
    assert "FIssueType" in status.errors[0].message


def test_data_rows_are_not_mistaken_for_errors() -> None:
    assert find_response_status([[1, "XSCKD000001", Decimal("5")]]) is None
    assert find_response_status([{"FBillNo": "X", "Result": 3}]) is None
    assert find_response_status([]) is None


def test_decimal_round_trip_is_exact() -> None:
    text = dumps({"FTaxPrice": Decimal("11.30"), "n": 3, "name": "轴承"})
    assert text == '{"FTaxPrice":11.30,"n":3,"name":"轴承"}'
    assert loads(text)["FTaxPrice"] == Decimal("11.30")
