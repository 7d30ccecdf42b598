"""Process health of the sales pipeline, computed from the canonical store (DOMAIN.md, "Process health").

The three figures the sales managers watch:

- **stage-skip rate**: the share of opportunities whose history jumped forward over a stage they had never
  been in (e.g. 需求确认 -> 谈判 without 方案提交). Goal: below 5 %.
- **follow-up on time**: the share of opportunities that entered 方案提交 and got a customer ``feedback``
  interaction within 48 h of entering it. Goal: above 85 %.
- **regressions**: opportunities sent back from 谈判 to 需求确认 in the last 30 days (at-risk deals).

Everything is read with two or three plain queries and evaluated in Python over the rows; nothing is
written. Times are tz-aware (the store keeps UTC); ``now`` is a parameter so a report is reproducible.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from crm_core.models import Interaction, Opportunity, OpportunityStageChange
from crm_core.models.sales import STAGES
from crm_core.types import now_utc

SKIP_GOAL = 0.05  # stage-skip rate must stay below this share
ON_TIME_GOAL = 0.85  # follow-up share must stay above this share
FOLLOW_UP_DEADLINE = timedelta(hours=48)
REGRESSION_WINDOW = timedelta(days=30)
PROPOSAL = "方案提交"
NEGOTIATION = "谈判"
REQUIREMENTS = "需求确认"
FEEDBACK = "feedback"

_ORDER = {stage: index for index, stage in enumerate(STAGES)}


@dataclass(frozen=True)
class Deal:
    """One opportunity named in a health figure, with the event that put it there."""

    opportunity_id: int
    number: str
    title: str
    owner: str | None
    stage: str  # the opportunity's current stage
    at: datetime  # when the event happened (UTC, aware)
    detail: str  # what happened, in the managers' words

    def as_row(self) -> dict[str, str]:
        """Plain strings, for report tables (Dagster metadata, CLI output)."""
        return {
            "number": self.number,
            "title": self.title,
            "owner": self.owner or "",
            "stage": self.stage,
            "at": self.at.isoformat(timespec="minutes"),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class StageSkips:
    """Opportunities that moved at least once, and those among them that skipped a stage."""

    moved: int
    deals: tuple[Deal, ...]
    goal: float = SKIP_GOAL

    @property
    def skipped(self) -> int:
        return len(self.deals)

    @property
    def rate(self) -> float | None:
        """Skipped / moved; ``None`` when no opportunity has moved yet."""
        return self.skipped / self.moved if self.moved else None

    @property
    def meets_goal(self) -> bool:
        return self.rate is None or self.rate < self.goal


@dataclass(frozen=True)
class FollowUps:
    """Opportunities whose 48 h follow-up after 方案提交 is due, and how many were on time."""

    due: int
    on_time: int
    pending: int  # entered 方案提交 less than 48 h ago and no feedback yet: not judged
    late: tuple[Deal, ...]
    goal: float = ON_TIME_GOAL

    @property
    def share(self) -> float | None:
        """On time / due; ``None`` when nothing is due yet."""
        return self.on_time / self.due if self.due else None

    @property
    def meets_goal(self) -> bool:
        return self.share is None or self.share > self.goal


@dataclass(frozen=True)
class Regressions:
    """Moves from 谈判 back to 需求确认 at or after ``since``."""

    since: datetime
    deals: tuple[Deal, ...]


@dataclass(frozen=True)
class ProcessHealth:
    """All three figures, as of one moment."""

    as_of: datetime
    opportunities: int
    by_stage: dict[str, int]
    skips: StageSkips
    follow_ups: FollowUps
    regressions: Regressions


@dataclass(frozen=True)
class _Move:
    opportunity_id: int
    from_stage: str | None
    to_stage: str
    at: datetime


@dataclass(frozen=True)
class _Opp:
    number: str
    title: str
    owner: str | None
    stage: str


def _opportunities(conn: sa.Connection, ids: Iterable[int]) -> dict[int, _Opp]:
    wanted = sorted(set(ids))
    found: dict[int, _Opp] = {}
    # Chunked IN lists: a few at-risk deals usually, but stay under driver parameter limits regardless.
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = conn.execute(
            sa.select(
                Opportunity.id, Opportunity.number, Opportunity.title, Opportunity.owner, Opportunity.stage
            ).where(Opportunity.id.in_(chunk))
        )
        for row in rows:
            found[row.id] = _Opp(row.number, row.title, row.owner, row.stage)
    return found


def _deals(conn: sa.Connection, events: list[tuple[int, datetime, str]]) -> tuple[Deal, ...]:
    opps = _opportunities(conn, (opp_id for opp_id, _, _ in events))
    deals = [
        Deal(
            opp_id, opps[opp_id].number, opps[opp_id].title, opps[opp_id].owner, opps[opp_id].stage, at, text
        )
        for opp_id, at, text in events
        if opp_id in opps
    ]
    return tuple(sorted(deals, key=lambda d: (d.at, d.number)))


def _moves(conn: sa.Connection, since: datetime | None = None) -> dict[int, list[_Move]]:
    """Every stage change, grouped by opportunity, in the order they happened."""
    query = sa.select(
        OpportunityStageChange.opportunity_id,
        OpportunityStageChange.from_stage,
        OpportunityStageChange.to_stage,
        OpportunityStageChange.changed_at,
    ).order_by(
        OpportunityStageChange.opportunity_id, OpportunityStageChange.changed_at, OpportunityStageChange.id
    )
    if since is not None:
        # The whole history of every opportunity that moved since then: a skip is judged against the
        # stages visited before, which may lie outside the window.
        moved = sa.select(OpportunityStageChange.opportunity_id).where(
            OpportunityStageChange.changed_at >= since, OpportunityStageChange.from_stage.is_not(None)
        )
        query = query.where(OpportunityStageChange.opportunity_id.in_(moved))
    grouped: dict[int, list[_Move]] = defaultdict(list)
    for row in conn.execute(query):
        grouped[row.opportunity_id].append(
            _Move(row.opportunity_id, row.from_stage, row.to_stage, row.changed_at)
        )
    return grouped


def _first_skip(moves: list[_Move], since: datetime | None) -> tuple[datetime, str] | None:
    """The first forward move over a stage never visited before, if any (at or after ``since``).

    The stage an opportunity was created in is not judged: deals migrated from Excel enter mid-pipeline.
    A move back to a stage already visited (after a regression) is not a skip either.
    """
    visited: set[str] = set()
    for move in moves:
        start, end = _ORDER.get(move.from_stage or ""), _ORDER.get(move.to_stage)
        if move.from_stage is not None and start is not None and end is not None and end > start + 1:
            missed = [stage for stage in STAGES[start + 1 : end] if stage not in visited]
            if missed and (since is None or move.at >= since):
                return move.at, f"{move.from_stage} -> {move.to_stage} skipped {'、'.join(missed)}"
        if move.from_stage is not None:
            visited.add(move.from_stage)
        visited.add(move.to_stage)
    return None


def stage_skips(engine: sa.Engine, *, since: datetime | None = None) -> StageSkips:
    """Stage-skip rate over opportunities that moved (at or after ``since``; all history when ``None``)."""
    with engine.connect() as conn:
        grouped = _moves(conn, since)
        moved = 0
        events: list[tuple[int, datetime, str]] = []
        for opp_id, moves in grouped.items():
            if not any(m.from_stage is not None and (since is None or m.at >= since) for m in moves):
                continue
            moved += 1
            skip = _first_skip(moves, since)
            if skip is not None:
                events.append((opp_id, *skip))
        return StageSkips(moved=moved, deals=_deals(conn, events))


def follow_ups(engine: sa.Engine, *, now: datetime | None = None, since: datetime | None = None) -> FollowUps:
    """Share of opportunities whose customer feedback came within 48 h of first entering 方案提交.

    Only entries at or after ``since`` count (all when ``None``). An entry less than 48 h before ``now``
    without feedback yet is *pending*: it is neither on time nor late until its deadline passes.
    """
    now = now or now_utc()
    with engine.connect() as conn:
        entered_q = (
            sa.select(
                OpportunityStageChange.opportunity_id,
                sa.func.min(OpportunityStageChange.changed_at).label("entered_at"),
            )
            .where(OpportunityStageChange.to_stage == PROPOSAL, OpportunityStageChange.changed_at <= now)
            .group_by(OpportunityStageChange.opportunity_id)
        )
        entered = {row.opportunity_id: row.entered_at for row in conn.execute(entered_q)}
        if since is not None:
            entered = {opp_id: at for opp_id, at in entered.items() if at >= since}
        feedback: dict[int, list[datetime]] = defaultdict(list)
        rows = conn.execute(
            sa.select(Interaction.opportunity_id, Interaction.occurred_at).where(
                Interaction.kind == FEEDBACK,
                Interaction.opportunity_id.in_(
                    entered_q.with_only_columns(OpportunityStageChange.opportunity_id)
                ),
            )
        )
        for row in rows:
            feedback[row.opportunity_id].append(row.occurred_at)
        due = on_time = pending = 0
        events: list[tuple[int, datetime, str]] = []
        for opp_id, entered_at in entered.items():
            deadline = entered_at + FOLLOW_UP_DEADLINE
            answers = sorted(at for at in feedback.get(opp_id, []) if at >= entered_at)
            first = answers[0] if answers else None
            if first is not None and first <= deadline:
                due += 1
                on_time += 1
            elif first is None and deadline > now:
                pending += 1
            else:
                due += 1
                if first is None:
                    detail = f"no customer feedback since {PROPOSAL} (deadline {deadline:%Y-%m-%d %H:%M} UTC)"
                else:
                    hours = (first - entered_at).total_seconds() / 3600
                    detail = f"customer feedback {hours:.0f} h after {PROPOSAL} (goal 48 h)"
                events.append((opp_id, entered_at, detail))
        return FollowUps(due=due, on_time=on_time, pending=pending, late=_deals(conn, events))


def regressions(
    engine: sa.Engine, *, now: datetime | None = None, window: timedelta = REGRESSION_WINDOW
) -> Regressions:
    """Opportunities moved from 谈判 back to 需求确认 within ``window`` before ``now``."""
    now = now or now_utc()
    since = now - window
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(OpportunityStageChange.opportunity_id, OpportunityStageChange.changed_at).where(
                OpportunityStageChange.from_stage == NEGOTIATION,
                OpportunityStageChange.to_stage == REQUIREMENTS,
                OpportunityStageChange.changed_at >= since,
                OpportunityStageChange.changed_at <= now,
            )
        )
        events = [(row.opportunity_id, row.changed_at, f"{NEGOTIATION} -> {REQUIREMENTS}") for row in rows]
        return Regressions(since=since, deals=_deals(conn, events))


def process_health(
    engine: sa.Engine, *, now: datetime | None = None, since: datetime | None = None
) -> ProcessHealth:
    """All three figures as of ``now``; the two rates over moves since ``since`` (all history if ``None``)."""
    now = now or now_utc()
    with engine.connect() as conn:
        by_stage = {
            stage: int(count)
            for stage, count in conn.execute(
                sa.select(Opportunity.stage, sa.func.count()).group_by(Opportunity.stage)
            )
        }
    return ProcessHealth(
        as_of=now,
        opportunities=sum(by_stage.values()),
        by_stage=by_stage,
        skips=stage_skips(engine, since=since),
        follow_ups=follow_ups(engine, now=now, since=since),
        regressions=regressions(engine, now=now),
    )
