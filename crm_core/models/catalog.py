"""Products/materials and warehouses."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_core.models.base import Base, Timestamped
from crm_core.types import Quantity, TaxRate


class Product(Timestamped, Base):
    """A sellable material. ``erp_material_code`` is the ERP's material number (FNumber)."""

    __tablename__ = "products"
    __table_args__ = (
        sa.CheckConstraint("lead_time_days >= 0", name="lead_time_non_negative"),
        sa.CheckConstraint("safety_stock >= 0", name="safety_stock_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    spec: Mapped[str | None] = mapped_column(sa.String(200))
    erp_material_code: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    unit: Mapped[str] = mapped_column(sa.String(16), default="PCS")
    lead_time_days: Mapped[int] = mapped_column(default=10)
    safety_stock: Mapped[Decimal] = mapped_column(Quantity, default=Decimal("0"))
    default_tax_rate: Mapped[Decimal] = mapped_column(TaxRate, default=Decimal("0.13"))
    active: Mapped[bool] = mapped_column(default=True)


class Warehouse(Base):
    __tablename__ = "warehouses"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    erp_stock_code: Mapped[str | None] = mapped_column(sa.String(32), unique=True)
