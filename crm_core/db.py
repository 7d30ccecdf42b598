"""Engines and sessions for the canonical store.

The store is a SQLite file under ``HUB_HOME`` (default ``./.hub/``) unless ``HUB_DATABASE_URL`` is set.
SQLite runs in WAL mode with foreign keys on and ``synchronous=NORMAL`` (P4). PostgreSQL URLs must name
the psycopg2 driver: SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not installed,
so a bare URL is rewritten to ``postgresql+psycopg2://`` rather than failing at first use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from hub.errors import ConfigError

DEFAULT_HOME = ".hub"


def hub_home() -> Path:
    """The hub's working directory (store, reports, Dagster home), from ``HUB_HOME``."""
    return Path(os.environ.get("HUB_HOME", DEFAULT_HOME)).resolve()


def normalize_url(url: str) -> str:
    """Pin PostgreSQL URLs to psycopg2 and refuse drivers the hub does not ship."""
    parsed = sa.engine.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    elif parsed.drivername.startswith("postgresql+") and parsed.drivername != "postgresql+psycopg2":
        raise ConfigError(
            f"HUB_DATABASE_URL: driver {parsed.drivername!r} is not installed; use postgresql+psycopg2://..."
        )
    elif not parsed.drivername.startswith(("sqlite", "postgresql")):
        raise ConfigError(
            f"HUB_DATABASE_URL: unsupported database {parsed.drivername!r}; use sqlite:///path or "
            "postgresql+psycopg2://user@host/db"
        )
    return parsed.render_as_string(hide_password=False)


def database_url() -> str:
    """``HUB_DATABASE_URL`` if set, else the SQLite file ``$HUB_HOME/hub.db``."""
    url = os.environ.get("HUB_DATABASE_URL")
    if url:
        return normalize_url(url)
    home = hub_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'hub.db'}"


def display_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str | None = None, **kwargs: Any) -> sa.Engine:
    """An engine for ``url`` (default :func:`database_url`) with the store's connection settings."""
    url = normalize_url(url or database_url())
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: sa.Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back (leaving nothing) on any error."""
    session = Session(bind=engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
