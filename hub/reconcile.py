"""Reconciliation finance can sign off: the store against what the ERP really holds, document by document.

For a date range, every issued (or red-lettered) invoice is matched to the ERP bill carrying its
deterministic bill number, and every ERP bill carrying our bill-number prefix is matched back. Each
document gets one status: matched, missing_in_erp, amount_mismatch, duplicated_in_erp,
unexpected_in_erp, pending (not pushed yet, retrying or quarantined) or dead_lettered. Results are
stored and written as CSV and XLSX with Chinese headers for finance.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from crm_core.db import session_scope
from crm_core.documents import InvoiceDocument, load_documents
from crm_core.models import DeliveryQueueItem, Invoice, ReconciliationResult, ReconciliationRun
from crm_core.types import now_utc
from hub.push.sink import ExternalBill, ExternalVoucher, OutboundSink
from mappings.kis_outbound import OutboundMapping
from mappings.kis_voucher import bill_no_of_reference

IN_CHUNK = 500  # ids per IN list
MISMATCH_STATUSES = ("missing_in_erp", "amount_mismatch", "duplicated_in_erp", "unexpected_in_erp")
HEADERS = {  # column -> Chinese header for finance
    "status": "对账结果",
    "canonical_number": "CRM单号",
    "invoice_number": "发票号码",
    "bill_no": "ERP单据编号",
    "external_id": "ERP内码",
    "canonical_amount": "CRM金额(不含税)",
    "erp_amount": "ERP金额",
    "difference": "差额",
    "details": "说明",
}
STATUS_LABELS = {
    "matched": "一致",
    "missing_in_erp": "ERP缺失",
    "amount_mismatch": "金额不符",
    "duplicated_in_erp": "ERP重复",
    "unexpected_in_erp": "ERP多出",
    "pending": "待推送",
    "dead_lettered": "推送失败(死信)",
}


@dataclass(frozen=True)
class Row:
    status: str
    canonical_id: int | None
    canonical_number: str | None
    invoice_number: str | None
    bill_no: str | None
    external_id: str | None
    canonical_amount: Decimal | None
    erp_amount: Decimal | None
    details: str = ""

    @property
    def difference(self) -> Decimal | None:
        if self.canonical_amount is None or self.erp_amount is None:
            return None
        return self.erp_amount - self.canonical_amount


@dataclass
class Reconciliation:
    run_id: int
    rows: list[Row]
    counts: dict[str, int]
    csv_path: Path | None = None
    xlsx_path: Path | None = None

    @property
    def mismatches(self) -> int:
        return sum(self.counts.get(s, 0) for s in MISMATCH_STATUSES)


def reconcile(
    engine: sa.Engine,
    sink: OutboundSink,
    date_from: date,
    date_to: date,
    *,
    mapping: OutboundMapping,
    out_dir: Path | None = None,
) -> Reconciliation:
    """Compare, store the results, and write the reports when ``out_dir`` is given."""
    prefix = mapping.bill_no_pattern.split("{", 1)[0]
    erp_by_no: dict[str, list[ExternalBill]] = defaultdict(list)
    for bill in sink.list_bills(date_from, date_to):
        if bill.bill_no.startswith(prefix):
            erp_by_no[bill.bill_no].append(bill)
    posted = sink.list_vouchers(date_from, date_to)  # None: this template posts no vouchers
    vouchers_by_ref: dict[str, list[ExternalVoucher]] = defaultdict(list)
    for voucher in posted or []:
        if bill_no_of_reference(voucher.reference).startswith(prefix):
            vouchers_by_ref[voucher.reference].append(voucher)
    rows: list[Row] = []
    with session_scope(engine) as session:
        ids = list(
            session.scalars(
                sa.select(Invoice.id).where(
                    Invoice.status.in_(("issued", "red_letter")),
                    Invoice.issue_date.between(date_from, date_to),
                )
            )
        )
        # In chunks: one IN list over a whole period passes SQLite's bound-variable limit (999 on
        # older builds) and makes statements of megabytes on PostgreSQL.
        docs: dict[int, InvoiceDocument] = {}
        states: dict[int, str] = {}
        for chunk in _chunks(ids, IN_CHUNK):
            docs.update(load_documents(session, chunk))
            query = sa.select(DeliveryQueueItem.canonical_id, DeliveryQueueItem.state).where(
                DeliveryQueueItem.system == sink.system, DeliveryQueueItem.canonical_id.in_(chunk)
            )
            states.update((canonical_id, state) for canonical_id, state in session.execute(query))
        seen: set[str] = set()
        seen_refs: set[str] = set()
        for doc in sorted(docs.values(), key=lambda d: d.number):
            bill_no = mapping.bill_no(doc)
            seen.add(bill_no)
            found = erp_by_no.get(bill_no, [])
            state = states.get(doc.id)
            row = _classify(doc, bill_no, found, state)
            if posted is not None:
                expected = sink.expected_vouchers(doc, bill_no)
                seen_refs.update(v.reference for v in expected)
                if row.status == "matched":
                    row = _check_vouchers(row, expected, vouchers_by_ref, state)
            rows.append(row)
        for bill_no, bills in sorted(erp_by_no.items()):
            if bill_no not in seen:
                for bill in bills:
                    rows.append(
                        Row(
                            "unexpected_in_erp",
                            None,
                            None,
                            bill.invoice_no,
                            bill_no,
                            bill.external_id,
                            None,
                            bill.amount,
                            details="no issued CRM invoice in this period has this number",
                        )
                    )
        for reference, vouchers in sorted(vouchers_by_ref.items()):
            if reference not in seen_refs:
                for voucher in vouchers:
                    rows.append(
                        Row(
                            "unexpected_in_erp",
                            None,
                            None,
                            None,
                            bill_no_of_reference(reference),
                            voucher.external_id,
                            None,
                            voucher.amount,
                            details=f"凭证 {voucher.number} (reference {reference}): no issued CRM invoice "
                            "in this period wants this voucher",
                        )
                    )
        counts = dict(Counter(r.status for r in rows))
        run = ReconciliationRun(
            system=sink.system, business_date=date_to, finished_at=now_utc(), counts=counts
        )
        session.add(run)
        session.flush()
        if rows:  # an empty parameter list would insert one row of defaults
            session.execute(sa.insert(ReconciliationResult), [
                {"run_id": run.id, "canonical_id": r.canonical_id, "canonical_number": r.canonical_number,
                 "bill_no": r.bill_no, "external_id": r.external_id, "status": r.status,
                 "canonical_amount": r.canonical_amount, "erp_amount": r.erp_amount, "details": r.details}
                for r in rows
            ])  # fmt: skip
        run_id = run.id
    result = Reconciliation(run_id, rows, counts)
    if out_dir is not None:
        stem = f"reconciliation_{sink.system}_{date_from.isoformat()}_{date_to.isoformat()}"
        result.csv_path = write_csv(rows, out_dir / f"{stem}.csv")
        result.xlsx_path = write_xlsx(
            rows, out_dir / f"{stem}.xlsx", title=f"{sink.system} {date_from}~{date_to}"
        )
    return result


def _classify(doc: InvoiceDocument, bill_no: str, found: list[ExternalBill], state: str | None) -> Row:
    """The status of one canonical invoice given the ERP bills carrying its number and its queue state."""
    base = Row("matched", doc.id, doc.number, doc.invoice_number, bill_no, None, doc.total_net, None)
    if len(found) > 1:
        return replace(
            base,
            status="duplicated_in_erp",
            external_id=",".join(b.external_id for b in found),
            erp_amount=sum((b.amount or Decimal(0) for b in found), Decimal(0)),
            details=f"{len(found)} bills carry this number",
        )
    if found:
        bill = found[0]
        matched = replace(base, external_id=bill.external_id, erp_amount=bill.amount)
        if bill.amount is not None and bill.amount != doc.total_net:
            return replace(matched, status="amount_mismatch", details="net amount differs")
        if bill.invoice_no is not None and bill.invoice_no != doc.invoice_number:
            return replace(
                matched, status="amount_mismatch", details=f"invoice number in ERP is {bill.invoice_no}"
            )
        return matched
    if state == "dead":
        return replace(base, status="dead_lettered", details="see hub queue list --state dead")
    if state == "done":
        return replace(
            base, status="missing_in_erp", details="pushed, but the ERP no longer has it (deleted?)"
        )
    return replace(base, status="pending", details=f"queue state: {state or 'not yet queued'}")


def _check_vouchers(
    row: Row, expected: list[ExternalVoucher], posted: dict[str, list[ExternalVoucher]], state: str | None
) -> Row:
    """A matched row stays matched only when each voucher the document wants is in the ERP once, with
    the same date, accounts and amounts."""
    for wanted in expected:
        found = posted.get(wanted.reference, [])
        if len(found) > 1:
            ids = ",".join(v.external_id or "?" for v in found)
            return replace(
                row,
                status="duplicated_in_erp",
                details=f"{len(found)} vouchers carry reference {wanted.reference} (FVoucherID {ids})",
            )
        if not found:
            if state not in ("done", "dead"):
                return replace(
                    row,
                    status="pending",
                    details=f"voucher {wanted.reference} not posted yet "
                    f"(queue state: {state or 'not yet queued'})",
                )
            return replace(
                row,
                status="missing_in_erp",
                details=f"receivable voucher {wanted.reference} (debit {wanted.amount:.2f}) is not in "
                "the ERP (deleted, or posted before vouchers were enabled?)",
            )
        if found[0].key != wanted.key:
            return replace(
                row,
                status="amount_mismatch",
                details=f"voucher {wanted.reference} ({found[0].number}): debit {found[0].amount:.2f} "
                f"dated {found[0].voucher_date} in the ERP, {wanted.amount:.2f} dated {wanted.voucher_date} "
                "expected (or other accounts)",
            )
    return row


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def pushed_business_range(engine: sa.Engine, system: str, since: datetime, today: date) -> tuple[date, date]:
    """Issue dates to reconcile after a push: from the oldest invoice the queue touched since ``since``
    (a backlog may reach back weeks) to ``today``; just ``today`` when nothing was touched."""
    with engine.connect() as conn:
        oldest = conn.execute(
            sa.select(sa.func.min(Invoice.issue_date))
            .join(DeliveryQueueItem, DeliveryQueueItem.canonical_id == Invoice.id)
            .where(DeliveryQueueItem.system == system, DeliveryQueueItem.updated_at >= since)
        ).scalar()
    return (min(oldest, today) if oldest else today), today


def _cells(row: Row) -> list[object]:
    return [
        STATUS_LABELS[row.status],
        row.canonical_number or "",
        row.invoice_number or "",
        row.bill_no or "",
        row.external_id or "",
        row.canonical_amount,
        row.erp_amount,
        row.difference,
        row.details,
    ]


def _total(rows: list[Row], attr: str) -> Decimal:
    return sum((getattr(r, attr) or Decimal(0) for r in rows), Decimal("0.00"))


def write_csv(rows: list[Row], path: Path) -> Path:
    """UTF-8 with BOM so Excel on Chinese Windows opens it correctly; amounts with two decimals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADERS.values())
        for row in rows:
            writer.writerow(
                ["" if v is None else (f"{v:.2f}" if isinstance(v, Decimal) else v) for v in _cells(row)]
            )
        writer.writerow(
            [
                "合计",
                "",
                "",
                "",
                "",
                f"{_total(rows, 'canonical_amount'):.2f}",
                f"{_total(rows, 'erp_amount'):.2f}",
                "",
                f"{len(rows)} 行",
            ]
        )
    return path


def write_xlsx(rows: list[Row], path: Path, *, title: str) -> Path:
    """An XLSX with amounts as numbers (not text) formatted to two decimals, and a totals row."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    path.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook()
    sheet = book.active
    sheet.title = "对账"
    sheet.append(list(HEADERS.values()))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([float(v) if isinstance(v, Decimal) else v for v in _cells(row)])
    # Totals as computed numbers (exact Decimal sums), not formulas: readers without a calculation
    # engine (and finance scripts) see the value.
    difference = _total(rows, "erp_amount") - _total(
        [r for r in rows if r.erp_amount is not None], "canonical_amount"
    )
    sheet.append(
        [
            "合计",
            "",
            "",
            "",
            "",
            float(_total(rows, "canonical_amount")),
            float(_total(rows, "erp_amount")),
            float(difference),
            f"{len(rows)} 行",
        ]
    )
    for column in ("F", "G", "H"):
        for cell in sheet[column][1:]:
            cell.number_format = "#,##0.00"
    sheet.freeze_panes = "A2"
    for column, width in zip("ABCDEFGHI", (14, 18, 12, 22, 10, 16, 16, 12, 40), strict=True):
        sheet.column_dimensions[column].width = width
    book.properties.title = title
    book.save(path)
    return path
