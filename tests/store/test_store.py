"""The canonical store on SQLite and PostgreSQL: migrations, the transactional outbox, and bad input
refused with a clear domain error and nothing half-written."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from crm_core.customers import upsert_customer
from crm_core.db import database_url, make_engine, normalize_url, session_scope
from crm_core.errors import (
    DuplicateCustomer,
    IllegalTransition,
    InvalidAmount,
    InvalidCreditCode,
    InvoiceTotalMismatch,
    IssuedInvoiceImmutable,
    QuoteWithoutOpportunity,
    SentQuoteImmutable,
    UnknownStage,
)
from crm_core.invoicing import create_invoice, issue_invoice, red_letter
from crm_core.migrate import heads
from crm_core.models import (
    Customer,
    Interaction,
    Invoice,
    InvoiceLine,
    Opportunity,
    OpportunityStageChange,
    OutboxEvent,
    Quote,
    QuoteLine,
    QuoteVersion,
)
from crm_core.sales import LineInput, change_stage, create_opportunity, create_quote, revise_quote, send_quote
from hub.errors import ConfigError, DomainError
from tests.store.conftest import VALID_CODE, Store

LINE = LineInput(product_id=0, quantity=Decimal("3"), unit_price=Decimal("10.005"), tax_rate=Decimal("0.13"))


def _line(store: Store, **overrides: object) -> LineInput:
    values = {**LINE.__dict__, "product_id": store.product_id, **overrides}
    return LineInput(**values)  # type: ignore[arg-type]


def _topics(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(OutboxEvent.topic).order_by(OutboxEvent.id)).scalars())


def test_one_alembic_head() -> None:
    assert heads() == ["0006"]


def test_migration_creates_every_table(store: Store) -> None:
    names = set(sa.inspect(store.engine).get_table_names())
    expected = {
        "customers",
        "contacts",
        "interactions",
        "opportunities",
        "opportunity_stage_history",
        "quotes",
        "quote_versions",
        "quote_lines",
        "sales_orders",
        "sales_order_lines",
        "invoices",
        "invoice_lines",
        "products",
        "warehouses",
        "inventory_snapshots",
        "inventory_positions",
        "incoming_supply",
        "delivery_promises",
        "outbox_events",
        "sync_cursors",
        "external_bindings",
        "delivery_queue",
        "dead_letters",
        "quarantine",
        "reconciliation_runs",
        "reconciliation_results",
        "processed_files",
        "sync_locks",
        "number_sequences",
        "alembic_version",
    }
    assert expected <= names


def test_migrations_match_the_models(store: Store) -> None:
    """Alembic's autogenerate finds nothing to add: the migrations build exactly the models' schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from crm_core.models import Base

    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_sqlite_runs_wal_with_foreign_keys(fresh_sqlite_url: str) -> None:
    engine = make_engine(fresh_sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


def test_bare_postgresql_url_is_pinned_to_psycopg2() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    with pytest.raises(ConfigError, match="psycopg2"):
        normalize_url("postgresql+psycopg://u@h/db")


def test_default_url_is_sqlite_under_hub_home(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("HUB_DATABASE_URL", raising=False)
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))
    assert database_url() == f"sqlite:///{tmp_path / 'home' / 'hub.db'}"


def test_issuing_an_invoice_writes_its_outbox_event_atomically(store: Store) -> None:
    with session_scope(store.engine) as session:
        customer = session.get(Customer, store.customer_id)
        invoice = create_invoice(session, customer, [_line(store)], year=2026)
        invoice_id = invoice.id
    before_events = store.count("outbox_events")

    # A rollback leaves neither the state change nor the event.
    with pytest.raises(RuntimeError), session_scope(store.engine) as session:
        issue_invoice(
            session,
            session.get(Invoice, invoice_id),
            invoice_number="00012345",
            issue_date=date(2026, 11, 28),
        )
        raise RuntimeError("simulated crash after the flush, before commit")
    with session_scope(store.engine) as session:
        assert session.get(Invoice, invoice_id).status == "draft"
    assert store.count("outbox_events") == before_events

    # A commit keeps both.
    with session_scope(store.engine) as session:
        issue_invoice(
            session,
            session.get(Invoice, invoice_id),
            invoice_number="00012345",
            issue_date=date(2026, 11, 28),
        )
    with session_scope(store.engine) as session:
        event = session.scalars(sa.select(OutboxEvent).order_by(OutboxEvent.id.desc())).first()
        assert (event.topic, event.entity_type, event.entity_id) == ("invoice.issued", "invoice", invoice_id)
        assert event.created_at.tzinfo is not None


def test_invoice_amounts_are_per_line_half_up(store: Store) -> None:
    with session_scope(store.engine) as session:
        invoice = create_invoice(
            session,
            session.get(Customer, store.customer_id),
            [_line(store), _line(store, quantity=Decimal("1"), unit_price=Decimal("0.05"))],
            year=2026,
        )
        # 3 x 10.005 = 30.015 -> 30.02; tax 3.9026 -> 3.90; 0.05 -> tax 0.0065 -> 0.01
        assert [line.net_amount for line in invoice.lines] == [Decimal("30.02"), Decimal("0.05")]
        assert [line.tax_amount for line in invoice.lines] == [Decimal("3.90"), Decimal("0.01")]
        assert (invoice.total_net, invoice.total_tax, invoice.total_gross) == (
            Decimal("30.07"),
            Decimal("3.91"),
            Decimal("33.98"),
        )
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(Invoice.total_gross)).scalar_one()
    assert isinstance(stored, Decimal) and stored == Decimal("33.98")


def test_invoice_whose_total_differs_from_its_lines_is_refused(store: Store) -> None:
    with pytest.raises(InvoiceTotalMismatch, match="INV-2026-9"), session_scope(store.engine) as session:
        invoice = Invoice(
            number="INV-2026-9", customer_id=store.customer_id, status="draft", total_net=Decimal("99.00")
        )
        invoice.lines.append(
            InvoiceLine(
                line_no=1,
                product_id=store.product_id,
                quantity=Decimal("1"),
                unit_price=Decimal("10"),
                tax_rate=Decimal("0.13"),
            )
        )
        session.add(invoice)
    assert store.count("invoices") == 0 and store.count("invoice_lines") == 0


def test_unknown_vat_rate_is_refused(store: Store) -> None:
    with pytest.raises(InvalidAmount, match="not a VAT rate"), session_scope(store.engine) as session:
        create_invoice(
            session,
            session.get(Customer, store.customer_id),
            [_line(store, tax_rate=Decimal("0.17"))],
            year=2026,
        )
    assert store.count("invoices") == 0


def test_illegal_invoice_transitions(store: Store) -> None:
    with session_scope(store.engine) as session:
        invoice_id = create_invoice(
            session, session.get(Customer, store.customer_id), [_line(store)], year=2026
        ).id
    with (
        pytest.raises(IllegalTransition, match="draft -> red_letter"),
        session_scope(store.engine) as session,
    ):
        red_letter(session, session.get(Invoice, invoice_id))
    with session_scope(store.engine) as session:
        issue_invoice(
            session, session.get(Invoice, invoice_id), invoice_number="00000001", issue_date=date(2026, 11, 1)
        )
    with pytest.raises(IllegalTransition, match="issued -> draft"), session_scope(store.engine) as session:
        session.get(Invoice, invoice_id).status = "draft"
    with pytest.raises(IssuedInvoiceImmutable), session_scope(store.engine) as session:
        session.get(Invoice, invoice_id).lines[0].quantity = Decimal("4")
    with session_scope(store.engine) as session:
        red_letter(session, session.get(Invoice, invoice_id))
    assert _topics(store)[-2:] == ["invoice.issued", "invoice.changed"]


def test_issuing_without_invoice_number_is_refused(store: Store) -> None:
    with session_scope(store.engine) as session:
        invoice_id = create_invoice(
            session, session.get(Customer, store.customer_id), [_line(store)], year=2026
        ).id
    with pytest.raises(IllegalTransition, match="invoice number"), session_scope(store.engine) as session:
        session.get(Invoice, invoice_id).status = "issued"
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(Invoice.status)).scalar_one() == "draft"


def test_invalid_credit_code_is_refused_and_nothing_written(store: Store) -> None:
    customers = store.count("customers")
    with pytest.raises(InvalidCreditCode, match="91110000600037341X"), session_scope(store.engine) as session:
        upsert_customer(session, name="坏代码有限公司", credit_code="91110000600037341X")
    with pytest.raises(InvalidCreditCode), session_scope(store.engine) as session:
        session.add(Customer(code="CX1", name="直接写入公司", normalized_name="x", credit_code="123"))
    assert store.count("customers") == customers


def test_duplicate_customers_are_merged_or_refused_never_doubled(store: Store) -> None:
    with session_scope(store.engine) as session:
        same, action = upsert_customer(
            session, name="上海华东紧固件(集团)有限公司", credit_code=VALID_CODE, province="上海"
        )
        assert action == "merged" and same.id == store.customer_id and same.province == "上海"
        by_name, action = upsert_customer(session, name="上海华东紧固件有限公司 ", region="华东")
        assert action == "merged" and by_name.id == store.customer_id and by_name.region == "华东"
    with pytest.raises(DuplicateCustomer), session_scope(store.engine) as session:
        upsert_customer(session, name="别名公司", credit_code=VALID_CODE, on_duplicate="refuse")
    assert store.count("customers") == 1


def test_customer_changes_write_outbox_events(store: Store) -> None:
    assert _topics(store) == ["customer.upserted"]
    with session_scope(store.engine) as session:
        session.get(Customer, store.customer_id).owner = "王经理"
    with session_scope(store.engine) as session:
        session.get(Customer, store.customer_id)  # loaded, unchanged: no event
    assert _topics(store) == ["customer.upserted", "customer.upserted"]


def test_stage_history_and_unknown_stage(store: Store) -> None:
    with session_scope(store.engine) as session:
        opp = create_opportunity(
            session, session.get(Customer, store.customer_id), "M8 螺栓年度框架", year=2026
        )
        assert opp.number == "OPP-2026-000001"
        change_stage(session, opp, "接触")
        change_stage(session, opp, "方案提交")  # a skip: allowed, derivable from history
        opp_id = opp.id
    with pytest.raises(UnknownStage, match="报价"), session_scope(store.engine) as session:
        change_stage(session, session.get(Opportunity, opp_id), "报价")
    with pytest.raises(UnknownStage), session_scope(store.engine) as session:
        session.get(Opportunity, opp_id).stage = "报价"
    with session_scope(store.engine) as session:
        rows = session.execute(
            sa.select(OpportunityStageChange.from_stage, OpportunityStageChange.to_stage)
            .where(OpportunityStageChange.opportunity_id == opp_id)
            .order_by(OpportunityStageChange.id)
        ).all()
        assert [tuple(r) for r in rows] == [(None, "线索"), ("线索", "接触"), ("接触", "方案提交")]
        change_stage(session, session.get(Opportunity, opp_id), "输单")
    with pytest.raises(IllegalTransition, match="closed"), session_scope(store.engine) as session:
        change_stage(session, session.get(Opportunity, opp_id), "谈判")


def test_quote_without_opportunity_is_refused(store: Store) -> None:
    with pytest.raises(QuoteWithoutOpportunity), session_scope(store.engine) as session:
        create_quote(session, None, [_line(store)], quote_date=date(2026, 11, 1))
    with pytest.raises(QuoteWithoutOpportunity), session_scope(store.engine) as session:
        session.add(Quote(number="QT-X", customer_id=store.customer_id))
    assert store.count("quotes") == 0


def test_sent_quote_version_is_immutable_and_revisions_are_new_versions(store: Store) -> None:
    with session_scope(store.engine) as session:
        opp = create_opportunity(session, session.get(Customer, store.customer_id), "支架报价", year=2026)
        version = create_quote(session, opp, [_line(store)], quote_date=date(2026, 11, 1))
        send_quote(session, version)
        version_id, quote_id = version.id, version.quote_id
    with pytest.raises(SentQuoteImmutable), session_scope(store.engine) as session:
        session.get(QuoteVersion, version_id).valid_until = date(2027, 1, 1)
    with pytest.raises(SentQuoteImmutable), session_scope(store.engine) as session:
        line = session.scalars(sa.select(QuoteLine).where(QuoteLine.quote_version_id == version_id)).one()
        line.unit_price = Decimal("9.00")
    with session_scope(store.engine) as session:
        v2 = revise_quote(
            session,
            session.get(Quote, quote_id),
            [_line(store, unit_price=Decimal("9.50"))],
            quote_date=date(2026, 11, 5),
        )
        assert v2.version == 2 and v2.status == "draft"
    with session_scope(store.engine) as session:
        statuses = session.execute(
            sa.select(QuoteVersion.version, QuoteVersion.status).order_by(QuoteVersion.version)
        ).all()
        prices = session.scalars(sa.select(QuoteLine.unit_price).order_by(QuoteLine.id)).all()
    assert [tuple(s) for s in statuses] == [(1, "superseded"), (2, "draft")]
    assert prices == [Decimal("10.0050"), Decimal("9.5000")]


def test_domain_errors_share_the_root() -> None:
    assert issubclass(InvalidCreditCode, DomainError) and issubclass(SentQuoteImmutable, DomainError)


def test_timestamps_are_time_zone_aware_and_naive_ones_refused(store: Store) -> None:
    shanghai = datetime(2026, 11, 29, 9, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    with session_scope(store.engine) as session:
        session.add(
            Interaction(customer_id=store.customer_id, kind="call", occurred_at=shanghai, summary="回访")
        )
    with session_scope(store.engine) as session:
        stored = session.scalars(sa.select(Interaction.occurred_at)).one()
        assert stored == shanghai and stored.tzinfo is not None
        assert stored.astimezone(UTC).hour == 1
    with pytest.raises(sa.exc.StatementError, match="naive"), session_scope(store.engine) as session:
        session.add(
            Interaction(
                customer_id=store.customer_id,
                kind="call",
                occurred_at=datetime(2026, 11, 29, 9, 30),
                summary="x",
            )
        )


def test_orm_and_bulk_paths_share_the_row_hash(store: Store) -> None:
    """An invoice written through the ORM is recognised as unchanged by the bulk path (and vice versa)."""
    from crm_core.bulk import InvoiceDoc, InvoiceLineDoc, frames_from_docs, load_invoices

    with session_scope(store.engine) as session:
        invoice = create_invoice(session, session.get(Customer, store.customer_id), [_line(store)], year=2026)
        issue_invoice(session, invoice, invoice_number="00077777", issue_date=date(2026, 11, 2))
        number, stored_hash = invoice.number, invoice.row_hash
    assert stored_hash and len(stored_hash) == 64
    doc = InvoiceDoc(
        number=number,
        customer_id=store.customer_id,
        status="issued",
        invoice_type="vat_special",
        invoice_number="00077777",
        issue_date=date(2026, 11, 2),
        order_id=None,
        lines=(
            InvoiceLineDoc(
                line_no=1,
                product_id=store.product_id,
                quantity=Decimal("3"),
                unit_price=Decimal("10.005"),
                tax_rate=Decimal("0.13"),
            ),
        ),
    )
    events_before = store.count("outbox_events")
    result = load_invoices(store.engine, frames_from_docs([doc]))
    assert (result.unchanged, result.written) == (1, 0)
    assert store.count("outbox_events") == events_before
