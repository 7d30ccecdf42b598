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

**Pipelined on PostgreSQL** (the same steps, overlapped): the file is read in blocks while it downloads
(the download itself unchanged: temporary name, sha256, atomic rename), and each block is COPYed by a
background thread while the next one is parsed and checked, all in one transaction
(:func:`hub.inventory.snapshot.ingest_snapshot_stream`). Nothing commits before the download returned
and the whole file was validated: a disconnect, a file changed meanwhile, a sha256 or row-count
mismatch, duplicates across blocks, a shrink or too many rejects roll back or fix up what was copied
before anything is put in force. A download that starts over (retry) abandons the pipeline and the
downloaded file is loaded in blocks afterwards. Files with a trailer line, and paths processed before
(a re-drop is only recognised by its sha256), are downloaded first, then loaded in blocks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Set
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import pandas as pd
import sqlalchemy as sa

from connectors.filedrop import SOURCE_LINE, CsvDialect, FileChangedError, FileRejectedError, read_csv_file
from connectors.filedrop.csv_dialect import CsvBlockReader, GrowingBytes, StreamAbandoned
from hub.config.models import KingdeeKisTemplate
from hub.config.models.files import CsvDropStream
from hub.inventory import columns as c
from hub.inventory.load import PROCESSED, FileIdentity, already_processed
from hub.inventory.snapshot import (
    SnapshotBlock,
    SnapshotOutcome,
    ingest_snapshot,
    ingest_snapshot_stream,
    known_codes,
    refuse_snapshot,
)
from hub.inventory.sources import InventorySource, csv_dialect, sftp_settings
from hub.inventory.validate import SnapshotPolicy

if TYPE_CHECKING:
    from connectors.filedrop import DownloadedFile, RemoteFile, SftpDropClient
    from connectors.kingdee.kis import InventoryRow, KisClient

log = logging.getLogger(__name__)

FileStatus = Literal["loaded", "refused", "duplicate", "waiting"]


class Refusable(Protocol):
    """What a file's outcome says, whatever the stream (inventory snapshot, incoming supply)."""

    @property
    def refused(self) -> bool: ...

    @property
    def refused_reason(self) -> str | None: ...


OutcomeT = TypeVar("OutcomeT", bound=Refusable)


@dataclass(frozen=True)
class FileResult(Generic[OutcomeT]):
    """What happened to one remote file."""

    path: str
    status: FileStatus
    outcome: OutcomeT | None = None
    message: str = ""


@dataclass
class PullReport(Generic[OutcomeT]):
    """One pull of one source: the files seen (SFTP) or the one listing (KIS), and their outcomes."""

    source: str
    files: list[FileResult[OutcomeT]] = field(default_factory=list)

    @property
    def outcomes(self) -> list[OutcomeT]:
        """Files taken (loaded or refused), in order."""
        return [f.outcome for f in self.files if f.outcome is not None]

    @property
    def refused(self) -> list[OutcomeT]:
        """Files refused whole: each needs an ops alert."""
        return [o for o in self.outcomes if o.refused]

    @property
    def loaded(self) -> list[OutcomeT]:
        """Files put in force."""
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
) -> PullReport[SnapshotOutcome]:
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
    return c.normalize_snapshot_frame(frame, rename=_CSV_TO_SNAPSHOT, origin=origin)


_CSV_TO_SNAPSHOT = {**c.TEMPLATE_TO_SNAPSHOT, SOURCE_LINE: c.SOURCE_LINE}


BLOCK_BYTES = 4 << 20
"""Bytes of the downloaded file per block of the pipelined load (about 60k rows of a typical export)."""
_MAX_BLOCKS = 32  # a cap on per-block overheads (COPY statements, frames to concatenate) for huge files


def _block_taken_at(frame: pd.DataFrame) -> datetime | None:
    """The latest ``snapshot_at`` a block states, if any."""
    if "snapshot_at" not in frame.columns:
        return None
    column = frame["snapshot_at"]
    if isinstance(column.dtype, pd.DatetimeTZDtype):  # what the reader gives a datetime column
        latest = column.max()
        return None if pd.isna(latest) else latest.tz_convert("UTC").to_pydatetime()
    stamps = pd.to_datetime(column, errors="coerce", utc=True).dropna()
    return None if stamps.empty else stamps.max().to_pydatetime()


def _snapshot_blocks(
    reader: CsvBlockReader, origin: str, expected_rows: int | None, stages: dict[str, float]
) -> Iterator[SnapshotBlock]:
    """The reader's blocks as snapshot blocks; the row count is checked after the last one."""
    blocks = iter(reader)
    while True:
        since = time.perf_counter()
        block = next(blocks, None)
        parsed = time.perf_counter()
        stages["parse"] = stages.get("parse", 0.0) + parsed - since
        if block is None:
            break
        frame = snapshot_frame_from_csv(block.frame, origin)
        taken = _block_taken_at(block.frame)
        stages["normalise"] = stages.get("normalise", 0.0) + time.perf_counter() - parsed
        yield SnapshotBlock(frame, block.problems, block.rows_read, taken)
    reader.finish(expected_rows)


def _ingest_in_blocks(
    engine: sa.Engine,
    downloaded: DownloadedFile,
    remote: RemoteFile,
    dialect: CsvDialect,
    *,
    source: str,
    policy: SnapshotPolicy | None,
    catalog: Catalog,
    file: FileIdentity,
    block_bytes: int,
    stages: dict[str, float],
) -> SnapshotOutcome:
    """Read the downloaded file in blocks and load each while the next is parsed (PostgreSQL)."""
    since = time.perf_counter()
    try:
        data = Path(downloaded.local_path).read_bytes()
    except OSError as exc:
        raise FileRejectedError(f"{remote.path}: cannot read the file ({exc}).", path=remote.path) from exc
    reader = _block_reader(data, len(data), dialect, remote, block_bytes)
    stages["parse"] = time.perf_counter() - since
    return _load_blocks(
        engine,
        reader,
        remote,
        source=source,
        policy=policy,
        catalog=catalog,
        expected_rows=downloaded.expected_rows,
        stages=stages,
        file=file,
        checksum=downloaded.sha256,
    )


def _block_reader(
    data: bytes | GrowingBytes, size: int, dialect: CsvDialect, remote: RemoteFile, block_bytes: int
) -> CsvBlockReader:
    """A block reader of ``size`` bytes, in at most ``_MAX_BLOCKS`` blocks."""
    block_bytes = max(block_bytes, size // _MAX_BLOCKS + 1)
    return CsvBlockReader(data, dialect, name=remote.path, block_bytes=block_bytes)


def _load_blocks(
    engine: sa.Engine,
    reader: CsvBlockReader,
    remote: RemoteFile,
    *,
    source: str,
    policy: SnapshotPolicy | None,
    catalog: Catalog,
    expected_rows: int | None,
    stages: dict[str, float],
    file: FileIdentity | None = None,
    checksum: str | None = None,
    identify: Callable[[], FileIdentity] | None = None,
) -> SnapshotOutcome:
    """Validate and load the reader's blocks as the source's next snapshot (see ingest_snapshot_stream);
    the file's identity is ``file`` + ``checksum``, or what ``identify`` returns after the last block."""
    return ingest_snapshot_stream(
        engine,
        source=source,
        blocks=_snapshot_blocks(reader, remote.path, expected_rows, stages),
        origin=remote.path,
        policy=policy,
        taken_at=remote.mtime,
        checksum=checksum,
        expected_rows=expected_rows,
        known_materials=catalog.materials,
        known_warehouses=catalog.warehouses,
        file=file,
        identify=identify,
        stages=stages,
    )


class _AlreadyProcessed(Exception):
    """The file that just arrived is in the processed-file registry (same path and sha256)."""


def _can_stream(engine: sa.Engine, source: str, remote: RemoteFile, dialect: CsvDialect) -> bool:
    """Whether to load the file while it downloads: PostgreSQL, no trailer line (the file's last line
    is only known at its end), and no file of that path processed before (a re-dropped file is
    recognised by its sha256 after the download, before any load)."""
    if engine.dialect.name != "postgresql" or dialect.trailer_regex:
        return False
    with engine.connect() as conn:
        seen = conn.execute(
            sa.select(PROCESSED.c.id)
            .where(PROCESSED.c.source == source, PROCESSED.c.path == remote.path[:500])
            .limit(1)
        ).first()
    return seen is None


def _remove_download(box: dict[str, Any]) -> None:
    if "file" in box:
        with contextlib.suppress(FileNotFoundError):
            Path(box["file"].local_path).unlink()


def _process_streamed(
    engine: sa.Engine,
    client: SftpDropClient,
    remote: RemoteFile,
    dialect: CsvDialect,
    *,
    source: str,
    policy: SnapshotPolicy | None,
    catalog: Catalog,
    block_bytes: int,
    stages: dict[str, float],
) -> FileResult | DownloadedFile:
    """Download ``remote`` on a thread and load it block by block as its bytes arrive (PostgreSQL).

    The download keeps every guarantee of :meth:`SftpDropClient.download` (temporary name, size and
    sha256 checked, atomic rename): the load runs in one transaction that commits only after the
    download returned, so a disconnect, a file changed meanwhile or a sha256 mismatch rolls back
    whatever was loaded. When the download starts over (a retry after a disconnect), the load is rolled
    back and the downloaded file is returned for the caller to load as usual.
    """
    buffer = GrowingBytes()
    box: dict[str, Any] = {}

    def download() -> None:
        started = time.perf_counter()
        try:
            box["file"] = client.download(remote, sink=buffer)
        except BaseException as exc:  # handed to the pulling thread below
            box["error"] = exc
        finally:
            buffer.close(ok="file" in box)
            stages["download_overlapped"] = time.perf_counter() - started

    def identify() -> FileIdentity:
        thread.join()  # the reader saw the download end whole: it has returned
        done: DownloadedFile = box["file"]
        with engine.connect() as conn:
            if already_processed(conn, source=source, path=remote.path, sha256=done.sha256):
                raise _AlreadyProcessed(remote.path)
        return FileIdentity(remote.path, done.size, done.sha256)

    thread = threading.Thread(target=download, name="inventory-download", daemon=True)
    thread.start()
    outcome: SnapshotOutcome | None = None
    problem: FileRejectedError | None = None
    duplicate = False
    try:
        outcome = _load_blocks(
            engine,
            _block_reader(buffer, remote.size, dialect, remote, block_bytes),
            remote,
            source=source,
            policy=policy,
            catalog=catalog,
            expected_rows=remote.expected_rows,
            stages=stages,
            identify=identify,
        )
    except StreamAbandoned:
        pass  # the download failed or started over: see below
    except _AlreadyProcessed:
        duplicate = True
    except FileRejectedError as exc:  # cut off, drifted, undecodable, short of its manifest
        problem = exc
    except BaseException:
        thread.join()
        _remove_download(box)
        raise
    thread.join()
    if outcome is not None or problem is not None or duplicate:
        _remove_download(box)  # else the caller loads it (the download started over)
    error = box.get("error")
    if error is not None:
        if isinstance(error, FileChangedError):
            return FileResult(remote.path, "waiting", message=str(error))
        if isinstance(error, FileRejectedError):  # content does not match its manifest's sha256
            refused = refuse_snapshot(engine, source=source, origin=remote.path, reason=str(error))
            client.move_to_failed(remote, reason=str(error))
            return FileResult(remote.path, "refused", refused, str(error))
        raise error
    downloaded: DownloadedFile = box["file"]
    if duplicate:
        client.archive(remote)
        return FileResult(remote.path, "duplicate", message="already processed; archived again")
    if problem is not None:
        outcome = refuse_snapshot(
            engine,
            source=source,
            origin=remote.path,
            reason=str(problem),
            taken_at=remote.mtime,
            checksum=downloaded.sha256,
            file=FileIdentity(remote.path, downloaded.size, downloaded.sha256),
        )
    if outcome is None:
        log.info("%s: %s: the download started over; loading the downloaded file", source, remote.path)
        return downloaded
    return settle(client, remote, outcome)


# The per-file steps every SFTP stream shares (inventory snapshots here, incoming supply in
# hub.inventory.supply); what a stream records and loads comes in as a callable.


def download_or_refuse(
    client: SftpDropClient, remote: RemoteFile, refuse: Callable[[str], OutcomeT]
) -> DownloadedFile | FileResult[OutcomeT]:
    """Download ``remote``, or say why not: still changing (waiting), or content that fails its
    manifest's sha256 (recorded by ``refuse(reason)``, moved to failed/)."""
    try:
        return client.download(remote)
    except FileChangedError as exc:
        return FileResult(remote.path, "waiting", message=str(exc))
    except FileRejectedError as exc:  # content does not match its manifest's sha256
        outcome = refuse(str(exc))
        client.move_to_failed(remote, reason=str(exc))
        return FileResult(remote.path, "refused", outcome, str(exc))


def take_downloaded(
    engine: sa.Engine,
    client: SftpDropClient,
    remote: RemoteFile,
    downloaded: DownloadedFile,
    *,
    registry: str,
    load: Callable[[FileIdentity], OutcomeT],
) -> FileResult[OutcomeT]:
    """Archive the file again if ``registry`` (``processed_files.source``) has it, else ``load`` it and
    settle it on the server; the local copy is removed either way."""
    try:
        with engine.connect() as conn:
            seen = already_processed(conn, source=registry, path=remote.path, sha256=downloaded.sha256)
        if seen:
            client.archive(remote)
            return FileResult(remote.path, "duplicate", message="already processed; archived again")
        outcome = load(FileIdentity(remote.path, downloaded.size, downloaded.sha256))
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(downloaded.local_path).unlink()
    return settle(client, remote, outcome)


def settle(client: SftpDropClient, remote: RemoteFile, outcome: OutcomeT) -> FileResult[OutcomeT]:
    """Move a processed file on the server: to failed/ with the reason when refused, else to archive/."""
    if outcome.refused:
        client.move_to_failed(remote, reason=outcome.refused_reason)
        return FileResult(remote.path, "refused", outcome, outcome.refused_reason or "")
    client.archive(remote)
    return FileResult(remote.path, "loaded", outcome)


def pull_drop(
    client: SftpDropClient,
    process: Callable[[RemoteFile], FileResult[OutcomeT]],
    *,
    source: str,
    label: str,
    on_file: Callable[[FileResult[OutcomeT]], None] | None,
    logger: logging.Logger = log,
) -> PullReport[OutcomeT]:
    """``process`` every complete file of the drop, oldest first (``on_file`` after each); files still
    being written are reported as waiting. ``label`` starts each file's log line."""
    report: PullReport[OutcomeT] = PullReport(source)
    for remote in client.list_complete_files():
        result = process(remote)
        report.files.append(result)
        logger.info("%s: %s %s %s", label, remote.path, result.status, result.message)
        if on_file is not None:
            on_file(result)
    for path, reason in getattr(client, "waiting", []):
        report.files.append(FileResult(path, "waiting", message=reason))
    return report


def _process_file(
    engine: sa.Engine,
    client: SftpDropClient,
    remote: RemoteFile,
    dialect: CsvDialect,
    *,
    source: str,
    policy: SnapshotPolicy | None,
    catalog: Catalog,
    block_bytes: int = BLOCK_BYTES,
) -> FileResult[SnapshotOutcome]:
    stages: dict[str, float] = {}
    started = time.perf_counter()
    if _can_stream(engine, source, remote, dialect):
        streamed = _process_streamed(
            engine, client, remote, dialect, source=source, policy=policy, catalog=catalog,
            block_bytes=block_bytes, stages=stages,
        )  # fmt: skip
        if isinstance(streamed, FileResult):
            return streamed
        downloaded = streamed  # the download started over: load the file it left, as below
    else:
        fetched = download_or_refuse(
            client,
            remote,
            lambda reason: refuse_snapshot(engine, source=source, origin=remote.path, reason=reason),
        )
        if isinstance(fetched, FileResult):
            return fetched
        downloaded = fetched
    stages["download"] = time.perf_counter() - started

    def load(identity: FileIdentity) -> SnapshotOutcome:
        try:
            if engine.dialect.name == "postgresql":
                outcome = _ingest_in_blocks(
                    engine, downloaded, remote, dialect, source=source, policy=policy, catalog=catalog,
                    file=identity, block_bytes=block_bytes, stages=stages,
                )  # fmt: skip
                parsed = None
            else:
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
            if parsed is not None:
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
        return replace(outcome, stages={**stages, **outcome.stages})

    return take_downloaded(engine, client, remote, downloaded, registry=source, load=load)


def pull_sftp(
    engine: sa.Engine,
    client: SftpDropClient,
    dialect: CsvDialect,
    *,
    source: str,
    policy: SnapshotPolicy | None = None,
    catalog: Catalog | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> PullReport[SnapshotOutcome]:
    """Process every complete file of the drop (oldest first); ``on_file`` is called after each.

    On PostgreSQL a file is loaded in blocks of about ``block_bytes`` (each COPYed while the next one
    is parsed, all in one transaction: :func:`hub.inventory.snapshot.ingest_snapshot_stream`).
    """
    known = catalog or Catalog.from_store(engine)

    def process(remote: RemoteFile) -> FileResult[SnapshotOutcome]:
        return _process_file(
            engine, client, remote, dialect, source=source, policy=policy, catalog=known,
            block_bytes=block_bytes,
        )  # fmt: skip

    return pull_drop(client, process, source=source, label=source, on_file=on_file)


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
) -> PullReport[SnapshotOutcome]:
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
