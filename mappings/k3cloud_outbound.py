"""Outbound bill -> K/3 Cloud sales outbound (销售出库单, SAL_OUTSTOCK) Save model. Pure: no I/O.

The engine maps each invoice to an :class:`~connectors.kingdee.kis.records.OutboundBill` (with
:func:`mappings.kis_outbound.to_outbound`, hashed by ``payload_hash``); this module only spells that bill
the way K/3 Cloud's ``Save`` wants it (ERP-APIS §3.4, §3.8): base data as ``{"FNumber": ...}`` references,
organisations from the connection, one ``FEntity`` row per line.

Amounts: like the KIS outbound, the bill carries the *net* amounts (tax belongs to the receivable and
invoice chain, §3.8). K/3 Cloud derives a row's 价税合计 (``FAllAmount``) as quantity x ``FTaxPrice``, so
the net unit price travels as ``FTaxPrice`` with ``FEntryTaxRate`` 0, and a line whose amount is not
quantity x price rounded to the cent is refused rather than silently changed by the ERP.

The invoice number travels in the head note (``FNote``, SAL_OUTSTOCK has no invoice-number field in
§3.8) as ``发票 <number>``; :func:`invoice_no_of_note` reads it back for the look-ups and reconciliation.

Red-letter invoices are refused: ERP-APIS documents no red-letter (negative) SAL_OUTSTOCK, and a sales
return is a different form (退货单) it does not cover, so nothing reliable can be sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from connectors.kingdee.kis.records import OutboundBill
from hub.errors import DataValidationError, PermanentError

FORM_ID = "SAL_OUTSTOCK"
BILL_TYPE = "XSCKD01_SYS"  # 标准销售出库单
INVOICE_MARK = "发票"
_INVOICE_IN_NOTE = re.compile(INVOICE_MARK + r"\s+(\S+)")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class K3OutboundOptions:
    """Connection choices the model needs: the organisation (sales and stock) and the currency."""

    org_number: str
    currency_number: str = "PRE001"  # 人民币 in a standard data centre
    bill_type: str = BILL_TYPE


@dataclass(frozen=True)
class K3OutboundLine:
    """One row as K/3 Cloud holds it, for comparing a bill in the ERP with what would be sent."""

    material_code: str
    qty: Decimal
    amount: Decimal


def _ref(number: str) -> dict[str, str]:
    return {"FNumber": number}


def note_of(bill: OutboundBill) -> str:
    """The head note carrying ``发票 <invoice number>`` (read back by :func:`invoice_no_of_note`)."""
    marker = f"{INVOICE_MARK} {bill.invoice_no}" if bill.invoice_no else ""
    if marker and marker in bill.note:
        return bill.note
    return " ".join(part for part in (marker, bill.note) if part)


def invoice_no_of_note(note: Any) -> str | None:
    """The invoice number carried in a SAL_OUTSTOCK note, or None."""
    match = _INVOICE_IN_NOTE.search(str(note or ""))
    return match.group(1) if match else None


def expected_lines(bill: OutboundBill) -> list[K3OutboundLine]:
    """The rows K/3 Cloud will hold for ``bill`` (sorted, for comparison)."""
    return sorted(
        (K3OutboundLine(line.material_code or "", line.qty, line.line_amount) for line in bill.lines),
        key=lambda line: (line.material_code, line.qty, line.amount),
    )


def to_save_model(bill: OutboundBill, options: K3OutboundOptions) -> dict[str, Any]:
    """The ``Model`` of a SAL_OUTSTOCK ``Save`` (``FBillNo`` included: it is the idempotency key)."""
    if bill.red:
        raise PermanentError(
            f"bill {bill.bill_no}: red-letter invoice {bill.invoice_no or ''}: the K/3 Cloud push sends "
            "no red-letter sales outbound (ERP-APIS documents none; a sales return is another form). "
            "Book the return in K/3 Cloud by hand, then discard this record (hub queue discard).",
            context={"bill_no": bill.bill_no, "invoice_no": bill.invoice_no},
        )
    if not bill.customer_code:
        raise DataValidationError(f"bill {bill.bill_no}: no customer code")
    if not bill.lines:
        raise DataValidationError(f"bill {bill.bill_no}: no lines")
    entries = []
    for n, line in enumerate(bill.lines, start=1):
        stock = line.stock_code or bill.stock_code
        if not line.material_code:
            raise DataValidationError(f"bill {bill.bill_no} line {n}: no material code")
        if not stock:
            raise DataValidationError(
                f"bill {bill.bill_no} line {n}: no warehouse; K/3 Cloud needs FStockID on every row "
                "(set streams.invoiced_states.stock_number)"
            )
        derived = (line.qty * line.price).quantize(_CENT, rounding=ROUND_HALF_UP)
        if line.line_amount != derived:
            raise DataValidationError(
                f"bill {bill.bill_no} line {n}: amount {line.line_amount} is not quantity {line.qty} x "
                f"price {line.price} ({derived}); K/3 Cloud derives the amount from them."
            )
        entries.append(
            {
                "FMaterialId": _ref(line.material_code),
                "FRealQty": line.qty,
                "FTaxPrice": line.price,
                "FEntryTaxRate": Decimal(0),
                "FStockID": _ref(stock),
            }
        )
    return {
        "FBillTypeID": {"FNUMBER": options.bill_type},
        "FBillNo": bill.bill_no,
        "FDate": bill.date.isoformat(),
        "FSaleOrgId": _ref(options.org_number),
        "FStockOrgId": _ref(options.org_number),
        "FCustomerID": _ref(bill.customer_code),
        "FNote": note_of(bill),
        "SubHeadEntity": {"FSettleCurrID": _ref(options.currency_number)},
        "FEntity": entries,
    }
