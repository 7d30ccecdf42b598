"""The ledger check: did every pushed document land in the ERP exactly once, with its latest content?

Compares the ERP's write ledger (one row per accepted write, as the KIS sandbox's
``/__admin__/ledger`` lists it: ``seq, endpoint, bill_no, fid, payload_hash``) with the canonical store
(invoices, outbound bindings, delivery queue) and classifies what disagrees:

- **lost**: the store says the document was delivered (queue ``done`` and a binding), the ERP has no
  live bill under its number;
- **duplicated**: more than one live bill under one number (creates minus deletes > 1);
- **phantom**: a live ERP bill carrying our bill-number prefix that no canonical invoice explains;
- **stale**: a delivered document whose binding's payload hash is not the hash of what the current
  mapping makes of the current canonical record (or, when ERP amounts are given, whose ERP amount
  differs from the canonical net total).

"Exactly once" is ``lost == duplicated == phantom == stale == 0`` (PERF-RELIABILITY §B.2/§B.4).
The check reads the store only; the ledger (and optional ERP amounts) are passed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_core.documents import load_documents
from crm_core.models import DeliveryQueueItem, ExternalBinding, Invoice
from mappings.kis_outbound import OutboundMapping, payload_hash, to_outbound

PUSHABLE = ("issued", "red_letter")
CREATE_ENDPOINT = "salesdelivery/create"
DELETE_ENDPOINT = "salesdelivery/delete"
EXAMPLES = 5  # examples kept per category: enough to start looking, small enough for a log line
CHUNK = 2000  # invoices read per store query (bounded memory on a large store)


@dataclass
class LedgerReport:
    """Counts and a few example bill numbers per category; ``ok`` means exactly once."""

    checked: int = 0  # canonical pushable invoices looked at
    delivered: int = 0  # of which the store says delivered (queue done + binding)
    erp_bills: int = 0  # live ERP bills carrying our prefix
    unsettled: int = 0  # queue items not yet settled (pending/retry/in_flight): not an error by itself
    lost: int = 0
    duplicated: int = 0
    phantom: int = 0
    stale: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing is lost, duplicated, phantom or stale."""
        return not (self.lost or self.duplicated or self.phantom or self.stale)

    def _note(self, kind: str, bill_no: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        examples = self.examples.setdefault(kind, [])
        if len(examples) < EXAMPLES:
            examples.append(bill_no)

    def summary(self) -> str:
        """One line for a log or an assertion message."""
        return (
            f"ledger check: {self.checked} invoices, {self.delivered} delivered, {self.erp_bills} ERP bills, "
            f"{self.unsettled} unsettled; lost={self.lost} duplicated={self.duplicated} "
            f"phantom={self.phantom} stale={self.stale} examples={self.examples}"
        )


def live_bill_counts(ledger: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """Bills alive in the ERP per bill number: creates minus deletes, from the write ledger."""
    live: Counter[str] = Counter()
    for row in ledger:
        endpoint = str(row.get("endpoint") or "").lower()
        bill_no = row.get("bill_no")
        if not bill_no:
            continue
        if endpoint.endswith(CREATE_ENDPOINT):
            live[str(bill_no)] += 1
        elif endpoint.endswith(DELETE_ENDPOINT):
            live[str(bill_no)] -= 1
    return +live  # drop numbers whose bills were all deleted


def _prefix(mapping: OutboundMapping) -> str:
    """The literal start of the bill-number pattern (``HUB-`` of ``HUB-{number}``)."""
    return mapping.bill_no_pattern.split("{", 1)[0]


def check_ledger(
    engine: sa.Engine,
    ledger: Iterable[Mapping[str, Any]],
    *,
    system: str,
    mapping: OutboundMapping = OutboundMapping(),
    erp_amounts: Mapping[str, Decimal] | None = None,
) -> LedgerReport:
    """Compare the ERP write ledger with the canonical store of ``system``; see the module docstring.

    ``erp_amounts`` (bill number -> net amount as the ERP reports it, e.g. from the sink's
    ``list_bills``) adds an amount comparison to the stale check.
    """
    report = LedgerReport()
    live = live_bill_counts(ledger)
    prefix = _prefix(mapping)
    ours = {bill_no: n for bill_no, n in live.items() if bill_no.startswith(prefix)}
    report.erp_bills = sum(ours.values())
    explained: set[str] = set()
    with engine.connect() as conn:
        ids = list(
            conn.execute(
                sa.select(Invoice.id).where(Invoice.status.in_(PUSHABLE)).order_by(Invoice.id)
            ).scalars()
        )
    with Session(engine) as session:
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            docs = load_documents(session, chunk)
            states = dict(
                session.execute(
                    sa.select(DeliveryQueueItem.canonical_id, DeliveryQueueItem.state).where(
                        DeliveryQueueItem.system == system,
                        DeliveryQueueItem.kind == "invoice",
                        DeliveryQueueItem.canonical_id.in_(chunk),
                    )
                ).all()
            )
            bindings = {
                b.canonical_id: b
                for b in session.scalars(
                    sa.select(ExternalBinding).where(
                        ExternalBinding.system == system,
                        ExternalBinding.kind == "outbound",
                        ExternalBinding.canonical_id.in_(chunk),
                    )
                )
            }
            for doc_id, doc in docs.items():
                report.checked += 1
                bill_no = mapping.bill_no(doc)
                explained.add(bill_no)
                binding = bindings.get(doc_id)
                if binding is not None and binding.external_bill_no:
                    explained.add(binding.external_bill_no)
                state = states.get(doc_id)
                if state in ("pending", "retry", "in_flight"):
                    report.unsettled += 1
                if state != "done" or binding is None:
                    continue
                report.delivered += 1
                number = binding.external_bill_no or bill_no
                if ours.get(number, live.get(number, 0)) < 1:
                    report._note("lost", number)
                    continue
                current = payload_hash(to_outbound(doc, mapping), mapping.version)
                amount_differs = (
                    erp_amounts is not None
                    and number in erp_amounts
                    and Decimal(erp_amounts[number]).quantize(Decimal("0.01")) != doc.total_net
                )
                if binding.payload_hash != current or amount_differs:
                    report._note("stale", number)
            session.expunge_all()  # bounded memory over a large store
    for bill_no, count in sorted(ours.items()):
        if count > 1:
            report._note("duplicated", bill_no)
        if bill_no not in explained:
            report._note("phantom", bill_no)
    return report
