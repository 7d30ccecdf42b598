"""Benchmark: the nightly push of invoiced states (issue 5): P11, P6 and P12.

Sections (``--section all`` runs the three; each prints its figures, the last line is the verdict):

``overhead`` (P11, goal <= 2%): the hub's own CPU per pushed record as a share of the ERP call time.
    The KIS sandbox runs in its own process with a fixed added latency (``--latency-ms``, default 20 ms),
    so none of its CPU is counted. A SQLite store gets ``--n`` issued invoices (default 2,000, the nightly
    volume of issue 5) through the bulk path; :func:`hub.push.engine.run_push` then enqueues, validates
    (GX) and pushes them with the template's default of 4 senders, after a warm-up push that logs in,
    imports GX and fills the caches. CPU is the whole process's (``time.process_time``: the engine and
    the sender threads) around ``prepare_push`` + ``execute_push``; the part each thread spends inside
    ``requests`` (``Transport.http``: request preparation, urllib3, http.client, sockets) is excluded, as
    in ``bench/kis_push.py``. What remains is the hub: store reads and writes (SQLAlchemy + SQLite), queue
    bookkeeping, validation, mapping, hashing, bindings, the KIS client's own work (signing, envelopes,
    JSON, retries). ERP call time per record = ERP calls x latency / records (the configured latency, below
    the measured call time, so the share errs on the strict side); the share against one call per record
    is printed too. ``--nights`` (default 3) such pushes of ``--n`` new invoices run one after another on
    the same store and the median night is gated: CPU time on the shared 2-core VM varies by 10-20% from
    run to run. The same store then gets a run with no change: it must make no ERP call.

``nochange`` (P6, goal <= 1.2x): the cost of a run with nothing to do on a 100k- vs a 1M-invoice store.
    Stores come from :mod:`crm_core.demo` (bulk path), are brought to the state after a complete push
    (every invoice enqueued through :func:`hub.push.queue.enqueue_from_outbox` and marked done; events
    dated a day back as in any store older than the PostgreSQL look-back window), and are cached under
    ``bench/out/nightly_push/`` (SQLite) or as databases ``bench_nightly_push_<n>`` (PostgreSQL of
    ``HUB_TEST_PG_URL``, when reachable); ``--rebuild`` starts over. The figure is the DB time of
    :func:`hub.push.engine.prepare_push` (sum of statement execution times, from SQLAlchemy cursor events),
    median of ``--repeat`` runs interleaved between the two stores; the ERP sandbox counts the calls (0).

``events`` (P12, goal <= 1 per 1,000 records): Dagster event-log entries of the ``<conn>_nightly_push`` job
    run in a real instance (temporary ``DAGSTER_HOME``, SQLite storage) over two batch sizes. A run has a
    fixed number of events (run start/end, one start/output/success per step, checks, materializations)
    and the push reports counts as metadata, never an event per record: the figure gated is the events a
    record adds (the slope between the two runs, per 1,000 records); the fixed events per run and the
    batch size from which they too stay under 1 per 1,000 are printed beside it.

Run: ``.venv/bin/python bench/nightly_push.py [--section all|overhead|nochange|events] [--n 300] [--nights 3]
[--latency-ms 20] [--sizes 100000,1000000] [--repeat 40] [--backend both|sqlite|postgresql] [--rebuild]``.
Exit code 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

import sqlalchemy as sa  # noqa: E402
from kis_push import start_sandbox  # noqa: E402  (bench/ is on sys.path when a bench runs as a script)

import crm_core  # noqa: E402, F401  (registers the models)
from connectors.kingdee.kis import KisClient, KisSettings  # noqa: E402
from connectors.kingdee.kis.transport import new_session  # noqa: E402
from connectors.kingdee.kis_sandbox import KisSandbox, SandboxAdmin, SandboxCredentials  # noqa: E402
from connectors.retry import RetryPolicy  # noqa: E402
from crm_core.credit_code import make_credit_code  # noqa: E402
from crm_core.customers import upsert_customer  # noqa: E402
from crm_core.db import make_engine, session_scope  # noqa: E402
from crm_core.demo.issuing import InvoiceIssuer  # noqa: E402
from crm_core.migrate import upgrade  # noqa: E402
from crm_core.models import DeliveryQueueItem, Product, SyncCursor  # noqa: E402
from crm_core.types import SHANGHAI, now_utc  # noqa: E402
from hub.push.engine import PushSettings, execute_push, prepare_push, run_push  # noqa: E402
from hub.push.queue import enqueue_from_outbox  # noqa: E402
from hub.push.sink import KisOutboundSink  # noqa: E402
from mappings.kis_outbound import OutboundMapping  # noqa: E402

OUT = ROOT / "bench" / "out" / "nightly_push"
DEFAULT_PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
CONNECTION = "erp"
MATERIALS = ("M-BOLT-M8", "M-BOLT-M10", "M-BRKT-L01", "M-BRKT-U02")  # the sandbox's seeded materials
SETTINGS = PushSettings(mapping=OutboundMapping(stock_code="WH01"), batch_size=200, senders=4)
CREDS = SandboxCredentials()


@dataclass(frozen=True)
class Goal:
    """One gated figure: ``value <= goal`` passes."""

    name: str
    value: float
    goal: float
    text: str

    @property
    def ok(self) -> bool:
        return self.value <= self.goal


# --- shared helpers ---------------------------------------------------------------------------------


@contextmanager
def sandbox_process(state: Path, latency_ms: float) -> Iterator[str]:
    """The KIS sandbox in its own process (its CPU is not ours); yields its base URL."""
    proc, url = start_sandbox(state, latency_ms)  # the same starter as bench/kis_push.py
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def kis_client(base_url: str) -> KisClient:
    return KisClient(
        KisSettings(
            name=CONNECTION,
            base_url=base_url,
            auth_flow="koas",
            client_id=CREDS.client_id,
            client_secret=CREDS.client_secret,
            auth_code=CREDS.auth_code,
            account_number=CREDS.account_number,
            read_timeout=30.0,
            retry=RetryPolicy(max_attempts=3, initial_wait=0.05, max_wait=0.5, retry_unknown_outcome=True),
        ),
        new_session(),
    )


class StoreFactory:
    """A migrated store with the sandbox's materials, five customers, and issued invoices on demand."""

    def __init__(self, url: str) -> None:
        upgrade(url)
        self.engine = make_engine(url)
        with session_scope(self.engine) as session:
            products = [Product(sku=f"SKU-{c}", name=c, erp_material_code=c, unit="PCS") for c in MATERIALS]
            session.add_all(products)
            customers = [
                upsert_customer(
                    session,
                    name=f"基准客户{i:03d}有限公司",
                    credit_code=make_credit_code(f"9133010088{i:07d}"),
                )[0]
                for i in range(5)
            ]
            session.flush()
            self.products, self.customers = [p.id for p in products], [c.id for c in customers]
        self.issuer = InvoiceIssuer(
            self.engine, self.customers, self.products, "INV-{year}-{n:06d}", 40000000, Decimal("12.35")
        )

    def issue(self, count: int) -> None:
        self.issuer.issue(count, now_utc().astimezone(SHANGHAI).date())


# --- P11: hub overhead per pushed record -------------------------------------------------------------


class HttpMeter:
    """Counts ERP calls and the CPU each calling thread spends inside ``requests`` (prepare + send)."""

    def __init__(self, client: KisClient) -> None:
        self.calls = 0
        self.cpu = 0.0
        self.wall = 0.0
        self._lock = threading.Lock()  # the push sends from several threads (PushSettings.senders)
        original = client.transport.http

        def http(*args: Any, **kwargs: Any) -> Any:
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
                with self._lock:
                    self.calls += 1
                    self.cpu += cpu
                    self.wall += wall

        client.transport.http = http  # type: ignore[method-assign]  # instrumentation only, same behaviour

    def reset(self) -> None:
        self.calls, self.cpu, self.wall = 0, 0.0, 0.0


@dataclass
class Night:
    """One measured push of ``n`` new invoices (CPU in seconds, whole process and inside requests)."""

    cpu: float
    cpu_prepare: float
    http_cpu: float
    http_prepare: float
    wall: float
    http_wall: float
    calls: int
    pushed: int

    def own(self, n: int) -> float:
        return (self.cpu - self.http_cpu) / n


def _measured_night(store: StoreFactory, sink: KisOutboundSink, meter: HttpMeter, n: int) -> Night:
    store.issue(n)
    meter.reset()
    # run_push = prepare_push + execute_push; timed apart to show where the hub's CPU goes.
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = prepare_push(store.engine, sink, SETTINGS)
    cpu_prepare, http_prepare = time.process_time() - cpu0, meter.cpu
    assert not result.blocked and result.quarantined == 0, result
    execute_push(store.engine, sink, SETTINGS, result)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return Night(cpu, cpu_prepare, meter.cpu, http_prepare, wall, meter.wall, meter.calls, result.pushed)


def overhead(n: int, latency_ms: float, nights: int = 3) -> list[Goal]:
    latency = latency_ms / 1000.0
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(Path(tmp) / "kis.sqlite", latency_ms) as url:
        store = StoreFactory(f"sqlite:///{Path(tmp) / 'hub.db'}")
        client = kis_client(url)
        meter = HttpMeter(client)
        sink = KisOutboundSink(client)
        store.issue(20)
        warm = run_push(store.engine, sink, SETTINGS)  # login, GX import, caches, pooled connection
        assert warm.pushed == 20, warm
        # Several nights on one store: CPU time on a shared 2-core VM varies by 10-20% from run to run
        # (neighbours, caches), so the median night is gated and every night is printed.
        measured = [_measured_night(store, sink, meter, n) for _ in range(nights)]
        meter.reset()
        quiet = run_push(store.engine, sink, SETTINGS)
        quiet_calls = meter.calls
        ledger = [w["bill_no"] for w in SandboxAdmin(url).ledger("salesdelivery/create")]
        client.close()
        store.engine.dispose()
    exactly_once = all(night.pushed == n for night in measured) and len(ledger) == len(set(ledger)) == (
        n * nights + 20
    )
    shares = [100 * night.own(n) / (night.calls * latency / n) for night in measured]
    print(f"[overhead] hub share per night: {', '.join(f'{s:.2f}%' for s in shares)} (median gated)")
    median = sorted(range(nights), key=lambda i: shares[i])[nights // 2]
    night = measured[median]
    cpu, http_cpu, calls, wall, http_wall = (
        night.cpu,
        night.http_cpu,
        night.calls,
        night.wall,
        night.http_wall,
    )
    own = night.own(n)
    own_prepare = (night.cpu_prepare - night.http_prepare) / n
    own_push = own - own_prepare
    erp_per_record = calls * latency / n
    share = 100 * own / erp_per_record
    share_one_call = 100 * own / latency
    print(
        f"[overhead] median night: {n} records, {calls} ERP calls ({calls / n:.2f} per record), latency "
        f"{latency_ms:g} ms; wall {wall:.2f} s ({n / wall:.0f} records/s), time inside HTTP calls "
        f"{http_wall:.2f} s; ledger exactly-once over {nights} nights: {exactly_once}"
    )
    print(
        f"[overhead] CPU per record: hub's own {own * 1e6:.0f} µs "
        f"+ requests/HTTP {http_cpu / n * 1e6:.0f} µs "
        f"= {cpu / n * 1e6:.0f} µs; ERP call time per record {erp_per_record * 1e3:.1f} ms -> hub share "
        f"{share:.2f}% ({share_one_call:.2f}% of a single {latency_ms:g} ms call); P11's 25 µs CPU target "
        f"is reported, not gated here"
    )
    print(
        f"[overhead] hub's own CPU by phase: enqueue + validate {own_prepare * 1e6:.0f} µs "
        f"per record (mostly fixed per run: GX), push {own_push * 1e6:.0f} "
        "µs per record"
    )
    print(f"[overhead] second run with no change: {quiet_calls} ERP calls, {quiet.erp_writes} writes")
    text = f"P11 hub overhead {share:.2f}% of ERP call time (goal <= 2%)"
    goals = [Goal("P11 hub overhead per record (% of ERP call time)", share, 2.0, text)]
    goals.append(
        Goal(
            "exactly once and a quiet second run",
            0.0 if exactly_once and quiet_calls == 0 else 1.0,
            0.0,
            f"exactly-once {exactly_once}, no-change ERP calls {quiet_calls}",
        )
    )
    return goals


# --- P6: cost of a no-change run -------------------------------------------------------------------


def pg_admin_url() -> str | None:
    url = os.environ.get("HUB_TEST_PG_URL", DEFAULT_PG)
    try:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return url
    except Exception as exc:  # any failure means "not reachable": said, and the section runs on SQLite
        print(f"[nochange] PostgreSQL at {url} not reachable ({str(exc).splitlines()[0]}); SQLite only")
        return None


MARKER = "bench.nightly_push.complete"


def _complete(engine: sa.Engine, size: int) -> bool:
    try:
        with engine.connect() as conn:
            value = conn.execute(
                sa.text("SELECT value FROM sync_cursors WHERE name = :n"), {"n": MARKER}
            ).scalar()
    except sa.exc.SQLAlchemyError:
        return False
    return value == str(size)


def build_store(url: str, size: int) -> None:
    """Demo data set of ``size`` invoices, then the state after a complete push (see the module doc)."""
    from crm_core.demo.load import load_demo_data

    started = time.perf_counter()
    upgrade(url)
    engine = make_engine(url)
    summary = load_demo_data(engine, seed=7, invoices=size, customers=2000, chunk_size=100_000)
    with session_scope(engine) as session:
        enqueued = enqueue_from_outbox(session, CONNECTION)
    with engine.begin() as conn:
        conn.execute(sa.update(DeliveryQueueItem).values(state="done"))
        if engine.dialect.name == "postgresql":  # only PostgreSQL re-reads the last minutes of events
            conn.execute(sa.text("UPDATE outbox_events SET created_at = created_at - interval '1 day'"))
    with session_scope(engine) as session:
        session.add(SyncCursor(name=MARKER, value=str(size), timezone="UTC"))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()
    took = time.perf_counter() - started
    print(
        f"[nochange] built {url.split('://')[0]} store: {summary.invoices:,} invoices, "
        f"{enqueued:,} queued, {took:.0f} s"
    )


def store_urls(backend: str, sizes: list[int], rebuild: bool) -> dict[str, dict[int, str]]:
    urls: dict[str, dict[int, str]] = {}
    if backend in ("both", "sqlite"):
        OUT.mkdir(parents=True, exist_ok=True)
        urls["sqlite"] = {}
        for size in sizes:
            path = OUT / f"store_{size}.db"
            if rebuild:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            urls["sqlite"][size] = f"sqlite:///{path}"
    admin = pg_admin_url() if backend in ("both", "postgresql") else None
    if admin:
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        urls["postgresql"] = {}
        with engine.connect() as conn:
            for size in sizes:
                name = f"bench_nightly_push_{size}"
                exists = conn.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).scalar()
                if exists and rebuild:
                    conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                    exists = None
                if not exists:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                url = sa.engine.make_url(admin).set(database=name).render_as_string(hide_password=False)
                urls["postgresql"][size] = url
        engine.dispose()
    for backend_urls in urls.values():
        for size, url in backend_urls.items():
            probe = make_engine(url)
            done = _complete(probe, size)
            probe.dispose()
            if not done:
                if url.startswith("sqlite"):
                    path = Path(url.removeprefix("sqlite:///"))
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
                else:
                    _reset_pg(url)
                build_store(url, size)
    return urls


def _reset_pg(url: str) -> None:
    """An interrupted build: empty the database's public schema before building again."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


class DbTimer:
    """Sum of statement execution times on an engine (SQLAlchemy cursor events), and the statement count."""

    def __init__(self, engine: sa.Engine) -> None:
        self.seconds = 0.0
        self.statements = 0
        self._started: dict[int, float] = {}
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, *args: Any) -> None:
        self._started[id(cursor)] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, *args: Any) -> None:
        self.seconds += time.perf_counter() - self._started.pop(id(cursor), time.perf_counter())
        self.statements += 1


def nochange(backend: str, sizes: list[int], repeat: int, rebuild: bool) -> list[Goal]:
    urls = store_urls(backend, sizes, rebuild)
    goals = []
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = KisSandbox(Path(tmp) / "kis.sqlite")
        base_url = sandbox.start()
        admin = SandboxAdmin(base_url)
        client = kis_client(base_url)
        sink = KisOutboundSink(client)
        try:
            for name, by_size in urls.items():
                engines = {size: make_engine(url) for size, url in by_size.items()}
                timers = {size: DbTimer(engine) for size, engine in engines.items()}
                samples: dict[int, list[float]] = {size: [] for size in engines}
                walls: dict[int, list[float]] = {size: [] for size in engines}
                requests_before = admin.stats().get("calls", 0)
                for engine in engines.values():  # warm-up: connections, statement caches, page cache
                    for _ in range(3):
                        prepare_push(engine, sink, SETTINGS)
                for _ in range(repeat):
                    for size, engine in engines.items():  # interleaved: machine load hits both alike
                        timer = timers[size]
                        timer.seconds, timer.statements = 0.0, 0
                        wall0 = time.perf_counter()
                        result = prepare_push(engine, sink, SETTINGS)
                        walls[size].append(time.perf_counter() - wall0)
                        samples[size].append(timer.seconds)
                        assert result.enqueued == 0 and not result.blocked, result
                erp_requests = admin.stats().get("calls", 0) - requests_before
                small, large = min(engines), max(engines)
                med = {size: statistics.median(v) for size, v in samples.items()}
                for size in sorted(engines):
                    print(
                        f"[nochange] {name} {size:>9,} invoices: DB time {med[size] * 1e3:.2f} ms median "
                        f"({timers[size].statements} statements), "
                        f"wall {statistics.median(walls[size]) * 1e3:.2f} ms"
                    )
                ratio = med[large] / med[small]
                print(
                    f"[nochange] {name}: ERP requests during {repeat * len(engines)} no-change runs: "
                    f"{erp_requests}"
                )
                goals.append(
                    Goal(
                        f"P6 {name} no-change DB time {large:,} vs {small:,}",
                        ratio,
                        1.2,
                        f"P6 {name} no-change {large // 1000:,}k/{small // 1000:,}k = {ratio:.2f}x "
                        "(goal <= 1.2x, "
                        f"{med[large] * 1e3:.2f} ms)",
                    )
                )
                goals.append(
                    Goal(
                        f"P6 {name} no-change ERP calls",
                        float(erp_requests),
                        0.0,
                        f"{erp_requests} ERP calls",
                    )
                )
                for engine in engines.values():
                    engine.dispose()
        finally:
            client.close()
            sandbox.stop()
    return goals


# --- P12: Dagster events per 1,000 records -----------------------------------------------------------

HUB_YAML = """version: 1
connections:
  erp:
    template: kingdee_kis
    connection:
      base_url: {base_url}
      auth_flow: koas
      client_id: "{client_id}"
      client_secret: ${{KIS_BENCH_CLIENT_SECRET}}
      auth_code: ${{KIS_BENCH_AUTH_CODE}}
      account_number: {account}
      app_key: null
      app_secret: null
      outer_instance_id: null
    streams:
      invoiced_states:
        bill_number_pattern: "HUB-{{external_id}}"
        stock_number: WH01
"""


# The console shows warnings only; the instance's event log still records every event (what is counted).
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def events(sizes: tuple[int, int]) -> list[Goal]:
    import dagster as dg

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        url = f"sqlite:///{home / 'hub.db'}"
        store = StoreFactory(url)
        sandbox = KisSandbox(home / "kis.sqlite")
        base_url = sandbox.start()
        config = home / "hub.yaml"
        config.write_text(
            HUB_YAML.format(base_url=base_url, client_id=CREDS.client_id, account=CREDS.account_number),
            encoding="utf-8",
        )
        os.environ.update(
            {
                "KIS_BENCH_CLIENT_SECRET": CREDS.client_secret,
                "KIS_BENCH_AUTH_CODE": CREDS.auth_code,
                "HUB_HOME": str(home),
                "HUB_DATABASE_URL": url,
                "HUB_CONFIG": str(config),
            }
        )
        from jobs.definitions import build_definitions

        job = build_definitions(str(config)).resolve_job_def(f"{CONNECTION}_nightly_push")
        counts: dict[int, int] = {}
        (home / "dagster").mkdir()
        try:
            with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
                for size in sizes:
                    store.issue(size)
                    result = job.execute_in_process(
                        instance=instance, raise_on_error=False, run_config=QUIET_CONSOLE
                    )
                    pushed = [
                        e.step_materialization_data.materialization.metadata["pushed"].value
                        for e in result.get_asset_materialization_events()
                        if e.step_materialization_data.materialization.asset_key.path[-1] == "invoice_push"
                    ]
                    if not result.success or pushed != [size]:
                        raise SystemExit(f"[events] the push job did not push {size} records: {pushed}")
                    counts[size] = len(instance.get_records_for_run(result.run_id, limit=1_000_000).records)
        finally:
            sandbox.stop()
            store.engine.dispose()
    (n1, n2), (e1, e2) = sizes, (counts[sizes[0]], counts[sizes[1]])
    slope = 1000 * (e2 - e1) / (n2 - n1)
    fixed = e1 - slope * n1 / 1000
    for n, e in counts.items():
        print(
            f"[events] run pushing {n:,} records: {e} Dagster events ({1000 * e / n:.1f} per 1,000 records)"
        )
    breakeven = fixed * 1000 if slope < 1 else float("inf")
    print(
        f"[events] per run: {fixed:.0f} fixed + {slope:.2f} per 1,000 records; the fixed events alone stay "
        f"<= 1 per 1,000 records from {breakeven:,.0f} records per run"
    )
    text = f"P12 {slope:.2f} Dagster events per 1,000 records (goal <= 1; {fixed:.0f} fixed per run)"
    return [Goal("P12 Dagster events per 1,000 records", slope, 1.0, text)]


# --- main --------------------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--section", choices=["all", "overhead", "nochange", "events"], default="all")
    p.add_argument("--n", type=int, default=2000, help="records pushed per night in the overhead section")
    p.add_argument("--nights", type=int, default=3, help="measured nights of the overhead section (median)")
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--sizes", default="100000,1000000", help="store sizes of the no-change section")
    p.add_argument("--repeat", type=int, default=40)
    p.add_argument("--backend", choices=["both", "sqlite", "postgresql"], default="both")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached no-change stores")
    p.add_argument("--event-sizes", default="200,2000", help="two batch sizes of the events section")
    args = p.parse_args()
    sections: dict[str, Callable[[], list[Goal]]] = {
        "overhead": lambda: overhead(args.n, args.latency_ms, args.nights),
        "nochange": lambda: nochange(
            args.backend, [int(s) for s in args.sizes.split(",")], args.repeat, args.rebuild
        ),
        "events": lambda: events(tuple(int(s) for s in args.event_sizes.split(",")[:2])),  # type: ignore[arg-type]
    }
    goals: list[Goal] = []
    for name, run in sections.items():
        if args.section in ("all", name):
            started = time.perf_counter()
            goals.extend(run())
            print(f"[{name}] took {time.perf_counter() - started:.0f} s")
    missed = [g for g in goals if not g.ok]
    verdict = "PASS" if not missed else "MISS: " + ", ".join(g.name for g in missed)
    print("; ".join(g.text for g in goals if g.goal != 0.0 or not g.ok) + f" -> {verdict}")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
