"""Applying a mapping to one record. Pure: no I/O, no clock, no database.

A value a table cannot translate is a problem of that record (it is quarantined with the reason, the
batch goes on), so it raises :class:`UnmappedValue`, a :class:`hub.errors.DataValidationError`.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from hub.errors import DataValidationError
from mappings.spec import FieldRule, Mapping, ValueTable

SHANGHAI = ZoneInfo("Asia/Shanghai")
_CENT = Decimal("0.01")


class UnmappedValue(DataValidationError):
    """A record carries a value the mapping's table has no target for."""


class MappingFailed(DataValidationError):
    """A record lacks a required field, or a value cannot be converted."""


@dataclass(frozen=True)
class MappedRecord:
    """The vendor payload plus the mapping version that produced it (stored with what is pushed)."""

    payload: dict[str, Any]
    mapping_name: str
    mapping_version: int

    @property
    def mapping_key(self) -> str:
        """``name@version``."""
        return f"{self.mapping_name}@{self.mapping_version}"


def get_path(record: AnyMapping[str, Any], path: str) -> Any:
    """``record["a"]["b"]`` for ``"a.b"``; ``None`` when any step is missing."""
    # Vendor rows are often keyed by the dotted field name itself (K/3 Cloud "FMaterialId.FNumber").
    if isinstance(record, AnyMapping) and path in record:
        return record[path]
    current: Any = record
    for part in path.split("."):
        current = current.get(part) if isinstance(current, AnyMapping) else getattr(current, part, None)
        if current is None:
            return None
    return current


def vat_percent(value: Any) -> str:
    """VAT rate as the percent text tables use: Decimal("0.13") and 13 both give "13"."""
    rate = Decimal(str(value))
    if Decimal(0) < rate < Decimal(1):
        rate = rate * 100
    return format(rate.normalize(), "f")


def table_key(table: ValueTable, value: Any) -> str:
    """The text a value is looked up by in ``table``."""
    if table.domain == "vat_rate":
        return vat_percent(value)
    return str(value).strip()


def translate(table_name: str, table: ValueTable, value: Any, *, mapping: Mapping) -> str:
    """Translate ``value`` through ``table``; :class:`UnmappedValue` when it has no target."""
    key = table_key(table, value)
    if key in table.values:
        return table.values[key]
    if table.default is not None:
        return table.default
    if table.passthrough:
        return key
    raise UnmappedValue(
        f"mapping {mapping.key}: table {table_name!r} has no target for {key!r}; add it to the table "
        "(as a new mapping version) and re-send the record.",
        context={"mapping": mapping.key, "table": table_name, "value": key},
    )


def convert(kind: str, value: Any) -> Any:
    """Convert a value for the wire. Money is rounded to 2 places, ROUND_HALF_UP."""
    if kind == "str":
        return str(value)
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    if kind in ("decimal", "money", "qty"):
        number = value if isinstance(value, Decimal) else Decimal(str(value).replace(",", ""))
        return number.quantize(_CENT, rounding=ROUND_HALF_UP) if kind == "money" else number
    if kind == "vat_percent":
        return vat_percent(value)
    if kind == "date":
        if isinstance(value, dt.datetime):
            # ERPs store naive Shanghai dates: convert an aware time before dropping the clock.
            value = value.astimezone(SHANGHAI) if value.tzinfo else value
            return value.date().isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        return dt.date.fromisoformat(str(value)).isoformat()
    if kind == "datetime":
        if not isinstance(value, dt.datetime):
            value = dt.datetime.fromisoformat(str(value))
        if value.tzinfo is None:
            raise ValueError("a naive datetime; canonical times must carry a zone")
        return value.astimezone(SHANGHAI).replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    raise ValueError(f"unknown conversion {kind!r}")


def _field(mapping: Mapping, out_key: str, rule: FieldRule, record: AnyMapping[str, Any], where: str) -> Any:
    if rule.const is not None:
        return rule.const
    if rule.template is not None:
        names = [n for _, n, _, _ in string.Formatter().parse(rule.template) if n]
        values = {n: get_path(record, n) for n in names}
        missing = [n for n, v in values.items() if v in (None, "")]
        if missing:
            raise MappingFailed(
                f"mapping {mapping.key}: {where}{out_key} needs {', '.join(missing)}, "
                "which the record lacks.",
                context={"mapping": mapping.key, "field": out_key},
            )
        return rule.template.format(**values)
    assert rule.source is not None  # guaranteed by FieldRule
    value = get_path(record, rule.source)
    if value is None or value == "":
        if rule.default is not None:
            return rule.default
        if rule.required:
            raise MappingFailed(
                f"mapping {mapping.key}: {where}{out_key} comes from {rule.source!r}, which is empty.",
                context={"mapping": mapping.key, "field": out_key, "source": rule.source},
            )
        return None
    if rule.table is not None:
        value = translate(rule.table, mapping.tables[rule.table], value, mapping=mapping)
    if rule.convert is not None:
        try:
            value = convert(rule.convert, value)
        except (ValueError, TypeError, InvalidOperation) as exc:
            raise MappingFailed(
                f"mapping {mapping.key}: {where}{out_key}: cannot convert {rule.source!r} "
                f"to {rule.convert} ({exc}).",
                context={"mapping": mapping.key, "field": out_key},
            ) from None
    return value


def _apply_rules(
    mapping: Mapping, rules: dict[str, FieldRule], record: AnyMapping[str, Any], where: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, rule in rules.items():
        value = _field(mapping, key, rule, record, where)
        if value is not None:
            set_path(out, key, value)
    return out


def set_path(target: dict[str, Any], key: str, value: Any) -> None:
    """``FCustomerID.FNumber`` -> ``{"FCustomerID": {"FNumber": value}}`` (base-data references)."""
    *parents, last = key.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def apply_mapping(mapping: Mapping, record: AnyMapping[str, Any]) -> MappedRecord:
    """Map one record (with its ``lines``, if the mapping has line rules) and stamp the version."""
    header = _apply_rules(mapping, mapping.header, record, "")
    payload: dict[str, Any] = {mapping.header_key: header} if mapping.header_key else header
    if mapping.lines:
        assert mapping.lines_key is not None  # guaranteed by Mapping
        lines = get_path(record, mapping.lines_from) or []
        payload[mapping.lines_key] = [
            # Header fields are visible to line rules under their own names (e.g. the warehouse).
            _apply_rules(mapping, mapping.lines, {**record, **line}, f"line {index + 1}: ")
            for index, line in enumerate(lines)
        ]
    return MappedRecord(payload=payload, mapping_name=mapping.name, mapping_version=mapping.version)
