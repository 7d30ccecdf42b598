"""The shape of a declarative mapping: field rules plus value tables, under a name and a version.

A mapping is data (YAML under ``mappings/specs/`` or a project's own directory) that IT can read::

    name: kis_sales_outbound
    version: 1
    direction: push                 # canonical -> vendor
    entity: invoice
    header_key: Head                # the output is {"Head": {...}, "Entry": [...]}
    lines_key: Entry
    header:
      FBillNo: {from: bill_no}
      Fdate: {from: invoice_date, convert: date}
      FSupplyID: {from: customer_code, table: customer}
    lines:
      FUnitID: {from: unit, table: unit}
    tables:
      unit: {domain: unit, values: {PCS: "PCS", KG: "KG"}}
      tax_rate: {domain: vat_rate, values: {"13": "V13", ...}}

A record mapped with a version carries that version (:class:`mappings.apply.MappedRecord`), so what was
pushed can always be explained later. Tables are keyed by canonical value on push and by vendor value
on pull.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Vocabularies that are closed in the canonical store: a table over one of them must cover every value,
# because any record may carry any of them tomorrow.
CLOSED_DOMAINS: dict[str, tuple[str, ...]] = {
    "stage": ("线索", "接触", "需求确认", "方案提交", "谈判", "成交", "输单"),
    "vat_rate": ("13", "9", "6", "3", "0"),
}
Domain = Literal["stage", "vat_rate", "unit", "warehouse", "customer", "material", "status", "other"]
Convert = Literal["str", "int", "decimal", "money", "qty", "date", "datetime", "vat_percent", "bool"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FieldRule(_Strict):
    """How one output field is produced: from a source field, a constant, or a string template."""

    source: str | None = Field(None, alias="from", description="Source field (dotted path allowed).")
    const: Any = None
    template: str | None = Field(
        None, description='String built from source fields, e.g. "HUB-{invoice_number}".'
    )
    table: str | None = Field(None, description="Value table the source value is translated through.")
    convert: Convert | None = None
    default: Any = None
    required: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> FieldRule:
        given = [x is not None for x in (self.source, self.const, self.template)]
        if sum(given) != 1:
            raise ValueError("give exactly one of from, const or template")
        if self.table is not None and self.source is None:
            raise ValueError("table needs from (the value to translate)")
        return self


class ValueTable(_Strict):
    """A value translation table (stage -> ERP status, unit, tax rate -> tax code, warehouse, customer)."""

    domain: Domain = "other"
    values: dict[str, str] = Field(default_factory=dict)
    passthrough: bool = Field(False, description="Values missing from the table pass through unchanged.")
    default: str | None = Field(None, description="Target for any value missing from the table.")

    @model_validator(mode="before")
    @classmethod
    def _keys_as_text(cls, data: Any) -> Any:
        # YAML reads `13: V13` with an integer key; tables are keyed by the canonical text.
        if isinstance(data, dict) and isinstance(data.get("values"), dict):
            data = {
                **data,
                "values": {str(k): ("" if v is None else str(v)) for k, v in data["values"].items()},
            }
        return data

    def covers(self, value: str) -> bool:
        """True when ``value`` has a target (explicitly, by default, or by pass-through)."""
        return value in self.values or self.default is not None or self.passthrough


class Mapping(_Strict):
    """A versioned canonical <-> vendor mapping."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: int = Field(ge=1)
    direction: Literal["push", "pull"]
    entity: str = Field(description="Canonical entity (invoice, inventory, opportunity ...).")
    target: str = Field("", description="Vendor object, e.g. kingdee_kis:salesdelivery.")
    description: str = ""
    header_key: str | None = Field(None, description="Wrap header fields under this key (e.g. Head).")
    lines_key: str | None = Field(None, description="Output key of the line list (e.g. Entry).")
    lines_from: str = Field("lines", description="Source key of the line list.")
    header: dict[str, FieldRule]
    lines: dict[str, FieldRule] = Field(default_factory=dict)
    tables: dict[str, ValueTable] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tables_exist(self) -> Mapping:
        for part, rules in (("header", self.header), ("lines", self.lines)):
            for key, rule in rules.items():
                if rule.table is not None and rule.table not in self.tables:
                    raise ValueError(
                        f"{part}.{key} uses table {rule.table!r}, which is not defined under tables "
                        f"(defined: {', '.join(sorted(self.tables)) or 'none'})"
                    )
        if self.lines and not self.lines_key:
            raise ValueError("lines needs lines_key (the output key of the line list, e.g. Entry)")
        for name, table in self.tables.items():
            vocabulary = CLOSED_DOMAINS.get(table.domain)
            if vocabulary is None:
                continue
            # Push tables are keyed by canonical values; pull tables translate into canonical values.
            side = (
                table.values.keys() if self.direction == "push" else [*table.values.values(), table.default]
            )
            wrong = sorted(v for v in side if v is not None and v not in vocabulary)
            if wrong:
                raise ValueError(
                    f"table {name!r} ({table.domain}) uses {', '.join(map(repr, wrong))}, which is not "
                    f"a canonical {table.domain}; use one of {', '.join(vocabulary)}"
                )
        return self

    @property
    def key(self) -> str:
        """``name@version``, as recorded with every mapped record."""
        return f"{self.name}@{self.version}"
