"""The bulk invoice path (crm_core.bulk) on SQLite and PostgreSQL: it writes the same rows and outbox
events as the ORM path would, rewrites nothing that did not change, refuses a batch with any bad
invoice as a whole, and sends a constant number of statements (never executemany) to PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import psycopg2.extensions
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_core.bulk import (
    InvoiceBatchRefused,
    InvoiceDoc,
    InvoiceLineDoc,
    compute_row_hashes,
    frames_from_docs,
    invoice_row_hash,
    load_invoices,
    row_hash_of_invoice,
    validate_frames,
)
from crm_core.db import make_engine
from crm_core.migrate import upgrade
from crm_core.models import Customer, Invoice, OutboxEvent, Product
from hub.errors import DomainError
from tests.store.conftest import Store

D = Decimal


def make_docs(customer_id: int, product_id: int, count: int = 6) -> list[InvoiceDoc]:
    """Drafts and issued invoices with awkward amounts (half-cent rounding, several rates)."""
    docs = []
    for i in range(1, count + 1):
        issued = i % 3 != 0
        docs.append(
            InvoiceDoc(
                number=f"INV-2026-{i:06d}",
                customer_id=customer_id,
                status="issued" if issued else "draft",
                invoice_type="vat_special" if i % 2 else "vat_normal",
                invoice_number=f"{20_000_000 + i:08d}" if issued else None,
                issue_date=date(2026, 3, 1 + i % 28) if issued else None,
                lines=(
                    InvoiceLineDoc(1, product_id, D("3"), D("3.3667"), D("0.13")),  # net 10.1001 -> 10.10
                    InvoiceLineDoc(2, product_id, D(1000 + i), D("0.0125"), D("0.09")),
                    InvoiceLineDoc(3, product_id, D("2.5"), D("0.21"), D("0.06")),  # net 0.525 -> 0.53
                ),
            )
        )
    return docs


def outbox(store: Store) -> list[tuple[str, int]]:
    with Session(store.engine) as session:
        rows = session.execute(
            sa.select(OutboxEvent.topic, OutboxEvent.entity_id)
            .where(OutboxEvent.entity_type == "invoice")
            .order_by(OutboxEvent.id)
        )
        return [tuple(r) for r in rows]


def invoice_ids(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {number: id_ for number, id_ in conn.execute(sa.text("SELECT number, id FROM invoices"))}


# --- row_hash: one definition, same on both paths ---------------------------------------------------


def test_vectorised_row_hash_equals_per_document_hash() -> None:
    docs = make_docs(7, 9)
    docs.append(
        InvoiceDoc(
            number="INV-2026-999999",
            customer_id=7,
            order_id=42,
            lines=(
                InvoiceLineDoc(2, 9, D("-1.5"), D("10"), D("0"), order_line_id=5),
                InvoiceLineDoc(1, 9, D("1"), D("0"), D("0.03")),
            ),
        )
    )
    docs.append(InvoiceDoc(number="INV-2026-888888", customer_id=7))  # a draft without lines
    assert compute_row_hashes(frames_from_docs(docs)) == [invoice_row_hash(d) for d in docs]
    # Any change in content changes the hash; the line order given does not.
    changed = replace(docs[0], lines=(replace(docs[0].lines[0], quantity=D("4")), *docs[0].lines[1:]))
    assert invoice_row_hash(changed) != invoice_row_hash(docs[0])
    assert invoice_row_hash(replace(docs[0], lines=docs[0].lines[::-1])) == invoice_row_hash(docs[0])


# --- writes the expected rows and events -----------------------------------------------------------


def test_bulk_load_writes_documents_lines_and_issued_events(store: Store) -> None:
    docs = make_docs(store.customer_id, store.product_id)
    result = load_invoices(store.engine, frames_from_docs(docs))

    assert (result.inserted, result.updated, result.unchanged) == (6, 0, 0)
    assert result.lines_written == 18
    with Session(store.engine) as session:
        stored = {i.number: i for i in session.scalars(sa.select(Invoice))}
        assert set(stored) == {d.number for d in docs}
        for doc in docs:
            inv = stored[doc.number]
            assert (inv.status, inv.invoice_type, inv.invoice_number, inv.issue_date) == (
                doc.status,
                doc.invoice_type,
                doc.invoice_number,
                doc.issue_date,
            )
            nets = [
                D("10.10"),
                (D(1000 + int(doc.number[-2:])) * D("0.0125")).quantize(D("0.01"), "ROUND_HALF_UP"),
                D("0.53"),
            ]
            taxes = [D("1.31"), (nets[1] * D("0.09")).quantize(D("0.01"), "ROUND_HALF_UP"), D("0.03")]
            assert [line.net_amount for line in inv.lines] == nets
            assert [line.tax_amount for line in inv.lines] == taxes
            assert inv.total_net == sum(nets) and inv.total_tax == sum(taxes)
            assert inv.total_gross == inv.total_net + inv.total_tax
            # The stored hash is the one the ORM helper computes from the stored document.
            assert inv.row_hash == row_hash_of_invoice(inv) == invoice_row_hash(doc)
    ids = invoice_ids(store)
    issued = sorted(ids[d.number] for d in docs if d.status == "issued")
    assert outbox(store) == [("invoice.issued", i) for i in issued]
    assert result.outbox_events == 4


def test_reload_of_unchanged_batch_writes_nothing_and_emits_nothing(store: Store) -> None:
    frames = frames_from_docs(make_docs(store.customer_id, store.product_id))
    load_invoices(store.engine, frames)
    with store.engine.connect() as conn:
        before_rows = conn.execute(sa.text("SELECT id, updated_at FROM invoices ORDER BY id")).all()
        before_lines = conn.execute(sa.text("SELECT id FROM invoice_lines ORDER BY id")).all()
        pg = store.engine.dialect.name == "postgresql"
        before_xmin = conn.execute(sa.text("SELECT number, xmin::text FROM invoices")).all() if pg else None
    events = outbox(store)

    result = load_invoices(store.engine, frames)

    assert (result.inserted, result.updated, result.unchanged, result.lines_written) == (0, 0, 6, 0)
    assert result.outbox_events == 0 and outbox(store) == events
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, updated_at FROM invoices ORDER BY id")).all() == before_rows
        assert conn.execute(sa.text("SELECT id FROM invoice_lines ORDER BY id")).all() == before_lines
        if pg:  # the same row versions: not even rewritten with equal values
            assert conn.execute(sa.text("SELECT number, xmin::text FROM invoices")).all() == before_xmin


def test_changed_invoice_is_updated_and_emits_one_event(store: Store) -> None:
    docs = make_docs(store.customer_id, store.product_id)
    load_invoices(store.engine, frames_from_docs(docs))
    events = outbox(store)
    draft = docs[2]
    assert draft.status == "draft"
    docs[2] = replace(
        draft,
        status="issued",
        invoice_number="30000003",
        issue_date=date(2026, 4, 1),
        lines=(replace(draft.lines[0], quantity=D("7")), draft.lines[1]),  # a line changed, one dropped
    )

    result = load_invoices(store.engine, frames_from_docs(docs))

    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 5)
    assert (result.lines_deleted, result.lines_written) == (3, 2)
    new_events = outbox(store)[len(events) :]
    assert new_events == [("invoice.issued", invoice_ids(store)[draft.number])]
    with Session(store.engine) as session:
        inv = session.scalar(sa.select(Invoice).where(Invoice.number == draft.number))
        assert inv is not None and inv.status == "issued"
        assert [(line.line_no, line.quantity) for line in inv.lines] == [
            (1, D("7")),
            (2, draft.lines[1].quantity),
        ]
        assert inv.total_net == sum(line.net_amount for line in inv.lines)
        assert inv.row_hash == invoice_row_hash(docs[2])


def test_issued_to_red_letter_emits_invoice_changed_like_the_orm(store: Store) -> None:
    docs = make_docs(store.customer_id, store.product_id)
    load_invoices(store.engine, frames_from_docs(docs))
    before = len(outbox(store))
    docs[0] = replace(docs[0], status="red_letter")

    result = load_invoices(store.engine, frames_from_docs(docs))

    assert result.updated == 1
    assert outbox(store)[before:] == [("invoice.changed", invoice_ids(store)[docs[0].number])]


# --- refusals: the whole batch, with the offending numbers, nothing written ------------------------


def _bad(docs: list[InvoiceDoc], case: str) -> InvoiceDoc:
    doc = docs[3]
    line = doc.lines[0]
    if case == "total_mismatch":
        return replace(doc, total_net=D("1.00"))
    if case == "vat_rate":
        return replace(doc, lines=(replace(line, tax_rate=D("0.10")), *doc.lines[1:]))
    if case == "line_amount":
        return replace(doc, lines=(replace(line, net_amount=D("10.11")), *doc.lines[1:]))
    if case == "issued_incomplete":
        return replace(doc, invoice_number=None)
    if case == "unknown_status":
        return replace(doc, status="paid")
    if case == "new_status":  # the ORM only creates draft or issued invoices
        return replace(doc, status="voided")
    if case == "unknown_customer":
        return replace(doc, customer_id=doc.customer_id + 999)
    if case == "unknown_product":
        return replace(doc, lines=(replace(line, product_id=line.product_id + 999), *doc.lines[1:]))
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "total_mismatch",
        "vat_rate",
        "line_amount",
        "issued_incomplete",
        "unknown_status",
        "new_status",
        "unknown_customer",
        "unknown_product",
    ],
)
def test_one_bad_invoice_refuses_the_whole_batch(store: Store, case: str) -> None:
    docs = make_docs(store.customer_id, store.product_id)
    docs[3] = _bad(docs, case)
    events_before = store.count("outbox_events")

    with pytest.raises(InvoiceBatchRefused) as caught:
        load_invoices(store.engine, frames_from_docs(docs))

    assert isinstance(caught.value, DomainError)
    message = str(caught.value)
    assert docs[3].number in message and "nothing was written" in message
    assert f"[{case}]" in message
    assert all(d.number not in message for i, d in enumerate(docs) if i != 3)
    assert {p.number for p in caught.value.problems} == {docs[3].number}
    assert store.count("invoices") == 0
    assert store.count("invoice_lines") == 0
    assert store.count("outbox_events") == events_before


def test_rules_on_existing_invoices_refuse_the_batch_and_keep_the_store(store: Store) -> None:
    docs = make_docs(store.customer_id, store.product_id)
    load_invoices(store.engine, frames_from_docs(docs))
    with store.engine.connect() as conn:
        snapshot = conn.execute(
            sa.text("SELECT number, status, row_hash FROM invoices ORDER BY number")
        ).all()
    events = store.count("outbox_events")
    issued = docs[0]
    bad_batches = {
        "illegal_transition": replace(issued, status="draft"),
        "issued_immutable": replace(
            issued, lines=(replace(issued.lines[0], unit_price=D("3.4")), *issued.lines[1:])
        ),
    }
    for rule, bad in bad_batches.items():
        batch = [
            bad,
            replace(docs[2], status="issued", invoice_number="40000003", issue_date=date(2026, 5, 1)),
        ]
        with pytest.raises(InvoiceBatchRefused, match=rule) as caught:
            load_invoices(store.engine, frames_from_docs(batch))
        assert [p.number for p in caught.value.problems] == [issued.number]
    with store.engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT number, status, row_hash FROM invoices ORDER BY number")).all()
            == snapshot
        )
    assert store.count("outbox_events") == events


def test_batch_shape_problems_are_reported_before_any_database_work() -> None:
    docs = make_docs(1, 1, count=3)
    frames = frames_from_docs(docs)
    frames.lines.loc[len(frames.lines)] = frames.lines.iloc[0]  # line 1 of the first invoice twice
    problems = validate_frames(frames)
    assert {p.number for p in problems} == {docs[0].number}
    assert {p.rule for p in problems} == {"duplicate_line", "total_mismatch"}  # the extra line counts too
    twice = frames_from_docs([docs[0], docs[0]])
    with pytest.raises(InvoiceBatchRefused, match="duplicate_number"):
        load_invoices(sa.create_engine("sqlite://"), twice)  # refused before it touches the database


# --- PostgreSQL: constant statements, never executemany ---------------------------------------------


class CountingCursor(psycopg2.extensions.cursor):
    """Records every call that sends SQL, whoever makes it."""

    calls: list[str] = []

    def execute(self, query, vars=None):  # type: ignore[no-untyped-def]
        CountingCursor.calls.append("execute")
        return super().execute(query, vars)

    def executemany(self, query, vars_list):  # type: ignore[no-untyped-def]
        CountingCursor.calls.append("executemany")
        return super().executemany(query, vars_list)

    def copy_expert(self, sql, file, size=8192):  # type: ignore[no-untyped-def]
        CountingCursor.calls.append("copy_expert")
        return super().copy_expert(sql, file, size)


@pytest.mark.postgres
def test_postgres_load_uses_constant_statements_and_no_executemany(fresh_pg_url: str) -> None:
    upgrade(fresh_pg_url)
    engine = make_engine(fresh_pg_url, pool_pre_ping=False, connect_args={"cursor_factory": CountingCursor})
    with Session(engine) as session:
        session.add_all(
            [Customer(code="C1", name="甲", normalized_name="甲"), Product(sku="S1", name="螺栓")]
        )
        session.commit()
        customer_id, product_id = (
            session.scalar(sa.select(Customer.id)),
            session.scalar(sa.select(Product.id)),
        )
    counts = {}
    for size in (30, 1500):
        docs = [
            replace(
                d,
                number=f"{d.number}-{size}",
                invoice_number=None if d.invoice_number is None else f"{size}{d.invoice_number}",
            )
            for d in make_docs(customer_id, product_id, size)
        ]
        CountingCursor.calls = []
        result = load_invoices(engine, frames_from_docs(docs))
        assert result.inserted == size
        assert "executemany" not in CountingCursor.calls
        assert CountingCursor.calls.count("copy_expert") == 2
        counts[size] = len(CountingCursor.calls)
        assert counts[size] == result.statements
    assert counts[30] == counts[1500] <= 16
    engine.dispose()
