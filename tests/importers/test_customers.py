"""Importing customer sheets into the real store (SQLite and PostgreSQL): counts, dedupe, the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import Workbook
from typer.testing import CliRunner

from crm_core.credit_code import make_credit_code
from crm_core.customers import upsert_customer
from crm_core.db import make_engine, session_scope
from crm_core.migrate import upgrade
from crm_core.models import Customer
from hub.cli import app
from hub.config import load_template
from hub.importers import import_customers

SHEET = load_template("excel_customers").model.streams.customers
runner = CliRunner()


def code(i: int) -> str:
    return make_credit_code(f"91310000{i:09d}")


def generate(path: Path, rows: int) -> dict[str, int]:
    """A CSV with Chinese headers: every 10th row repeats an earlier company (same code, other spelling),
    every 50th has a bad credit code, every 97th has no name. Returns the expected counts."""
    expected = {"created": 0, "merged": 0, "refused": 0}
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["客户名称", "统一社会信用代码", "行业", "省份", "客户等级", "备注"])
        for i in range(rows):
            if i % 97 == 96:
                writer.writerow(["", code(i), "机械", "江苏", "", "no name"])
                expected["refused"] += 1
            elif i % 50 == 7:
                writer.writerow([f"坏码公司{i}", "91310000ABCDEFGHIJ", "机械", "江苏", "", ""])
                expected["refused"] += 1
            elif i % 10 == 9 and (i - 5) % 97 != 96 and (i - 5) % 50 != 7:
                writer.writerow([f"（公司{i - 5}）有限公司 ", code(i - 5), "", "浙江", "A", ""])
                expected["merged"] += 1
            else:
                writer.writerow([f"公司{i}有限公司", code(i), "机械", "江苏", "3", ""])
                expected["created"] += 1
    return expected


@pytest.fixture
def store(empty_store_url: str) -> sa.Engine:
    upgrade(empty_store_url, "head")
    engine = make_engine(empty_store_url)
    yield engine
    engine.dispose()


def test_10k_rows_with_duplicates_and_bad_codes(store: sa.Engine, tmp_path: Path) -> None:
    sheet = tmp_path / "customers.csv"
    expected = generate(sheet, 10_000)
    report = tmp_path / "reports" / "import.csv"
    progress: list[tuple[int, int]] = []
    result = import_customers(
        store, sheet, SHEET, report_path=report, progress=lambda d, t: progress.append((d, t))
    )
    assert result.counts == {**expected, "total": 10_000}
    assert result.ignored_columns == ["备注"]
    assert progress[-1][0] == progress[-1][1] and len(progress) > 1  # batched, not one transaction per row
    with session_scope(store) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Customer)) == expected["created"]
        merged = session.scalar(sa.select(Customer).where(Customer.credit_code == code(4)))
        assert merged is not None and merged.tier == 1  # the better tier of the duplicate row wins
        assert (merged.industry, merged.province) == ("机械", "江苏")  # known values are kept
    with report.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10_000
    assert rows[0] == {
        "row": "2",
        "outcome": "created",
        "customer_code": rows[0]["customer_code"],
        "name": "公司0有限公司",
        "credit_code": code(0),
        "reason": "",
    }
    refused = [r for r in rows if r["outcome"] == "refused"]
    assert any("not a valid Unified Social Credit Code" in r["reason"] for r in refused)
    assert any(r["reason"] == "name is empty" for r in refused)
    dup = next(r for r in rows if r["row"] == "11")  # sheet row 11 = data row 9, a repeat of data row 4
    assert dup["outcome"] == "merged" and dup["reason"] == "same customer as row 6"


def test_xlsx_english_headers_merge_into_existing_customers(store: sa.Engine, tmp_path: Path) -> None:
    with session_scope(store) as session:
        existing, _ = upsert_customer(
            session, name="Acme Machinery Co., Ltd.", credit_code=code(1), industry="机械"
        )
        upsert_customer(session, name="北京星河科技有限公司")
        existing_code = existing.code
    workbook = Workbook()
    ws = workbook.active
    ws.append(["Customer Name", "Credit Code", "Province", "Tier"])
    ws.append(["ACME machinery", code(1), "上海", "B"])  # same code: merged, fills the province
    ws.append(["北京星河科技", None, "北京", 2])  # same normalised name: merged
    ws.append(["New Co", code(2), "广东", "Z"])  # bad tier: refused
    ws.append(["New Co", code(2), "广东", 4])
    ws.append([None, None, None, None])  # blank rows are skipped
    path = tmp_path / "customers.xlsx"
    workbook.save(path)
    result = import_customers(store, path, SHEET, report_path=tmp_path / "r.csv")
    outcomes = {r.row: (r.outcome, r.customer_code, r.reason) for r in result.rows}
    assert outcomes[2] == ("merged", existing_code, "")
    assert outcomes[3][0] == "merged"
    assert outcomes[4] == ("refused", "", "tier 'Z' is not 1-5 or A-E")
    assert outcomes[5][0] == "created"
    assert result.counts == {"created": 1, "merged": 2, "refused": 1, "total": 4}
    with session_scope(store) as session:
        acme = session.scalar(sa.select(Customer).where(Customer.code == existing_code))
        assert acme is not None and (acme.province, acme.tier) == ("上海", 2)
    # Importing the same sheet again creates nothing new.
    again = import_customers(store, path, SHEET)
    assert again.counts == {"created": 0, "merged": 3, "refused": 1, "total": 4}


def test_cli_counts_report_and_exit_codes(tmp_path: Path, fresh_sqlite_url: str) -> None:
    upgrade(fresh_sqlite_url, "head")
    sheet = tmp_path / "customers.csv"
    expected = generate(sheet, 300)
    report = tmp_path / "report.csv"
    result = runner.invoke(
        app,
        [
            "import",
            "customers",
            str(sheet),
            "--database-url",
            fresh_sqlite_url,
            "--report",
            str(report),
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output  # some rows were refused
    payload = json.loads(result.output)
    assert payload["counts"] == {**expected, "total": 300}
    assert payload["report"] == str(report) and report.exists()

    result = runner.invoke(app, ["import", "customers", str(sheet), "--database-url", fresh_sqlite_url])
    assert result.exit_code == 1
    assert "Row-level report" in result.output

    no_name = tmp_path / "bad.csv"
    no_name.write_text("公司,信用\nA,B\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "customers", str(no_name), "--database-url", fresh_sqlite_url])
    assert result.exit_code == 2
    assert "no column holds the customer name" in result.output
    assert "客户名称" in result.output
