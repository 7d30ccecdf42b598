"""Customer identity: create or merge by credit code, then by normalised name; never double."""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_core.credit_code import normalize_credit_code
from crm_core.errors import DuplicateCustomer
from crm_core.models import Customer
from crm_core.naming import normalize_name
from crm_core.numbering import next_value

__all__ = ["customer_code", "find_customer", "new_customer", "normalize_name", "upsert_customer"]

# Fields a merge may fill when the existing record lacks them; it never overwrites a known value.
_MERGEABLE = ("industry", "scale", "province", "region", "owner", "source")


def customer_code(value: int) -> str:
    """The human customer code for counter value ``value`` (``C000123``)."""
    return f"C{value:06d}"


def new_customer(
    *, code: str, name: str, credit_code: str | None, tier: int | None, **values: str | None
) -> Customer:
    """A new customer record (not yet added); the one place the create rule lives."""
    return Customer(
        code=code,
        name=name.strip(),
        normalized_name=normalize_name(name),
        credit_code=credit_code,
        tier=tier or 3,
        **values,
    )


def find_customer(session: Session, *, credit_code: str | None, name: str) -> Customer | None:
    """The existing customer with this credit code, else with this normalised name (if unambiguous)."""
    if credit_code:
        found = session.scalar(sa.select(Customer).where(Customer.credit_code == credit_code))
        if found is not None:
            return found
    candidates = session.scalars(
        sa.select(Customer).where(Customer.normalized_name == normalize_name(name)).limit(2)
    ).all()
    if len(candidates) == 1:
        match = candidates[0]
        # Two different credit codes under one name are two companies (e.g. branches): never merge them.
        if credit_code and match.credit_code and match.credit_code != credit_code:
            return None
        return match
    return None


def upsert_customer(
    session: Session,
    *,
    name: str,
    credit_code: str | None = None,
    industry: str | None = None,
    scale: str | None = None,
    province: str | None = None,
    region: str | None = None,
    tier: int | None = None,
    owner: str | None = None,
    source: str | None = None,
    on_duplicate: Literal["merge", "refuse"] = "merge",
) -> tuple[Customer, str]:
    """Create the customer, or merge into the one with the same credit code / normalised name.

    The merge rule: the existing record keeps every value it has; empty fields are filled from the
    new data; a credit code is added when the existing record had none; the better (lower) tier wins.
    Returns the customer and ``"created"`` or ``"merged"``. With ``on_duplicate="refuse"`` an existing
    match raises :class:`DuplicateCustomer` instead.
    """
    code = (
        normalize_credit_code(credit_code, where=f"customer {name!r}: credit_code") if credit_code else None
    )
    existing = find_customer(session, credit_code=code, name=name)
    values = {
        "industry": industry,
        "scale": scale,
        "province": province,
        "region": region,
        "owner": owner,
        "source": source,
    }
    if existing is None:
        customer = new_customer(
            code=customer_code(next_value(session, "C")), name=name, credit_code=code, tier=tier, **values
        )
        session.add(customer)
        session.flush()
        return customer, "created"
    if on_duplicate == "refuse":
        raise DuplicateCustomer(
            f"customer {name!r} already exists as {existing.code} ({existing.name}); "
            "merge it or change the data.",
            context={"existing": existing.code},
        )
    for key in _MERGEABLE:
        if getattr(existing, key) in (None, "") and values[key]:
            setattr(existing, key, values[key])
    if code and not existing.credit_code:
        existing.credit_code = code
    if tier is not None and tier < existing.tier:
        existing.tier = tier
    session.flush()
    return existing, "merged"
