"""inventory_positions: natural composite primary key, no surrogate id, no FK to inventory_snapshots

A 1M-row snapshot load spent most of its time maintaining two indexes (the ``id`` primary key and the
UNIQUE (snapshot_id, material_code, warehouse_code, lot)) and checking the foreign key row by row.
The composite key is now the primary key (one index, still unique per snapshot) and the foreign key is
gone: only the loader writes positions, in the same transaction as the snapshot header, and retention
deletes positions explicitly.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.sql.naming import conv

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_KEY = ["snapshot_id", "material_code", "warehouse_code", "lot"]
# conv() (what op.f returns): final names, shortened past 63 characters on PostgreSQL as 0001 did.
_UNIQUE = conv("uq_inventory_positions_snapshot_id_material_code_warehouse_code_lot")
_FK = conv("fk_inventory_positions_snapshot_id_inventory_snapshots")
_PK = conv("pk_inventory_positions")


def upgrade() -> None:
    # On SQLite the batch recreates the table (copying the rows); on PostgreSQL these are plain ALTERs.
    with op.batch_alter_table("inventory_positions", schema=None) as batch_op:
        batch_op.drop_constraint(_FK, type_="foreignkey")
        batch_op.drop_constraint(_UNIQUE, type_="unique")
        batch_op.drop_constraint(_PK, type_="primary")
        batch_op.drop_column("id")
        batch_op.create_primary_key(_PK, _KEY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(_PK, "inventory_positions", type_="primary")
        # BIGSERIAL numbers the existing rows, as the 0001 column did.
        op.execute("ALTER TABLE inventory_positions ADD COLUMN id BIGSERIAL NOT NULL")
        op.create_primary_key(_PK, "inventory_positions", ["id"])
    else:
        with op.batch_alter_table("inventory_positions", schema=None, recreate="always") as batch_op:
            batch_op.drop_constraint(_PK, type_="primary")
            batch_op.add_column(sa.Column("id", sa.Integer(), nullable=True))
        # SQLite: rebuild with id INTEGER PRIMARY KEY (a rowid alias) numbered from the rowid.
        op.execute("UPDATE inventory_positions SET id = rowid")
        with op.batch_alter_table("inventory_positions", schema=None, recreate="always") as batch_op:
            batch_op.alter_column("id", existing_type=sa.Integer(), nullable=False)
            batch_op.create_primary_key(_PK, ["id"])
    with op.batch_alter_table("inventory_positions", schema=None) as batch_op:
        batch_op.create_unique_constraint(_UNIQUE, _KEY)
        batch_op.create_foreign_key(_FK, "inventory_snapshots", ["snapshot_id"], ["id"], ondelete="CASCADE")
