"""Canonical invoice documents as plain frozen records, read from the store in a few set-based queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_core.models import Customer, Invoice, InvoiceLine, Product


@dataclass(frozen=True)
class DocumentLine:
    line_no: int
    sku: str
    material_code: str | None
    unit: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal
    net_amount: Decimal
    tax_amount: Decimal


@dataclass(frozen=True)
class InvoiceDocument:
    """Everything a push needs about one invoice, detached from the session."""

    id: int
    number: str
    invoice_number: str | None
    invoice_type: str
    status: str
    issue_date: date | None
    customer_id: int
    customer_code: str
    customer_name: str
    credit_code: str | None
    total_net: Decimal
    total_tax: Decimal
    total_gross: Decimal
    lines: tuple[DocumentLine, ...]
    row_hash: str | None = None  # the invoice's content hash when read (crm_core.invoice_hash)


def load_documents(session: Session, invoice_ids: Iterable[int]) -> dict[int, InvoiceDocument]:
    """The documents for ``invoice_ids`` (missing ids are simply absent): two queries, any batch size."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return {}
    heads = session.execute(
        sa.select(
            Invoice.id,
            Invoice.number,
            Invoice.invoice_number,
            Invoice.invoice_type,
            Invoice.status,
            Invoice.issue_date,
            Invoice.customer_id,
            Customer.code,
            Customer.name,
            Customer.credit_code,
            Invoice.total_net,
            Invoice.total_tax,
            Invoice.total_gross,
            Invoice.row_hash,
        )
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(Invoice.id.in_(ids))
    ).all()
    lines: dict[int, list[DocumentLine]] = defaultdict(list)
    for row in session.execute(
        sa.select(
            InvoiceLine.invoice_id,
            InvoiceLine.line_no,
            Product.sku,
            Product.erp_material_code,
            Product.unit,
            InvoiceLine.quantity,
            InvoiceLine.unit_price,
            InvoiceLine.tax_rate,
            InvoiceLine.net_amount,
            InvoiceLine.tax_amount,
        )
        .join(Product, Product.id == InvoiceLine.product_id)
        .where(InvoiceLine.invoice_id.in_(ids))
        .order_by(InvoiceLine.invoice_id, InvoiceLine.line_no)
    ):
        lines[row.invoice_id].append(
            DocumentLine(
                line_no=row.line_no,
                sku=row.sku,
                material_code=row.erp_material_code,
                unit=row.unit,
                quantity=row.quantity,
                unit_price=row.unit_price,
                tax_rate=row.tax_rate,
                net_amount=row.net_amount,
                tax_amount=row.tax_amount,
            )
        )
    return {
        h.id: InvoiceDocument(
            id=h.id,
            number=h.number,
            invoice_number=h.invoice_number,
            invoice_type=h.invoice_type,
            status=h.status,
            issue_date=h.issue_date,
            customer_id=h.customer_id,
            customer_code=h.code,
            customer_name=h.name,
            credit_code=h.credit_code,
            total_net=h.total_net,
            total_tax=h.total_tax,
            total_gross=h.total_gross,
            lines=tuple(lines.get(h.id, ())),
            row_hash=h.row_hash,
        )
        for h in heads
    }
