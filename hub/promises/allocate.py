"""Delivery promises (可交期测算): allocate stock and scheduled receipts to open lines by priority.

Pure and vectorised: DataFrames in, one DataFrame out; no database, files or Dagster. Column names
are constants in :mod:`hub.promises.models`.

Inputs
------
``inventory`` (one row per material x warehouse [x lot]; lots are summed):
    material (str), warehouse (str), on_hand (number); optional reserved, safety_stock (number,
    null = 0). Available now = on_hand - reserved - safety_stock, summed over rows. A negative sum
    (reservations beyond stock) is kept: it eats into later receipts before any new line gets them.
``supply`` (optional; scheduled receipts: purchase and production orders):
    material (str), quantity (number >= 0), eta (date); optional warehouse (null = not tied to
    one, so it serves only lines without a warehouse). An ETA in the past counts as arriving today.
``demand`` (open order lines and quote lines):
    line_id (str, unique), material (str), quantity (number > 0), customer_tier (int, 1 = most
    important), doc_date (order or quote date); optional warehouse (null = any warehouse),
    requested_date, region, lead_time_days (working days), allow_split (bool).

Output (one row per demand line, sorted by priority_rank)
------
line_id, priority_rank, material, warehouse, quantity, customer_tier, requested_date, reason
(in_stock / incoming_supply / made_to_order / split), ready_date, promised_date, now_quantity,
now_promised_date, rest_quantity, rest_reason, late, days_late. Date columns are ``datetime64[s]``
at midnight, meaning Shanghai calendar days.

Method
------
Lines are ranked by (customer_tier, doc_date, line_id). Per pool, supply is a step curve: available
stock today plus receipts by ETA, accumulated. A line's cumulative demand is its own quantity plus
that of every higher-ranked line of the same pool; it is ready on the first day the supply curve
reaches it (``merge_asof`` per pool), or is made to order (today + lead time) when no known supply
ever does. So a lower-ranked line is never ready before a higher-ranked one of the same pool.

Lines without a warehouse draw on the material's stock in all warehouses; lines pinned to a
warehouse must also be covered by that warehouse alone. Checking both levels is exact: a pooled
line can take stock anywhere, so a set of lines is feasible iff the material total and every
warehouse's pinned lines are covered (Hall's condition for this shape).

Split lines (allowed by config or per line) ship what today's supply covers after the
higher-ranked lines (now_quantity) and the rest when supply covers the whole line, or made to
order. Ready dates get handling days plus the region's shipping days, all in working days on the
factory calendar.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from hub.errors import DataValidationError
from hub.promises import models as m
from hub.promises.calendar import FactoryCalendar

# Quantities are compared as integers of 1/10,000 unit, so cumulative sums are exact and a line
# needing exactly the stock on hand is covered (float cumsum would miss by 1e-12 now and then).
QTY_SCALE = 10_000
_SHANGHAI = "Asia/Shanghai"
_NO_DAY = np.iinfo(np.int64).max  # "no supply ever covers this": sorts after every real day
_KEY = "_pool"


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{name} frame lacks column(s) {missing}; it has {list(frame.columns)}. "
            f"Build it to the contract in hub/promises/allocate.py",
            context={"frame": name, "missing": missing},
        )


def _scaled(values: pd.Series) -> npt.NDArray[np.int64]:
    """Quantities as int64 multiples of 1/QTY_SCALE (null = 0)."""
    as_float = pd.to_numeric(values).to_numpy(dtype=np.float64, na_value=0.0)
    return np.rint(as_float * QTY_SCALE).astype(np.int64)


def _day_numbers(values: pd.Series, name: str) -> npt.NDArray[np.int64]:
    """Dates as days since 1970-01-01 (Shanghai calendar days); null = NaT's int (the minimum)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        # An aware timestamp belongs to the Shanghai day it falls on, wherever it was recorded.
        values = values.dt.tz_convert(_SHANGHAI).dt.tz_localize(None)
    try:
        days = pd.to_datetime(values).to_numpy().astype("datetime64[D]")
    except (ValueError, TypeError) as exc:
        raise DataValidationError(f"column {name!r} holds values that are not dates: {exc}") from exc
    return days.astype(np.int64)


def _null_mask(values: pd.Series) -> npt.NDArray[np.bool_]:
    mask = values.isna().to_numpy()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        mask = mask | (values.astype("str").str.strip() == "").to_numpy()
    return mask


def _reject(mask: npt.NDArray[np.bool_], ids: pd.Series, message: str, frame: str) -> None:
    if mask.any():
        sample = [str(v) for v in ids[mask].head(5)]
        raise DataValidationError(
            f"{frame}: {int(mask.sum())} row(s) {message}, e.g. {sample}",
            context={"frame": frame, "rows": sample},
        )


def _validate_demand(demand: pd.DataFrame) -> None:
    _require(demand, m.DEMAND_REQUIRED, "demand")
    ids = demand[m.DEM_LINE_ID]
    _reject(_null_mask(ids), ids.index.to_series(), "have no line_id (showing row labels)", "demand")
    _reject(ids.duplicated(keep=False).to_numpy(), ids, "share a line_id; ids must be unique", "demand")
    _reject(_null_mask(demand[m.DEM_MATERIAL]), ids, "have no material", "demand")
    qty = pd.to_numeric(demand[m.DEM_QUANTITY])
    _reject((qty.isna() | (qty <= 0)).to_numpy(), ids, "have a quantity that is missing or <= 0", "demand")
    _reject(demand[m.DEM_TIER].isna().to_numpy(), ids, "have no customer_tier", "demand")
    _reject(demand[m.DEM_DOC_DATE].isna().to_numpy(), ids, "have no doc_date", "demand")
    if m.DEM_LEAD_TIME in demand.columns:
        lead = pd.to_numeric(demand[m.DEM_LEAD_TIME])
        _reject((lead < 0).to_numpy(), ids, "have a negative lead_time_days", "demand")


def _validate_supply(supply: pd.DataFrame) -> None:
    _require(supply, m.SUPPLY_REQUIRED, "supply")
    labels = supply.index.to_series()
    _reject(_null_mask(supply[m.SUP_MATERIAL]), labels, "have no material (row labels)", "supply")
    qty = pd.to_numeric(supply[m.SUP_QUANTITY])
    _reject(
        (qty.isna() | (qty < 0)).to_numpy(), labels, "have a quantity missing or < 0 (row labels)", "supply"
    )
    _reject(supply[m.SUP_ETA].isna().to_numpy(), labels, "have no eta (row labels)", "supply")


def _shared_codes(first: pd.Series, *others: pd.Series) -> tuple[list[npt.NDArray[np.int64]], int]:
    """Integer codes for the values of several columns over one shared universe of values.

    ``first`` (the big inventory column) is factorised once; the smaller columns are looked up in
    its uniques, and values it lacks get new codes. Null values get -1.
    """
    first_codes, uniques = pd.factorize(first)
    index = pd.Index(uniques)
    out = [first_codes.astype(np.int64)]
    for column in others:
        codes = index.get_indexer(column).astype(np.int64)
        missing = (codes < 0) & column.notna().to_numpy()
        if missing.any():
            index = index.append(pd.Index(pd.unique(column[missing])))
            codes[missing] = index.get_indexer(column[missing])
        out.append(codes)
    return out, len(index)


def _pool_sums(keys: npt.NDArray[np.int64], qty: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
    """Sum ``qty`` per distinct key: (distinct keys, sums)."""
    codes, uniques = pd.factorize(keys)
    # float64 bincount is exact here: every term is an integer and sums stay far below 2**53
    # (9e11 units of one material at QTY_SCALE = 1e4).
    sums = np.rint(np.bincount(codes, weights=qty, minlength=len(uniques))).astype(np.int64)
    return np.asarray(uniques, dtype=np.int64), sums


def _coverage(
    ev_key: npt.NDArray[np.int64],
    ev_day: npt.NDArray[np.int64],
    ev_qty: npt.NDArray[np.int64],
    line_key: npt.NDArray[np.int64],
    line_qty: npt.NDArray[np.int64],
    today: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For lines (in priority order) of integer pools: the day supply covers each, and today's share.

    Args:
        ev_key, ev_day, ev_qty: supply steps: pool, day (>= today) and scaled quantity.
        line_key, line_qty: each line's pool and scaled quantity (> 0), already in priority order.
        today: today's day number.

    Returns:
        ``cover_day`` per line (``_NO_DAY`` when no known supply ever covers it) and ``now_qty``: how
        much of the line today's supply covers after all higher-ranked lines of its pool.
    """
    ev = pd.DataFrame({_KEY: ev_key, "day": ev_day, "qty": ev_qty})
    ev = ev.groupby([_KEY, "day"], sort=True, as_index=False)["qty"].sum()
    ev["cum"] = ev.groupby(_KEY, sort=False)["qty"].cumsum()
    # Supply available today per pool (every step is dated >= today, so it is a pool's first step).
    today_rows = ev[ev["day"] == today]
    now_keys = today_rows[_KEY].to_numpy()  # sorted, unique
    now_cum = today_rows["cum"].to_numpy()
    # Zero steps add nothing; dropping them keeps each pool's curve strictly increasing after its
    # first step, so the forward search below lands on the earliest day.
    ev = ev[ev["qty"] != 0]

    cum = pd.Series(line_qty).groupby(line_key, sort=False).cumsum().to_numpy()
    left = pd.DataFrame({_KEY: line_key, "cum": cum, "pos": np.arange(len(line_key))}).sort_values("cum")
    right = ev[[_KEY, "cum", "day"]].sort_values("cum")
    matched = pd.merge_asof(left, right, on="cum", by=_KEY, direction="forward", allow_exact_matches=True)
    cover_day = np.full(len(line_key), _NO_DAY, dtype=np.int64)
    found = matched["day"].notna().to_numpy()
    cover_day[matched["pos"].to_numpy()[found]] = matched["day"].to_numpy()[found].astype(np.int64)

    at = np.minimum(np.searchsorted(now_keys, line_key), max(len(now_keys) - 1, 0))
    has_now = (now_keys[at] == line_key) if len(now_keys) else np.zeros(len(line_key), dtype=bool)
    now = np.where(has_now, now_cum[at] if len(now_cum) else 0, 0)
    now_qty = np.clip(now - (cum - line_qty), 0, line_qty)
    return cover_day, now_qty


def _available(inventory: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Scaled on_hand - reserved - safety_stock per inventory row (missing optional columns = 0)."""
    avail = _scaled(inventory[m.INV_ON_HAND])
    for column in m.INVENTORY_OPTIONAL_QTY:
        if column in inventory.columns:
            avail = avail - _scaled(inventory[column])
    return avail


def _optional(demand: pd.DataFrame, column: str) -> pd.Series | None:
    return demand[column] if column in demand.columns else None


def _receipt_days(supply: pd.DataFrame, today: int) -> npt.NDArray[np.int64]:
    # A receipt already overdue is still expected: it counts as arriving today.
    return np.maximum(_day_numbers(supply[m.SUP_ETA], m.SUP_ETA), today)


def promise_lines(
    demand: pd.DataFrame,
    inventory: pd.DataFrame,
    supply: pd.DataFrame | None,
    config: m.PromiseConfig,
) -> pd.DataFrame:
    """Promise a delivery date to every open line; see the module docstring for the contracts.

    Args:
        demand: open order and quote lines.
        inventory: the stock snapshot in force.
        supply: scheduled receipts, or None.
        config: today, day counts, split policy and the factory calendar.

    Returns:
        One row per demand line in priority order, columns :data:`hub.promises.models.RESULT_COLUMNS`.

    Raises:
        DataValidationError: a frame breaks its contract (missing column, duplicate line id, ...).
        ConfigError: a date falls in a year the calendar cannot count without an override.
    """
    _validate_demand(demand)
    _require(inventory, m.INVENTORY_REQUIRED, "inventory")
    if supply is not None:
        _validate_supply(supply)
    else:
        supply = pd.DataFrame(
            {
                m.SUP_MATERIAL: pd.Series([], dtype="str"),
                m.SUP_QUANTITY: pd.Series([], dtype="float64"),
                m.SUP_ETA: pd.Series([], dtype="datetime64[s]"),
            }
        )
    calendar = FactoryCalendar(config.calendar)
    today = int(np.datetime64(config.today, "D").astype(np.int64))

    # Rank: customer tier, then order/quote date, then line id; deterministic.
    line_rank = pd.factorize(demand[m.DEM_LINE_ID], sort=True)[0]
    tier = pd.to_numeric(demand[m.DEM_TIER]).to_numpy()
    order = np.lexsort((line_rank, _day_numbers(demand[m.DEM_DOC_DATE], m.DEM_DOC_DATE), tier))
    lines = demand.iloc[order].reset_index(drop=True)
    qty = _scaled(lines[m.DEM_QUANTITY])

    (inv_mat, sup_mat, line_mat), n_mat = _shared_codes(
        inventory[m.INV_MATERIAL], supply[m.SUP_MATERIAL], lines[m.DEM_MATERIAL]
    )
    labels = inventory.index.to_series()
    _reject(inv_mat < 0, labels, "have no material (row labels)", "inventory")
    avail = _available(inventory)
    sup_qty = _scaled(supply[m.SUP_QUANTITY])
    sup_day = _receipt_days(supply, today)

    # Material level: every line, against stock in all warehouses and all receipts.
    stock_key, stock_qty = _pool_sums(inv_mat, avail)
    cover_day, now_qty = _coverage(
        np.concatenate([stock_key, sup_mat]),
        np.concatenate([np.full(len(stock_key), today, dtype=np.int64), sup_day]),
        np.concatenate([stock_qty, sup_qty]),
        line_mat,
        qty,
        today,
    )

    # Warehouse level: pinned lines must also be covered by their own warehouse's stock and receipts.
    warehouse = _optional(lines, m.DEM_WAREHOUSE)
    pinned = np.zeros(len(lines), dtype=bool) if warehouse is None else ~_null_mask(warehouse)
    if warehouse is not None and pinned.any():
        wanted = np.zeros(n_mat, dtype=bool)
        wanted[line_mat[pinned]] = True
        inv_rows = np.flatnonzero(wanted[inv_mat])
        sup_wh_col = supply[m.SUP_WAREHOUSE] if m.SUP_WAREHOUSE in supply.columns else None
        sup_rows = np.zeros(len(supply), dtype=bool) if sup_wh_col is None else ~_null_mask(sup_wh_col)
        sup_rows &= wanted[sup_mat]
        sup_rows_i = np.flatnonzero(sup_rows)
        sup_wh_values = sup_wh_col.iloc[sup_rows_i] if sup_wh_col is not None else pd.Series([], dtype="str")
        (inv_wh, sup_wh, line_wh), n_wh = _shared_codes(
            inventory[m.INV_WAREHOUSE].iloc[inv_rows], sup_wh_values, warehouse[pinned]
        )
        # Inventory rows without a warehouse serve only the material level.
        inv_keep = inv_wh >= 0
        w_stock_key, w_stock_qty = _pool_sums(
            inv_mat[inv_rows][inv_keep] * n_wh + inv_wh[inv_keep], avail[inv_rows][inv_keep]
        )
        w_cover, w_now = _coverage(
            np.concatenate([w_stock_key, sup_mat[sup_rows_i] * n_wh + sup_wh]),
            np.concatenate([np.full(len(w_stock_key), today, dtype=np.int64), sup_day[sup_rows_i]]),
            np.concatenate([w_stock_qty, sup_qty[sup_rows_i]]),
            line_mat[pinned] * n_wh + line_wh,
            qty[pinned],
            today,
        )
        cover_day[pinned] = np.maximum(cover_day[pinned], w_cover)
        now_qty[pinned] = np.minimum(now_qty[pinned], w_now)

    return _dates_and_reasons(lines, qty, cover_day, now_qty, today, config, calendar)


def _dates_and_reasons(
    lines: pd.DataFrame,
    qty: npt.NDArray[np.int64],
    cover_day: npt.NDArray[np.int64],
    now_qty: npt.NDArray[np.int64],
    today: int,
    config: m.PromiseConfig,
    calendar: FactoryCalendar,
) -> pd.DataFrame:
    """Turn coverage into reasons, ready dates and promised dates on the factory calendar."""
    n = len(lines)
    lead_col = _optional(lines, m.DEM_LEAD_TIME)
    lead = np.full(n, config.default_lead_time_days, dtype=np.int64)
    if lead_col is not None:
        lead = pd.to_numeric(lead_col).fillna(config.default_lead_time_days).to_numpy(dtype=np.int64)
    split_col = _optional(lines, m.DEM_ALLOW_SPLIT)
    may_split = np.full(n, config.allow_split, dtype=bool)
    if split_col is not None:
        may_split = split_col.astype("boolean").fillna(config.allow_split).to_numpy(dtype=bool)
    region_col = _optional(lines, m.DEM_REGION)
    shipping = np.full(n, config.default_shipping_days, dtype=np.int64)
    if region_col is not None and config.shipping_days_by_region:
        regions = pd.Index(list(config.shipping_days_by_region))
        days = np.append(np.fromiter(config.shipping_days_by_region.values(), dtype=np.int64), shipping[:1])
        shipping = days[regions.get_indexer(region_col)]  # -1 (unknown region) picks the default
    transit = config.handling_days + shipping

    covered = cover_day != _NO_DAY
    in_stock = covered & (cover_day == today)
    split = ~in_stock & may_split & (now_qty > 0)
    today_d = np.datetime64(today, "D")
    made = calendar.add_working_days(np.full(n, today_d), lead)
    ready = np.where(covered, cover_day, made.astype(np.int64)).astype("datetime64[D]")
    promised = calendar.add_working_days(ready, transit)
    ships_now = in_stock | split
    now_promised = np.where(
        ships_now, calendar.add_working_days(np.full(n, today_d), transit), np.datetime64("NaT")
    )

    reason = np.where(
        in_stock, m.IN_STOCK, np.where(split, m.SPLIT, np.where(covered, m.INCOMING_SUPPLY, m.MADE_TO_ORDER))
    )
    rest_reason = np.where(covered, m.INCOMING_SUPPLY, m.MADE_TO_ORDER).astype(object)
    rest_reason[in_stock] = None
    now_out = np.where(in_stock, qty, np.where(split, now_qty, 0))

    requested_col = _optional(lines, m.DEM_REQUESTED)
    if requested_col is None:
        requested = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    else:
        req_days = _day_numbers(requested_col, m.DEM_REQUESTED).astype("datetime64[D]")
        requested = np.where(requested_col.isna().to_numpy(), np.datetime64("NaT"), req_days)
    late_by = (promised - requested).astype("timedelta64[D]").astype(np.int64)
    has_request = ~np.isnat(requested)
    late = has_request & (promised > requested)

    warehouse = _optional(lines, m.DEM_WAREHOUSE)
    out = pd.DataFrame(
        {
            m.OUT_LINE_ID: lines[m.DEM_LINE_ID].array,
            m.OUT_RANK: np.arange(1, n + 1, dtype=np.int64),
            m.OUT_MATERIAL: lines[m.DEM_MATERIAL].array,
            m.OUT_WAREHOUSE: warehouse.array if warehouse is not None else np.full(n, None),
            m.OUT_QUANTITY: qty / QTY_SCALE,
            m.OUT_TIER: lines[m.DEM_TIER].array,
            m.OUT_REQUESTED: requested.astype("datetime64[s]"),
            m.OUT_REASON: reason,
            m.OUT_READY: ready.astype("datetime64[s]"),
            m.OUT_PROMISED: promised.astype("datetime64[s]"),
            m.OUT_NOW_QTY: now_out / QTY_SCALE,
            m.OUT_NOW_PROMISED: now_promised.astype("datetime64[s]"),
            m.OUT_REST_QTY: (qty - now_out) / QTY_SCALE,
            m.OUT_REST_REASON: rest_reason,
            m.OUT_LATE: late,
            m.OUT_DAYS_LATE: np.where(late, late_by, 0),
        }
    )
    return out
