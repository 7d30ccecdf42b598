"""Bill models for the K/3 Cloud tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

Line = tuple[str, str, str, str]  # material, stock, qty, tax price


def outstock(
    bill_no: str | None = None,
    *,
    customer: str = "C001",
    lines: tuple[Line, ...] = (("M001", "CK001", "5", "11.30"),),
    date: str = "2025-03-01",
) -> dict[str, Any]:
    """A SAL_OUTSTOCK model as integrations send it (numbers as references, Decimal amounts)."""
    model: dict[str, Any] = {
        "FBillTypeID": {"FNUMBER": "XSCKD01_SYS"},
        "FDate": date,
        "FSaleOrgId": {"FNumber": "100"},
        "FStockOrgId": {"FNumber": "100"},
        "FCustomerID": {"FNumber": customer},
        "SubHeadEntity": {"FSettleCurrID": {"FNumber": "PRE001"}},
        "FEntity": [
            {
                "FMaterialId": {"FNumber": material},
                "FRealQty": Decimal(qty),
                "FTaxPrice": Decimal(price),
                "FEntryTaxRate": Decimal("13"),
                "FStockID": {"FNumber": stock},
            }
            for material, stock, qty, price in lines
        ],
    }
    if bill_no is not None:
        model["FBillNo"] = bill_no
    return model
