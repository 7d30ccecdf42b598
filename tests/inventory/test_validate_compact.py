"""GX validates only the rows some rule may fail; the verdict is the same as over the whole frame."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hub.inventory import columns as c
from hub.inventory.validate import validate_snapshot


def _frame(n: int) -> pd.DataFrame:
    raw = pd.DataFrame(
        {
            c.MATERIAL: [f"M{i % 7}" for i in range(n)],
            c.WAREHOUSE: ["WH1"] * n,
            c.LOT: [f"L{i}" for i in range(n)],
            c.ON_HAND: np.arange(n, dtype=float),
            c.RESERVED: np.zeros(n),
        }
    )
    return c.normalize_snapshot_frame(raw)


def test_interleaved_bad_rows_keep_every_reason_and_good_rows_load() -> None:
    frame = _frame(40)
    frame.loc[3, c.ON_HAND] = -2.0
    frame.loc[3, c.MATERIAL] = "NOPE"  # two reasons on one row
    frame.loc[11, c.RESERVED] = np.nan
    frame.loc[17, [c.MATERIAL, c.LOT]] = ["M4", "L18"]  # line 19's position again: both held back
    frame.loc[25, c.WAREHOUSE] = "WH9"
    frame.loc[30, c.LOT] = "x" * 65
    checked = validate_snapshot(frame, known_materials=[f"M{i}" for i in range(7)], known_warehouses=["WH1"])

    reasons = {r.line: sorted((x["column"], x["value"]) for x in r.reasons) for r in checked.rejects}
    assert reasons == {
        4: [("material_code", "NOPE"), ("on_hand", "-2.0")],
        12: [("values_present", "reserved")],
        18: [("position_unique", "False")],
        19: [("position_unique", "False")],
        26: [("warehouse_code", "WH9")],
        31: [("codes_fit", "False")],
    }
    assert sorted(checked.accepted[c.SOURCE_LINE]) == [i for i in range(1, 41) if i not in reasons]
    assert checked.rows_read == 40


def test_clean_frame_still_validated_and_all_rows_accepted() -> None:
    frame = _frame(25)
    checked = validate_snapshot(frame, known_materials=[f"M{i}" for i in range(7)], known_warehouses=["WH1"])
    assert checked.rejects == ()
    assert list(checked.accepted[c.SOURCE_LINE]) == list(range(1, 26))
