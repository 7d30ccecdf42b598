"""A migrated, empty store on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from crm_core.db import make_engine
from crm_core.migrate import upgrade


@pytest.fixture
def engine(empty_store_url: str) -> Iterator[sa.Engine]:
    upgrade(empty_store_url)
    engine = make_engine(empty_store_url)
    yield engine
    engine.dispose()
