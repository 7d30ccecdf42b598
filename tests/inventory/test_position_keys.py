"""PositionKeys: catalog-coded keys find exactly what factorised keys find; the duplicate check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hub.inventory import columns as c


def _frame(materials: list[str | None], warehouses: list[str | None], lots: list[str | None]) -> pd.DataFrame:
    n = len(materials)
    return c.normalize_snapshot_frame(
        pd.DataFrame(
            {
                c.MATERIAL: materials,
                c.WAREHOUSE: warehouses,
                c.LOT: lots,
                c.ON_HAND: np.arange(n, dtype=float),
                c.RESERVED: np.zeros(n),
            }
        )
    )


def _decoded(codes: np.ndarray, dictionary: pa.Array) -> list[object]:
    return [None if code < 0 else dictionary[int(code)].as_py() for code in codes]


def test_catalog_codes_decode_to_the_values_and_unknown_codes_get_their_own() -> None:
    frame = _frame(
        ["M1", "M2", "X9", None, "M1", "X9", ""],
        ["W1", "W1", "W2", "W1", "W9", "W2", "W1"],
        ["a", "b", "c", "d", "a", "c", ""],
    )
    keys = c.PositionKeys.of(frame, frozenset({"M1", "M2", "M3"}), frozenset({"W1", "W2"}))
    assert _decoded(keys.material, keys.materials) == ["M1", "M2", "X9", None, "M1", "X9", ""]
    assert _decoded(keys.warehouse, keys.warehouses) == ["W1", "W1", "W2", "W1", "W9", "W2", "W1"]
    # Codes outside the catalog come after its three entries, one per distinct value.
    assert keys.material[2] == keys.material[5] >= 3
    assert keys.material[6] >= 3 and keys.material[6] != keys.material[2]
    assert keys.warehouse[4] >= 2
    for dictionary in (keys.materials, keys.warehouses, keys.lots):
        assert len(pc.unique(dictionary)) == len(dictionary)
    assert c.decode(keys.lots, keys.lot).tolist() == ["a", "b", "c", "d", "a", "c", ""]
    assert c.decode(keys.materials, np.array([0, -1])).tolist()[1] is None


def test_encode_in_keeps_known_positions_for_a_small_and_a_large_dictionary() -> None:
    # A dictionary much smaller than the values is looked up; a large one is encoded in one pass with
    # the values. Both must give each known value its position and the others codes after them.
    values = pa.array(["k2", "n1", None, "k0", "n1", "n2", "k2", "", "k1"] * 3)
    expected_new = ["n1", "n2", ""]
    for known in (pa.array(["k0", "k1", "k2"]), pa.array([f"k{i}" for i in range(40)])):
        codes, dictionary = c.encode_in(values, known)
        assert _decoded(codes, dictionary) == values.to_pylist()
        assert dictionary.slice(0, len(known)).equals(known)
        assert dictionary.slice(len(known)).to_pylist() == expected_new  # first appearance order
        assert codes.tolist()[:4] == [2, len(known), -1, 0]
        same, unchanged = c.encode_in(pa.array(["k1", None, "k0"]), known)
        assert same.tolist() == [1, -1, 0] and unchanged is known
    empty, dictionary = c.encode_in(pa.array([], type=pa.string()), pa.array(["k0"]))
    assert len(empty) == 0 and dictionary.to_pylist() == ["k0"]


def test_duplicates_match_pandas_with_and_without_the_catalog() -> None:
    rng = np.random.default_rng(7)
    n = 5_000
    materials = [f"M{i}" for i in rng.integers(0, 40, n)]
    warehouses = [f"W{i}" for i in rng.integers(0, 3, n)]
    lots = [f"L{i}" for i in rng.integers(0, 2_000, n)]  # many lots repeat, some keys repeat whole
    for i in rng.choice(n, 50, replace=False):
        materials[i] = None  # an incomplete key is never a duplicate
    frame = _frame(materials, warehouses, lots)
    complete = frame[c.MATERIAL].notna().to_numpy()
    expected = frame[[c.MATERIAL, c.WAREHOUSE, c.LOT]].duplicated(keep=False).to_numpy() & complete
    assert expected.sum() > 0
    catalog = frozenset(f"M{i}" for i in range(30))  # a quarter of the materials are unknown
    for keys in (c.PositionKeys.of(frame), c.PositionKeys.of(frame, catalog, frozenset({"W0", "W1", "W2"}))):
        np.testing.assert_array_equal(keys.duplicated(), expected)


def test_distinct_lots_need_no_hash_pass_and_find_nothing() -> None:
    frame = _frame(["M1", "M1", "M2"], ["W1", "W1", "W1"], ["a", "b", "c"])
    assert not c.PositionKeys.of(frame).duplicated().any()
    repeated = _frame(["M1", "M1", "M2", "M1"], ["W1", "W1", "W1", "W2"], ["a", "a", "a", "a"])
    assert c.PositionKeys.of(repeated).duplicated().tolist() == [True, True, False, False]


def test_lots_coded_against_the_previous_dictionary_diff_as_when_coded_afresh() -> None:
    from hub.inventory.diff import diff_keys

    old = c.PositionKeys.of(_frame(["M1", "M1", "M2", "M2"], ["W1"] * 4, ["a", "b", "c", ""]))
    new_frame = _frame(["M1", "M2", "M2", "M3", "M1"], ["W1"] * 5, ["b", "c", "z", "a", ""])
    against = c.PositionKeys.of(new_frame, lots=old.lots)
    afresh = c.PositionKeys.of(new_frame)
    assert against.catalogs[2] is old.lots and afresh.catalogs[2] is None
    assert c.decode(against.lots, against.lot).tolist() == ["b", "c", "z", "a", ""]
    # The old dictionary leads (its codes are kept); the one lot it lacks comes after it.
    assert against.lots.to_pylist() == [*old.lots.to_pylist(), "z"]
    assert against.lot[2] == len(old.lots)

    expected = {
        "disappeared": [("M1", "W1", "a"), ("M2", "W1", "")],
        "appeared": [("M1", "W1", ""), ("M2", "W1", "z"), ("M3", "W1", "a")],
        "changed": [("M1", "W1", "b"), ("M2", "W1", "c")],  # on_hand 1 -> 0 and 2 -> 1
    }
    for keys in (against, afresh):
        found = diff_keys(1, old, 2, keys)
        assert found is not None
        for name, rows in expected.items():
            assert [tuple(r) for r in getattr(found, name).iloc[:, :3].values] == rows, name
        assert (found.disappeared_count, found.appeared_count, found.changed_count) == (2, 3, 2)

    # A previous dictionary more than twice the rows is not used: stale lots would pile up.
    few = c.PositionKeys.of(_frame(["M1"], ["W1"], ["b"]), lots=old.lots)
    assert few.catalogs[2] is None and few.lots.to_pylist() == ["b"]
