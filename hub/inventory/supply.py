"""Incoming supply (open purchase and production orders with their ETA) from an SFTP CSV drop.

The optional ``incoming_supply`` stream of an ``erp_sftp_csv`` connection writes the store's
``incoming_supply`` table, which the delivery promises read as scheduled receipts
(:func:`hub.promises.store.read_supply`). One file is the whole open supply of its connection, so each
loaded file **replaces** that connection's set (rows not tied to an inventory snapshot).

Per complete file, oldest first (the same steps and guarantees as the inventory drop,
:mod:`hub.inventory.pull`)::

    download (temp name, prefetch, stall watchdog, atomic rename; retried after a disconnect)
    -> already in processed_files (same path and sha256)?  archive it again, skip
    -> read with the stream's dialect (a cut-off / drifted / mis-encoded file is refused whole)
    -> drop closed rows (status closed / cancelled / completed ...), validate the rest
    -> in ONE transaction: replace the set (DELETE + bulk insert: COPY on PostgreSQL, one executemany
       on SQLite), quarantine bad rows with file and line, register the file
       -- or refuse the file whole (the previous set stays), quarantine its bad rows and the reason
    -> move it to archive/ (loaded) or failed/ (refused) on the server

Row rules (Great Expectations through :func:`hub.quality.validate_frame`, one boolean column each):
order number, kind, material, quantity and ETA present; kind is purchase or production (``采购`` /
``生产`` and a few ERP spellings are understood); quantity > 0; the material and, when given, the
warehouse are in the catalog; codes fit the table; (order number, line) appears once (every copy is held
back). An ETA that is not a date of the configured format is caught by the reader, with its line.

File rules: refused whole when more than ``reject_threshold`` of the rows read are bad, or when the set
would shrink by more than ``max_shrink`` against the set in force (a truncated export must not wipe
the scheduled receipts the promises count on). Ops are alerted by the caller (CLI exit code 1, the
Dagster asset's check and alert).

The table has no line column: ``reference`` holds ``<order number>#<line>`` (just the order number when
the file has no line column). Inventory snapshots write no outbox event, so neither does this: the
promise run that follows writes ``promise.changed`` for every line whose date moved.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
import zlib
from collections.abc import Callable, Set
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from connectors.filedrop import SOURCE_LINE as READER_LINE
from connectors.filedrop import CsvDialect, FileRejectedError, SftpSettings, read_csv_file
from crm_core.models import IncomingSupply
from hub.config.models import ErpSftpCsvTemplate
from hub.config.models.files import CsvDropStream
from hub.config.project import Project
from hub.errors import ConfigError
from hub.inventory.columns import QTY_LIMIT, QTY_PLACES
from hub.inventory.load import FileIdentity, record_processed_file, write_quarantine
from hub.inventory.pull import (
    Catalog,
    FileResult,
    FileStatus,
    PullReport,
    download_or_refuse,
    pull_drop,
    take_downloaded,
)
from hub.inventory.sources import csv_dialect, sftp_settings
from hub.inventory.validate import RowReject, add_parse_reasons
from hub.quality import Rule, validate_frame

if TYPE_CHECKING:
    from connectors.filedrop import RemoteFile, SftpDropClient

log = logging.getLogger(__name__)

STREAM: Final = "incoming_supply"
SUITE: Final = "incoming_supply"
SUPPLY = cast(sa.Table, IncomingSupply.__table__)

# Frame columns (one row per order line).
REFERENCE: Final = "reference"  # "<order number>#<line>", what the table stores
ORDER: Final = "order_no"
LINE: Final = "line_no"
KIND: Final = "kind"
MATERIAL: Final = "material_code"
WAREHOUSE: Final = "warehouse_code"
QUANTITY: Final = "quantity"
ETA: Final = "eta"
SOURCE_LINE: Final = "source_line"

# Canonical template columns (hub.config.columns "incoming_supply") -> frame columns.
TEMPLATE_TO_FRAME: Final = {
    "source_doc_no": ORDER,
    "line_no": LINE,
    "supply_kind": KIND,
    "material_code": MATERIAL,
    "warehouse_code": WAREHOUSE,
    "qty": QUANTITY,
    "expected_date": ETA,
}
KINDS: Final = ("purchase", "production")
KIND_ALIASES: Final = {
    **{k: "purchase" for k in ("purchase", "po", "采购", "采购订单", "外购")},
    **{k: "production" for k in ("production", "mo", "生产", "生产订单", "生产任务单", "自制")},
}
# Status values (case-insensitive) of rows that are no longer open supply: not loaded, not quarantined.
CLOSED_STATUSES: Final = frozenset(
    ("closed", "cancelled", "canceled", "completed", "complete", "finished", "done")
    + ("关闭", "已关闭", "作废", "已作废", "取消", "已取消", "完成", "已完成", "结案", "已结案", "关闭结案")
)
# Column widths of incoming_supply: a longer code would fail the bulk insert of the whole file.
WIDTHS: Final = {REFERENCE: 64, MATERIAL: 64, WAREHOUSE: 32}

_PRESENT = "values_present"
_KIND_KNOWN = "kind_known"
_POSITIVE = "quantity_positive"
_QUANTITY_FITS = "quantity_fits"
_FITS = "codes_fit"
_UNIQUE = "order_line_unique"
_MATERIAL_KNOWN = "material_known"
_WAREHOUSE_KNOWN = "warehouse_known"
# Boolean check column -> the frame column whose value a failure reports.
_VALUE_OF = {
    _KIND_KNOWN: KIND,
    _POSITIVE: QUANTITY,
    _QUANTITY_FITS: QUANTITY,
    _MATERIAL_KNOWN: MATERIAL,
    _WAREHOUSE_KNOWN: WAREHOUSE,
}
_INSERTED = ("source", "kind", "reference", "material_code", "warehouse_code", "quantity", "eta")


# ------------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class SupplySource:
    """A configured ``erp_sftp_csv`` connection with an enabled ``incoming_supply`` stream."""

    name: str
    template: ErpSftpCsvTemplate

    @property
    def stream(self) -> CsvDropStream:
        stream = self.template.streams.incoming_supply
        assert stream is not None  # supply_sources only returns connections with the stream
        return stream

    @property
    def registry_source(self) -> str:
        """Name of this stream's processed files and quarantine rows: ``<connection>.incoming_supply``."""
        return registry_source(self.name)


def registry_source(connection: str) -> str:
    """``processed_files.source`` and quarantine stream of a connection's supply files."""
    return f"{connection}.{STREAM}"


def supply_sources(project: Project, name: str | None = None) -> list[SupplySource]:
    """Connections with an enabled incoming-supply stream (only ``name`` when given; ConfigError if none)."""
    found = [
        SupplySource(conn_name, template)
        for conn_name, template in project.connections.items()
        if (name is None or conn_name == name)
        and isinstance(template, ErpSftpCsvTemplate)
        and template.streams.incoming_supply is not None
        and template.streams.incoming_supply.enabled
    ]
    if name is not None and not found:
        project.connection(name)  # raises "no connection named ..." when it does not exist
        raise ConfigError(
            f"{project.path}: connection {name!r} has no enabled incoming_supply stream (erp_sftp_csv with "
            "streams.incoming_supply; the template ships it commented out)."
        )
    return found


def supply_dialect(stream: CsvDropStream, *, where: str) -> CsvDialect:
    """The reader's dialect: the inventory drop's, with the order number and kind required too."""
    dialect = csv_dialect(stream, where=where)
    mapped = set(stream.columns.values())
    required = tuple(
        dict.fromkeys(
            [*dialect.required_columns, *(c for c in ("source_doc_no", "supply_kind") if c in mapped)]
        )
    )
    return replace(dialect, required_columns=required)


def supply_settings(source: SupplySource, *, local_dir: Path, where: str = "hub.yaml") -> SftpSettings:
    """Connector settings of the supply stream (its own path pattern and completeness rule)."""
    return sftp_settings(source.name, source.template, source.stream, local_dir=local_dir, where=where)


@dataclass(frozen=True)
class SupplyPolicy:
    """When a supply file is refused whole (see the module docstring)."""

    max_shrink: float = 0.5
    max_reject_share: float = 0.01

    def __post_init__(self) -> None:
        for name in ("max_shrink", "max_reject_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"incoming supply policy: {name}={value} must be a share between 0 and 1.")


def policy_for(source: SupplySource, *, max_shrink: float | None = None) -> SupplyPolicy:
    """The stream's ``reject_threshold`` and ``max_shrink`` (``max_shrink`` given here wins)."""
    stream = source.stream
    shrink = stream.max_shrink if max_shrink is None else max_shrink
    return SupplyPolicy(max_shrink=float(shrink), max_reject_share=float(stream.reject_threshold))


# ------------------------------------------------------------------------------------------- validation


def _text(values: pd.Series) -> pd.Series:
    return values.astype("string").str.strip().replace("", pd.NA)


def supply_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The reader's frame (canonical template columns + its line column) as supply rows.

    Returns the open rows and how many closed rows (by ``status``) were left out.
    """
    data = frame.rename(columns={READER_LINE: SOURCE_LINE, **TEMPLATE_TO_FRAME})
    n = len(data)
    blank = pd.Series([pd.NA] * n, dtype="string")
    order = _text(data[ORDER]) if ORDER in data.columns else blank
    line = _text(data[LINE]) if LINE in data.columns else blank
    raw_kind = _text(data[KIND]) if KIND in data.columns else blank
    kind = raw_kind.str.casefold().map(KIND_ALIASES, na_action="ignore")
    eta = pd.to_datetime(data[ETA], errors="coerce") if ETA in data.columns else pd.Series([pd.NaT] * n)
    out = pd.DataFrame(
        {
            ORDER: order.reset_index(drop=True),
            LINE: line.reset_index(drop=True),
            REFERENCE: (order + ("#" + line).fillna("")).reset_index(drop=True),
            KIND: kind.astype("string").fillna(raw_kind).reset_index(drop=True),
            MATERIAL: _text(data[MATERIAL]).reset_index(drop=True),
            WAREHOUSE: (_text(data[WAREHOUSE]) if WAREHOUSE in data.columns else blank).reset_index(
                drop=True
            ),
            QUANTITY: pd.to_numeric(data[QUANTITY], errors="coerce").astype("float64").to_numpy(),
            ETA: eta.dt.normalize().to_numpy(),
            SOURCE_LINE: (
                pd.to_numeric(data[SOURCE_LINE]).astype("int64").to_numpy()
                if SOURCE_LINE in data.columns
                else np.arange(1, n + 1, dtype=np.int64)
            ),
        }
    )
    if "status" not in data.columns:
        return out, 0
    closed = _text(data["status"]).str.casefold().isin(CLOSED_STATUSES).fillna(False).to_numpy(dtype=bool)
    return out.loc[~closed].reset_index(drop=True), int(closed.sum())


@dataclass(frozen=True)
class ValidatedSupply:
    """Rows to load and rows held back; ``rows_read`` counts every data row of the file."""

    accepted: pd.DataFrame
    rejects: tuple[RowReject, ...]
    rows_read: int
    rows_closed: int = 0

    @property
    def reject_share(self) -> float:
        return len(self.rejects) / self.rows_read if self.rows_read else 0.0


def _known(values: pd.Series, codes: Set[str]) -> np.ndarray:
    return values.isin(codes).fillna(False).to_numpy(dtype=bool)


def _checks(frame: pd.DataFrame, materials: Set[str] | None, warehouses: Set[str] | None) -> dict[str, Any]:
    present = np.ones(len(frame), dtype=bool)
    for name in (ORDER, KIND, MATERIAL, QUANTITY, ETA):
        present &= frame[name].notna().to_numpy(dtype=bool)
    fits = np.ones(len(frame), dtype=bool)
    for name, width in WIDTHS.items():
        fits &= (frame[name].fillna("").str.len() <= width).to_numpy(dtype=bool)
    quantity = frame[QUANTITY].to_numpy(dtype=np.float64)
    kind = frame[KIND]
    checks: dict[str, Any] = {
        _PRESENT: present,
        _KIND_KNOWN: (kind.isin(KINDS).fillna(False) | kind.isna()).to_numpy(dtype=bool),
        _POSITIVE: np.isnan(quantity) | (quantity > 0),
        _QUANTITY_FITS: ~(np.abs(np.round(quantity, QTY_PLACES)) >= QTY_LIMIT),
        _FITS: fits,
        _UNIQUE: ~frame.duplicated([ORDER, LINE], keep=False).to_numpy() | frame[ORDER].isna().to_numpy(),
    }
    if materials is not None:
        checks[_MATERIAL_KNOWN] = _known(frame[MATERIAL], materials) | frame[MATERIAL].isna().to_numpy()
    if warehouses is not None:  # a row without warehouse is not tied to one: nothing to check
        checks[_WAREHOUSE_KNOWN] = _known(frame[WAREHOUSE], warehouses) | frame[WAREHOUSE].isna().to_numpy()
    return checks


_REASONS = {
    _PRESENT: "a required value (order number, kind, material, quantity, ETA) is missing",
    _KIND_KNOWN: "kind is not purchase or production",
    _POSITIVE: "quantity is not greater than 0",
    _QUANTITY_FITS: f"quantity is infinite or too large for the store (it holds less than {QTY_LIMIT:.0e})",
    _FITS: f"a code is longer than the store allows {WIDTHS}",
    _UNIQUE: "the same (order number, line) appears more than once; every copy held back",
    _MATERIAL_KNOWN: "unknown material (not in the product catalog)",
    _WAREHOUSE_KNOWN: "unknown warehouse",
}


def validate_supply(
    frame: pd.DataFrame,
    *,
    known_materials: Set[str] | None = None,
    known_warehouses: Set[str] | None = None,
    parse_problems: Any = (),
    rows_read: int | None = None,
    rows_closed: int = 0,
) -> ValidatedSupply:
    """Check every open row of a supply frame (:func:`supply_frame`); reader problems join the rejects."""
    checks = _checks(frame, known_materials, known_warehouses)
    suspect = np.zeros(len(frame), dtype=bool)
    for passed in checks.values():
        suspect |= ~passed
    if len(frame) and not suspect.any():
        suspect[0] = True  # the suite runs on every file
    compact = frame.loc[suspect, [SOURCE_LINE]].reset_index(drop=True)
    for name, passed in checks.items():
        compact[name] = passed[suspect]
    rules = [Rule("true", name, _REASONS[name]) for name in checks]
    outcome = validate_frame(compact, rules, id_column=SOURCE_LINE, suite=SUITE)
    by_line = frame.set_index(SOURCE_LINE)
    reasons: dict[int, list[dict[str, str]]] = {}
    for line, failures in outcome.failures.items():
        items = []
        for failure in failures:
            item = {k: str(v) for k, v in failure.items()}
            column = _VALUE_OF.get(item["column"])
            if column is not None:
                value = by_line.at[int(line), column]
                item.update(column=column, value="" if pd.isna(value) else str(value))
            else:
                item["value"] = ""
            items.append(item)
        reasons[int(line)] = items
    add_parse_reasons(reasons, parse_problems)
    bad = np.fromiter(outcome.failures.keys(), dtype=np.int64, count=len(outcome.failures))
    accepted = frame.loc[~frame[SOURCE_LINE].isin(bad)].reset_index(drop=True)
    if rows_read is None:
        rows_read = len(frame) + rows_closed + len({int(p.line) for p in parse_problems})
    rejects = tuple(RowReject(line, tuple(reasons[line])) for line in sorted(reasons))
    return ValidatedSupply(accepted, rejects, rows_read, rows_closed)


def refusal_reason(
    checked: ValidatedSupply, *, previous_rows: int, policy: SupplyPolicy, origin: str
) -> str | None:
    """Why the file must be refused whole, or None when its rows may replace the set in force."""
    new = len(checked.accepted)
    if previous_rows and new < previous_rows * (1 - policy.max_shrink):
        fell = 1 - new / previous_rows
        return (
            f"{origin}: the open incoming supply would shrink from {previous_rows} to {new} rows ({fell:.0%} "
            f"fewer; the limit is {policy.max_shrink:.0%}). Check the ERP export; if the drop is real, raise "
            "max_shrink for one run (hub pull supply --max-shrink). The previous supply stays in force."
        )
    if checked.reject_share > policy.max_reject_share:
        return (
            f"{origin}: {len(checked.rejects)} of {checked.rows_read} rows rejected "
            f"({checked.reject_share:.2%}; the limit is {policy.max_reject_share:.2%}). See the quarantine "
            "for each row's reason; the previous supply stays in force."
        )
    return None


# -------------------------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class SupplyOutcome:
    """One file taken (its rows now the source's open supply) or refused whole."""

    source: str
    origin: str
    status: FileStatus  # loaded | refused
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    rows_closed: int
    previous_rows: int
    refused_reason: str | None
    seconds: float

    @property
    def refused(self) -> bool:
        """True when the file was refused whole (the previous supply stays): alert ops."""
        return self.status == "refused"


def _lock(conn: sa.Connection, source: str) -> None:
    """Serialise supply writes of one source until the transaction ends (PostgreSQL advisory lock)."""
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(f"hub.supply:{source}".encode())
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _open_set(source: str) -> sa.ColumnElement[bool]:
    return sa.and_(SUPPLY.c.source == source, SUPPLY.c.snapshot_id.is_(None))


def open_rows(conn: sa.Connection, source: str) -> int:
    """Rows of the source's open supply (those a file replaces)."""
    return int(conn.execute(sa.select(sa.func.count()).where(_open_set(source))).scalar_one())


def _insert(conn: sa.Connection, source: str, frame: pd.DataFrame) -> int:
    """All rows in one statement: COPY on PostgreSQL, one executemany on SQLite."""
    if frame.empty:
        return 0
    quantity = np.round(frame[QUANTITY].to_numpy(dtype=np.float64), QTY_PLACES)
    dbapi = conn.connection.dbapi_connection
    if dbapi is None:  # pragma: no cover - a live Connection always has one
        raise RuntimeError("the SQLAlchemy connection has no DBAPI connection")
    cursor = dbapi.cursor()
    try:
        if conn.dialect.name == "postgresql":
            table = pa.table(
                {
                    "source": pa.array([source] * len(frame), type=pa.string()),
                    "kind": pa.array(frame[KIND], type=pa.string()),
                    "reference": pa.array(frame[REFERENCE], type=pa.string()),
                    "material_code": pa.array(frame[MATERIAL], type=pa.string()),
                    "warehouse_code": pa.array(frame[WAREHOUSE], type=pa.string()),  # null stays NULL
                    "quantity": pa.array(quantity),
                    "eta": pa.array(frame[ETA].to_numpy(dtype="datetime64[D]")),
                }
            )
            sink = io.BytesIO()
            pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=False))
            cursor.copy_expert(
                f"COPY incoming_supply ({', '.join(_INSERTED)}) FROM STDIN WITH (FORMAT csv)",
                io.BytesIO(sink.getvalue()),
            )
        else:
            rows = zip(
                [source] * len(frame),
                frame[KIND].to_numpy(dtype=object).tolist(),
                frame[REFERENCE].to_numpy(dtype=object).tolist(),
                frame[MATERIAL].to_numpy(dtype=object).tolist(),
                frame[WAREHOUSE].astype("object").where(frame[WAREHOUSE].notna(), None).tolist(),
                quantity.tolist(),
                frame[ETA].dt.strftime("%Y-%m-%d").tolist(),  # SQLAlchemy's Date on SQLite: ISO text
                strict=True,
            )
            placeholders = ", ".join("?" for _ in _INSERTED)
            insert = f"INSERT INTO incoming_supply ({', '.join(_INSERTED)}) VALUES ({placeholders})"
            cursor.executemany(insert, rows)  # type: ignore[arg-type]  # sqlite3 takes any iterable
    finally:
        cursor.close()
    return len(frame)


def _quarantine_refusal(conn: sa.Connection, source: str, origin: str, reason: str) -> None:
    """The refusal itself, as one quarantine row naming the file (ops read the quarantine)."""
    file_reject = RowReject(0, ({"rule": "file_refused", "column": "", "reason": reason, "value": ""},))
    write_quarantine(
        conn, stream=registry_source(source), origin=origin, snapshot_id=None, rejects=[file_reject]
    )


def replace_supply(
    engine: sa.Engine,
    *,
    source: str,
    checked: ValidatedSupply,
    origin: str,
    policy: SupplyPolicy | None = None,
    file: FileIdentity | None = None,
) -> SupplyOutcome:
    """Make ``checked.accepted`` the open supply of ``source``, or refuse it whole; one transaction.

    Either way the bad rows are quarantined (``<origin>:<line>``) and ``file`` is registered as processed.
    """
    started = time.perf_counter()
    policy = policy or SupplyPolicy()
    stream = registry_source(source)
    with engine.begin() as conn:
        _lock(conn, source)
        previous = open_rows(conn, source)
        reason = refusal_reason(checked, previous_rows=previous, policy=policy, origin=origin)
        write_quarantine(conn, stream=stream, origin=origin, snapshot_id=None, rejects=checked.rejects)
        loaded = 0
        if reason is None:
            conn.execute(SUPPLY.delete().where(_open_set(source)))
            loaded = _insert(conn, source, checked.accepted)
        else:
            _quarantine_refusal(conn, source, origin, reason)
        if file is not None:
            status = "refused" if reason else "loaded"
            record_processed_file(conn, source=stream, file=file, status=status, snapshot_id=None)
    outcome = SupplyOutcome(
        source, origin, "refused" if reason else "loaded", checked.rows_read, loaded, len(checked.rejects),
        checked.rows_closed, previous, reason, time.perf_counter() - started,
    )  # fmt: skip
    _log(outcome)
    return outcome


def refuse_supply(
    engine: sa.Engine, *, source: str, origin: str, reason: str, file: FileIdentity | None = None
) -> SupplyOutcome:
    """Record a file refused before its rows could be read (cut off, schema drift, encoding, checksum)."""
    started = time.perf_counter()
    with engine.begin() as conn:
        _lock(conn, source)
        previous = open_rows(conn, source)
        _quarantine_refusal(conn, source, origin, reason)
        if file is not None:
            record_processed_file(
                conn, source=registry_source(source), file=file, status="refused", snapshot_id=None
            )
    outcome = SupplyOutcome(
        source, origin, "refused", 0, 0, 0, 0, previous, reason, time.perf_counter() - started
    )
    _log(outcome)
    return outcome


def _log(outcome: SupplyOutcome) -> None:
    if outcome.refused:
        log.error(
            "incoming supply file %s of %s refused: %s",
            outcome.origin,
            outcome.source,
            outcome.refused_reason,
        )
        return
    log.info(
        "incoming supply of %s replaced from %s: %d rows (was %d), %d rejected, %d closed",
        outcome.source, outcome.origin, outcome.rows_loaded, outcome.previous_rows, outcome.rows_rejected,
        outcome.rows_closed,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- pulling


SupplyFileResult = FileResult[SupplyOutcome]
SupplyPullReport = PullReport[SupplyOutcome]


def _process_file(
    engine: sa.Engine,
    client: SftpDropClient,
    remote: RemoteFile,
    dialect: CsvDialect,
    *,
    source: str,
    policy: SupplyPolicy,
    catalog: Catalog,
) -> SupplyFileResult:
    fetched = download_or_refuse(
        client, remote, lambda reason: refuse_supply(engine, source=source, origin=remote.path, reason=reason)
    )
    if isinstance(fetched, FileResult):
        return fetched
    downloaded = fetched

    def load(identity: FileIdentity) -> SupplyOutcome:
        try:
            parsed = read_csv_file(
                downloaded.local_path,
                dialect,
                expected_rows=downloaded.expected_rows,
                display_name=remote.path,
            )
        except FileRejectedError as exc:
            return refuse_supply(engine, source=source, origin=remote.path, reason=str(exc), file=identity)
        frame, closed = supply_frame(parsed.frame)
        checked = validate_supply(
            frame,
            known_materials=catalog.materials,
            known_warehouses=catalog.warehouses,
            parse_problems=parsed.problems,
            rows_read=parsed.rows_read,
            rows_closed=closed,
        )
        return replace_supply(
            engine, source=source, checked=checked, origin=remote.path, policy=policy, file=identity
        )

    return take_downloaded(engine, client, remote, downloaded, registry=registry_source(source), load=load)


def pull_supply_sftp(
    engine: sa.Engine,
    client: SftpDropClient,
    dialect: CsvDialect,
    *,
    source: str,
    policy: SupplyPolicy | None = None,
    catalog: Catalog | None = None,
    on_file: Callable[[SupplyFileResult], None] | None = None,
) -> SupplyPullReport:
    """Process every complete supply file of the drop, oldest first (the newest one ends in force)."""
    known = catalog or Catalog.from_store(engine)
    rules = policy or SupplyPolicy()

    def process(remote: RemoteFile) -> SupplyFileResult:
        return _process_file(engine, client, remote, dialect, source=source, policy=rules, catalog=known)

    return pull_drop(client, process, source=source, label=f"{source} supply", on_file=on_file, logger=log)


def pull_supply(
    engine: sa.Engine,
    source: SupplySource,
    *,
    local_dir: Path,
    where: str = "hub.yaml",
    policy: SupplyPolicy | None = None,
    on_file: Callable[[SupplyFileResult], None] | None = None,
) -> SupplyPullReport:
    """Pull one configured connection's incoming-supply drop into the store."""
    from connectors.filedrop import SftpDropClient

    stream_where = f"{where}: connections.{source.name}.streams.{STREAM}"
    settings = supply_settings(source, local_dir=local_dir / registry_source(source.name), where=where)
    dialect = supply_dialect(source.stream, where=stream_where)
    with SftpDropClient(settings) as sftp:
        sftp.remove_stale_partials()
        return pull_supply_sftp(
            engine,
            sftp,
            dialect,
            source=source.name,
            policy=policy or policy_for(source),
            catalog=Catalog.from_store(engine),
            on_file=on_file,
        )


def complete_supply_files(source: SupplySource, *, where: str = "hub.yaml") -> list[RemoteFile]:
    """Complete files waiting on the supply drop (for the file-landed sensor); nothing is downloaded."""
    from connectors.filedrop import SftpDropClient

    with (
        tempfile.TemporaryDirectory() as scratch,
        SftpDropClient(supply_settings(source, local_dir=Path(scratch), where=where)) as client,
    ):
        return client.list_complete_files()
