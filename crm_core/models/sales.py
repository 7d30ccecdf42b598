"""Opportunities (商机) through the six stages, versioned quotes (报价单) and sales orders."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_core.models.base import Base, Timestamped
from crm_core.types import Money, Quantity, TaxRate, TZDateTime, UnitPrice

# The six stages in order, then the terminal "lost" stage (DOMAIN.md).
STAGES = ("线索", "接触", "需求确认", "方案提交", "谈判", "成交")
LOST = "输单"
ALL_STAGES = (*STAGES, LOST)
QUOTE_STATUSES = ("draft", "sent", "accepted", "rejected", "superseded")
ORDER_STATUSES = ("open", "partially_delivered", "delivered", "invoiced", "cancelled")


class Opportunity(Timestamped, Base):
    __tablename__ = "opportunities"
    __table_args__ = (sa.CheckConstraint(f"stage IN {ALL_STAGES}", name="stage_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(32), unique=True)  # OPP-2026-000123
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    stage: Mapped[str] = mapped_column(sa.String(8), default=STAGES[0])
    owner: Mapped[str | None] = mapped_column(sa.String(64))
    amount: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    expected_close: Mapped[date | None] = mapped_column(sa.Date)
    closed_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    lost_reason: Mapped[str | None] = mapped_column(sa.String(200))

    history: Mapped[list[OpportunityStageChange]] = relationship(
        back_populates="opportunity", order_by="OpportunityStageChange.id", cascade="all, delete-orphan"
    )


class OpportunityStageChange(Base):
    """One stage transition; skips and regressions are derived from these rows."""

    __tablename__ = "opportunity_stage_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(
        sa.ForeignKey("opportunities.id", ondelete="CASCADE"), index=True
    )
    from_stage: Mapped[str | None] = mapped_column(sa.String(8))
    to_stage: Mapped[str] = mapped_column(sa.String(8))
    changed_at: Mapped[datetime] = mapped_column(TZDateTime())
    changed_by: Mapped[str | None] = mapped_column(sa.String(64))

    opportunity: Mapped[Opportunity] = relationship(back_populates="history")


class Quote(Timestamped, Base):
    """A quote is always linked to an opportunity; its content lives in immutable versions."""

    __tablename__ = "quotes"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(32), unique=True)  # QT-2026-000123
    opportunity_id: Mapped[int] = mapped_column(sa.ForeignKey("opportunities.id"), index=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)

    versions: Mapped[list[QuoteVersion]] = relationship(
        back_populates="quote", order_by="QuoteVersion.version", cascade="all, delete-orphan"
    )


class QuoteVersion(Timestamped, Base):
    """One explicit version of a quote. Once sent it is never edited: a change is a new version."""

    __tablename__ = "quote_versions"
    __table_args__ = (
        sa.UniqueConstraint("quote_id", "version"),
        sa.CheckConstraint(f"status IN {QUOTE_STATUSES}", name="status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    quote_id: Mapped[int] = mapped_column(sa.ForeignKey("quotes.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(sa.String(16), default="draft")
    quote_date: Mapped[date] = mapped_column(sa.Date)
    valid_until: Mapped[date | None] = mapped_column(sa.Date)
    sent_at: Mapped[datetime | None] = mapped_column(TZDateTime())
    total_net: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    total_tax: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    region: Mapped[str | None] = mapped_column(sa.String(32))

    quote: Mapped[Quote] = relationship(back_populates="versions")
    lines: Mapped[list[QuoteLine]] = relationship(
        back_populates="quote_version", order_by="QuoteLine.line_no", cascade="all, delete-orphan"
    )


class QuoteLine(Base):
    __tablename__ = "quote_lines"
    __table_args__ = (sa.UniqueConstraint("quote_version_id", "line_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    quote_version_id: Mapped[int] = mapped_column(sa.ForeignKey("quote_versions.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column()
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("products.id"), index=True)
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    unit_price: Mapped[Decimal] = mapped_column(UnitPrice)
    tax_rate: Mapped[Decimal] = mapped_column(TaxRate)
    net_amount: Mapped[Decimal] = mapped_column(Money)
    tax_amount: Mapped[Decimal] = mapped_column(Money)
    requested_date: Mapped[date | None] = mapped_column(sa.Date)

    quote_version: Mapped[QuoteVersion] = relationship(back_populates="lines")


class SalesOrder(Timestamped, Base):
    __tablename__ = "sales_orders"
    __table_args__ = (sa.CheckConstraint(f"status IN {ORDER_STATUSES}", name="status_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(32), unique=True)  # SO-2026-000123
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    opportunity_id: Mapped[int | None] = mapped_column(sa.ForeignKey("opportunities.id"))
    quote_version_id: Mapped[int | None] = mapped_column(sa.ForeignKey("quote_versions.id"))
    order_date: Mapped[date] = mapped_column(sa.Date)
    requested_date: Mapped[date | None] = mapped_column(sa.Date)
    region: Mapped[str | None] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(24), default="open")
    total_net: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    total_tax: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))

    lines: Mapped[list[SalesOrderLine]] = relationship(
        back_populates="order", order_by="SalesOrderLine.line_no", cascade="all, delete-orphan"
    )


class SalesOrderLine(Base):
    __tablename__ = "sales_order_lines"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "line_no"),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("sales_orders.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column()
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("products.id"), index=True)
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    delivered_quantity: Mapped[Decimal] = mapped_column(Quantity, default=Decimal("0"))
    unit_price: Mapped[Decimal] = mapped_column(UnitPrice)
    tax_rate: Mapped[Decimal] = mapped_column(TaxRate)
    net_amount: Mapped[Decimal] = mapped_column(Money)
    tax_amount: Mapped[Decimal] = mapped_column(Money)
    requested_date: Mapped[date | None] = mapped_column(sa.Date)

    order: Mapped[SalesOrder] = relationship(back_populates="lines")
