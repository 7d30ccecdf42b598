"""K/3 Cloud (云星空): an issued invoice becomes a sales outbound (SAL_OUTSTOCK, ERP-APIS §3.4/§3.8).

Exactly once rests on the deterministic bill number: :meth:`K3CloudClient.save_bill` looks the number up
after a lost reply (or a refusal) before anything is sent again. The template posts no follow-up
documents, so :meth:`complete` writes nothing and there are no vouchers to reconcile.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from connectors.kingdee.k3cloud.client import K3CloudClient
from connectors.kingdee.k3cloud.query import and_, quote_literal
from connectors.kingdee.kis.records import OutboundBill, parse_date, to_decimal
from crm_core.documents import InvoiceDocument
from hub.errors import PermanentError
from hub.push.sink import ExternalBill, ExternalVoucher
from mappings.k3cloud_outbound import (
    FORM_ID,
    K3OutboundLine,
    K3OutboundOptions,
    expected_lines,
    invoice_no_of_note,
    to_save_model,
)

AUDITED = "C"  # FDocumentStatus 已审核
CUSTOMER_FORM = "BD_Customer"
MATERIAL_FORM = "BD_MATERIAL"
_LIST_KEYS = ("FID", "FBillNo", "FDocumentStatus", "FDate", "FNote", "FAllAmount")


class K3CloudOutboundSink:
    """:class:`~hub.push.sink.OutboundSink` over :class:`K3CloudClient`; one per run (customer cache)."""

    def __init__(self, client: K3CloudClient, options: K3OutboundOptions, *, page_size: int = 2000) -> None:
        self.client = client
        self.system = client.settings.name
        self.options = options
        self.page_size = page_size
        self._customers: dict[str, str] = {}  # number -> ERP id, ensured during this sink's run

    def known_material_codes(self) -> set[str]:
        """Numbers of the enabled materials (a forbidden material would be refused by Save)."""
        rows = self.client.iter_query(
            MATERIAL_FORM,
            ("FNumber",),
            filter_string="FForbidStatus = 'A'",
            order_string="FNumber",
            page_size=self.page_size,
        )
        return {str(row[0]) for row in rows}

    def ensure_customer(self, code: str, name: str) -> str:
        """The customer's id, created (keyed by FNumber) and audited when needed; once per customer and run.

        K/3 Cloud refuses an unaudited customer on a bill, so a new one is submitted and audited; a run
        that stopped half-way (created, not audited) finishes the job next time.
        """
        if code not in self._customers:
            found = self.client.find_bill(CUSTOMER_FORM, code, number_field="FNumber")
            if found is None:
                model = {
                    "FName": name,
                    "FCreateOrgId": {"FNumber": self.options.org_number},
                    "FUseOrgId": {"FNumber": self.options.org_number},
                }
                saved = self.client.save_bill(CUSTOMER_FORM, model, code, number_field="FNumber")
                customer_id, status = saved.id, "A" if saved.created else None
                if status is None:  # saved by an attempt whose reply was lost: read its state
                    found = self.client.find_bill(CUSTOMER_FORM, code, number_field="FNumber")
                    status = found.status if found is not None else "A"
            else:
                customer_id, status = found.id, found.status
            if status in ("Z", "A", "D"):
                self.client.submit(CUSTOMER_FORM, ids=[customer_id])
                status = "B"
            if status == "B":
                self.client.audit(CUSTOMER_FORM, ids=[customer_id])
            self._customers[code] = str(customer_id)
        return self._customers[code]

    def find(self, bill_no: str, compare_with: OutboundBill | None = None) -> ExternalBill | None:
        """The bill numbered ``bill_no``; with ``compare_with``, also whether it holds the same lines."""
        if compare_with is None:
            ref = self.client.find_bill(FORM_ID, bill_no)
            if ref is None:
                return None
            return ExternalBill(str(ref.id), ref.number, ref.status == AUDITED)
        viewed = self.client.view(FORM_ID, number=bill_no)
        if viewed is None:
            return None
        lines = sorted(
            (
                K3OutboundLine(
                    str((row.get("MaterialId") or {}).get("Number") or ""),
                    to_decimal(row.get("RealQty")),
                    to_decimal(row.get("AllAmount")),
                )
                for row in viewed.get("Entity") or []
            ),
            key=lambda line: (line.material_code, line.qty, line.amount),
        )
        amount = sum((line.amount for line in lines), Decimal(0))
        invoice_no = invoice_no_of_note(viewed.get("Note"))
        bill_date = parse_date(viewed.get("Date"))
        same = (
            not compare_with.red
            and lines == expected_lines(compare_with)
            and (invoice_no or None) == (compare_with.invoice_no or None)
            and bill_date == compare_with.date
        )
        return ExternalBill(
            str(viewed.get("Id")),
            str(viewed.get("BillNo") or bill_no),
            viewed.get("DocumentStatus") == AUDITED,
            amount=amount,
            invoice_no=invoice_no,
            bill_date=bill_date,
            same_content=same,
        )

    def prepare(self, bill: OutboundBill) -> tuple[str, dict[str, Any]]:
        """(bill number, Save model); a red-letter bill raises PermanentError here (dead letter)."""
        return bill.bill_no, to_save_model(bill, self.options)

    def create(self, bill: OutboundBill | tuple[str, dict[str, Any]]) -> tuple[str, bool]:
        bill_no, model = self.prepare(bill) if isinstance(bill, OutboundBill) else bill
        saved = self.client.save_bill(FORM_ID, model, bill_no)
        return str(saved.id), saved.created

    def update(self, external_id: str, bill: OutboundBill) -> None:
        """Replace the unaudited bill's head and rows (entries not sent are deleted: IsDeleteEntry)."""
        model = to_save_model(bill, self.options)
        ref = self.client.find_bill(FORM_ID, bill.bill_no)
        if ref is not None and ref.status == AUDITED:
            raise PermanentError(
                f"K/3 Cloud connection {self.system!r}: SAL_OUTSTOCK {bill.bill_no} is audited; the hub "
                "does not change an audited bill (un-audit it in K/3 Cloud, then replay the record).",
                context={"bill_no": bill.bill_no, "external_id": external_id},
            )
        self.client.save(FORM_ID, {"FID": int(external_id), **model}, IsDeleteEntry="true")

    def complete(self, doc: InvoiceDocument, bill: Any, external_id: str) -> int:
        return 0  # the template posts no follow-up documents

    def expected_vouchers(self, doc: InvoiceDocument, bill_no: str) -> list[ExternalVoucher]:
        return []

    def list_vouchers(self, date_from: date, date_to: date) -> list[ExternalVoucher] | None:
        return None

    def list_bills(self, date_from: date, date_to: date) -> list[ExternalBill]:
        """Every outbound dated in the range with its net amount (one query, a row per entry)."""
        rows = self.client.iter_query(
            FORM_ID,
            _LIST_KEYS,
            filter_string=and_(
                f"FDate >= {quote_literal(date_from.isoformat())}",
                f"FDate <= {quote_literal(date_to.isoformat())}",
            ),
            order_string="FID,FEntity_FEntryId",
            page_size=self.page_size,
        )
        heads: dict[int, tuple[str, str, Any, Any]] = {}
        amounts: dict[int, Decimal] = defaultdict(Decimal)
        for fid, bill_no, status, bill_date, note, amount in rows:
            heads.setdefault(int(fid), (str(bill_no), str(status or ""), bill_date, note))
            amounts[int(fid)] += to_decimal(amount)
        return [
            ExternalBill(
                str(fid),
                bill_no,
                status == AUDITED,
                amount=amounts[fid],
                invoice_no=invoice_no_of_note(note),
                bill_date=parse_date(bill_date),
            )
            for fid, (bill_no, status, bill_date, note) in heads.items()
        ]
