"""Inventory snapshots: validate, bulk-load, diff and pull them from the ERP or SFTP drops.

Public API::

    normalize_snapshot_frame(frame, rename=...)      # reader output -> snapshot frame (columns.py)
    validate_snapshot(frame, known_materials=..., ...) / refusal_reason(...)   # validate.py
    ingest_snapshot(engine, source=..., frame=..., origin=...) -> SnapshotOutcome   # snapshot.py
    load_snapshot(engine, source=..., frame=...)     # bulk load of an already validated frame
    diff_snapshots(engine, old_id, new_id)           # disappeared / appeared / changed positions
    pull_kis(...), pull_sftp(...), pull_connection(...)   # pull.py: one source end to end
"""

from hub.inventory.columns import SNAPSHOT_COLUMNS, TEMPLATE_TO_SNAPSHOT, normalize_snapshot_frame
from hub.inventory.diff import SnapshotDiff, diff_snapshots
from hub.inventory.load import FileIdentity, LoadResult, load_snapshot
from hub.inventory.snapshot import SnapshotOutcome, ingest_snapshot, known_codes, refuse_snapshot
from hub.inventory.validate import SnapshotPolicy, ValidatedSnapshot, refusal_reason, validate_snapshot

__all__ = [
    "SNAPSHOT_COLUMNS",
    "TEMPLATE_TO_SNAPSHOT",
    "FileIdentity",
    "LoadResult",
    "SnapshotDiff",
    "SnapshotOutcome",
    "SnapshotPolicy",
    "ValidatedSnapshot",
    "diff_snapshots",
    "ingest_snapshot",
    "known_codes",
    "load_snapshot",
    "normalize_snapshot_frame",
    "refusal_reason",
    "refuse_snapshot",
    "validate_snapshot",
]
