"""Human document numbers: ``OPP-2026-000123``, ``QT-...``, ``SO-...``, ``INV-...``."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_core.models import NumberSequence


def next_number(session: Session, prefix: str, year: int) -> str:
    """The next ``PREFIX-YEAR-NNNNNN`` number (see :func:`next_value`)."""
    return f"{prefix}-{year}-{next_value(session, prefix, year):06d}"


def next_value(session: Session, prefix: str, year: int = 0) -> int:
    """Allocate the next counter value for ``prefix`` in ``year`` inside the caller's transaction."""
    return next_values(session, prefix, 1, year)[0]


def next_values(session: Session, prefix: str, count: int, year: int = 0) -> range:
    """Allocate ``count`` consecutive counter values in one statement.

    The counter row is updated in place (row lock on PostgreSQL, the write lock on SQLite), so two
    transactions never get the same number; a rolled-back transaction gives its numbers back.
    """
    if count <= 0:
        return range(0)
    last = session.execute(
        sa.update(NumberSequence)
        .where(NumberSequence.prefix == prefix, NumberSequence.year == year)
        .values(last_value=NumberSequence.last_value + count)
        .returning(NumberSequence.last_value)
    ).scalar()
    if last is None:
        session.execute(sa.insert(NumberSequence).values(prefix=prefix, year=year, last_value=count))
        last = count
    return range(int(last) - count + 1, int(last) + 1)
