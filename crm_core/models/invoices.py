"""Invoices (发票) with an explicit state machine: draft -> issued (已开票) -> red_letter / voided."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_core.models.base import Base, Timestamped
from crm_core.types import Money, Quantity, TaxRate, UnitPrice

INVOICE_STATUSES = ("draft", "issued", "red_letter", "voided")
INVOICE_TYPES = ("vat_special", "vat_normal")  # 增值税专用发票 / 普通发票
# Allowed transitions; anything else raises IllegalTransition.
INVOICE_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("issued", "voided"),
    "issued": ("red_letter", "voided"),
    "red_letter": (),
    "voided": (),
}


class Invoice(Timestamped, Base):
    """A sales invoice. Totals always equal the sum of the lines (tax per line, then summed)."""

    __tablename__ = "invoices"
    __table_args__ = (
        sa.CheckConstraint(f"status IN {INVOICE_STATUSES}", name="status_known"),
        sa.CheckConstraint(f"invoice_type IN {INVOICE_TYPES}", name="type_known"),
        # Tolerance because SQLite keeps NUMERIC as binary floating point; values round-trip as Decimal.
        sa.CheckConstraint("abs(total_gross - total_net - total_tax) < 0.005", name="gross_is_net_plus_tax"),
        sa.Index("ix_invoices_status_issue_date", "status", "issue_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(32), unique=True)  # canonical: INV-2026-000123
    invoice_number: Mapped[str | None] = mapped_column(sa.String(32), unique=True)  # 发票号码, set on issue
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sales_orders.id"), index=True)
    invoice_type: Mapped[str] = mapped_column(sa.String(16), default="vat_special")
    status: Mapped[str] = mapped_column(sa.String(16), default="draft")
    issue_date: Mapped[date | None] = mapped_column(sa.Date)
    total_net: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    total_tax: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    total_gross: Mapped[Decimal] = mapped_column(Money, default=Decimal("0.00"))
    red_letter_of_id: Mapped[int | None] = mapped_column(sa.ForeignKey("invoices.id"), index=True)
    # sha256 of the document's content; lets bulk upserts and pushes skip unchanged documents.
    row_hash: Mapped[str | None] = mapped_column(sa.String(64))

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.line_no", cascade="all, delete-orphan"
    )


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (sa.UniqueConstraint("invoice_id", "line_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("invoices.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column()
    product_id: Mapped[int] = mapped_column(sa.ForeignKey("products.id"), index=True)
    order_line_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sales_order_lines.id"))
    quantity: Mapped[Decimal] = mapped_column(Quantity)
    unit_price: Mapped[Decimal] = mapped_column(UnitPrice)  # net of VAT
    tax_rate: Mapped[Decimal] = mapped_column(TaxRate)
    net_amount: Mapped[Decimal] = mapped_column(Money)
    tax_amount: Mapped[Decimal] = mapped_column(Money)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")
