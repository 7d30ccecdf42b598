"""Crafted sales histories for the process-health tests.

Each opportunity is created and moved through the real store API (the flush rules write the history
rows), then its transition times are set to the crafted moments, as the demo loader does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

import crm_core  # noqa: F401  (flush rules)
from crm_core.customers import upsert_customer
from crm_core.db import session_scope
from crm_core.models import Interaction, Opportunity
from crm_core.sales import change_stage, create_opportunity

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
T0 = NOW - timedelta(days=120)
FORWARD = ("线索", "接触", "需求确认", "方案提交")


def make_opportunity(engine: sa.Engine, title: str, path: list[tuple[str, datetime]]) -> str:
    """An opportunity that went through ``path`` (stage, entered at); returns its number."""
    with session_scope(engine) as session:
        customer, _ = upsert_customer(session, name=f"{title}有限公司", owner="王经理")
        opp = create_opportunity(session, customer, title, owner="王经理", stage=path[0][0], year=2026)
        for stage, _at in path[1:]:
            change_stage(session, opp, stage)
        for change, (_stage, at) in zip(opp.history, path, strict=True):
            change.changed_at = at
        return opp.number


def walk(stages: tuple[str, ...] | list[str], start: datetime = T0, step: timedelta = timedelta(days=3)):
    return [(stage, start + i * step) for i, stage in enumerate(stages)]


def add_interaction(engine: sa.Engine, number: str, kind: str, at: datetime) -> None:
    with session_scope(engine) as session:
        opp = session.scalars(sa.select(Opportunity).where(Opportunity.number == number)).one()
        session.add(
            Interaction(customer_id=opp.customer_id, opportunity_id=opp.id, kind=kind, occurred_at=at)
        )


def entered(path: list[tuple[str, datetime]], stage: str) -> datetime:
    return next(at for s, at in path if s == stage)
