"""Validation of invoices before anything leaves for the ERP (the ``invoiced_states`` suite)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pandas as pd

from crm_core.credit_code import is_valid_credit_code
from crm_core.documents import InvoiceDocument
from crm_core.types import VAT_RATES, money
from hub.quality import Rule, ValidationOutcome, validate_frame

RULES = [
    Rule("not_null", "invoice_number", "missing invoice number (发票号码)"),
    Rule("not_null", "issue_date", "missing issue date"),
    Rule("not_null", "customer_code", "missing customer code"),
    Rule("true", "has_lines", "invoice has no lines"),
    Rule("true", "totals_match_lines", "header totals differ from the sum of the lines"),
    Rule(
        "true", "line_tax_ok", "a line's tax is not net x rate rounded half up, or the rate is not a VAT rate"
    ),
    Rule("true", "credit_code_ok", "customer credit code invalid (a special VAT invoice needs a valid one)"),
    Rule("true", "materials_resolvable", "a product has no ERP material code, or the ERP does not know it"),
    Rule("true", "date_sane", "issue date in the future or before 2000"),
]


def _line_ok(doc: InvoiceDocument) -> bool:
    return all(
        Decimal(line.tax_rate) in VAT_RATES
        and money(line.quantity * line.unit_price) == line.net_amount
        and money(line.net_amount * line.tax_rate) == line.tax_amount
        for line in doc.lines
    )


def invoice_frame(docs: list[InvoiceDocument], known_materials: set[str] | None, today: date) -> pd.DataFrame:
    """One row per invoice with the raw fields and the computed boolean checks."""
    rows = []
    for doc in docs:
        net = sum((line.net_amount for line in doc.lines), Decimal("0"))
        tax = sum((line.tax_amount for line in doc.lines), Decimal("0"))
        codes = [line.material_code for line in doc.lines]
        rows.append(
            {
                "id": doc.id,
                "number": doc.number,
                "invoice_number": doc.invoice_number,
                "issue_date": doc.issue_date,
                "customer_code": doc.customer_code,
                "has_lines": bool(doc.lines),
                "totals_match_lines": (doc.total_net, doc.total_tax, doc.total_gross)
                == (net, tax, net + tax),
                "line_tax_ok": _line_ok(doc),
                "credit_code_ok": is_valid_credit_code(doc.credit_code)
                if (doc.credit_code or doc.invoice_type == "vat_special")
                else True,
                "materials_resolvable": all(
                    c and (known_materials is None or c in known_materials) for c in codes
                ),
                "date_sane": doc.issue_date is not None
                and date(2000, 1, 1) <= doc.issue_date <= today + timedelta(1),
            }
        )
    return pd.DataFrame(rows)


def validate_invoices(
    docs: list[InvoiceDocument], *, known_materials: set[str] | None, today: date
) -> ValidationOutcome:
    """Failing invoice ids with their reasons; the rest may go on."""
    return validate_frame(
        invoice_frame(docs, known_materials, today), RULES, id_column="id", suite="invoiced_states"
    )
