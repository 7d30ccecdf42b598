"""A bulk invoice load in its own process that SIGKILLs itself mid-transaction (B.4 case 5).

``python -m tests.faults.bulk_worker STORE_URL KIND CUSTOMER_ID PRODUCT_ID`` loads :func:`batch` with
:func:`crm_core.bulk.load_invoices` and dies:

- ``staged``: after the batch was staged (COPY on PostgreSQL, executemany on SQLite), as the first
  statement that reads the stage is about to be sent;
- ``commit``: after every write of the load (upsert, lines, outbox events), as the commit starts.

The kill is a real ``SIGKILL`` of this process: no ``finally``, no rollback, no atexit.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg2.extensions

from crm_core.bulk import InvoiceDoc, InvoiceLineDoc, frames_from_docs, load_invoices
from crm_core.db import make_engine

D = Decimal
FIRST = 40  # the pre-batch load: drafts and issued invoices
SECOND = 300  # the batch that dies: new invoices plus the first load's drafts, now issued


def docs(customer_id: int, product_id: int, start: int, count: int, *, issue_all: bool) -> list[InvoiceDoc]:
    """``count`` invoices numbered from ``start``; every third is a draft unless ``issue_all``."""
    out = []
    for i in range(start, start + count):
        issued = issue_all or i % 3 != 0
        out.append(
            InvoiceDoc(
                number=f"INV-2026-{i:06d}",
                customer_id=customer_id,
                status="issued" if issued else "draft",
                invoice_number=f"{30_000_000 + i:08d}" if issued else None,
                issue_date=date(2026, 11, 1 + i % 28) if issued else None,
                lines=(
                    InvoiceLineDoc(1, product_id, D("3"), D("3.3667"), D("0.13")),
                    InvoiceLineDoc(2, product_id, D(10 + i % 7), D("0.0125"), D("0.09")),
                ),
            )
        )
    return out


def first_batch(customer_id: int, product_id: int) -> list[InvoiceDoc]:
    return docs(customer_id, product_id, 1, FIRST, issue_all=False)


def second_batch(customer_id: int, product_id: int) -> list[InvoiceDoc]:
    """New invoices, and the first batch's drafts issued (updates: lines rewritten, events written)."""
    drafts = [d for d in first_batch(customer_id, product_id) if d.status == "draft"]
    issued = docs(customer_id, product_id, 1, FIRST, issue_all=True)
    updates = [d for d in issued if d.number in {x.number for x in drafts}]
    return updates + docs(customer_id, product_id, FIRST + 1, SECOND, issue_all=False)


ARMED = {"on": False}


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _PgConnection(psycopg2.extensions.connection):
    def commit(self) -> None:
        if ARMED["on"]:
            _die()
        super().commit()


class _SqliteConnection(sqlite3.Connection):
    def commit(self) -> None:
        if ARMED["on"]:
            _die()
        super().commit()


def main(argv: list[str]) -> int:
    """Run the load; exit 0 when it finished without reaching the kill point."""
    url, kind, customer_id, product_id = argv[0], argv[1], int(argv[2]), int(argv[3])
    connect_args: dict[str, Any] = (
        {"connection_factory": _PgConnection}
        if url.startswith("postgresql")
        else {"factory": _SqliteConnection}
    )
    engine = make_engine(url, connect_args=connect_args)

    def on_statement(_kind: str, sql: str) -> None:
        # Armed from the load's first statement on: commits before it (engine setup) are not the load's.
        ARMED["on"] = kind == "commit"
        if kind == "staged" and sql.startswith("DELETE FROM _bulk_invoices"):
            _die()

    load_invoices(engine, frames_from_docs(second_batch(customer_id, product_id)), on_statement=on_statement)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
