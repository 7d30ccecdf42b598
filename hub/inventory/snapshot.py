"""Take one inventory snapshot into the store: validate, then load it or refuse it whole.

:func:`ingest_snapshot` is the one entry point for a parsed snapshot, whatever its source (KIS API,
SFTP CSV drop). In one transaction it either

- loads the accepted rows (bulk), puts the snapshot in force, supersedes the previous one, records the
  held-back rows in the quarantine with their line numbers, and registers the file as processed; or
- records the snapshot as ``refused`` with the reason (and the quarantine rows, so ops can see why),
  leaves the previous snapshot in force, and registers the file as processed-and-refused.

The caller alerts ops when :attr:`SnapshotOutcome.refused` is set. :func:`refuse_snapshot` records a
snapshot refused before it could be parsed (file cut off, schema drift, wrong encoding).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_core.models import Product, Warehouse
from crm_core.types import now_utc
from hub.inventory import columns as c
from hub.inventory import diff as diffs
from hub.inventory import load as store
from hub.inventory.columns import PositionKeys
from hub.inventory.diff import SnapshotDiff, diff_snapshots
from hub.inventory.validate import (
    SnapshotPolicy,
    ValidatedSnapshot,
    catalog_checks,
    refusal_reason,
    row_checks,
    suspect_rows,
    validate_snapshot,
)

log = logging.getLogger(__name__)
_DIFF_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inventory-diff")

Status = Literal["in_force", "refused"]


@dataclass(frozen=True)
class SnapshotOutcome:
    """The result of taking one snapshot: what was loaded or why it was refused."""

    source: str
    origin: str
    status: Status
    snapshot_id: int
    previous_id: int | None
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    refused_reason: str | None
    diff: SnapshotDiff | None
    seconds: float
    stages: Mapping[str, float] = field(default_factory=dict)  # wall seconds per stage, when measured

    @property
    def refused(self) -> bool:
        """True when the snapshot was refused whole (the previous one stays in force): alert ops."""
        return self.status == "refused"


def quarantine_stream(source: str) -> str:
    """The quarantine stream name of a source's inventory rows."""
    return f"{source}.inventory"


def known_codes(engine: sa.Engine) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """Material and warehouse codes the catalog knows (ERP numbers), or None where it has none yet.

    Materials are products' ``erp_material_code``; warehouses are ``erp_stock_code`` and ``code`` (a
    file may use either). An empty catalog checks nothing rather than refusing every row of a new hub.
    """
    products = Product.__table__
    warehouses = Warehouse.__table__
    with engine.connect() as conn:
        materials = frozenset(
            conn.execute(
                sa.select(products.c.erp_material_code).where(products.c.erp_material_code.is_not(None))
            )
            .scalars()
            .all()
        )
        stocks: set[str] = set()
        for code, erp_code in conn.execute(sa.select(warehouses.c.code, warehouses.c.erp_stock_code)):
            stocks.add(code)
            if erp_code:
                stocks.add(erp_code)
    return (materials or None), (frozenset(stocks) or None)


def ingest_snapshot(
    engine: sa.Engine,
    *,
    source: str,
    frame: pd.DataFrame,
    origin: str,
    policy: SnapshotPolicy | None = None,
    taken_at: datetime | None = None,
    checksum: str | None = None,
    parse_problems: Sequence[Any] = (),
    rows_read: int | None = None,
    expected_rows: int | None = None,
    known_materials: Iterable[str] | None = None,
    known_warehouses: Iterable[str] | None = None,
    file: store.FileIdentity | None = None,
    diff_limit: int = 100,
    keep_positions: int = 2,
) -> SnapshotOutcome:
    """Validate a snapshot frame (:mod:`hub.inventory.columns`) and load it or refuse it, atomically.

    Args:
        source: connection name; one snapshot per source is in force.
        frame: normalised snapshot rows with ``source_line``.
        origin: how messages and quarantine rows name the data (server path or API endpoint).
        policy: refusal thresholds (:class:`SnapshotPolicy`).
        parse_problems, rows_read, expected_rows: what the reader reported (see validate_snapshot).
        known_materials, known_warehouses: codes to accept (None: not checked).
        file: registers the file in ``processed_files`` in the same transaction.
        diff_limit: rows of each kind listed in the diff against the previous snapshot (0: counts only).
        keep_positions: positions are kept for this many newest loaded snapshots of the source (the
            in-force one and the one the next diff needs); older ones keep only their header. 0 keeps all.
    """
    started = time.perf_counter()
    policy = policy or SnapshotPolicy()
    checked = validate_snapshot(
        frame,
        known_materials=known_materials,
        known_warehouses=known_warehouses,
        parse_problems=parse_problems,
        rows_read=rows_read,
        expected_rows=expected_rows,
    )
    taken = taken_at or now_utc()
    pending: Future[SnapshotDiff | None] | None = None
    with engine.begin() as conn:
        store.lock_source(conn, source)
        previous = store.in_force(conn, source)
        reason = refusal_reason(
            checked, previous_rows=previous.rows_read if previous else None, policy=policy, origin=origin
        )
        if reason is not None:
            snapshot_id = _write_refused(conn, source, origin, reason, taken, checksum, checked, file)
            outcome = SnapshotOutcome(
                source, origin, "refused", snapshot_id, previous.snapshot_id if previous else None,
                checked.rows_read, 0, checked.rejected_count, reason, None, 0.0,
            )  # fmt: skip
        else:
            snapshot_id = store.insert_snapshot(
                conn,
                source=source,
                taken_at=taken,
                status="loading",
                rejected_count=checked.rejected_count,
                origin=origin,
                checksum=checksum,
            )
            # The in-process diff (numpy, GIL mostly released) runs while PostgreSQL ingests the COPY
            # (started once the payload is built, so that it does not compete with building it).
            started_diff: list[Future[SnapshotDiff | None]] = []
            old_keys = _remembered_keys(conn, source, previous, checked)

            def start_diff() -> None:
                if previous is not None and old_keys is not None and checked.keys is not None:
                    started_diff.append(
                        _DIFF_POOL.submit(
                            diffs.diff_keys, previous.snapshot_id, old_keys, snapshot_id, checked.keys,
                            limit=diff_limit,
                        )
                    )  # fmt: skip

            loaded = store.copy_positions(conn, snapshot_id, checked.accepted, before_copy=start_diff)
            pending = started_diff[0] if started_diff else None
            store.write_quarantine(
                conn,
                stream=quarantine_stream(source),
                origin=origin,
                snapshot_id=snapshot_id,
                rejects=checked.rejects,
            )
            old = store.activate_snapshot(conn, source=source, snapshot_id=snapshot_id, row_count=loaded)
            if file is not None:
                store.record_processed_file(
                    conn, source=source, file=file, status="loaded", snapshot_id=snapshot_id
                )
            outcome = SnapshotOutcome(
                source, origin, "in_force", snapshot_id, old, checked.rows_read, loaded,
                checked.rejected_count, None, None, 0.0,
            )  # fmt: skip
    diff = _after_commit(engine, source, outcome, pending, checked, diff_limit, keep_positions)
    seconds = time.perf_counter() - started
    _log(outcome, diff)
    return replace(outcome, diff=diff, seconds=seconds)


def _after_commit(
    engine: sa.Engine,
    source: str,
    outcome: SnapshotOutcome,
    pending: Future[SnapshotDiff | None] | None,
    checked: ValidatedSnapshot,
    diff_limit: int,
    keep_positions: int,
) -> SnapshotDiff | None:
    """Once a load committed: its diff (in process if it was started, else SQL), keys kept, pruning."""
    if outcome.status != "in_force":
        return None
    early = None
    if pending is not None:
        try:
            early = pending.result()
        except Exception:  # the load is committed; the SQL diff below gives the same answer
            log.exception("in-process diff of snapshot %s failed; diffing in SQL", outcome.snapshot_id)
    with engine.connect() as conn:
        diff = _diff(conn, source, outcome, early, diff_limit)
        if checked.keys is not None:
            diffs.remember(conn, source=source, snapshot_id=outcome.snapshot_id, keys=checked.keys)
    if outcome.previous_id is not None and keep_positions:
        with engine.begin() as conn:
            store.prune_positions(conn, source=source, keep=keep_positions)
    return diff


@dataclass(frozen=True)
class SnapshotBlock:
    """One block of a snapshot read in blocks (:func:`ingest_snapshot_stream`).

    ``frame`` is normalised (:mod:`hub.inventory.columns`); ``parse_problems`` and ``rows_read`` are
    what the reader reported for the block; ``taken_at`` the latest time the block states, if any.
    """

    frame: pd.DataFrame
    parse_problems: Sequence[Any] = ()
    rows_read: int = 0
    taken_at: datetime | None = None


def ingest_snapshot_stream(
    engine: sa.Engine,
    *,
    source: str,
    blocks: Iterable[SnapshotBlock],
    origin: str,
    policy: SnapshotPolicy | None = None,
    taken_at: datetime | None = None,
    checksum: str | None = None,
    expected_rows: int | None = None,
    known_materials: Iterable[str] | None = None,
    known_warehouses: Iterable[str] | None = None,
    file: store.FileIdentity | None = None,
    diff_limit: int = 100,
    keep_positions: int = 2,
    stages: dict[str, float] | None = None,
    identify: Callable[[], store.FileIdentity] | None = None,
    copy_in_blocks: bool = True,
) -> SnapshotOutcome:
    """:func:`ingest_snapshot` for a snapshot that arrives in blocks: each block is loaded while the
    next one is read (PostgreSQL; elsewhere the blocks are gathered and loaded as one frame).

    The guarantees are those of :func:`ingest_snapshot`, because everything happens in one transaction
    and nothing is decided before the last block was read:

    - each block's rows are checked on their own (presence, widths, signs; the catalog once all rows
      are in); the rows that pass are COPYed by a background thread
      (:class:`~hub.inventory.load.BlockCopier`) into the snapshot's own table, created without its
      key, the others kept aside; after the last block that thread builds the key while the whole
      snapshot is validated (a repeated key fails the build alone, under a savepoint);
    - after the last block, the whole snapshot is validated as :func:`validate_snapshot` does (the
      duplicate check over every row, Great Expectations deciding each failure) and the refusal rules
      run on the whole-file counts. A refused snapshot rolls back every COPYed block (a savepoint
      around the load) and is recorded as refused; the previous snapshot stays in force;
    - otherwise the positions are made exactly the accepted rows: copies of a duplicated key that were
      COPYed are deleted, accepted rows not COPYed (a suspect row the suite passed) are COPYed now;
      the count is checked against the accepted rows, then the table gets its key if it has none yet
      and becomes the snapshot's partition (crm_core.positions);
    - an exception from ``blocks`` (a file found cut off or undecodable half-way) rolls back everything
      and is raised: the caller records the refusal (:func:`refuse_snapshot`).

    ``identify`` is for a file whose identity (sha256) is known only once its last block arrived: it is
    called after the last block and replaces ``file`` and ``checksum``.

    ``stages`` receives wall seconds per stage (``validate``, ``copy_wait``: the COPY and key build not
    hidden behind validation, ``key``: fixing duplicates and attaching the partition, ``finish``,
    ``diff``; ``payload_busy``, ``copy_busy`` and ``key_busy`` are the COPY thread's times, overlapped
    with the others).
    """
    stages = stages if stages is not None else {}
    if engine.dialect.name != "postgresql" or not copy_in_blocks:
        gathered = list(blocks)
        if identify is not None:
            file = identify()
            checksum = file.sha256
        parts = [b.frame for b in gathered]
        given = [b.taken_at for b in gathered if b.taken_at is not None]
        since = time.perf_counter()
        whole = ingest_snapshot(
            engine,
            source=source,
            frame=pd.concat(parts, ignore_index=True)
            if parts
            else c.normalize_snapshot_frame(pd.DataFrame(columns=[c.MATERIAL, c.WAREHOUSE, c.ON_HAND])),
            origin=origin,
            policy=policy,
            taken_at=max(given) if given else taken_at,
            checksum=checksum,
            parse_problems=[p for b in gathered for p in b.parse_problems],
            rows_read=sum(b.rows_read for b in gathered),
            expected_rows=expected_rows,
            known_materials=known_materials,
            known_warehouses=known_warehouses,
            file=file,
            diff_limit=diff_limit,
            keep_positions=keep_positions,
        )
        stages["load"] = time.perf_counter() - since  # validate + COPY + diff, one after the other
        return replace(whole, stages=dict(stages))
    started = time.perf_counter()
    policy = policy or SnapshotPolicy()
    materials = None if known_materials is None else frozenset(known_materials)
    warehouses = None if known_warehouses is None else frozenset(known_warehouses)
    taken = taken_at or now_utc()
    pending: Future[SnapshotDiff | None] | None = None

    def clock(stage: str, since: float) -> float:
        now = time.perf_counter()
        stages[stage] = stages.get(stage, 0.0) + now - since
        return now

    with engine.begin() as conn:
        store.lock_source(conn, source)
        previous = store.in_force(conn, source)
        old_keys = (
            diffs.remembered(conn, source=source, snapshot_id=previous.snapshot_id) if previous else None
        )
        load = conn.begin_nested()  # a refusal rolls the load back to here
        snapshot_id = store.insert_snapshot(
            conn, source=source, taken_at=taken, status="loading", origin=origin, checksum=checksum
        )
        copier = store.BlockCopier(conn, snapshot_id)
        frames: list[pd.DataFrame] = []
        block_checks: list[dict[str, np.ndarray]] = []
        submitted: list[np.ndarray] = []  # per block: the rows handed to the COPY thread
        problems: list[Any] = []
        rows_read = 0
        stamps: list[datetime] = []
        try:
            for block in blocks:
                since = time.perf_counter()
                frame = block.frame.reset_index(drop=True)
                # The catalog checks wait for the whole snapshot (below): a row naming an unknown code
                # is copied, then deleted like a rejected duplicate. Per block, they cost a hash set of
                # the 50k catalog codes each time; once, they come free with the snapshot's keys.
                checks = row_checks(frame, None, None)
                clean = ~suspect_rows(frame, checks)
                since = clock("validate", since)
                copier.submit(frame if clean.all() else frame.loc[clean])
                frames.append(frame)
                block_checks.append(checks)
                submitted.append(clean)
                problems.extend(block.parse_problems)
                rows_read += block.rows_read
                if block.taken_at is not None:
                    stamps.append(block.taken_at)
            copier.build_key()  # on the COPY thread, while the whole snapshot is validated below
            if identify is not None:
                file = identify()
                checksum = file.sha256
            since = time.perf_counter()
            if frames:
                full = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
                checks = {k: np.concatenate([b[k] for b in block_checks]) for k in block_checks[0]}
            else:
                full = c.normalize_snapshot_frame(pd.DataFrame(columns=[c.MATERIAL, c.WAREHOUSE, c.ON_HAND]))
                checks = row_checks(full, None, None)
            keys = c.PositionKeys.of(full, materials, warehouses, old_keys.lots if old_keys else None)
            checks |= catalog_checks(full, materials, warehouses, keys)
            checked = validate_snapshot(
                full,
                known_materials=materials,
                known_warehouses=warehouses,
                parse_problems=problems,
                rows_read=rows_read,
                expected_rows=expected_rows,
                keys=keys,
                checks=checks,
            )
            reason = refusal_reason(
                checked, previous_rows=previous.rows_read if previous else None, policy=policy, origin=origin
            )
            if reason is None and previous is not None and old_keys is not None and checked.keys is not None:
                # The in-process diff (numpy, GIL mostly released) overlaps the last blocks' COPY.
                pending = _DIFF_POOL.submit(
                    diffs.diff_keys, previous.snapshot_id, old_keys, snapshot_id, checked.keys,
                    limit=diff_limit,
                )  # fmt: skip
            since = clock("validate", since)
            copier.drain()
            since = clock("copy_wait", since)
            if reason is None:
                rejected_lines = np.fromiter((r.line for r in checked.rejects), dtype=np.int64)
                accepted = ~full[c.SOURCE_LINE].isin(rejected_lines).to_numpy()
                loaded = np.concatenate(submitted) if submitted else np.zeros(0, dtype=bool)
                deleted = copier.delete_keys(full.loc[loaded & ~accepted])
                added = copier.copy_now(full.loc[accepted & ~loaded])
                if copier.rows_copied - deleted + added != len(checked.accepted):
                    raise RuntimeError(
                        f"{origin}: snapshot {snapshot_id} holds {copier.rows_copied - deleted + added} "
                        f"positions after the load but {len(checked.accepted)} rows were accepted; rolled "
                        "back, nothing changed. Report this as a bug."
                    )
                copier.attach()
                since = clock("key", since)
        finally:
            copier.close()
        stages["copy_busy"] = copier.busy_seconds
        stages["key_busy"] = copier.key_seconds
        stages["payload_busy"] = copier.payload_seconds
        if reason is not None:
            load.rollback()
            snapshot_id = _write_refused(conn, source, origin, reason, taken, checksum, checked, file)
            outcome = SnapshotOutcome(
                source, origin, "refused", snapshot_id, previous.snapshot_id if previous else None,
                checked.rows_read, 0, checked.rejected_count, reason, None, 0.0,
            )  # fmt: skip
        else:
            store.write_quarantine(
                conn,
                stream=quarantine_stream(source),
                origin=origin,
                snapshot_id=snapshot_id,
                rejects=checked.rejects,
            )
            loaded_rows = len(checked.accepted)
            conn.execute(
                store.SNAPSHOTS.update()
                .where(store.SNAPSHOTS.c.id == snapshot_id)
                .values(
                    rejected_count=checked.rejected_count,
                    taken_at=max(stamps) if stamps else taken,
                    checksum=checksum,
                )
            )
            old = store.activate_snapshot(conn, source=source, snapshot_id=snapshot_id, row_count=loaded_rows)
            if file is not None:
                store.record_processed_file(
                    conn, source=source, file=file, status="loaded", snapshot_id=snapshot_id
                )
            load.commit()
            outcome = SnapshotOutcome(
                source, origin, "in_force", snapshot_id, old, checked.rows_read, loaded_rows,
                checked.rejected_count, None, None, 0.0,
            )  # fmt: skip
    since = clock("finish", since)
    diff = _after_commit(engine, source, outcome, pending, checked, diff_limit, keep_positions)
    clock("diff", since)
    _log(outcome, diff)
    return replace(outcome, diff=diff, seconds=time.perf_counter() - started, stages=dict(stages))


def _remembered_keys(
    conn: sa.Connection, source: str, previous: store.InForce | None, checked: ValidatedSnapshot
) -> PositionKeys | None:
    """The in-force snapshot's keys when this process loaded it (for the in-process diff)."""
    if previous is None or checked.keys is None:
        return None
    return diffs.remembered(conn, source=source, snapshot_id=previous.snapshot_id)


def _diff(
    conn: sa.Connection, source: str, outcome: SnapshotOutcome, early: SnapshotDiff | None, limit: int
) -> SnapshotDiff | None:
    """The diff against the snapshot this one superseded: the in-process one if it was computed against
    exactly that snapshot, else set-based SQL."""
    if outcome.previous_id is None:
        return None
    if early is not None and early.old_snapshot_id == outcome.previous_id:
        return early
    return diff_snapshots(conn, outcome.previous_id, outcome.snapshot_id, limit=limit)


def _write_refused(
    conn: sa.Connection,
    source: str,
    origin: str,
    reason: str,
    taken_at: datetime,
    checksum: str | None,
    checked: ValidatedSnapshot | None,
    file: store.FileIdentity | None,
) -> int:
    snapshot_id = store.insert_snapshot(
        conn,
        source=source,
        taken_at=taken_at,
        status="refused",
        row_count=0,
        rejected_count=checked.rejected_count if checked else 0,
        origin=origin,
        checksum=checksum,
        refused_reason=reason,
    )
    if checked is not None:
        store.write_quarantine(
            conn,
            stream=quarantine_stream(source),
            origin=origin,
            snapshot_id=snapshot_id,
            rejects=checked.rejects,
        )
    if file is not None:
        store.record_processed_file(conn, source=source, file=file, status="refused", snapshot_id=snapshot_id)
    return snapshot_id


def refuse_snapshot(
    engine: sa.Engine,
    *,
    source: str,
    origin: str,
    reason: str,
    taken_at: datetime | None = None,
    checksum: str | None = None,
    file: store.FileIdentity | None = None,
) -> SnapshotOutcome:
    """Record a snapshot refused before its rows could be read (the previous one stays in force)."""
    started = time.perf_counter()
    with engine.begin() as conn:
        store.lock_source(conn, source)
        previous = store.in_force(conn, source)
        snapshot_id = _write_refused(
            conn, source, origin, reason, taken_at or now_utc(), checksum, None, file
        )
    outcome = SnapshotOutcome(
        source, origin, "refused", snapshot_id, previous.snapshot_id if previous else None,
        0, 0, 0, reason, None, time.perf_counter() - started,
    )  # fmt: skip
    _log(outcome, None)
    return outcome


def _log(outcome: SnapshotOutcome, diff: SnapshotDiff | None) -> None:
    if outcome.refused:
        log.error("inventory snapshot %s refused: %s", outcome.snapshot_id, outcome.refused_reason)
        return
    log.info(
        "inventory snapshot %s of %s in force: %d rows loaded, %d rejected%s",
        outcome.snapshot_id,
        outcome.source,
        outcome.rows_loaded,
        outcome.rows_rejected,
        (
            f"; vs snapshot {diff.old_snapshot_id}: {diff.disappeared_count} disappeared, "
            f"{diff.appeared_count} appeared, {diff.changed_count} changed"
            if diff
            else ""
        ),
    )
