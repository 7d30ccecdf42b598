"""``ExecuteBillQuery`` / ``BillQuery``: projection, dotted references, entry explosion, filter, order, page.

A field key resolves to a :class:`Column`: head-level columns give one value per document, entry-level
columns (``FRealQty``, ``FEntity_FEntryId``) make one row per entry of their entity. Dotted keys walk base
data references (``FCustomerID.FNumber``, ``FMaterialId.FBaseUnitId.FName``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from . import filters
from .forms import FieldDef, FormDef, form
from .store import Doc, Store
from .values import ci

MAX_LIMIT = 10000
SHANGHAI = ZoneInfo("Asia/Shanghai")


class QueryProblem(Exception):
    """A query the server refuses; ``msg_code`` 9 for unknown fields/forms, 8 for bad parameters."""

    def __init__(self, msg_code: int, message: str) -> None:
        super().__init__(message)
        self.msg_code = msg_code
        self.message = message


def unknown_field(key: str) -> QueryProblem:
    """The server's wording for a field key that does not exist."""
    return QueryProblem(9, f"元数据中标识为{key}的字段不存在")


def unknown_form(form_id: str) -> QueryProblem:
    """The error for a form id that does not exist."""
    return QueryProblem(9, f"业务对象“{form_id}”不存在，请检查FormId")


Getter = Callable[[Doc, dict[str, Any] | None], Any]


@dataclass(frozen=True)
class Column:
    """One resolved field key; ``entity`` is set for entry-level keys."""

    key: str
    entity: str | None
    get: Getter


def stored_value(field: FieldDef, raw: Any) -> Any:
    """A stored value as a query returns it: references as their internal id, numbers as Decimal."""
    if raw is None:
        return None
    if field.kind == "ref":
        return raw.get("id") if isinstance(raw, dict) else raw
    if field.kind in ("decimal", "computed"):
        try:
            return Decimal(str(raw))
        except ArithmeticError:
            return raw
    return raw


def _shanghai(ts: float) -> str:
    return datetime.fromtimestamp(ts, SHANGHAI).strftime("%Y-%m-%dT%H:%M:%S")


class Resolver:
    """Turns field keys of one form into :class:`Column` getters."""

    def __init__(self, store: Store, form_def: FormDef, cache: dict[int, Doc | None] | None = None) -> None:
        self.store = store
        self.form = form_def
        self.cache: dict[int, Doc | None] = cache if cache is not None else {}

    def _target(self, ref: Any) -> Doc | None:
        if not isinstance(ref, dict) or ref.get("id") is None:
            return None
        fid = int(ref["id"])
        if fid not in self.cache:
            self.cache[fid] = self.store.get_doc(fid)
        return self.cache[fid]

    def column(self, key: str) -> Column:
        """The column for ``key``; raises :class:`QueryProblem` (MsgCode 9) when it does not exist."""
        key = key.strip()
        lowered = key.lower()
        f = self.form
        if lowered in ("fid", f.pk_alias.lower()):
            return Column(key, None, lambda d, e: d.fid)
        if lowered == f.number_field.lower():
            return Column(key, None, lambda d, e: d.number)
        if lowered == "fdocumentstatus":
            return Column(key, None, lambda d, e: d.status)
        if lowered == "fcreatedate":
            return Column(key, None, lambda d, e: _shanghai(d.created))
        if lowered == "fmodifydate":
            return Column(key, None, lambda d, e: _shanghai(d.modified))
        if "." in key:
            return self._dotted(key)
        if "_" in key:
            base, _, suffix = key.rpartition("_")
            entity = f.entity(base)
            if entity is not None and suffix.lower() in ("fentryid", "fseq"):
                attr = "_id" if suffix.lower() == "fentryid" else "_seq"
                return Column(key, entity.key, lambda d, e: e.get(attr) if e else None)
        head = f.head_field(key)
        if head is not None:
            hk = head.key
            return Column(key, None, lambda d, e: stored_value(head, d.head.get(hk)))
        found = f.entry_field(key)
        if found is not None:
            entity, entry_field = found
            ek = entry_field.key
            return Column(key, entity.key, lambda d, e: stored_value(entry_field, e.get(ek)) if e else None)
        raise unknown_field(key)

    def _dotted(self, key: str) -> Column:
        base, _, rest = key.partition(".")
        head = self.form.head_field(base)
        found = (None, head) if head is not None else self.form.entry_field(base)
        if found is None or found[1] is None:
            raise unknown_field(key)
        entity, field = found
        if field.kind == "lot":
            if rest.lower() not in ("fnumber", "fname"):
                raise unknown_field(key)
            fk = field.key
            if entity is None:
                return Column(key, None, lambda d, e: d.head.get(fk))
            return Column(key, entity.key, lambda d, e: e.get(fk) if e else None)
        if field.kind != "ref" or field.target is None:
            raise unknown_field(key)
        target_form = form(field.target)
        if target_form is None:  # pragma: no cover - metadata is static
            raise unknown_field(key)
        inner = Resolver(self.store, target_form, self.cache).column(rest)
        if inner.entity is not None:
            raise unknown_field(key)  # references are followed into head fields only
        fk = field.key

        def get(d: Doc, e: dict[str, Any] | None) -> Any:
            source = d.head if entity is None else (e or {})
            target = self._target(source.get(fk))
            return inner.get(target, None) if target is not None else None

        return Column(key, entity.key if entity else None, get)


def _split_keys(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [k.strip() for k in str(value or "").split(",") if k.strip()]


def _order(value: Any) -> list[tuple[str, bool]]:
    out = []
    for part in str(value or "").split(","):
        words = part.split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise QueryProblem(8, f"OrderString无法解析：{part.strip()}")
        out.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return out


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None or value == "":
        return (0, 0)
    if isinstance(value, bool):
        return (1, Decimal(int(value)))
    if isinstance(value, int | float | Decimal):
        return (1, Decimal(str(value)))
    return (2, str(value).casefold())


def _row_getter(columns: dict[str, Column], doc: Doc, entry: dict[str, Any] | None) -> Callable[[str], Any]:
    return lambda name: columns[name.lower()].get(doc, entry)


def _sorter(column: Column) -> Callable[[tuple[Doc, dict[str, Any] | None]], tuple[int, Any]]:
    return lambda row: _sort_key(column.get(row[0], row[1]))


def derived_inventory(store: Store) -> list[Doc]:
    """``STK_Inventory`` rows built from the stock table (read-only form)."""
    by_number: dict[tuple[str, str], Doc | None] = {}

    def ref(form_id: str, number: str) -> dict[str, Any] | None:
        if (form_id, number) not in by_number:
            docs = store.find_docs(form_id, number)
            by_number[(form_id, number)] = docs[0] if docs else None
        doc = by_number[(form_id, number)]
        return {"id": doc.fid, "number": doc.number} if doc else None

    out = []
    for row in store.inventory():
        material = ref("BD_MATERIAL", row["material"])
        stock = ref("BD_STOCK", row["stock"])
        mat_doc = by_number.get(("BD_MATERIAL", row["material"]))
        stock_doc = by_number.get(("BD_STOCK", row["stock"]))
        head = {
            "FMaterialId": material,
            "FStockId": stock,
            "FStockOrgId": ref("ORG_Organizations", row["org"]),
            "FLot": row["lot"],
            "FStockStatusId": ref("BD_StockStatus", "KCZT01_SYS"),
            "FBaseUnitId": mat_doc.head.get("FBaseUnitId") if mat_doc else None,
            "FBaseQty": row["qty"],
            "FQty": row["qty"],
            "FStockName": stock_doc.head.get("FName") if stock_doc else None,
        }
        out.append(Doc(int(row["rowid"]), "STK_Inventory", str(row["rowid"]), "C", {"head": head}, 0.0, 0.0))
    return out


def run_query(store: Store, data: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Field keys and result rows (values in key order) of one query ``data`` object."""
    form_id = str(ci(data, "FormId") or "")
    form_def = form(form_id)
    if form_def is None:
        raise unknown_form(form_id) if form_id else QueryProblem(5, "FormId不能为空")
    keys = _split_keys(ci(data, "FieldKeys"))
    if not keys:
        raise QueryProblem(8, "FieldKeys不能为空")
    raw_filter = ci(data, "FilterString") or ""
    try:
        tree = filters.parse(
            filters.from_array(raw_filter) if isinstance(raw_filter, list) else str(raw_filter)
        )
    except filters.FilterSyntaxError as exc:
        raise QueryProblem(8, f"FilterString语法错误：{exc}") from None
    order = _order(ci(data, "OrderString"))
    resolver = Resolver(store, form_def)
    columns = [resolver.column(k) for k in keys]
    filter_columns = {name.lower(): resolver.column(name) for name in filters.fields_of(tree)}
    order_columns = [(resolver.column(name), desc) for name, desc in order]
    entities = {
        c.entity for c in [*columns, *filter_columns.values(), *(c for c, _ in order_columns)] if c.entity
    }
    if len(entities) > 1:
        raise QueryProblem(8, f"不支持同时查询多个单据体：{', '.join(sorted(entities))}")
    entity = next(iter(entities), None)
    docs = derived_inventory(store) if form_def.kind == "derived" else store.docs(form_def.form_id)
    rows: list[tuple[Doc, dict[str, Any] | None]] = []
    for doc in docs:
        entries: list[dict[str, Any] | None] = list(doc.entries(entity)) if entity else [None]
        for entry in entries or [None]:
            if filters.evaluate(tree, _row_getter(filter_columns, doc, entry)):
                rows.append((doc, entry))
    for column, desc in reversed(order_columns):
        rows.sort(key=_sorter(column), reverse=desc)
    start = max(0, int(ci(data, "StartRow") or 0))
    limit = int(ci(data, "Limit") or 0)
    limit = MAX_LIMIT if limit <= 0 else min(limit, MAX_LIMIT)
    top = int(ci(data, "TopRowCount") or 0)
    if top > 0:
        rows = rows[:top]
    page = rows[start : start + limit]
    return keys, [[c.get(doc, entry) for c in columns] for doc, entry in page]
