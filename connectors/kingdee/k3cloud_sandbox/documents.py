"""The business rules of the sandbox: save with per-row validation, the document state machine, stock
on audit, push (下推) and the invoicing chain SAL_OUTSTOCK -> AR_receivable -> IV_SALESIC/IV_SALESOC.

Every accepted write is appended to the ledger in the same transaction as the change itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .forms import PUSH_RULES, EntityDef, FieldDef, FormDef, PushRule, form
from .queries import QueryProblem, Resolver, unknown_field
from .store import Doc, Store
from .values import as_bool, as_date, as_decimal, ci, flags, ref_key, round2, split_ids

ALLOW_NEGATIVE_STOCK = "stk_invcheckresult"
EDITABLE = ("Z", "A", "D")


@dataclass
class RowProblem:
    """One entry of ``Errors``."""

    message: str
    field_name: str | None = None


class PackageFailed(Exception):
    """A package (or one bill of a state operation) was refused; nothing of it was kept."""

    def __init__(self, msg_code: int, problems: list[RowProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.msg_code = msg_code
        self.problems = problems


@dataclass
class Outcome:
    """Result of an operation over several packages or bills."""

    successes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    msg_code: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def fail(self, dindex: int, failure: PackageFailed) -> None:
        """Record a refused package under its ``DIndex``."""
        if not self.errors:
            self.msg_code = failure.msg_code
        for p in failure.problems:
            self.errors.append({"FieldName": p.field_name, "Message": p.message, "DIndex": dindex})


def _fail(msg_code: int, message: str, field_name: str | None = None) -> PackageFailed:
    return PackageFailed(msg_code, [RowProblem(message, field_name)])


def package_hash(model: Any) -> str:
    """SHA-256 of a package as sent (key order kept: "byte-identical" means identical JSON)."""
    return hashlib.sha256(json.dumps(model, ensure_ascii=False, default=str).encode("utf-8")).hexdigest()


class Engine:
    """Applies operations to the :class:`Store`; callers hold ``store.lock`` for the whole call."""

    def __init__(
        self, store: Store, settings: Callable[[], dict[str, Any]], clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    # ------------------------------------------------------------------ helpers

    def form_or_fail(self, form_id: str | None) -> FormDef:
        """The form, or MsgCode 9 (unknown) / 5 (empty)."""
        if not form_id:
            raise _fail(5, "FormId不能为空")
        found = form(form_id)
        if found is None:
            raise _fail(9, f"业务对象“{form_id}”不存在，请检查FormId")
        return found

    def _ledger(
        self, service: str, action: str, doc: Doc, principal: str | None, sha: str | None = None
    ) -> None:
        self.store.append_ledger(
            at=self.clock(),
            service=service,
            action=action,
            form_id=doc.form_id,
            fid=doc.fid,
            number=doc.number,
            principal=principal,
            package_sha256=sha,
        )

    def _resolve_ref(
        self, fd: FieldDef, value: Any, *, where: str, verify_base: bool, form_id: str
    ) -> dict[str, Any] | None:
        number, fid = ref_key(value)
        if number is None and fid is None:
            if value not in (None, "", {}):
                raise _fail(
                    11, f'{where}字段“{fd.label}”({fd.key})的值格式不正确，应为{{"FNumber":"编码"}}', fd.key
                )
            return None
        target = form(fd.target or "")
        assert target is not None
        doc = None
        if fid is not None:
            candidate = self.store.get_doc(fid)
            doc = candidate if candidate is not None and candidate.form_id == target.form_id else None
        else:
            docs = self.store.find_docs(target.form_id, str(number))
            doc = docs[0] if docs else None
        shown = number if number is not None else fid
        if doc is None:
            raise _fail(
                11,
                f"{where}字段“{fd.label}”({fd.key})的值“{shown}”在{target.name}中不存在，请检查编码",
                fd.key,
            )
        if doc.status != "C":
            raise _fail(
                11, f"{where}字段“{fd.label}”({fd.key})引用的{target.name}“{shown}”未审核，不能使用", fd.key
            )
        if verify_base and doc.head.get("FForbidStatus") == "B":
            raise _fail(11, f"{where}字段“{fd.label}”({fd.key})引用的{target.name}“{shown}”已禁用", fd.key)
        if target.form_id == "BOS_BillType" and doc.head.get("FBillFormID") not in (None, form_id):
            raise _fail(11, f"{where}单据类型“{shown}”不属于当前单据", fd.key)
        return {"id": doc.fid, "number": doc.number}

    def _coerce(self, fd: FieldDef, value: Any, *, where: str, verify_base: bool, form_id: str) -> Any:
        if fd.kind == "ref":
            return self._resolve_ref(fd, value, where=where, verify_base=verify_base, form_id=form_id)
        if value is None or value == "":
            return None
        try:
            if fd.kind == "date":
                return as_date(value)
            if fd.kind == "decimal":
                return str(as_decimal(value))
            if fd.kind == "int":
                return int(as_decimal(value))
        except ValueError:
            raise _fail(11, f"{where}字段“{fd.label}”({fd.key})的值“{value}”格式不正确", fd.key) from None
        if fd.kind == "bool":
            return as_bool(value)
        if fd.kind == "lot":
            number, _ = ref_key(value)
            return number or ""
        return str(value)

    # ------------------------------------------------------------------ parsing a model

    def _parse(
        self, fm: FormDef, model: dict[str, Any], *, verify_base: bool, validate: bool
    ) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], list[str]]:
        """(head values, entity rows, keys given) of a model; refs resolved, types checked."""
        unknown: list[str] = []
        head_items: list[tuple[FieldDef, Any]] = []
        entities: dict[str, list[dict[str, Any]]] = {}
        given: list[str] = []

        def walk_head(items: dict[str, Any]) -> None:
            for key, value in items.items():
                lowered = key.lower()
                if lowered in ("fid", fm.number_field.lower(), "fdocumentstatus"):
                    continue
                if fm.sub_head(key) is not None and isinstance(value, dict):
                    walk_head(value)
                    continue
                entity = fm.entity(key)
                if entity is not None:
                    entities[entity.key] = self._parse_rows(fm, entity, value, unknown, verify_base)
                    given.append(entity.key)
                    continue
                fd = fm.head_field(key)
                if fd is None:
                    unknown.append(key)
                    continue
                head_items.append((fd, value))
                given.append(fd.key)

        walk_head(model)
        if unknown:
            raise PackageFailed(9, [RowProblem(unknown_field(k).message, k) for k in unknown])
        head: dict[str, Any] = {}
        problems: list[RowProblem] = []
        for fd, value in head_items:
            if fd.kind == "computed":
                continue
            try:
                head[fd.key] = self._coerce(fd, value, where="", verify_base=verify_base, form_id=fm.form_id)
            except PackageFailed as exc:
                problems.extend(exc.problems)
        for rows in entities.values():
            for row in rows:
                problems.extend(row.pop("_problems", []))
        if problems:  # even ValidateFlag=false cannot store unreadable values or unknown references
            raise PackageFailed(11, problems)
        return head, entities, given

    def _parse_rows(
        self, fm: FormDef, entity: EntityDef, value: Any, unknown: list[str], verify_base: bool
    ) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            value = [value] if isinstance(value, dict) else []
        rows = []
        for n, raw in enumerate(value, start=1):
            if not isinstance(raw, dict):
                continue
            row: dict[str, Any] = {"_problems": [], "_given": []}
            for key, item in raw.items():
                lowered = key.lower()
                if lowered in ("fentryid", f"{entity.key.lower()}_fentryid"):
                    row["_given_id"] = int(as_decimal(item)) if item not in (None, "", 0) else None
                    continue
                if lowered == f"{entity.key.lower()}_link":
                    row["_link"] = item
                    continue
                fd = entity.field(key)
                if fd is None:
                    unknown.append(key)
                    continue
                if fd.kind == "computed":
                    continue
                try:
                    row[fd.key] = self._coerce(
                        fd,
                        item,
                        where=f"{entity.label}第{n}行：",
                        verify_base=verify_base,
                        form_id=fm.form_id,
                    )
                    row["_given"].append(fd.key)
                except PackageFailed as exc:
                    row["_problems"].extend(exc.problems)
            rows.append(row)
        return rows

    def _defaults_and_required(self, fm: FormDef, doc: Doc, validate: bool) -> None:
        problems: list[RowProblem] = []

        def fill(fields: tuple[FieldDef, ...], values: dict[str, Any], where: str) -> None:
            for fd in fields:
                if values.get(fd.key) in (None, "") and fd.default is not None:
                    if fd.kind == "ref":
                        target = form(fd.target or "")
                        docs = self.store.find_docs(target.form_id, fd.default) if target else []
                        if docs:
                            values[fd.key] = {"id": docs[0].fid, "number": docs[0].number}
                    else:
                        values[fd.key] = fd.default
                if validate and fd.required and values.get(fd.key) in (None, ""):
                    problems.append(RowProblem(f"{where}字段“{fd.label}”({fd.key})是必录项", fd.key))

        fill(fm.head, doc.head, "")
        for entity in fm.entities:
            rows = doc.entries(entity.key)
            if validate and entity.required and not rows:
                problems.append(RowProblem(f"单据体“{entity.label}”({entity.key})至少需要一行", entity.key))
            for n, row in enumerate(rows, start=1):
                fill(entity.fields, row, f"{entity.label}第{n}行：")
                qty = row.get("FRealQty") if fm.form_id == "SAL_OUTSTOCK" and validate else None
                if qty is not None and Decimal(qty) <= 0:
                    problems.append(RowProblem(f"{entity.label}第{n}行：实发数量必须大于0", "FRealQty"))
        if problems:
            raise PackageFailed(11, problems)

    def _compute(self, fm: FormDef, doc: Doc) -> None:
        """Amounts the server derives: 价税合计, and for AR the not-yet-invoiced quantity and amount."""
        if fm.form_id == "SAL_OUTSTOCK":
            for row in doc.entries("FEntity"):
                qty, price = Decimal(row.get("FRealQty") or 0), Decimal(row.get("FTaxPrice") or 0)
                row["FAllAmount"] = str(round2(qty * price))
                row.setdefault("FARJOINQTY", "0")
        elif fm.form_id == "AR_receivable":
            total = Decimal(0)
            for row in doc.entries("FEntityDetail"):
                qty = Decimal(row.get("FPriceQty") or 0)
                if row.get("FTaxPrice") not in (None, ""):
                    price = Decimal(row["FTaxPrice"])
                else:
                    rate = Decimal(row.get("FEntryTaxRate") or 0)
                    price = Decimal(row.get("FPrice") or 0) * (1 + rate / 100)
                amount = round2(qty * price)
                if row.get("_invoiced_qty") in (None, "0"):
                    row["FNOINVOICEQTY"] = str(qty)
                    row["FNOINVOICEAMOUNT"] = str(amount)
                row["FALLAMOUNTFOR_D"] = str(amount)
                total += amount
            doc.head["FALLAMOUNTFOR"] = str(total)
        elif fm.form_id in ("IV_SALESIC", "IV_SALESOC"):
            for row in doc.entries(fm.entities[0].key):
                if row.get("FALLAMOUNTFOR") in (None, ""):
                    qty, price = Decimal(row.get("FPRICEQTY") or 0), Decimal(row.get("FAUXTAXPRICE") or 0)
                    row["FALLAMOUNTFOR"] = str(round2(qty * price))

    def _assign_entry_ids(self, doc: Doc) -> None:
        for rows in doc.body.get("entities", {}).values():
            for seq, row in enumerate(rows, start=1):
                if not row.get("_id"):
                    row["_id"] = self.store.next_value("entry_id", 200001)
                row["_seq"] = seq
                row.pop("_given", None)
                row.pop("_given_id", None)
                row.pop("_problems", None)

    def _auto_number(self, fm: FormDef) -> str:
        while True:
            n = self.store.next_value(f"number:{fm.form_id}", 1)
            candidate = f"{fm.number_prefix}{n:06d}"
            if not self.store.find_docs(fm.form_id, candidate):
                return candidate

    def need_return_data(self, fm: FormDef, doc: Doc, keys: Any) -> list[dict[str, Any]]:
        """``NeedReturnData`` for the requested keys; ``FEntity.FMaterialId`` gives one value per entry."""
        wanted = keys if isinstance(keys, list) else [k for k in str(keys or "").split(",") if k.strip()]
        if not wanted:
            return []
        resolver = Resolver(self.store, fm)
        out: dict[str, Any] = {}
        for key in wanted:
            text = str(key).strip()
            base, _, rest = text.partition(".")
            try:
                column = resolver.column(rest if rest and fm.entity(base) else text)
            except QueryProblem:
                continue  # an unknown return field is left out, as the server does
            if column.entity:
                out[text] = [column.get(doc, e) for e in doc.entries(column.entity)]
            else:
                out[text] = column.get(doc, None)
        return [out]

    # ------------------------------------------------------------------ save

    def save_package(
        self,
        fm: FormDef,
        options: dict[str, Any],
        model: Any,
        *,
        service: str,
        principal: str | None,
        draft: bool = False,
    ) -> dict[str, Any]:
        """Save one package in its own transaction; returns its success entity or raises PackageFailed."""
        if fm.kind == "derived":
            raise _fail(12, f"{fm.name}是只读的，不能保存")
        if not isinstance(model, dict):
            raise _fail(8, "Model必须是对象")
        settings = self.settings()
        validate = as_bool(ci(options, "ValidateFlag"), True) and not draft
        verify_base = as_bool(ci(options, "IsVerifyBaseDataField"), False)
        sha = package_hash(model)
        now = self.clock()
        if as_bool(ci(options, "ValidateRepeatJson"), False) and self.store.package_seen(
            sha, now, float(settings["repeat_json_window"])
        ):
            raise _fail(11, "检测到重复提交的数据包（ValidateRepeatJson），本次保存被拒绝")
        head, entities, given = self._parse(fm, model, verify_base=verify_base, validate=validate)
        fid_given = ci(model, "FID")
        fid = int(as_decimal(fid_given)) if fid_given not in (None, "", 0, "0") else 0
        number_given = ci(model, fm.number_field)
        number = str(number_given).strip() if number_given not in (None, "") else ""
        with self.store.transaction():
            if fid:
                doc = self._update(fm, fid, head, entities, given, options, number)
                action = "update"
            else:
                if not number:
                    if fm.kind == "base":
                        raise _fail(11, f"字段“编码”({fm.number_field})是必录项", fm.number_field)
                    number = self._auto_number(fm)
                elif (validate or fm.kind == "base") and self.store.find_docs(fm.form_id, number):
                    message = str(settings["duplicate_message"]).format(form_name=fm.name, number=number)
                    raise _fail(11, message, fm.number_field)
                head[fm.number_field] = number
                doc = Doc(
                    0, fm.form_id, number, "Z" if draft else "A", {"head": head, "entities": {}}, now, now
                )
                for key, rows in entities.items():
                    doc.body["entities"][key] = rows
                self._link_rows(fm, doc)
                self._defaults_and_required(fm, doc, validate)
                self._compute(fm, doc)
                self._assign_entry_ids(doc)
                doc.fid = self.store.insert_doc(fm.form_id, number, doc.status, doc.body, now)
                self._claim_links(fm, doc)
                action = "draft" if draft else "create"
            self._ledger(service, action, doc, principal, sha)
            if as_bool(ci(options, "IsAutoSubmitAndAudit"), False) and not draft:
                self.transition("Submit", fm, doc, options, service=service, principal=principal)
                self.transition("Audit", fm, doc, options, service=service, principal=principal)
            self.store.remember_package(sha, now)
        return {
            "Id": doc.fid,
            "Number": doc.number,
            "NeedReturnData": self.need_return_data(fm, doc, ci(options, "NeedReturnFields")),
        }

    def _update(
        self,
        fm: FormDef,
        fid: int,
        head: dict[str, Any],
        entities: dict[str, list[dict[str, Any]]],
        given: list[str],
        options: dict[str, Any],
        number: str,
    ) -> Doc:
        doc = self.store.get_doc(fid)
        if doc is None or doc.form_id != fm.form_id:
            raise _fail(10, f"内码为{fid}的{fm.name}不存在或已被删除")
        if doc.status not in EDITABLE:
            raise _fail(12, f"{fm.name}“{doc.number}”状态为{doc.status}（审核中/已审核），不能修改")
        limit = ci(options, "NeedUpDateFields") or []
        allowed = {str(k).lower() for k in limit} if isinstance(limit, list) and limit else None
        for key, value in head.items():
            if allowed is None or key.lower() in allowed:
                doc.head[key] = value
        if number and (allowed is None or fm.number_field.lower() in allowed) and number != doc.number:
            if self.store.find_docs(fm.form_id, number):
                message = str(self.settings()["duplicate_message"]).format(form_name=fm.name, number=number)
                raise _fail(11, message, fm.number_field)
            doc.number = number
            doc.head[fm.number_field] = number
        delete_missing = as_bool(ci(options, "IsDeleteEntry"), True)
        for key, rows in entities.items():
            if allowed is not None and key.lower() not in allowed:
                continue
            existing = {r["_id"]: r for r in doc.entries(key)}
            kept: list[dict[str, Any]] = []
            for row in rows:
                given_id = row.get("_given_id")
                if given_id and given_id in existing:
                    target = existing.pop(given_id)
                    for fk in row["_given"]:
                        target[fk] = row[fk]
                    kept.append(target)
                else:
                    kept.append(row)
            if not delete_missing:
                kept = list(existing.values()) + kept
            elif any(Decimal(r.get("FARJOINQTY") or r.get("_pushed") or 0) > 0 for r in existing.values()):
                raise _fail(12, "被删除的分录已下推生成下游单据，不能删除")
            doc.body.setdefault("entities", {})[key] = kept
        self._defaults_and_required(fm, doc, True)
        self._compute(fm, doc)
        self._assign_entry_ids(doc)
        self.store.save_doc(doc, self.clock())
        return doc

    # ------------------------------------------------------------------ links between bills

    def _link_rows(self, fm: FormDef, doc: Doc) -> None:
        """Turn ``<Entity>_Link`` and invoice ``FSRCROWID`` into source links (``_src``)."""
        for entity in fm.entities:
            for row in doc.entries(entity.key):
                link = row.pop("_link", None)
                if isinstance(link, list) and link and isinstance(link[0], dict):
                    first = link[0]
                    src_entry = next((v for k, v in first.items() if k.lower().endswith("_fsid")), None)
                    if src_entry not in (None, ""):
                        row["_src"] = int(as_decimal(src_entry))
                elif fm.form_id in ("IV_SALESIC", "IV_SALESOC") and row.get("FSRCROWID"):
                    row["_src"] = int(row["FSRCROWID"])

    def _find_entry(self, form_id: str, entity: str, entry_id: int) -> tuple[Doc, dict[str, Any]] | None:
        for doc in self.store.docs(form_id):
            for row in doc.entries(entity):
                if row.get("_id") == entry_id:
                    return doc, row
        return None

    def _source_of(self, fm: FormDef) -> tuple[str, str, str, str] | None:
        """(source form, source entity, source qty field, target qty field) for linked targets."""
        if fm.form_id == "AR_receivable":
            return "SAL_OUTSTOCK", "FEntity", "FRealQty", "FPriceQty"
        if fm.form_id in ("IV_SALESIC", "IV_SALESOC"):
            return "AR_receivable", "FEntityDetail", "FPriceQty", "FPRICEQTY"
        return None

    def _claim_links(self, fm: FormDef, doc: Doc, sign: int = 1) -> None:
        """Add (or with ``sign=-1`` release) the linked quantity on the source entries."""
        source = self._source_of(fm)
        if source is None:
            return
        src_form, src_entity, _, qty_field = source
        for row in doc.entries(fm.entities[0].key):
            if not row.get("_src"):
                continue
            found = self._find_entry(src_form, src_entity, int(row["_src"]))
            if found is None:
                if sign > 0:
                    raise _fail(11, f"源单分录内码{row['_src']}不存在", "FSRCROWID")
                continue
            src_doc, src_row = found
            pushed = Decimal(src_row.get("_pushed") or 0) + sign * Decimal(row.get(qty_field) or 0)
            src_row["_pushed"] = str(pushed)
            if src_form == "SAL_OUTSTOCK":
                src_row["FARJOINQTY"] = str(pushed)
            self.store.save_doc(src_doc, self.clock())

    # ------------------------------------------------------------------ state machine

    def transition(
        self, op: str, fm: FormDef, doc: Doc, options: dict[str, Any], *, service: str, principal: str | None
    ) -> None:
        """Apply Submit / Audit / UnAudit / Delete to one bill (inside the caller's transaction)."""
        label = f"{fm.name}“{doc.number}”"
        if op == "Submit":
            if doc.status not in ("A", "D"):
                state = "已提交" if doc.status == "B" else "已审核" if doc.status == "C" else "为暂存状态"
                raise _fail(12, f"{label}{state}，不能提交")
            doc.status = "B"
        elif op == "Audit":
            if doc.status == "C":
                raise _fail(12, f"{label}已审核，不能重复审核")
            if doc.status != "B":
                raise _fail(12, f"{label}未提交，不能审核")
            self._on_audit(fm, doc, options, sign=-1)
            doc.status = "C"
        elif op == "UnAudit":
            if doc.status != "C":
                raise _fail(12, f"{label}未审核，不能反审核")
            if any(Decimal(r.get("_pushed") or 0) > 0 for e in fm.entities for r in doc.entries(e.key)):
                raise _fail(12, f"{label}已生成下游单据，不能反审核")
            self._on_audit(fm, doc, options, sign=+1)
            doc.status = "D"
        elif op == "Delete":
            if doc.status not in EDITABLE:
                raise _fail(12, f"{label}状态为{'已审核' if doc.status == 'C' else '审核中'}，不能删除")
            if any(Decimal(r.get("_pushed") or 0) > 0 for e in fm.entities for r in doc.entries(e.key)):
                raise _fail(12, f"{label}已生成下游单据，不能删除")
            self._claim_links(fm, doc, sign=-1)
            self.store.delete_doc(doc.fid)
            self._ledger(service, "delete", doc, principal)
            return
        else:  # pragma: no cover - callers pass known ops
            raise _fail(8, f"unknown operation {op}")
        self.store.save_doc(doc, self.clock())
        self._ledger(service, op.lower(), doc, principal)

    def _on_audit(self, fm: FormDef, doc: Doc, options: dict[str, Any], sign: int) -> None:
        """Side effects of audit (sign -1) and unaudit (sign +1)."""
        if fm.form_id == "SAL_OUTSTOCK":
            self._move_stock(doc, options, sign)
        elif fm.form_id in ("IV_SALESIC", "IV_SALESOC"):
            self._match_invoice(fm, doc, sign)

    def _move_stock(self, doc: Doc, options: dict[str, Any], sign: int) -> None:
        allow_negative = ALLOW_NEGATIVE_STOCK in flags(ci(options, "InterationFlags"))
        deltas: dict[tuple[str, str, str, str], Decimal] = {}
        rows_of: dict[tuple[str, str, str, str], int] = {}
        org = (doc.head.get("FStockOrgId") or {}).get("number", "")
        for n, row in enumerate(doc.entries("FEntity"), start=1):
            key = (row["FMaterialId"]["number"], row["FStockID"]["number"], row.get("FLot") or "", org)
            deltas[key] = deltas.get(key, Decimal(0)) + sign * Decimal(row["FRealQty"])
            rows_of.setdefault(key, n)
        problems = []
        for key, delta in deltas.items():
            after = self.store.stock_qty(*key) + delta
            if after < 0 and not allow_negative and sign < 0:
                have = self.store.stock_qty(*key)
                lot = f"批号“{key[2]}”" if key[2] else ""
                problems.append(
                    RowProblem(
                        f"第{rows_of[key]}行：物料“{key[0]}”在仓库“{key[1]}”{lot}"
                        f"的即时库存不足（可用{have}，需要{-delta}），不允许负库存",
                        "FRealQty",
                    )
                )
        if problems:
            raise PackageFailed(11, problems)
        for key, delta in deltas.items():
            self.store.set_stock(*key, self.store.stock_qty(*key) + delta)

    def _match_invoice(self, fm: FormDef, doc: Doc, sign: int) -> None:
        """开票核销: auditing an invoice lowers the receivable's not-invoiced quantity and amount."""
        for n, row in enumerate(doc.entries(fm.entities[0].key), start=1):
            if not row.get("_src"):
                continue
            found = self._find_entry("AR_receivable", "FEntityDetail", int(row["_src"]))
            if found is None:
                raise _fail(11, f"第{n}行：源应收单分录{row['_src']}不存在", "FSRCROWID")
            ar_doc, ar_row = found
            qty, amount = Decimal(row.get("FPRICEQTY") or 0), Decimal(row.get("FALLAMOUNTFOR") or 0)
            left_qty = Decimal(ar_row.get("FNOINVOICEQTY") or 0) + sign * qty
            left_amount = Decimal(ar_row.get("FNOINVOICEAMOUNT") or 0) + sign * amount
            if left_qty < 0:
                raise _fail(11, f"第{n}行：开票数量{qty}超过应收单“{ar_doc.number}”未开票数量", "FPRICEQTY")
            if left_qty == 0:
                left_amount = Decimal(0)  # fully invoiced: no rounding residue may remain
            ar_row["FNOINVOICEQTY"] = str(left_qty)
            ar_row["FNOINVOICEAMOUNT"] = str(round2(left_amount))
            invoiced = Decimal(ar_row.get("FPriceQty") or 0) - left_qty
            ar_row["_invoiced_qty"] = str(invoiced)
            self.store.save_doc(ar_doc, self.clock())

    def find_targets(self, fm: FormDef, data: dict[str, Any]) -> list[tuple[str, Doc | None]]:
        """Bills named by ``Numbers`` (array) and ``Ids`` (comma string), in that order."""
        out: list[tuple[str, Doc | None]] = []
        numbers = ci(data, "Numbers") or []
        if isinstance(numbers, str):
            numbers = [n for n in numbers.split(",") if n.strip()]
        for number in numbers:
            docs = self.store.find_docs(fm.form_id, str(number))
            out.append((str(number), docs[0] if docs else None))
        for fid in split_ids(ci(data, "Ids")):
            doc = self.store.get_doc(fid)
            out.append((str(fid), doc if doc is not None and doc.form_id == fm.form_id else None))
        return out

    def state_op(
        self, op: str, fm: FormDef, data: dict[str, Any], *, service: str, principal: str | None
    ) -> Outcome:
        """Submit / Audit / UnAudit / Delete every named bill, each in its own transaction."""
        outcome = Outcome()
        targets = self.find_targets(fm, data)
        if not targets:
            outcome.fail(0, _fail(3, "没有传入要操作的单据（Numbers/Ids为空）"))
            return outcome
        for dindex, (key, doc) in enumerate(targets):
            if doc is None:
                outcome.fail(dindex, _fail(10, f"单据编号或内码为“{key}”的{fm.name}不存在"))
                continue
            try:
                with self.store.transaction():
                    self.transition(op, fm, doc, data, service=service, principal=principal)
            except PackageFailed as exc:
                outcome.fail(dindex, exc)
                continue
            outcome.successes.append({"Id": doc.fid, "Number": doc.number, "DIndex": dindex})
        return outcome

    # ------------------------------------------------------------------ push

    def _rule(self, fm: FormDef, data: dict[str, Any]) -> PushRule:
        rule_id = str(ci(data, "RuleId") or "").strip()
        if rule_id:
            rule = next((r for r in PUSH_RULES if r.rule_id.lower() == rule_id.lower()), None)
            if rule is None or rule.source != fm.form_id:
                raise _fail(8, f"转换规则“{rule_id}”不存在或不适用于{fm.name}")
            return rule
        target = str(ci(data, "TargetFormId") or "").strip()
        if target and as_bool(ci(data, "IsEnableDefaultRule"), False):
            rule = next(
                (r for r in PUSH_RULES if r.source == fm.form_id and r.target.lower() == target.lower()), None
            )
            if rule is None:
                raise _fail(8, f"{fm.name}没有到“{target}”的默认转换规则")
            return rule
        raise _fail(8, "请指定RuleId，或TargetFormId并设置IsEnableDefaultRule为true")

    def push(self, fm: FormDef, data: dict[str, Any], *, service: str, principal: str | None) -> Outcome:
        """下推: one target bill (status A) per source bill, from the entries not pushed yet."""
        outcome = Outcome()
        try:
            rule = self._rule(fm, data)
        except PackageFailed as exc:
            outcome.fail(0, exc)
            return outcome
        entry_filter = set(split_ids(ci(data, "EntryIds")))
        targets = self.find_targets(fm, data)
        if not targets:
            outcome.fail(0, _fail(3, "没有传入要下推的单据（Numbers/Ids为空）"))
        for dindex, (key, doc) in enumerate(targets):
            if doc is None:
                outcome.fail(dindex, _fail(10, f"单据编号或内码为“{key}”的{fm.name}不存在"))
                continue
            try:
                with self.store.transaction():
                    created = self._push_one(rule, fm, doc, entry_filter, service, principal)
            except PackageFailed as exc:
                outcome.fail(dindex, exc)
                continue
            target_form = form(rule.target)
            assert target_form is not None
            outcome.successes.append(
                {
                    "Id": created.fid,
                    "Number": created.number,
                    "DIndex": dindex,
                    "EntryIds": {
                        target_form.entities[0].key: [
                            r["_id"] for r in created.entries(target_form.entities[0].key)
                        ]
                    },
                }
            )
        return outcome

    def _push_one(
        self,
        rule: PushRule,
        fm: FormDef,
        src: Doc,
        entry_filter: set[int],
        service: str,
        principal: str | None,
    ) -> Doc:
        if src.status != "C":
            raise _fail(12, f"{fm.name}“{src.number}”未审核，不能下推")
        target = form(rule.target)
        assert target is not None
        src_entity, qty_field = (
            ("FEntity", "FRealQty") if fm.form_id == "SAL_OUTSTOCK" else ("FEntityDetail", "FPriceQty")
        )
        rows: list[dict[str, Any]] = []
        for row in src.entries(src_entity):
            if entry_filter and row["_id"] not in entry_filter:
                continue
            full = Decimal(row.get(qty_field) or 0)
            remaining = full - Decimal(row.get("_pushed") or 0)
            if remaining <= 0:
                continue
            if fm.form_id == "SAL_OUTSTOCK":
                rows.append(
                    {
                        "FMATERIALID": row["FMaterialId"],
                        "FPriceQty": str(remaining),
                        "FTaxPrice": row.get("FTaxPrice"),
                        "FEntryTaxRate": row.get("FEntryTaxRate"),
                        "FSRCBILLNO": src.number,
                        "FSRCROWID": row["_id"],
                        "_src": row["_id"],
                    }
                )
            else:
                amount = Decimal(row.get("FALLAMOUNTFOR_D") or 0)
                if remaining != full:
                    amount = round2(amount * remaining / full)
                rows.append(
                    {
                        "FMATERIALID": row["FMATERIALID"],
                        "FPRICEQTY": str(remaining),
                        "FAUXTAXPRICE": row.get("FTaxPrice"),
                        "FTAXRATE": row.get("FEntryTaxRate"),
                        "FALLAMOUNTFOR": str(amount),
                        "FSRCBILLNO": src.number,
                        "FSRCROWID": row["_id"],
                        "_src": row["_id"],
                    }
                )
        if not rows:
            raise _fail(12, f"{fm.name}“{src.number}”没有可下推的分录（已全部下推）")
        h = src.head
        if fm.form_id == "SAL_OUTSTOCK":
            head = {
                "FDATE": h.get("FDate"),
                "FCUSTOMERID": h.get("FSettleID") or h.get("FCustomerID"),
                "FCURRENCYID": h.get("FSettleCurrID"),
                "FSETTLEORGID": h.get("FSaleOrgId"),
                "FSALEORGID": h.get("FSaleOrgId"),
                "FPAYORGID": h.get("FSaleOrgId"),
                "FISTAX": True,
                "FSetAccountType": "1",
            }
        else:
            head = {
                "FDATE": h.get("FDATE"),
                "FCUSTOMERID": h.get("FCUSTOMERID"),
                "FSETTLEORGID": h.get("FSETTLEORGID"),
                "FCURRENCYID": h.get("FCURRENCYID"),
            }
        now = self.clock()
        doc = Doc(
            0,
            target.form_id,
            self._auto_number(target),
            "A",
            {"head": head, "entities": {target.entities[0].key: rows}},
            now,
            now,
        )
        self._defaults_and_required(target, doc, True)
        self._compute(target, doc)
        self._assign_entry_ids(doc)
        doc.fid = self.store.insert_doc(target.form_id, doc.number, doc.status, doc.body, now)
        self._claim_links(target, doc)
        self._ledger(service, "push", doc, principal)
        return doc

    # ------------------------------------------------------------------ view

    def view(self, fm: FormDef, data: dict[str, Any]) -> dict[str, Any]:
        """The object model of one bill (``Result.Result`` of ``View``)."""
        number = str(ci(data, "Number") or "").strip()
        ids = split_ids(ci(data, "Id"))
        doc = None
        if ids:
            candidate = self.store.get_doc(ids[0])
            doc = candidate if candidate is not None and candidate.form_id == fm.form_id else None
        elif number:
            docs = self.store.find_docs(fm.form_id, number)
            doc = docs[0] if docs else None
        if doc is None:
            raise _fail(0, f"{fm.name}“{number or (ids[0] if ids else '')}”不存在或已被删除")
        out: dict[str, Any] = {"Id": doc.fid, "FormId": fm.form_id, "DocumentStatus": doc.status}
        out["BillNo" if fm.number_field == "FBillNo" else "Number"] = doc.number
        for fd in fm.head:
            out[fd.key[1:]] = self._view_value(fd, doc.head.get(fd.key))
        for entity in fm.entities:
            out[entity.view_name] = [
                {
                    "Id": row["_id"],
                    "Seq": row["_seq"],
                    **{fd.key[1:]: self._view_value(fd, row.get(fd.key)) for fd in entity.fields},
                }
                for row in doc.entries(entity.key)
            ]
        return out

    def _view_value(self, fd: FieldDef, raw: Any) -> Any:
        if fd.kind == "ref":
            if not isinstance(raw, dict):
                return None
            target = self.store.get_doc(int(raw["id"]))
            name = target.head.get("FName") if target else None
            return {"Id": raw["id"], "Number": raw["number"], "Name": [{"Key": 2052, "Value": name}]}
        if fd.kind in ("decimal", "computed") and raw not in (None, ""):
            return Decimal(str(raw))
        return raw
