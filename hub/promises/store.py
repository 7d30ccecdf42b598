"""Delivery promises wired to the canonical store: read open lines and stock, write promises + outbox.

:func:`run_promises` is one promise run:

1. **Read** (set-based SQL, a handful of queries whatever the size):
   - open order lines: order ``open`` / ``partially_delivered``, remaining quantity (quantity -
     delivered) > 0; doc date = order date, region = the order's (else the customer's), requested date
     = the line's (else the order's);
   - open quote lines: the latest ``sent`` version of each quote, still valid on ``today`` (an
     accepted, rejected or superseded version is not ``sent``); doc date = quote date;
   - customer tier, the product's ERP material code (its SKU when it has none) and lead time;
   - stock: positions of every ``in_force`` inventory snapshot, summed per (material, warehouse) in
     SQL, plus each product's safety stock once per material (as a row without warehouse, which the
     engine counts at material level only);
   - incoming supply not tied to a snapshot or tied to one in force.
2. **Compute** with :func:`hub.promises.promise_lines` (vectorised).
3. **Write** in one transaction: the results are staged in a TEMP table (PostgreSQL ``COPY``, SQLite
   one ``executemany``); one ``INSERT ... SELECT`` writes a ``promise.changed`` outbox event for every
   line whose promise is new or differs; one ``INSERT ... ON CONFLICT (line_kind, line_id) DO UPDATE
   ... WHERE <differs>`` writes only those; promises of lines that are no longer open are deleted, with
   an event each. A re-run with nothing changed writes nothing (no row is even rewritten).

Line ids given to the engine are ``order:0000000042`` / ``quote:0000000007``: zero-padded so the
engine's last tie-breaker (line id) follows line numbers, and orders come before quotes of the same
tier and date (an order is a commitment, a quote is not yet).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from crm_core.types import TZDateTime, now_utc
from hub.errors import ConfigError
from hub.promises import models as m
from hub.promises.allocate import promise_lines
from hub.promises.models import CalendarConfig, DateRange, PromiseConfig, YearOverride
from hub.promises.summary import PromiseSummary, summarize

log = logging.getLogger(__name__)

TOPIC = "promise.changed"
ENTITY_TYPES = {"order": "order_line", "quote": "quote_line"}
_ID_WIDTH = 10
_QTY_PLACES = 4
_STAGE = "promise_stage"
_COMPARED = (
    "material_code",
    "quantity",
    "ready_date",
    "promised_date",
    "first_part_quantity",
    "first_part_date",
    "reason",
    "late",
)
_STAGE_COLUMNS = ("line_kind", "line_id", *_COMPARED)


@dataclass(frozen=True)
class PromiseRun:
    """What one run computed and wrote."""

    today: dt.date
    summary: PromiseSummary
    result: pd.DataFrame
    written: int  # promises inserted or updated
    removed: int  # promises of lines no longer open
    events: int  # outbox events written
    seconds: float


# --------------------------------------------------------------------------------------------- reading


def _line_key(kind: str, ids: pd.Series) -> pd.Series:
    return kind + ":" + ids.astype("int64").astype(str).str.zfill(_ID_WIDTH)


def _dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).astype("datetime64[s]")


def read_demand(conn: sa.Connection, today: dt.date) -> pd.DataFrame:
    """Open order lines and open quote lines as the engine's demand frame (plus ``line_kind``)."""
    orders = pd.read_sql(
        sa.text(
            """
            SELECT l.id AS id, l.quantity - l.delivered_quantity AS quantity,
                   COALESCE(l.requested_date, o.requested_date) AS requested_date,
                   o.order_date AS doc_date, COALESCE(o.region, c.region) AS region, c.tier AS customer_tier,
                   COALESCE(p.erp_material_code, p.sku) AS material, p.lead_time_days AS lead_time_days
            FROM sales_order_lines l
            JOIN sales_orders o ON o.id = l.order_id
            JOIN customers c ON c.id = o.customer_id
            JOIN products p ON p.id = l.product_id
            WHERE o.status IN ('open', 'partially_delivered') AND l.quantity - l.delivered_quantity > 0
            """
        ),
        conn,
    )
    quotes = pd.read_sql(
        sa.text(
            """
            SELECT ql.id AS id, ql.quantity AS quantity, ql.requested_date AS requested_date,
                   v.quote_date AS doc_date, COALESCE(v.region, c.region) AS region, c.tier AS customer_tier,
                   COALESCE(p.erp_material_code, p.sku) AS material, p.lead_time_days AS lead_time_days
            FROM quote_lines ql
            JOIN quote_versions v ON v.id = ql.quote_version_id
            JOIN quotes q ON q.id = v.quote_id
            JOIN customers c ON c.id = q.customer_id
            JOIN products p ON p.id = ql.product_id
            WHERE v.status = 'sent'
              AND (v.valid_until IS NULL OR v.valid_until >= :today)
              AND v.version = (SELECT MAX(v2.version) FROM quote_versions v2
                               WHERE v2.quote_id = v.quote_id AND v2.status = 'sent')
              AND ql.quantity > 0
            """
        ),
        conn,
        params={"today": today},
    )
    frames = []
    for kind, frame in (("order", orders), ("quote", quotes)):
        if frame.empty:
            continue
        frame = frame.assign(line_kind=kind, line_id=_line_key(kind, frame["id"]))
        frames.append(frame)
    if not frames:
        return _empty_demand()
    demand = pd.concat(frames, ignore_index=True)
    return pd.DataFrame(
        {
            m.DEM_LINE_ID: demand["line_id"].astype("str"),
            "line_kind": demand["line_kind"].astype("str"),
            m.DEM_MATERIAL: demand["material"].astype("str"),
            m.DEM_QUANTITY: pd.to_numeric(demand["quantity"]).astype("float64"),
            m.DEM_TIER: pd.to_numeric(demand["customer_tier"]).astype("int64"),
            m.DEM_DOC_DATE: _dates(demand["doc_date"]),
            m.DEM_REQUESTED: _dates(demand["requested_date"]),
            m.DEM_REGION: demand["region"].astype("object").where(demand["region"].notna(), None),
            m.DEM_LEAD_TIME: pd.to_numeric(demand["lead_time_days"]).astype("int64"),
        }
    )


def _empty_demand() -> pd.DataFrame:
    return pd.DataFrame(
        {
            m.DEM_LINE_ID: pd.Series([], dtype="str"),
            "line_kind": pd.Series([], dtype="str"),
            m.DEM_MATERIAL: pd.Series([], dtype="str"),
            m.DEM_QUANTITY: pd.Series([], dtype="float64"),
            m.DEM_TIER: pd.Series([], dtype="int64"),
            m.DEM_DOC_DATE: pd.Series([], dtype="datetime64[s]"),
            m.DEM_REQUESTED: pd.Series([], dtype="datetime64[s]"),
            m.DEM_REGION: pd.Series([], dtype="object"),
            m.DEM_LEAD_TIME: pd.Series([], dtype="int64"),
        }
    )


def read_inventory(conn: sa.Connection) -> pd.DataFrame:
    """Stock in force per (material, warehouse), plus product safety stock once per material."""
    stock = pd.read_sql(
        sa.text(
            """
            SELECT p.material_code AS material, p.warehouse_code AS warehouse,
                   SUM(p.on_hand) AS on_hand, SUM(p.reserved) AS reserved
            FROM inventory_positions p
            JOIN inventory_snapshots s ON s.id = p.snapshot_id
            WHERE s.status = 'in_force'
            GROUP BY p.material_code, p.warehouse_code
            """
        ),
        conn,
    )
    safety = pd.read_sql(
        sa.text(
            """
            SELECT COALESCE(erp_material_code, sku) AS material, safety_stock
            FROM products WHERE safety_stock > 0
            """
        ),
        conn,
    )
    stock = stock.assign(safety_stock=0.0)
    # A row without warehouse counts at material level only, so safety stock is taken once per material.
    safety_rows = pd.DataFrame(
        {
            m.INV_MATERIAL: safety["material"],
            m.INV_WAREHOUSE: None,
            m.INV_ON_HAND: 0.0,
            m.INV_RESERVED: 0.0,
            m.INV_SAFETY_STOCK: pd.to_numeric(safety["safety_stock"]).astype("float64"),
        }
    )
    frames = [f for f in (stock, safety_rows) if not f.empty]
    if not frames:
        return pd.DataFrame(
            {
                m.INV_MATERIAL: pd.Series([], dtype="str"),
                m.INV_WAREHOUSE: pd.Series([], dtype="object"),
                m.INV_ON_HAND: pd.Series([], dtype="float64"),
                m.INV_RESERVED: pd.Series([], dtype="float64"),
                m.INV_SAFETY_STOCK: pd.Series([], dtype="float64"),
            }
        )
    inventory = pd.concat(frames, ignore_index=True)
    for column in (m.INV_ON_HAND, m.INV_RESERVED, m.INV_SAFETY_STOCK):
        inventory[column] = pd.to_numeric(inventory[column]).astype("float64")
    inventory[m.INV_MATERIAL] = inventory[m.INV_MATERIAL].astype("str")
    return inventory


def read_supply(conn: sa.Connection) -> pd.DataFrame | None:
    """Scheduled receipts not tied to a snapshot, or tied to one in force; None when there are none."""
    supply = pd.read_sql(
        sa.text(
            """
            SELECT i.material_code AS material, i.warehouse_code AS warehouse, i.quantity AS quantity,
                   i.eta AS eta
            FROM incoming_supply i
            LEFT JOIN inventory_snapshots s ON s.id = i.snapshot_id
            WHERE i.snapshot_id IS NULL OR s.status = 'in_force'
            """
        ),
        conn,
    )
    if supply.empty:
        return None
    return pd.DataFrame(
        {
            m.SUP_MATERIAL: supply["material"].astype("str"),
            m.SUP_WAREHOUSE: supply["warehouse"].astype("object").where(supply["warehouse"].notna(), None),
            m.SUP_QUANTITY: pd.to_numeric(supply["quantity"]).astype("float64"),
            m.SUP_ETA: _dates(supply["eta"]),
        }
    )


# --------------------------------------------------------------------------------------------- writing


def _stage_frame(result: pd.DataFrame) -> pd.DataFrame:
    """The engine's result as rows of ``delivery_promises`` (dates as ``datetime.date``, None for none)."""
    kind_id = result[m.OUT_LINE_ID].str.split(":", n=1, expand=True)
    split = (result[m.OUT_REASON] == m.SPLIT).to_numpy()

    def day(values: pd.Series) -> list[dt.date | None]:
        stamps = pd.to_datetime(values)
        return [None if pd.isna(v) else v.date() for v in stamps]

    now_qty = np.round(result[m.OUT_NOW_QTY].to_numpy(dtype=np.float64), _QTY_PLACES)
    return pd.DataFrame(
        {
            "line_kind": kind_id[0].to_numpy(),
            "line_id": kind_id[1].astype("int64").to_numpy(),
            "material_code": result[m.OUT_MATERIAL].astype("str").to_numpy(),
            "quantity": np.round(result[m.OUT_QUANTITY].to_numpy(dtype=np.float64), _QTY_PLACES),
            "ready_date": day(result[m.OUT_READY]),
            "promised_date": day(result[m.OUT_PROMISED]),
            "first_part_quantity": pd.array(np.where(split, now_qty, np.nan)).astype("Float64"),
            "first_part_date": [
                d if s else None for d, s in zip(day(result[m.OUT_NOW_PROMISED]), split, strict=True)
            ],
            "reason": result[m.OUT_REASON].astype("str").to_numpy(),
            "late": result[m.OUT_LATE].to_numpy(dtype=bool),
        }
    )


def _create_stage(conn: sa.Connection) -> None:
    temp_suffix = " ON COMMIT DROP" if conn.dialect.name == "postgresql" else ""
    if conn.dialect.name != "postgresql":
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{_STAGE}")
    conn.exec_driver_sql(
        f"""
        CREATE TEMP TABLE {_STAGE} (
            line_kind VARCHAR(8) NOT NULL, line_id INTEGER NOT NULL, material_code VARCHAR(64) NOT NULL,
            quantity NUMERIC(18, 4) NOT NULL, ready_date DATE NOT NULL, promised_date DATE NOT NULL,
            first_part_quantity NUMERIC(18, 4), first_part_date DATE, reason VARCHAR(24) NOT NULL,
            late BOOLEAN NOT NULL, PRIMARY KEY (line_kind, line_id)
        ){temp_suffix}
        """
    )


def _fill_stage(conn: sa.Connection, stage: pd.DataFrame) -> None:
    if stage.empty:
        return
    dbapi = conn.connection.dbapi_connection
    if dbapi is None:  # pragma: no cover - a live Connection always has one
        raise RuntimeError("the SQLAlchemy connection has no DBAPI connection")
    cursor = dbapi.cursor()
    try:
        if conn.dialect.name == "postgresql":
            table = pa.Table.from_pandas(stage.loc[:, list(_STAGE_COLUMNS)], preserve_index=False)
            sink = io.BytesIO()
            pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=False))
            cursor.copy_expert(
                f"COPY {_STAGE} ({', '.join(_STAGE_COLUMNS)}) FROM STDIN WITH (FORMAT csv)",
                io.BytesIO(sink.getvalue()),
            )
        else:
            # SQLAlchemy stores Date in SQLite as ISO text and Boolean as 0/1: write the same here.
            def iso(values: pd.Series) -> list[str | None]:
                return [None if v is None else v.isoformat() for v in values]

            first_qty = (
                stage["first_part_quantity"]
                .astype("object")
                .where(stage["first_part_quantity"].notna(), None)
            )
            rows = zip(
                stage["line_kind"].tolist(),
                stage["line_id"].tolist(),
                stage["material_code"].tolist(),
                stage["quantity"].tolist(),
                iso(stage["ready_date"]),
                iso(stage["promised_date"]),
                first_qty.tolist(),
                iso(stage["first_part_date"]),
                stage["reason"].tolist(),
                stage["late"].astype(int).tolist(),
                strict=True,
            )
            placeholders = ", ".join("?" for _ in _STAGE_COLUMNS)
            insert = f"INSERT INTO {_STAGE} ({', '.join(_STAGE_COLUMNS)}) VALUES ({placeholders})"
            cursor.executemany(insert, rows)  # type: ignore[arg-type]  # sqlite3 takes any iterable
    finally:
        cursor.close()


def _differs(conn: sa.Connection, old: str, new: str) -> str:
    """SQL that is true when any compared column differs (NULL-safe)."""
    op = "IS DISTINCT FROM" if conn.dialect.name == "postgresql" else "IS NOT"
    return "(" + " OR ".join(f"{old}.{c} {op} {new}.{c}" for c in _COMPARED) + ")"


def _write(conn: sa.Connection, stage: pd.DataFrame) -> tuple[int, int, int]:
    """Stage, emit events for changes, upsert changes, delete stale; returns (written, removed, events)."""
    _create_stage(conn)
    _fill_stage(conn, stage)
    now = sa.bindparam("now", value=now_utc(), type_=TZDateTime())
    entity = "CASE {k} WHEN 'order' THEN 'order_line' ELSE 'quote_line' END"
    changed_events = conn.execute(
        sa.text(
            f"""
            INSERT INTO outbox_events (topic, entity_type, entity_id, created_at)
            SELECT '{TOPIC}', {entity.format(k="s.line_kind")}, s.line_id, :now
            FROM {_STAGE} s
            LEFT JOIN delivery_promises d ON d.line_kind = s.line_kind AND d.line_id = s.line_id
            WHERE d.id IS NULL OR {_differs(conn, "d", "s")}
            """
        ).bindparams(now)
    ).rowcount
    written = conn.execute(
        sa.text(
            f"""
            INSERT INTO delivery_promises (line_kind, line_id, {", ".join(_COMPARED)}, computed_at)
            SELECT line_kind, line_id, {", ".join(_COMPARED)}, :now FROM {_STAGE} WHERE true
            ON CONFLICT (line_kind, line_id) DO UPDATE SET
                {", ".join(f"{c} = excluded.{c}" for c in _COMPARED)}, computed_at = excluded.computed_at
            WHERE {_differs(conn, "delivery_promises", "excluded")}
            """
        ).bindparams(now)
    ).rowcount
    stale = f"NOT EXISTS (SELECT 1 FROM {_STAGE} s WHERE s.line_kind = d.line_kind AND s.line_id = d.line_id)"
    removed_events = conn.execute(
        sa.text(
            f"""
            INSERT INTO outbox_events (topic, entity_type, entity_id, created_at)
            SELECT '{TOPIC}', {entity.format(k="d.line_kind")}, d.line_id, :now
            FROM delivery_promises d WHERE {stale}
            """
        ).bindparams(now)
    ).rowcount
    removed = conn.execute(
        sa.text(
            f"DELETE FROM delivery_promises WHERE id IN (SELECT d.id FROM delivery_promises d WHERE {stale})"
        )
    ).rowcount
    if conn.dialect.name != "postgresql":
        conn.exec_driver_sql(f"DROP TABLE temp.{_STAGE}")
    return int(written), int(removed), int(changed_events) + int(removed_events)


# --------------------------------------------------------------------------------------------- the run


def run_promises(
    engine: sa.Engine, config: PromiseConfig, *, top: int = 20, dry_run: bool = False
) -> PromiseRun:
    """Promise every open order and quote line and store the results (see the module docstring).

    ``dry_run`` computes and summarises without writing anything.
    """
    started = time.perf_counter()
    with engine.begin() as conn:
        demand = read_demand(conn, config.today)
        inventory = read_inventory(conn)
        supply = read_supply(conn)
        result = promise_lines(demand.drop(columns=["line_kind"]), inventory, supply, config)
        written = removed = events = 0
        if not dry_run:
            written, removed, events = _write(conn, _stage_frame(result))
    summary = summarize(result, top=top)
    seconds = time.perf_counter() - started
    log.info(
        "promises for %s: %d lines, %d late, %d made to order; %d written, %d removed, %d events (%.2f s)",
        config.today,
        summary.lines_promised,
        summary.lines_late,
        summary.made_to_order,
        written,
        removed,
        events,
        seconds,
    )
    return PromiseRun(config.today, summary, result, written, removed, events, seconds)


# --------------------------------------------------------------------------------------------- settings


def _day(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a date; write YYYY-MM-DD.") from None


def promise_config_from_mapping(data: Mapping[str, Any], *, today: dt.date, where: str) -> PromiseConfig:
    """Build a :class:`PromiseConfig` from a settings mapping (e.g. a YAML file read with safe_load).

    Keys: handling_days, shipping_days_by_region, default_shipping_days, default_lead_time_days,
    allow_split, and calendar: {rest_weekdays, shutdowns: [{start, end, reason}],
    years: {2027: {holidays: [...], workdays: [...]}}}. Unknown keys are refused.
    """
    allowed = {
        "handling_days",
        "shipping_days_by_region",
        "default_shipping_days",
        "default_lead_time_days",
        "allow_split",
        "calendar",
    }
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown promise setting(s) {unknown}; allowed: {sorted(allowed)}.")
    values = {k: v for k, v in data.items() if k != "calendar"}
    cal = data.get("calendar") or {}
    unknown_cal = sorted(set(cal) - {"rest_weekdays", "shutdowns", "years"})
    if unknown_cal:
        raise ConfigError(
            f"{where}: calendar: unknown key(s) {unknown_cal}; allowed: rest_weekdays, shutdowns, years."
        )
    shutdowns = tuple(
        DateRange(
            _day(s.get("start"), f"{where}: calendar.shutdowns[{i}].start"),
            _day(s.get("end"), f"{where}: calendar.shutdowns[{i}].end"),
            str(s.get("reason", "")),
        )
        for i, s in enumerate(cal.get("shutdowns") or [])
    )
    years = tuple(
        YearOverride(
            int(year),
            frozenset(
                _day(d, f"{where}: calendar.years.{year}.holidays") for d in spec.get("holidays") or []
            ),
            frozenset(
                _day(d, f"{where}: calendar.years.{year}.workdays") for d in spec.get("workdays") or []
            ),
        )
        for year, spec in (cal.get("years") or {}).items()
    )
    calendar = CalendarConfig(
        year_overrides=years,
        shutdowns=shutdowns,
        rest_weekdays=tuple(cal.get("rest_weekdays", (5, 6))),
    )
    try:
        return PromiseConfig(today=today, calendar=calendar, **values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
