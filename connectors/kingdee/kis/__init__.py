"""Kingdee KIS cloud (koas gateway) connector: settings, client and typed records.

Transport only (layer 1): it never touches the canonical store. The sandbox it is tested against lives
next door in :mod:`connectors.kingdee.kis_sandbox`.
"""

from connectors.kingdee.kis.client import KisClient
from connectors.kingdee.kis.records import (
    CheckReport,
    CreatedBill,
    Customer,
    InventoryRow,
    Material,
    OutboundBill,
    OutboundLine,
    OutboundSummary,
    Stock,
    Unit,
    Voucher,
    VoucherEntry,
)
from connectors.kingdee.kis.settings import KisQuirks, KisSettings

__all__ = [
    "CheckReport",
    "CreatedBill",
    "Customer",
    "InventoryRow",
    "KisClient",
    "KisQuirks",
    "KisSettings",
    "Material",
    "OutboundBill",
    "OutboundLine",
    "OutboundSummary",
    "Stock",
    "Unit",
    "Voucher",
    "VoucherEntry",
]
