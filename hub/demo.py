"""One night of the hub on a laptop: fresh SQLite store, the KIS sandbox on loopback, the demo data set,
and the real Dagster jobs the schedules run.

The jobs are launched through Dagster's own CLI (``dagster job execute -m jobs.definitions``) with a
persistent ``DAGSTER_HOME`` under ``HUB_HOME``: the run is exactly what the schedule would start, its
history shows in ``hub ui``, and this module stays below ``jobs/`` in the layering (nothing imports it).
A second ``hub demo`` on the same home plays the next day: a few new invoices and a red-letter, so the
night pushes only those changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from connectors.kingdee.kis_sandbox import SandboxAdmin
from crm_core.db import make_engine, session_scope
from crm_core.migrate import upgrade
from crm_core.models import Customer, Invoice, Product, Warehouse
from crm_core.types import SHANGHAI, now_utc

CONNECTION = "erp"
DEMO_SOURCE = "demo"  # inventory source name the demo data set loads under
DEMO_ENV = {  # what the demo's hub.yaml references; the sandbox accepts exactly these
    "KIS_DEMO_CLIENT_SECRET": "kis-sandbox-client-secret",
    "KIS_DEMO_AUTH_CODE": "kis-sandbox-oauth-code",
}
HUB_YAML = """# Written by `hub demo`: one KIS connection pointed at the local sandbox.
version: 1
connections:
  {name}:
    template: kingdee_kis
    connection:
      base_url: {base_url}
      auth_flow: koas
      client_id: "205022"
      client_secret: ${{KIS_DEMO_CLIENT_SECRET}}
      auth_code: ${{KIS_DEMO_AUTH_CODE}}
      account_number: KIS001
      app_key: null            # the koas flow needs no open-platform app
      app_secret: null
      outer_instance_id: null
      read_timeout: 10
    retry:                     # the sandbox answers in milliseconds: short back-off
      initial_wait: 0.1
      max_wait: 2.0
    streams:
      invoiced_states:
        bill_number_pattern: "HUB-{{external_id}}"
        stock_number: {stock}      # ERP warehouse number outbounds ship from
"""
DAGSTER_YAML = """telemetry:
  enabled: false
run_retries:
  enabled: true
  max_retries: 3
  retry_on_asset_or_op_failure: false
"""


@dataclass
class NightReport:
    home: Path
    first_night: bool
    loaded: dict[str, int] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, bool] = field(default_factory=dict)
    job_logs: dict[str, str] = field(default_factory=dict)


def prepare_home(home: Path, *, fresh: bool) -> bool:
    """Create the home; returns True when this is the first night (a new store)."""
    store = home / "hub.db"
    if fresh and home.exists():
        for path in (store, home / "hub.db-wal", home / "hub.db-shm", home / "kis_sandbox.sqlite"):
            path.unlink(missing_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster").mkdir(exist_ok=True)
    (home / "dagster" / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    return not store.exists()


def seed_sandbox_from_store(engine: sa.Engine, admin: SandboxAdmin) -> dict[str, int]:
    """What the ERP already has: units, materials, warehouses and their stock (the demo data set's
    inventory picture). Customers are not seeded: the hub pushes them itself.

    From then on the ERP is where stock comes from, so the generated picture steps aside in the store.
    """
    from crm_core.models import InventoryPosition, InventorySnapshot

    with session_scope(engine) as session:
        products = session.scalars(sa.select(Product).where(Product.erp_material_code.is_not(None))).all()
        units = sorted({p.unit for p in products})
        materials = [
            {"number": p.erp_material_code, "name": p.name, "model": p.spec or "", "unit": p.unit}
            for p in products
        ]
        warehouses = session.scalars(sa.select(Warehouse)).all()
        stocks = [{"number": w.erp_stock_code or w.code, "name": w.name} for w in warehouses]
        erp_stock = {w.code: w.erp_stock_code or w.code for w in warehouses}
        known = {m["number"] for m in materials}
        in_force = (InventorySnapshot.source == DEMO_SOURCE) & (InventorySnapshot.status == "in_force")
        positions = session.execute(
            sa.select(
                InventoryPosition.material_code,
                InventoryPosition.warehouse_code,
                InventoryPosition.lot,
                InventoryPosition.on_hand,
            )
            .join(InventorySnapshot, InventorySnapshot.id == InventoryPosition.snapshot_id)
            .where(in_force)
        ).all()
        session.execute(sa.update(InventorySnapshot).where(in_force).values(status="superseded"))
    inventory = [
        {"material": m, "stock": erp_stock.get(w, w), "batch": lot or "", "qty": str(qty)}
        for m, w, lot, qty in positions
        if m in known
    ]
    admin.seed(
        {
            "units": [{"number": u, "name": u} for u in units],
            "materials": materials,
            "stocks": stocks,
            "inventory": inventory,
        }
    )
    return {"materials": len(materials), "stocks": len(stocks), "inventory": len(inventory)}


def next_day_changes(engine: sa.Engine, seed: int) -> dict[str, int]:
    """What happens in the CRM during a day: a few invoices issued, one red-lettered."""
    from crm_core.invoicing import create_invoice, issue_invoice, red_letter
    from crm_core.sales import LineInput

    today = now_utc().astimezone(SHANGHAI).date()
    with session_scope(engine) as session:
        customers = session.scalars(sa.select(Customer).order_by(Customer.id).limit(5)).all()
        products = session.scalars(
            sa.select(Product).where(Product.erp_material_code.is_not(None)).order_by(Product.id).limit(4)
        ).all()
        last = session.scalar(sa.select(sa.func.max(Invoice.invoice_number))) or "20000000"
        issued = 0
        for k, customer in enumerate(customers):
            lines = [
                LineInput(products[(k + j) % len(products)].id, Decimal(10 * (k + j + 1)), Decimal("1.25"))
                for j in range(2)
            ]
            invoice = create_invoice(session, customer, lines, year=today.year)
            issue_invoice(session, invoice, invoice_number=f"{int(last) + k + 1:08d}", issue_date=today)
            issued += 1
        victim = session.scalars(
            sa.select(Invoice).where(Invoice.status == "issued").order_by(Invoice.id)
        ).first()
        red = 0
        if victim is not None:
            red_letter(session, victim)
            red = 1
    return {"issued": issued, "red_lettered": red}


MAX_RETRY_ROUNDS = 5


def retries_pending(engine: sa.Engine, system: str) -> bool:
    from crm_core.models import DeliveryQueueItem

    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.select(sa.func.count()).where(
                    DeliveryQueueItem.system == system,
                    DeliveryQueueItem.state.in_(("retry", "pending", "in_flight")),
                )
            ).scalar_one()
        )


def make_retries_due(engine: sa.Engine, system: str) -> int:
    from hub.push.queue import retry_now

    with session_scope(engine) as session:
        return retry_now(session, system)


def run_job(job: str, env: dict[str, str], log_path: Path) -> bool:
    """``dagster job execute`` on the project definitions; True when the run succeeded."""
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [sys.executable, "-m", "dagster", "job", "execute", "-m", "jobs.definitions", "-j", job],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=900,
        )
    return process.returncode == 0


def job_environment(home: Path, config: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DEMO_ENV)
    env.update(
        {
            "HUB_HOME": str(home),
            "HUB_CONFIG": str(config),
            "DAGSTER_HOME": str(home / "dagster"),
            "GX_ANALYTICS_ENABLED": "false",
            "DAGSTER_DISABLE_TELEMETRY": "1",
        }
    )
    env.pop("HUB_DATABASE_URL", None)
    return env


def today() -> date:
    """The business day in Shanghai."""
    return now_utc().astimezone(SHANGHAI).date()


@dataclass(frozen=True)
class NightSummary:
    """What the store says after the night."""

    queue: dict[str, int]
    reconciliation: dict[str, int]
    promises: dict[str, int]
    late: int


def store_summary(engine: sa.Engine) -> NightSummary:
    from crm_core.models import DeliveryPromise, DeliveryQueueItem, ReconciliationRun

    with engine.connect() as conn:
        queue = {
            str(k): int(v)
            for k, v in conn.execute(
                sa.select(DeliveryQueueItem.state, sa.func.count()).group_by(DeliveryQueueItem.state)
            ).all()
        }
        recon = conn.execute(
            sa.select(ReconciliationRun.counts).order_by(ReconciliationRun.id.desc()).limit(1)
        ).first()
        promises = {
            str(k): int(v)
            for k, v in conn.execute(
                sa.select(DeliveryPromise.reason, sa.func.count()).group_by(DeliveryPromise.reason)
            ).all()
        }
        late = int(
            conn.execute(sa.select(sa.func.count()).where(DeliveryPromise.late.is_(True))).scalar_one()
        )
    return NightSummary(queue, dict(recon[0]) if recon else {}, promises, late)


def ensure_store(home: Path) -> sa.Engine:
    url = f"sqlite:///{home / 'hub.db'}"
    upgrade(url)
    return make_engine(url)
