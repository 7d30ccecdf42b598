"""A migrated store with a small catalog (materials and warehouses), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import pytest
import sqlalchemy as sa

import crm_core  # noqa: F401  (flush rules)
from crm_core.db import make_engine, session_scope
from crm_core.migrate import upgrade
from crm_core.models import Product, Warehouse

MATERIALS = ("1.01.001", "1.01.002", "1.01.003", "2.02.001")
WAREHOUSES = ("WH01", "WH02")


@dataclass
class InvStore:
    """The store under test and helpers to look into it."""

    engine: sa.Engine
    url: str

    def rows(self, sql: str, **params: object) -> list[sa.Row[tuple[object, ...]]]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))

    def scalar(self, sql: str, **params: object) -> object:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar_one()

    def snapshots(self, source: str) -> list[tuple[int, str]]:
        return [
            (int(r.id), str(r.status))
            for r in self.rows(
                "SELECT id, status FROM inventory_snapshots WHERE source = :s ORDER BY id", s=source
            )
        ]

    def positions(self, snapshot_id: int) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(
                sa.text(
                    "SELECT material_code, warehouse_code, lot, on_hand, reserved FROM inventory_positions "
                    "WHERE snapshot_id = :s ORDER BY material_code, warehouse_code, lot"
                ),
                conn,
                params={"s": snapshot_id},
            )


def _seed(engine: sa.Engine) -> None:
    with session_scope(engine) as session:
        for n, code in enumerate(MATERIALS):
            session.add(
                Product(
                    sku=f"SKU-{code}",
                    name=f"物料 {code}",
                    erp_material_code=code,
                    lead_time_days=5 + n,
                    safety_stock=Decimal("0"),
                )
            )
        for code in WAREHOUSES:
            session.add(Warehouse(code=code, name=f"仓库 {code}", erp_stock_code=code))


@pytest.fixture
def inv_store(empty_store_url: str) -> Iterator[InvStore]:
    """Migrated store (SQLite and PostgreSQL) with the catalog above."""
    upgrade(empty_store_url)
    engine = make_engine(empty_store_url)
    _seed(engine)
    yield InvStore(engine, empty_store_url)
    engine.dispose()


@pytest.fixture
def pg_store(fresh_pg_url: str) -> Iterator[InvStore]:
    """Migrated PostgreSQL store with the catalog above."""
    upgrade(fresh_pg_url)
    engine = make_engine(fresh_pg_url)
    _seed(engine)
    yield InvStore(engine, fresh_pg_url)
    engine.dispose()


# The real OpenSSH sshd and drop helpers of the SFTP connector's tests, reused as they are.
from tests.connectors.filedrop.conftest import downloads, drop, put_file, sshd  # noqa: E402, F401
from tests.connectors.kis.conftest import admin, make_client, make_settings, sandbox  # noqa: E402, F401
