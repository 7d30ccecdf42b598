"""Human document numbers: ``OPP-2026-000123``, ``QT-...``, ``SO-...``, ``INV-...``."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_core.models import NumberSequence


def next_number(session: Session, prefix: str, year: int) -> str:
    """The next ``PREFIX-YEAR-NNNNNN`` number (see :func:`next_value`)."""
    return f"{prefix}-{year}-{next_value(session, prefix, year):06d}"


def next_value(session: Session, prefix: str, year: int = 0) -> int:
    """Allocate the next counter value for ``prefix`` in ``year`` inside the caller's transaction.

    The counter row is updated in place (row lock on PostgreSQL, the write lock on SQLite), so two
    transactions never get the same number; a rolled-back transaction gives its number back.
    """
    table = NumberSequence.__table__
    bumped = session.execute(
        sa.update(table)
        .where(table.c.prefix == prefix, table.c.year == year)
        .values(last_value=table.c.last_value + 1)
        .returning(table.c.last_value)
    ).scalar()
    if bumped is None:
        session.execute(sa.insert(table).values(prefix=prefix, year=year, last_value=1))
        bumped = 1
    return int(bumped)
