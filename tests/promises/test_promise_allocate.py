"""Delivery promises: priority order, stock and incoming supply, made to order, splits, calendar days.

Most cases use ``TODAY`` = Monday 22 September 2025 and zero handling/shipping days, so a promised
date is the ready date rolled to a working day; the transit cases add days across National Day
(1-8 October 2025, make-up workdays Sunday 28 September and Saturday 11 October). The last test
compares the vectorised engine with a plain loop over the same rules on random cases.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hub.errors import ConfigError, DataValidationError
from hub.promises import (
    CalendarConfig,
    DateRange,
    FactoryCalendar,
    PromiseConfig,
    YearOverride,
    promise_lines,
    summarize,
)

D = dt.date
TODAY = D(2025, 9, 22)  # Monday


def demand(*rows: dict[str, Any]) -> pd.DataFrame:
    defaults = {"customer_tier": 2, "doc_date": D(2025, 9, 1), "material": "A"}
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    for column in ("doc_date", "requested_date"):
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column])
    return frame


def stock(*rows: dict[str, Any]) -> pd.DataFrame:
    defaults = {"material": "A", "warehouse": "W1"}
    return pd.DataFrame([{**defaults, **row} for row in rows])


def receipts(*rows: dict[str, Any]) -> pd.DataFrame:
    frame = pd.DataFrame([{"material": "A", **row} for row in rows])
    frame["eta"] = pd.to_datetime(frame["eta"])
    return frame


def config(**overrides: Any) -> PromiseConfig:
    base: dict[str, Any] = {
        "today": TODAY,
        "handling_days": 0,
        "default_shipping_days": 0,
        "default_lead_time_days": 10,
    }
    return PromiseConfig(**{**base, **overrides})


def by_line(result: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {row["line_id"]: row for row in result.to_dict("records")}


def day(value: Any) -> dt.date:
    return pd.Timestamp(value).date()


def test_tier_one_later_order_gets_stock_before_tier_three_earlier_order() -> None:
    lines = demand(
        {"line_id": "SO-OLD/1", "customer_tier": 3, "doc_date": D(2025, 8, 1), "quantity": 10},
        {"line_id": "SO-NEW/1", "customer_tier": 1, "doc_date": D(2025, 9, 20), "quantity": 10},
    )
    out = by_line(promise_lines(lines, stock({"on_hand": 10}), None, config()))
    assert out["SO-NEW/1"]["reason"] == "in_stock" and out["SO-NEW/1"]["priority_rank"] == 1
    assert day(out["SO-NEW/1"]["promised_date"]) == TODAY
    assert out["SO-OLD/1"]["reason"] == "made_to_order" and out["SO-OLD/1"]["priority_rank"] == 2


def test_same_tier_earlier_document_first_then_line_id_orders_and_quotes_in_one_queue() -> None:
    lines = demand(
        {"line_id": "QT-2", "doc_date": D(2025, 9, 10), "quantity": 1},
        {"line_id": "QT-1", "doc_date": D(2025, 9, 10), "quantity": 1},
        {"line_id": "SO-9", "doc_date": D(2025, 9, 1), "quantity": 1},
    )
    result = promise_lines(lines, stock({"on_hand": 2}), None, config())
    assert list(result["line_id"]) == ["SO-9", "QT-1", "QT-2"]
    assert list(result["reason"]) == ["in_stock", "in_stock", "made_to_order"]


def test_incoming_supply_is_allocated_in_eta_order() -> None:
    lines = demand(
        {"line_id": "L1", "quantity": 5},
        {"line_id": "L2", "quantity": 8},
        {"line_id": "L3", "quantity": 10},
        {"line_id": "L4", "quantity": 3},
    )
    supply = receipts(
        {"quantity": 10, "eta": D(2025, 10, 15)},
        {"quantity": 10, "eta": D(2025, 9, 30)},
    )
    out = by_line(promise_lines(lines, stock({"on_hand": 5}), supply, config()))
    assert out["L1"]["reason"] == "in_stock"
    assert (out["L2"]["reason"], day(out["L2"]["ready_date"])) == ("incoming_supply", D(2025, 9, 30))
    assert (out["L3"]["reason"], day(out["L3"]["ready_date"])) == ("incoming_supply", D(2025, 10, 15))
    assert out["L4"]["reason"] == "made_to_order"  # 26 needed, 25 known
    assert out["L2"]["rest_reason"] == "incoming_supply" and out["L2"]["now_quantity"] == 0


def test_overdue_receipt_counts_as_arriving_today_and_holiday_eta_rolls_to_a_working_day() -> None:
    supply = receipts({"quantity": 4, "eta": D(2025, 9, 1)}, {"quantity": 4, "eta": D(2025, 10, 3)})
    lines = demand({"line_id": "L1", "quantity": 4}, {"line_id": "L2", "quantity": 4})
    out = by_line(promise_lines(lines, stock({"on_hand": 0}), supply, config()))
    assert out["L1"]["reason"] == "in_stock"
    assert day(out["L2"]["ready_date"]) == D(2025, 10, 3)
    assert day(out["L2"]["promised_date"]) == D(2025, 10, 9)  # 3 Oct is National Day


def test_made_to_order_is_today_plus_lead_time_in_working_days() -> None:
    lines = demand(
        {"line_id": "L1", "quantity": 1},  # default lead time: 10 working days
        {"line_id": "L2", "quantity": 1, "material": "NEW", "lead_time_days": 3},
        {"line_id": "L3", "quantity": 1, "material": "B", "lead_time_days": None},
    )
    out = by_line(promise_lines(lines, stock({"on_hand": 0}), None, config()))
    assert {r["reason"] for r in out.values()} == {"made_to_order"}
    # 23, 24, 25, 26, 28 (make-up Sunday), 29, 30 Sep, then National Day, then 9, 10, 11 Oct.
    assert day(out["L1"]["ready_date"]) == D(2025, 10, 11)
    assert day(out["L2"]["ready_date"]) == D(2025, 9, 25)
    assert day(out["L3"]["ready_date"]) == D(2025, 10, 11)
    assert out["L1"]["rest_quantity"] == 1 and out["L1"]["rest_reason"] == "made_to_order"


def test_available_is_on_hand_less_reserved_less_safety_stock_over_all_warehouses() -> None:
    inventory = stock(
        {"warehouse": "W1", "on_hand": 10, "reserved": 3, "safety_stock": 2},
        {"warehouse": "W2", "on_hand": 4, "reserved": None, "safety_stock": 0},
        {"material": "B", "warehouse": "W1", "on_hand": 100},
    )
    lines = demand({"line_id": "L1", "quantity": 9}, {"line_id": "L2", "quantity": 1})
    out = by_line(promise_lines(lines, inventory, None, config()))
    assert out["L1"]["reason"] == "in_stock"
    assert out["L2"]["reason"] == "made_to_order"


def test_reservations_beyond_stock_eat_into_the_next_receipt() -> None:
    inventory = stock({"on_hand": 2, "reserved": 5})
    supply = receipts({"quantity": 10, "eta": D(2025, 9, 30)})
    lines = demand({"line_id": "L1", "quantity": 7}, {"line_id": "L2", "quantity": 1})
    out = by_line(promise_lines(lines, inventory, supply, config(allow_split=True)))
    assert (out["L1"]["reason"], day(out["L1"]["ready_date"])) == ("incoming_supply", D(2025, 9, 30))
    assert out["L2"]["reason"] == "made_to_order"


def test_fractional_quantities_are_compared_exactly() -> None:
    lines = demand({"line_id": "L1", "quantity": 0.1}, {"line_id": "L2", "quantity": 0.2})
    out = by_line(promise_lines(lines, stock({"on_hand": 0.3}), None, config()))
    assert out["L2"]["reason"] == "in_stock"  # 0.1 + 0.2 > 0.3 in float arithmetic


def test_line_pinned_to_a_warehouse_needs_stock_in_that_warehouse() -> None:
    inventory = stock({"warehouse": "W1", "on_hand": 10}, {"warehouse": "W2", "on_hand": 0})
    supply = receipts(
        {"quantity": 5, "eta": D(2025, 9, 24), "warehouse": None},
        {"quantity": 5, "eta": D(2025, 9, 26), "warehouse": "W2"},
    )
    lines = demand(
        {"line_id": "ANY", "customer_tier": 1, "quantity": 5},
        {"line_id": "AT-W1", "customer_tier": 2, "quantity": 5, "warehouse": "W1"},
        {"line_id": "AT-W2", "customer_tier": 3, "quantity": 5, "warehouse": "W2"},
    )
    out = by_line(promise_lines(lines, inventory, supply, config()))
    assert out["ANY"]["reason"] == "in_stock"
    assert out["AT-W1"]["reason"] == "in_stock"  # ANY can be served from W1 too: 10 for 10
    # The untied receipt of the 24th cannot serve a W2 line; the W2 receipt of the 26th can.
    assert (out["AT-W2"]["reason"], day(out["AT-W2"]["ready_date"])) == ("incoming_supply", D(2025, 9, 26))


def test_pooled_higher_priority_line_limits_what_a_pinned_line_can_take() -> None:
    inventory = stock({"warehouse": "W1", "on_hand": 10}, {"warehouse": "W2", "on_hand": 0})
    lines = demand(
        {"line_id": "ANY", "customer_tier": 1, "quantity": 5, "warehouse": ""},
        {"line_id": "AT-W1", "customer_tier": 2, "quantity": 10, "warehouse": "W1"},
    )
    out = by_line(promise_lines(lines, inventory, None, config()))
    assert out["ANY"]["reason"] == "in_stock"
    assert out["AT-W1"]["reason"] == "made_to_order"  # only 5 left anywhere


def test_split_ships_the_part_in_stock_now_and_the_rest_on_the_receipt() -> None:
    supply = receipts({"quantity": 10, "eta": D(2025, 9, 30)})
    lines = demand(
        {"line_id": "L1", "quantity": 4},
        {"line_id": "L2", "quantity": 5},
        {"line_id": "L3", "quantity": 10},
    )
    out = by_line(promise_lines(lines, stock({"on_hand": 6}), supply, config(allow_split=True)))
    assert out["L1"]["reason"] == "in_stock"
    l2 = out["L2"]
    assert (l2["reason"], l2["now_quantity"], l2["rest_quantity"]) == ("split", 2, 3)
    assert day(l2["now_promised_date"]) == TODAY and day(l2["promised_date"]) == D(2025, 9, 30)
    assert l2["rest_reason"] == "incoming_supply"
    # Nothing of today's stock is left for L3, so it is not a split.
    assert (out["L3"]["reason"], out["L3"]["now_quantity"]) == ("made_to_order", 0)
    assert pd.isna(out["L3"]["now_promised_date"])

    no_split = by_line(promise_lines(lines, stock({"on_hand": 6}), supply, config(allow_split=False)))
    assert (no_split["L2"]["reason"], no_split["L2"]["now_quantity"]) == ("incoming_supply", 0)


def test_split_rest_made_to_order_and_per_line_split_flag() -> None:
    lines = demand(
        {"line_id": "L1", "quantity": 5, "allow_split": True},
        {"line_id": "L2", "material": "B", "quantity": 5, "allow_split": None},
        {"line_id": "L3", "material": "C", "quantity": 5, "allow_split": False},
    )
    inventory = stock({"on_hand": 2}, {"material": "B", "on_hand": 2}, {"material": "C", "on_hand": 2})
    out = by_line(promise_lines(lines, inventory, None, config(allow_split=False)))
    assert (out["L1"]["reason"], out["L1"]["now_quantity"], out["L1"]["rest_reason"]) == (
        "split",
        2,
        "made_to_order",
    )
    assert day(out["L1"]["ready_date"]) == D(2025, 10, 11)  # today + 10 working days
    assert out["L2"]["reason"] == "made_to_order"  # null flag: the config says no
    assert out["L3"]["reason"] == "made_to_order"


def test_handling_and_shipping_by_region_in_working_days_and_late_flag() -> None:
    friday = D(2025, 9, 26)
    lines = demand(
        {"line_id": "EAST", "quantity": 1, "region": "华东", "requested_date": D(2025, 9, 29)},
        {"line_id": "FAR", "quantity": 1, "region": "新疆", "requested_date": D(2025, 10, 1)},
        {"line_id": "NONE", "quantity": 1, "region": None, "requested_date": None},
    )
    cfg = config(today=friday, handling_days=1, shipping_days_by_region={"华东": 1}, default_shipping_days=3)
    out = by_line(promise_lines(lines, stock({"on_hand": 3}), None, cfg))
    # Friday + 2: the make-up Sunday 28th, then Monday 29th.
    assert day(out["EAST"]["promised_date"]) == D(2025, 9, 29) and not out["EAST"]["late"]
    # Friday + 4: 28, 29, 30 Sep, then 9 Oct after National Day.
    assert day(out["FAR"]["promised_date"]) == D(2025, 10, 9)
    assert out["FAR"]["late"] and out["FAR"]["days_late"] == 8
    assert day(out["NONE"]["promised_date"]) == D(2025, 10, 9)
    assert not out["NONE"]["late"] and out["NONE"]["days_late"] == 0
    assert all(day(r["ready_date"]) == friday for r in out.values())


def test_timezone_aware_requested_date_is_read_as_a_shanghai_day() -> None:
    lines = demand({"line_id": "L1", "quantity": 1})
    # 16:30 UTC on 21 Sep is 00:30 on 22 Sep in Shanghai: promised today is on time.
    lines["requested_date"] = pd.Series(pd.to_datetime(["2025-09-21T16:30:00Z"]))
    out = by_line(promise_lines(lines, stock({"on_hand": 1}), None, config()))
    assert day(out["L1"]["requested_date"]) == TODAY and not out["L1"]["late"]


def test_factory_shutdown_in_config_moves_promised_dates() -> None:
    lines = demand({"line_id": "L1", "quantity": 1}, {"line_id": "L2", "quantity": 1, "material": "X"})
    shutdown = CalendarConfig(shutdowns=(DateRange(D(2025, 9, 24), D(2025, 9, 30), "equipment overhaul"),))
    plain = by_line(promise_lines(lines, stock({"on_hand": 1}), None, config(handling_days=2)))
    shut = by_line(
        promise_lines(lines, stock({"on_hand": 1}), None, config(handling_days=2, calendar=shutdown))
    )
    assert day(plain["L1"]["promised_date"]) == D(2025, 9, 24)
    assert day(shut["L1"]["promised_date"]) == D(2025, 10, 9)  # 23 Sep, then nothing until 9 Oct
    # Made to order: 10 working days from Monday 22nd, with 24-30 Sep lost as well.
    assert day(shut["L2"]["ready_date"]) == D(2025, 10, 20)


def test_year_unknown_to_the_calendar_library_needs_an_override() -> None:
    lines = demand({"line_id": "L1", "quantity": 1})
    late_in_year = D(2026, 12, 21)
    with pytest.raises(ConfigError, match="2027"):
        promise_lines(
            lines, stock({"on_hand": 0}), None, config(today=late_in_year, default_lead_time_days=15)
        )
    calendar = CalendarConfig(year_overrides=(YearOverride(2027, holidays=frozenset({D(2027, 1, 1)})),))
    out = by_line(
        promise_lines(
            lines,
            stock({"on_hand": 0}),
            None,
            config(today=late_in_year, default_lead_time_days=15, calendar=calendar),
        )
    )
    assert day(out["L1"]["ready_date"]) == D(2027, 1, 12)  # 22-31 Dec: 8 days; 4-8, 11, 12 Jan: 7


@pytest.mark.parametrize(
    ("frame", "change", "message"),
    [
        ("demand", lambda d: d.drop(columns=["customer_tier"]), "lacks column"),
        ("demand", lambda d: d.assign(line_id=["L1", "L1"]), "share a line_id"),
        ("demand", lambda d: d.assign(quantity=[1, 0]), "quantity"),
        ("demand", lambda d: d.assign(material=["A", None]), "no material"),
        ("supply", lambda s: s.assign(quantity=[-1]), "quantity"),
        ("inventory", lambda i: i.drop(columns=["on_hand"]), "lacks column"),
    ],
)
def test_frames_breaking_the_contract_are_refused(frame: str, change: Any, message: str) -> None:
    frames = {
        "demand": demand({"line_id": "L1", "quantity": 1}, {"line_id": "L2", "quantity": 1}),
        "inventory": stock({"on_hand": 1}),
        "supply": receipts({"quantity": 1, "eta": D(2025, 9, 30)}),
    }
    frames[frame] = change(frames[frame])
    with pytest.raises(DataValidationError, match=message):
        promise_lines(frames["demand"], frames["inventory"], frames["supply"], config())


def test_summary_counts_and_most_at_risk_lines() -> None:
    lines = demand(
        {"line_id": "OK", "customer_tier": 1, "quantity": 1, "requested_date": D(2025, 9, 30)},
        {"line_id": "LATE-T2", "customer_tier": 2, "quantity": 5, "requested_date": D(2025, 9, 23)},
        {"line_id": "LATE-T3", "customer_tier": 3, "quantity": 5, "requested_date": D(2025, 9, 23)},
        {"line_id": "SPLIT", "customer_tier": 4, "quantity": 5, "requested_date": D(2025, 9, 1)},
    )
    lines.loc[lines["line_id"] == "SPLIT", "material"] = "Z"
    inventory = stock({"on_hand": 1}, {"material": "Z", "on_hand": 2})
    result = promise_lines(lines, inventory, None, config(allow_split=True))
    summary = summarize(result, top=2)
    assert (summary.lines_promised, summary.lines_late, summary.made_to_order, summary.split) == (4, 3, 3, 1)
    # OK ships today; the rest wait for production until 11 Oct. SPLIT is latest (requested 1 Sep),
    # then the two lines equally late, tier 2 first.
    assert list(summary.at_risk["line_id"]) == ["SPLIT", "LATE-T2"]


# --- the vectorised engine against a plain loop over the same rules ---------------------------


def _reference(
    lines: pd.DataFrame, inventory: pd.DataFrame, supply: pd.DataFrame, cfg: PromiseConfig
) -> dict:
    """One line at a time: cumulative demand per pool against each pool's supply curve."""
    cal = FactoryCalendar(cfg.calendar)
    today = cfg.today

    def curve(material: str, warehouse: str | None) -> list[tuple[dt.date, int]]:
        inv = inventory[inventory["material"] == material]
        sup = supply[supply["material"] == material]
        if warehouse is not None:
            inv = inv[inv["warehouse"] == warehouse]
            sup = sup[sup["warehouse"] == warehouse]
        level = int((inv["on_hand"] - inv["reserved"] - inv["safety_stock"]).sum())
        steps = [(today, level)]
        for eta, qty in sorted(
            (max(day(e), today), int(q)) for e, q in zip(sup["eta"], sup["quantity"], strict=True)
        ):
            level += qty
            steps.append((eta, level))
        return steps

    def covered_on(steps: list[tuple[dt.date, int]], need: int) -> dt.date | None:
        return next((d for d, level in steps if level >= need), None)

    def now_level(steps: list[tuple[dt.date, int]]) -> int:
        return max((level for d, level in steps if d == today), default=0)

    cum: dict[tuple[str, str | None], int] = defaultdict(int)
    expected = {}
    ranked = sorted(
        lines.to_dict("records"), key=lambda r: (r["customer_tier"], day(r["doc_date"]), r["line_id"])
    )
    for rank, row in enumerate(ranked, start=1):
        qty = int(row["quantity"])
        pinned = isinstance(row["warehouse"], str)
        pools = [(row["material"], None)] + ([(row["material"], row["warehouse"])] if pinned else [])
        covers, nows = [], []
        for pool in pools:
            cum[pool] += qty
            steps = curve(*pool)
            covers.append(covered_on(steps, cum[pool]))
            nows.append(min(max(now_level(steps) - (cum[pool] - qty), 0), qty))
        cover = None if None in covers else max(covers)
        now = min(nows)
        if cover == today:
            reason = "in_stock"
        elif row["allow_split"] and now > 0:
            reason = "split"
        else:
            reason = "incoming_supply" if cover else "made_to_order"
        ready = cover or cal.add_working_days_to(today, int(row["lead_time_days"]))
        expected[row["line_id"]] = (rank, reason, ready, {"in_stock": qty, "split": now}.get(reason, 0))
    return expected


@pytest.mark.parametrize("seed", range(12))
def test_vectorised_engine_matches_a_plain_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_lines, n_inv, n_sup = 40, 12, 8
    materials, warehouses = ["A", "B", "C"], ["W1", "W2"]
    inventory = pd.DataFrame(
        {
            "material": rng.choice(materials, n_inv),
            "warehouse": rng.choice(warehouses, n_inv),
            "on_hand": rng.integers(0, 30, n_inv),
            "reserved": rng.integers(0, 8, n_inv),
            "safety_stock": rng.integers(0, 3, n_inv),
        }
    )
    supply = pd.DataFrame(
        {
            "material": rng.choice(materials, n_sup),
            "warehouse": rng.choice(["W1", "W2", None], n_sup),
            "quantity": rng.integers(0, 40, n_sup),
            "eta": pd.to_datetime(TODAY) + pd.to_timedelta(rng.integers(-3, 30, n_sup), unit="D"),
        }
    )
    lines = pd.DataFrame(
        {
            "line_id": [f"L{i:03d}" for i in range(n_lines)],
            "material": rng.choice(materials + ["D"], n_lines),
            "warehouse": rng.choice(["W1", "W2", None, None], n_lines),
            "quantity": rng.integers(1, 15, n_lines),
            "customer_tier": rng.integers(1, 4, n_lines),
            "doc_date": pd.to_datetime(TODAY) - pd.to_timedelta(rng.integers(0, 5, n_lines), unit="D"),
            "lead_time_days": rng.integers(0, 20, n_lines),
            "allow_split": rng.random(n_lines) < 0.5,
        }
    )
    cfg = config()
    result = promise_lines(lines, inventory, supply, cfg)
    got = {
        r["line_id"]: (r["priority_rank"], r["reason"], day(r["ready_date"]), r["now_quantity"])
        for r in result.to_dict("records")
    }
    assert got == _reference(lines, inventory, supply, cfg)
    assert len(result) == n_lines and list(result["priority_rank"]) == list(range(1, n_lines + 1))
