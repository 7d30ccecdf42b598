"""Shared fixtures: the canonical store on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``HUB_TEST_PG_URL`` (default: the CI server, trust auth, database ``test``).
Each test module that asks for it gets a fresh database, dropped afterwards. When the server cannot
be reached the PostgreSQL tests are skipped, unless ``HUB_REQUIRE_PG=1`` (set by ``.ci/run``), which
turns the skip into a failure so CI can never pass without them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _pg_admin_url() -> str:
    return os.environ.get("HUB_TEST_PG_URL", DEFAULT_PG_URL)


def _pg_reachable(url: str) -> str | None:
    try:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure means "not reachable"; reported in the skip reason
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = _pg_admin_url()
    problem = _pg_reachable(url)
    if problem:
        message = f"PostgreSQL at {url} not reachable ({problem})"
        if os.environ.get("HUB_REQUIRE_PG") == "1":
            pytest.fail(message + " and HUB_REQUIRE_PG=1", pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture
def fresh_pg_url(pg_admin_url: str) -> Iterator[str]:
    """A brand-new empty PostgreSQL database for one test; dropped afterwards."""
    name = f"hubtest_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def fresh_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return request.getfixturevalue("fresh_pg_url")
