"""Pull inventory from one source into the store: the KIS API or an SFTP CSV drop.

**KIS** (:func:`pull_kis`): every page of ``ICInventory/List`` is read first; only a complete listing
becomes a snapshot (a failure half-way raises, and nothing is loaded).

**SFTP** (:func:`pull_sftp`), per complete file, oldest first::

    download (temp name, prefetch, stall watchdog, atomic rename; retried after a disconnect)
    -> already in processed_files (same path and sha256)?  archive it again, skip
    -> read with the template's dialect (a cut-off / drifted / mis-encoded file is refused whole)
    -> validate, quarantine bad rows, load or refuse (hub.inventory.snapshot), register the file
    -> move it to archive/ (loaded) or failed/ (refused) on the server

A file still being written is left alone (it is not listed as complete, or it changed during the
download). The registry row is written in the same transaction as the snapshot, so a crash between the
load and the move only means the next pull finds the file, sees it in the registry and archives it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd
import sqlalchemy as sa

from connectors.filedrop import SOURCE_LINE, CsvDialect, FileChangedError, FileRejectedError, read_csv_file
from hub.config.models import KingdeeKisTemplate
from hub.config.models.files import CsvDropStream
from hub.inventory import columns as c
from hub.inventory.load import FileIdentity, already_processed
from hub.inventory.snapshot import SnapshotOutcome, ingest_snapshot, known_codes, refuse_snapshot
from hub.inventory.sources import InventorySource, csv_dialect, sftp_settings
from hub.inventory.validate import SnapshotPolicy

if TYPE_CHECKING:
    from connectors.filedrop import RemoteFile, SftpDropClient
    from connectors.kingdee.kis import InventoryRow, KisClient

log = logging.getLogger(__name__)

FileStatus = Literal["loaded", "refused", "duplicate", "waiting"]


@dataclass(frozen=True)
class FileResult:
    """What happened to one remote file."""

    path: str
    status: FileStatus
    outcome: SnapshotOutcome | None = None
    message: str = ""


@dataclass
class PullReport:
    """One pull of one source: the files seen (SFTP) or the one listing (KIS), and their outcomes."""

    source: str
    files: list[FileResult] = field(default_factory=list)

    @property
    def outcomes(self) -> list[SnapshotOutcome]:
        """Snapshots taken (loaded or refused), in order."""
        return [f.outcome for f in self.files if f.outcome is not None]

    @property
    def refused(self) -> list[SnapshotOutcome]:
        """Snapshots refused whole: each needs an ops alert."""
        return [o for o in self.outcomes if o.refused]

    @property
    def loaded(self) -> list[SnapshotOutcome]:
        """Snapshots put in force."""
        return [o for o in self.outcomes if not o.refused]


@dataclass(frozen=True)
class Catalog:
    """Material and warehouse codes rows are checked against (None: not checked)."""

    materials: Set[str] | None
    warehouses: Set[str] | None

    @classmethod
    def from_store(cls, engine: sa.Engine) -> Catalog:
        """The codes the store's catalog knows (see :func:`hub.inventory.snapshot.known_codes`)."""
        materials, warehouses = known_codes(engine)
        return cls(materials, warehouses)


# ------------------------------------------------------------------------------------------------- KIS


def kis_frame(rows: Iterable[InventoryRow]) -> pd.DataFrame:
    """ICInventory/List rows as a snapshot frame; ``source_line`` is the row's 1-based position."""
    records = [(r.material_number, r.stock_number, r.batch_no, r.base_qty) for r in rows]
    frame = pd.DataFrame(records, columns=[c.MATERIAL, c.WAREHOUSE, c.LOT, c.ON_HAND])
    frame[c.ON_HAND] = pd.to_numeric(frame[c.ON_HAND].astype("object"), errors="coerce")
    return c.normalize_snapshot_frame(frame, origin="ICInventory/List")


def pull_kis(
    engine: sa.Engine,
    client: KisClient,
    *,
    source: str,
    policy: SnapshotPolicy | None = None,
    catalog: Catalog | None = None,
) -> PullReport:
    """Read the whole 即时库存 listing and take it as one snapshot."""
    catalog = catalog or Catalog.from_store(engine)
    taken_at = _now()
    frame = kis_frame(client.iter_inventory())
    origin = f"{client.settings.base_url} ICInventory/List"
    outcome = ingest_snapshot(
        engine,
        source=source,
        frame=frame,
        origin=origin,
        policy=policy,
        taken_at=taken_at,
        known_materials=catalog.materials,
        known_warehouses=catalog.warehouses,
    )
    status: FileStatus = "refused" if outcome.refused else "loaded"
    return PullReport(source, [FileResult(origin, status, outcome, outcome.refused_reason or "")])


# ------------------------------------------------------------------------------------------------ SFTP


def _now() -> datetime:
    from crm_core.types import now_utc

    return now_utc()


def _taken_at(frame: pd.DataFrame, fallback: datetime) -> datetime:
    """The snapshot time the file states (latest ``snapshot_at``), else the file's mtime."""
    if "snapshot_at" in frame.columns:
        stamps = pd.to_datetime(frame["snapshot_at"], errors="coerce", utc=True).dropna()
        if not stamps.empty:
            return stamps.max().to_pydatetime()
    return fallback


def snapshot_frame_from_csv(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """The reader's frame (canonical template columns + SOURCE_LINE) as a snapshot frame."""
    renamed = frame.rename(columns={SOURCE_LINE: c.SOURCE_LINE})
    return c.normalize_snapshot_frame(renamed, rename=c.TEMPLATE_TO_SNAPSHOT, origin=origin)


def _process_file(
    engine: sa.Engine,
    client: SftpDropClient,
    remote: RemoteFile,
    dialect: CsvDialect,
    *,
    source: str,
    policy: SnapshotPolicy | None,
    catalog: Catalog,
) -> FileResult:
    try:
        downloaded = client.download(remote)
    except FileChangedError as exc:
        return FileResult(remote.path, "waiting", message=str(exc))
    except FileRejectedError as exc:  # content does not match its manifest's sha256
        outcome = refuse_snapshot(engine, source=source, origin=remote.path, reason=str(exc))
        client.move_to_failed(remote, reason=str(exc))
        return FileResult(remote.path, "refused", outcome, str(exc))
    identity = FileIdentity(remote.path, downloaded.size, downloaded.sha256)
    try:
        with engine.connect() as conn:
            seen = already_processed(conn, source=source, path=remote.path, sha256=downloaded.sha256)
        if seen:
            client.archive(remote)
            return FileResult(remote.path, "duplicate", message="already processed; archived again")
        try:
            parsed = read_csv_file(
                downloaded.local_path,
                dialect,
                expected_rows=downloaded.expected_rows,
                display_name=remote.path,
            )
        except FileRejectedError as exc:
            outcome = refuse_snapshot(
                engine,
                source=source,
                origin=remote.path,
                reason=str(exc),
                taken_at=remote.mtime,
                checksum=downloaded.sha256,
                file=identity,
            )
        else:
            outcome = ingest_snapshot(
                engine,
                source=source,
                frame=snapshot_frame_from_csv(parsed.frame, remote.path),
                origin=remote.path,
                policy=policy,
                taken_at=_taken_at(parsed.frame, remote.mtime),
                checksum=downloaded.sha256,
                parse_problems=parsed.problems,
                rows_read=parsed.rows_read,
                expected_rows=downloaded.expected_rows,
                known_materials=catalog.materials,
                known_warehouses=catalog.warehouses,
                file=identity,
            )
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(downloaded.local_path).unlink()
    if outcome.refused:
        client.move_to_failed(remote, reason=outcome.refused_reason)
        return FileResult(remote.path, "refused", outcome, outcome.refused_reason or "")
    client.archive(remote)
    return FileResult(remote.path, "loaded", outcome)


def pull_sftp(
    engine: sa.Engine,
    client: SftpDropClient,
    dialect: CsvDialect,
    *,
    source: str,
    policy: SnapshotPolicy | None = None,
    catalog: Catalog | None = None,
    on_file: Callable[[FileResult], None] | None = None,
) -> PullReport:
    """Process every complete file of the drop (oldest first); ``on_file`` is called after each."""
    catalog = catalog or Catalog.from_store(engine)
    report = PullReport(source)
    for remote in client.list_complete_files():
        result = _process_file(engine, client, remote, dialect, source=source, policy=policy, catalog=catalog)
        report.files.append(result)
        log.info("%s: %s %s %s", source, remote.path, result.status, result.message)
        if on_file is not None:
            on_file(result)
    for path, reason in getattr(client, "waiting", []):
        report.files.append(FileResult(path, "waiting", message=reason))
    return report


# ------------------------------------------------------------------------------------- configured sources


def policy_for(source: InventorySource, *, max_shrink: float | None = None) -> SnapshotPolicy:
    """The refusal policy of a configured stream: its reject threshold and ``max_shrink``.

    ``max_shrink`` given here (the CLI's ``--max-shrink``) wins over the stream's configured value.
    """
    stream = source.template.streams.inventory
    assert stream is not None  # inventory_sources only returns connections with the stream
    # CSV drops carry their own reject_threshold; API streams use their validation's blocking threshold.
    share = (
        stream.reject_threshold if isinstance(stream, CsvDropStream) else stream.validation.blocking_threshold
    )
    shrink = stream.max_shrink if max_shrink is None else max_shrink
    return SnapshotPolicy(max_shrink=float(shrink), max_reject_share=float(share))


def pull_source(
    engine: sa.Engine,
    source: InventorySource,
    *,
    local_dir: Path,
    where: str = "hub.yaml",
    policy: SnapshotPolicy | None = None,
    on_file: Callable[[FileResult], None] | None = None,
) -> PullReport:
    """Pull one configured connection (``kingdee_kis`` or ``erp_sftp_csv``) into the store."""
    policy = policy or policy_for(source)
    catalog = Catalog.from_store(engine)
    template = source.template
    if isinstance(template, KingdeeKisTemplate):
        from connectors.kingdee.kis import KisClient
        from hub.config import kis_settings

        client = KisClient(kis_settings(source.name, template, where=where))
        try:
            report = pull_kis(engine, client, source=source.name, policy=policy, catalog=catalog)
        finally:
            client.close()
        if on_file is not None:
            for result in report.files:
                on_file(result)
        return report
    from connectors.filedrop import SftpDropClient

    stream = template.streams.inventory
    assert stream is not None
    stream_where = f"{where}: connections.{source.name}.streams.inventory"
    settings = sftp_settings(source.name, template, stream, local_dir=local_dir / source.name, where=where)
    dialect = csv_dialect(stream, where=stream_where)
    with SftpDropClient(settings) as sftp:
        sftp.remove_stale_partials()
        return pull_sftp(
            engine, sftp, dialect, source=source.name, policy=policy, catalog=catalog, on_file=on_file
        )
