"""Opportunities, stage changes and versioned quotes: the few operations sales tools call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_core.errors import IllegalTransition, QuoteWithoutOpportunity, UnknownStage
from crm_core.models import ALL_STAGES, Customer, Opportunity, Quote, QuoteLine, QuoteVersion
from crm_core.numbering import next_number
from crm_core.types import money, now_utc


@dataclass(frozen=True)
class LineInput:
    """One priced line of a quote, order or invoice."""

    product_id: int
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal = Decimal("0.13")
    requested_date: date | None = None


def create_opportunity(
    session: Session,
    customer: Customer,
    title: str,
    *,
    owner: str | None = None,
    amount: Decimal = Decimal("0.00"),
    stage: str = "线索",
    expected_close: date | None = None,
    year: int | None = None,
) -> Opportunity:
    """A new opportunity with a human number ``OPP-<year>-NNNNNN``."""
    number = next_number(session, "OPP", year or date.today().year)
    opp = Opportunity(
        number=number,
        customer_id=customer.id,
        title=title,
        owner=owner,
        amount=amount,
        stage=stage,
        expected_close=expected_close,
    )
    session.add(opp)
    session.flush()
    return opp


def change_stage(session: Session, opp: Opportunity, to_stage: str, *, by: str | None = None) -> None:
    """Move ``opp`` to ``to_stage``; the history row and outbox event are written by the flush rules."""
    if to_stage not in ALL_STAGES:
        raise UnknownStage(
            f"opportunity {opp.number}: unknown stage {to_stage!r}; use one of {', '.join(ALL_STAGES)}"
        )
    if by:
        opp.owner = opp.owner or by
    opp.stage = to_stage
    session.flush()


def create_quote(
    session: Session,
    opportunity: Opportunity | None,
    lines: list[LineInput],
    *,
    quote_date: date,
    valid_until: date | None = None,
    region: str | None = None,
) -> QuoteVersion:
    """A new quote (always under an opportunity) and its version 1, as a draft."""
    if opportunity is None:
        raise QuoteWithoutOpportunity(
            "a quote must reference an opportunity (OPP-...); create or pick one first"
        )
    quote = Quote(
        number=next_number(session, "QT", quote_date.year),
        opportunity_id=opportunity.id,
        customer_id=opportunity.customer_id,
    )
    session.add(quote)
    version = QuoteVersion(
        version=1, status="draft", quote_date=quote_date, valid_until=valid_until, region=region
    )
    quote.versions.append(version)  # via the parent: SQLAlchemy 2 does not cascade along backrefs
    _add_quote_lines(version, lines)
    session.flush()
    return version


def send_quote(session: Session, version: QuoteVersion) -> None:
    """Mark a draft version as sent; from now on it is immutable."""
    if version.status != "draft":
        raise IllegalTransition(
            f"quote version v{version.version} is {version.status}; only a draft can be sent"
        )
    version.status = "sent"
    version.sent_at = now_utc()
    session.flush()


def revise_quote(session: Session, quote: Quote, lines: list[LineInput], *, quote_date: date) -> QuoteVersion:
    """A new draft version; the latest sent version is marked superseded (never edited)."""
    latest = session.scalar(
        sa.select(QuoteVersion).where(QuoteVersion.quote_id == quote.id).order_by(QuoteVersion.version.desc())
    )
    next_version = (latest.version + 1) if latest else 1
    if latest is not None and latest.status == "sent":
        latest.status = "superseded"
    version = QuoteVersion(
        quote_id=quote.id,
        version=next_version,
        status="draft",
        quote_date=quote_date,
        region=latest.region if latest else None,
    )
    _add_quote_lines(version, lines)
    session.add(version)
    session.flush()
    return version


def _add_quote_lines(version: QuoteVersion, lines: list[LineInput]) -> None:
    for no, line in enumerate(lines, start=1):
        version.lines.append(
            QuoteLine(
                line_no=no,
                product_id=line.product_id,
                quantity=line.quantity,
                unit_price=line.unit_price,
                tax_rate=line.tax_rate,
                requested_date=line.requested_date,
            )
        )
    version.total_net = sum((_net(line) for line in lines), Decimal("0.00"))
    version.total_tax = sum((_tax(line) for line in lines), Decimal("0.00"))


def _net(line: LineInput) -> Decimal:
    return money(line.quantity * line.unit_price)


def _tax(line: LineInput) -> Decimal:
    return money(_net(line) * line.tax_rate)
