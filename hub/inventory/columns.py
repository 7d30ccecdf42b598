"""The column contract of an inventory snapshot frame, as the store side loads it.

A snapshot frame has one row per (material, warehouse, lot) position:

- ``material_code`` (str): the ERP material number (``Product.erp_material_code``).
- ``warehouse_code`` (str): the ERP stock number (``Warehouse.erp_stock_code``, else ``code``).
- ``lot`` (str): batch number; ``""`` when the ERP does not track lots.
- ``on_hand`` (float): quantity on hand in the base unit.
- ``reserved`` (float): quantity already reserved; null means 0.
- ``source_line`` (int): where the row came from (1-based physical line of a CSV file, or the row's
  position in an API listing), so that a quarantined row can be found again.

:func:`normalize_snapshot_frame` turns what a reader produced into exactly these columns and dtypes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import pandas as pd

from hub.errors import DataValidationError

MATERIAL: Final = "material_code"
WAREHOUSE: Final = "warehouse_code"
LOT: Final = "lot"
ON_HAND: Final = "on_hand"
RESERVED: Final = "reserved"
SOURCE_LINE: Final = "source_line"
SNAPSHOT_COLUMNS: Final = (MATERIAL, WAREHOUSE, LOT, ON_HAND, RESERVED, SOURCE_LINE)
POSITION_KEY: Final = (MATERIAL, WAREHOUSE, LOT)

# Canonical template columns (hub.config.columns "inventory") -> snapshot frame columns.
TEMPLATE_TO_SNAPSHOT: Final[Mapping[str, str]] = {
    "material_code": MATERIAL,
    "warehouse_code": WAREHOUSE,
    "batch_no": LOT,
    "on_hand_qty": ON_HAND,
    "reserved_qty": RESERVED,
}


def _text(values: pd.Series) -> pd.Series:
    """Strings with surrounding blanks removed; missing values stay missing."""
    as_text = values.astype("string")
    return as_text.str.strip()


def normalize_snapshot_frame(
    frame: pd.DataFrame, *, rename: Mapping[str, str] | None = None, origin: str = "snapshot"
) -> pd.DataFrame:
    """Return ``frame`` as a snapshot frame (the columns above, in order, with their dtypes).

    ``rename`` maps reader columns to snapshot columns first (e.g. :data:`TEMPLATE_TO_SNAPSHOT`).
    Quantities that are not numbers become NaN here and are then caught by validation, so a bad value
    is quarantined with its line instead of failing the whole load. Without ``source_line`` the rows
    are numbered 1..n in their order.
    """
    data = frame.rename(columns=dict(rename or {}))
    missing = [c for c in (MATERIAL, WAREHOUSE, ON_HAND) if c not in data.columns]
    if missing:
        raise DataValidationError(
            f"{origin}: the inventory rows lack column(s) {missing}; they have {list(data.columns)}. "
            "Map them in the template's columns (material_code, warehouse_code, on_hand_qty).",
            context={"origin": origin, "missing": missing},
        )
    n = len(data)
    lot = _text(data[LOT]).fillna("") if LOT in data.columns else pd.Series([""] * n, dtype="string")
    if RESERVED in data.columns:
        # Only a missing value means 0; text that is not a number stays NaN for validation to catch.
        raw_reserved = data[RESERVED]
        reserved = pd.to_numeric(raw_reserved, errors="coerce").astype("float64")
        reserved = reserved.where(raw_reserved.notna().to_numpy(), 0.0)
    else:
        reserved = pd.Series(np.zeros(n), dtype="float64")
    if SOURCE_LINE in data.columns:
        line = pd.to_numeric(data[SOURCE_LINE]).astype("int64").to_numpy()
    else:
        line = np.arange(1, n + 1, dtype=np.int64)
    # The text columns stay pandas Series (Arrow-backed): going through .to_numpy() turned each into a
    # Python object array and .astype("string") back again (about 0.5 s at 1M rows).
    return pd.DataFrame(
        {
            MATERIAL: _text(data[MATERIAL]).reset_index(drop=True),
            WAREHOUSE: _text(data[WAREHOUSE]).reset_index(drop=True),
            LOT: lot.reset_index(drop=True),
            ON_HAND: pd.to_numeric(data[ON_HAND], errors="coerce").astype("float64").to_numpy(),
            RESERVED: reserved.to_numpy(),
            SOURCE_LINE: line,
        }
    ).astype({MATERIAL: "string", WAREHOUSE: "string", LOT: "string"})
