"""A migrated store with a little base data, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import sqlalchemy as sa

import crm_core  # noqa: F401  (flush rules)
from crm_core.customers import upsert_customer
from crm_core.db import make_engine, session_scope
from crm_core.migrate import upgrade
from crm_core.models import Product

VALID_CODE = "91110000600037341L"


@dataclass
class Store:
    engine: sa.Engine
    customer_id: int
    product_id: int

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.fixture
def store(empty_store_url: str) -> Iterator[Store]:
    upgrade(empty_store_url)
    engine = make_engine(empty_store_url)
    with session_scope(engine) as session:
        customer, _ = upsert_customer(session, name="上海华东紧固件有限公司", credit_code=VALID_CODE, tier=1)
        product = Product(
            sku="BOLT-M8x30",
            name="六角螺栓 M8x30",
            erp_material_code="1.01.001",
            unit="PCS",
            lead_time_days=7,
            safety_stock=Decimal("100"),
        )
        session.add(product)
        session.flush()
        ids = (customer.id, product.id)
    yield Store(engine, *ids)
    engine.dispose()
