"""Small value helpers shared by the sandbox modules: lenient parsing of wire values, rounding."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

CENT = Decimal("0.01")
_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d", "%Y-%m-%dT%H:%M:%S.%f")
_NUMBER_KEYS = ("fnumber", "fstaffnumber", "number")
_ID_KEYS = ("fid", "id", "fuserid")


def ci(data: dict[str, Any], key: str, default: Any = None) -> Any:
    """``data[key]`` with a case-insensitive key."""
    if key in data:
        return data[key]
    lowered = key.lower()
    for k, v in data.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return default


def as_bool(value: Any, default: bool = False) -> bool:
    """Booleans arrive as true/"true"/"True"/1; blank means ``default``."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal):
        return value != 0
    return str(value).strip().lower() in ("true", "1", "yes")


def as_decimal(value: Any) -> Decimal:
    """A Decimal from a number or numeric text; ValueError otherwise."""
    if isinstance(value, bool) or value is None:
        raise ValueError("not a number")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not result.is_finite():
        raise ValueError("not a finite number")
    return result


def as_date(value: Any) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` from the usual date spellings; ValueError otherwise."""
    text = str(value).strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).strftime("%Y-%m-%dT%H:%M:%S")
        except ValueError:
            continue
    raise ValueError(f"not a date: {value!r}")


def round2(value: Decimal) -> Decimal:
    """Money to two places, half up."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def ref_key(value: Any) -> tuple[str | None, int | None]:
    """(number, id) of a reference: ``{"FNumber": ..}`` in any casing, ``{"FID": ..}``, text or int."""
    if value is None or value == "":
        return None, None
    if isinstance(value, bool):
        return None, None
    if isinstance(value, int):
        return None, value
    if isinstance(value, str):
        return value.strip(), None
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and k.lower() in _NUMBER_KEYS and v not in (None, ""):
                return str(v).strip(), None
        for k, v in value.items():
            if isinstance(k, str) and k.lower() in _ID_KEYS and v not in (None, "", 0, "0"):
                try:
                    return None, int(str(v))
                except ValueError:
                    return None, None
    return None, None


def split_ids(value: Any) -> list[int]:
    """Ids given as ``"1,2"`` (the documented form), a list, or a single number."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else re.split(r"[,\s]+", str(value))
    out = []
    for item in items:
        text = str(item).strip()
        if text and text.lstrip("-").isdigit():
            out.append(int(text))
    return out


def flags(value: Any) -> set[str]:
    """``InterationFlags`` as a set (``;`` or ``,`` separated text, or a list)."""
    if not value:
        return set()
    items = value if isinstance(value, list) else re.split(r"[;,]", str(value))
    return {str(i).strip().lower() for i in items if str(i).strip()}
