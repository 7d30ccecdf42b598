"""The ledger checker itself: each kind of damage is seen, and a clean push reports none."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import sqlalchemy as sa

from connectors.kingdee.kis_sandbox import FaultConfig
from crm_core.db import session_scope
from crm_core.invoicing import red_letter
from crm_core.models import ExternalBinding, Invoice
from hub.ledger import check_ledger, live_bill_counts
from tests.faults.conftest import drain, ledger_check
from tests.push.conftest import SETTINGS, World


def _check(world: World):  # type: ignore[no-untyped-def]
    return check_ledger(world.engine, world.admin.ledger(), system="erp", mapping=SETTINGS.mapping)


def _binding(world: World, invoice_id: int) -> ExternalBinding:
    with session_scope(world.engine) as session:
        binding = session.scalars(
            sa.select(ExternalBinding).where(ExternalBinding.canonical_id == invoice_id)
        ).one()
        session.expunge(binding)
        return binding


def test_live_bill_counts_nets_creates_and_deletes() -> None:
    ledger = [
        {"endpoint": "APP007104/salesdelivery/create", "bill_no": "HUB-1"},
        {"endpoint": "APP007104/salesdelivery/create", "bill_no": "HUB-2"},
        {"endpoint": "APP007104/salesdelivery/delete", "bill_no": "HUB-2"},
        {"endpoint": "APP007104/salesdelivery/create", "bill_no": "HUB-2"},
        {"endpoint": "APP007104/salesdelivery/create", "bill_no": "HUB-3"},
        {"endpoint": "APP007104/salesdelivery/create", "bill_no": "HUB-3"},
        {"endpoint": "APP006992/Customer/Create", "bill_no": "C001"},
    ]
    assert live_bill_counts(ledger) == {"HUB-1": 1, "HUB-2": 1, "HUB-3": 2}


def test_clean_push_is_exactly_once_and_each_damage_is_reported(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    world: World = world_factory(fresh_sqlite_url, FaultConfig(refuse_duplicate_bill_no=False))
    ids = world.make_invoices(6)
    drain(world)
    clean = ledger_check(world)
    assert (clean.checked, clean.delivered, clean.erp_bills, clean.unsettled) == (6, 6, 6, 0)

    # lost: a bill deleted in the ERP behind our back
    lost = _binding(world, ids[0])
    world.client.delete_outbound(int(lost.external_id))
    # duplicated: a second bill under an existing number
    dup = _binding(world, ids[1])
    template = world.client.get_outbound(int(dup.external_id))
    bill = replace(template, fid=None, check_date=None)
    world.client.create_outbound(bill)
    # phantom: a bill with our prefix that no invoice explains
    world.client.create_outbound(replace(bill, bill_no="HUB-INV-NOBODY"))
    # stale: the canonical record changed (red-lettered) and was not pushed again
    with session_scope(world.engine) as session:
        red_letter(session, session.get(Invoice, ids[3]))

    report = _check(world)
    assert (report.lost, report.duplicated, report.phantom, report.stale) == (1, 1, 1, 1), report.summary()
    assert report.examples == {
        "lost": [lost.external_bill_no],
        "stale": [_binding(world, ids[3]).external_bill_no],
        "duplicated": [dup.external_bill_no],
        "phantom": ["HUB-INV-NOBODY"],
    }
    assert not report.ok


def test_amounts_from_the_erp_add_to_the_stale_check(world_factory, fresh_sqlite_url) -> None:  # type: ignore[no-untyped-def]
    world: World = world_factory(fresh_sqlite_url)
    [invoice_id] = world.make_invoices(1)
    drain(world)
    number = _binding(world, invoice_id).external_bill_no or ""
    with session_scope(world.engine) as session:
        net = session.get(Invoice, invoice_id).total_net  # type: ignore[union-attr]
    ledger = world.admin.ledger()
    ok = check_ledger(world.engine, ledger, system="erp", mapping=SETTINGS.mapping, erp_amounts={number: net})
    assert ok.ok
    off = check_ledger(
        world.engine,
        ledger,
        system="erp",
        mapping=SETTINGS.mapping,
        erp_amounts={number: net + Decimal("0.01")},
    )
    assert off.stale == 1
