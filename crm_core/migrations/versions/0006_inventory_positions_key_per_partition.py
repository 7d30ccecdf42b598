"""inventory_positions: each snapshot partition keyed by its own unique index; no key on the parent

The parent's primary key (material_code, warehouse_code, lot, snapshot_id) made every partition build
the same composite index. A bulk load now gives its partition a unique index on a 64-bit hash of the
key instead, falling back to the exact columns on a hash collision (crm_core.positions): the same
guard against a repeated position for about half the cost. A partitioned table's unique key cannot be
an expression, so the parent has none. Existing partitions get the exact index. SQLite keeps its plain
table and its primary key: nothing changes there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLE = "inventory_positions"
_PK = "pk_inventory_positions"
_KEY = "material_code, warehouse_code, lot"


def _partitions() -> list[str]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        f"WHERE i.inhparent = '{_TABLE}'::regclass ORDER BY c.relname"
    )
    return [str(row[0]) for row in rows]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE {_TABLE} DROP CONSTRAINT {_PK}")  # and the partitions' copies of it
    for partition in _partitions():
        op.execute(f"CREATE UNIQUE INDEX {partition}_key ON {partition} ({_KEY})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for partition in _partitions():
        op.execute(f"DROP INDEX IF EXISTS {partition}_key")
    op.execute(f"ALTER TABLE {_TABLE} ADD CONSTRAINT {_PK} PRIMARY KEY ({_KEY}, snapshot_id)")
