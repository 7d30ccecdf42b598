"""The ledger check of inventory snapshots: does the store hold exactly what the source file says?

The inventory counterpart of :mod:`hub.ledger` (PERF-RELIABILITY §B.2/§B.4: every fault test ends with
"nothing lost, nothing duplicated"). :func:`check_snapshot` compares the positions **in force** for a
source (``inventory_positions`` of its ``in_force`` snapshot(s)) with a Python model of the source
file's rows and classifies what disagrees:

- **lost**: a valid source row whose (material, warehouse, lot) has no position in force;
- **duplicated**: a (material, warehouse, lot) held more than once by the positions in force (two
  snapshots of one source in force together, or a refused snapshot that kept positions);
- **phantom**: a stored position that no valid source row explains (including a held-back row that was
  loaded anyway, and any position of a snapshot that was refused);
- **stale**: a position whose ``on_hand`` or ``reserved`` differs from the file (compared at the
  store's 4 decimal places).

It also accounts for held-back rows: ``rows read = accepted + rejected`` on both sides (the model and
the snapshot header), and every rejected row has exactly one quarantine row of this snapshot naming its
line (``unaccounted``: a rejected line without one; ``unexpected``: a quarantine line the model deems
valid). Everything else that is wrong (no or several snapshots in force, a header count that disagrees,
a checksum that is not the file's, a file registered twice) is listed in ``problems``.

The model is independent of the code under test on purpose: the file is read with :mod:`csv` and
:class:`decimal.Decimal` (not the Arrow reader), and the row rules of
:mod:`hub.inventory.validate` are restated here from their documentation (quantities present, numeric
and >= 0; codes present, known to the catalog and within the column widths; dates in the template's
format; every copy of a repeated key held back). A checker that reused the loader's own parsing would
agree with its bugs.

For a **refused** snapshot the check is made twice: ``check_snapshot(previous file, snapshot_id=<the
previous one>, refused_ids=[<refused>])`` proves the previous snapshot is still in force and unchanged,
and optionally ``check_snapshot(refused file, snapshot_id=<refused>, expect="refused")`` proves the
refused snapshot holds no position and that its quarantine accounts for its rejected rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, cast

import sqlalchemy as sa

from connectors.filedrop import CsvDialect
from crm_core.models import InventoryPosition, InventorySnapshot, ProcessedFile, Product, QuarantinedRecord
from crm_core.models import Warehouse as WarehouseRow

SNAPSHOTS = cast(sa.Table, InventorySnapshot.__table__)
POSITIONS = cast(sa.Table, InventoryPosition.__table__)
QUARANTINE = cast(sa.Table, QuarantinedRecord.__table__)
PROCESSED = cast(sa.Table, ProcessedFile.__table__)

EXAMPLES = 5  # examples kept per category
PLACES = Decimal("0.0001")  # inventory_positions quantities are Numeric(18, 4)
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
# Widths of the key columns in the store: a longer code cannot be stored, so it must be held back.
WIDTHS = {
    "material": cast(sa.String, POSITIONS.c.material_code.type).length or 64,
    "warehouse": cast(sa.String, POSITIONS.c.warehouse_code.type).length or 32,
    "lot": cast(sa.String, POSITIONS.c.lot.type).length or 64,
}
Key = tuple[str, str, str]
Expect = Literal["in_force", "refused"]
CatalogArg = Literal["store"] | tuple[Set[str] | None, Set[str] | None] | None


@dataclass(frozen=True)
class SourceRow:
    """One data row of the source as the model reads it.

    ``problems`` are the reasons the row cannot be read at all (wrong field count, a quantity or date
    that does not parse, a required value missing); the row rules (negative, unknown code, repeated key)
    are applied by :func:`check_snapshot` on top. ``reserved`` None means "not given" (= 0).
    """

    line: int
    material: str | None
    warehouse: str | None
    lot: str
    on_hand: Decimal | None
    reserved: Decimal | None = None
    problems: tuple[str, ...] = ()


@dataclass
class SnapshotLedgerReport:
    """What :func:`check_snapshot` found; ``ok`` means exactly once and every rejected row accounted for."""

    source: str
    snapshot_id: int | None = None
    status: str | None = None  # status of the checked snapshot
    expect: Expect = "in_force"
    in_force_ids: list[int] = field(default_factory=list)
    # The model (source file)
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_lines: list[int] = field(default_factory=list)
    # The store
    stored: int = 0  # positions compared (in force; or of the refused snapshot)
    header_rows: int | None = None  # snapshot header row_count
    header_rejected: int | None = None  # snapshot header rejected_count
    quarantined_lines: list[int] = field(default_factory=list)
    registrations: int = 0  # processed_files rows pointing at the snapshot
    # Disagreements
    lost: int = 0
    duplicated: int = 0
    phantom: int = 0
    stale: int = 0
    unaccounted: int = 0
    unexpected: int = 0
    problems: list[str] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        """True when nothing is lost, duplicated, phantom or stale."""
        return not (self.lost or self.duplicated or self.phantom or self.stale)

    @property
    def ok(self) -> bool:
        """Exactly once, every rejected row quarantined once, and no other problem."""
        return self.exactly_once and not (self.unaccounted or self.unexpected or self.problems)

    def _note(self, kind: str, example: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        examples = self.examples.setdefault(kind, [])
        if len(examples) < EXAMPLES:
            examples.append(example)

    def summary(self) -> str:
        """One line for a log or an assertion message."""
        return (
            f"snapshot ledger of {self.source} snapshot {self.snapshot_id} ({self.status}, expected "
            f"{self.expect}; in force {self.in_force_ids}): read {self.rows_read} = {self.accepted} accepted "
            f"+ {self.rejected} rejected; header {self.header_rows} + {self.header_rejected}; {self.stored} "
            f"stored, {len(self.quarantined_lines)} quarantined; lost={self.lost} duplicated="
            f"{self.duplicated} phantom={self.phantom} stale={self.stale} unaccounted={self.unaccounted} "
            f"unexpected={self.unexpected} problems={self.problems} examples={self.examples}"
        )


# ------------------------------------------------------------------------------------------------ the model


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def parse_quantity(text: str | None, *, thousands: str | None = None, decimal: str = ".") -> Decimal | None:
    """A quantity as written in the file, or None when it is not a finite plain number."""
    if text is None:
        return None
    cleaned = text.strip()
    if thousands:
        cleaned = cleaned.replace(thousands, "")
    if decimal != ".":
        cleaned = cleaned.replace(decimal, ".")
    if not _NUMBER.match(cleaned):
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def read_source_rows(path: str | Path, dialect: CsvDialect, *, data: bytes | None = None) -> list[SourceRow]:
    """The data rows of a CSV drop file under ``dialect``, read with :mod:`csv` (see the module docstring).

    Raises ValueError when the file cannot be a snapshot at all (undecodable, header not the template's,
    trailer missing): such a file is refused whole, and the check is then against the previous file.
    """
    name = str(path)
    raw = Path(path).read_bytes() if data is None else data
    try:
        text = raw.decode(dialect.encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name}: not valid {dialect.encoding}: {exc}") from exc
    if dialect.trailer_regex:
        body = text.rstrip("\r\n")
        cut = body.rfind("\n") + 1
        if not re.fullmatch(dialect.trailer_regex, body[cut:].strip()):
            raise ValueError(f"{name}: the last line is not the trailer {dialect.trailer_regex!r}")
        text = body[:cut]
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=dialect.delimiter, quotechar=dialect.quotechar
    )
    header = [h.strip() for h in next(reader, [])]
    missing = [h for h in dialect.header_map if h not in header]
    added = [h for h in header if h not in dialect.header_map]
    if missing or len(set(header)) != len(header) or (added and not dialect.tolerate_added_columns):
        raise ValueError(
            f"{name}: header {header} does not match the template (missing {missing}, added {added})"
        )
    index = {h: i for i, h in enumerate(header)}
    types = dict(dialect.column_types)
    wanted = {"material_code", "warehouse_code", "batch_no", *types, *dialect.required_columns}
    by_canonical = [
        (canonical, index[source]) for source, canonical in dialect.header_map.items() if canonical in wanted
    ]
    rows: list[SourceRow] = []
    number_cache: dict[str, Decimal | None] = {}
    date_cache: dict[tuple[str, str], bool] = {}
    end = reader.line_num
    for fields in reader:
        line, end = end + 1, reader.line_num
        if all(not f.strip() for f in fields):
            continue  # a blank line (or nothing but delimiters) is no data row
        if len(fields) != len(header):
            rows.append(
                SourceRow(
                    line, None, None, "", None, None, (f"{len(fields)} fields, expected {len(header)}",)
                )
            )
            continue
        values = {canonical: _text(fields[i]) for canonical, i in by_canonical}
        problems = [f"{col} is empty" for col in dialect.required_columns if values.get(col) is None]
        numbers: dict[str, Decimal | None] = {}
        for col, kind in types.items():
            value = values.get(col)
            if value is None:
                continue
            if kind in ("number", "integer", "decimal"):
                if value not in number_cache:  # exports repeat values: parse each distinct text once
                    number_cache[value] = parse_quantity(
                        value, thousands=dialect.thousands, decimal=dialect.decimal
                    )
                number = number_cache[value]
                if number is None or (kind == "integer" and number != number.to_integral_value()):
                    problems.append(f"{col} is not a number: {value!r}")
                numbers[col] = number
            elif kind in ("date", "datetime"):
                fmt = dialect.date_format if kind == "date" else dialect.datetime_format
                if (value, fmt) not in date_cache:
                    try:
                        datetime.strptime(value, fmt)
                        date_cache[value, fmt] = True
                    except ValueError:
                        date_cache[value, fmt] = False
                if not date_cache[value, fmt]:
                    problems.append(f"{col} does not match {fmt!r}: {value!r}")
        rows.append(
            SourceRow(
                line,
                values.get("material_code"),
                values.get("warehouse_code"),
                values.get("batch_no") or "",
                numbers.get("on_hand_qty"),
                numbers.get("reserved_qty"),
                tuple(problems),
            )
        )
    return rows


def _catalog(conn: sa.Connection, catalog: CatalogArg) -> tuple[Set[str] | None, Set[str] | None]:
    if catalog is None:
        return None, None
    if catalog != "store":
        return catalog
    products = cast(sa.Table, Product.__table__)
    warehouses = cast(sa.Table, WarehouseRow.__table__)
    materials = {
        str(code)
        for code in conn.execute(sa.select(products.c.erp_material_code)).scalars()
        if code is not None
    }
    stocks: set[str] = set()
    for code, erp_code in conn.execute(sa.select(warehouses.c.code, warehouses.c.erp_stock_code)):
        stocks.add(str(code))
        if erp_code:
            stocks.add(str(erp_code))
    return (materials or None), (stocks or None)  # an empty catalog checks nothing (as the loader does)


def _q(value: Decimal | float | int | str | None) -> Decimal:
    return Decimal(str(value if value is not None else 0)).quantize(PLACES, rounding=ROUND_HALF_EVEN)


def classify(
    rows: Sequence[SourceRow], *, materials: Set[str] | None, warehouses: Set[str] | None
) -> tuple[dict[Key, tuple[Decimal, Decimal]], dict[int, str]]:
    """Valid rows by key (quantities at 4 places) and rejected lines with a reason."""
    rejected: dict[int, str] = {}
    readable = [r for r in rows if not r.problems]
    for row in rows:
        if row.problems:
            rejected[row.line] = "; ".join(row.problems)
    complete = [r for r in readable if r.material and r.warehouse and r.on_hand is not None]
    counts = Counter((r.material, r.warehouse, r.lot) for r in complete)
    valid: dict[Key, tuple[Decimal, Decimal]] = {}
    places: dict[Decimal | None, Decimal] = {}

    def q(value: Decimal | None) -> Decimal:
        if value not in places:
            places[value] = _q(value)
        return places[value]

    for row in readable:
        reasons = []
        if not (row.material and row.warehouse) or row.on_hand is None:
            reasons.append("a required value is missing")
        if row.on_hand is not None and row.on_hand < 0:
            reasons.append("on_hand is negative")
        if row.reserved is not None and row.reserved < 0:
            reasons.append("reserved is negative")
        for what, value in (("material", row.material), ("warehouse", row.warehouse), ("lot", row.lot)):
            if value and len(value) > WIDTHS[what]:
                reasons.append(f"{what} longer than {WIDTHS[what]}")
        if materials is not None and row.material and row.material not in materials:
            reasons.append(f"unknown material {row.material}")
        if warehouses is not None and row.warehouse and row.warehouse not in warehouses:
            reasons.append(f"unknown warehouse {row.warehouse}")
        key = (row.material or "", row.warehouse or "", row.lot)
        if counts.get(key, 0) > 1:
            reasons.append("key appears more than once")
        if reasons:
            rejected[row.line] = "; ".join(reasons)
        else:
            valid[key] = (q(row.on_hand), q(row.reserved))
    return valid, rejected


# ------------------------------------------------------------------------------------------------ the check


def _quarantined(conn: sa.Connection, source: str, snapshot_id: int) -> list[int]:
    """Lines quarantined for ``snapshot_id`` (one entry per quarantine row)."""
    lines: list[int] = []
    stream = f"{source}.inventory"
    for reasons in conn.execute(
        sa.select(QUARANTINE.c.reasons).where(QUARANTINE.c.stream == stream)
    ).scalars():
        items: list[Mapping[str, Any]] = list(reasons or [])
        if items and items[0].get("snapshot_id") == snapshot_id:
            lines.append(int(items[0]["line"]))
    return lines


def check_snapshot(
    engine: sa.Engine,
    source: str,
    *,
    rows: Iterable[SourceRow] | None = None,
    path: str | Path | None = None,
    dialect: CsvDialect | None = None,
    snapshot_id: int | None = None,
    expect: Expect = "in_force",
    refused_ids: Iterable[int] = (),
    catalog: CatalogArg = "store",
) -> SnapshotLedgerReport:
    """Compare the store's snapshot of ``source`` with the source rows; see the module docstring.

    Args:
        source: the connection name the snapshot was taken under.
        rows / path + dialect: the source, as :class:`SourceRow` objects or as the CSV file.
        snapshot_id: the snapshot taken from this source; None = the one in force.
        expect: ``in_force`` (it must be the only snapshot in force and hold exactly the valid rows) or
            ``refused`` (it must be refused and hold no position; only its quarantine is compared).
        refused_ids: snapshots that must be refused, out of force and without positions.
        catalog: ``"store"`` reads known material/warehouse codes from the store (like the pull);
            a (materials, warehouses) pair gives them; None checks neither.
    """
    if rows is None:
        if path is None or dialect is None:
            raise ValueError("check_snapshot needs rows=... or path=... with dialect=...")
        source_rows = read_source_rows(path, dialect)
    else:
        source_rows = list(rows)
    report = SnapshotLedgerReport(source, snapshot_id=snapshot_id, expect=expect)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":  # one consistent picture across the reads below
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        materials, warehouses = _catalog(conn, catalog)
        valid, rejected = classify(source_rows, materials=materials, warehouses=warehouses)
        report.rows_read = len(source_rows)
        report.accepted = len(valid)
        report.rejected = len(rejected)
        report.rejected_lines = sorted(rejected)
        report.in_force_ids = [
            int(i)
            for i in conn.execute(
                sa.select(SNAPSHOTS.c.id)
                .where(SNAPSHOTS.c.source == source, SNAPSHOTS.c.status == "in_force")
                .order_by(SNAPSHOTS.c.id)
            ).scalars()
        ]
        if snapshot_id is None:
            if len(report.in_force_ids) != 1:
                report.problems.append(f"{len(report.in_force_ids)} snapshots in force, expected 1")
            snapshot_id = report.in_force_ids[-1] if report.in_force_ids else None
            report.snapshot_id = snapshot_id
        header = None
        if snapshot_id is not None:
            header = conn.execute(sa.select(SNAPSHOTS).where(SNAPSHOTS.c.id == snapshot_id)).first()
        if header is None:
            report.problems.append(f"snapshot {snapshot_id} not found")
        else:
            _check_header(conn, report, header, path, expect)
            if expect == "in_force":
                _compare_in_force(conn, report, valid)
            else:
                _compare_refused(conn, report, int(header.id))
            _account(report, rejected)
        for refused in refused_ids:
            _check_refused_elsewhere(conn, report, int(refused))
    return report


def _check_header(
    conn: sa.Connection,
    report: SnapshotLedgerReport,
    header: sa.Row[Any],
    path: str | Path | None,
    expect: Expect,
) -> None:
    report.status = str(header.status)
    if header.source != report.source:
        report.problems.append(f"snapshot {header.id} belongs to {header.source!r}, not {report.source!r}")
    if report.status != expect:
        report.problems.append(f"snapshot {header.id} is {report.status}, expected {expect}")
    if expect == "in_force" and report.in_force_ids != [int(header.id)]:
        report.problems.append(f"in force: {report.in_force_ids}, expected only [{header.id}]")
    if expect == "refused" and int(header.id) in report.in_force_ids:
        report.problems.append(f"refused snapshot {header.id} is in force")
    report.header_rows = int(header.row_count)
    report.header_rejected = int(header.rejected_count)
    report.quarantined_lines = sorted(_quarantined(conn, report.source, int(header.id)))
    if path is not None and header.checksum:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if digest != header.checksum:
            report.problems.append(f"checksum {header.checksum[:12]}... is not the file's {digest[:12]}...")
    report.registrations = int(
        conn.execute(
            sa.select(sa.func.count()).select_from(PROCESSED).where(PROCESSED.c.snapshot_id == header.id)
        ).scalar_one()
    )
    if report.registrations > 1:
        report.problems.append(
            f"snapshot {header.id} registered {report.registrations} times in processed_files"
        )


def _compare_in_force(
    conn: sa.Connection, report: SnapshotLedgerReport, valid: Mapping[Key, tuple[Decimal, Decimal]]
) -> None:
    query = (
        sa.select(
            POSITIONS.c.snapshot_id,
            POSITIONS.c.material_code,
            POSITIONS.c.warehouse_code,
            POSITIONS.c.lot,
            POSITIONS.c.on_hand,
            POSITIONS.c.reserved,
        )
        .join(SNAPSHOTS, SNAPSHOTS.c.id == POSITIONS.c.snapshot_id)
        .where(SNAPSHOTS.c.source == report.source, SNAPSHOTS.c.status == "in_force")
    )
    seen: Counter[Key] = Counter()
    own = 0
    places: dict[Any, Decimal] = {}

    def q(value: Any) -> Decimal:
        if value not in places:
            places[value] = _q(value)
        return places[value]

    for snap, material, warehouse, lot, on_hand, reserved in conn.execute(query):
        report.stored += 1
        own += int(snap) == report.snapshot_id
        key = (str(material), str(warehouse), str(lot or ""))
        seen[key] += 1
        label = "/".join(key)
        if seen[key] == 2:
            report._note("duplicated", label)
        if seen[key] > 1:
            continue
        expected = valid.get(key)
        if expected is None:
            report._note("phantom", f"{label} (snapshot {snap})")
        elif (q(on_hand), q(reserved)) != expected:
            report._note(
                "stale", f"{label}: stored {q(on_hand)}/{q(reserved)}, file {expected[0]}/{expected[1]}"
            )
    for key in valid:
        if key not in seen:
            report._note("lost", "/".join(key))
    if report.header_rows is not None and report.header_rows != own:
        report.problems.append(f"header row_count {report.header_rows} but {own} positions stored")


def _compare_refused(conn: sa.Connection, report: SnapshotLedgerReport, snapshot_id: int) -> None:
    held = conn.execute(
        sa.select(POSITIONS.c.material_code, POSITIONS.c.warehouse_code, POSITIONS.c.lot).where(
            POSITIONS.c.snapshot_id == snapshot_id
        )
    ).all()
    report.stored = len(held)
    for material, warehouse, lot in held:
        report._note("phantom", f"{material}/{warehouse}/{lot} (refused snapshot {snapshot_id})")
    if report.header_rows:
        report.problems.append(f"refused snapshot {snapshot_id} has row_count {report.header_rows}")


def _account(report: SnapshotLedgerReport, rejected: Mapping[int, str]) -> None:
    """read = accepted + rejected, on both sides; each rejected line quarantined exactly once."""
    counts = Counter(report.quarantined_lines)
    for line in sorted(rejected):
        if counts.get(line, 0) == 0:
            report._note("unaccounted", f"line {line}: {rejected[line]}")
    for line, n in sorted(counts.items()):
        if line not in rejected:
            report._note("unexpected", f"line {line}")
        elif n > 1:
            report.problems.append(f"line {line} quarantined {n} times")
    if report.header_rejected is not None and report.header_rejected != len(counts):
        report.problems.append(
            f"header rejected_count {report.header_rejected} but {len(counts)} lines quarantined"
        )
    header_read = (report.header_rows or 0) + (report.header_rejected or 0)
    if report.expect == "in_force" and report.header_rows is not None and header_read != report.rows_read:
        report.problems.append(
            f"header says {report.header_rows} + {report.header_rejected} rows, "
            f"the file holds {report.rows_read}"
        )


def _check_refused_elsewhere(conn: sa.Connection, report: SnapshotLedgerReport, snapshot_id: int) -> None:
    status = conn.execute(sa.select(SNAPSHOTS.c.status).where(SNAPSHOTS.c.id == snapshot_id)).scalar()
    if status != "refused":
        report.problems.append(f"snapshot {snapshot_id} is {status}, expected refused")
    held = conn.execute(
        sa.select(POSITIONS.c.material_code, POSITIONS.c.warehouse_code, POSITIONS.c.lot).where(
            POSITIONS.c.snapshot_id == snapshot_id
        )
    ).all()
    for material, warehouse, lot in held:
        report._note("phantom", f"{material}/{warehouse}/{lot} (refused snapshot {snapshot_id})")


__all__ = [
    "SnapshotLedgerReport",
    "SourceRow",
    "check_snapshot",
    "classify",
    "parse_quantity",
    "read_source_rows",
]
