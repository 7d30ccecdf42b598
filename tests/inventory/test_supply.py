"""Incoming supply from an SFTP CSV drop, end to end: a real OpenSSH sshd on loopback, the store on SQLite
and on a real PostgreSQL, and the delivery promises that read it.

Files are written in the dialect of the ``incoming_supply`` block the shipped ``erp_sftp_csv`` template
carries commented out (GB18030, Chinese headers), so the template, the config model, the connector, the
validation and the store are exercised together.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from connectors.filedrop import SftpDropClient
from crm_core.customers import upsert_customer
from crm_core.db import session_scope
from crm_core.models import IncomingSupply, Product, SalesOrder, SalesOrderLine
from hub.cli.main import app
from hub.config.models.files import CsvDropStream
from hub.config.project import load_project
from hub.inventory.pull import Catalog
from hub.inventory.supply import (
    SupplyPolicy,
    pull_supply_sftp,
    registry_source,
    supply_dialect,
    supply_sources,
)
from hub.promises import PromiseConfig
from hub.promises.store import run_promises
from tests.inventory.conftest import MATERIALS, WAREHOUSES, InvStore

pytestmark = pytest.mark.sshd

SOURCE = "test_drop"
TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "erp_sftp_csv.yaml"
HEADER = "单据编号,行号,单据类型,物料编码,仓库编码,数量,预计到货日期,状态\n"
TODAY = dt.date(2025, 6, 9)  # a Monday; no statutory holiday in the following weeks
CONFIG = PromiseConfig(today=TODAY, handling_days=1, default_shipping_days=2)
PutFile = Callable[..., Path]
Row = tuple[str, str, str, str, str, str, str, str]


def template_stream() -> dict[str, Any]:
    """The template's commented-out ``incoming_supply`` block, uncommented."""
    lines = TEMPLATE.read_text(encoding="utf-8").splitlines()
    start = lines.index("  # incoming_supply:")
    block = [line.replace("  # ", "", 1) for line in lines[start:] if line.startswith("  # ")]
    return dict(yaml.safe_load("\n".join(block))["incoming_supply"])


DIALECT = supply_dialect(CsvDropStream.model_validate(template_stream()), where="erp_sftp_csv")


def csv_bytes(rows: list[Row]) -> bytes:
    return (HEADER + "".join(",".join(r) + "\n" for r in rows)).encode("gb18030")


def good_rows(n: int, *, eta: str = "2025-07-01", prefix: str = "PO") -> list[Row]:
    return [
        (f"{prefix}-{i:04d}", "1", "采购", MATERIALS[i % 3], WAREHOUSES[i % 2], f"{i % 50 + 1}", eta, "审核")
        for i in range(n)
    ]


def pull(store: InvStore, sshd, drop: Path, downloads: Path, policy: SupplyPolicy | None = None):  # type: ignore[no-untyped-def]
    settings = sshd.settings(drop, downloads, pattern="supply/SUPPLY_*.csv")
    with SftpDropClient(settings, sleep=lambda _s: None) as client:
        return pull_supply_sftp(
            store.engine,
            client,
            DIALECT,
            source=SOURCE,
            policy=policy,
            catalog=Catalog.from_store(store.engine),
        )


def supply_rows(store: InvStore, source: str = SOURCE) -> list[tuple[Any, ...]]:
    rows = store.rows(
        "SELECT kind, reference, material_code, warehouse_code, quantity, eta, snapshot_id FROM incoming_supply "
        "WHERE source = :s ORDER BY reference",
        s=source,
    )
    return [
        (r[0], r[1], r[2], r[3], Decimal(str(r[4])), dt.date.fromisoformat(str(r[5])), r[6]) for r in rows
    ]


def server_files(drop: Path) -> list[str]:
    return sorted(str(p.relative_to(drop)) for p in drop.rglob("*") if p.is_file())


def order_line(store: InvStore, material: str, qty: str) -> int:
    """An open order line of a tier-2 customer for ``qty`` of ``material``; returns the line id."""
    with session_scope(store.engine) as s:
        customer, _ = upsert_customer(s, name="杭州客户有限公司", tier=2)
        product = s.query(Product).filter_by(erp_material_code=material).one()
        order = SalesOrder(number=f"SO-{material}", customer_id=customer.id, order_date=dt.date(2025, 6, 2))
        line = SalesOrderLine(
            line_no=1, product_id=product.id, quantity=Decimal(qty), unit_price=Decimal("1"),
            tax_rate=Decimal("0.13"),
        )  # fmt: skip
        order.lines.append(line)
        s.add(order)
        s.flush()
        return int(line.id)


def promise(store: InvStore, line_id: int) -> tuple[str, dt.date, dt.date]:
    run_promises(store.engine, CONFIG)
    [row] = store.rows(
        "SELECT reason, ready_date, promised_date FROM delivery_promises WHERE line_kind = 'order' "
        "AND line_id = :i",
        i=line_id,
    )
    return str(row[0]), dt.date.fromisoformat(str(row[1])), dt.date.fromisoformat(str(row[2]))


# ------------------------------------------------------------------------------------------------- tests


def test_template_block_is_a_valid_optional_stream() -> None:
    """Uncommented, the template's block validates; shipped, the stream is off (commented out)."""
    stream = CsvDropStream.model_validate(template_stream())
    assert stream.writes == "incoming_supply" and stream.path == "supply/SUPPLY_*.csv"
    assert {"source_doc_no", "supply_kind", "material_code", "qty", "expected_date"} <= set(
        DIALECT.required_columns
    )
    with pytest.raises(ValueError, match="supply_kind"):
        CsvDropStream.model_validate({**template_stream(), "columns": {"单据编号": "source_doc_no", "物料编码": "material_code", "数量": "qty", "预计到货日期": "expected_date"}})  # fmt: skip


def test_supply_file_pulled_once_and_used_by_promises(
    inv_store: InvStore, sshd, drop: Path, downloads: Path, put_file: PutFile
) -> None:
    line_id = order_line(inv_store, "2.02.001", "30")  # no stock of 2.02.001 anywhere
    assert promise(inv_store, line_id) == ("made_to_order", dt.date(2025, 6, 19), dt.date(2025, 6, 24))
    content = csv_bytes(
        [
            ("PO-1", "1", "采购", "2.02.001", "WH01", "40", "2025-06-16", "审核"),
            ("MO-7", "", "production", "1.01.001", "", "10.5", "2025-06-20", ""),
            # Closed: would cover the line on 06-11 if it were loaded.
            ("PO-0", "1", "purchase", "2.02.001", "WH02", "100", "2025-06-11", "已关闭"),
        ]
    )
    put_file(drop, "supply/SUPPLY_1.csv", content, done=True)
    report = pull(inv_store, sshd, drop, downloads)
    [loaded] = report.loaded
    assert (loaded.rows_read, loaded.rows_loaded, loaded.rows_rejected, loaded.rows_closed) == (3, 2, 0, 1)
    assert supply_rows(inv_store) == [
        ("production", "MO-7", "1.01.001", None, Decimal("10.5"), dt.date(2025, 6, 20), None),
        ("purchase", "PO-1#1", "2.02.001", "WH01", Decimal("40"), dt.date(2025, 6, 16), None),
    ]
    assert server_files(drop) == ["archive/supply/SUPPLY_1.csv", "archive/supply/SUPPLY_1.csv.done"]
    [registered] = inv_store.rows("SELECT source, path, size, status FROM processed_files")
    assert tuple(registered) == (registry_source(SOURCE), "supply/SUPPLY_1.csv", len(content), "loaded")
    assert not [p for p in downloads.rglob("*") if p.is_file()]

    # Covered only by the purchase order: ready on its ETA (Mon 06-16), + 1 handling + 2 shipping days.
    assert promise(inv_store, line_id) == ("incoming_supply", dt.date(2025, 6, 16), dt.date(2025, 6, 19))

    # Re-running does nothing; the same file dropped again is recognised by its content.
    assert pull(inv_store, sshd, drop, downloads).files == []
    put_file(drop, "supply/SUPPLY_1.csv", content, done=True)
    assert [f.status for f in pull(inv_store, sshd, drop, downloads).files] == ["duplicate"]
    assert len(supply_rows(inv_store)) == 2
    assert inv_store.scalar("SELECT count(*) FROM processed_files") == 1


def test_a_second_file_replaces_the_first(
    inv_store: InvStore, sshd, drop: Path, downloads: Path, put_file: PutFile
) -> None:
    line_id = order_line(inv_store, "2.02.001", "30")
    with session_scope(inv_store.engine) as s:  # another source's receipts are not this file's to replace
        s.add(IncomingSupply(source="kis", kind="purchase", reference="PO-K", material_code="1.01.002",
                             quantity=Decimal("5"), eta=dt.date(2025, 6, 30)))  # fmt: skip
    put_file(drop, "supply/SUPPLY_1.csv", csv_bytes([
        ("PO-1", "1", "采购", "2.02.001", "WH01", "40", "2025-06-23", ""),
        ("PO-1", "2", "采购", "1.01.001", "WH01", "5", "2025-06-23", ""),
        ("MO-1", "1", "生产", "1.01.002", "WH02", "8", "2025-06-25", ""),
    ]), done=True)  # fmt: skip
    assert [f.status for f in pull(inv_store, sshd, drop, downloads).files] == ["loaded"]
    assert promise(inv_store, line_id)[:2] == ("incoming_supply", dt.date(2025, 6, 23))

    put_file(drop, "supply/SUPPLY_2.csv", csv_bytes([
        ("PO-1", "1", "采购", "2.02.001", "WH01", "30", "2025-06-13", ""),  # pulled in, 10 fewer
        ("MO-2", "1", "生产", "1.01.003", "", "3", "2025-07-01", ""),
    ]), done=True)  # fmt: skip
    [result] = pull(inv_store, sshd, drop, downloads).files
    assert (result.status, result.outcome.previous_rows, result.outcome.rows_loaded) == ("loaded", 3, 2)  # type: ignore[union-attr]
    assert [(r[1], r[4], r[5]) for r in supply_rows(inv_store)] == [
        ("MO-2#1", Decimal("3"), dt.date(2025, 7, 1)),
        ("PO-1#1", Decimal("30"), dt.date(2025, 6, 13)),
    ]
    assert len(supply_rows(inv_store, "kis")) == 1
    assert promise(inv_store, line_id) == ("incoming_supply", dt.date(2025, 6, 13), dt.date(2025, 6, 18))


def test_bad_rows_quarantined_with_their_line_numbers(
    inv_store: InvStore, sshd, drop: Path, downloads: Path, put_file: PutFile
) -> None:
    rows = good_rows(200)  # lines 2..201
    rows += [
        ("PO-X1", "1", "采购", "9.99.999", "WH01", "5", "2025-07-01", ""),  # 202 unknown material
        ("PO-X2", "1", "采购", "1.01.001", "WH09", "5", "2025-07-01", ""),  # 203 unknown warehouse
        ("PO-X3", "1", "采购", "1.01.001", "WH01", "0", "2025-07-01", ""),  # 204 quantity not > 0
        ("PO-X4", "1", "采购", "1.01.001", "WH01", "-3", "2025-07-01", ""),  # 205 negative
        ("PO-X5", "1", "采购", "1.01.001", "WH01", "5", "2025-02-30", ""),  # 206 not a date
        ("PO-X6", "1", "借用", "1.01.001", "WH01", "5", "2025-07-01", ""),  # 207 unknown kind
        ("PO-X7", "1", "采购", "1.01.002", "WH01", "5", "2025-07-01", ""),  # 208 duplicate (order, line)
        ("PO-X7", "1", "采购", "1.01.003", "WH02", "6", "2025-07-02", ""),  # 209 its copy
        ("", "1", "采购", "1.01.001", "WH01", "5", "2025-07-01", ""),  # 210 no order number
        ("PO-X8", "1", "采购", "1.01.001", "WH01", "2e14", "2025-07-01", ""),  # 211 beyond Numeric(18, 4)
    ]
    put_file(drop, "supply/SUPPLY_1.csv", csv_bytes(rows), done=True)
    [result] = pull(inv_store, sshd, drop, downloads, SupplyPolicy(max_reject_share=0.05)).files
    assert result.status == "loaded"
    assert (result.outcome.rows_read, result.outcome.rows_loaded, result.outcome.rows_rejected) == (
        210,
        200,
        10,
    )  # type: ignore[union-attr]
    assert len(supply_rows(inv_store)) == 200
    quarantined = {
        r.source_ref: r.reasons if isinstance(r.reasons, list) else json.loads(r.reasons)
        for r in inv_store.rows(
            "SELECT source_ref, reasons FROM quarantine WHERE stream = :s", s=registry_source(SOURCE)
        )
    }
    assert sorted(quarantined) == [f"supply/SUPPLY_1.csv:{line}" for line in range(202, 212)]

    def why(line: int) -> set[tuple[str, str]]:
        return {(r["column"], r["value"]) for r in quarantined[f"supply/SUPPLY_1.csv:{line}"]}

    assert why(202) == {("material_code", "9.99.999")}
    assert why(203) == {("warehouse_code", "WH09")}
    assert why(204) == {("quantity", "0.0")} and why(205) == {("quantity", "-3.0")}
    assert why(206) == {("expected_date", "2025-02-30")}
    assert why(207) == {("kind", "借用")}
    assert {r["column"] for r in quarantined["supply/SUPPLY_1.csv:208"]} == {"order_line_unique"}
    assert {r["column"] for r in quarantined["supply/SUPPLY_1.csv:209"]} == {"order_line_unique"}
    assert {r["column"] for r in quarantined["supply/SUPPLY_1.csv:210"]} == {"source_doc_no"}
    assert why(211) == {("quantity", "200000000000000.0")}


def test_shrunken_or_mostly_bad_file_refused_and_previous_supply_kept(
    inv_store: InvStore, sshd, drop: Path, downloads: Path, put_file: PutFile
) -> None:
    put_file(drop, "supply/SUPPLY_1.csv", csv_bytes(good_rows(10)), done=True)
    assert [f.status for f in pull(inv_store, sshd, drop, downloads).files] == ["loaded"]
    before = supply_rows(inv_store)

    put_file(drop, "supply/SUPPLY_2.csv", csv_bytes(good_rows(4, eta="2025-06-20")), done=True)
    [shrunk] = pull(inv_store, sshd, drop, downloads).files
    assert shrunk.status == "refused" and "shrink from 10 to 4 rows" in shrunk.message
    assert supply_rows(inv_store) == before
    assert "failed/supply/SUPPLY_2.csv" in server_files(drop)

    bad = good_rows(10, eta="2025-06-20", prefix="MO")
    bad[3] = (*bad[3][:3], "9.99.999", *bad[3][4:])  # type: ignore[assignment]
    put_file(drop, "supply/SUPPLY_3.csv", csv_bytes(bad), done=True)
    [mostly_bad] = pull(inv_store, sshd, drop, downloads).files  # 1 of 10 > the default 1%
    assert mostly_bad.status == "refused" and "1 of 10 rows rejected" in mostly_bad.message
    assert supply_rows(inv_store) == before
    refusals = inv_store.rows(
        "SELECT source_ref FROM quarantine WHERE stream = :s ORDER BY id", s=registry_source(SOURCE)
    )
    assert [r.source_ref for r in refusals] == [
        "supply/SUPPLY_2.csv:0",
        "supply/SUPPLY_3.csv:5",
        "supply/SUPPLY_3.csv:0",
    ]
    statuses = inv_store.rows("SELECT path, status FROM processed_files ORDER BY id")
    assert [tuple(r) for r in statuses] == [
        ("supply/SUPPLY_1.csv", "loaded"),
        ("supply/SUPPLY_2.csv", "refused"),
        ("supply/SUPPLY_3.csv", "refused"),
    ]

    # A real drop is let through for one run with a higher max_shrink.
    put_file(drop, "supply/SUPPLY_4.csv", csv_bytes(good_rows(4, eta="2025-06-20")), done=True)
    [forced] = pull(inv_store, sshd, drop, downloads, SupplyPolicy(max_shrink=0.9)).files
    assert forced.status == "loaded" and len(supply_rows(inv_store)) == 4


def _hub_yaml(tmp_path: Path, sshd, drop: Path, *, supply: bool = True) -> Path:  # type: ignore[no-untyped-def]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line() + "\n")
    streams = {"streams": {"incoming_supply": template_stream()}} if supply else {}
    connection = {
        "template": "erp_sftp_csv",
        "connection": {
            "host": sshd.host, "port": sshd.port, "username": sshd.user, "password": None,
            "private_key_path": str(sshd.client_key), "known_hosts": str(known_hosts), "root": str(drop),
        },
        **streams,
    }  # fmt: skip
    config = tmp_path / "hub.yaml"
    config.write_text(
        yaml.safe_dump({"version": 1, "connections": {"erp_drop": connection}}, allow_unicode=True),
        encoding="utf-8",
    )
    return config


def test_hub_pull_supply(
    pg_store: InvStore, sshd, tmp_path: Path, drop: Path, put_file: PutFile, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HUB_DATABASE_URL", pg_store.url)
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    monkeypatch.setenv("HUB_CONFIG", str(_hub_yaml(tmp_path, sshd, drop, supply=False)))
    off = runner.invoke(app, ["pull", "supply", "--json"])
    assert off.exit_code == 2 and "no connection has an enabled incoming_supply stream" in off.output

    monkeypatch.setenv("HUB_CONFIG", str(_hub_yaml(tmp_path, sshd, drop)))
    put_file(drop, "supply/SUPPLY_1.csv", csv_bytes(good_rows(30)), done=True)
    pulled = runner.invoke(app, ["pull", "supply", "--json"])
    assert pulled.exit_code == 0, pulled.output
    [row] = json.loads(pulled.output)["files"]
    assert (row["source"], row["status"], row["rows_loaded"], row["previous_rows"]) == (
        "erp_drop",
        "loaded",
        30,
        0,
    )
    assert pg_store.scalar("SELECT count(*) FROM incoming_supply WHERE source = 'erp_drop'") == 30

    put_file(drop, "supply/SUPPLY_2.csv", csv_bytes(good_rows(10)), done=True)
    refused = runner.invoke(app, ["pull", "supply"])
    assert refused.exit_code == 1 and "refused" in refused.output
    assert pg_store.scalar("SELECT count(*) FROM incoming_supply WHERE source = 'erp_drop'") == 30
    # The inventory pull is not confused by the supply stream on the same connection.
    assert runner.invoke(app, ["pull", "inventory", "--json"]).exit_code == 0


def test_dagster_supply_asset_runs_before_the_promises(
    pg_store: InvStore, sshd, tmp_path: Path, drop: Path, put_file: PutFile, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from jobs.definitions import build_definitions
    from jobs.inventory import PROMISES_KEY, supply_key

    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HUB_DATABASE_URL", pg_store.url)
    config = _hub_yaml(tmp_path, sshd, drop)
    [source] = supply_sources(load_project(config, check_env=False))
    defs = build_definitions(str(config))  # as `dagster dev -m jobs.definitions` loads a hub.yaml
    graph = defs.resolve_asset_graph()
    assert supply_key("erp_drop") in graph.get(PROMISES_KEY).parent_keys
    line_id = order_line(pg_store, "2.02.001", "5")
    eta = dt.date.today() + dt.timedelta(days=20)
    # The asset promises as of the real today: years chinese-calendar may not know yet get an override.
    years = {y: {"holidays": [], "workdays": []} for y in range(eta.year - 1, eta.year + 2)}
    (config.parent / "promises.yaml").write_text(yaml.safe_dump({"calendar": {"years": years}}))
    put_file(drop, "supply/SUPPLY_1.csv", csv_bytes([
        ("PO-9", "1", "采购", "2.02.001", "WH01", "50", eta.isoformat(), ""),
    ]), done=True)  # fmt: skip
    result = defs.resolve_job_def("erp_drop_incoming_supply").execute_in_process()
    assert result.success
    materialized = {
        e.step_materialization_data.materialization.asset_key: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert materialized[supply_key("erp_drop")]["rows_loaded"].value == 1
    assert materialized[PROMISES_KEY]["lines_promised"].value == 1
    [reason] = pg_store.rows("SELECT reason FROM delivery_promises WHERE line_id = :i", i=line_id)
    assert reason[0] == "incoming_supply"
