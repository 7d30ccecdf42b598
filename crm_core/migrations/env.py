"""Alembic environment for the canonical store (run through ``hub db upgrade`` or crm_core.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import crm_core.models  # noqa: F401  (registers every table)
from crm_core.db import make_engine
from crm_core.models import Base
from crm_core.positions import is_partition

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _not_a_snapshot_partition(name: str | None, type_: str, _parents: object) -> bool:
    # Snapshot partitions of inventory_positions come and go with the data; the models know the parent.
    return not (type_ == "table" and name is not None and is_partition(name))


def _run(connection: Connection) -> None:
    # render_as_batch lets later migrations alter tables on SQLite too.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        include_name=_not_a_snapshot_partition,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
