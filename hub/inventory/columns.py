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

from collections.abc import Mapping, Set
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
    # Columns are looked up by name instead of renaming the frame: a streamed file is normalised block
    # by block, and each rename copied the frame's index and columns.
    names = {column: column for column in frame.columns}
    names.update({new: old for old, new in (rename or {}).items() if old in frame.columns})
    missing = [c for c in (MATERIAL, WAREHOUSE, ON_HAND) if c not in names]
    if missing:
        have = [(rename or {}).get(str(column), column) for column in frame.columns]
        raise DataValidationError(
            f"{origin}: the inventory rows lack column(s) {missing}; they have {have}. "
            "Map them in the template's columns (material_code, warehouse_code, on_hand_qty).",
            context={"origin": origin, "missing": missing},
        )
    n = len(frame)

    def column(name: str) -> pd.Series:
        return frame[names[name]]

    lot = _text(column(LOT)).fillna("") if LOT in names else pd.Series([""] * n, dtype="string")
    if RESERVED in names:
        # Only a missing value means 0; text that is not a number stays NaN for validation to catch.
        raw_reserved = column(RESERVED)
        reserved = pd.to_numeric(raw_reserved, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        reserved = np.where(raw_reserved.notna().to_numpy(), reserved, 0.0)
    else:
        reserved = np.zeros(n)
    if SOURCE_LINE in names:
        line = pd.to_numeric(column(SOURCE_LINE)).astype("int64").to_numpy()
    else:
        line = np.arange(1, n + 1, dtype=np.int64)
    on_hand = pd.to_numeric(column(ON_HAND), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    # The text columns stay pandas Series (Arrow-backed): going through .to_numpy() turned each into a
    # Python object array and .astype("string") back again (about 0.5 s at 1M rows).
    return pd.DataFrame(
        {
            MATERIAL: _text(column(MATERIAL)).reset_index(drop=True),
            WAREHOUSE: _text(column(WAREHOUSE)).reset_index(drop=True),
            LOT: lot.reset_index(drop=True),
            ON_HAND: on_hand,
            RESERVED: reserved,
            SOURCE_LINE: line,
        }
    )


class PositionKeys:
    """A snapshot's (material, warehouse, lot) keys as integer codes into three dictionaries.

    Computed once per snapshot and shared by the steps that need the key: the duplicate check
    (:mod:`hub.inventory.validate`) and the in-process snapshot diff (:mod:`hub.inventory.diff`). The
    dictionaries are Arrow string arrays of distinct values (a million lots stay one Arrow buffer, not a
    million Python strings); a dictionary may hold values no row uses (the catalog's); a missing code
    is -1. ``on_hand`` and ``reserved`` are the quantities as the store keeps them (4 places).
    ``catalogs`` holds, for materials, warehouses and lots, the array whose values lead the dictionary
    (None: the codes were dictionary-encoded, not looked up): the catalog's (:func:`catalog_codes`) for
    materials and warehouses, a previous snapshot's lot dictionary for lots (:meth:`of`).
    """

    __slots__ = (
        "material", "warehouse", "lot", "materials", "warehouses", "lots", "on_hand", "reserved",
        "catalogs",
    )  # fmt: skip

    def __init__(
        self,
        material: np.ndarray,
        warehouse: np.ndarray,
        lot: np.ndarray,
        materials: pa.Array,
        warehouses: pa.Array,
        lots: pa.Array,
        on_hand: np.ndarray,
        reserved: np.ndarray,
        catalogs: tuple[pa.Array | None, pa.Array | None, pa.Array | None] = (None, None, None),
    ) -> None:
        self.material, self.warehouse, self.lot = material, warehouse, lot
        self.materials, self.warehouses, self.lots = materials, warehouses, lots
        self.on_hand, self.reserved = on_hand, reserved
        self.catalogs = catalogs

    @classmethod
    def of(
        cls,
        frame: pd.DataFrame,
        materials: Set[str] | None = None,
        warehouses: Set[str] | None = None,
        lots: pa.Array | None = None,
    ) -> PositionKeys:
        """Encode the key columns of a snapshot frame (row order kept).

        With the catalog's ``materials`` and ``warehouses`` their codes are looked up in it instead of
        encoded (a hash lookup in 50k codes instead of building a table of the values: about half the
        time at 1M rows); codes the catalog lacks get codes after its own. ``lots`` is the lot
        dictionary of the snapshot this one is diffed against: lots are looked up in it the same way,
        so that the diff needs no second hash pass over a million lots (it was 0.25 s of the pull's
        last half-second). It is not used when it holds more than twice the frame's rows: lots that
        left the stock would otherwise pile up from one snapshot to the next.
        """
        m, ms = encode(frame[MATERIAL], materials)
        w, ws = encode(frame[WAREHOUSE], warehouses)
        base = lots if lots is not None and len(lots) <= 2 * max(len(frame), 1) else None
        lot, ls = encode(frame[LOT], None) if base is None else encode_in(_arrow_text(frame[LOT]), base)
        catalogs = (
            None if materials is None else catalog_codes(materials),
            None if warehouses is None else catalog_codes(warehouses),
            base,
        )
        return cls(
            m, w, lot, ms, ws, ls, quantities(frame[ON_HAND]), quantities(frame[RESERVED]), catalogs
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.material)

    def take(self, rows: np.ndarray) -> PositionKeys:
        """The keys of the selected rows (a boolean mask or positions); dictionaries are shared."""
        return PositionKeys(
            self.material[rows], self.warehouse[rows], self.lot[rows],
            self.materials, self.warehouses, self.lots,
            self.on_hand[rows], self.reserved[rows], self.catalogs,
        )  # fmt: skip

    def combined(self) -> np.ndarray | None:
        """One int64 per row identifying its whole key (-1 where a part is missing); None on overflow."""
        n_w, n_l = max(len(self.warehouses), 1), max(len(self.lots), 1)
        if max(len(self.materials), 1) * n_w * n_l >= 1 << 62:
            return None
        key = (self.material * n_w + self.warehouse) * n_l + self.lot
        key[(self.material < 0) | (self.warehouse < 0) | (self.lot < 0)] = -1
        return key

    def duplicated(self) -> np.ndarray:
        """True for every row whose complete key appears more than once (all copies)."""
        # Only rows whose lot code occurs more than once can repeat a key: a count per code (no hashing)
        # leaves those; with lot numbers that are mostly distinct, the hash pass below gets few rows.
        repeats = np.bincount(self.lot[self.lot >= 0], minlength=len(self.lots)) > 1
        rows = np.flatnonzero(repeats[self.lot] & (self.lot >= 0))
        duplicated = np.zeros(len(self), dtype=bool)
        if not len(rows):
            return duplicated
        if len(rows) < len(self):
            duplicated[rows] = self.take(rows).duplicated()
            return duplicated
        key = self.combined()
        if key is None:  # pragma: no cover - needs ~2^62 distinct combinations
            frame = pd.DataFrame({"m": self.material, "w": self.warehouse, "l": self.lot})
            return frame.duplicated(keep=False).to_numpy() & (self.material >= 0)
        return pd.Series(key).duplicated(keep=False).to_numpy() & (key >= 0)


_CATALOGS: dict[int, tuple[Set[str], pa.Array]] = {}


def catalog_codes(codes: Set[str]) -> pa.Array:
    """A catalog's codes as an Arrow array in one fixed order, kept for the last few sets (a streamed
    snapshot asks per block; the codes are then positions in this order)."""
    kept = _CATALOGS.get(id(codes))
    if kept is not None and kept[0] is codes:
        return kept[1]
    array = pa.array(list(codes), type=pa.string())
    if len(_CATALOGS) >= 4:
        _CATALOGS.pop(next(iter(_CATALOGS)))
    _CATALOGS[id(codes)] = (codes, array)  # the set is referenced, so its id is not reused meanwhile
    return array


def _arrow_text(values: pd.Series) -> pa.Array:
    """A text column as one Arrow string array (pandas' Arrow-backed strings convert without a copy
    of the characters)."""
    array = pa.array(values, type=pa.string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _codes(indices: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow dictionary indices or lookup positions as int64, -1 where null."""
    return np.asarray(indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def encode(values: pd.Series, catalog: Set[str] | None) -> tuple[np.ndarray, pa.Array]:
    """Integer codes of ``values`` (-1: missing) and the dictionary they index (an Arrow string array).

    Arrow's dictionary encoding, not pandas' factorize: for a block-concatenated column pandas encodes
    chunk by chunk, unifies the dictionaries (a second hash pass) and makes a Python string of every
    distinct value; a million distinct lots cost about three times as much that way.
    """
    array = _arrow_text(values)
    if catalog is None:
        encoded = pc.dictionary_encode(array)
        return _codes(encoded.indices), encoded.dictionary
    return encode_in(array, catalog_codes(catalog))


def encode_in(array: pa.Array, known: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Codes of ``array`` as positions in ``known`` (distinct values), -1 where missing; values ``known``
    lacks get codes after its own. The dictionary returned is ``known`` itself when it lacked none,
    else ``known`` followed by those values."""
    if len(known) * 8 < len(array):  # a small dictionary (a catalog): a lookup table of it is cheap
        codes = lookup(array, known)
        outside = (codes < 0) & array.is_valid().to_numpy(zero_copy_only=False)
        if not outside.any():
            return codes, known
        extra = pc.dictionary_encode(array.filter(pa.array(outside)))
        codes[outside] = _codes(extra.indices) + len(known)
        return codes, pa.concat_arrays([known, extra.dictionary])
    # A large one (a previous snapshot's million lots): one encoding pass over both costs about 60% of
    # a lookup table of ``known`` probed by ``array``. Codes follow first appearance, so the distinct
    # values of ``known``, put first, keep their positions and the values it lacks come after them.
    if not len(array):
        return np.zeros(0, dtype=np.int64), known
    encoded = pc.dictionary_encode(pa.chunked_array([known, array], type=pa.string()))
    last = encoded.chunk(encoded.num_chunks - 1)  # every chunk shares the one dictionary
    indices = pa.chunked_array([chunk.indices for chunk in encoded.chunks]).slice(len(known))
    return _codes(indices), known if len(last.dictionary) == len(known) else last.dictionary


def lookup(values: pa.Array, dictionary: pa.Array) -> np.ndarray:
    """Each value's position in ``dictionary`` (distinct values), -1 where it is absent or missing."""
    return _codes(pc.index_in(values, value_set=dictionary))


def decode(dictionary: pa.Array, codes: np.ndarray) -> np.ndarray:
    """The values of ``codes`` (None for -1) as a Python object array."""
    taken = dictionary.take(pa.array(codes, mask=codes < 0))
    return np.asarray(taken.to_numpy(zero_copy_only=False), dtype=object)


def byte_ranks(uniques: pa.Array) -> np.ndarray:
    """Each dictionary entry's position in byte (code point) order."""
    order = np.asarray(pc.array_sort_indices(uniques), dtype=np.int64)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order), dtype=np.int64)
    return ranks


QTY_PLACES: Final = 4  # inventory_positions quantity columns are Numeric(18, 4)
QTY_LIMIT: Final = 1e14  # ... so a quantity rounded to 4 places must be below 10^14


def quantities(values: pd.Series) -> np.ndarray:
    """A quantity column as float64 rounded to the store's 4 places (what the loader writes)."""
    return np.round(values.to_numpy(dtype=np.float64), QTY_PLACES)
