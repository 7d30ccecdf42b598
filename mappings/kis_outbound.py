"""Canonical invoice -> KIS sales outbound (销售出库单, FTranType 21). Pure: no I/O.

What "invoiced" becomes in KIS cloud (ERP-APIS §2.6): no koas endpoint creates a sales invoice, so the
default is a sales outbound carrying the invoice number (in a configurable head field) and the net
amounts per line. The bill number is deterministic from the canonical number, which is what makes a
retried push find its own bill instead of creating a second one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from connectors.kingdee.kis.records import OutboundBill, OutboundLine
from crm_core.documents import InvoiceDocument
from hub.errors import DataValidationError

MAPPING_NAME = "kis_outbound"
MAPPING_VERSION = "1"


@dataclass(frozen=True)
class OutboundMapping:
    """Template choices for the mapping (bill-number pattern, head stock)."""

    bill_no_pattern: str = "HUB-{number}"
    stock_code: str | None = None
    version: str = MAPPING_VERSION

    def bill_no(self, document: InvoiceDocument) -> str:
        """The deterministic ERP bill number; the pattern may use these invoice columns."""
        return self.bill_no_pattern.format_map(
            {
                "number": document.number,
                "external_id": document.number,
                "invoice_number": document.invoice_number or "",
                "invoice_date": document.issue_date.strftime("%Y%m%d") if document.issue_date else "",
                "credit_code": document.credit_code or "",
            }
        )


def to_outbound(document: InvoiceDocument, mapping: OutboundMapping) -> OutboundBill:
    """The KIS outbound for an issued invoice; codes are resolved to KIS ids by the client."""
    if document.issue_date is None:
        raise DataValidationError(f"invoice {document.number}: no issue date")
    lines = []
    for line in document.lines:
        if not line.material_code:
            raise DataValidationError(
                f"invoice {document.number} line {line.line_no}: product {line.sku} has no ERP material "
                "code; set products.erp_material_code, then replay the record."
            )
        lines.append(
            OutboundLine(
                qty=line.quantity,
                price=line.unit_price,
                material_code=line.material_code,
                stock_code=mapping.stock_code,
                amount=line.net_amount,
            )
        )
    return OutboundBill(
        bill_no=mapping.bill_no(document),
        date=document.issue_date,
        lines=tuple(lines),
        customer_code=document.customer_code,
        stock_code=mapping.stock_code,
        note=f"{document.number} 发票 {document.invoice_number}",
        invoice_no=document.invoice_number,
        red=document.status == "red_letter",
    )


def payload_hash(bill: OutboundBill, mapping_version: str) -> str:
    """A stable hash of what is sent, so unchanged documents are skipped without an ERP call."""
    canonical = {
        "v": mapping_version,
        "bill_no": bill.bill_no,
        "date": bill.date.isoformat(),
        "customer": bill.customer_code,
        "invoice_no": bill.invoice_no,
        "red": bill.red,
        "lines": [[ln.material_code, str(ln.qty), str(ln.price), str(ln.line_amount)] for ln in bill.lines],
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
