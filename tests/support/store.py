"""A migrated store holding one product per ERP material code: the start of every push test world."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from crm_core.db import make_engine, session_scope
from crm_core.migrate import upgrade
from crm_core.models import Product


def store_with_products(url: str, material_codes: Sequence[str]) -> tuple[sa.Engine, list[int]]:
    """Migrate the store at ``url`` and add a product ``SKU-<code>`` per code; returns (engine, ids)."""
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        products = [
            Product(sku=f"SKU-{code}", name=code, erp_material_code=code, unit="PCS")
            for code in material_codes
        ]
        session.add_all(products)
        session.flush()
        return engine, [p.id for p in products]
