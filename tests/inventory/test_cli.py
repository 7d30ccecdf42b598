"""``hub pull inventory`` and ``hub promise`` against a real sshd, a real PostgreSQL store and a hub.yaml."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crm_core.customers import upsert_customer
from crm_core.db import session_scope
from crm_core.models import Product, SalesOrder, SalesOrderLine
from hub.cli.main import app
from tests.inventory.conftest import InvStore
from tests.inventory.test_pull_sftp import csv_bytes

pytestmark = pytest.mark.sshd


def _hub_yaml(tmp_path: Path, sshd, drop: Path) -> Path:  # type: ignore[no-untyped-def]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line() + "\n")
    config = tmp_path / "hub.yaml"
    config.write_text(
        f"""
version: 1
connections:
  erp_drop:
    template: erp_sftp_csv
    connection:
      host: {sshd.host}
      port: {sshd.port}
      username: {sshd.user}
      password: null
      private_key_path: {sshd.client_key}
      known_hosts: {known_hosts}
      root: {drop}
""",
        encoding="utf-8",
    )
    return config


def test_pull_inventory_then_promise(
    pg_store: InvStore, sshd, tmp_path: Path, drop: Path, put_file: Callable[..., Path], monkeypatch
) -> None:
    monkeypatch.setenv("HUB_CONFIG", str(_hub_yaml(tmp_path, sshd, drop)))
    monkeypatch.setenv("HUB_DATABASE_URL", pg_store.url)
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))
    put_file(drop, "inventory/INV_1.csv", csv_bytes(300), done=True)
    runner = CliRunner()

    pulled = runner.invoke(app, ["pull", "inventory", "--json"])
    assert pulled.exit_code == 0, pulled.output
    [row] = json.loads(pulled.output)["files"]
    assert (row["source"], row["status"], row["rows_loaded"]) == ("erp_drop", "loaded", 300)
    assert (drop / "archive/inventory/INV_1.csv").exists()

    with session_scope(pg_store.engine) as s:
        customer, _ = upsert_customer(s, name="杭州客户有限公司", tier=2)
        product = s.query(Product).filter_by(erp_material_code="1.01.001").one()
        order = SalesOrder(number="SO-1", customer_id=customer.id, order_date=dt.date(2025, 6, 2))
        order.lines.append(
            SalesOrderLine(
                line_no=1,
                product_id=product.id,
                quantity=Decimal("5"),
                unit_price=Decimal("1"),
                tax_rate=Decimal("0.13"),
                requested_date=dt.date(2025, 6, 10),
            )  # fmt: skip
        )
        s.add(order)
    settings = tmp_path / "promise.yaml"
    settings.write_text("handling_days: 0\ndefault_shipping_days: 1\n", encoding="utf-8")
    promised = runner.invoke(app, ["promise", "--today", "2025-06-09", "--settings", str(settings), "--json"])
    assert promised.exit_code == 0, promised.output
    out = json.loads(promised.output)
    assert (out["lines_promised"], out["lines_late"], out["written"], out["events"]) == (1, 0, 1, 1)
    again = json.loads(
        runner.invoke(app, ["promise", "--today", "2025-06-09", "--settings", str(settings), "--json"]).output
    )
    assert (again["written"], again["events"]) == (0, 0)
    human = runner.invoke(app, ["promise", "--today", "2025-06-09", "--dry-run"])
    assert human.exit_code == 0 and "Promised 1 line(s)" in human.output


def test_pull_unknown_connection_is_a_config_error(
    pg_store: InvStore, sshd, tmp_path: Path, drop: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HUB_CONFIG", str(_hub_yaml(tmp_path, sshd, drop)))
    monkeypatch.setenv("HUB_DATABASE_URL", pg_store.url)
    result = CliRunner().invoke(app, ["pull", "inventory", "--connection", "nope", "--json"])
    assert result.exit_code == 2
    assert "no connection named 'nope'" in json.loads(result.output)["error"]
