"""Declarative base with a naming convention, so Alembic migrations have stable constraint names."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_core.types import TZDateTime, now_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Timestamped:
    """created_at / updated_at, both UTC-aware."""

    created_at: Mapped[datetime] = mapped_column(TZDateTime(), default=now_utc, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        TZDateTime(), default=now_utc, onupdate=now_utc, nullable=False
    )
