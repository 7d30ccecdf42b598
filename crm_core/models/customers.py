"""Customer archive (客户档案), contacts and interaction history."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_core.models.base import Base, Timestamped
from crm_core.types import TZDateTime

CUSTOMER_STATUSES = ("active", "inactive", "merged")
INTERACTION_KINDS = ("visit", "call", "wechat", "email", "meeting", "feedback")


class Customer(Timestamped, Base):
    """A company we sell to. The credit code is its identity; the normalized name is the fallback key."""

    __tablename__ = "customers"
    __table_args__ = (
        sa.CheckConstraint("tier BETWEEN 1 AND 5", name="tier_range"),
        sa.CheckConstraint(f"status IN {CUSTOMER_STATUSES}", name="status_known"),
        sa.Index("ix_customers_normalized_name", "normalized_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    normalized_name: Mapped[str] = mapped_column(sa.String(200))
    credit_code: Mapped[str | None] = mapped_column(sa.String(18), unique=True)
    industry: Mapped[str | None] = mapped_column(sa.String(64))
    scale: Mapped[str | None] = mapped_column(sa.String(32))
    province: Mapped[str | None] = mapped_column(sa.String(32))
    region: Mapped[str | None] = mapped_column(sa.String(32))
    tier: Mapped[int] = mapped_column(default=3)
    owner: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    merged_into_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"))
    source: Mapped[str | None] = mapped_column(sa.String(64))

    contacts: Mapped[list[Contact]] = relationship(back_populates="customer", cascade="all, delete-orphan")


class Contact(Timestamped, Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    title: Mapped[str | None] = mapped_column(sa.String(64))
    phone: Mapped[str | None] = mapped_column(sa.String(32))
    wechat: Mapped[str | None] = mapped_column(sa.String(64))
    email: Mapped[str | None] = mapped_column(sa.String(128))
    is_primary: Mapped[bool] = mapped_column(default=False)

    customer: Mapped[Customer] = relationship(back_populates="contacts")


class Interaction(Base):
    """A visit, call or message with a customer, optionally about one opportunity."""

    __tablename__ = "interactions"
    __table_args__ = (sa.CheckConstraint(f"kind IN {INTERACTION_KINDS}", name="kind_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    opportunity_id: Mapped[int | None] = mapped_column(sa.ForeignKey("opportunities.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    occurred_at: Mapped[datetime] = mapped_column(TZDateTime())
    summary: Mapped[str] = mapped_column(sa.Text, default="")
    owner: Mapped[str | None] = mapped_column(sa.String(64))
