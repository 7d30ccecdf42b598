"""Validation of an inventory snapshot: bad rows are held back, a bad snapshot is refused whole.

Row rules (Great Expectations through :func:`hub.quality.validate_frame`, one rule per column):

- ``on_hand`` and ``reserved`` are >= 0;
- ``material_code`` is a known material and ``warehouse_code`` a known warehouse (when the sets are
  given; a store without a catalog yet checks neither);
- material, warehouse and quantities are present and numeric (``values_present``), and the codes fit
  the store's columns (``codes_fit``);
- no (material, warehouse, lot) appears twice (``position_unique``). Every copy is held back: the hub
  cannot tell which one the ERP meant, and a missing position only makes promises more careful.

Rows the reader could not parse (:class:`connectors.filedrop.RowProblem`) join the rejects with
their line numbers, so ``rows_read == accepted + rejected`` always holds.

Snapshot rules (:func:`refusal_reason`): the snapshot is refused whole when it is empty or holds fewer
rows than its manifest promised (truncated), when its row count fell by more than
``SnapshotPolicy.max_shrink`` against the previous in-force snapshot of the same source, or when the
rejected share exceeds ``SnapshotPolicy.max_reject_share`` (default 1%, PERF-RELIABILITY B.4 #12).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hub.errors import ConfigError
from hub.inventory import columns as c
from hub.quality import Rule, validate_frame

SUITE = "inventory_snapshot"
_PRESENT = "values_present"
_UNIQUE = "position_unique"
_FITS = "codes_fit"
_QUANTITIES_FIT = "quantities_fit"
_MATERIAL_KNOWN = "material_known"
_WAREHOUSE_KNOWN = "warehouse_known"
# Boolean check column -> the frame column whose value a failure reports.
_VALUE_OF = {_MATERIAL_KNOWN: c.MATERIAL, _WAREHOUSE_KNOWN: c.WAREHOUSE}
# Column widths of inventory_positions: a longer code would fail the bulk load of the whole snapshot.
CODE_WIDTHS = {c.MATERIAL: 64, c.WAREHOUSE: 32, c.LOT: 64}


@dataclass(frozen=True)
class SnapshotPolicy:
    """When a snapshot is refused whole.

    Attributes:
        max_shrink: refuse when the row count fell by more than this share against the previous
            in-force snapshot of the same source (0.5 = refuse a snapshot with under half the rows).
        max_reject_share: refuse when more than this share of the rows read were rejected.
        min_rows: refuse a snapshot with fewer rows than this (an empty export is a failed export).
    """

    max_shrink: float = 0.5
    max_reject_share: float = 0.01
    min_rows: int = 1

    def __post_init__(self) -> None:
        for name in ("max_shrink", "max_reject_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(
                    f"inventory snapshot policy: {name}={value} must be a share between 0 and 1."
                )
        if self.min_rows < 0:
            raise ConfigError(f"inventory snapshot policy: min_rows={self.min_rows} must be >= 0.")


@dataclass(frozen=True)
class RowReject:
    """One row held back: its line in the source and its reasons (rule, column, reason, value)."""

    line: int
    reasons: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class ValidatedSnapshot:
    """The rows to load and the rows held back. ``rows_read`` counts both (plus unparsed rows)."""

    accepted: pd.DataFrame
    rejects: tuple[RowReject, ...]
    rows_read: int
    expected_rows: int | None = None
    keys: c.PositionKeys | None = None  # the accepted rows' keys, in their order (for load and diff)

    @property
    def rejected_count(self) -> int:
        """Rows held back (each counted once, whatever the number of its reasons)."""
        return len(self.rejects)

    @property
    def reject_share(self) -> float:
        """Rejected rows as a share of the rows read (0 for an empty snapshot)."""
        return self.rejected_count / self.rows_read if self.rows_read else 0.0


@dataclass(frozen=True)
class ParseProblem:
    """A row the reader could not turn into values (the shape of ``connectors.filedrop.RowProblem``)."""

    line: int
    column: str | None
    value: str | None
    reason: str


def _rules(known_materials: Set[str] | None, known_warehouses: Set[str] | None) -> list[Rule]:
    rules = [
        Rule("between", c.ON_HAND, "on_hand is negative", {"min": 0}),
        Rule("between", c.RESERVED, "reserved is negative", {"min": 0}),
        Rule("true", _PRESENT, "a required value is missing or not a number"),
        Rule("true", _FITS, f"a code is longer than the store allows {CODE_WIDTHS}"),
        Rule(
            "true",
            _QUANTITIES_FIT,
            f"a quantity is infinite or too large for the store (it holds less than {c.QTY_LIMIT:.0e})",
        ),
        Rule(
            "true",
            _UNIQUE,
            "the same (material, warehouse, lot) appears more than once; every copy held back",
        ),
    ]
    # Catalog membership is computed with pandas (isin) and asserted as a boolean column: a 50k-code
    # value set inside a GX expectation is re-serialised hundreds of times per run (30 s at 1M rows).
    if known_materials is not None:
        rules.append(Rule("true", _MATERIAL_KNOWN, "unknown material (not in the product catalog)"))
    if known_warehouses is not None:
        rules.append(Rule("true", _WAREHOUSE_KNOWN, "unknown warehouse"))
    return rules


def _missing_details(frame: pd.DataFrame, lines: list[int]) -> dict[int, str]:
    """For each line, the names of its missing values (only failing rows are looked at)."""
    rows = frame.loc[frame[c.SOURCE_LINE].isin(lines)]
    out: dict[int, str] = {}
    for record in rows.itertuples(index=False):
        values = record._asdict()
        missing = [
            name
            for name in (c.MATERIAL, c.WAREHOUSE, c.ON_HAND, c.RESERVED)
            if pd.isna(values[name]) or values[name] == ""
        ]
        out[int(values[c.SOURCE_LINE])] = ", ".join(missing)
    return out


def catalog_checks(
    frame: pd.DataFrame,
    materials: Set[str] | None,
    warehouses: Set[str] | None,
    keys: c.PositionKeys | None = None,
) -> dict[str, np.ndarray]:
    """Which rows name a material and a warehouse the catalog knows (a missing code passes here: it
    fails ``values_present``). Read off ``keys`` when they were encoded against these catalog sets
    (codes below the catalog's size are its own, see :meth:`~hub.inventory.columns.PositionKeys.of`):
    the lookup is not done twice (Arrow builds its hash set of the 50k catalog codes per lookup)."""
    checks: dict[str, np.ndarray] = {}
    for index, (name, column, catalog) in enumerate(
        ((_MATERIAL_KNOWN, c.MATERIAL, materials), (_WAREHOUSE_KNOWN, c.WAREHOUSE, warehouses))
    ):
        if catalog is None:
            continue
        own = c.catalog_codes(catalog)
        size = len(own)
        if keys is not None and keys.catalogs[index] is own:
            codes = keys.material if column == c.MATERIAL else keys.warehouse
        else:
            codes = c.encode(frame[column], catalog)[0]
        checks[name] = ((codes >= 0) & (codes < size)) | frame[column].isna().to_numpy()
    return checks


def row_checks(
    frame: pd.DataFrame, materials: Set[str] | None, warehouses: Set[str] | None
) -> dict[str, np.ndarray]:
    """The boolean checks of each row on its own (True = passes): all but the duplicate check.

    They need no other row, so a snapshot read in blocks can be checked block by block
    (:func:`validate_snapshot` takes the concatenation through ``checks``). Without catalog sets the
    catalog checks are left out (a caller adds them later with :func:`catalog_checks`).
    """
    material = frame[c.MATERIAL]
    warehouse = frame[c.WAREHOUSE]
    present = (
        material.notna().to_numpy()
        & (material.fillna("") != "").to_numpy()
        & warehouse.notna().to_numpy()
        & (warehouse.fillna("") != "").to_numpy()
        & frame[c.ON_HAND].notna().to_numpy()
        & frame[c.RESERVED].notna().to_numpy()
    )
    fits = np.ones(len(frame), dtype=bool)
    for name, width in CODE_WIDTHS.items():
        fits &= (frame[name].fillna("").str.len() <= width).to_numpy(dtype=bool)
    # A missing quantity passes here (it fails values_present); inf and >= 10^14 would fail the COPY.
    quantities_fit = np.ones(len(frame), dtype=bool)
    for name in (c.ON_HAND, c.RESERVED):
        quantities_fit &= ~(np.abs(c.quantities(frame[name])) >= c.QTY_LIMIT)
    checks = {_PRESENT: present, _FITS: fits, _QUANTITIES_FIT: quantities_fit}
    return checks | catalog_checks(frame, materials, warehouses)


def suspect_rows(frame: pd.DataFrame, checks: dict[str, np.ndarray]) -> np.ndarray:
    """Rows some rule of the suite may fail: a failed check or a negative quantity.

    Every other row passes the whole suite except, possibly, the duplicate check (which needs all rows).
    """
    suspect = (frame[c.ON_HAND].to_numpy() < 0) | (frame[c.RESERVED].to_numpy() < 0)
    for passed in checks.values():
        suspect |= ~passed
    return suspect


def _check_columns(
    frame: pd.DataFrame,
    keys: c.PositionKeys,
    materials: Set[str] | None,
    warehouses: Set[str] | None,
    checks: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The boolean check columns (True = the row passes), computed vectorised over the whole frame."""
    if checks is None:
        checks = row_checks(frame, None, None) | catalog_checks(frame, materials, warehouses, keys)
    else:
        checks = dict(checks)
    # A row without a complete key cannot be a duplicate of anything meaningful: it fails on presence.
    # On the factorised key (one int64 per row): frame.duplicated over three string columns cost
    # ~0.45 s at 1M rows, and the codes are needed again for the catalog checks and the diff.
    checks[_UNIQUE] = ~keys.duplicated() | ~checks[_PRESENT]
    return checks


def _suspects(frame: pd.DataFrame, checks: dict[str, np.ndarray]) -> pd.DataFrame:
    """The frame GX validates: every row some rule may fail, with its check columns.

    GX stays the engine of record (it decides every failure and its reason), but rows that pass every
    pre-computed check and hold no negative quantity cannot fail any rule of the suite, so they are
    left out: GX over 1M rows cost ~3 s for what pandas had already computed. (A NaN quantity is not
    "negative" for either side: GX's between ignores nulls, and it fails ``values_present`` instead.)
    When no row is suspect, the first row still goes through, so the suite runs on every snapshot.
    """
    suspect = suspect_rows(frame, checks)
    if not suspect.any() and len(frame):
        suspect[0] = True
    compact = frame.loc[suspect].copy()
    for name, passed in checks.items():
        compact[name] = passed[suspect]
    return compact.reset_index(drop=True)


def add_parse_reasons(reasons: dict[int, list[dict[str, str]]], parse_problems: Iterable[Any]) -> None:
    """Add the rows the reader already rejected (objects with ``line``, ``column``, ``value``,
    ``reason``) to ``reasons`` (quarantine reasons by line), as rule ``parse``."""
    for problem in parse_problems:
        reasons.setdefault(int(problem.line), []).append(
            {
                "rule": "parse",
                "column": str(problem.column or ""),
                "reason": str(problem.reason),
                "value": "" if problem.value is None else str(problem.value),
            }
        )


def validate_snapshot(
    frame: pd.DataFrame,
    *,
    known_materials: Iterable[str] | None = None,
    known_warehouses: Iterable[str] | None = None,
    parse_problems: Sequence[Any] = (),
    rows_read: int | None = None,
    expected_rows: int | None = None,
    keys: c.PositionKeys | None = None,
    checks: dict[str, np.ndarray] | None = None,
) -> ValidatedSnapshot:
    """Check every row of a snapshot frame (see :mod:`hub.inventory.columns`).

    Args:
        frame: the parsed rows, already normalised (:func:`~hub.inventory.columns.normalize_snapshot_frame`).
        known_materials, known_warehouses: the codes the store knows; ``None`` skips that check.
        parse_problems: rows the reader already rejected (objects with ``line``, ``column``, ``value``,
            ``reason``, e.g. :class:`connectors.filedrop.RowProblem`); they count as rejected.
        rows_read: data rows in the source; defaults to ``len(frame)`` + the distinct problem lines.
        expected_rows: rows the source promised (manifest / trailer), kept for :func:`refusal_reason`.
        keys, checks: the frame's :class:`~hub.inventory.columns.PositionKeys` and :func:`row_checks`
            when the caller computed them already (a snapshot read in blocks); computed here otherwise.
    """
    materials = None if known_materials is None else frozenset(known_materials)
    warehouses = None if known_warehouses is None else frozenset(known_warehouses)
    keys = (
        keys
        if keys is not None and len(keys) == len(frame)
        else c.PositionKeys.of(frame, materials, warehouses)
    )
    checks = _check_columns(frame, keys, materials, warehouses, checks)
    outcome = validate_frame(
        _suspects(frame, checks), _rules(materials, warehouses), id_column=c.SOURCE_LINE, suite=SUITE
    )

    absent = [int(line) for line, fs in outcome.failures.items() if any(f["column"] == _PRESENT for f in fs)]
    details = _missing_details(frame, absent) if absent else {}
    unknown = [
        int(line) for line, fs in outcome.failures.items() if any(f["column"] in _VALUE_OF for f in fs)
    ]
    values = frame.loc[frame[c.SOURCE_LINE].isin(unknown)].set_index(c.SOURCE_LINE) if unknown else None
    reasons: dict[int, list[dict[str, str]]] = {}
    for line, failures in outcome.failures.items():
        items = []
        for failure in failures:
            item = dict(failure)
            if item["column"] == _PRESENT:
                item["value"] = details.get(int(line), "")
                item["reason"] = f"missing or not a number: {item['value']}"
            elif item["column"] in _VALUE_OF and values is not None:
                item["column"] = _VALUE_OF[item["column"]]
                item["value"] = str(values.at[int(line), item["column"]])
            items.append(item)
        reasons[int(line)] = items
    add_parse_reasons(reasons, parse_problems)
    bad_lines = np.fromiter(outcome.failures.keys(), dtype=np.int64, count=len(outcome.failures))
    keep = ~frame[c.SOURCE_LINE].isin(bad_lines).to_numpy()
    if keep.all():  # the usual case: no copy of a million rows
        accepted, accepted_keys = frame.reset_index(drop=True), keys
    else:
        accepted, accepted_keys = frame.loc[keep].reset_index(drop=True), keys.take(keep)
    rejects = tuple(RowReject(line, tuple(reasons[line])) for line in sorted(reasons))
    if rows_read is None:
        rows_read = len(frame) + len({int(p.line) for p in parse_problems})
    return ValidatedSnapshot(accepted, rejects, rows_read, expected_rows, accepted_keys)


def refusal_reason(
    snapshot: ValidatedSnapshot, *, previous_rows: int | None, policy: SnapshotPolicy, origin: str
) -> str | None:
    """Why ``snapshot`` must be refused whole, or None when it may be loaded.

    ``previous_rows`` is the row count (loaded + rejected) of the source's in-force snapshot, if any.
    """
    read = snapshot.rows_read
    if snapshot.expected_rows is not None and read < snapshot.expected_rows:
        return (
            f"{origin}: truncated: {read} rows read but the source promised {snapshot.expected_rows}. "
            "Ask the ERP side to re-export; the previous snapshot stays in force."
        )
    if read < policy.min_rows:
        return (
            f"{origin}: truncated or empty: {read} rows read (at least {policy.min_rows} expected); an empty "
            "export is treated as a failed one. The previous snapshot stays in force."
        )
    if previous_rows and read < previous_rows * (1 - policy.max_shrink):
        fell = 1 - read / previous_rows
        return (
            f"{origin}: the snapshot shrank from {previous_rows} to {read} rows ({fell:.0%} fewer; "
            f"the limit is {policy.max_shrink:.0%}). Check the ERP export; if the drop is real, raise "
            "max_shrink for one run. The previous snapshot stays in force."
        )
    if snapshot.reject_share > policy.max_reject_share:
        return (
            f"{origin}: {snapshot.rejected_count} of {read} rows rejected ({snapshot.reject_share:.2%}; "
            f"the limit is {policy.max_reject_share:.2%}). See the quarantine for each row's reason; the "
            "previous snapshot stays in force."
        )
    return None


__all__ = [
    "ParseProblem",
    "RowReject",
    "SnapshotPolicy",
    "ValidatedSnapshot",
    "refusal_reason",
    "row_checks",
    "suspect_rows",
    "validate_snapshot",
]
