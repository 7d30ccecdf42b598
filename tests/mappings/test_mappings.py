"""Mappings: pure application with the version stamped on the record, value tables, coverage."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hub.errors import ConfigError, DataValidationError
from mappings import Mapping, UnmappedValue, apply_mapping, check_coverage, find_gaps, load_mapping
from mappings.loader import available, load_mapping_file

INVOICE = {
    "bill_no": "HUB-FP0001",
    "invoice_number": "FP0001",
    "invoice_date": dt.datetime(2025, 3, 1, 17, 30, tzinfo=dt.UTC),  # 01:30 on 2 March in Shanghai
    "customer_code": "C000001",
    "warehouse_code": "MAIN",
    "unit": "PCS",
    "lines": [
        {
            "material_code": "M-01",
            "qty": Decimal("5"),
            "unit_price": Decimal("10.005"),
            "amount": Decimal("50.025"),
            "unit": "PCS",
            "tax_rate": Decimal("0.13"),
            "warehouse_code": "FG",
        },
        {
            "material_code": "M-02",
            "qty": Decimal("1"),
            "unit_price": Decimal("2"),
            "amount": Decimal("2"),
            "unit": "KG",
            "tax_rate": Decimal("0.06"),
        },
    ],
}


def test_every_shipped_spec_loads_and_covers_closed_vocabularies() -> None:
    specs = available()
    assert ("kis_sales_outbound", 1) in specs and ("k3cloud_sales_outbound", 1) in specs
    for (name, version), _ in specs.items():
        loaded = load_mapping(name, version)
        assert loaded.mapping.key == f"{name}@{version}"
        assert find_gaps(loaded.mapping).ok, name


def test_kis_outbound_mapping_stamps_its_version_and_rounds_money() -> None:
    mapping = load_mapping("kis_sales_outbound", 1).mapping
    mapped = apply_mapping(mapping, INVOICE)
    assert (mapped.mapping_name, mapped.mapping_version, mapped.mapping_key) == (
        "kis_sales_outbound",
        1,
        "kis_sales_outbound@1",
    )
    head = mapped.payload
    assert head["bill_no"] == "HUB-FP0001"
    assert head["date"] == "2025-03-02"  # the Shanghai date, not the UTC one
    assert head["stock_code"] == "01"  # warehouse table
    assert head["note"] == "CRM 发票 FP0001"
    first, second = head["lines"]
    assert first["amount"] == Decimal("50.03")  # ROUND_HALF_UP to 2 places
    assert first["stock_code"] == "03"  # the line's own warehouse
    assert second["stock_code"] == "01"  # falls back to the header's
    assert first["batch_no"] == ""


def test_k3cloud_mapping_builds_base_data_references_and_tax_codes() -> None:
    mapping = load_mapping("k3cloud_sales_outbound", 1).mapping
    payload = apply_mapping(mapping, INVOICE).payload
    assert payload["FCustomerID"] == {"FNumber": "C000001"}
    assert payload["FSaleOrgId"] == {"FNumber": "100"}  # default
    lines = payload["FEntity"]
    assert lines[0]["FUnitID"] == {"FNumber": "Pcs"}
    assert [line["FEntryTaxRate"] for line in lines] == ["13", "6"]


def test_unmapped_value_is_a_record_problem_naming_table_and_value() -> None:
    mapping = load_mapping("kis_sales_outbound", 1).mapping
    record = {**INVOICE, "warehouse_code": "NEW-WH"}
    with pytest.raises(
        UnmappedValue, match=r"kis_sales_outbound@1: table 'warehouse' has no target for 'NEW-WH'"
    ):
        apply_mapping(mapping, record)
    assert issubclass(UnmappedValue, DataValidationError)
    with pytest.raises(DataValidationError, match="invoice_date"):
        apply_mapping(mapping, {**INVOICE, "invoice_date": None})


def test_pull_mapping_translates_vendor_values_into_canonical_ones() -> None:
    mapping = load_mapping("crm_opportunity", 1).mapping
    row = {
        "external_id": 42,
        "customer_name": "甲公司",
        "stage": "proposal",
        "amount": "1,234.565",
        "updated_at": dt.datetime(2025, 3, 1, tzinfo=ZoneInfo("Asia/Shanghai")),
    }
    out = apply_mapping(mapping, row).payload
    assert (out["external_id"], out["stage"], out["amount"]) == ("42", "方案提交", Decimal("1234.57"))
    k3 = apply_mapping(
        load_mapping("k3cloud_inventory", 1).mapping,
        {"FMaterialId.FNumber": "M-01", "FStockId.FNumber": "CK003", "FBaseQty": 7},
    ).payload
    assert k3 == {
        "material_code": "M-01",
        "warehouse_code": "FG",
        "batch_no": "",
        "on_hand_qty": Decimal("7"),
    }


def test_coverage_refuses_a_version_missing_a_value_in_use() -> None:
    mapping = load_mapping("kis_sales_outbound", 1).mapping
    assert check_coverage(mapping, {"warehouse": {"MAIN", "FG"}, "customer": {"C1"}}).ok
    with pytest.raises(ConfigError) as info:
        check_coverage(mapping, {"warehouse": {"MAIN", "COLD"}})
    assert "table 'warehouse' has no target for 'COLD'" in str(info.value)
    assert info.value.context["gaps"] == {"warehouse": ["COLD"]}
    with pytest.raises(ConfigError, match="does not define"):
        check_coverage(mapping, {"colour": {"red"}})


def test_closed_vocabularies_must_be_complete_and_canonical(tmp_path: Path) -> None:
    base = load_mapping("k3cloud_sales_outbound", 1).mapping.model_dump(by_alias=True)
    tables = base["tables"]
    tables["tax_rate"]["values"].pop("6")
    gap = Mapping.model_validate(base)
    assert find_gaps(gap).gaps == {"tax_rate": ["6"]}
    tables["tax_rate"]["values"]["17"] = "17"  # not a canonical VAT rate
    with pytest.raises(ValueError, match="'17', which is not a canonical vat_rate"):
        Mapping.model_validate(base)
    opp = load_mapping("crm_opportunity", 1).mapping.model_dump(by_alias=True)
    opp["tables"]["stage"]["values"]["won"] = "赢单"  # not a canonical stage
    with pytest.raises(ValueError, match="'赢单', which is not a canonical stage"):
        Mapping.model_validate(opp)


def test_spec_file_name_must_match_its_version(tmp_path: Path) -> None:
    source = load_mapping("kis_inventory", 1).path.read_text(encoding="utf-8")
    wrong = tmp_path / "kis_inventory.v2.yaml"
    wrong.write_text(source, encoding="utf-8")
    with pytest.raises(ConfigError, match="holds kis_inventory@1; name it kis_inventory.v1.yaml"):
        load_mapping_file(wrong)
    typo = tmp_path / "kis_inventory.v1.yaml"
    typo.write_text(source.replace("table: warehouse", "table: warehous"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"kis_inventory.v1.yaml:\d+: .*table 'warehous'"):
        load_mapping_file(typo)


def test_unknown_version_lists_known_versions() -> None:
    with pytest.raises(
        ConfigError, match="unknown mapping 'kis_inventory' version 7; known versions of kis_inventory: 1"
    ):
        load_mapping("kis_inventory", 7)


def test_mapped_invoice_becomes_the_kis_connector_record() -> None:
    from mappings.kis import to_outbound_bill

    bill = to_outbound_bill(apply_mapping(load_mapping("kis_sales_outbound", 1).mapping, INVOICE))
    assert bill.bill_no == "HUB-FP0001"
    assert bill.date == dt.date(2025, 3, 2)
    assert bill.invoice_no == "FP0001"
    assert [line.material_code for line in bill.lines] == ["M-01", "M-02"]
    assert bill.total_amount == Decimal("52.03")
