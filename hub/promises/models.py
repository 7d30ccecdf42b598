"""Typed inputs and outputs of the promise engine: DataFrame column contracts and frozen configs.

The engine is pure computation (DataFrames in, a DataFrame out); these constants are the contract
the store-side code must meet when it builds the frames, and the names it reads back. Dates are
calendar dates in the factory's time zone (Asia/Shanghai): ``datetime.date`` in configs,
``datetime64`` columns at midnight (naive, meaning "that day in Shanghai") in frames.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from hub.errors import ConfigError

# --- inventory snapshot (one row per material, warehouse and optionally lot) --------------------
INV_MATERIAL: Final = "material"
INV_WAREHOUSE: Final = "warehouse"
INV_ON_HAND: Final = "on_hand"
INV_RESERVED: Final = "reserved"
INV_SAFETY_STOCK: Final = "safety_stock"
INVENTORY_REQUIRED: Final = (INV_MATERIAL, INV_WAREHOUSE, INV_ON_HAND)
# Optional quantity columns default to 0 when absent or null.
INVENTORY_OPTIONAL_QTY: Final = (INV_RESERVED, INV_SAFETY_STOCK)

# --- scheduled receipts: purchase and production orders with an ETA -----------------------------
SUP_MATERIAL: Final = "material"
SUP_WAREHOUSE: Final = "warehouse"  # optional; null = not tied to a warehouse
SUP_QUANTITY: Final = "quantity"
SUP_ETA: Final = "eta"
SUPPLY_REQUIRED: Final = (SUP_MATERIAL, SUP_QUANTITY, SUP_ETA)

# --- open demand: order lines and quote lines ---------------------------------------------------
DEM_LINE_ID: Final = "line_id"
DEM_MATERIAL: Final = "material"
DEM_QUANTITY: Final = "quantity"
DEM_TIER: Final = "customer_tier"  # 1 = most important customer
DEM_DOC_DATE: Final = "doc_date"  # order date or quote date
DEM_WAREHOUSE: Final = "warehouse"  # optional; null = any warehouse (stock is summed)
DEM_REQUESTED: Final = "requested_date"  # optional; null = no requested date, never late
DEM_REGION: Final = "region"  # optional; picks the shipping days
DEM_LEAD_TIME: Final = "lead_time_days"  # optional; null = PromiseConfig.default_lead_time_days
DEM_ALLOW_SPLIT: Final = "allow_split"  # optional; null = PromiseConfig.allow_split
DEMAND_REQUIRED: Final = (DEM_LINE_ID, DEM_MATERIAL, DEM_QUANTITY, DEM_TIER, DEM_DOC_DATE)

# --- result: one row per demand line, in priority order ----------------------------------------
OUT_LINE_ID: Final = "line_id"
OUT_RANK: Final = "priority_rank"  # 1 = served first
OUT_MATERIAL: Final = "material"
OUT_WAREHOUSE: Final = "warehouse"
OUT_QUANTITY: Final = "quantity"
OUT_TIER: Final = "customer_tier"
OUT_REQUESTED: Final = "requested_date"
OUT_REASON: Final = "reason"  # one of REASONS
OUT_READY: Final = "ready_date"  # the whole quantity is available (before handling/shipping)
OUT_PROMISED: Final = "promised_date"  # the whole quantity is delivered
OUT_NOW_QTY: Final = "now_quantity"  # quantity covered by today's stock (split lines: the first part)
OUT_NOW_PROMISED: Final = "now_promised_date"  # delivery of now_quantity; NaT when it is 0
OUT_REST_QTY: Final = "rest_quantity"  # quantity not covered today = quantity - now_quantity
OUT_REST_REASON: Final = "rest_reason"  # incoming_supply / made_to_order for the rest; null if none
OUT_LATE: Final = "late"  # promised_date > requested_date
OUT_DAYS_LATE: Final = "days_late"  # calendar days promised_date - requested_date, 0 when not late
RESULT_COLUMNS: Final = (
    OUT_LINE_ID,
    OUT_RANK,
    OUT_MATERIAL,
    OUT_WAREHOUSE,
    OUT_QUANTITY,
    OUT_TIER,
    OUT_REQUESTED,
    OUT_REASON,
    OUT_READY,
    OUT_PROMISED,
    OUT_NOW_QTY,
    OUT_NOW_PROMISED,
    OUT_REST_QTY,
    OUT_REST_REASON,
    OUT_LATE,
    OUT_DAYS_LATE,
)

# Reason codes, stored per line.
IN_STOCK: Final = "in_stock"  # today's available stock covers the whole line
INCOMING_SUPPLY: Final = "incoming_supply"  # a scheduled receipt covers the line
MADE_TO_ORDER: Final = "made_to_order"  # no known supply covers it: today + production lead time
SPLIT: Final = "split"  # part ships from today's stock, the rest later (see rest_reason)
REASONS: Final = (IN_STOCK, INCOMING_SUPPLY, MADE_TO_ORDER, SPLIT)


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of calendar days, e.g. a factory shutdown (停产检修, 年休)."""

    start: dt.date
    end: dt.date
    reason: str = ""

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ConfigError(
                f"calendar range {self.reason!r} ends {self.end} before it starts {self.start}: "
                "swap start and end in the calendar config"
            )


@dataclass(frozen=True)
class YearOverride:
    """Statutory rest days and make-up workdays (调休) of one year, as the State Council published them.

    Needed for years chinese-calendar does not know yet (it learns each year about one release after
    the notice in November); for known years the entries are applied on top of the library's data,
    so a correction can be made without waiting for a release. Weekends are implied: list only the
    weekday holidays and the weekend make-up workdays (listing more does no harm).
    """

    year: int
    holidays: frozenset[dt.date] = frozenset()
    workdays: frozenset[dt.date] = frozenset()

    def __post_init__(self) -> None:
        stray = sorted(d for d in self.holidays | self.workdays if d.year != self.year)
        if stray:
            raise ConfigError(f"calendar override for {self.year} lists dates of another year: {stray[:5]}")
        both = sorted(self.holidays & self.workdays)
        if both:
            raise ConfigError(f"calendar override for {self.year} lists {both[:5]} as holiday and as workday")


@dataclass(frozen=True)
class CalendarConfig:
    """How the factory works: statutory calendar plus its own overrides and shutdowns.

    ``rest_weekdays`` are the weekly rest days (Monday = 0); a six-day factory sets ``(6,)``.
    Shutdown days are never working days, not even when they fall on a make-up workday.
    """

    year_overrides: tuple[YearOverride, ...] = ()
    shutdowns: tuple[DateRange, ...] = ()
    rest_weekdays: tuple[int, ...] = (5, 6)

    def __post_init__(self) -> None:
        years = [o.year for o in self.year_overrides]
        if len(years) != len(set(years)):
            raise ConfigError(f"calendar config has two overrides for one year: {sorted(years)}")
        if any(not 0 <= w <= 6 for w in self.rest_weekdays):
            raise ConfigError(f"calendar rest_weekdays {self.rest_weekdays} must be 0 (Monday) .. 6 (Sunday)")

    def override_for(self, year: int) -> YearOverride | None:
        """The override configured for ``year``, if any."""
        return next((o for o in self.year_overrides if o.year == year), None)


def _frozen_map(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class PromiseConfig:
    """Settings of one promise run (normally from the template plus the run's ``today``).

    All day counts are working days on the factory calendar. ``handling_days`` covers picking and
    packing after the goods are ready; shipping days come from ``shipping_days_by_region`` keyed by
    the line's region, else ``default_shipping_days``. ``default_lead_time_days`` is the production
    lead time of a made-to-order line without its own ``lead_time_days``. ``allow_split`` lets a line
    ship the part today's stock covers now and the rest later (a line's ``allow_split`` column wins).
    """

    today: dt.date
    handling_days: int = 1
    shipping_days_by_region: Mapping[str, int] = field(default_factory=dict)
    default_shipping_days: int = 2
    default_lead_time_days: int = 15
    allow_split: bool = False
    calendar: CalendarConfig = field(default_factory=CalendarConfig)

    def __post_init__(self) -> None:
        if isinstance(self.today, dt.datetime) or not isinstance(self.today, dt.date):
            raise ConfigError(f"promise config today={self.today!r} must be a datetime.date (Shanghai day)")
        counts = {
            "handling_days": self.handling_days,
            "default_shipping_days": self.default_shipping_days,
            "default_lead_time_days": self.default_lead_time_days,
            **{f"shipping_days_by_region[{k}]": v for k, v in self.shipping_days_by_region.items()},
        }
        bad = {k: v for k, v in counts.items() if not isinstance(v, int) or isinstance(v, bool) or v < 0}
        if bad:
            raise ConfigError(f"promise config day counts must be whole numbers >= 0; fix {bad}")
        # Frozen means frozen: a caller mutating its dict later must not change this config.
        object.__setattr__(self, "shipping_days_by_region", _frozen_map(self.shipping_days_by_region))
