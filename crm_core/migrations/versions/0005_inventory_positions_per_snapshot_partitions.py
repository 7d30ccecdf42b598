"""inventory_positions: one partition per snapshot on PostgreSQL (LIST on snapshot_id)

A bulk load writes a snapshot into a fresh table without its key, builds the key once and attaches the
table as the snapshot's partition; a superseded snapshot is dropped whole (see crm_core.positions).
Existing rows move into one partition per snapshot. SQLite keeps its plain table: nothing changes there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TABLE = "inventory_positions"
_OLD = "inventory_positions_unpartitioned"
_KEY = "snapshot_id, material_code, warehouse_code, lot"
_PARTITIONED_KEY = "material_code, warehouse_code, lot, snapshot_id"  # id last: crm_core.positions
_PK = "pk_inventory_positions"


def _snapshot_ids(table: str) -> list[int]:
    return [int(row[0]) for row in op.get_bind().exec_driver_sql(f"SELECT DISTINCT snapshot_id FROM {table}")]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE {_TABLE} RENAME TO {_OLD}")
    op.execute(f"ALTER TABLE {_OLD} RENAME CONSTRAINT {_PK} TO {_PK}_unpartitioned")
    # LIKE copies the columns with their types, collations (COLLATE "C", migration 0004) and NOT NULLs.
    op.execute(f"CREATE TABLE {_TABLE} (LIKE {_OLD} INCLUDING DEFAULTS) PARTITION BY LIST (snapshot_id)")
    op.execute(f"ALTER TABLE {_TABLE} ADD CONSTRAINT {_PK} PRIMARY KEY ({_PARTITIONED_KEY})")
    for snapshot_id in _snapshot_ids(_OLD):
        op.execute(
            f"CREATE TABLE {_TABLE}_s{snapshot_id} PARTITION OF {_TABLE} FOR VALUES IN ({snapshot_id})"
        )
        op.execute(f"INSERT INTO {_TABLE} SELECT * FROM {_OLD} WHERE snapshot_id = {snapshot_id}")
    op.execute(f"DROP TABLE {_OLD}")
    op.execute(f"ANALYZE {_TABLE}")  # the planner's row counts of the new partitions


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE TABLE {_OLD} (LIKE {_TABLE} INCLUDING DEFAULTS)")
    op.execute(f"INSERT INTO {_OLD} SELECT * FROM {_TABLE}")
    op.execute(f"DROP TABLE {_TABLE}")  # with its partitions
    op.execute(f"ALTER TABLE {_OLD} RENAME TO {_TABLE}")
    op.execute(f"ALTER TABLE {_TABLE} ADD CONSTRAINT {_PK} PRIMARY KEY ({_KEY})")
