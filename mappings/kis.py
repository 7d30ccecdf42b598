"""Turning a mapped ``kis_sales_outbound`` payload into the KIS connector's record types."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING

from mappings.apply import MappedRecord

if TYPE_CHECKING:
    from connectors.kingdee.kis.records import OutboundBill


def to_outbound_bill(mapped: MappedRecord) -> OutboundBill:
    """``OutboundBill`` (codes, not ids: the client resolves them) from a mapped invoice."""
    from connectors.kingdee.kis.records import OutboundBill, OutboundLine

    head = dict(mapped.payload)
    lines = tuple(
        OutboundLine(
            qty=Decimal(line["qty"]),
            price=Decimal(line["price"]),
            material_code=line.get("material_code"),
            stock_code=line.get("stock_code"),
            batch_no=line.get("batch_no", ""),
            amount=Decimal(line["amount"]) if line.get("amount") is not None else None,
        )
        for line in head.pop("lines", [])
    )
    return OutboundBill(
        bill_no=head["bill_no"],
        date=dt.date.fromisoformat(head["date"]),
        lines=lines,
        customer_code=head.get("customer_code"),
        stock_code=head.get("stock_code"),
        note=head.get("note", ""),
        invoice_no=head.get("invoice_no"),
    )
