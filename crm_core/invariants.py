"""Business rules enforced on every ORM flush, and the outbox events written in the same transaction.

Registered once on the :class:`~sqlalchemy.orm.Session` class (importing :mod:`crm_core` does it), so
the rules hold whichever code path changes the store through the ORM. The bulk loaders in
:mod:`crm_core.bulk` apply the same rules set-wise and write the same outbox events.

Any violation raises a :class:`hub.errors.DomainError` from inside the flush; the session's
transaction is then rolled back by the caller (``session_scope``), leaving nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from crm_core.credit_code import normalize_credit_code
from crm_core.errors import (
    IllegalTransition,
    InvalidAmount,
    InvoiceTotalMismatch,
    IssuedInvoiceImmutable,
    QuoteWithoutOpportunity,
    SentQuoteImmutable,
    UnknownStage,
)
from crm_core.invoice_hash import row_hash_of_invoice
from crm_core.models import (
    ALL_STAGES,
    LOST,
    STAGES,
    Customer,
    Invoice,
    InvoiceLine,
    Opportunity,
    OpportunityStageChange,
    OutboxEvent,
    Quote,
    QuoteLine,
    QuoteVersion,
    SalesOrderLine,
)
from crm_core.models.invoices import INVOICE_TRANSITIONS
from crm_core.naming import normalize_name
from crm_core.types import VAT_RATES, money, now_utc

CLOSED_STAGES = (STAGES[-1], LOST)
# A sent quote version may still move to these statuses; nothing else about it may change.
SENT_QUOTE_NEXT = ("accepted", "rejected", "superseded")


def _committed(obj: Any, attr: str) -> Any:
    """The value ``attr`` had when loaded (before this flush's changes)."""
    history = inspect(obj).attrs[attr].history
    if history.deleted:
        return history.deleted[0]
    if history.unchanged:
        return history.unchanged[0]
    return getattr(obj, attr)


def _changed(obj: Any, attr: str) -> bool:
    return bool(inspect(obj).attrs[attr].history.has_changes())


def _changed_columns(obj: Any) -> list[str]:
    state = inspect(obj)
    return [a.key for a in state.mapper.column_attrs if state.attrs[a.key].history.has_changes()]


# --- customers ------------------------------------------------------------------------------------


def _check_customer(session: Session, customer: Customer, is_new: bool) -> None:
    if customer.credit_code:
        customer.credit_code = normalize_credit_code(
            customer.credit_code, where=f"customer {customer.name!r}: credit_code"
        )
    if customer.name:
        customer.normalized_name = normalize_name(customer.name)
    if is_new or _changed_columns(customer):
        _queue(session, "customer.upserted", "customer", customer)


# --- opportunities --------------------------------------------------------------------------------


def _check_opportunity(session: Session, opp: Opportunity, is_new: bool) -> None:
    if is_new and opp.stage is None:
        opp.stage = STAGES[0]
    if opp.stage not in ALL_STAGES:
        raise UnknownStage(
            f"opportunity {opp.number}: unknown stage {opp.stage!r}; use one of {', '.join(ALL_STAGES)}",
            context={"opportunity": opp.number, "stage": opp.stage},
        )
    if is_new:
        opp.history.append(
            OpportunityStageChange(
                from_stage=None, to_stage=opp.stage, changed_at=now_utc(), changed_by=opp.owner
            )
        )
        return
    if not _changed(opp, "stage"):
        return
    before = _committed(opp, "stage")
    if before in CLOSED_STAGES:
        raise IllegalTransition(
            f"opportunity {opp.number} is closed ({before}); it cannot move to {opp.stage}. "
            "Open a new opportunity instead.",
            context={"opportunity": opp.number, "from": before, "to": opp.stage},
        )
    if opp.stage in CLOSED_STAGES and opp.closed_at is None:
        opp.closed_at = now_utc()
    opp.history.append(
        OpportunityStageChange(
            from_stage=before, to_stage=opp.stage, changed_at=now_utc(), changed_by=opp.owner
        )
    )
    _queue(session, "opportunity.stage_changed", "opportunity", opp)


# --- quotes ---------------------------------------------------------------------------------------


def _check_quote(quote: Quote) -> None:
    if quote.opportunity_id is None and inspect(quote).attrs["opportunity_id"].value is None:
        raise QuoteWithoutOpportunity(
            f"quote {quote.number}: every quote must reference an opportunity number (OPP-...); "
            "create or pick the opportunity first.",
            context={"quote": quote.number},
        )


def _check_quote_version(version: QuoteVersion, is_new: bool) -> None:
    if is_new:
        return
    if _committed(version, "status") != "sent":
        return
    changed = set(_changed_columns(version)) - {"updated_at"}
    if changed == {"status"} and version.status in SENT_QUOTE_NEXT:
        return
    if changed:
        raise SentQuoteImmutable(
            f"quote version {version.quote.number if version.quote else version.quote_id} v{version.version} "
            f"was sent and cannot be edited (changed: {', '.join(sorted(changed))}); create a new version.",
            context={"quote_version_id": version.id, "changed": sorted(changed)},
        )


def _check_quote_line(line: QuoteLine) -> None:
    version = line.quote_version
    if version is not None and inspect(version).persistent and _committed(version, "status") == "sent":
        raise SentQuoteImmutable(
            f"quote version {version.quote_id} v{version.version} was sent; its lines cannot change. "
            "Create a new version.",
            context={"quote_version_id": version.id},
        )
    _fill_line_amounts(line, f"quote line {line.line_no}")


# --- invoices -------------------------------------------------------------------------------------


def _fill_line_amounts(line: InvoiceLine | QuoteLine | SalesOrderLine, where: str) -> tuple[Decimal, Decimal]:
    """Compute net and tax per line (half-up to the cent), checking any value the caller gave."""
    if line.tax_rate is None or Decimal(line.tax_rate) not in VAT_RATES:
        raise InvalidAmount(
            f"{where}: tax rate {line.tax_rate} is not a VAT rate; use 0.13, 0.09, 0.06, 0.03 or 0.",
            context={"tax_rate": str(line.tax_rate)},
        )
    if line.quantity is None or line.unit_price is None or Decimal(line.unit_price) < 0:
        raise InvalidAmount(f"{where}: quantity and a non-negative unit price are required")
    net = money(Decimal(line.quantity) * Decimal(line.unit_price))
    tax = money(net * Decimal(line.tax_rate))
    for attr, expected in (("net_amount", net), ("tax_amount", tax)):
        given = getattr(line, attr)
        if given is None:
            setattr(line, attr, expected)
        elif money(given) != expected:
            raise InvalidAmount(
                f"{where}: {attr} {given} differs from the computed {expected} "
                "(net = quantity x unit price, tax = net x rate, each rounded half up to the cent)",
                context={attr: str(given), "expected": str(expected)},
            )
    return net, tax


def _check_invoice(session: Session, invoice: Invoice, is_new: bool) -> None:
    before = None if is_new else _committed(invoice, "status")
    if is_new and invoice.status is None:
        invoice.status = "draft"
    if is_new and invoice.status not in ("draft", "issued"):
        raise IllegalTransition(
            f"invoice {invoice.number}: a new invoice starts as draft or issued, not {invoice.status!r}"
        )
    allowed = INVOICE_TRANSITIONS.get(before or "", ())
    if not is_new and _changed(invoice, "status") and invoice.status not in allowed:
        raise IllegalTransition(
            f"invoice {invoice.number}: {before} -> {invoice.status} is not allowed "
            f"(allowed from {before}: {', '.join(allowed) or 'none'})",
            context={"invoice": invoice.number, "from": before, "to": invoice.status},
        )
    if before in ("issued", "red_letter", "voided"):
        amounts_changed = {
            "total_net",
            "total_tax",
            "total_gross",
            "customer_id",
            "issue_date",
            "invoice_number",
        }
        touched = amounts_changed.intersection(_changed_columns(invoice))
        if touched:
            raise IssuedInvoiceImmutable(
                f"invoice {invoice.number} is {before}; {', '.join(sorted(touched))} cannot change. "
                "Issue a red-letter invoice and a new one instead.",
                context={"invoice": invoice.number},
            )
    if invoice.status == "issued" and (
        not invoice.lines or not invoice.invoice_number or not invoice.issue_date
    ):
        raise IllegalTransition(
            f"invoice {invoice.number}: an issued invoice needs lines, an invoice number and an issue date"
        )
    _check_invoice_totals(invoice, is_new)
    # The same content hash the bulk path stores, so either path recognises an unchanged document.
    invoice.row_hash = row_hash_of_invoice(invoice)
    if invoice.status == "issued" and (is_new or before != "issued"):
        _queue(session, "invoice.issued", "invoice", invoice)
    elif before == "issued" and invoice.status != "issued":
        _queue(session, "invoice.changed", "invoice", invoice)


def _check_invoice_totals(invoice: Invoice, is_new: bool) -> None:
    net_sum = Decimal("0.00")
    tax_sum = Decimal("0.00")
    for line in invoice.lines:
        net, tax = _fill_line_amounts(line, f"invoice {invoice.number} line {line.line_no}")
        net_sum += net
        tax_sum += tax
    expected = {"total_net": net_sum, "total_tax": tax_sum, "total_gross": net_sum + tax_sum}
    # Totals the caller set (on a new invoice, or changed now) must agree with the lines; totals the
    # caller left alone are simply recomputed (e.g. after editing a draft's lines).
    for attr, value in expected.items():
        given = getattr(invoice, attr)
        caller_set = given is not None and (is_new or _changed(invoice, attr))
        if caller_set and money(given) != value:
            raise InvoiceTotalMismatch(
                f"invoice {invoice.number}: {attr} {given} differs from the sum of its lines {value} "
                f"(net {net_sum}, tax {tax_sum}). Fix the lines or the totals.",
                context={"invoice": invoice.number, attr: str(given), "expected": str(value)},
            )
        setattr(invoice, attr, value)


def _check_invoice_line(session: Session, line: InvoiceLine) -> None:
    invoice = line.invoice
    committed = _committed(invoice, "status") if invoice is not None and inspect(invoice).persistent else None
    if committed not in (None, "draft"):
        raise IssuedInvoiceImmutable(
            f"invoice {invoice.number} is {committed}; its lines cannot change. Issue a red-letter invoice."
        )


# --- flush hook -----------------------------------------------------------------------------------

_PENDING_KEY = "crm_core_pending_events"


def _queue(session: Session, topic: str, entity_type: str, entity: Any) -> None:
    pending: list[tuple[str, str, Any]] = session.info.setdefault(_PENDING_KEY, [])
    if not any(t == topic and e is entity for t, _, e in pending):
        pending.append((topic, entity_type, entity))


def _objects(session: Session) -> Iterable[tuple[Any, bool]]:
    for obj in list(session.new):
        yield obj, True
    for obj in list(session.dirty):
        if session.is_modified(obj, include_collections=True):
            yield obj, False


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    invoices_to_check: dict[int, tuple[Invoice, bool]] = {}
    for obj, is_new in _objects(session):
        if isinstance(obj, Customer):
            _check_customer(session, obj, is_new)
        elif isinstance(obj, Opportunity):
            _check_opportunity(session, obj, is_new)
        elif isinstance(obj, Quote):
            _check_quote(obj)
        elif isinstance(obj, QuoteVersion):
            _check_quote_version(obj, is_new)
        elif isinstance(obj, QuoteLine):
            _check_quote_line(obj)
            _queue(session, "quote_line.changed", "quote_line", obj)
        elif isinstance(obj, SalesOrderLine):
            _fill_line_amounts(obj, f"order line {obj.line_no}")
            _queue(session, "order_line.changed", "order_line", obj)
        elif isinstance(obj, Invoice):
            invoices_to_check[id(obj)] = (obj, is_new)
        elif isinstance(obj, InvoiceLine):
            if not is_new or (obj.invoice is not None and inspect(obj.invoice).persistent):
                _check_invoice_line(session, obj)
            if obj.invoice is not None:
                invoices_to_check.setdefault(
                    id(obj.invoice), (obj.invoice, not inspect(obj.invoice).persistent)
                )
    for obj in list(session.deleted):
        if isinstance(obj, InvoiceLine) and obj.invoice is not None:
            _check_invoice_line(session, obj)
    for invoice, is_new in invoices_to_check.values():
        _check_invoice(session, invoice, is_new)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: Any) -> None:
    pending: list[tuple[str, str, Any]] = session.info.pop(_PENDING_KEY, [])
    if not pending:
        return
    # Written with the same connection and transaction as the change itself.
    session.execute(
        sa.insert(OutboxEvent),
        [
            {"topic": topic, "entity_type": kind, "entity_id": entity.id, "created_at": now_utc()}
            for topic, kind, entity in pending
        ],
    )


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
