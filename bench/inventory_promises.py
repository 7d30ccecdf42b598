"""Benchmark: inventory pull and delivery promises (issue 6).

Sections (each a function returning :class:`Result` rows; ``main`` runs them and checks the goals):

- ``promises``: :func:`hub.promises.promise_lines` for 100k open lines against a 1M-row inventory
  snapshot (goal <= 2 s on the 2-core reference machine), and the same for 1M lines (goal <= 12x the
  100k time, i.e. close to linear). Data come from a seeded generator, so every run sees the same
  input. Times are the best of ``--repeat`` runs, to keep other load on a shared machine out of it.
- ``sftp_load``: end-to-end SFTP + load of a 1M-row CSV against raw COPY (added by the SFTP part).

Run: ``.venv/bin/python bench/inventory_promises.py [--section promises] [--repeat 3]``.
The last line is the verdict with each figure and its goal; the exit code is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.promises import PromiseConfig, promise_lines  # noqa: E402

TODAY = dt.date(2025, 9, 22)
SEED = 20250922
N_MATERIALS = 50_000
N_WAREHOUSES = 20
N_INVENTORY = 1_000_000
N_RECEIPTS = 50_000
REGIONS = ("华东", "华南", "华北", "华中", "西南", "西北", "东北")


@dataclass(frozen=True)
class Result:
    """One measured figure and its goal (``value <= goal`` passes)."""

    name: str
    value: float
    goal: float
    unit: str

    @property
    def ok(self) -> bool:
        return self.value <= self.goal

    def line(self) -> str:
        return f"{self.name}: {self.value:.2f}{self.unit} (goal <= {self.goal:g}{self.unit})"


# --- deterministic data ------------------------------------------------------------------------
def _names(prefix: str, n: int) -> np.ndarray:
    return np.array([f"{prefix}{i:06d}" for i in range(n)], dtype=object)


def make_inventory(rng: np.random.Generator, rows: int = N_INVENTORY) -> pd.DataFrame:
    """A snapshot of ``rows`` (material, warehouse, lot) positions."""
    materials = _names("M", N_MATERIALS)
    warehouses = _names("WH", N_WAREHOUSES)
    return pd.DataFrame(
        {
            "material": pd.array(materials[rng.integers(0, N_MATERIALS, rows)], dtype="str"),
            "warehouse": pd.array(warehouses[rng.integers(0, N_WAREHOUSES, rows)], dtype="str"),
            "lot": np.arange(rows, dtype=np.int64),
            "on_hand": rng.integers(0, 40, rows).astype(np.float64),
            "reserved": rng.integers(0, 4, rows).astype(np.float64),
            "safety_stock": rng.integers(0, 2, rows).astype(np.float64),
        }
    )


def make_supply(rng: np.random.Generator, rows: int = N_RECEIPTS) -> pd.DataFrame:
    """Purchase and production orders with ETAs over the next 90 days; half tied to a warehouse."""
    materials = _names("M", N_MATERIALS)
    warehouses = _names("WH", N_WAREHOUSES)
    wh = warehouses[rng.integers(0, N_WAREHOUSES, rows)]
    wh[rng.random(rows) < 0.5] = None
    eta = np.datetime64(TODAY, "D") + rng.integers(-5, 90, rows)
    return pd.DataFrame(
        {
            "material": pd.array(materials[rng.integers(0, N_MATERIALS, rows)], dtype="str"),
            "warehouse": pd.array(wh, dtype="str"),
            "quantity": rng.integers(1, 500, rows).astype(np.float64),
            "eta": eta.astype("datetime64[s]"),
        }
    )


def make_demand(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    """Open order and quote lines; 20% pinned to a warehouse; demand exceeds supply for some materials."""
    materials = _names("M", N_MATERIALS)
    warehouses = _names("WH", N_WAREHOUSES)
    wh = warehouses[rng.integers(0, N_WAREHOUSES, rows)]
    wh[rng.random(rows) >= 0.2] = None
    today = np.datetime64(TODAY, "D")
    return pd.DataFrame(
        {
            "line_id": pd.array([f"SO{i:08d}" for i in range(rows)], dtype="str"),
            "material": pd.array(materials[rng.integers(0, N_MATERIALS, rows)], dtype="str"),
            "warehouse": pd.array(wh, dtype="str"),
            "quantity": rng.integers(1, 200, rows).astype(np.float64),
            "customer_tier": rng.integers(1, 6, rows),
            "doc_date": (today - rng.integers(0, 60, rows)).astype("datetime64[s]"),
            "requested_date": (today + rng.integers(3, 40, rows)).astype("datetime64[s]"),
            "region": pd.array(
                np.array(REGIONS, dtype=object)[rng.integers(0, len(REGIONS), rows)], dtype="str"
            ),
            "lead_time_days": rng.integers(5, 30, rows),
        }
    )


def _config() -> PromiseConfig:
    return PromiseConfig(
        today=TODAY,
        handling_days=1,
        shipping_days_by_region={"华东": 1, "华南": 2, "华北": 2, "西南": 3, "西北": 4, "东北": 3},
        default_shipping_days=2,
        default_lead_time_days=15,
        allow_split=True,
    )


def _best_time(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# --- sections ----------------------------------------------------------------------------------
def section_promises(repeat: int) -> list[Result]:
    """Promise 100k and 1M open lines against 1M inventory rows."""
    rng = np.random.default_rng(SEED)
    inventory = make_inventory(rng)
    supply = make_supply(rng)
    small = make_demand(rng, 100_000)
    large = make_demand(rng, 1_000_000)
    config = _config()

    result = promise_lines(small, inventory, supply, config)  # warm-up, and a sanity look at the mix
    mix = result["reason"].value_counts().to_dict()
    print(f"promises: 100k lines reasons {mix}; late {int(result['late'].sum())}")
    t_small = _best_time(lambda: promise_lines(small, inventory, supply, config), repeat)
    print(f"promises: 100k lines x 1M inventory rows: {t_small:.3f} s (best of {repeat})")
    t_large = _best_time(lambda: promise_lines(large, inventory, supply, config), repeat)
    print(f"promises: 1M lines x 1M inventory rows: {t_large:.3f} s (best of {repeat})")
    return [
        Result("promises 100k lines x 1M inventory", t_small, 2.0, " s"),
        Result("promises 10x lines time ratio", t_large / t_small, 12.0, "x"),
    ]


SECTIONS: dict[str, Callable[[int], list[Result]]] = {
    "promises": section_promises,
    # "sftp_load": section_sftp_load,  (the SFTP/CSV load part adds its section here)
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections; print one verdict line; return 1 if any goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", action="append", choices=sorted(SECTIONS), help="default: all")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts")
    args = parser.parse_args(argv)
    results: list[Result] = []
    for name in args.section or list(SECTIONS):
        results.extend(SECTIONS[name](args.repeat))
    ok = all(r.ok for r in results)
    print(("PASS: " if ok else "FAIL: ") + "; ".join(r.line() for r in results))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
