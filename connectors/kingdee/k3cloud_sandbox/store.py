"""The sandbox's state in its own SQLite file: documents, stock, sessions, ledger, counters, settings.

All access goes through one re-entrant lock (the sandbox serialises state changes like one small ERP
database would); each package of a save runs in its own SAVEPOINT so a batch can be non-atomic.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    acct_id TEXT NOT NULL, username TEXT NOT NULL, password TEXT NOT NULL, user_id INTEGER NOT NULL,
    PRIMARY KEY (acct_id, username));
CREATE TABLE IF NOT EXISTS apps (
    app_id TEXT PRIMARY KEY, app_secret TEXT NOT NULL, acct_id TEXT NOT NULL, username TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY, acct_id TEXT NOT NULL, username TEXT NOT NULL, created REAL NOT NULL,
    last_used REAL NOT NULL, alive INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS docs (
    fid INTEGER PRIMARY KEY, form_id TEXT NOT NULL, number TEXT NOT NULL, status TEXT NOT NULL,
    body TEXT NOT NULL, created REAL NOT NULL, modified REAL NOT NULL);
CREATE INDEX IF NOT EXISTS docs_form_number ON docs (form_id, number);
CREATE TABLE IF NOT EXISTS inventory (
    material TEXT NOT NULL, stock TEXT NOT NULL, lot TEXT NOT NULL, org TEXT NOT NULL, qty TEXT NOT NULL,
    PRIMARY KEY (material, stock, lot, org));
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, service TEXT NOT NULL, action TEXT NOT NULL,
    form_id TEXT NOT NULL, fid INTEGER, number TEXT, principal TEXT, package_sha256 TEXT);
CREATE TABLE IF NOT EXISTS repeat_packages (sha256 TEXT PRIMARY KEY, at REAL NOT NULL);
"""
TABLES = ("kv", "counters", "users", "apps", "sessions", "docs", "inventory", "ledger", "repeat_packages")


@dataclass
class Doc:
    """One stored document: a bill, a base-data record (status C when usable) or a derived row."""

    fid: int
    form_id: str
    number: str
    status: str
    body: dict[str, Any]
    created: float
    modified: float

    @property
    def head(self) -> dict[str, Any]:
        """Head values by canonical field key."""
        return self.body.setdefault("head", {})

    def entries(self, entity: str) -> list[dict[str, Any]]:
        """Rows of one entity (each has ``_id`` and ``_seq``)."""
        return self.body.setdefault("entities", {}).setdefault(entity, [])


class Store:
    """SQLite-backed state; every method takes the lock itself, callers may also hold it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._depth = 0

    def close(self) -> None:
        """Close the database file."""
        with self.lock:
            self._db.close()

    # -- transactions ---------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction, or a savepoint when nested; rolled back if the block raises."""
        with self.lock:
            name = f"sp{self._depth}"
            self._db.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._db.execute(f"ROLLBACK TO {name}")
                self._db.execute(f"RELEASE {name}")
                raise
            else:
                self._db.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1

    def execute(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> sqlite3.Cursor:
        """Run one statement under the lock."""
        with self.lock:
            return self._db.execute(sql, params)

    def wipe(self) -> None:
        """Delete every row of every table."""
        with self.transaction():
            for table in TABLES:
                self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

    # -- settings and counters --------------------------------------------------------

    def kv_get(self, key: str, default: Any = None) -> Any:
        """A JSON value stored under ``key``."""
        row = self.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def kv_set(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key``."""
        self.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, ensure_ascii=False)),
        )

    def next_value(self, name: str, start: int) -> int:
        """Next value of a persistent counter (first value ``start``)."""
        with self.transaction():
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
            value = start if row is None else row["value"] + 1
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, value),
            )
            return value

    # -- documents ----------------------------------------------------------------------

    def _doc(self, row: sqlite3.Row | None) -> Doc | None:
        if row is None:
            return None
        return Doc(
            row["fid"],
            row["form_id"],
            row["number"],
            row["status"],
            json.loads(row["body"]),
            row["created"],
            row["modified"],
        )

    def insert_doc(self, form_id: str, number: str, status: str, body: dict[str, Any], now: float) -> int:
        """Store a new document and return its id."""
        fid = self.next_value("fid", 100001)
        self.execute(
            "INSERT INTO docs (fid, form_id, number, status, body, created, modified) VALUES (?,?,?,?,?,?,?)",
            (fid, form_id, number, status, json.dumps(body, ensure_ascii=False), now, now),
        )
        return fid

    def save_doc(self, doc: Doc, now: float) -> None:
        """Write back a changed document."""
        doc.modified = now
        self.execute(
            "UPDATE docs SET number = ?, status = ?, body = ?, modified = ? WHERE fid = ?",
            (doc.number, doc.status, json.dumps(doc.body, ensure_ascii=False), now, doc.fid),
        )

    def delete_doc(self, fid: int) -> None:
        """Remove a document."""
        self.execute("DELETE FROM docs WHERE fid = ?", (fid,))

    def get_doc(self, fid: int) -> Doc | None:
        """Document by id."""
        return self._doc(self.execute("SELECT * FROM docs WHERE fid = ?", (fid,)).fetchone())

    def find_docs(self, form_id: str, number: str) -> list[Doc]:
        """Documents of a form with this number, oldest first (bill numbers compare case-insensitively)."""
        rows = self.execute(
            "SELECT * FROM docs WHERE form_id = ? AND lower(number) = lower(?) ORDER BY fid",
            (form_id, number),
        ).fetchall()
        return [d for d in (self._doc(r) for r in rows) if d is not None]

    def docs(self, form_id: str) -> list[Doc]:
        """All documents of a form in id order."""
        rows = self.execute("SELECT * FROM docs WHERE form_id = ? ORDER BY fid", (form_id,)).fetchall()
        return [d for d in (self._doc(r) for r in rows) if d is not None]

    def count_docs(self, form_id: str | None = None) -> int:
        """Number of documents (of one form)."""
        if form_id is None:
            return int(self.execute("SELECT count(*) FROM docs").fetchone()[0])
        return int(self.execute("SELECT count(*) FROM docs WHERE form_id = ?", (form_id,)).fetchone()[0])

    # -- inventory ------------------------------------------------------------------------

    def stock_qty(self, material: str, stock: str, lot: str, org: str) -> Decimal:
        """On-hand base quantity of one (material, stock, lot, org)."""
        row = self.execute(
            "SELECT qty FROM inventory WHERE material = ? AND stock = ? AND lot = ? AND org = ?",
            (material, stock, lot, org),
        ).fetchone()
        return Decimal(row["qty"]) if row else Decimal(0)

    def set_stock(self, material: str, stock: str, lot: str, org: str, qty: Decimal) -> None:
        """Set the on-hand quantity."""
        self.execute(
            "INSERT INTO inventory (material, stock, lot, org, qty) VALUES (?,?,?,?,?) "
            "ON CONFLICT(material, stock, lot, org) DO UPDATE SET qty = excluded.qty",
            (material, stock, lot, org, str(qty)),
        )

    def inventory(self) -> list[sqlite3.Row]:
        """Every inventory row (rowid is the derived FID)."""
        return self.execute(
            "SELECT rowid, material, stock, lot, org, qty FROM inventory ORDER BY rowid"
        ).fetchall()

    # -- users, apps, sessions ------------------------------------------------------------

    def add_user(self, acct_id: str, username: str, password: str, user_id: int) -> None:
        """Create or replace a user."""
        self.execute(
            "INSERT OR REPLACE INTO users (acct_id, username, password, user_id) VALUES (?,?,?,?)",
            (acct_id, username, password, user_id),
        )

    def user(self, acct_id: str, username: str) -> sqlite3.Row | None:
        """User row (username case-insensitive, like K/3 Cloud)."""
        return self.execute(
            "SELECT * FROM users WHERE acct_id = ? AND lower(username) = lower(?)", (acct_id, username)
        ).fetchone()

    def acct_exists(self, acct_id: str) -> bool:
        """True when the data centre has users."""
        return self.execute("SELECT 1 FROM users WHERE acct_id = ?", (acct_id,)).fetchone() is not None

    def add_app(self, app_id: str, app_secret: str, acct_id: str, username: str) -> None:
        """Register a third-party app (第三方系统登录授权)."""
        self.execute(
            "INSERT OR REPLACE INTO apps (app_id, app_secret, acct_id, username) VALUES (?,?,?,?)",
            (app_id, app_secret, acct_id, username),
        )

    def app(self, app_id: str) -> sqlite3.Row | None:
        """App registration by AppId."""
        return self.execute("SELECT * FROM apps WHERE app_id = ?", (app_id,)).fetchone()

    def new_session(self, sid: str, acct_id: str, username: str, now: float, kill_others: bool) -> None:
        """Open a session; with ``kill_others`` older sessions of that user die (login elsewhere)."""
        with self.transaction():
            if kill_others:
                self._db.execute(
                    "UPDATE sessions SET alive = 0 WHERE acct_id = ? AND lower(username) = lower(?)",
                    (acct_id, username),
                )
            self._db.execute(
                "INSERT INTO sessions (sid, acct_id, username, created, last_used, alive) "
                "VALUES (?,?,?,?,?,1)",
                (sid, acct_id, username, now, now),
            )

    def session(self, sid: str) -> sqlite3.Row | None:
        """Session row by id."""
        return self.execute("SELECT * FROM sessions WHERE sid = ?", (sid,)).fetchone()

    def touch_session(self, sid: str, now: float) -> None:
        """Record activity on a session."""
        self.execute("UPDATE sessions SET last_used = ? WHERE sid = ?", (now, sid))

    def end_session(self, sid: str) -> None:
        """Log a session out."""
        self.execute("UPDATE sessions SET alive = 0 WHERE sid = ?", (sid,))

    def kill_all_sessions(self) -> int:
        """ "IIS recycle": every session dies; returns how many were alive."""
        return self.execute("UPDATE sessions SET alive = 0 WHERE alive = 1").rowcount

    # -- ledger and repeat guard ------------------------------------------------------------

    def append_ledger(
        self,
        *,
        at: float,
        service: str,
        action: str,
        form_id: str,
        fid: int | None,
        number: str | None,
        principal: str | None,
        package_sha256: str | None = None,
    ) -> None:
        """Append one accepted write to the ledger (never updated or deleted except by reset)."""
        self.execute(
            "INSERT INTO ledger (at, service, action, form_id, fid, number, principal, package_sha256) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (at, service, action, form_id, fid, number, principal, package_sha256),
        )

    def ledger(self, since: int = 0) -> list[dict[str, Any]]:
        """Ledger entries after sequence number ``since``."""
        rows = self.execute("SELECT * FROM ledger WHERE seq > ? ORDER BY seq", (since,)).fetchall()
        return [dict(r) for r in rows]

    def package_seen(self, sha256: str, now: float, window: float) -> bool:
        """True when an identical package was saved within ``window`` seconds."""
        row = self.execute("SELECT at FROM repeat_packages WHERE sha256 = ?", (sha256,)).fetchone()
        return bool(row) and now - float(row["at"]) <= window

    def remember_package(self, sha256: str, now: float) -> None:
        """Remember a saved package for the repeat guard."""
        self.execute(
            "INSERT INTO repeat_packages (sha256, at) VALUES (?, ?) "
            "ON CONFLICT(sha256) DO UPDATE SET at = excluded.at",
            (sha256, now),
        )
