"""Invoices: create a draft, issue it (已开票), red-letter or void it. The rules live in the flush hook."""

from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from crm_core.models import Customer, Invoice, InvoiceLine
from crm_core.numbering import next_number
from crm_core.sales import LineInput


def create_invoice(
    session: Session,
    customer: Customer,
    lines: list[LineInput],
    *,
    year: int,
    order_id: int | None = None,
    invoice_type: str = "vat_special",
) -> Invoice:
    """A draft invoice numbered ``INV-<year>-NNNNNN``; amounts per line, totals from the lines."""
    invoice = Invoice(
        number=next_number(session, "INV", year),
        customer_id=customer.id,
        order_id=order_id,
        invoice_type=invoice_type,
        status="draft",
    )
    for no, line in enumerate(lines, start=1):
        invoice.lines.append(
            InvoiceLine(
                line_no=no,
                product_id=line.product_id,
                quantity=line.quantity,
                unit_price=line.unit_price,
                tax_rate=line.tax_rate,
            )
        )
    session.add(invoice)
    session.flush()
    return invoice


def issue_invoice(session: Session, invoice: Invoice, *, invoice_number: str, issue_date: date) -> None:
    """draft -> issued; writes the ``invoice.issued`` outbox event in the same transaction."""
    invoice.invoice_number = invoice_number
    invoice.issue_date = issue_date
    invoice.status = "issued"
    session.flush()


def red_letter(session: Session, invoice: Invoice) -> None:
    """issued -> red_letter (红冲); the ERP side needs a red-letter document, pushed as a change."""
    invoice.status = "red_letter"
    session.flush()


def void_invoice(session: Session, invoice: Invoice) -> None:
    invoice.status = "voided"
    session.flush()
