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

from connectors.kingdee.kis.client import KisClient, PreparedOutbound, voucher_in_range
from connectors.kingdee.kis.records import OutboundBill, Voucher
from crm_core.documents import InvoiceDocument
from hub.errors import PermanentError
from mappings.kis_voucher import VoucherMapping, voucher_amount, voucher_key, vouchers_for

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


@dataclass(frozen=True)
class ExternalVoucher:
    """A follow-up voucher, posted or wanted, keyed by ``reference`` (its idempotency key).

    ``amount`` is the debit total (negative for a red-letter voucher); ``key`` is what must agree
    between the posted and the wanted voucher (date, accounts and amounts), opaque to the caller.
    """

    reference: str
    amount: Decimal
    key: tuple[object, ...]
    external_id: str | None = None
    number: str | None = None
    voucher_date: date | None = None


class OutboundSink(Protocol):
    """An ERP that receives one bill per canonical invoice, keyed by a deterministic bill number."""

    system: str

    def known_material_codes(self) -> set[str]: ...

    def ensure_customer(self, code: str, name: str) -> str: ...

    def find(self, bill_no: str, compare_with: Any = None) -> ExternalBill | None: ...

    def prepare(self, bill: Any) -> Any:
        """Resolve and encode ``bill`` for :meth:`create` ahead of the send (a batch prepares together)."""
        ...

    def create(self, bill: Any) -> tuple[str, bool]:
        """Create the bill exactly once; ``bill`` is the mapped bill or what :meth:`prepare` returned."""
        ...

    def update(self, external_id: str, bill: Any) -> None: ...

    def list_bills(self, date_from: date, date_to: date) -> list[ExternalBill]: ...

    def complete(self, doc: InvoiceDocument, bill: Any, external_id: str) -> int:
        """Follow-up documents of a bill now in the ERP (e.g. a receivable voucher); idempotent.

        Called after every create, update, or lookup that found the bill already sent; returns the
        number of ERP writes it made.
        """
        ...

    def expected_vouchers(self, doc: InvoiceDocument, bill_no: str) -> list[ExternalVoucher]:
        """The vouchers ``doc`` should have in the ERP (none when the template posts none)."""
        ...

    def list_vouchers(self, date_from: date, date_to: date) -> list[ExternalVoucher] | None:
        """Vouchers dated in the range; None when the template posts no vouchers."""
        ...


class KisOutboundSink:
    """KIS cloud: an issued invoice becomes a sales outbound (ERP-APIS §2.4/§2.6), and, where finance
    enabled it (``receivable_voucher``), a receivable voucher (:mod:`mappings.kis_voucher`)."""

    def __init__(self, client: KisClient, vouchers: VoucherMapping | None = None) -> None:
        self.client = client
        self.system = client.settings.name
        self.vouchers = vouchers  # None: no vouchers (the default: finance decides)
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

    def prepare(self, bill: OutboundBill) -> PreparedOutbound:
        return self.client.prepare_outbound(bill)

    def create(self, bill: OutboundBill | PreparedOutbound) -> tuple[str, bool]:
        created = self.client.create_outbound(bill)
        return str(created.fid), created.created

    def update(self, external_id: str, bill: OutboundBill) -> None:
        self.client.update_outbound(int(external_id), bill)

    def complete(self, doc: InvoiceDocument, bill: OutboundBill, external_id: str) -> int:
        """Post the document's receivable voucher(s) exactly once; returns the vouchers created.

        Each wanted voucher is looked up by its reference first (by reference only, not by date, so a
        voucher posted under another date is found too) and created only when absent; a create whose
        reply is lost is resolved by the client looking the reference up before re-sending. A voucher
        already posted with other amounts is never doubled nor edited: PermanentError (dead letter)
        naming the invoice and the voucher, for finance to decide.
        """
        if self.vouchers is None:
            return 0
        writes = 0
        for wanted in vouchers_for(doc, bill.bill_no, self.vouchers):
            writes += self._ensure_voucher(doc, wanted)
        return writes

    def _ensure_voucher(self, doc: InvoiceDocument, wanted: Voucher) -> int:
        posted = list(self.client.list_vouchers(reference=wanted.reference))
        context = {"invoice": doc.number, "voucher_reference": wanted.reference}
        if len(posted) > 1:
            ids = ", ".join(str(v.fid) for v in posted)
            raise PermanentError(
                f"invoice {doc.number}: KIS holds {len(posted)} vouchers with reference "
                f"{wanted.reference!r} (FVoucherID {ids}); delete the extra ones in KIS, then replay "
                "this record (hub queue replay).",
                context=context,
            )
        if posted:
            found = posted[0]
            if voucher_key(found) == voucher_key(wanted):
                return 0
            raise PermanentError(
                f"invoice {doc.number} (发票 {doc.invoice_number}): voucher {wanted.reference!r} is already "
                f"posted in KIS ({found.group}字 {found.number}号, FVoucherID {found.fid}, "
                f"dated {found.date}, debit {voucher_amount(found)}), but the invoice now gives "
                f"dated {wanted.date}, debit {voucher_amount(wanted)} ({_entries(wanted)}). "
                "The hub does not post a second voucher: delete or correct that voucher in KIS, "
                "then replay this record (hub queue replay); "
                "or book the correction by hand and discard it (hub queue discard).",
                context={**context, "voucher_id": found.fid},
            )
        # One write even when the reply was lost and the client found the voucher afterwards: it was
        # absent just above, so this call posted it.
        self.client.create_voucher(wanted)
        return 1

    def expected_vouchers(self, doc: InvoiceDocument, bill_no: str) -> list[ExternalVoucher]:
        if self.vouchers is None:
            return []
        return [_external(v) for v in vouchers_for(doc, bill_no, self.vouchers)]

    def list_vouchers(self, date_from: date, date_to: date) -> list[ExternalVoucher] | None:
        """Every voucher dated in the range, or None when off.

        The list gives ids only; each voucher's detail is read, on a few threads as for the bills (a
        reconciliation reads every voucher of the period; the client is thread-safe).
        """
        if self.vouchers is None:
            return None
        ids = self.client.voucher_ids(date_from, date_to)
        with ThreadPoolExecutor(max_workers=DETAIL_READERS) as pool:
            read = list(pool.map(self.client.get_voucher, ids))
        return [_external(v) for v in read if voucher_in_range(v, date_from, date_to)]

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


def _external(voucher: Voucher) -> ExternalVoucher:
    return ExternalVoucher(
        reference=voucher.reference,
        amount=voucher_amount(voucher),
        key=voucher_key(voucher),
        external_id=None if voucher.fid is None else str(voucher.fid),
        number=None if voucher.number is None else f"{voucher.group}-{voucher.number}",
        voucher_date=voucher.date,
    )


def _entries(voucher: Voucher) -> str:
    return ", ".join(
        f"{e.account_number} {'debit' if e.debit else 'credit'} {e.debit or e.credit}"
        for e in voucher.entries
    )
