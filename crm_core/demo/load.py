"""Load a generated demo data set into a store.

Small entities (products, warehouses, customers, contacts, opportunities with their stage history,
quotes, orders, interactions, inventory) go through the ORM, so the flush rules and the outbox fire as
they would for real edits. Invoices and their lines go through the bulk path (:mod:`crm_core.bulk`) in
chunks, one transaction per chunk. A red-letter invoice is loaded as issued first and then moved to
``red_letter``, the only way the store's state machine allows.

Loading the same seed again is safe: master data found by credit code / SKU is reused, and invoices
that did not change are not rewritten and emit no events.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_core import positions
from crm_core.bulk import BulkLoadResult, InvoiceFrames, load_invoices
from crm_core.db import session_scope
from crm_core.demo.generate import ANCHOR, DemoDataSet, DemoInvoiceChunk, LineRow, generate
from crm_core.models import (
    Contact,
    Customer,
    IncomingSupply,
    Interaction,
    InventoryPosition,
    InventorySnapshot,
    Invoice,
    NumberSequence,
    Opportunity,
    Product,
    Quote,
    QuoteLine,
    QuoteVersion,
    SalesOrder,
    SalesOrderLine,
    Warehouse,
)
from crm_core.naming import normalize_name
from crm_core.numbering import next_value
from crm_core.types import SHANGHAI
from hub.errors import DomainError

__all__ = ["DemoLoadSummary", "load_demo_data", "load_demo_invoices", "load_master_data", "to_store_frames"]

DEMO_SOURCE = "demo"


@dataclass(frozen=True)
class DemoLoadSummary:
    """What :func:`load_demo_data` put into the store."""

    seed: int
    reused_master_data: bool
    products: int
    warehouses: int
    customers: int
    contacts: int
    interactions: int
    opportunities: int
    quotes: int
    orders: int
    inventory_positions: int
    incoming_supply: int
    invoices: int
    invoices_inserted: int
    invoices_updated: int
    invoices_unchanged: int
    invoice_lines_written: int
    invoice_events: int
    seconds: float


def to_store_frames(
    chunk: DemoInvoiceChunk, customer_ids: np.ndarray, product_ids: np.ndarray
) -> InvoiceFrames:
    """Replace generator keys by store ids (``ids[key - 1]``), giving the bulk frame schema."""
    invoices = chunk.invoices.rename(columns={"customer_key": "customer_id"})
    invoices["customer_id"] = customer_ids[chunk.invoices["customer_key"].to_numpy() - 1]
    lines = chunk.lines.rename(columns={"product_key": "product_id"})
    lines["product_id"] = product_ids[chunk.lines["product_key"].to_numpy() - 1]
    return InvoiceFrames(invoices, lines)


def _subset(frames: InvoiceFrames, numbers: Iterable[str]) -> InvoiceFrames:
    wanted = pd.Index(list(numbers))
    return InvoiceFrames(
        frames.invoices[frames.invoices["number"].isin(wanted)].reset_index(drop=True),
        frames.lines[frames.lines["number"].isin(wanted)].reset_index(drop=True),
    )


def load_demo_invoices(
    engine: sa.Engine,
    data: DemoDataSet,
    customer_ids: np.ndarray,
    product_ids: np.ndarray,
    *,
    chunk_size: int = 100_000,
) -> list[BulkLoadResult]:
    """Bulk-load the data set's invoices (one transaction per chunk), then apply the red-letter moves."""
    results = []
    red_letters: list[InvoiceFrames] = []
    for chunk in data.invoice_chunks(chunk_size):
        frames = to_store_frames(chunk, customer_ids, product_ids)
        red = frames.invoices["status"] == "red_letter"
        red_numbers = frames.invoices.loc[red, "number"].tolist()
        if red_numbers:
            red_letters.append(_subset(frames, red_numbers))
            with engine.connect() as conn:
                present = set(
                    conn.scalars(sa.select(Invoice.number).where(Invoice.number.in_(red_numbers))).all()
                )
            first = frames.invoices.copy()
            # Not yet in the store: enter as issued now, reversed below. Already there: leave to the
            # second pass, which carries the final state.
            first.loc[red & ~first["number"].isin(present), "status"] = "issued"
            keep = ~first["number"].isin(present)
            frames = InvoiceFrames(
                first[keep].reset_index(drop=True),
                frames.lines[frames.lines["number"].isin(first.loc[keep, "number"])].reset_index(drop=True),
            )
        results.append(load_invoices(engine, frames))
    if red_letters:
        merged = InvoiceFrames(
            pd.concat([f.invoices for f in red_letters], ignore_index=True),
            pd.concat([f.lines for f in red_letters], ignore_index=True),
        )
        results.append(load_invoices(engine, merged))
    return results


def load_demo_data(
    engine: sa.Engine,
    seed: int = 7,
    invoices: int = 1_000,
    *,
    customers: int = 300,
    chunk_size: int = 100_000,
    anchor: date | None = None,
) -> DemoLoadSummary:
    """Generate the demo data set for ``seed`` and load it into the (migrated) store behind ``engine``.

    ``anchor`` is the demo company's "today" (default: the generator's fixed date, for reproducible
    tests); ``hub demo`` passes the real date so open orders are recent and promises make sense.
    """
    started = time.perf_counter()
    data = generate(seed, customers=customers, invoices=invoices, anchor=anchor or ANCHOR)
    with session_scope(engine) as session:
        reused = _existing_customers(session, data)
        if reused:
            customer_ids, product_ids = _master_ids(session, data)
        else:
            product_ids = _load_products(session, data)
            customer_ids = _load_customers(session, data)
            _load_sales(session, data, customer_ids, product_ids)
            _load_inventory(session, data)
        _bump_sequences(session, data)
    results = load_demo_invoices(engine, data, customer_ids, product_ids, chunk_size=chunk_size)
    return DemoLoadSummary(
        seed=seed,
        reused_master_data=reused,
        products=len(data.products),
        warehouses=len(data.warehouses),
        customers=len(data.customers),
        contacts=len(data.contacts),
        interactions=len(data.interactions),
        opportunities=len(data.opportunities),
        quotes=len(data.quotes),
        orders=len(data.orders),
        inventory_positions=len(data.positions),
        incoming_supply=len(data.supplies),
        invoices=data.invoice_count,
        invoices_inserted=sum(r.inserted for r in results),
        invoices_updated=sum(r.updated for r in results),
        invoices_unchanged=sum(r.unchanged for r in results),
        invoice_lines_written=sum(r.lines_written for r in results),
        invoice_events=sum(r.outbox_events for r in results),
        seconds=time.perf_counter() - started,
    )


# --- master data ----------------------------------------------------------------------------------


def load_master_data(engine: sa.Engine, data: DemoDataSet) -> tuple[np.ndarray, np.ndarray]:
    """Load only products, warehouses and customers (with contacts); returns customer and product ids."""
    with session_scope(engine) as session:
        if _existing_customers(session, data):
            return _master_ids(session, data)
        product_ids = _load_products(session, data)
        return _load_customers(session, data), product_ids


def _existing_customers(session: Session, data: DemoDataSet) -> bool:
    """True when this data set's customers are already in the store; refuses a partial earlier load."""
    codes = [c.credit_code for c in data.customers]
    found = session.scalar(sa.select(sa.func.count()).where(Customer.credit_code.in_(codes)))
    if found == len(codes):
        return True
    if found:
        raise DomainError(
            f"demo seed {data.seed}: {found} of its {len(codes)} customers are already in the store, so an "
            "earlier load stopped half-way or another data set overlaps. Load the demo into an empty store.",
            context={"seed": data.seed, "found": found},
        )
    return False


def _master_ids(session: Session, data: DemoDataSet) -> tuple[np.ndarray, np.ndarray]:
    by_code = {code: id_ for code, id_ in session.execute(sa.select(Customer.credit_code, Customer.id))}
    by_sku = {sku: id_ for sku, id_ in session.execute(sa.select(Product.sku, Product.id))}
    return (
        np.array([by_code[c.credit_code] for c in data.customers], dtype=np.int64),
        np.array([by_sku[p.sku] for p in data.products], dtype=np.int64),
    )


def _load_products(session: Session, data: DemoDataSet) -> np.ndarray:
    existing = {p.sku: p for p in session.scalars(sa.select(Product))}
    rows = []
    for p in data.products:
        product = existing.get(p.sku)
        if product is None:
            product = Product(
                sku=p.sku,
                name=p.name,
                spec=p.spec,
                erp_material_code=p.erp_material_code,
                unit=p.unit,
                lead_time_days=p.lead_time_days,
                safety_stock=p.safety_stock,
                default_tax_rate=p.default_tax_rate,
            )
            session.add(product)
        rows.append(product)
    known = {w.code for w in session.scalars(sa.select(Warehouse))}
    session.add_all(
        Warehouse(code=w.code, name=w.name, erp_stock_code=w.erp_stock_code)
        for w in data.warehouses
        if w.code not in known
    )
    session.flush()
    return np.array([p.id for p in rows], dtype=np.int64)


def _load_customers(session: Session, data: DemoDataSet) -> np.ndarray:
    customers = []
    for c in data.customers:
        customer = Customer(
            code=f"C{next_value(session, 'C'):06d}",
            name=c.name,
            normalized_name=normalize_name(c.name),
            credit_code=c.credit_code,
            industry=c.industry,
            scale=c.scale,
            province=c.province,
            region=c.region,
            tier=c.tier,
            owner=c.owner,
            source=DEMO_SOURCE,
        )
        customers.append(customer)
    for contact in data.contacts:
        customers[contact.customer_key - 1].contacts.append(
            Contact(
                name=contact.name,
                title=contact.title,
                phone=contact.phone,
                wechat=contact.wechat,
                email=contact.email,
                is_primary=contact.is_primary,
            )
        )
    session.add_all(customers)
    session.flush()
    return np.array([c.id for c in customers], dtype=np.int64)


def _line_kwargs(line: LineRow, product_ids: np.ndarray) -> dict[str, object]:
    return {
        "line_no": line.line_no,
        "product_id": int(product_ids[line.product_key - 1]),
        "quantity": line.quantity,
        "unit_price": line.unit_price,
        "tax_rate": line.tax_rate,
        "requested_date": line.requested_date,
    }


def _load_sales(
    session: Session, data: DemoDataSet, customer_ids: np.ndarray, product_ids: np.ndarray
) -> None:
    """Opportunities stage by stage (one flush per step level, so the ORM records each transition)."""
    opps = []
    for o in data.opportunities:
        opp = Opportunity(
            number=o.number,
            customer_id=int(customer_ids[o.customer_key - 1]),
            title=o.title,
            stage=o.steps[0].stage,
            owner=o.owner,
            amount=o.amount,
            expected_close=o.expected_close,
            lost_reason=o.lost_reason,
            created_at=o.steps[0].at,
        )
        opps.append(opp)
    session.add_all(opps)
    session.flush()
    for level in range(1, max(len(o.steps) for o in data.opportunities)):
        for row, opp in zip(data.opportunities, opps, strict=True):
            if level < len(row.steps):
                opp.stage = row.steps[level].stage
        session.flush()
    for row, opp in zip(data.opportunities, opps, strict=True):
        # The ORM stamped each transition "now"; give them the generated times.
        for change, step in zip(opp.history, row.steps, strict=True):
            change.changed_at = step.at
        if opp.closed_at is not None:
            opp.closed_at = row.steps[-1].at

    quote_versions: dict[tuple[str, int], QuoteVersion] = {}
    for q in data.quotes:
        quote = Quote(
            number=q.number,
            opportunity_id=opps[q.opportunity_key - 1].id,
            customer_id=int(customer_ids[q.customer_key - 1]),
        )
        for v in q.versions:
            version = QuoteVersion(
                version=v.version,
                status=v.status,
                quote_date=v.quote_date,
                valid_until=v.valid_until,
                sent_at=v.sent_at,
                region=v.region,
                total_net=sum((ln.net_amount for ln in v.lines), Decimal("0.00")),
                total_tax=sum((ln.tax_amount for ln in v.lines), Decimal("0.00")),
                lines=[QuoteLine(**_line_kwargs(ln, product_ids)) for ln in v.lines],
            )
            quote.versions.append(version)
            quote_versions[(q.number, v.version)] = version
        session.add(quote)
    session.flush()

    for order in data.orders:
        session.add(
            SalesOrder(
                number=order.number,
                customer_id=int(customer_ids[order.customer_key - 1]),
                opportunity_id=opps[order.opportunity_key - 1].id,
                quote_version_id=quote_versions[(order.quote_number, order.quote_version)].id,
                order_date=order.order_date,
                requested_date=order.requested_date,
                region=order.region,
                status=order.status,
                total_net=sum((ln.net_amount for ln in order.lines), Decimal("0.00")),
                total_tax=sum((ln.tax_amount for ln in order.lines), Decimal("0.00")),
                lines=[
                    SalesOrderLine(**_line_kwargs(ln, product_ids), delivered_quantity=ln.delivered_quantity)
                    for ln in order.lines
                ],
            )
        )
    session.add_all(
        Interaction(
            customer_id=int(customer_ids[i.customer_key - 1]),
            opportunity_id=opps[i.opportunity_key - 1].id if i.opportunity_key else None,
            kind=i.kind,
            occurred_at=i.occurred_at,
            summary=i.summary,
            owner=i.owner,
        )
        for i in data.interactions
    )
    session.flush()


def _load_inventory(session: Session, data: DemoDataSet) -> None:
    snapshot = InventorySnapshot(
        source=DEMO_SOURCE,
        taken_at=datetime(data.anchor.year, data.anchor.month, data.anchor.day, 6, 0, tzinfo=SHANGHAI),
        status="in_force",
        row_count=len(data.positions),
        origin="crm_core.demo",
    )
    session.add(snapshot)
    session.flush()
    positions.create_attached(session.connection(), snapshot.id)  # its partition on PostgreSQL
    # Positions are bulk rows (never row by row in production); one multi-row insert here.
    session.execute(
        sa.insert(InventoryPosition),
        [
            {
                "snapshot_id": snapshot.id,
                "material_code": p.material_code,
                "warehouse_code": p.warehouse_code,
                "lot": p.lot,
                "on_hand": p.on_hand,
                "reserved": p.reserved,
            }
            for p in data.positions
        ],
    )
    session.add_all(
        IncomingSupply(
            source=DEMO_SOURCE,
            kind=s.kind,
            reference=s.reference,
            material_code=s.material_code,
            warehouse_code=s.warehouse_code,
            quantity=s.quantity,
            eta=s.eta,
            snapshot_id=snapshot.id,
        )
        for s in data.supplies
    )


def _bump_sequences(session: Session, data: DemoDataSet) -> None:
    """Make the store's number sequences continue after the demo's numbers (no collisions later)."""
    used: dict[tuple[str, int], int] = {}
    for number in (
        [o.number for o in data.opportunities]
        + [q.number for q in data.quotes]
        + [o.number for o in data.orders]
    ):
        prefix, year_text, seq = number.split("-")
        key = (prefix, int(year_text))
        used[key] = max(used.get(key, 0), int(seq))
    for inv_year, inv_last in data.invoice_sequences().items():
        used[("INV", inv_year)] = inv_last
    current = {(r.prefix, r.year): r.last_value for r in session.scalars(sa.select(NumberSequence))}
    for (prefix, year), last in sorted(used.items()):
        if (prefix, year) not in current:
            session.execute(sa.insert(NumberSequence).values(prefix=prefix, year=year, last_value=last))
        elif current[(prefix, year)] < last:
            session.execute(
                sa.update(NumberSequence)
                .where(NumberSequence.prefix == prefix, NumberSequence.year == year)
                .values(last_value=last)
            )
