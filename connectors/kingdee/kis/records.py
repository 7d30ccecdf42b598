"""Typed records the KIS connector returns and accepts (frozen dataclasses, no I/O).

Money and quantities are :class:`~decimal.Decimal`; times are tz-aware (KIS stores naive
Asia/Shanghai local times). Parsing from the gateway's K/3-style keys lives here so the client stays
about transport.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
CENT = Decimal("0.01")


def money(value: Decimal) -> Decimal:
    """Round to 2 places, half up (yuan)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def to_decimal(value: Any, *, default: Decimal | None = Decimal(0)) -> Decimal:
    """Decimal from a JSON number/string; ``default`` for null/empty. Raises ValueError on junk."""
    if value is None or value == "":
        if default is None:
            raise ValueError("missing number")
        return default
    if isinstance(value, float):
        value = repr(value)  # floats only reach here if a caller parsed JSON without parse_float=Decimal
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def to_int(value: Any) -> int | None:
    """Internal ids arrive as numbers or numeric strings; empty means none."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return int(value)
    return int(str(value).strip())


def parse_date(value: Any) -> dt.date | None:
    """``2025-03-01``, ``2025-03-01 00:00:00`` or ``2025-03-01T00:00:00`` -> date."""
    if value in (None, ""):
        return None
    text = str(value).strip().replace("T", " ")
    return dt.date.fromisoformat(text[:10])


def parse_local_datetime(value: Any) -> dt.datetime | None:
    """A KIS naive local time (Asia/Shanghai) -> tz-aware datetime; empty/null -> None."""
    if value in (None, ""):
        return None
    text = str(value).strip().replace("T", " ")
    parsed = (
        dt.datetime.fromisoformat(text) if len(text) > 10 else dt.datetime.fromisoformat(text + " 00:00:00")
    )
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)


@dataclass(frozen=True)
class Customer:
    """A KIS customer (t_Item class customer)."""

    item_id: int
    number: str
    name: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Customer:
        """Parse a ``Customer/List`` row."""
        return cls(
            item_id=int(row["FItemID"]), number=str(row["FNumber"]), name=str(row.get("FName") or ""), raw=row
        )


@dataclass(frozen=True)
class Material:
    """A KIS material (物料)."""

    item_id: int
    number: str
    name: str
    model: str = ""
    unit_id: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Material:
        """Parse a ``Material/List`` or ``Material/GetDetail`` row."""
        return cls(
            item_id=int(row["FItemID"]),
            number=str(row["FNumber"]),
            name=str(row.get("FName") or ""),
            model=str(row.get("FModel") or ""),
            unit_id=to_int(row.get("FUnitID")),
            raw=row,
        )


@dataclass(frozen=True)
class Stock:
    """A KIS warehouse (仓库)."""

    item_id: int
    number: str
    name: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Stock:
        """Parse a ``Stock/List`` row."""
        return cls(
            item_id=int(row["FItemID"]), number=str(row["FNumber"]), name=str(row.get("FName") or ""), raw=row
        )


@dataclass(frozen=True)
class Unit:
    """A KIS unit of measure (计量单位)."""

    item_id: int
    number: str
    name: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Unit:
        """Parse a ``MeasureUnit/List`` row."""
        return cls(
            item_id=int(row["FItemID"]), number=str(row["FNumber"]), name=str(row.get("FName") or ""), raw=row
        )


@dataclass(frozen=True)
class OutboundLine:
    """One entry of a sales outbound (销售出库单).

    To create a bill, give either the internal ids or the codes (the client resolves codes through its
    base-data cache). ``amount`` defaults to ``qty * price`` rounded half up to 2 places.
    Read back, ``entry_id`` and ``qty_invoiced`` (``FQtyInvoice``, 0 until a sales invoice exists) are set.
    """

    qty: Decimal
    price: Decimal
    material_id: int | None = None
    material_code: str | None = None
    stock_id: int | None = None
    stock_code: str | None = None
    unit_id: int | None = None
    batch_no: str = ""
    amount: Decimal | None = None
    entry_id: int | None = None
    qty_invoiced: Decimal = Decimal(0)

    @property
    def line_amount(self) -> Decimal:
        """The amount sent/stored: explicit, else ``qty * price`` rounded to cents."""
        return self.amount if self.amount is not None else money(self.qty * self.price)

    @property
    def invoiced(self) -> bool:
        """True when the whole quantity is invoiced (已开票)."""
        return self.qty_invoiced >= self.qty

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> OutboundLine:
        """Parse one ``Entry`` item of ``salesdelivery/getdetail``."""
        qty = to_decimal(entry.get("Fauxqty", entry.get("FQty")))
        return cls(
            qty=qty,
            price=to_decimal(entry.get("FAuxPrice")),
            material_id=to_int(entry.get("FItemID")),
            stock_id=to_int(entry.get("FDCStockID")),
            unit_id=to_int(entry.get("FUnitID")),
            batch_no=str(entry.get("FBatchNo") or ""),
            amount=to_decimal(entry.get("Famount")),
            entry_id=to_int(entry.get("FEntryID")),
            qty_invoiced=to_decimal(entry.get("FQtyInvoice")),
        )


@dataclass(frozen=True)
class OutboundBill:
    """A sales outbound (``salesdelivery``): ``FTranType`` 21.

    To create: ``bill_no`` (required: it is the idempotency key), ``date``, the customer (id or code),
    optionally a head stock, and lines. Read back: ``fid`` (``FInterID``), ``audited`` / ``check_date``
    (``Head.FCheckDate``) and per-line ``qty_invoiced``.
    """

    bill_no: str
    date: dt.date
    lines: tuple[OutboundLine, ...]
    customer_id: int | None = None
    customer_code: str | None = None
    stock_id: int | None = None
    stock_code: str | None = None
    note: str = ""
    invoice_no: str | None = None
    red: bool = False
    fid: int | None = None
    check_date: dt.datetime | None = None
    extra_head: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def audited(self) -> bool:
        """True once KIS has audited the bill (``FCheckDate`` is set)."""
        return self.check_date is not None

    @property
    def total_amount(self) -> Decimal:
        """Sum of line amounts."""
        return sum((line.line_amount for line in self.lines), Decimal(0))

    @property
    def fully_invoiced(self) -> bool:
        """True when every line is fully invoiced."""
        return bool(self.lines) and all(line.invoiced for line in self.lines)

    @classmethod
    def from_detail(cls, data: Mapping[str, Any], *, invoice_no_field: str) -> OutboundBill:
        """Parse ``{"Head": {...}, "Entry": [...]}`` of ``salesdelivery/getdetail``."""
        head = data.get("Head") or {}
        entries = data.get("Entry") or []
        date = parse_date(head.get("Fdate", head.get("FDate")))
        if date is None:
            raise ValueError("Head.Fdate missing")
        invoice_no = head.get(invoice_no_field)
        return cls(
            bill_no=str(head.get("FBillNo") or ""),
            date=date,
            lines=tuple(OutboundLine.from_entry(e) for e in entries),
            customer_id=to_int(head.get("FSupplyID")),
            stock_id=to_int(head.get("FDCStockID")),
            note=str(head.get("Fnote") or ""),
            invoice_no=str(invoice_no) if invoice_no not in (None, "") else None,
            red=str(head.get("FROB", 1)) == "-1",
            fid=to_int(head.get("FInterID")),
            check_date=parse_local_datetime(head.get("FCheckDate")),
        )


@dataclass(frozen=True)
class OutboundSummary:
    """One row of ``salesdelivery/list`` (head fields only; read the detail for lines)."""

    fid: int
    bill_no: str
    date: dt.date | None
    customer_id: int | None
    check_date: dt.datetime | None

    @property
    def audited(self) -> bool:
        """True once audited."""
        return self.check_date is not None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OutboundSummary:
        """Parse a list row (``FInterID``, ``FBillNo``, ``Fdate``, ``FSupplyID``, ``FCheckDate``)."""
        return cls(
            fid=int(row["FInterID"]),
            bill_no=str(row.get("FBillNo") or ""),
            date=parse_date(row.get("Fdate", row.get("FDate"))),
            customer_id=to_int(row.get("FSupplyID")),
            check_date=parse_local_datetime(row.get("FCheckDate")),
        )


@dataclass(frozen=True)
class CreatedBill:
    """Outcome of an idempotent create: ``created`` is False when an existing bill was found instead."""

    fid: int
    bill_no: str
    created: bool


@dataclass(frozen=True)
class InventoryRow:
    """One row of 即时库存 (``ICInventory/List``): base-unit quantity per material, stock and batch."""

    material_number: str
    stock_number: str
    batch_no: str
    base_qty: Decimal
    material_id: int | None = None
    stock_id: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> InventoryRow:
        """Parse ``FMaterialNumber, FStockNumber, FBatchNo, FBUQty`` (+ ids when present)."""
        return cls(
            material_number=str(row["FMaterialNumber"]),
            stock_number=str(row.get("FStockNumber") or ""),
            batch_no=str(row.get("FBatchNo") or ""),
            base_qty=to_decimal(row.get("FBUQty"), default=None),
            material_id=to_int(row.get("FMaterialID")),
            stock_id=to_int(row.get("FStockID")),
        )


@dataclass(frozen=True)
class VoucherEntry:
    """One voucher line; exactly one of ``debit``/``credit`` is non-zero."""

    account_number: str
    debit: Decimal = Decimal(0)
    credit: Decimal = Decimal(0)
    explanation: str = ""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> VoucherEntry:
        """Parse ``{FAccountNumber, FDC (1 debit / 0 credit), FAmount, FExplanation}`` [L]."""
        amount = to_decimal(entry.get("FAmount"))
        debit_side = str(entry.get("FDC", 1)) == "1"
        return cls(
            account_number=str(entry.get("FAccountNumber") or ""),
            debit=amount if debit_side else Decimal(0),
            credit=Decimal(0) if debit_side else amount,
            explanation=str(entry.get("FExplanation") or ""),
        )


@dataclass(frozen=True)
class Voucher:
    """A finance voucher (凭证) for postings. ``reference`` is the hub's idempotency key [L]."""

    date: dt.date
    reference: str
    entries: tuple[VoucherEntry, ...]
    explanation: str = ""
    group: str = "记"
    fid: int | None = None
    number: int | None = None

    @property
    def balanced(self) -> bool:
        """Debits equal credits."""
        return sum((e.debit for e in self.entries), Decimal(0)) == sum(
            (e.credit for e in self.entries), Decimal(0)
        )

    @classmethod
    def from_detail(cls, data: Mapping[str, Any]) -> Voucher:
        """Parse ``{"Head": {...}, "Entry": [...]}`` of a voucher [L]."""
        head = data.get("Head") or {}
        date = parse_date(head.get("FDate"))
        if date is None:
            raise ValueError("Head.FDate missing")
        return cls(
            date=date,
            reference=str(head.get("FReference") or ""),
            entries=tuple(VoucherEntry.from_entry(e) for e in data.get("Entry") or []),
            explanation=str(head.get("FExplanation") or ""),
            group=str(head.get("FGroup") or "记"),
            fid=to_int(head.get("FVoucherID")),
            number=to_int(head.get("FNumber")),
        )


@dataclass(frozen=True)
class CheckReport:
    """What :meth:`KisClient.check` found: the connection works and how it looks."""

    connection: str
    base_url: str
    auth_flow: str
    gateway: str
    stocks_total: int
    elapsed_ms: float
