"""A realistic demo data set for a hardware-parts maker, deterministic by seed, with no database.

:func:`generate` returns a :class:`DemoDataSet`: products (bolts M6-M20, nuts, washers, brackets,
hinges ...) with ERP material codes like ``1.01.001``, warehouses, a few hundred customers with valid
Unified Social Credit Codes, contacts, interactions, opportunities with stage histories (including a few
skips and 谈判 -> 需求确认 regressions), versioned quotes, sales orders, an inventory picture with incoming
supply, and N invoices. Small entities are plain dataclasses; invoices come as numpy-built DataFrame
chunks (:meth:`DemoDataSet.invoice_chunks`) so a million of them stay cheap in time and memory.

Invoices refer to customers and products by their 1-based ``key`` (position in the lists), not by
database ids; :func:`crm_core.demo.load.load_demo_data` maps keys to ids.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property

import numpy as np
import pandas as pd

from crm_core.bulk import line_amounts_fen
from crm_core.credit_code import make_credit_code
from crm_core.demo import catalog
from crm_core.models.sales import LOST, STAGES
from crm_core.types import SHANGHAI, money

__all__ = [
    "BLOCK",
    "ContactRow",
    "CustomerRow",
    "DemoDataSet",
    "DemoInvoiceChunk",
    "InteractionRow",
    "LineRow",
    "OpportunityRow",
    "OrderRow",
    "PositionRow",
    "ProductRow",
    "QuoteRow",
    "QuoteVersionRow",
    "StageStep",
    "SupplyRow",
    "WarehouseRow",
    "generate",
]

# Invoices are generated in blocks of this many, each from its own seeded stream, so their content does
# not depend on the chunk size the caller asks for.
BLOCK = 10_000
ANCHOR = date(2026, 6, 30)  # "today" of the demo company; fixed so the data set is reproducible
INVOICE_SPAN_DAYS = 900
TIER_DISCOUNT = {1: 0.92, 2: 0.96, 3: 1.0}
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)  # GB 11714 organisation code check digit


@dataclass(frozen=True)
class ProductRow:
    """One material of the catalogue."""

    key: int
    sku: str
    name: str
    spec: str
    erp_material_code: str
    unit: str
    lead_time_days: int
    safety_stock: Decimal
    default_tax_rate: Decimal
    list_price: Decimal


@dataclass(frozen=True)
class WarehouseRow:
    code: str
    name: str
    erp_stock_code: str


@dataclass(frozen=True)
class CustomerRow:
    """One company of the customer archive (客户档案)."""

    key: int
    code: str
    name: str
    credit_code: str
    industry: str
    scale: str
    province: str
    region: str
    tier: int
    owner: str


@dataclass(frozen=True)
class ContactRow:
    customer_key: int
    name: str
    title: str
    phone: str
    wechat: str
    email: str | None
    is_primary: bool


@dataclass(frozen=True)
class InteractionRow:
    customer_key: int
    opportunity_key: int | None
    kind: str
    occurred_at: datetime
    summary: str
    owner: str


@dataclass(frozen=True)
class StageStep:
    """The opportunity entered ``stage`` at ``at``."""

    stage: str
    at: datetime


@dataclass(frozen=True)
class OpportunityRow:
    """An opportunity (商机); ``steps[0]`` is where it started, ``steps[-1]`` where it is now."""

    key: int
    number: str
    customer_key: int
    title: str
    owner: str
    amount: Decimal
    expected_close: date
    steps: tuple[StageStep, ...]
    lost_reason: str | None

    @property
    def stage(self) -> str:
        return self.steps[-1].stage


@dataclass(frozen=True)
class LineRow:
    """A quote or order line; amounts follow from quantity x price x rate (half up)."""

    line_no: int
    product_key: int
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal
    requested_date: date | None = None
    delivered_quantity: Decimal = Decimal("0")

    @property
    def net_amount(self) -> Decimal:
        return money(self.quantity * self.unit_price)

    @property
    def tax_amount(self) -> Decimal:
        return money(self.net_amount * self.tax_rate)


@dataclass(frozen=True)
class QuoteVersionRow:
    version: int
    status: str
    quote_date: date
    valid_until: date
    sent_at: datetime | None
    region: str
    lines: tuple[LineRow, ...]


@dataclass(frozen=True)
class QuoteRow:
    number: str
    opportunity_key: int
    customer_key: int
    versions: tuple[QuoteVersionRow, ...]


@dataclass(frozen=True)
class OrderRow:
    number: str
    customer_key: int
    opportunity_key: int
    quote_number: str
    quote_version: int
    order_date: date
    requested_date: date
    region: str
    status: str
    lines: tuple[LineRow, ...]


@dataclass(frozen=True)
class PositionRow:
    material_code: str
    warehouse_code: str
    lot: str
    on_hand: Decimal
    reserved: Decimal


@dataclass(frozen=True)
class SupplyRow:
    kind: str  # purchase | production
    reference: str
    material_code: str
    warehouse_code: str
    quantity: Decimal
    eta: date


@dataclass(frozen=True)
class DemoInvoiceChunk:
    """Invoices in the bulk frame schema (:mod:`crm_core.bulk`), but with ``customer_key`` instead of
    ``customer_id`` and ``product_key`` instead of ``product_id``. Statuses are final: a
    ``red_letter`` invoice was issued first and reversed later."""

    invoices: pd.DataFrame
    lines: pd.DataFrame


@dataclass(frozen=True)
class DemoDataSet:
    """The whole demo picture. Invoices are produced lazily, in chunks."""

    seed: int
    invoice_count: int
    products: tuple[ProductRow, ...]
    warehouses: tuple[WarehouseRow, ...]
    customers: tuple[CustomerRow, ...]
    contacts: tuple[ContactRow, ...]
    interactions: tuple[InteractionRow, ...]
    opportunities: tuple[OpportunityRow, ...]
    quotes: tuple[QuoteRow, ...]
    orders: tuple[OrderRow, ...]
    positions: tuple[PositionRow, ...]
    supplies: tuple[SupplyRow, ...]
    anchor: date = ANCHOR

    @cached_property
    def invoice_context(self) -> _InvoiceContext:
        """Per-customer and per-product arrays the vectorised invoice generator draws from."""
        return _context(self)

    def invoice_chunks(self, chunk_size: int = 100_000) -> Iterator[DemoInvoiceChunk]:
        """All ``invoice_count`` invoices in chunks of ``chunk_size`` (same invoices whatever the size)."""
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        for start in range(0, self.invoice_count, chunk_size):
            yield self.invoice_range(start, min(start + chunk_size, self.invoice_count))

    def invoice_sequences(self) -> dict[int, int]:
        """The last ``INV-<year>-NNNNNN`` counter used per year (to seed the store's number sequences)."""
        total = max(self.invoice_count, 1)
        start_day = self.anchor - timedelta(days=INVOICE_SPAN_DAYS - 1)
        result = {}
        for year in range(start_day.year, self.anchor.year + 1):
            first = [max((date(y, 1, 1) - start_day).days, 0) for y in (year, year + 1)]
            lo, hi = (-(-d * total // INVOICE_SPAN_DAYS) for d in first)
            hi = min(hi, self.invoice_count)
            if hi > lo:
                result[year] = hi - lo
        return result

    def invoice_range(self, start: int, stop: int) -> DemoInvoiceChunk:
        """Invoices with global index ``start <= i < stop``."""
        parts = []
        for block in range(start // BLOCK, (stop - 1) // BLOCK + 1 if stop > start else start // BLOCK):
            lo, hi = max(start, block * BLOCK), min(stop, (block + 1) * BLOCK)
            parts.append(_invoice_block(self, block, lo, hi))
        if not parts:
            return _invoice_block(self, 0, 0, 0)
        if len(parts) == 1:
            return parts[0]
        return DemoInvoiceChunk(
            pd.concat([p.invoices for p in parts], ignore_index=True),
            pd.concat([p.lines for p in parts], ignore_index=True),
        )


# --- small entities -------------------------------------------------------------------------------


def _d(value: float | str | Decimal, places: str = "0.01") -> Decimal:
    return Decimal(str(value)).quantize(Decimal(places), ROUND_HALF_UP)


def _products() -> tuple[ProductRow, ...]:
    # Deterministic without a seed: the catalogue is the company's, not random.
    rows: list[ProductRow] = []
    for group, name, specs, unit, (lo, hi), lead, rate in catalog.PRODUCT_FAMILIES:
        for i, spec in enumerate(specs, start=1):
            share = i / len(specs)  # bigger sizes cost more
            price = Decimal(lo) + (Decimal(hi) - Decimal(lo)) * Decimal(str(round(share, 4)))
            code = f"{group}.{i:03d}"
            service = group.startswith("9.")
            safety = {"PCS": 5000 * (len(specs) - i + 1), "KG": 200, "SET": 300}[unit] if not service else 0
            rows.append(
                ProductRow(
                    key=len(rows) + 1,
                    sku=f"SKU-{group.replace('.', '')}{i:03d}",
                    name=name,
                    spec=spec,
                    erp_material_code=code,
                    unit=unit,
                    lead_time_days=lead,
                    safety_stock=Decimal(safety),
                    default_tax_rate=Decimal(rate),
                    list_price=_d(price, "0.0001"),
                )
            )
    return tuple(rows)


def _credit_code(rng: random.Random, division: str, used: set[str]) -> str:
    while True:
        digits = [rng.randrange(10) for _ in range(8)]
        check = 11 - sum(d * w for d, w in zip(digits, _ORG_WEIGHTS, strict=True)) % 11
        org = "".join(map(str, digits)) + {10: "X", 11: "0"}.get(check, str(check))
        code = make_credit_code("91" + division + org)
        if code not in used:
            used.add(code)
            return code


def _customers(rng: random.Random, count: int) -> tuple[CustomerRow, ...]:
    rows: list[CustomerRow] = []
    names: set[str] = set()
    codes: set[str] = set()
    while len(rows) < count:
        province, region, cities = rng.choice(catalog.PROVINCES)
        city, division = rng.choice(cities)
        industry, word = rng.choice(catalog.INDUSTRIES)
        name = f"{city}{rng.choice(catalog.NAME_WORDS)}{word}{rng.choice(catalog.LEGAL_FORMS)}"
        if name in names:
            continue
        names.add(name)
        key = len(rows) + 1
        tier = rng.choices((1, 2, 3), weights=(15, 35, 50))[0]
        rows.append(
            CustomerRow(
                key=key,
                code=f"C{key:06d}",
                name=name,
                credit_code=_credit_code(rng, division, codes),
                industry=industry,
                scale=rng.choice(catalog.SCALES),
                province=province,
                region=region,
                tier=tier,
                owner=rng.choice(catalog.OWNERS),
            )
        )
    return tuple(rows)


def _contacts(rng: random.Random, customers: tuple[CustomerRow, ...]) -> tuple[ContactRow, ...]:
    rows = []
    for customer in customers:
        for i in range(rng.randint(1, 3)):
            rows.append(
                ContactRow(
                    customer_key=customer.key,
                    name=rng.choice(catalog.SURNAMES) + rng.choice(catalog.GIVEN_NAMES),
                    title=rng.choice(catalog.TITLES),
                    phone=f"1{rng.choice('3589')}{rng.randrange(10**9):09d}",
                    wechat=f"wxid_{rng.randrange(16**10):010x}",
                    email=f"buyer{customer.key}.{i}@example.cn" if rng.random() < 0.6 else None,
                    is_primary=i == 0,
                )
            )
    return tuple(rows)


def _at(day: date, rng: random.Random) -> datetime:
    """A working-hours moment on ``day`` in Shanghai, as an aware datetime."""
    return datetime.combine(day, time(rng.randint(9, 17), rng.randrange(60)), SHANGHAI)


def _stage_path(rng: random.Random) -> tuple[list[str], str | None]:
    """The stages an opportunity went through: forward steps, a few skips and 谈判 -> 需求确认 regressions."""
    final_index = rng.choices(range(len(STAGES)), weights=(12, 14, 16, 16, 14, 18))[0]
    lost = rng.random() < 0.18 and final_index < len(STAGES) - 1
    path = [STAGES[0]]
    i = 0
    regressed = False
    while i < final_index:
        step = 2 if (rng.random() < 0.04 and i + 2 <= final_index) else 1  # a skipped stage
        i += step
        path.append(STAGES[i])
        if STAGES[i] == "谈判" and not regressed and rng.random() < 0.08:
            path.append("需求确认")  # back to requirements: an at-risk deal
            regressed = True
            i = STAGES.index("需求确认")
    if lost:
        path.append(LOST)
    return path, rng.choice(catalog.LOST_REASONS) if lost else None


def _lines(
    rng: random.Random,
    products: tuple[ProductRow, ...],
    tier: int,
    count: int,
    start: date,
    factor: float = 1.0,
) -> tuple[LineRow, ...]:
    goods = [p for p in products if not p.erp_material_code.startswith("9.")]
    rows = []
    for line_no, product in enumerate(rng.sample(goods, count), start=1):
        qty = {"PCS": rng.randint(5, 200) * 100, "KG": rng.randint(10, 300), "SET": rng.randint(20, 500)}[
            product.unit
        ]
        price = _d(float(product.list_price) * TIER_DISCOUNT[tier] * factor, "0.0001")
        rows.append(
            LineRow(
                line_no=line_no,
                product_key=product.key,
                quantity=Decimal(qty),
                unit_price=price,
                tax_rate=product.default_tax_rate,
                requested_date=start + timedelta(days=rng.randint(15, 60)),
            )
        )
    return tuple(rows)


def _sales(
    rng: random.Random,
    customers: tuple[CustomerRow, ...],
    products: tuple[ProductRow, ...],
    count: int,
    anchor: date,
) -> tuple[tuple[OpportunityRow, ...], tuple[QuoteRow, ...], tuple[OrderRow, ...], list[InteractionRow]]:
    opportunities, quotes, orders, interactions = [], [], [], []
    seq = {"OPP": 0, "QT": 0, "SO": 0}

    def number(prefix: str, year: int) -> str:
        seq[prefix] += 1
        return f"{prefix}-{year}-{seq[prefix]:06d}"

    for key in range(1, count + 1):
        customer = customers[rng.randrange(len(customers))]
        path, lost_reason = _stage_path(rng)
        day = anchor - timedelta(days=rng.randint(len(path) * 16, 420))
        steps = []
        for stage in path:
            steps.append(StageStep(stage, _at(day, rng)))
            day += timedelta(days=rng.randint(2, 15))
        family = rng.choice(catalog.PRODUCT_FAMILIES)[1]
        opp = OpportunityRow(
            key=key,
            number=number("OPP", steps[0].at.year),
            customer_key=customer.key,
            title=f"{customer.name[:2]}{family}年度采购",
            owner=customer.owner,
            amount=_d(rng.randint(20, 800) * 1000),
            expected_close=steps[-1].at.date() + timedelta(days=rng.randint(10, 60)),
            steps=tuple(steps),
            lost_reason=lost_reason,
        )
        opportunities.append(opp)
        reached = set(path)
        if "需求确认" in reached:
            at = next(s.at for s in steps if s.stage == "需求确认")
            interactions.append(
                InteractionRow(
                    customer.key,
                    key,
                    "call",
                    at + timedelta(hours=2),
                    "需求确认通话纪要：规格、数量、交期",
                    opp.owner,
                )
            )
        if "方案提交" not in reached:
            continue
        submitted = next(s.at for s in steps if s.stage == "方案提交")
        # Feedback within 48 h most of the time (the process-health target is above 85 %).
        delay = (
            timedelta(hours=rng.randint(4, 40))
            if rng.random() < 0.88
            else timedelta(hours=rng.randint(60, 120))
        )
        interactions.append(
            InteractionRow(
                customer.key,
                key,
                "feedback",
                submitted + delay,
                rng.choice(catalog.INTERACTION_SUMMARIES["feedback"]),
                opp.owner,
            )
        )
        n_versions = rng.choices((1, 2, 3), weights=(50, 35, 15))[0]
        base_lines = _lines(rng, products, customer.tier, rng.randint(1, 4), submitted.date())
        versions = []
        for v in range(1, n_versions + 1):
            last = v == n_versions
            if not last:
                status = "superseded"
            elif opp.stage == STAGES[-1]:
                status = "accepted"
            elif opp.stage == LOST:
                status = "rejected"
            else:
                status = "sent" if rng.random() < 0.8 else "draft"
            quote_day = submitted.date() + timedelta(days=(v - 1) * rng.randint(3, 10))
            factor = 1.0 - 0.03 * (v - 1)  # each revision a little cheaper
            lines = tuple(
                LineRow(
                    ln.line_no,
                    ln.product_key,
                    ln.quantity,
                    _d(float(ln.unit_price) * factor, "0.0001"),
                    ln.tax_rate,
                    ln.requested_date,
                )
                for ln in base_lines
            )
            versions.append(
                QuoteVersionRow(
                    version=v,
                    status=status,
                    quote_date=quote_day,
                    valid_until=quote_day + timedelta(days=30),
                    sent_at=None if status == "draft" else _at(quote_day, rng),
                    region=customer.region,
                    lines=lines,
                )
            )
        quote = QuoteRow(number("QT", submitted.year), key, customer.key, tuple(versions))
        quotes.append(quote)
        if opp.stage != STAGES[-1]:
            continue
        accepted = versions[-1]
        order_day = opp.steps[-1].at.date()
        # Recent orders are still open; older ones have mostly been delivered and invoiced.
        recent = (anchor - order_day).days <= 90
        status = rng.choices(
            ("open", "partially_delivered", "delivered", "invoiced"),
            weights=(60, 30, 5, 5) if recent else (3, 7, 30, 60),
        )[0]
        order_lines: list[LineRow] = []
        for ln in accepted.lines:
            delivered = {
                "open": Decimal(0),
                "partially_delivered": (ln.quantity / 2).to_integral_value(),
            }.get(status, ln.quantity)
            order_lines.append(
                LineRow(
                    ln.line_no,
                    ln.product_key,
                    ln.quantity,
                    ln.unit_price,
                    ln.tax_rate,
                    # Open lines are due around now: a few overdue, most in the coming weeks.
                    (anchor + timedelta(days=rng.randint(-7, 35)))
                    if status in ("open", "partially_delivered")
                    else order_day + timedelta(days=rng.randint(10, 45)),
                    delivered,
                )
            )
        orders.append(
            OrderRow(
                number=number("SO", order_day.year),
                customer_key=customer.key,
                opportunity_key=key,
                quote_number=quote.number,
                quote_version=accepted.version,
                order_date=order_day,
                requested_date=max(ln.requested_date for ln in order_lines if ln.requested_date),
                region=customer.region,
                status=status,
                lines=tuple(order_lines),
            )
        )
    return tuple(opportunities), tuple(quotes), tuple(orders), interactions


def _general_interactions(
    rng: random.Random, customers: tuple[CustomerRow, ...], anchor: date
) -> list[InteractionRow]:
    rows = []
    kinds = tuple(catalog.INTERACTION_SUMMARIES)
    for customer in customers:
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(kinds)
            day = anchor - timedelta(days=rng.randint(1, 500))
            rows.append(
                InteractionRow(
                    customer.key,
                    None,
                    kind,
                    _at(day, rng),
                    rng.choice(catalog.INTERACTION_SUMMARIES[kind]),
                    customer.owner,
                )
            )
    return rows


def _inventory(
    rng: random.Random, products: tuple[ProductRow, ...], anchor: date
) -> tuple[tuple[PositionRow, ...], tuple[SupplyRow, ...]]:
    positions: list[PositionRow] = []
    supplies: list[SupplyRow] = []
    for product in products:
        if product.erp_material_code.startswith("9."):
            continue  # services have no stock
        safety = int(product.safety_stock)
        for wh, share in (("WH01", 1.0), ("WH02", 0.3)):
            if wh == "WH02" and rng.random() < 0.5:
                continue
            for lot in range(rng.randint(1, 2)):
                on_hand = Decimal(int(rng.uniform(0.2, 2.5) * safety * share))
                reserved = Decimal(int(float(on_hand) * rng.uniform(0, 0.6)))
                positions.append(
                    PositionRow(
                        product.erp_material_code, wh, f"L{anchor:%y%m}{lot + 1:02d}", on_hand, reserved
                    )
                )
        if rng.random() < 0.6:
            kind = rng.choice(("production", "purchase"))
            supplies.append(
                SupplyRow(
                    kind=kind,
                    reference=f"{'MO' if kind == 'production' else 'PO'}{anchor:%y%m}{len(supplies) + 1:04d}",
                    material_code=product.erp_material_code,
                    warehouse_code="WH01" if kind == "production" else "WH03",
                    quantity=Decimal(int(safety * rng.uniform(0.5, 2.0))),
                    eta=anchor + timedelta(days=rng.randint(3, product.lead_time_days + 20)),
                )
            )
    return tuple(positions), tuple(supplies)


def generate(
    seed: int = 7,
    *,
    customers: int = 300,
    invoices: int = 1_000,
    opportunities: int | None = None,
    anchor: date = ANCHOR,
) -> DemoDataSet:
    """The demo data set for ``seed``: same seed, sizes and ``anchor`` ("today" of the demo company),
    same data (byte for byte)."""
    if customers < 1 or invoices < 0:
        raise ValueError("need at least one customer and a non-negative number of invoices")
    rng = random.Random(seed)
    products = _products()
    customer_rows = _customers(rng, customers)
    contacts = _contacts(rng, customer_rows)
    opps, quotes, orders, sales_interactions = _sales(
        rng,
        customer_rows,
        products,
        opportunities if opportunities is not None else customers * 4 // 3,
        anchor,
    )
    interactions = _general_interactions(rng, customer_rows, anchor) + sales_interactions
    interactions.sort(key=lambda r: (r.occurred_at, r.customer_key))
    positions, supplies = _inventory(rng, products, anchor)
    return DemoDataSet(
        seed=seed,
        invoice_count=invoices,
        products=products,
        warehouses=tuple(WarehouseRow(*w) for w in catalog.WAREHOUSES),
        customers=customer_rows,
        contacts=contacts,
        interactions=tuple(interactions),
        opportunities=opps,
        quotes=quotes,
        orders=orders,
        positions=positions,
        supplies=supplies,
        anchor=anchor,
    )


# --- invoices (vectorised) ------------------------------------------------------------------------


@dataclass(frozen=True)
class _InvoiceContext:
    customer_p: np.ndarray
    customer_discount: np.ndarray
    product_keys: np.ndarray
    product_p: np.ndarray
    price_e4: np.ndarray
    rate_e4: np.ndarray
    unit: np.ndarray  # 0 PCS, 1 KG, 2 SET goods, 3 service


def _context(data: DemoDataSet) -> _InvoiceContext:
    tiers = np.array([c.tier for c in data.customers])
    weight = np.choose(tiers - 1, [4.0, 2.0, 1.0])  # tier-1 accounts buy more often
    units = []
    weights = []
    for p in data.products:
        service = p.erp_material_code.startswith("9.")
        units.append(3 if service else {"PCS": 0, "KG": 1, "SET": 2}[p.unit])
        weights.append(0.4 if service else 1.0)
    w = np.array(weights)
    return _InvoiceContext(
        customer_p=weight / weight.sum(),
        customer_discount=np.array([TIER_DISCOUNT[t] for t in tiers.tolist()]),
        product_keys=np.array([p.key for p in data.products], dtype=np.int64),
        product_p=w / w.sum(),
        price_e4=np.array([int(p.list_price.scaleb(4)) for p in data.products], dtype=np.int64),
        rate_e4=np.array([int(p.default_tax_rate.scaleb(4)) for p in data.products], dtype=np.int64),
        unit=np.array(units),
    )


def _null_ints(n: int) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool))


def _invoice_block(data: DemoDataSet, block: int, lo: int, hi: int) -> DemoInvoiceChunk:
    """Invoices ``lo <= i < hi`` of block ``block`` (drawn from the block's own stream, then sliced)."""
    ctx = data.invoice_context
    rng = np.random.default_rng([data.seed, 20_260_630, block])
    start = block * BLOCK
    size = BLOCK
    idx = np.arange(start, start + size, dtype=np.int64)
    total = max(data.invoice_count, 1)
    start_day = data.anchor - timedelta(days=INVOICE_SPAN_DAYS - 1)
    day = idx * INVOICE_SPAN_DAYS // total  # monotone: numbers and dates rise together
    dates = np.datetime64(start_day, "D") + day
    years = dates.astype("datetime64[Y]").astype(int) + 1970
    customer = rng.choice(len(data.customers), size=size, p=ctx.customer_p)
    u = rng.random(size)
    recent = day >= INVOICE_SPAN_DAYS - 20
    status = np.where(recent & (u < 0.5), "draft", np.where(u > 0.985, "red_letter", "issued"))
    inv_type = np.where(rng.random(size) < 0.85, "vat_special", "vat_normal")
    n_lines = rng.integers(1, 6, size=size)

    # Lines.
    n = int(n_lines.sum())
    owner = np.repeat(np.arange(size), n_lines)
    first = np.concatenate(([0], np.cumsum(n_lines)[:-1]))
    line_no = np.arange(n) - np.repeat(first, n_lines) + 1
    product = rng.choice(len(ctx.product_keys), size=n, p=ctx.product_p)
    unit = ctx.unit[product]
    qty = np.select(
        [unit == 0, unit == 1, unit == 2],
        [
            rng.integers(1, 200, n) * 100 * 10_000,
            rng.integers(1_000, 50_000, n) * 100,
            rng.integers(10, 2000, n) * 10_000,
        ],
        10_000,
    ).astype(np.int64)
    spread = rng.uniform(0.97, 1.03, n)  # contract prices drift a little
    price = np.rint(ctx.price_e4[product] * ctx.customer_discount[customer[owner]] * spread).astype(np.int64)
    rate = ctx.rate_e4[product]
    net, tax = line_amounts_fen(qty, price, rate)
    net_total = np.zeros(size, dtype=np.int64)
    tax_total = np.zeros(size, dtype=np.int64)
    np.add.at(net_total, owner, net)
    np.add.at(tax_total, owner, tax)

    # Per-year sequence numbers: the first global index of each year follows from the monotone day map.
    year_first = (years - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    year_start_day = (year_first - np.datetime64(start_day, "D")).astype(np.int64)
    year_start_day = np.maximum(year_start_day, 0)
    first_idx = -(-year_start_day * total // INVOICE_SPAN_DAYS)  # ceil
    seq = idx - first_idx + 1
    numbers = np.array(
        [f"INV-{y}-{s:06d}" for y, s in zip(years.tolist(), seq.tolist(), strict=True)], dtype=object
    )
    not_draft = status != "draft"
    invoice_numbers = np.where(
        not_draft,
        np.array([f"{10_000_000 + i:08d}" for i in idx.tolist()], dtype=object),
        np.array(None, dtype=object),
    )
    issue = np.where(not_draft, dates, np.datetime64("NaT"))

    keep = slice(lo - start, hi - start)
    invoices = pd.DataFrame(
        {
            "number": numbers[keep],
            "invoice_number": invoice_numbers[keep],
            "customer_key": customer[keep] + 1,
            "order_id": _null_ints(hi - lo),
            "invoice_type": inv_type[keep],
            "status": status[keep],
            "issue_date": issue[keep],
            "total_net_fen": net_total[keep],
            "total_tax_fen": tax_total[keep],
            "total_gross_fen": (net_total + tax_total)[keep],
        }
    )
    line_keep = (owner >= lo - start) & (owner < hi - start)
    lines = pd.DataFrame(
        {
            "number": numbers[owner[line_keep]],
            "line_no": line_no[line_keep],
            "product_key": ctx.product_keys[product[line_keep]],
            "order_line_id": _null_ints(int(line_keep.sum())),
            "quantity_e4": qty[line_keep],
            "unit_price_e4": price[line_keep],
            "tax_rate_e4": rate[line_keep],
            "net_amount_fen": net[line_keep],
            "tax_amount_fen": tax[line_keep],
        }
    )
    return DemoInvoiceChunk(invoices, lines)
