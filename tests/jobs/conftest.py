"""The nightly push as the schedule runs it: the project's Dagster definitions built from a real
``hub.yaml``, a real Dagster instance (temporary ``DAGSTER_HOME``, SQLite run and event storage), a
migrated store, the KIS sandbox on loopback and a WeCom-style robot on loopback for the alerts.

Nothing here replaces the code under test: the job is ``build_definitions(hub.yaml)`` exactly as
``dagster job execute -m jobs.definitions`` would load it, and every ERP write is counted by the sandbox's
own ledger.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

import crm_core  # noqa: F401  (registers the models)
from connectors.kingdee.kis import KisClient, KisSettings
from connectors.kingdee.kis_sandbox import FaultConfig, KisSandbox, SandboxAdmin
from connectors.retry import RetryPolicy
from crm_core.bulk import InvoiceDoc, InvoiceLineDoc, frames_from_docs, load_invoices
from crm_core.credit_code import make_credit_code
from crm_core.customers import upsert_customer
from crm_core.db import make_engine, session_scope
from crm_core.migrate import upgrade
from crm_core.models import Product
from crm_core.types import SHANGHAI, now_utc
from jobs.definitions import build_definitions

CONNECTION = "erp"
JOB = f"{CONNECTION}_nightly_push"
MATERIALS = ("M-BOLT-M8", "M-BOLT-M10", "M-BRKT-L01", "M-BRKT-U02")  # seeded in the sandbox
KIS_ENV = {
    "KIS_JOBTEST_CLIENT_SECRET": "kis-sandbox-client-secret",
    "KIS_JOBTEST_AUTH_CODE": "kis-sandbox-oauth-code",
}
WECOM_KEY = "wecom-jobtest-6f1c2d9e-key"  # a "secret": must never appear in a message body or a log
WECOM_ENV = "WECOM_JOBTEST_KEY"

# The client retries fast (tests must not sleep for seconds); lost replies are retried after a lookup.
HUB_YAML = """version: 1
connections:
  {name}:
    template: kingdee_kis
    connection:
      base_url: {base_url}
      auth_flow: koas
      client_id: "205022"
      client_secret: ${{KIS_JOBTEST_CLIENT_SECRET}}
      auth_code: ${{KIS_JOBTEST_AUTH_CODE}}
      account_number: KIS001
      app_key: null
      app_secret: null
      outer_instance_id: null
      read_timeout: 10
    retry:
      max_attempts: {attempts}
      initial_wait: 0.01
      max_wait: 0.05
      multiplier: 2.0
      max_elapsed: 30
      retry_unknown_outcome: true
    streams:
      invoiced_states:
        bill_number_pattern: "HUB-{{external_id}}"
        stock_number: WH01
        batch_size: 100
  ops_robot:
    template: notify_wecom
    connection:
      base_url: {robot_url}
      webhook_key: ${{{wecom_env}}}
      message_type: text
      connect_timeout: 2
      read_timeout: 5
    streams:
      alerts:
        events: [push_failed]
        min_severity: warning
"""


@dataclass
class Robot:
    """A WeCom-style group robot on loopback: records every POST, answers ``reply``."""

    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=lambda: {"errcode": 0, "errmsg": "ok"})


@pytest.fixture
def robot() -> Iterator[Robot]:
    state = Robot(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.posts.append({"path": self.path, "body": body.decode("utf-8")})
            answer = json.dumps(state.reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@dataclass
class Hub:
    """One project: store, sandbox, hub.yaml, the Dagster definitions built from it, and an instance."""

    url: str
    engine: sa.Engine
    sandbox: KisSandbox
    admin: SandboxAdmin
    client: KisClient  # the test's own client, for what finance does in KIS behind the hub's back
    config: Path
    defs: dg.Definitions
    instance: dg.DagsterInstance
    product_ids: list[int]
    customer_ids: list[int]
    counter: list[int] = field(default_factory=lambda: [0])

    def run(self) -> dg.ExecuteInProcessResult:
        """One run of the nightly push job, as the schedule would start it."""
        job = self.defs.resolve_job_def(JOB)
        return job.execute_in_process(instance=self.instance, raise_on_error=False)

    def bill_numbers(self) -> list[str]:
        """Bill numbers of every sales outbound the sandbox accepted (its ledger), repeats included."""
        return [w["bill_no"] for w in self.admin.ledger("salesdelivery/create")]

    def writes(self) -> int:
        """Every write the sandbox accepted, of any kind."""
        return len(self.admin.ledger())

    def add_product(self, sku: str, material_code: str | None) -> int:
        with session_scope(self.engine) as session:
            product = Product(sku=sku, name=sku, erp_material_code=material_code, unit="PCS")
            session.add(product)
            session.flush()
            return int(product.id)

    def make_invoices(self, count: int, *, product_ids: list[int] | None = None) -> list[str]:
        """``count`` issued invoices dated today (Shanghai), loaded through the bulk path (outbox events
        included). Returns their numbers."""
        pids = product_ids or self.product_ids
        today = now_utc().astimezone(SHANGHAI).date()
        docs = []
        for _ in range(count):
            self.counter[0] += 1
            n = self.counter[0]
            docs.append(
                InvoiceDoc(
                    number=f"INV-{today.year}-{n:06d}",
                    customer_id=self.customer_ids[n % len(self.customer_ids)],
                    status="issued",
                    invoice_number=f"{30000000 + n}",
                    issue_date=today,
                    lines=tuple(
                        InvoiceLineDoc(
                            line_no=k + 1,
                            product_id=pids[(n + k) % len(pids)],
                            quantity=Decimal(1 + (n * 7 + k) % 50),
                            unit_price=Decimal("0.85") + Decimal(k),
                            tax_rate=Decimal("0.13"),
                        )
                        for k in range(1 + n % 3)
                    ),
                )
            )
        load_invoices(self.engine, frames_from_docs(docs))
        return [d.number for d in docs]


def _kis_client(base_url: str) -> KisClient:
    return KisClient(
        KisSettings(
            name="finance-desk",
            base_url=base_url,
            auth_flow="koas",
            client_id="205022",
            client_secret=KIS_ENV["KIS_JOBTEST_CLIENT_SECRET"],
            auth_code=KIS_ENV["KIS_JOBTEST_AUTH_CODE"],
            account_number="KIS001",
            connect_timeout=2.0,
            read_timeout=5.0,
            retry=RetryPolicy(max_attempts=3, initial_wait=0.01, max_wait=0.05, max_elapsed=10.0),
        )
    )


@pytest.fixture
def hub_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, robot: Robot
) -> Iterator[Callable[..., Hub]]:
    """Build a :class:`Hub` on the given store URL; ``faults`` go to the sandbox at start."""
    opened: list[Hub] = []
    instances: list[Any] = []

    def build(url: str, *, faults: FaultConfig | None = None, client_attempts: int = 8) -> Hub:
        home = tmp_path / f"home{len(opened)}"
        home.mkdir()
        upgrade(url)
        engine = make_engine(url)
        with session_scope(engine) as session:
            products = [
                Product(sku=f"SKU-{code}", name=code, erp_material_code=code, unit="PCS")
                for code in MATERIALS
            ]
            session.add_all(products)
            customers = [
                upsert_customer(
                    session,
                    name=f"任务测试客户{i:03d}有限公司",
                    credit_code=make_credit_code(f"9132050077{i:07d}"),
                )[0]
                for i in range(5)
            ]
            session.flush()
            product_ids, customer_ids = [p.id for p in products], [c.id for c in customers]
        sandbox = KisSandbox(home / "kis.sqlite", seed=7, faults=faults or FaultConfig())
        sandbox.start()
        config = home / "hub.yaml"
        config.write_text(
            HUB_YAML.format(
                name=CONNECTION,
                base_url=sandbox.base_url,
                attempts=client_attempts,
                robot_url=robot.url,
                wecom_env=WECOM_ENV,
            ),
            encoding="utf-8",
        )
        for key, value in {**KIS_ENV, WECOM_ENV: WECOM_KEY}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("HUB_HOME", str(home))
        monkeypatch.setenv("HUB_DATABASE_URL", url)
        monkeypatch.setenv("HUB_CONFIG", str(config))
        monkeypatch.setenv("GX_ANALYTICS_ENABLED", "false")
        (home / "dagster").mkdir()
        instance_cm = dg.instance_for_test(temp_dir=str(home / "dagster"))
        instance = instance_cm.__enter__()
        instances.append(instance_cm)
        hub = Hub(
            url=url,
            engine=engine,
            sandbox=sandbox,
            admin=SandboxAdmin(sandbox.base_url),
            client=_kis_client(sandbox.base_url),
            config=config,
            defs=build_definitions(str(config)),
            instance=instance,
            product_ids=product_ids,
            customer_ids=customer_ids,
        )
        opened.append(hub)
        return hub

    yield build
    for hub in opened:
        hub.client.close()
        hub.sandbox.stop()
        hub.engine.dispose()
    for instance_cm in instances:
        instance_cm.__exit__(None, None, None)


@pytest.fixture
def hub(hub_factory: Callable[..., Hub], fresh_sqlite_url: str) -> Hub:
    """The usual case: a SQLite store, a fault-free sandbox."""
    return hub_factory(fresh_sqlite_url)


def today_shanghai() -> date:
    return now_utc().astimezone(SHANGHAI).date()
