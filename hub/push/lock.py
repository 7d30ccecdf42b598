"""One push at a time per ERP connection.

PostgreSQL: a session-level advisory lock held on a dedicated connection for the whole run (it dies
with the process, so a killed run never leaves the lock behind). SQLite: a ``sync_locks`` row with an
expiry and its owner (``host:pid``); a row whose owner process is gone from this host is taken over at
once, and one from another host lapses at its expiry. Either way a second run gets :class:`LockBusy`
and exits as skipped.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import sqlalchemy as sa

from crm_core.models import SyncLock
from crm_core.types import now_utc
from hub.errors import HubError


class LockBusy(HubError):
    """Another run holds the lock for this connection."""


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _dead_local_owner(owner: str) -> bool:
    """True when ``owner`` (``host:pid``) is a process of this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


@contextmanager
def connection_lock(engine: sa.Engine, name: str, *, ttl: timedelta = timedelta(hours=2)) -> Iterator[None]:
    owner = f"{socket.gethostname()}:{os.getpid()}"
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(name)}).scalar()
            conn.commit()
            if not got:
                raise LockBusy(f"another push for connection {name!r} is running; this run is skipped")
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _key(name)})
                conn.commit()
        return
    with engine.begin() as conn:
        now = now_utc()
        conn.execute(sa.delete(SyncLock).where(SyncLock.name == name, SyncLock.expires_at < now))
        holder = conn.execute(sa.select(SyncLock.owner).where(SyncLock.name == name)).scalar()
        if holder is not None and _dead_local_owner(holder):
            # The holder was killed (kill -9 leaves its row): a lock row cannot outlive its process here.
            conn.execute(sa.delete(SyncLock).where(SyncLock.name == name, SyncLock.owner == holder))
        try:
            conn.execute(
                sa.insert(SyncLock).values(name=name, owner=owner, acquired_at=now, expires_at=now + ttl)
            )
        except sa.exc.IntegrityError as exc:
            raise LockBusy(f"another push for connection {name!r} is running; this run is skipped") from exc
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(SyncLock).where(SyncLock.name == name, SyncLock.owner == owner))
