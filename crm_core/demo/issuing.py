"""Issued invoices made up in bulk, numbered in issue order (benchmarks and load tests).

Invoice ``n`` goes to customer ``n mod len(customers)`` and has 1-3 lines over the given products, with
quantities, prices and the 13% rate derived from ``n``: any run issues the same invoices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import sqlalchemy as sa

from crm_core.bulk import InvoiceDoc, InvoiceLineDoc, frames_from_docs, load_invoices

LOAD_CHUNK = 20_000  # invoices per bulk load: bounded memory for any count


@dataclass
class InvoiceIssuer:
    """Issues invoices into a store through the bulk loader.

    Attributes:
        number: the canonical number of invoice ``n``, e.g. ``"INV-BL-{n:07d}"`` (``{year}`` is the
            issue year).
        invoice_base: invoice ``n`` gets the tax invoice number (发票号码) ``invoice_base + n``.
        unit_price: the first line's unit price; line ``k`` adds ``k``.
    """

    engine: sa.Engine
    customers: Sequence[int]
    products: Sequence[int]
    number: str
    invoice_base: int
    unit_price: Decimal
    issued: int = 0

    def issue(self, count: int, today: date) -> None:
        """Issue ``count`` more invoices dated ``today``, loaded ``LOAD_CHUNK`` at a time."""
        while count > 0:
            chunk = [self._invoice(self.issued + i + 1, today) for i in range(min(count, LOAD_CHUNK))]
            load_invoices(self.engine, frames_from_docs(chunk))
            self.issued += len(chunk)
            count -= len(chunk)

    def _invoice(self, n: int, today: date) -> InvoiceDoc:
        return InvoiceDoc(
            number=self.number.format(n=n, year=today.year),
            customer_id=self.customers[n % len(self.customers)],
            status="issued",
            invoice_number=f"{self.invoice_base + n}",
            issue_date=today,
            lines=tuple(
                InvoiceLineDoc(
                    line_no=k + 1,
                    product_id=self.products[(n + k) % len(self.products)],
                    quantity=Decimal(1 + (n * 7 + k) % 50),
                    unit_price=self.unit_price + k,
                    tax_rate=Decimal("0.13"),
                )
                for k in range(1 + n % 3)
            ),
        )
