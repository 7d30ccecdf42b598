"""The bulk path for invoices and their lines: no per-row round trips (PERF P3, P7).

A batch arrives as two pandas DataFrames (:class:`InvoiceFrames`) whose amounts are exact scaled
integers, so every rule can be checked with numpy before anything is written:

* ``invoices``: ``number``, ``invoice_number`` (None for drafts), ``customer_id``, ``order_id`` (nullable),
  ``invoice_type``, ``status``, ``issue_date`` (date / datetime64, nullable), ``total_net_fen``,
  ``total_tax_fen``, ``total_gross_fen`` (yuan x 100, int64).
* ``lines``: ``number`` (the invoice's), ``line_no``, ``product_id``, ``order_line_id`` (nullable),
  ``quantity_e4``, ``unit_price_e4``, ``tax_rate_e4`` (value x 10,000: 13 % is 1300), ``net_amount_fen``,
  ``tax_amount_fen``.

:func:`frames_from_docs` builds them from :class:`InvoiceDoc` objects with ``Decimal`` amounts.

:func:`load_invoices` enforces the ORM path's rules (:mod:`crm_core.invariants`) set-wise, then in one
transaction on the engine's raw DBAPI connection: stages the batch in TEMP tables (PostgreSQL
``COPY FROM STDIN``; SQLite one ``executemany``), drops unchanged documents from the stage (same
``row_hash``), and merges the rest with set-based statements (``INSERT ... SELECT ... ON CONFLICT (number)
DO UPDATE ... WHERE row_hash IS DISTINCT FROM excluded.row_hash``; lines of changed invoices are deleted
and re-inserted). It writes the same outbox events as the ORM path: ``invoice.issued`` when an invoice
becomes issued (new, or draft -> issued) and ``invoice.changed`` when an issued invoice leaves that state.
The number of statements is constant, whatever the number of rows.

``row_hash`` is defined once, by :func:`canonical_invoice_text`; :func:`invoice_row_hash` (documents),
:func:`row_hash_of_invoice` (ORM objects) and the vectorised bulk path all produce exactly that text.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

from crm_core.invoice_hash import (  # noqa: F401  (re-exported: the bulk path's public API)
    _HASH_VERSION,
    _MAX_SHOWN,
    _RS,
    _US,
    InvoiceBatchRefused,
    InvoiceDoc,
    InvoiceLineDoc,
    InvoiceProblem,
    _doc_row,
    _fixed,
    _half_up_div,
    _header_fields,
    _line_amounts,
    _line_fields,
    _opt,
    _scaled,
    _sha256,
    canonical_invoice_text,
    invoice_row_hash,
    row_hash_of_invoice,
)
from crm_core.models.invoices import INVOICE_STATUSES, INVOICE_TRANSITIONS, INVOICE_TYPES

if TYPE_CHECKING:
    pass

__all__ = [
    "INVOICE_COLUMNS",
    "LINE_COLUMNS",
    "BulkLoadResult",
    "InvoiceBatchRefused",
    "InvoiceDoc",
    "InvoiceFrames",
    "InvoiceLineDoc",
    "InvoiceProblem",
    "canonical_invoice_text",
    "compute_row_hashes",
    "frames_from_docs",
    "invoice_row_hash",
    "line_amounts_fen",
    "load_invoices",
    "row_hash_of_invoice",
    "validate_frames",
]

INVOICE_COLUMNS = (
    "number",
    "invoice_number",
    "customer_id",
    "order_id",
    "invoice_type",
    "status",
    "issue_date",
    "total_net_fen",
    "total_tax_fen",
    "total_gross_fen",
)
LINE_COLUMNS = (
    "number",
    "line_no",
    "product_id",
    "order_line_id",
    "quantity_e4",
    "unit_price_e4",
    "tax_rate_e4",
    "net_amount_fen",
    "tax_amount_fen",
)
VAT_RATES_E4 = (1300, 900, 600, 300, 0)
# Statuses a brand-new invoice may have (the ORM refuses others; later states come by transition).
NEW_STATUSES = ("draft", "issued")
# Fields an issued / red-letter / voided invoice can never change (crm_core.invariants._check_invoice).
IMMUTABLE_ONCE_ISSUED = (
    "customer_id",
    "issue_date",
    "invoice_number",
    "total_net",
    "total_tax",
    "total_gross",
)

_MISSING = -(2**62)  # stands for a missing line amount: never equals a computed one


# --- frames ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceFrames:
    """A batch of invoices and their lines in the bulk schema (see the module docstring)."""

    invoices: pd.DataFrame
    lines: pd.DataFrame

    def __len__(self) -> int:
        return len(self.invoices)


def frames_from_docs(docs: Iterable[InvoiceDoc]) -> InvoiceFrames:
    """Build the bulk frames from Decimal documents (amounts must not exceed their places)."""
    invoices: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for doc in docs:
        invoice, doc_lines = _doc_row(doc)
        invoices.append(invoice)
        lines.extend(doc_lines)
    inv = pd.DataFrame(invoices, columns=list(INVOICE_COLUMNS))
    ln = pd.DataFrame(lines, columns=list(LINE_COLUMNS))
    for frame, col in ((inv, "order_id"), (ln, "order_line_id")):
        frame[col] = frame[col].astype("Int64")
    inv["issue_date"] = pd.to_datetime(inv["issue_date"])
    return InvoiceFrames(inv, ln)


# --- preparation: frames -> typed arrays ----------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"bulk invoice load: the {name} frame lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(columns)} (see crm_core.bulk)"
        )


def _str_array(series: pd.Series) -> pa.Array:
    """A text column as an Arrow string array (None / NaN become null); cheap for Arrow-backed columns."""
    array = pa.array(series, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.string())


def _int_array(series: pd.Series) -> pa.Array:
    return pa.Array.from_pandas(series.astype("Int64"))


def _date_array(series: pd.Series) -> pa.Array:
    values = pd.to_datetime(series).to_numpy(dtype="datetime64[D]")
    return pa.array(values, pa.date32(), mask=np.isnat(values))


def _fixed_text(values: np.ndarray, places: int) -> pa.Array:
    """Vectorised :func:`_fixed` (same text, exact: integer arithmetic only)."""
    scale = 10**places
    absolute = np.abs(values)
    whole = pa.array(absolute // scale).cast(pa.string())
    # scale + fraction always has places + 1 digits; dropping the leading "1" zero-pads the fraction.
    frac = pc.utf8_slice_codeunits(pa.array(absolute % scale + scale).cast(pa.string()), 1)
    text = pc.binary_join_element_wise(whole, frac, ".")
    negative = values < 0
    if negative.any():
        text = pc.if_else(pa.array(negative), pc.binary_join_element_wise("-", text, ""), text)
    return text


_PLACES = {
    "total_net_fen": 2,
    "total_tax_fen": 2,
    "total_gross_fen": 2,
    "quantity_e4": 4,
    "unit_price_e4": 4,
    "tax_rate_e4": 4,
    "net_amount_fen": 2,
    "tax_amount_fen": 2,
}


@dataclass
class _Prepared:
    """The batch as typed arrays, lines sorted by (invoice, line_no), plus the text used for hashing."""

    n: int
    inv: dict[str, pa.Array]
    lines: dict[str, pa.Array]
    fen: dict[str, np.ndarray]  # invoice totals
    line_ints: dict[str, np.ndarray]
    line_pos: np.ndarray  # invoice index of each (sorted) line
    offsets: np.ndarray  # lines of invoice i are offsets[i]:offsets[i+1]
    problems: list[InvoiceProblem] = field(default_factory=list)
    header_cols: list[pa.Array] | None = None
    row_hashes: list[str] | None = None
    _numbers: list[str] | None = None
    _text: dict[str, pa.Array] = field(default_factory=dict)

    @property
    def numbers(self) -> list[str]:
        """Invoice numbers as Python strings (built on first use: messages and checks only)."""
        if self._numbers is None:
            self._numbers = [v or "" for v in self.inv["number"].to_pylist()]
        return self._numbers

    def text(self, column: str) -> pa.Array:
        """A scaled-integer column as fixed-point text (computed once, shared by hash and staging)."""
        if column not in self._text:
            values = self.fen[column] if column in self.fen else self.line_ints[column]
            self._text[column] = _fixed_text(values, _PLACES[column])
        return self._text[column]


def _prepare(frames: InvoiceFrames) -> _Prepared:
    _require(frames.invoices, INVOICE_COLUMNS, "invoices")
    _require(frames.lines, LINE_COLUMNS, "lines")
    inv_df = frames.invoices.reset_index(drop=True)
    ln_df = frames.lines.reset_index(drop=True)
    problems: list[InvoiceProblem] = []

    inv_numbers = _str_array(inv_df["number"])
    n = len(inv_numbers)
    if len(pc.unique(inv_numbers)) != n:
        counts = pc.value_counts(inv_numbers)
        dups = sorted(
            str(v)
            for v, c in zip(
                counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
            )
            if c > 1
        )
        raise InvoiceBatchRefused(
            [InvoiceProblem(d, "duplicate_number", "appears more than once in the batch") for d in dups]
        )
    lengths = pc.fill_null(pc.utf8_length(inv_numbers), 0).to_numpy(zero_copy_only=False)
    bad_number = np.flatnonzero((lengths == 0) | (lengths > 32))

    fen = {}
    for col in ("total_net_fen", "total_tax_fen", "total_gross_fen"):
        series = inv_df[col]
        missing = series.isna().to_numpy()
        fen[col] = series.fillna(0).to_numpy(dtype=np.int64)
        if missing.any():
            fen[col + "_missing"] = missing

    line_numbers = _str_array(ln_df["number"])
    pos = pc.fill_null(pc.index_in(line_numbers, value_set=inv_numbers), -1).to_numpy(zero_copy_only=False)
    orphan = pos < 0
    keep = ~orphan
    line_ints = {}
    missing_cols = {}
    for col in ("line_no", "product_id", "quantity_e4", "unit_price_e4", "tax_rate_e4"):
        series = ln_df[col]
        missing = series.isna().to_numpy()
        if missing.any():
            missing_cols[col] = missing
        line_ints[col] = series.fillna(0).to_numpy(dtype=np.int64)
    for col in ("net_amount_fen", "tax_amount_fen"):
        line_ints[col] = ln_df[col].fillna(_MISSING).to_numpy(dtype=np.int64)  # missing never matches

    order = np.lexsort((line_ints["line_no"], np.where(keep, pos, -1)))
    order = order[keep[order]]
    pos_sorted = pos[order]
    sorted_ints = {k: v[order] for k, v in line_ints.items()}
    counts = np.bincount(pos_sorted, minlength=n)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    take = pa.array(order)
    prep = _Prepared(
        n=n,
        inv={
            "number": inv_numbers,
            "invoice_number": _str_array(inv_df["invoice_number"]),
            "customer_id": _int_array(inv_df["customer_id"]),
            "order_id": _int_array(inv_df["order_id"]),
            "invoice_type": _str_array(inv_df["invoice_type"]),
            "status": _str_array(inv_df["status"]),
            "issue_date": _date_array(inv_df["issue_date"]),
        },
        lines={
            "number": line_numbers.take(take),
            "order_line_id": _int_array(ln_df["order_line_id"]).take(take),
        },
        fen=fen,
        line_ints=sorted_ints,
        line_pos=pos_sorted,
        offsets=offsets,
    )

    # Problems found while shaping the batch (messages need the numbers, so only built when there are any).
    numbers = prep.numbers if (bad_number.size or orphan.any() or missing_cols or len(fen) > 3) else []
    for i in bad_number:
        problems.append(
            InvoiceProblem(numbers[i] or f"row {i}", "bad_number", "number must be 1-32 characters")
        )
    for col in ("total_net_fen", "total_tax_fen", "total_gross_fen"):
        for i in np.flatnonzero(fen.pop(col + "_missing", np.zeros(0, dtype=bool))):
            problems.append(InvoiceProblem(numbers[i], "missing_total", f"{col[:-4]} is missing"))
    if orphan.any():
        raw_numbers = line_numbers.to_pylist()
        for number in sorted({raw_numbers[i] or "" for i in np.flatnonzero(orphan)}):
            problems.append(
                InvoiceProblem(number, "orphan_lines", "lines given for an invoice not in the batch")
            )
    for col, missing in missing_cols.items():
        for i in np.flatnonzero(missing & keep):
            problems.append(InvoiceProblem(numbers[pos[i]], "missing_value", f"a line has no {col}"))
    if len(order) > 1:
        li = sorted_ints["line_no"]
        dup_line = (pos_sorted[1:] == pos_sorted[:-1]) & (li[1:] == li[:-1])
        for i in np.flatnonzero(dup_line) + 1:
            problems.append(
                InvoiceProblem(prep.numbers[pos_sorted[i]], "duplicate_line", f"line_no {li[i]} twice")
            )
    prep.problems = problems
    return prep


# --- validation (same rules as crm_core.invariants, set-wise) -------------------------------------


def line_amounts_fen(q: np.ndarray, p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Net and tax (fen) per line from scaled quantity, unit price and rate, half up to the cent.

    Vectorised; rows whose product could overflow int64 are computed with Python integers.
    """
    big = (np.abs(q).astype(np.float64) * np.abs(p).astype(np.float64)) > 4e18
    qs, ps = np.where(big, 0, q), np.where(big, 0, p)
    prod = qs * ps
    net = np.sign(prod) * ((np.abs(prod) * 2 + 1_000_000) // 2_000_000)
    tax_prod = net * r
    tax = np.sign(tax_prod) * ((np.abs(tax_prod) * 2 + 10_000) // 20_000)
    for i in np.flatnonzero(big):
        net[i], tax[i] = _line_amounts(int(q[i]), int(p[i]), int(r[i]))
    return net, tax


def _validate(prep: _Prepared) -> list[InvoiceProblem]:
    problems = list(prep.problems)
    numbers = prep.numbers
    status = prep.inv["status"]
    inv_type = prep.inv["invoice_type"]

    def flags(array: pa.Array) -> np.ndarray:
        return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)

    for i in np.flatnonzero(~flags(pc.is_in(status, value_set=pa.array(INVOICE_STATUSES)))):
        problems.append(
            InvoiceProblem(
                numbers[i], "unknown_status", f"status {status[i].as_py()!r}; use one of {INVOICE_STATUSES}"
            )
        )
    for i in np.flatnonzero(~flags(pc.is_in(inv_type, value_set=pa.array(INVOICE_TYPES)))):
        problems.append(
            InvoiceProblem(
                numbers[i],
                "unknown_type",
                f"invoice_type {inv_type[i].as_py()!r}; use one of {INVOICE_TYPES}",
            )
        )
    for i in np.flatnonzero(flags(pc.is_null(prep.inv["customer_id"]))):
        problems.append(InvoiceProblem(numbers[i], "missing_customer", "customer_id is missing"))
    issued = flags(pc.equal(status, "issued"))
    no_number = flags(pc.is_null(prep.inv["invoice_number"]))
    no_date = flags(pc.is_null(prep.inv["issue_date"]))
    line_count = np.diff(prep.offsets)
    for i in np.flatnonzero(issued & (no_number | no_date | (line_count == 0))):
        problems.append(
            InvoiceProblem(
                numbers[i],
                "issued_incomplete",
                "an issued invoice needs lines, an invoice number (发票号码) and an issue date",
            )
        )
    given = pc.drop_null(prep.inv["invoice_number"])
    inv_numbers = prep.inv["invoice_number"].to_pylist() if len(pc.unique(given)) != len(given) else []
    seen: dict[str, str] = {}
    for k, value in enumerate(inv_numbers):
        if value is None:
            continue
        if value in seen:
            problems.append(
                InvoiceProblem(
                    numbers[k], "duplicate_invoice_number", f"发票号码 {value} also on {seen[value]}"
                )
            )
        else:
            seen[value] = numbers[k]

    li = prep.line_ints
    pos = prep.line_pos
    bad_rate = ~np.isin(li["tax_rate_e4"], VAT_RATES_E4)
    for i in np.flatnonzero(bad_rate):
        problems.append(
            InvoiceProblem(
                numbers[pos[i]],
                "vat_rate",
                f"line {li['line_no'][i]}: tax rate {_fixed(int(li['tax_rate_e4'][i]), 4)} "
                "is not a VAT rate; use 0.13, 0.09, 0.06, 0.03 or 0",
            )
        )
    for i in np.flatnonzero(li["unit_price_e4"] < 0):
        problems.append(
            InvoiceProblem(
                numbers[pos[i]], "negative_price", f"line {li['line_no'][i]}: unit price is negative"
            )
        )
    net, tax = line_amounts_fen(li["quantity_e4"], li["unit_price_e4"], li["tax_rate_e4"])
    for col, expected in (("net_amount_fen", net), ("tax_amount_fen", tax)):
        for i in np.flatnonzero(li[col] != expected):
            given = "missing" if li[col][i] == _MISSING else _fixed(int(li[col][i]), 2)
            problems.append(
                InvoiceProblem(
                    numbers[pos[i]],
                    "line_amount",
                    f"line {li['line_no'][i]}: {col[:-4]} {given} differs from the computed "
                    f"{_fixed(int(expected[i]), 2)} (net = quantity x unit price, tax = net x rate, "
                    "each rounded half up to the cent)",
                )
            )
    net_sum = np.zeros(prep.n, dtype=np.int64)
    tax_sum = np.zeros(prep.n, dtype=np.int64)
    np.add.at(net_sum, pos, net)
    np.add.at(tax_sum, pos, tax)
    expected_totals = {
        "total_net_fen": net_sum,
        "total_tax_fen": tax_sum,
        "total_gross_fen": net_sum + tax_sum,
    }
    for col, expected in expected_totals.items():
        for i in np.flatnonzero(prep.fen[col] != expected):
            problems.append(
                InvoiceProblem(
                    numbers[i],
                    "total_mismatch",
                    f"{col[:-4]} {_fixed(int(prep.fen[col][i]), 2)} differs from the sum of its lines "
                    f"{_fixed(int(expected[i]), 2)} (net {_fixed(int(net_sum[i]), 2)}, "
                    f"tax {_fixed(int(tax_sum[i]), 2)})",
                )
            )
    return problems


def validate_frames(frames: InvoiceFrames) -> list[InvoiceProblem]:
    """Every rule the batch breaks without looking at the store (empty list: the batch is valid)."""
    return _validate(_prepare(frames))


# --- hashing (vectorised canonical_invoice_text) ---------------------------------------------------


def _hash_columns(prep: _Prepared) -> tuple[list[pa.Array], list[pa.Array]]:
    """The header and line fields as text arrays, exactly as :func:`canonical_invoice_text` wants."""

    def opt_text(arr: pa.Array) -> pa.Array:
        return pc.fill_null(arr.cast(pa.string()), "")

    header = [
        prep.inv["number"],
        opt_text(prep.inv["invoice_number"]),
        opt_text(prep.inv["customer_id"]),
        opt_text(prep.inv["order_id"]),
        opt_text(prep.inv["invoice_type"]),
        opt_text(prep.inv["status"]),
        opt_text(prep.inv["issue_date"]),
        prep.text("total_net_fen"),
        prep.text("total_tax_fen"),
        prep.text("total_gross_fen"),
    ]
    li = prep.line_ints
    lines = [
        pa.array(li["line_no"]).cast(pa.string()),
        pa.array(li["product_id"]).cast(pa.string()),
        opt_text(prep.lines["order_line_id"]),
        prep.text("quantity_e4"),
        prep.text("unit_price_e4"),
        prep.text("tax_rate_e4"),
        prep.text("net_amount_fen"),
        prep.text("tax_amount_fen"),
    ]
    return header, lines


def _hash(prep: _Prepared) -> list[str]:
    header_cols, line_cols = _hash_columns(prep)
    header = pc.binary_join_element_wise(*header_cols, _US)
    if len(line_cols[0]):
        line_text = pc.binary_join_element_wise(*line_cols, _US)
    else:
        line_text = pa.array([], pa.string())
    per_invoice = pc.binary_join(pa.ListArray.from_arrays(pa.array(prep.offsets, pa.int32()), line_text), _RS)
    full = pc.binary_join_element_wise(pa.scalar(_HASH_VERSION), header, per_invoice, _RS)
    prep.header_cols = header_cols
    sha = hashlib.sha256
    return [sha(b).hexdigest() for b in full.cast(pa.binary()).to_pylist()]


def compute_row_hashes(frames: InvoiceFrames) -> list[str]:
    """``row_hash`` of every invoice in the batch, in frame order (same as :func:`invoice_row_hash`)."""
    return _hash(_prepare(frames))


# --- the database side ----------------------------------------------------------------------------

_STAGE_INV_COLS = (
    "number",
    "invoice_number",
    "customer_id",
    "order_id",
    "invoice_type",
    "status",
    "issue_date",
    "total_net",
    "total_tax",
    "total_gross",
    "row_hash",
)
_STAGE_LINE_COLS = (
    "number",
    "line_no",
    "product_id",
    "order_line_id",
    "quantity",
    "unit_price",
    "tax_rate",
    "net_amount",
    "tax_amount",
)


def stage_tables(
    prep: _Prepared, row_hashes: Sequence[str] | None, *, decimals: str = "text"
) -> tuple[pa.Table, pa.Table]:
    """The invoice and line rows as Arrow tables, ready for COPY (``decimals="text"``: exact decimal text)
    or for SQLite (``decimals="float"``: the nearest double, which is what SQLite stores for NUMERIC
    columns and what the ORM binds)."""

    def amount(column: str) -> pa.Array:
        if decimals == "text":
            return prep.text(column)
        values = prep.fen[column] if column in prep.fen else prep.line_ints[column]
        return pa.array(values / 10 ** _PLACES[column])

    inv = pa.table(
        {
            "number": prep.inv["number"],
            "invoice_number": prep.inv["invoice_number"],
            "customer_id": prep.inv["customer_id"],
            "order_id": prep.inv["order_id"],
            "invoice_type": prep.inv["invoice_type"],
            "status": prep.inv["status"],
            "issue_date": prep.inv["issue_date"],
            "total_net": amount("total_net_fen"),
            "total_tax": amount("total_tax_fen"),
            "total_gross": amount("total_gross_fen"),
            "row_hash": (
                pa.array(row_hashes, pa.string()) if row_hashes is not None else pa.nulls(prep.n, pa.string())
            ),
        }
    )
    li = prep.line_ints
    lines = pa.table(
        {
            "number": prep.lines["number"],
            "line_no": pa.array(li["line_no"]),
            "product_id": pa.array(li["product_id"]),
            "order_line_id": prep.lines["order_line_id"],
            "quantity": amount("quantity_e4"),
            "unit_price": amount("unit_price_e4"),
            "tax_rate": amount("tax_rate_e4"),
            "net_amount": amount("net_amount_fen"),
            "tax_amount": amount("tax_amount_fen"),
        }
    )
    return inv, lines


def csv_bytes(table: pa.Table) -> bytes:
    """A table as headerless CSV for ``COPY ... WITH (FORMAT csv)`` (null = empty, "" = empty text)."""
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
    return buffer.getvalue()


def sqlite_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """A table as a list of tuples for ``sqlite3.executemany`` (dates as ISO text)."""
    columns = []
    for column in table.columns:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_date(column.type):
            column = column.cast(pa.string())
        if (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)) and not column.null_count:
            columns.append(column.to_numpy().tolist())  # much faster than Arrow's to_pylist for numbers
        else:
            columns.append(column.to_pylist())
    return list(zip(*columns, strict=True))


class _Cursor:
    """The DBAPI cursor, counting statements; ``executemany`` is refused on PostgreSQL (P3)."""

    def __init__(self, cursor: Any, dialect: str, hook: Callable[[str, str], None] | None) -> None:
        self.cursor = cursor
        self.dialect = dialect
        self.hook = hook
        self.statements = 0

    def _count(self, kind: str, sql: str) -> None:
        self.statements += 1
        if self.hook is not None:
            self.hook(kind, sql)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        self._count("execute", sql)
        return self.cursor.execute(sql, params) if params is not None else self.cursor.execute(sql)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        if self.dialect != "sqlite":
            raise AssertionError("executemany is one round trip per row on PostgreSQL; use COPY")
        self._count("executemany", sql)
        return self.cursor.executemany(sql, rows)

    def copy(self, sql: str, data: bytes) -> None:
        self._count("copy", sql)
        self.cursor.copy_expert(sql, io.BytesIO(data))

    @property
    def rowcount(self) -> int:
        return int(self.cursor.rowcount)

    def fetchall(self) -> list[Any]:
        return list(self.cursor.fetchall())


_TEMP_INV = "_bulk_invoices"
_TEMP_LINES = "_bulk_invoice_lines"


def _sql(dialect: str) -> dict[str, str]:
    """The statements of one load, per backend. Identifiers are constants, values are bind parameters."""
    pg = dialect == "postgresql"
    ph = "%s" if pg else "?"
    distinct = "IS DISTINCT FROM" if pg else "IS NOT"
    temp_suffix = " ON COMMIT DROP" if pg else ""
    money_t = "numeric(18,2)" if pg else "NUMERIC"
    qty_t = "numeric(18,4)" if pg else "NUMERIC"
    inv_cols = ", ".join(_STAGE_INV_COLS)
    line_cols = ", ".join(_STAGE_LINE_COLS)
    return {
        "create_inv": (
            # No key on the stage: numbers are unique already (checked) and every join is a hash join.
            f"CREATE TEMP TABLE {_TEMP_INV} (number varchar(32), invoice_number varchar(32), "
            f"customer_id integer, order_id integer, invoice_type varchar(16), status varchar(16), "
            f"issue_date date, total_net {money_t}, total_tax {money_t}, total_gross {money_t}, "
            f"row_hash varchar(64), old_id integer, old_status varchar(16)){temp_suffix}"
        ),
        "create_lines": (
            f"CREATE TEMP TABLE {_TEMP_LINES} (number varchar(32), line_no integer, product_id integer, "
            f"order_line_id integer, quantity {qty_t}, unit_price {qty_t}, tax_rate {qty_t}, "
            f"net_amount {money_t}, tax_amount {money_t}){temp_suffix}"
        ),
        "copy_inv": f"COPY {_TEMP_INV} ({inv_cols}) FROM STDIN WITH (FORMAT csv)",
        "copy_lines": f"COPY {_TEMP_LINES} ({line_cols}) FROM STDIN WITH (FORMAT csv)",
        "insert_inv": (
            f"INSERT INTO {_TEMP_INV} ({inv_cols}) VALUES ({', '.join([ph] * len(_STAGE_INV_COLS))})"
        ),
        "insert_lines": (
            f"INSERT INTO {_TEMP_LINES} ({line_cols}) VALUES ({', '.join([ph] * len(_STAGE_LINE_COLS))})"
        ),
        # Unchanged documents leave the stage at once: they are never rewritten and emit nothing (P7).
        "drop_unchanged": (
            f"DELETE FROM {_TEMP_INV} s USING invoices i "
            "WHERE i.number = s.number AND i.row_hash = s.row_hash"
            if pg
            else f"DELETE FROM {_TEMP_INV} WHERE EXISTS (SELECT 1 FROM invoices i "
            f"WHERE i.number = {_TEMP_INV}.number AND i.row_hash = {_TEMP_INV}.row_hash)"
        ),
        "mark_existing": (
            f"UPDATE {_TEMP_INV} SET old_id = i.id, old_status = i.status FROM invoices i "
            f"WHERE i.number = {_TEMP_INV}.number"
        ),
        "existing": (
            "SELECT s.number, i.status, i.row_hash, i.invoice_type, i.order_id, i.customer_id, i.issue_date, "
            f"i.invoice_number, i.total_net, i.total_tax, i.total_gross FROM {_TEMP_INV} s "
            "JOIN invoices i ON i.id = s.old_id" + (" FOR UPDATE OF i" if pg else "")
        ),
        "problems": (
            "SELECT * FROM ("
            f"SELECT s.number, 'unknown_customer' AS rule, CAST(s.customer_id AS varchar(32)) AS detail "
            f"FROM {_TEMP_INV} s WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = s.customer_id) "
            "UNION ALL "
            f"SELECT s.number, 'unknown_order', CAST(s.order_id AS varchar(32)) FROM {_TEMP_INV} s "
            "WHERE s.order_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM sales_orders o WHERE o.id = s.order_id) "
            "UNION ALL "
            f"SELECT DISTINCT l.number, 'unknown_product', CAST(l.product_id AS varchar(32)) "
            f"FROM {_TEMP_LINES} l JOIN {_TEMP_INV} s ON s.number = l.number "
            "WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = l.product_id) "
            "UNION ALL "
            f"SELECT s.number, 'invoice_number_taken', i.number FROM {_TEMP_INV} s "
            "JOIN invoices i ON i.invoice_number = s.invoice_number AND i.number <> s.number "
            "UNION ALL "
            f"SELECT s.number, 'new_status', s.status FROM {_TEMP_INV} s "
            f"WHERE s.old_id IS NULL AND s.status NOT IN {NEW_STATUSES}"
            ") q LIMIT 1000"
        ),
        "delete_lines": (
            f"DELETE FROM invoice_lines WHERE invoice_id IN "
            f"(SELECT old_id FROM {_TEMP_INV} WHERE old_id IS NOT NULL)"
        ),
        "upsert": (
            "INSERT INTO invoices (number, invoice_number, customer_id, order_id, invoice_type, status, "
            "issue_date, total_net, total_tax, total_gross, row_hash, created_at, updated_at) "
            "SELECT number, invoice_number, customer_id, order_id, invoice_type, status, issue_date, "
            f"total_net, total_tax, total_gross, row_hash, {ph}, {ph} FROM {_TEMP_INV} WHERE true "
            "ON CONFLICT (number) DO UPDATE SET invoice_number = excluded.invoice_number, "
            "customer_id = excluded.customer_id, order_id = excluded.order_id, "
            "invoice_type = excluded.invoice_type, status = excluded.status, "
            "issue_date = excluded.issue_date, total_net = excluded.total_net, "
            "total_tax = excluded.total_tax, total_gross = excluded.total_gross, "
            "row_hash = excluded.row_hash, updated_at = excluded.updated_at "
            f"WHERE invoices.row_hash {distinct} excluded.row_hash"
        ),
        "insert_lines_final": (
            "INSERT INTO invoice_lines (invoice_id, line_no, product_id, order_line_id, quantity, "
            "unit_price, tax_rate, net_amount, tax_amount) "
            "SELECT i.id, l.line_no, l.product_id, l.order_line_id, l.quantity, l.unit_price, l.tax_rate, "
            f"l.net_amount, l.tax_amount FROM {_TEMP_LINES} l JOIN {_TEMP_INV} s ON s.number = l.number "
            "JOIN invoices i ON i.number = l.number"
        ),
        # The ORM path's events (crm_core.invariants._check_invoice), set-wise.
        "outbox": (
            "INSERT INTO outbox_events (topic, entity_type, entity_id, created_at) "
            "SELECT CASE WHEN s.status = 'issued' THEN 'invoice.issued' ELSE 'invoice.changed' END, "
            f"'invoice', i.id, {ph} FROM {_TEMP_INV} s JOIN invoices i ON i.number = s.number "
            "WHERE (s.status = 'issued' AND (s.old_status IS NULL OR s.old_status <> 'issued')) "
            "OR (s.old_status = 'issued' AND s.status <> 'issued') ORDER BY i.id"
        ),
        # PostgreSQL: upsert, lines and events in one statement. The lines and events join the rows the
        # upsert returned, not the whole invoices table, so a chunk costs the same however big the store.
        "merge_pg": (
            "WITH up AS ("
            "INSERT INTO invoices (number, invoice_number, customer_id, order_id, invoice_type, status, "
            "issue_date, total_net, total_tax, total_gross, row_hash, created_at, updated_at) "
            "SELECT number, invoice_number, customer_id, order_id, invoice_type, status, issue_date, "
            f"total_net, total_tax, total_gross, row_hash, %s, %s FROM {_TEMP_INV} "
            "ON CONFLICT (number) DO UPDATE SET invoice_number = excluded.invoice_number, "
            "customer_id = excluded.customer_id, order_id = excluded.order_id, "
            "invoice_type = excluded.invoice_type, status = excluded.status, "
            "issue_date = excluded.issue_date, total_net = excluded.total_net, "
            "total_tax = excluded.total_tax, total_gross = excluded.total_gross, "
            "row_hash = excluded.row_hash, updated_at = excluded.updated_at "
            "WHERE invoices.row_hash IS DISTINCT FROM excluded.row_hash RETURNING id, number), "
            "ln AS (INSERT INTO invoice_lines (invoice_id, line_no, product_id, order_line_id, quantity, "
            "unit_price, tax_rate, net_amount, tax_amount) "
            "SELECT up.id, l.line_no, l.product_id, l.order_line_id, l.quantity, l.unit_price, l.tax_rate, "
            f"l.net_amount, l.tax_amount FROM {_TEMP_LINES} l JOIN up ON up.number = l.number "
            "ORDER BY up.id, l.line_no RETURNING 1), "
            "ev AS (INSERT INTO outbox_events (topic, entity_type, entity_id, created_at) "
            "SELECT CASE WHEN s.status = 'issued' THEN 'invoice.issued' ELSE 'invoice.changed' END, "
            f"'invoice', up.id, %s FROM up JOIN {_TEMP_INV} s ON s.number = up.number "
            "WHERE (s.status = 'issued' AND (s.old_status IS NULL OR s.old_status <> 'issued')) "
            "OR (s.old_status = 'issued' AND s.status <> 'issued') ORDER BY up.id RETURNING 1) "
            "SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM ln), (SELECT count(*) FROM ev)"
        ),
    }


@dataclass(frozen=True)
class BulkLoadResult:
    """What one :func:`load_invoices` call did."""

    received: int
    inserted: int
    updated: int
    unchanged: int
    lines_written: int
    lines_deleted: int
    outbox_events: int
    statements: int
    seconds: float

    @property
    def written(self) -> int:
        """Invoices written (inserted or updated)."""
        return self.inserted + self.updated


def _fen_of(value: Any) -> int | None:
    if value is None:
        return None
    return int((Decimal(str(value)) * 100).quantize(Decimal(1), ROUND_HALF_UP))


def _check_existing(prep: _Prepared, rows: Sequence[Sequence[Any]]) -> list[InvoiceProblem]:
    """The ORM's transition and immutability rules for invoices that exist and changed."""
    problems: list[InvoiceProblem] = []
    index = {number: i for i, number in enumerate(prep.numbers)}
    assert prep.header_cols is not None
    for number, old_status, old_hash, old_type, old_order, cust, issue, inv_no, net, tax, gross in rows:
        i = index[number]
        header = [str(col[i].as_py()) for col in prep.header_cols]
        new_status = header[5]
        allowed = INVOICE_TRANSITIONS.get(old_status, ())
        if new_status != old_status and new_status not in allowed:
            problems.append(
                InvoiceProblem(
                    number,
                    "illegal_transition",
                    f"{old_status} -> {new_status} is not allowed "
                    f"(allowed from {old_status}: {', '.join(allowed) or 'none'})",
                )
            )
            continue
        if old_status == "draft":
            continue
        old = {
            "customer_id": str(cust),
            "issue_date": str(issue) if issue is not None else "",
            "invoice_number": inv_no or "",
            "total_net": _fen_of(net),
            "total_tax": _fen_of(tax),
            "total_gross": _fen_of(gross),
        }
        new = {
            "customer_id": header[2],
            "issue_date": header[6],
            "invoice_number": header[1],
            "total_net": int(prep.fen["total_net_fen"][i]),
            "total_tax": int(prep.fen["total_tax_fen"][i]),
            "total_gross": int(prep.fen["total_gross_fen"][i]),
        }
        touched = [k for k in IMMUTABLE_ONCE_ISSUED if old[k] != new[k]]
        if not touched and old_hash is not None:
            # Same document apart from the fields an issued invoice may change? Then its lines are the same.
            a, b = prep.offsets[i], prep.offsets[i + 1]
            same = list(header)
            same[3], same[4], same[5] = _opt(old_order), old_type, old_status
            if _sha256(canonical_invoice_text(same, _lines_text(prep, a, b))) != old_hash:
                touched = ["lines"]
        if touched:
            problems.append(
                InvoiceProblem(
                    number,
                    "issued_immutable",
                    f"invoice is {old_status}; {', '.join(touched)} cannot change. "
                    "Issue a red-letter invoice and a new one instead",
                )
            )
    return problems


def _lines_text(prep: _Prepared, start: int, stop: int) -> list[list[str]]:
    li = prep.line_ints
    order_line = prep.lines["order_line_id"][start:stop].to_pylist()
    return [
        [
            str(li["line_no"][k]),
            str(li["product_id"][k]),
            _opt(order_line[k - start]),
            _fixed(int(li["quantity_e4"][k]), 4),
            _fixed(int(li["unit_price_e4"][k]), 4),
            _fixed(int(li["tax_rate_e4"][k]), 4),
            _fixed(int(li["net_amount_fen"][k]), 2),
            _fixed(int(li["tax_amount_fen"][k]), 2),
        ]
        for k in range(start, stop)
    ]


def load_invoices(
    engine: sa.Engine,
    frames: InvoiceFrames,
    *,
    on_statement: Callable[[str, str], None] | None = None,
) -> BulkLoadResult:
    """Upsert a batch of invoices with their lines in one transaction, set-based, or refuse it whole.

    Raises :class:`InvoiceBatchRefused` (a :class:`~hub.errors.DomainError`) naming the offending invoice
    numbers when any invoice breaks a rule; nothing is written then. ``on_statement(kind, sql)`` is called
    for every statement sent (kind is ``execute``, ``executemany`` or ``copy``).
    """
    started = time.perf_counter()
    prep = _prepare(frames)
    problems = _validate(prep)
    if problems:
        raise InvoiceBatchRefused(problems)
    prep.row_hashes = _hash(prep)
    dialect = engine.dialect.name
    inv_table, line_table = stage_tables(
        prep, prep.row_hashes, decimals="text" if dialect == "postgresql" else "float"
    )
    sql = _sql(dialect)
    now = datetime.now(UTC)
    now_param: Any = now if dialect == "postgresql" else now.replace(tzinfo=None).isoformat(" ")
    raw = engine.raw_connection()
    try:
        dbapi: Any = raw.driver_connection  # psycopg2 or sqlite3 connection
        cur = _Cursor(dbapi.cursor(), dialect, on_statement)
        try:
            if dialect == "sqlite":
                if not dbapi.in_transaction:
                    cur.execute("BEGIN IMMEDIATE")
                cur.execute(f"DROP TABLE IF EXISTS temp.{_TEMP_INV}")
                cur.execute(f"DROP TABLE IF EXISTS temp.{_TEMP_LINES}")
            cur.execute(sql["create_inv"])
            cur.execute(sql["create_lines"])
            if dialect == "postgresql":
                cur.copy(sql["copy_inv"], csv_bytes(inv_table))
                cur.copy(sql["copy_lines"], csv_bytes(line_table))
            else:
                cur.executemany(sql["insert_inv"], sqlite_rows(inv_table))
                cur.executemany(sql["insert_lines"], sqlite_rows(line_table))
            cur.execute(sql["drop_unchanged"])
            unchanged = cur.rowcount
            cur.execute(sql["mark_existing"])
            updated = cur.rowcount
            problems = []
            if updated:
                cur.execute(sql["existing"])
                problems.extend(_check_existing(prep, cur.fetchall()))
            cur.execute(sql["problems"])
            problems.extend(_db_problem(*row) for row in cur.fetchall())
            if problems:
                raise InvoiceBatchRefused(problems)
            lines_deleted = 0
            if updated:
                cur.execute(sql["delete_lines"])
                lines_deleted = cur.rowcount
            if dialect == "postgresql":
                cur.execute(sql["merge_pg"], (now_param, now_param, now_param))
                written, lines_written, events = cur.fetchall()[0]
            else:
                cur.execute(sql["upsert"], (now_param, now_param))
                written = cur.rowcount
                cur.execute(sql["insert_lines_final"])
                lines_written = cur.rowcount
                cur.execute(sql["outbox"], (now_param,))
                events = cur.rowcount
            if dialect == "sqlite":
                cur.execute(f"DROP TABLE temp.{_TEMP_INV}")
                cur.execute(f"DROP TABLE temp.{_TEMP_LINES}")
            dbapi.commit()
        except BaseException:
            # A dead connection cannot roll back (the server already did); keep the original error,
            # which says what happened, rather than the rollback's "connection already closed".
            with contextlib.suppress(Exception):
                dbapi.rollback()
            raise
    finally:
        raw.close()
    return BulkLoadResult(
        received=prep.n,
        inserted=written - updated,
        updated=updated,
        unchanged=unchanged,
        lines_written=lines_written,
        lines_deleted=lines_deleted,
        outbox_events=events,
        statements=cur.statements,
        seconds=time.perf_counter() - started,
    )


_DB_RULES = {
    "unknown_customer": "customer_id {} does not exist in the store; load the customer first",
    "unknown_order": "order_id {} does not exist in the store",
    "unknown_product": "a line's product_id {} does not exist in the store; load the product first",
    "invoice_number_taken": "its 发票号码 already belongs to invoice {}",
    "new_status": "a new invoice starts as draft or issued, not {!r}; load it first, then change its status",
}


def _db_problem(number: str, rule: str, detail: str) -> InvoiceProblem:
    return InvoiceProblem(number, rule, _DB_RULES[rule].format(detail))
