"""B.4 case 5: ``kill -9`` inside :func:`crm_core.bulk.load_invoices`, on SQLite and PostgreSQL.

A child process loads a batch (new invoices, and drafts of an earlier load now issued) and SIGKILLs
itself after staging or as its commit starts (``tests/faults/bulk_worker.py``). The store must equal
its pre-batch state; a re-run loads the batch fully, with one ``invoice.issued`` event per issued
invoice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crm_core.bulk import frames_from_docs, load_invoices
from crm_core.credit_code import make_credit_code
from crm_core.customers import upsert_customer
from crm_core.db import make_engine, session_scope
from crm_core.migrate import upgrade
from crm_core.models import Product
from tests.faults.bulk_worker import FIRST, SECOND, first_batch, second_batch

ROOT = Path(__file__).resolve().parents[2]


def snapshot(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the load writes, in a stable order."""
    queries = {
        "invoices": "SELECT id, number, status, invoice_number, row_hash, updated_at FROM invoices ORDER BY id",
        "lines": "SELECT invoice_id, line_no, quantity, net_amount, tax_amount FROM invoice_lines "
        "ORDER BY invoice_id, line_no",
        "outbox": "SELECT id, topic, entity_id FROM outbox_events ORDER BY id",
    }
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(sa.text(q))] for name, q in queries.items()}


def prepared_store(url: str) -> tuple[sa.Engine, int, int]:
    """A migrated store with one customer, one product and the first batch loaded."""
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        customer = upsert_customer(
            session, name="测试客户有限公司", credit_code=make_credit_code("91310000660000001")
        )[0]
        product = Product(sku="SKU-BULK", name="螺栓", erp_material_code="M-BOLT-M8", unit="PCS")
        session.add(product)
        session.flush()
        ids = customer.id, product.id
    load_invoices(engine, frames_from_docs(first_batch(*ids)))
    return engine, *ids


@pytest.mark.parametrize("kind", ["staged", "commit"])
def test_case05_kill9_inside_bulk_load_leaves_the_pre_batch_state(empty_store_url: str, kind: str) -> None:
    engine, customer_id, product_id = prepared_store(empty_store_url)
    try:
        before = snapshot(engine)
        proc = subprocess.run(
            [sys.executable, "-m", "tests.faults.bulk_worker", empty_store_url, kind]
            + [str(customer_id), str(product_id)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == -signal.SIGKILL, (kind, proc.returncode, proc.stderr[-2000:])
        assert snapshot(engine) == before

        # The re-run loads the whole batch.
        batch = second_batch(customer_id, product_id)
        updates = sum(1 for d in batch if int(d.number[-6:]) <= FIRST)
        result = load_invoices(engine, frames_from_docs(batch))
        assert (result.inserted, result.updated) == (SECOND, updates)
        issued_now = sum(1 for d in batch if d.status == "issued")
        assert result.outbox_events == issued_now
        after = snapshot(engine)
        assert len(after["invoices"]) == FIRST + SECOND
        assert len(after["lines"]) == 2 * (FIRST + SECOND)
        with engine.connect() as conn:
            issued = set(conn.execute(sa.text("SELECT id FROM invoices WHERE status = 'issued'")).scalars())
        events = Counter(entity for _, topic, entity in after["outbox"] if topic == "invoice.issued")
        # Exactly one invoice.issued event per issued invoice, across both loads and the killed one.
        assert set(events) == issued and set(events.values()) == {1}
    finally:
        engine.dispose()
