"""B.4 case 7: the PostgreSQL connection is reset (RST) in the middle of the bulk load's COPY.

The store engine talks to PostgreSQL through a :class:`TcpProxy`. When the load announces its first
COPY, the proxy is armed to reset the connection after 64 KiB more of client -> server bytes, i.e.
in the middle of the COPY data. The load must fail, leave the store as it was (no invoice, line or
event, no staging table), and a retry must load the exact row count.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import psycopg2
import pytest
import sqlalchemy as sa

from crm_core.bulk import frames_from_docs, load_invoices
from tests.faults.bulk_worker import docs
from tests.faults.test_bulk_kill9 import prepared_store, snapshot
from tests.support.tcp_proxy import TcpProxy, _Faults

INVOICES = 3000
RESET_AFTER = 64 * 1024  # bytes of COPY data forwarded before the reset


class CopyResetProxy(TcpProxy):
    """A :class:`TcpProxy` that can also reset a connection after N more client -> server bytes."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.budget: int | None = None
        self.up_resets = 0

    def arm(self, nbytes: int) -> None:
        """Reset the next connection that sends ``nbytes`` more bytes upstream (once)."""
        with self._lock:
            self.budget = nbytes

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        faults: _Faults,
        downstream_faults: bool,
        closed: threading.Event,
    ) -> None:
        try:
            upstream = sink.getpeername() == self.upstream
        except OSError:
            upstream = False
        if not upstream:
            super()._pump(source, sink, faults, downstream_faults, closed)
            return
        source.settimeout(0.2)
        try:
            while not self._stop.is_set() and not closed.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                with self._lock:
                    fire = self.budget is not None and len(data) >= self.budget
                    if self.budget is not None:
                        self.budget = None if fire else self.budget - len(data)
                if fire:
                    self.up_resets += 1
                    self._reset(source, sink)
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            closed.set()
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()


def _settled(admin: sa.Engine, database: str) -> tuple[int, int]:
    """(staging tables left, sessions of ``database`` still in a transaction), once the dead backend
    has gone: PostgreSQL drops a session's TEMP tables when its backend exits."""
    deadline = time.monotonic() + 20
    while True:
        with admin.connect() as conn:
            temp = conn.scalar(sa.text("SELECT count(*) FROM pg_class WHERE relname LIKE '\\_bulk%'"))
            open_tx = conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :d "
                    "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                ),
                {"d": database},
            )
        if (temp == 0 and open_tx == 0) or time.monotonic() > deadline:
            return int(temp or 0), int(open_tx or 0)
        time.sleep(0.1)


def test_case07_connection_reset_during_copy_rolls_back_and_a_retry_loads_exactly(fresh_pg_url: str) -> None:
    engine, customer_id, product_id = prepared_store(fresh_pg_url)
    url = sa.engine.make_url(fresh_pg_url)
    before = snapshot(engine)
    batch = frames_from_docs(docs(customer_id, product_id, 1001, INVOICES, issue_all=True))
    with CopyResetProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        via_proxy = sa.create_engine(url.set(host=proxy.host, port=proxy.port), pool_pre_ping=True)
        try:

            def on_statement(kind: str, _sql: str) -> None:
                if kind == "copy" and proxy.up_resets == 0:
                    proxy.arm(RESET_AFTER)

            # The reset itself surfaces (not the failed rollback's "connection already closed").
            with pytest.raises(psycopg2.OperationalError) as caught:
                load_invoices(via_proxy, batch, on_statement=on_statement)
            assert proxy.up_resets == 1, caught.value
            assert snapshot(engine) == before
            assert _settled(engine, url.database or "") == (0, 0)

            # The retry, through the same (now clean) proxy, loads exactly the batch.
            result = load_invoices(via_proxy, batch)
        finally:
            via_proxy.dispose()
    assert (result.inserted, result.lines_written, result.outbox_events) == (INVOICES, 2 * INVOICES, INVOICES)
    after = snapshot(engine)
    assert len(after["invoices"]) == len(before["invoices"]) + INVOICES
    assert len(after["outbox"]) == len(before["outbox"]) + INVOICES
    engine.dispose()
