"""inventory_positions: the key text columns compare bytes (COLLATE "C") on PostgreSQL

The primary key (snapshot_id, material_code, warehouse_code, lot) is filled by every snapshot load. With
the database's default collation (e.g. C.UTF-8 or en_US.UTF-8) each comparison goes through strcoll and
PostgreSQL cannot use abbreviated sort keys; with "C" it compares bytes. Codes are ERP identifiers, so
byte order is the only order anyone needs (it is also Python's code point order, which the in-process
snapshot diff uses). SQLite compares bytes already (BINARY): nothing changes there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = (("material_code", 64), ("warehouse_code", 32), ("lot", 64))


def _collate(collation: str | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    clause = f' COLLATE "{collation}"' if collation else ' COLLATE "default"'
    # One ALTER TABLE: the table and its primary key index are rewritten once.
    op.execute(
        "ALTER TABLE inventory_positions "
        + ", ".join(f"ALTER COLUMN {name} TYPE varchar({width}){clause}" for name, width in _COLUMNS)
    )


def upgrade() -> None:
    _collate("C")


def downgrade() -> None:
    _collate(None)
