"""What the push engine needs from an ERP, whatever the vendor: find, create, update a bill by number.

Each ERP adapter implements :class:`OutboundSink` over its connector client; the engine never sees a
wire format.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from connectors.kingdee.kis.client import KisClient
from connectors.kingdee.kis.records import OutboundBill
from crm_core.documents import InvoiceDocument

DETAIL_READERS = 6  # concurrent detail reads during reconciliation


@dataclass(frozen=True)
class ExternalBill:
    """A bill as the ERP reports it. ``amount``/``tax`` are None where the ERP does not carry them."""

    external_id: str
    bill_no: str
    audited: bool
    amount: Decimal | None = None
    tax: Decimal | None = None
    invoice_no: str | None = None
    bill_date: date | None = None
    same_content: bool | None = None  # set by find(compare_with=...): does it carry what we would send?


class OutboundSink(Protocol):
    """An ERP that receives one bill per canonical invoice, keyed by a deterministic bill number."""

    system: str

    def known_material_codes(self) -> set[str]: ...

    def ensure_customer(self, code: str, name: str) -> str: ...

    def find(self, bill_no: str, compare_with: Any = None) -> ExternalBill | None: ...

    def create(self, bill: Any) -> tuple[str, bool]: ...

    def update(self, external_id: str, bill: Any) -> None: ...

    def list_bills(self, date_from: date, date_to: date) -> list[ExternalBill]: ...

    def complete(self, doc: InvoiceDocument, bill: Any, external_id: str) -> int:
        """Follow-up documents of a bill now in the ERP (e.g. a receivable voucher); idempotent.

        Called after every create, update, or lookup that found the bill already sent; returns the
        number of ERP writes it made.
        """
        ...


class KisOutboundSink:
    """KIS cloud: an issued invoice becomes a sales outbound (ERP-APIS §2.4/§2.6)."""

    def __init__(self, client: KisClient) -> None:
        self.client = client
        self.system = client.settings.name
        self._customers: dict[str, str] = {}  # code -> ERP id, ensured during this sink's run

    def known_material_codes(self) -> set[str]:
        """Read once per run; the client's code cache is reset so it agrees with this list."""
        self.client.materials.invalidate()
        return {m.number for m in self.client.list_materials()}

    def ensure_customer(self, code: str, name: str) -> str:
        # Once per customer and run, not per invoice: KIS has no batch create, so a call per invoice
        # doubled the ERP calls of a push (bench/nightly_push.py, P11).
        if code not in self._customers:
            self._customers[code] = str(self.client.create_customer(code, name))
        return self._customers[code]

    def find(self, bill_no: str, compare_with: OutboundBill | None = None) -> ExternalBill | None:
        """The bill numbered ``bill_no``; with ``compare_with``, also whether it carries the same content."""
        summary = self.client.find_outbound_summary(bill_no)
        if summary is None:
            return None
        if compare_with is None:
            return ExternalBill(str(summary.fid), summary.bill_no, summary.audited)
        found = self.client.get_outbound(summary.fid)
        same = (
            found.total_amount == compare_with.total_amount
            and sorted(line.qty for line in found.lines) == sorted(line.qty for line in compare_with.lines)
            and (found.invoice_no or None) == (compare_with.invoice_no or None)
            and found.red == compare_with.red
        )
        return ExternalBill(
            str(summary.fid),
            summary.bill_no,
            summary.audited,
            amount=found.total_amount,
            invoice_no=found.invoice_no,
            bill_date=found.date,
            same_content=same,
        )

    def create(self, bill: OutboundBill) -> tuple[str, bool]:
        created = self.client.create_outbound(bill)
        return str(created.fid), created.created

    def update(self, external_id: str, bill: OutboundBill) -> None:
        self.client.update_outbound(int(external_id), bill)

    def complete(self, doc: InvoiceDocument, bill: OutboundBill, external_id: str) -> int:
        return 0  # the receivable voucher is not wired yet

    def list_bills(self, date_from: date, date_to: date) -> list[ExternalBill]:
        """Every outbound dated in the range, with its net amount (outbounds carry no tax).

        The list gives heads only, so each bill's detail is read; the reads run on a few threads
        because a reconciliation reads every bill of the period (the client is thread-safe).
        """
        summaries = list(self.client.list_outbound_summaries(date_from, date_to))
        with ThreadPoolExecutor(max_workers=DETAIL_READERS) as pool:
            bills = list(pool.map(lambda summary: self.client.get_outbound(summary.fid), summaries))
        return [
            ExternalBill(
                str(b.fid),
                b.bill_no,
                b.audited,
                amount=b.total_amount,
                invoice_no=b.invoice_no,
                bill_date=b.date,
            )
            for b in bills
        ]
