"""Column types shared by the models: money as Decimal(18,2) and time-zone-aware timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

SHANGHAI = ZoneInfo("Asia/Shanghai")
CENT = Decimal("0.01")
VAT_RATES = (Decimal("0.13"), Decimal("0.09"), Decimal("0.06"), Decimal("0.03"), Decimal("0"))

# Money: yuan with 2 places. Quantities and unit prices carry 4 places (bolts are priced per piece).
Money = sa.Numeric(18, 2, asdecimal=True)
Quantity = sa.Numeric(18, 4, asdecimal=True)
UnitPrice = sa.Numeric(18, 4, asdecimal=True)
TaxRate = sa.Numeric(5, 4, asdecimal=True)


def money(value: Decimal | int | str) -> Decimal:
    """Round to yuan with 2 places, half up (the rounding rule for every stored amount)."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def now_utc() -> datetime:
    return datetime.now(UTC)


class TZDateTime(TypeDecorator[datetime]):
    """A timestamp that is always time-zone aware in Python and stored as UTC.

    SQLite has no time zone type, so values are normalised to UTC on the way in and marked UTC on the
    way out; PostgreSQL uses ``timestamptz``. Naive datetimes are refused: callers must say which zone
    (ERP naive times are Asia/Shanghai and must be localised at the connector edge).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: attach a time zone")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
