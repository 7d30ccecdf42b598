"""The demo data set: deterministic by seed, valid by the store's own rules (credit codes, invoice totals
equal to their lines, stage histories with skips and regressions), and loadable into both backends, where
a second load of the same seed writes nothing."""

from __future__ import annotations

from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from crm_core.bulk import validate_frames
from crm_core.credit_code import is_valid_credit_code
from crm_core.db import make_engine
from crm_core.demo.generate import generate
from crm_core.demo.load import load_demo_data, to_store_frames
from crm_core.migrate import upgrade
from crm_core.models.sales import LOST, STAGES

SMALL = {"customers": 60, "invoices": 2_500}


def test_same_seed_same_data_and_chunking_does_not_matter() -> None:
    a, b = generate(11, **SMALL), generate(11, **SMALL)
    for field in ("products", "customers", "contacts", "interactions", "opportunities", "quotes", "orders"):
        assert getattr(a, field) == getattr(b, field), field
    whole = a.invoice_range(0, a.invoice_count)
    pieces = list(b.invoice_chunks(700))
    assert [len(p.invoices) for p in pieces] == [700, 700, 700, 400]
    pd.testing.assert_frame_equal(whole.invoices, pd.concat([p.invoices for p in pieces], ignore_index=True))
    pd.testing.assert_frame_equal(whole.lines, pd.concat([p.lines for p in pieces], ignore_index=True))
    other = generate(12, **SMALL)
    assert other.customers != a.customers
    assert not other.invoice_range(0, 100).invoices.equals(whole.invoices.iloc[:100])


def test_customers_have_valid_unique_credit_codes_and_names() -> None:
    data = generate(5, customers=400, invoices=0)
    codes = [c.credit_code for c in data.customers]
    assert all(is_valid_credit_code(code) for code in codes)
    assert len(set(codes)) == len(codes) == 400
    assert len({c.name for c in data.customers}) == 400
    assert {c.tier for c in data.customers} == {1, 2, 3}
    assert all(c.name.endswith("公司") and c.province and c.region for c in data.customers)


def test_invoice_totals_equal_their_lines_computed_independently() -> None:
    data = generate(3, **SMALL)
    chunk = data.invoice_range(0, data.invoice_count)
    lines = chunk.lines
    cent = Decimal("0.01")
    for row in lines.sample(n=500, random_state=1).itertuples():
        qty, price, rate = (
            Decimal(int(v)).scaleb(-4) for v in (row.quantity_e4, row.unit_price_e4, row.tax_rate_e4)
        )
        net = (qty * price).quantize(cent, ROUND_HALF_UP)
        assert Decimal(int(row.net_amount_fen)).scaleb(-2) == net
        assert Decimal(int(row.tax_amount_fen)).scaleb(-2) == (net * rate).quantize(cent, ROUND_HALF_UP)
    sums = lines.groupby("number")[["net_amount_fen", "tax_amount_fen"]].sum()
    invoices = chunk.invoices.set_index("number")
    assert (invoices.loc[sums.index, "total_net_fen"] == sums["net_amount_fen"]).all()
    assert (invoices.loc[sums.index, "total_tax_fen"] == sums["tax_amount_fen"]).all()
    assert (invoices["total_gross_fen"] == invoices["total_net_fen"] + invoices["total_tax_fen"]).all()
    assert set(lines["tax_rate_e4"]) <= {1300, 900, 600}
    # The bulk loader's own rule check finds nothing wrong (red-letter ones are loaded issued first).
    frames = to_store_frames(chunk, np.arange(1, 61), np.arange(1, len(data.products) + 1))
    assert validate_frames(frames) == []
    statuses = Counter(chunk.invoices["status"])
    assert set(statuses) == {"draft", "issued", "red_letter"}
    issued = chunk.invoices[chunk.invoices["status"] != "draft"]
    assert issued["invoice_number"].str.fullmatch(r"\d{8}").all() and issued["issue_date"].notna().all()
    assert chunk.invoices.loc[chunk.invoices["status"] == "draft", "invoice_number"].isna().all()


def test_sales_pipeline_covers_every_stage_with_skips_regressions_and_quote_versions() -> None:
    data = generate(7, customers=300, invoices=0)
    assert {o.stage for o in data.opportunities} == {*STAGES, LOST}
    paths = [[s.stage for s in o.steps] for o in data.opportunities]
    regressions = [
        p for p in paths if any(a == "谈判" and b == "需求确认" for a, b in zip(p, p[1:], strict=False))
    ]
    order = {stage: i for i, stage in enumerate(STAGES)}
    skips = [
        p
        for p in paths
        if any(b in order and a in order and order[b] - order[a] > 1 for a, b in zip(p, p[1:], strict=False))
    ]
    assert regressions and skips
    assert len(skips) / len(paths) < 0.10  # a few, as the process-health target (< 5 %) suggests
    assert all(
        all(a.at < b.at for a, b in zip(o.steps, o.steps[1:], strict=False)) for o in data.opportunities
    )
    version_statuses = Counter(v.status for q in data.quotes for v in q.versions)
    assert version_statuses["superseded"] and version_statuses["sent"] and version_statuses["accepted"]
    assert all(q.versions[-1].status != "superseded" for q in data.quotes)
    assert data.orders and all(o.lines for o in data.orders)
    assert {p.warehouse_code for p in data.positions} >= {"WH01", "WH02"} and data.supplies
    units = {p.unit for p in data.products}
    assert units == {"PCS", "KG", "SET"}
    assert all(p.erp_material_code.count(".") == 2 for p in data.products)


def test_load_demo_data_then_reload_writes_nothing(empty_store_url: str) -> None:
    upgrade(empty_store_url)
    engine = make_engine(empty_store_url)
    data = generate(9, customers=40, invoices=600)
    chunks = data.invoice_range(0, 600)
    red = int((chunks.invoices["status"] == "red_letter").sum())
    issued = int((chunks.invoices["status"] == "issued").sum())

    first = load_demo_data(engine, seed=9, invoices=600, customers=40, chunk_size=250)

    def count(sql: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())

    assert not first.reused_master_data
    assert count("SELECT count(*) FROM customers") == 40
    assert count("SELECT count(*) FROM contacts") == len(data.contacts)
    assert count("SELECT count(*) FROM opportunities") == len(data.opportunities)
    assert count("SELECT count(*) FROM opportunity_stage_history") == sum(
        len(o.steps) for o in data.opportunities
    )
    assert count("SELECT count(*) FROM quote_versions") == sum(len(q.versions) for q in data.quotes)
    assert count("SELECT count(*) FROM sales_orders") == len(data.orders)
    assert count("SELECT count(*) FROM invoices") == 600
    assert count("SELECT count(*) FROM invoice_lines") == len(chunks.lines)
    assert count("SELECT count(*) FROM invoices WHERE status = 'red_letter'") == red
    assert count("SELECT count(*) FROM invoices WHERE row_hash IS NULL") == 0
    # The ORM fired for master data, the bulk path for invoices: the same outbox either way.
    assert count("SELECT count(*) FROM outbox_events WHERE topic = 'customer.upserted'") == 40
    assert count("SELECT count(*) FROM outbox_events WHERE topic = 'invoice.issued'") == issued + red
    assert count("SELECT count(*) FROM outbox_events WHERE topic = 'invoice.changed'") == red
    assert count("SELECT count(*) FROM outbox_events WHERE topic = 'opportunity.stage_changed'") == sum(
        len(o.steps) - 1 for o in data.opportunities
    )
    events = count("SELECT count(*) FROM outbox_events")

    second = load_demo_data(engine, seed=9, invoices=600, customers=40, chunk_size=250)

    assert second.reused_master_data
    assert (second.invoices_inserted, second.invoices_updated, second.invoices_unchanged) == (0, 0, 600)
    assert count("SELECT count(*) FROM outbox_events") == events
    assert count("SELECT count(*) FROM customers") == 40
    engine.dispose()


@pytest.mark.slow
def test_a_million_invoices_generate_in_bounded_chunks() -> None:
    data = generate(1, invoices=1_000_000)
    total = lines = 0
    for chunk in data.invoice_chunks(200_000):
        assert len(chunk.invoices) <= 200_000
        assert chunk.invoices["number"].is_unique
        total += len(chunk.invoices)
        lines += len(chunk.lines)
    assert total == 1_000_000
    assert 2.8 < lines / total < 3.2  # about three lines per invoice
    assert sum(data.invoice_sequences().values()) == 1_000_000
