"""Canonical column names a template may refer to, per canonical entity (the allowlist).

Column names from configs end up in SQL, DataFrame selections and report headers, so a template may
only name columns listed here; anything else is refused at load time with the list of valid names
(PERF-RELIABILITY B.3 "SQL identifiers from config", B.4 case 19).
"""

from __future__ import annotations

from typing import Literal

Entity = Literal["customer", "inventory", "incoming_supply", "opportunity", "order", "invoice"]

CANONICAL_COLUMNS: dict[str, tuple[str, ...]] = {
    # The keyword arguments of crm_core.customers.upsert_customer.
    "customer": ("name", "credit_code", "industry", "scale", "province", "region", "tier", "owner", "source"),
    "inventory": (
        "material_code",
        "material_name",
        "warehouse_code",
        "batch_no",
        "unit",
        "on_hand_qty",
        "reserved_qty",
        "available_qty",
        "snapshot_at",
    ),
    "incoming_supply": (
        "material_code",
        "warehouse_code",
        "unit",
        "qty",
        "expected_date",
        "source_doc_no",
        "line_no",  # line of the order: (source_doc_no, line_no) is unique in a file
        "supply_kind",  # purchase | production
        "status",  # optional: closed / cancelled / completed rows are not open supply
        "supplier_code",
    ),
    "opportunity": (
        "external_id",
        "title",
        "customer_name",
        "credit_code",
        "stage",
        "amount",
        "owner",
        "expected_close_date",
        "updated_at",
    ),
    "order": (
        "external_id",
        "order_no",
        "customer_name",
        "credit_code",
        "status",
        "amount",
        "order_date",
        "updated_at",
    ),
    "invoice": (
        "external_id",
        "invoice_number",
        "order_no",
        "customer_name",
        "credit_code",
        "invoice_date",
        "total_amount",
        "tax_amount",
        "updated_at",
    ),
}


def unknown_column_message(entity: str, column: str) -> str:
    """Error text for a column that is not in the allowlist of ``entity``."""
    known = ", ".join(CANONICAL_COLUMNS[entity])
    return f"{column!r} is not a known {entity} column; use one of: {known}"
