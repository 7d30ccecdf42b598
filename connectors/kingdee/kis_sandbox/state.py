"""The KIS sandbox's state in its own SQLite file, so a restart keeps what was written.

Base data lives in one ``items`` table with a shared ``FItemID`` sequence (as in KIS's ``t_Item``), so a
customer id can never pass for a material id. Bills keep K/3-style heads and entries; every accepted
write is appended to ``ledger`` so tests can prove exactly-once. Quantities and money are stored as
decimal text. One connection guarded by a lock: the sandbox is for correctness, not speed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
ITEM_KINDS = ("customer", "material", "stock", "unit", "account")
FIRST_ITEM_ID = 1001
FIRST_BILL_ID = 100001
FIRST_VOUCHER_ID = 900001

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    fitemid INTEGER PRIMARY KEY, kind TEXT NOT NULL, number TEXT NOT NULL, name TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}', UNIQUE (kind, number));
CREATE TABLE IF NOT EXISTS inventory (
    material_id INTEGER NOT NULL, stock_id INTEGER NOT NULL, batch_no TEXT NOT NULL, qty TEXT NOT NULL,
    PRIMARY KEY (material_id, stock_id, batch_no));
CREATE TABLE IF NOT EXISTS bills (
    fid INTEGER PRIMARY KEY AUTOINCREMENT, bill_no TEXT NOT NULL, fdate TEXT NOT NULL, customer_id INTEGER,
    check_date TEXT, head TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS bills_bill_no ON bills (bill_no);
CREATE TABLE IF NOT EXISTS bill_entries (
    fid INTEGER NOT NULL, entry_id INTEGER NOT NULL, material_id INTEGER NOT NULL, stock_id INTEGER,
    unit_id INTEGER, batch_no TEXT NOT NULL, qty TEXT NOT NULL, price TEXT NOT NULL, amount TEXT NOT NULL,
    qty_invoice TEXT NOT NULL DEFAULT '0', data TEXT NOT NULL, PRIMARY KEY (fid, entry_id));
CREATE TABLE IF NOT EXISTS invoices (
    id INTEGER PRIMARY KEY AUTOINCREMENT, fid INTEGER NOT NULL, tran_type INTEGER NOT NULL, invoice_no TEXT,
    lines TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vouchers (
    fid INTEGER PRIMARY KEY AUTOINCREMENT, number INTEGER NOT NULL, fdate TEXT NOT NULL, reference TEXT,
    head TEXT NOT NULL, entries TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, endpoint TEXT NOT NULL, bill_no TEXT,
    fid INTEGER, payload_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, expires_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0, extra TEXT NOT NULL DEFAULT '{}');
"""


class Refusal(Exception):
    """A business rule refused the request; the text is the backend reason (Chinese, like KIS)."""


def now_local() -> str:
    """Asia/Shanghai wall time as KIS stores it (naive text)."""
    return dt.datetime.now(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def payload_hash(payload: Any) -> str:
    """SHA-256 of the canonical JSON of ``payload``."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dec(value: Any, what: str) -> Decimal:
    """A Decimal from a JSON number or string; Refusal naming ``what`` otherwise."""
    try:
        if value is None or value == "" or isinstance(value, bool):
            raise InvalidOperation
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise Refusal(f"{what} 不是有效数字: {value!r}") from None


def _id(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return -1  # not numeric (e.g. a code where an internal id belongs): reported as unknown id


class SandboxState:
    """All sandbox data, in SQLite at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.RLock()
        self._db.executescript(SCHEMA)
        with self.tx() as db:
            for table, first in (("bills", FIRST_BILL_ID), ("vouchers", FIRST_VOUCHER_ID)):
                if db.execute("SELECT 1 FROM sqlite_sequence WHERE name = ?", (table,)).fetchone() is None:
                    db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, first - 1))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One serialised transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- base data ---------------------------------------------------------------------------------
    def is_empty(self) -> bool:
        """True before anything was seeded."""
        return not self._q("SELECT 1 FROM items LIMIT 1")

    def seed(self, data: Mapping[str, Any]) -> dict[str, dict[str, int]]:
        """Upsert base data and inventory (``units``, ``customers``, ``materials``, ``stocks``, ``accounts``,
        ``inventory``) by number; returns ``{kind: {number: FItemID}}``."""
        ids: dict[str, dict[str, int]] = {}
        with self.tx() as db:
            for plural, kind in (
                ("units", "unit"),
                ("customers", "customer"),
                ("materials", "material"),
                ("stocks", "stock"),
                ("accounts", "account"),
            ):
                for rec in data.get(plural) or []:
                    number, name = str(rec["number"]).strip(), str(rec.get("name") or rec["number"])
                    extra = {k: v for k, v in rec.items() if k not in ("number", "name")}
                    if kind == "material" and extra.get("unit"):
                        unit = db.execute(
                            "SELECT fitemid FROM items WHERE kind='unit' AND number=?", (extra["unit"],)
                        ).fetchone()
                        if unit is None:
                            raise Refusal(f"物料 {number} 的计量单位 {extra['unit']} 不存在")
                        extra["unit_id"] = unit[0]
                    ids.setdefault(kind, {})[number] = self._upsert_item(db, kind, number, name, extra)
            for rec in data.get("inventory") or []:
                material = self._item_by_number(db, "material", str(rec["material"]))
                stock = self._item_by_number(db, "stock", str(rec["stock"]))
                if material is None or stock is None:
                    raise Refusal(f"库存行引用了不存在的物料或仓库: {rec}")
                db.execute(
                    "INSERT INTO inventory VALUES (?,?,?,?) ON CONFLICT DO UPDATE SET qty=excluded.qty",
                    (material, stock, str(rec.get("batch") or ""), str(dec(rec["qty"], "qty"))),
                )
        return ids

    def _upsert_item(
        self, db: sqlite3.Connection, kind: str, number: str, name: str, extra: dict[str, Any]
    ) -> int:
        row = db.execute("SELECT fitemid FROM items WHERE kind=? AND number=?", (kind, number)).fetchone()
        if row is not None:
            db.execute(
                "UPDATE items SET name=?, data=? WHERE fitemid=?",
                (name, json.dumps(extra, ensure_ascii=False), row[0]),
            )
            return int(row[0])
        top = db.execute("SELECT MAX(fitemid) FROM items").fetchone()[0]
        fitemid = max(FIRST_ITEM_ID, (top or 0) + 1)
        db.execute(
            "INSERT INTO items VALUES (?,?,?,?,?)",
            (fitemid, kind, number, name, json.dumps(extra, ensure_ascii=False)),
        )
        return fitemid

    @staticmethod
    def _item_by_number(db: sqlite3.Connection, kind: str, number: str) -> int | None:
        row = db.execute("SELECT fitemid FROM items WHERE kind=? AND number=?", (kind, number)).fetchone()
        return int(row[0]) if row else None

    def item(self, kind: str, fitemid: int | None) -> sqlite3.Row | None:
        """The item of ``kind`` with id ``fitemid`` (None when absent or of another kind)."""
        if fitemid is None:
            return None
        rows = self._q("SELECT * FROM items WHERE kind=? AND fitemid=?", (kind, fitemid))
        return rows[0] if rows else None

    def list_items(self, kind: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of items as K/3-style rows, and the total."""
        total = self._q("SELECT COUNT(*) FROM items WHERE kind=?", (kind,))[0][0]
        rows = self._q(
            "SELECT * FROM items WHERE kind=? ORDER BY fitemid LIMIT ? OFFSET ?", (kind, limit, offset)
        )
        return [self.item_row(r) for r in rows], int(total)

    @staticmethod
    def item_row(row: sqlite3.Row) -> dict[str, Any]:
        """K/3-style view of an item."""
        data = json.loads(row["data"])
        out: dict[str, Any] = {"FItemID": row["fitemid"], "FNumber": row["number"], "FName": row["name"]}
        if row["kind"] == "material":
            out.update({"FModel": data.get("model", ""), "FUnitID": data.get("unit_id")})
        elif row["kind"] == "customer":
            out.update({"FTaxNum": data.get("tax_no", "")})
        return out

    def create_item(self, kind: str, number: str, name: str, extra: dict[str, Any]) -> int:
        """Create one item; Refusal when the number exists."""
        with self.tx() as db:
            if self._item_by_number(db, kind, number) is not None:
                raise Refusal(f"代码 {number} 已存在")
            return self._upsert_item(db, kind, number, name, extra)

    # --- inventory ---------------------------------------------------------------------------------
    def list_inventory(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of 即时库存 rows and the total."""
        total = self._q("SELECT COUNT(*) FROM inventory")[0][0]
        rows = self._q(
            "SELECT i.*, m.number AS mnum, s.number AS snum FROM inventory i "
            "JOIN items m ON m.fitemid=i.material_id JOIN items s ON s.fitemid=i.stock_id "
            "ORDER BY m.number, s.number, i.batch_no LIMIT ? OFFSET ?",
            (limit, offset),
        )
        return [
            {
                "FMaterialID": r["material_id"],
                "FMaterialNumber": r["mnum"],
                "FStockID": r["stock_id"],
                "FStockNumber": r["snum"],
                "FBatchNo": r["batch_no"],
                "FBUQty": Decimal(r["qty"]),
            }
            for r in rows
        ], int(total)

    def stock_qty(self, material_id: int, stock_id: int, batch_no: str = "") -> Decimal:
        """On-hand quantity of one inventory row (0 when absent)."""
        rows = self._q(
            "SELECT qty FROM inventory WHERE material_id=? AND stock_id=? AND batch_no=?",
            (material_id, stock_id, batch_no),
        )
        return Decimal(rows[0][0]) if rows else Decimal(0)

    # --- bills -------------------------------------------------------------------------------------
    def _validate_bill(self, db: sqlite3.Connection, obj: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if not isinstance(obj, dict) or not isinstance(obj.get("Head"), dict):
            raise Refusal("缺少 Object.Head")
        head = dict(obj["Head"])
        entries = obj.get("Entry")
        if not isinstance(entries, list) or not entries:
            raise Refusal("单据分录 Entry 不能为空")
        try:
            dt.date.fromisoformat(str(head.get("Fdate", ""))[:10])
        except ValueError:
            raise Refusal(f"单据日期 Fdate 无效: {head.get('Fdate')!r}") from None
        if str(head.get("FTranType", 21)) != "21":
            raise Refusal(f"单据类型 FTranType={head.get('FTranType')} 不是销售出库(21)")
        if self.item("customer", _id(head.get("FSupplyID"))) is None:
            raise Refusal(f"购货单位内码 FSupplyID={head.get('FSupplyID')!r} 不存在")
        head_stock = _id(head.get("FDCStockID"))
        if head_stock is not None and self.item("stock", head_stock) is None:
            raise Refusal(f"仓库内码 FDCStockID={head.get('FDCStockID')!r} 不存在")
        out = []
        for n, e in enumerate(entries, start=1):
            if not isinstance(e, dict):
                raise Refusal(f"第{n}行: 分录格式错误")
            material = self.item("material", _id(e.get("FItemID")))
            if material is None:
                raise Refusal(f"第{n}行: 物料内码 FItemID={e.get('FItemID')!r} 不存在")
            stock_id = _id(e.get("FDCStockID")) if e.get("FDCStockID") not in (None, "") else head_stock
            if stock_id is None or self.item("stock", stock_id) is None:
                raise Refusal(f"第{n}行: 仓库内码 FDCStockID={e.get('FDCStockID')!r} 不存在")
            unit_id = _id(e.get("FUnitID"))
            if unit_id is None:
                unit_id = json.loads(material["data"]).get("unit_id")
            elif self.item("unit", unit_id) is None:
                raise Refusal(f"第{n}行: 计量单位内码 FUnitID={e.get('FUnitID')!r} 不存在")
            qty = dec(e.get("Fauxqty", e.get("FQty")), f"第{n}行 数量 Fauxqty")
            if qty <= 0:
                raise Refusal(f"第{n}行: 数量必须大于 0")
            price = dec(e.get("FAuxPrice", 0), f"第{n}行 单价 FAuxPrice")
            amount = (
                dec(e["Famount"], f"第{n}行 金额 Famount")
                if e.get("Famount") not in (None, "")
                else (qty * price).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            )
            out.append(
                {
                    "entry_id": n,
                    "material_id": material["fitemid"],
                    "stock_id": stock_id,
                    "unit_id": unit_id,
                    "batch_no": str(e.get("FBatchNo") or ""),
                    "qty": qty,
                    "price": price,
                    "amount": amount,
                    "data": e,
                }
            )
        return head, out

    def _insert_entries(self, db: sqlite3.Connection, fid: int, entries: list[dict[str, Any]]) -> None:
        for e in entries:
            db.execute(
                "INSERT INTO bill_entries VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    fid,
                    e["entry_id"],
                    e["material_id"],
                    e["stock_id"],
                    e["unit_id"],
                    e["batch_no"],
                    str(e["qty"]),
                    str(e["price"]),
                    str(e["amount"]),
                    "0",
                    json.dumps(e["data"], ensure_ascii=False, default=str),
                ),
            )

    def create_bill(self, obj: Any, *, refuse_duplicate: bool) -> tuple[int, str]:
        """Validate and store a sales outbound; returns ``(FID, FBillNo)`` and writes the ledger."""
        with self.tx() as db:
            head, entries = self._validate_bill(db, obj)
            bill_no = str(head.get("FBillNo") or "").strip()
            if (
                refuse_duplicate
                and bill_no
                and db.execute("SELECT 1 FROM bills WHERE bill_no=?", (bill_no,)).fetchone()
            ):
                raise Refusal(f"单据编号 {bill_no} 已存在，不能重复")
            head["FBillNo"] = bill_no
            head["FCheckDate"] = None
            cur = db.execute(
                "INSERT INTO bills (bill_no, fdate, customer_id, check_date, head, created_at) "
                "VALUES (?,?,?,?,?,?)",
                (
                    bill_no,
                    str(head["Fdate"])[:10],
                    _id(head["FSupplyID"]),
                    None,
                    json.dumps(head, ensure_ascii=False, default=str),
                    now_local(),
                ),
            )
            fid = int(cur.lastrowid or 0)
            if not bill_no:  # KIS numbers a bill itself when FBillNo is blank (so blind re-posts duplicate)
                bill_no = f"XOUT{fid:06d}"
                head["FBillNo"] = bill_no
                db.execute(
                    "UPDATE bills SET bill_no=?, head=? WHERE fid=?",
                    (bill_no, json.dumps(head, ensure_ascii=False, default=str), fid),
                )
            self._insert_entries(db, fid, entries)
            self._ledger(db, "salesdelivery/create", bill_no, fid, obj)
            return fid, bill_no

    def update_bill(self, obj: Any, *, refuse_duplicate: bool) -> tuple[int, str]:
        """Replace head and entries of an unaudited bill identified by ``Head.FInterID``."""
        with self.tx() as db:
            head, entries = self._validate_bill(db, obj)
            fid = _id(head.get("FInterID"))
            row = db.execute("SELECT * FROM bills WHERE fid=?", (fid,)).fetchone()
            if row is None:
                raise Refusal(f"单据内码 FInterID={head.get('FInterID')!r} 不存在")
            if row["check_date"]:
                raise Refusal(f"单据 {row['bill_no']} 已审核，不能修改")
            bill_no = str(head.get("FBillNo") or row["bill_no"])
            if (
                refuse_duplicate
                and db.execute("SELECT 1 FROM bills WHERE bill_no=? AND fid<>?", (bill_no, fid)).fetchone()
            ):
                raise Refusal(f"单据编号 {bill_no} 已存在，不能重复")
            head["FBillNo"] = bill_no
            head["FCheckDate"] = None
            db.execute(
                "UPDATE bills SET bill_no=?, fdate=?, customer_id=?, head=? WHERE fid=?",
                (
                    bill_no,
                    str(head["Fdate"])[:10],
                    _id(head["FSupplyID"]),
                    json.dumps(head, ensure_ascii=False, default=str),
                    fid,
                ),
            )
            db.execute("DELETE FROM bill_entries WHERE fid=?", (fid,))
            self._insert_entries(db, int(fid or 0), entries)
            self._ledger(db, "salesdelivery/update", bill_no, fid, obj)
            return int(fid or 0), bill_no

    def delete_bill(self, fid: int | None) -> None:
        """Delete an unaudited bill."""
        with self.tx() as db:
            row = db.execute("SELECT * FROM bills WHERE fid=?", (fid,)).fetchone()
            if row is None:
                raise Refusal(f"单据内码 {fid!r} 不存在")
            if row["check_date"]:
                raise Refusal(f"单据 {row['bill_no']} 已审核，不能删除")
            db.execute("DELETE FROM bills WHERE fid=?", (fid,))
            db.execute("DELETE FROM bill_entries WHERE fid=?", (fid,))
            self._ledger(db, "salesdelivery/delete", row["bill_no"], fid, {"Id": fid})

    def bill_detail(self, fid: int | None) -> dict[str, Any]:
        """``{"Head": {...}, "Entry": [...]}`` of one bill."""
        rows = self._q("SELECT * FROM bills WHERE fid=?", (fid,))
        if not rows:
            raise Refusal(f"单据内码 {fid!r} 不存在")
        row = rows[0]
        head = json.loads(row["head"])
        head.update({"FInterID": row["fid"], "FBillNo": row["bill_no"], "FCheckDate": row["check_date"]})
        entries = []
        for e in self._q("SELECT * FROM bill_entries WHERE fid=? ORDER BY entry_id", (fid,)):
            data = json.loads(e["data"])
            data.update(
                {
                    "FEntryID": e["entry_id"],
                    "FItemID": e["material_id"],
                    "FDCStockID": e["stock_id"],
                    "FUnitID": e["unit_id"],
                    "FBatchNo": e["batch_no"],
                    "Fauxqty": Decimal(e["qty"]),
                    "FQty": Decimal(e["qty"]),
                    "FAuxPrice": Decimal(e["price"]),
                    "Famount": Decimal(e["amount"]),
                    "FQtyInvoice": Decimal(e["qty_invoice"]),
                    "FAuxQtyInvoice": Decimal(e["qty_invoice"]),
                }
            )
            entries.append(data)
        return {"Head": head, "Entry": entries}

    def list_bills(
        self, filters: Mapping[str, Any], offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Head rows matching ``FBillNo`` / ``BeginDate`` / ``EndDate``, ordered by FInterID."""
        where, args = ["1=1"], []
        if filters.get("FBillNo"):
            where.append("bill_no = ?")
            args.append(str(filters["FBillNo"]))
        if filters.get("BeginDate"):
            where.append("fdate >= ?")
            args.append(str(filters["BeginDate"])[:10])
        if filters.get("EndDate"):
            where.append("fdate <= ?")
            args.append(str(filters["EndDate"])[:10])
        cond = " AND ".join(where)
        total = self._q(f"SELECT COUNT(*) FROM bills WHERE {cond}", tuple(args))[0][0]
        rows = self._q(
            f"SELECT * FROM bills WHERE {cond} ORDER BY fid LIMIT ? OFFSET ?", (*args, limit, offset)
        )
        out = []
        for r in rows:
            head = json.loads(r["head"])
            out.append(
                {
                    "FInterID": r["fid"],
                    "FBillNo": r["bill_no"],
                    "Fdate": r["fdate"],
                    "FSupplyID": r["customer_id"],
                    "FCheckDate": r["check_date"],
                    "FROB": head.get("FROB", 1),
                    "FTranType": 21,
                }
            )
        return out, int(total)

    def bills_by_no(self, bill_no: str) -> list[int]:
        """FIDs of every bill numbered ``bill_no`` (more than one only with duplicate refusal off)."""
        return [int(r[0]) for r in self._q("SELECT fid FROM bills WHERE bill_no=? ORDER BY fid", (bill_no,))]

    def audit(self, fid: int, *, allow_negative: bool) -> str:
        """Audit a bill: set FCheckDate and take its quantities out of stock (back in for a red bill)."""
        with self.tx() as db:
            row = db.execute("SELECT * FROM bills WHERE fid=?", (fid,)).fetchone()
            if row is None:
                raise Refusal(f"单据内码 {fid} 不存在")
            if row["check_date"]:
                raise Refusal(f"单据 {row['bill_no']} 已审核")
            sign = Decimal(1) if str(json.loads(row["head"]).get("FROB", 1)) == "-1" else Decimal(-1)
            for e in db.execute("SELECT * FROM bill_entries WHERE fid=?", (fid,)).fetchall():
                key = (e["material_id"], e["stock_id"], e["batch_no"])
                cur = db.execute(
                    "SELECT qty FROM inventory WHERE material_id=? AND stock_id=? AND batch_no=?", key
                ).fetchone()
                new = (Decimal(cur[0]) if cur else Decimal(0)) + sign * Decimal(e["qty"])
                if new < 0 and not allow_negative:
                    raise Refusal(f"第{e['entry_id']}行: 库存不足，审核后库存为 {new}")
                db.execute(
                    "INSERT INTO inventory VALUES (?,?,?,?) ON CONFLICT DO UPDATE SET qty=excluded.qty",
                    (*key, str(new)),
                )
            stamp = now_local()
            db.execute("UPDATE bills SET check_date=? WHERE fid=?", (stamp, fid))
            self._ledger(db, "__admin__/audit", row["bill_no"], fid, {"fid": fid})
            return stamp

    def invoice(
        self, fid: int, tran_type: int, invoice_no: str, lines: list[dict[str, Any]] | None
    ) -> dict[str, Any]:
        """Simulate a sales invoice (ICSale 80/86) written back as FQtyInvoice on the outbound's entries."""
        if tran_type not in (80, 86):
            raise Refusal("发票类型只能是 80(专用发票) 或 86(普通发票)")
        with self.tx() as db:
            entries = {e["entry_id"]: e for e in db.execute("SELECT * FROM bill_entries WHERE fid=?", (fid,))}
            if not entries:
                raise Refusal(f"单据内码 {fid} 不存在")
            wanted = lines or [
                {"entry_id": k, "qty": str(Decimal(e["qty"]) - Decimal(e["qty_invoice"]))}
                for k, e in entries.items()
            ]
            for line in wanted:
                entry = entries.get(int(line["entry_id"]))
                if entry is None:
                    raise Refusal(f"分录 {line['entry_id']} 不存在")
                new = Decimal(entry["qty_invoice"]) + dec(line["qty"], "qty")
                if new > Decimal(entry["qty"]):
                    raise Refusal(f"分录 {line['entry_id']} 开票数量 {new} 超过出库数量 {entry['qty']}")
                db.execute(
                    "UPDATE bill_entries SET qty_invoice=? WHERE fid=? AND entry_id=?",
                    (str(new), fid, entry["entry_id"]),
                )
            db.execute(
                "INSERT INTO invoices (fid, tran_type, invoice_no, lines, created_at) VALUES (?,?,?,?,?)",
                (fid, tran_type, invoice_no, json.dumps(wanted, default=str), now_local()),
            )
            bill_no = db.execute("SELECT bill_no FROM bills WHERE fid=?", (fid,)).fetchone()
            self._ledger(db, "__admin__/invoice", bill_no[0] if bill_no else None, fid, {"lines": wanted})
        return self.bill_detail(fid)

    # --- vouchers ----------------------------------------------------------------------------------
    def create_voucher(self, obj: Any) -> tuple[int, int]:
        """Validate (accounts exist, debits = credits) and store a voucher -> ``(FVoucherID, FNumber)``."""
        if not isinstance(obj, dict) or not isinstance(obj.get("Head"), dict) or not obj.get("Entry"):
            raise Refusal("凭证缺少 Head 或 Entry")
        head, entries = dict(obj["Head"]), list(obj["Entry"])
        try:
            dt.date.fromisoformat(str(head.get("FDate", ""))[:10])
        except ValueError:
            raise Refusal(f"凭证日期 FDate 无效: {head.get('FDate')!r}") from None
        debit = credit = Decimal(0)
        with self.tx() as db:
            for n, e in enumerate(entries, start=1):
                if self._item_by_number(db, "account", str(e.get("FAccountNumber"))) is None:
                    raise Refusal(f"第{n}行: 科目 {e.get('FAccountNumber')!r} 不存在")
                amount = dec(e.get("FAmount"), f"第{n}行 金额")
                if str(e.get("FDC", 1)) == "1":
                    debit += amount
                else:
                    credit += amount
            if debit != credit:
                raise Refusal(f"借贷不平衡: 借方 {debit} 贷方 {credit}")
            number = (
                db.execute(
                    "SELECT COUNT(*) FROM vouchers WHERE substr(fdate,1,7)=?", (str(head["FDate"])[:7],)
                ).fetchone()[0]
                + 1
            )
            cur = db.execute(
                "INSERT INTO vouchers (number, fdate, reference, head, entries, created_at) "
                "VALUES (?,?,?,?,?,?)",
                (
                    number,
                    str(head["FDate"])[:10],
                    str(head.get("FReference") or ""),
                    json.dumps(head, ensure_ascii=False, default=str),
                    json.dumps(entries, ensure_ascii=False, default=str),
                    now_local(),
                ),
            )
            fid = int(cur.lastrowid or 0)
            self._ledger(db, "Voucher/Create", str(head.get("FReference") or ""), fid, obj)
            return fid, number

    def list_vouchers(
        self, filters: Mapping[str, Any], offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Voucher head rows filtered by ``BeginDate``/``EndDate``/``FReference``."""
        where, args = ["1=1"], []
        for key, sql in (
            ("BeginDate", "fdate >= ?"),
            ("EndDate", "fdate <= ?"),
            ("FReference", "reference = ?"),
        ):
            if filters.get(key):
                where.append(sql)
                args.append(str(filters[key])[:10] if key != "FReference" else str(filters[key]))
        cond = " AND ".join(where)
        total = self._q(f"SELECT COUNT(*) FROM vouchers WHERE {cond}", tuple(args))[0][0]
        rows = self._q(
            f"SELECT * FROM vouchers WHERE {cond} ORDER BY fid LIMIT ? OFFSET ?", (*args, limit, offset)
        )
        return [
            {
                "FVoucherID": r["fid"],
                "FNumber": r["number"],
                "FDate": r["fdate"],
                "FReference": r["reference"],
            }
            for r in rows
        ], int(total)

    def voucher_detail(self, fid: int | None) -> dict[str, Any]:
        """``{"Head": ..., "Entry": [...]}`` of one voucher."""
        rows = self._q("SELECT * FROM vouchers WHERE fid=?", (fid,))
        if not rows:
            raise Refusal(f"凭证内码 {fid!r} 不存在")
        head = json.loads(rows[0]["head"])
        head.update({"FVoucherID": rows[0]["fid"], "FNumber": rows[0]["number"]})
        return {"Head": head, "Entry": json.loads(rows[0]["entries"])}

    # --- ledger ------------------------------------------------------------------------------------
    @staticmethod
    def _ledger(
        db: sqlite3.Connection, endpoint: str, bill_no: str | None, fid: int | None, payload: Any
    ) -> None:
        db.execute(
            "INSERT INTO ledger (ts, endpoint, bill_no, fid, payload_hash) VALUES (?,?,?,?,?)",
            (
                dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
                endpoint,
                bill_no,
                fid,
                payload_hash(payload),
            ),
        )

    def record_write(self, endpoint: str, bill_no: str | None, fid: int | None, payload: Any) -> None:
        """Append a ledger row for a write handled outside the bill methods (e.g. Customer/Create)."""
        with self.tx() as db:
            self._ledger(db, endpoint, bill_no, fid, payload)

    def ledger(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Every accepted write, oldest first."""
        sql = "SELECT * FROM ledger" + (" WHERE endpoint=?" if endpoint else "") + " ORDER BY seq"
        return [dict(r) for r in self._q(sql, (endpoint,) if endpoint else ())]

    # --- tokens ------------------------------------------------------------------------------------
    def save_token(
        self, token: str, kind: str, subject: str, expires_at: float, extra: dict[str, Any]
    ) -> None:
        """Persist an issued token."""
        with self.tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO tokens VALUES (?,?,?,?,0,?)",
                (token, kind, subject, expires_at, json.dumps(extra)),
            )

    def revoke_token(self, token: str) -> None:
        """Revoke one token."""
        with self.tx() as db:
            db.execute("UPDATE tokens SET revoked=1 WHERE token=?", (token,))

    def revoke_all(self, kind: str | None = None) -> int:
        """Revoke every token (of ``kind``); returns how many."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE tokens SET revoked=1 WHERE revoked=0" + (" AND kind=?" if kind else ""),
                (kind,) if kind else (),
            )
            return cur.rowcount

    def load_tokens(self) -> list[sqlite3.Row]:
        """Every live (unrevoked) token."""
        return self._q("SELECT * FROM tokens WHERE revoked=0")

    # --- admin -------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything (base data, bills, ledger, tokens)."""
        with self.tx() as db:
            for table in (
                "items",
                "inventory",
                "bills",
                "bill_entries",
                "invoices",
                "vouchers",
                "ledger",
                "tokens",
            ):
                db.execute(f"DELETE FROM {table}")
            db.execute("UPDATE sqlite_sequence SET seq=? WHERE name='bills'", (FIRST_BILL_ID - 1,))
            db.execute("UPDATE sqlite_sequence SET seq=? WHERE name='vouchers'", (FIRST_VOUCHER_ID - 1,))
            db.execute("UPDATE sqlite_sequence SET seq=0 WHERE name='ledger'")
