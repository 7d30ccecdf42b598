"""The nightly push into a real K/3 Cloud sandbox on loopback: SAL_OUTSTOCK exactly once, quiet nights,
lost replies and 5xx, quarantine, the wiring from hub.yaml, and reconciliation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.kingdee.k3cloud import K3CloudClient, K3CloudSettings
from connectors.kingdee.k3cloud_sandbox import K3CloudSandbox
from connectors.kingdee.kis.records import OutboundBill, OutboundLine
from connectors.retry import RetryPolicy
from crm_core.db import session_scope
from crm_core.invoicing import red_letter
from crm_core.models import DeliveryQueueItem, Invoice, Product, QuarantinedRecord
from hub.config.project import Project, load_project
from hub.errors import ConfigError, DataValidationError, PermanentError
from hub.push.engine import PushSettings, run_push
from hub.push.k3cloud_sink import K3CloudOutboundSink
from hub.push.queue import RetryPattern
from hub.reconcile import reconcile
from mappings.k3cloud_outbound import K3OutboundOptions, invoice_no_of_note, to_save_model
from mappings.kis_outbound import OutboundMapping
from tests.connectors.k3cloud.conftest import Admin
from tests.push.conftest import _invoices
from tests.support.store import store_with_products

TODAY = date(2026, 11, 28)
MATERIALS = ("M001", "M002", "M003", "M004")  # seeded in the K/3 Cloud sandbox
FAST_RETRY = RetryPolicy(max_attempts=6, initial_wait=0.01, max_wait=0.05, max_elapsed=60.0)
SETTINGS = PushSettings(
    mapping=OutboundMapping(stock_code="CK001"),
    retry=RetryPattern(delays={1: 0}, max_attempts=5),  # retries due at once: a test drains in a few runs
    batch_size=20,
)


@dataclass
class K3World:
    engine: sa.Engine
    sandbox: K3CloudSandbox
    admin: Admin
    client: K3CloudClient
    sink: K3CloudOutboundSink
    make_invoices: Callable[..., list[int]]
    product_ids: list[int]

    def creates(self) -> Counter[str]:
        return Counter(self.admin.creates("SAL_OUTSTOCK"))

    def writes(self) -> int:
        return len(self.admin.ledger())

    def states(self) -> Counter[str]:
        with self.engine.connect() as conn:
            return Counter(conn.execute(sa.select(DeliveryQueueItem.state)).scalars())

    def drain(self, settings: PushSettings = SETTINGS, runs: int = 8) -> None:
        for _ in range(runs):
            run_push(self.engine, self.sink, settings)
            if not {"pending", "retry", "in_flight"} & set(self.states()):
                return

    def bill_numbers(self, ids: list[int]) -> set[str]:
        with session_scope(self.engine) as session:
            numbers = session.scalars(sa.select(Invoice.number).where(Invoice.id.in_(ids)))
            return {f"HUB-{n}" for n in numbers}


@pytest.fixture
def k3_world_factory(tmp_path: Path) -> Iterator[Callable[[str], K3World]]:
    started: list[tuple[K3CloudSandbox, sa.Engine]] = []

    def build(url: str) -> K3World:
        engine, product_ids = store_with_products(url, MATERIALS)
        sandbox = K3CloudSandbox(tmp_path / f"k3cloud_{len(started)}.sqlite", seed=11)
        sandbox.start()
        started.append((sandbox, engine))
        c = sandbox.credentials
        client = K3CloudClient(
            K3CloudSettings(
                name="k3",
                base_url=sandbox.base_url,
                auth_mode="password",
                acct_id=c.acct_id,
                username=c.username,
                password=c.password,
                org_number="100",
                connect_timeout=2.0,
                read_timeout=5.0,
                retry=FAST_RETRY,
            ),
            sleep=lambda _seconds: None,
        )
        sink = K3CloudOutboundSink(client, K3OutboundOptions(org_number="100"))
        return K3World(
            engine, sandbox, Admin(sandbox), client, sink, _invoices(engine, product_ids), product_ids
        )

    yield build
    for sandbox, engine in started:
        sandbox.stop()
        engine.dispose()


@pytest.fixture
def k3(k3_world_factory: Callable[[str], K3World], fresh_sqlite_url: str) -> K3World:
    return k3_world_factory(fresh_sqlite_url)


@pytest.mark.parametrize("store_url", ["fresh_sqlite_url", "fresh_pg_url"])
def test_every_issued_invoice_lands_once_and_a_quiet_night_writes_nothing(
    store_url: str, k3_world_factory: Callable[[str], K3World], request: pytest.FixtureRequest
) -> None:
    world = k3_world_factory(request.getfixturevalue(store_url))
    ids = world.make_invoices(45, customers=4)
    first = run_push(world.engine, world.sink, SETTINGS)
    assert (first.pushed, first.quarantined, first.dead_lettered) == (45, 0, 0)
    assert first.erp_writes == 45
    creates = world.creates()
    assert set(creates) == world.bill_numbers(ids) and set(creates.values()) == {1}
    assert len(world.admin.creates("BD_Customer")) == 4  # one per customer, not per invoice

    writes = world.writes()
    second = run_push(world.engine, world.sink, SETTINGS)
    assert (second.pushed, second.updated, second.erp_writes) == (0, 0, 0)
    assert world.writes() == writes

    viewed = world.client.view("SAL_OUTSTOCK", number=sorted(creates)[0])
    assert viewed is not None and viewed["StockOrgId"]["Number"] == "100"
    assert {row["StockID"]["Number"] for row in viewed["Entity"]} == {"CK001"}
    assert invoice_no_of_note(viewed["Note"]) is not None


def test_lost_replies_and_server_errors_still_land_each_bill_once(k3: K3World) -> None:
    k3.admin.set(lost_reply_mode="502")
    k3.admin.script(
        {"service": "Save", "fault": "lost_reply", "count": 3},
        {"service": "Save", "fault": "http_500", "count": 2, "skip": 2},
        {"service": "Save", "fault": "http_503", "count": 1, "skip": 4},
        {"service": "Save", "fault": "reset", "count": 1, "skip": 6},
        {"service": "ExecuteBillQuery", "fault": "http_502", "count": 2, "skip": 3},
    )
    ids = k3.make_invoices(25)
    k3.drain(PushSettings(mapping=SETTINGS.mapping, retry=SETTINGS.retry, batch_size=10, senders=3))
    assert k3.states() == Counter({"done": 25})
    creates = k3.creates()
    assert set(creates) == k3.bill_numbers(ids) and set(creates.values()) == {1}
    stats = k3.admin.stats()  # every scripted fault was really injected, each exactly as often as scripted
    assert (stats["fault:lost_reply"], stats["fault:http_500"], stats["fault:reset"]) == (3, 2, 1)


def test_random_faults_never_make_a_second_bill(k3: K3World) -> None:
    k3.admin.set(faults={"lost_reply": 0.15, "http_500": 0.05, "http_502": 0.05})
    ids = k3.make_invoices(30)
    k3.drain(runs=12)
    k3.admin.set(faults={"lost_reply": 0.0, "http_500": 0.0, "http_502": 0.0})
    k3.drain()
    assert k3.states() == Counter({"done": 30})
    creates = k3.creates()
    assert set(creates) == k3.bill_numbers(ids) and set(creates.values()) == {1}
    assert k3.admin.stats()["fault:lost_reply"] > 0


def test_an_unknown_material_is_quarantined_and_the_rest_is_sent(k3: K3World) -> None:
    with session_scope(k3.engine) as session:
        ghost = Product(sku="SKU-M404", name="M404", erp_material_code="M404", unit="PCS")
        session.add(ghost)
        session.flush()
        ghost_id = ghost.id
    good = k3.make_invoices(9)
    [bad] = k3.make_invoices(1, product_ids_override=[ghost_id])
    result = run_push(k3.engine, k3.sink, SETTINGS)
    assert (result.pushed, result.quarantined) == (9, 1)
    assert set(k3.creates()) == k3.bill_numbers(good)
    with session_scope(k3.engine) as session:
        [record] = session.scalars(sa.select(QuarantinedRecord)).all()
        assert record.canonical_id == bad and "materials_resolvable" in str(record.reasons)


def test_red_letter_is_dead_lettered_and_an_audited_bill_is_quarantined(k3: K3World) -> None:
    [first, second] = k3.make_invoices(2)
    run_push(k3.engine, k3.sink, SETTINGS)
    numbers = sorted(k3.bill_numbers([first, second]))
    k3.client.submit("SAL_OUTSTOCK", numbers=[numbers[1]])
    k3.client.audit("SAL_OUTSTOCK", numbers=[numbers[1]], InterationFlags="STK_InvCheckResult")
    with session_scope(k3.engine) as session:
        for invoice_id in (first, second):
            invoice = session.get(Invoice, invoice_id)
            assert invoice is not None
            red_letter(session, invoice)
    result = run_push(k3.engine, k3.sink, SETTINGS)
    # Red-letter: no K/3 Cloud document for it (dead letter, clear reason); the audited one needs a
    # red-letter document whatever the hub would send.
    assert (result.dead_lettered, result.quarantined, result.updated) == (1, 1, 0)
    with session_scope(k3.engine) as session:
        dead = session.scalars(sa.select(DeliveryQueueItem).where(DeliveryQueueItem.state == "dead")).one()
        assert "red-letter" in (dead.last_error or "")
    assert sum(k3.creates().values()) == 2


def test_update_replaces_the_rows_of_an_unaudited_bill(k3: K3World) -> None:
    [invoice_id] = k3.make_invoices(1)
    run_push(k3.engine, k3.sink, SETTINGS)
    [bill_no] = k3.bill_numbers([invoice_id])
    found = k3.sink.find(bill_no)
    assert found is not None and not found.audited
    bill = OutboundBill(
        bill_no=bill_no,
        date=TODAY,
        lines=(
            OutboundLine(qty=Decimal(3), price=Decimal("2.50"), material_code="M002", stock_code="CK001"),
        ),
        customer_code="C001",
        note="X 发票 99999999",
        invoice_no="99999999",
    )
    k3.sink.update(found.external_id, bill)
    again = k3.sink.find(bill_no, compare_with=bill)
    assert again is not None and again.same_content and again.amount == Decimal("7.50")
    assert again.invoice_no == "99999999" and again.external_id == found.external_id
    assert sum(k3.creates().values()) == 1


HUB_YAML = """version: 1
connections:
  k3:
    template: kingdee_k3cloud
    connection:
      base_url: {base_url}
      acct_id: "{acct_id}"
      username: {username}
      auth: password
      password: ${{K3_PUSH_TEST_PASSWORD}}
      app_id: null
      app_secret: null
      org_number: "100"
      read_timeout: 10
    retry:
      max_attempts: 3
      initial_wait: 0.01
      max_wait: 0.05
    streams:
      invoiced_states:
        bill_number_pattern: "HUB-{{external_id}}"
        stock_number: {stock}
        batch_size: 7
        senders: 2
"""


def _project(
    world: K3World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stock: str = "CK001"
) -> Project:
    c = world.sandbox.credentials
    config = tmp_path / "hub.yaml"
    config.write_text(
        HUB_YAML.format(base_url=world.sandbox.base_url, acct_id=c.acct_id, username=c.username, stock=stock),
        encoding="utf-8",
    )
    monkeypatch.setenv("K3_PUSH_TEST_PASSWORD", c.password)
    return load_project(config)


def test_hub_yaml_makes_k3cloud_a_push_target_and_reconciles(
    k3: K3World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.runtime import open_sink, push_targets

    project = _project(k3, tmp_path, monkeypatch)
    [target] = push_targets(project)
    assert (target.name, target.kind) == ("k3", "kingdee_k3cloud")
    assert (target.settings.batch_size, target.settings.senders) == (7, 2)
    assert target.settings.mapping.stock_code == "CK001"
    ids = k3.make_invoices(16)
    with open_sink(project, target.name) as sink:
        result = run_push(k3.engine, sink, target.settings)
        assert (result.pushed, result.dead_lettered) == (16, 0)
        recon = reconcile(k3.engine, sink, TODAY, TODAY, mapping=target.settings.mapping)
    assert recon.counts == {"matched": 16}
    assert set(k3.creates()) == k3.bill_numbers(ids)

    # Behind our back in K/3 Cloud: one bill deleted, one with another quantity.
    numbers = sorted(k3.creates())
    k3.client.delete("SAL_OUTSTOCK", numbers=[numbers[0]])
    altered = k3.client.view("SAL_OUTSTOCK", number=numbers[1])
    assert altered is not None
    row = altered["Entity"][0]
    k3.client.save(
        "SAL_OUTSTOCK",
        {"FID": altered["Id"], "FEntity": [{"FEntryID": row["Id"], "FRealQty": row["RealQty"] + 1}]},
        IsDeleteEntry="false",
    )
    with open_sink(project, target.name) as sink:
        recon = reconcile(k3.engine, sink, TODAY, TODAY, mapping=target.settings.mapping)
    assert recon.counts == {"matched": 14, "missing_in_erp": 1, "amount_mismatch": 1}


def test_hub_yaml_without_a_warehouse_is_a_config_error(
    k3: K3World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.runtime import open_sink

    project = _project(k3, tmp_path, monkeypatch, stock="null")
    with pytest.raises(ConfigError, match="stock_number"), open_sink(project, "k3"):
        pass


def test_the_mapping_refuses_red_letter_and_amounts_the_erp_would_change() -> None:
    options = K3OutboundOptions(org_number="100")
    line = OutboundLine(qty=Decimal(3), price=Decimal("0.85"), material_code="M001", stock_code="CK001")
    bill = OutboundBill(bill_no="HUB-1", date=TODAY, lines=(line,), customer_code="C001", invoice_no="123")
    model = to_save_model(bill, options)
    assert model["FBillNo"] == "HUB-1" and model["FNote"] == "发票 123"
    assert model["FEntity"][0]["FTaxPrice"] == Decimal("0.85") and model["FEntity"][0]["FRealQty"] == 3
    with pytest.raises(PermanentError, match="red-letter"):
        to_save_model(OutboundBill("HUB-2", TODAY, (line,), customer_code="C001", red=True), options)
    odd = OutboundLine(
        Decimal(3), Decimal("0.85"), material_code="M001", stock_code="CK001", amount=Decimal(3)
    )
    with pytest.raises(DataValidationError, match="derives"):
        to_save_model(OutboundBill("HUB-3", TODAY, (odd,), customer_code="C001"), options)
