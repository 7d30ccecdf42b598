"""Building ``ExecuteBillQuery`` / ``BillQuery`` requests (ERP-APIS §3.7).

Filter values are always quoted here, never pasted in raw, so a bill number such as ``O'Brien-1`` cannot
change the meaning of a FilterString.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hub.errors import ConfigError

MAX_LIMIT = 10000  # the server's cap per query (official)
DEFAULT_PAGE_SIZE = 2000  # the documented default Limit


def quote_literal(value: Any) -> str:
    """A FilterString literal: numbers as-is, everything else single-quoted with ``'`` doubled."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float) or type(value).__name__ == "Decimal":
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def eq(field: str, value: Any) -> str:
    """``field = 'value'``."""
    return f"{field} = {quote_literal(value)}"


def in_(field: str, values: Iterable[Any]) -> str:
    """``field in ('a','b')``; raises on an empty list (that filter would match nothing or error)."""
    items = [quote_literal(v) for v in values]
    if not items:
        raise ValueError("in_() needs at least one value")
    return f"{field} in ({','.join(items)})"


def and_(*clauses: str) -> str:
    """Parenthesised conjunction of the non-empty clauses."""
    parts = [f"({c})" for c in clauses if c]
    return " and ".join(parts)


@dataclass(frozen=True)
class BillQuerySpec:
    """One query: form, projected field keys, filter, order and page window."""

    form_id: str
    field_keys: Sequence[str]
    filter_string: str = ""
    order_string: str = ""
    start_row: int = 0
    limit: int = DEFAULT_PAGE_SIZE
    top_row_count: int = 0

    def __post_init__(self) -> None:
        if not self.form_id:
            raise ConfigError("ExecuteBillQuery needs a form id (e.g. SAL_OUTSTOCK).")
        if not self.field_keys:
            raise ConfigError(f"ExecuteBillQuery on {self.form_id}: give at least one field key.")
        if not 0 <= self.limit <= MAX_LIMIT:
            raise ConfigError(f"ExecuteBillQuery on {self.form_id}: limit must be 0..{MAX_LIMIT}.")

    def to_body(self) -> dict[str, Any]:
        """The request ``data`` object."""
        return {
            "FormId": self.form_id,
            "FieldKeys": ",".join(self.field_keys),
            "FilterString": self.filter_string,
            "OrderString": self.order_string,
            "TopRowCount": self.top_row_count,
            "StartRow": self.start_row,
            "Limit": self.limit,
            "SubSystemId": "",
        }

    def page(self, start_row: int) -> BillQuerySpec:
        """The same query starting at ``start_row``."""
        return BillQuerySpec(
            self.form_id,
            tuple(self.field_keys),
            self.filter_string,
            self.order_string,
            start_row,
            self.limit,
            self.top_row_count,
        )
