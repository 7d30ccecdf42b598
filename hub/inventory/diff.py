"""What changed between two snapshots of one source: positions that disappeared, appeared or changed.

Set-based SQL on ``inventory_positions`` (the unique index on (snapshot_id, material, warehouse, lot)
serves every anti-join), so the cost is three counting queries plus, when asked for, three bounded
listings; no position is pulled into Python to be compared.

A position that disappeared is the case to watch: stock the ERP no longer reports (sold, moved,
scrapped, or dropped by a broken export) stops backing promises from this snapshot on.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from hub.inventory.load import POSITIONS

KEY = ("material_code", "warehouse_code", "lot")


@dataclass(frozen=True)
class SnapshotDiff:
    """Counts of positions that disappeared, appeared and changed, with up to ``limit`` rows of each.

    ``disappeared`` and ``appeared`` list material_code, warehouse_code, lot, on_hand, reserved;
    ``changed`` lists the key with old_on_hand, new_on_hand, old_reserved, new_reserved.
    """

    old_snapshot_id: int
    new_snapshot_id: int
    disappeared_count: int
    appeared_count: int
    changed_count: int
    disappeared: pd.DataFrame
    appeared: pd.DataFrame
    changed: pd.DataFrame

    @property
    def unchanged(self) -> bool:
        """True when both snapshots hold exactly the same positions and quantities."""
        return not (self.disappeared_count or self.appeared_count or self.changed_count)


def _missing_from(left_id: int, right_id: int) -> tuple[sa.Select[tuple[object, ...]], sa.Select[tuple[int]]]:
    """Rows of snapshot ``left_id`` with no position of the same key in ``right_id``."""
    left = POSITIONS.alias("l")
    right = POSITIONS.alias("r")
    match = (
        sa.select(sa.literal(1))
        .where(right.c.snapshot_id == right_id, *[right.c[k] == left.c[k] for k in KEY])
        .exists()
    )
    where = (left.c.snapshot_id == left_id, ~match)
    rows = (
        sa.select(*[left.c[k] for k in KEY], left.c.on_hand, left.c.reserved)
        .where(*where)
        .order_by(*[left.c[k] for k in KEY])
    )
    count = sa.select(sa.func.count()).select_from(left).where(*where)
    return rows, count


def _changed(old_id: int, new_id: int) -> tuple[sa.Select[tuple[object, ...]], sa.Select[tuple[int]]]:
    old = POSITIONS.alias("o")
    new = POSITIONS.alias("n")
    join = old.join(new, sa.and_(new.c.snapshot_id == new_id, *[new.c[k] == old.c[k] for k in KEY]))
    where = (
        old.c.snapshot_id == old_id,
        sa.or_(old.c.on_hand != new.c.on_hand, old.c.reserved != new.c.reserved),
    )
    rows = (
        sa.select(
            *[old.c[k] for k in KEY],
            old.c.on_hand.label("old_on_hand"),
            new.c.on_hand.label("new_on_hand"),
            old.c.reserved.label("old_reserved"),
            new.c.reserved.label("new_reserved"),
        )
        .select_from(join)
        .where(*where)
        .order_by(*[old.c[k] for k in KEY])
    )
    count = sa.select(sa.func.count()).select_from(join).where(*where)
    return rows, count


def _frame(conn: sa.Connection, query: sa.Select[tuple[object, ...]], limit: int) -> pd.DataFrame:
    result = conn.execute(query.limit(limit)) if limit else None
    if result is None:
        return pd.DataFrame(columns=[c.name for c in query.selected_columns])
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def diff_snapshots(
    engine_or_conn: sa.Engine | sa.Connection, old_id: int, new_id: int, *, limit: int = 100
) -> SnapshotDiff:
    """Compare snapshot ``new_id`` with ``old_id``; list up to ``limit`` rows per kind (0: counts only)."""
    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.connect() as conn:
            return diff_snapshots(conn, old_id, new_id, limit=limit)
    conn = engine_or_conn
    gone_rows, gone_count = _missing_from(old_id, new_id)
    new_rows, new_count = _missing_from(new_id, old_id)
    changed_rows, changed_count = _changed(old_id, new_id)
    return SnapshotDiff(
        old_snapshot_id=old_id,
        new_snapshot_id=new_id,
        disappeared_count=int(conn.execute(gone_count).scalar_one()),
        appeared_count=int(conn.execute(new_count).scalar_one()),
        changed_count=int(conn.execute(changed_count).scalar_one()),
        disappeared=_frame(conn, gone_rows, limit),
        appeared=_frame(conn, new_rows, limit),
        changed=_frame(conn, changed_rows, limit),
    )
