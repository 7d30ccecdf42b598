"""Canonical invoice -> KIS receivable voucher (凭证, APP007155). Pure: no I/O.

An issued invoice gives one voucher, posted on the invoice date (the ERP's Asia/Shanghai business
date): debit receivable (应收账款) the gross amount, credit revenue (主营业务收入) the net amount and
output VAT (应交税费-销项税额) the tax. Its ``FReference`` is the outbound's deterministic bill number:
the idempotency key a retried push looks the voucher up by.

A red-lettered invoice (红冲) keeps its blue voucher and gets a red-letter one (红字凭证) under
``<bill number>-R``: the same accounts with negative amounts, so the pair nets to zero, which is how
Chinese bookkeeping reverses a posted voucher (红字冲销) rather than editing or deleting it.

Unverified against a real tenant [L] (ERP-APIS §2.3 lists ``Voucher/Create`` without its body):
negative amounts as the red-letter form (KIS may want ``FDC`` flipped instead); the red voucher dated
on the invoice date (the canonical document carries no red-letter date, and a closed period would be
refused); no auxiliary item (核算项目: the customer) on the receivable line, which a KIS chart of
accounts usually requires on 1122; the ``-R`` suffix and the explanation lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from connectors.kingdee.kis.records import Voucher, VoucherEntry
from crm_core.documents import InvoiceDocument
from hub.errors import DataValidationError

CENT = Decimal("0.01")
RED_SUFFIX = "-R"  # [L] FReference of the red-letter voucher: the bill number plus this


@dataclass(frozen=True)
class VoucherMapping:
    """Template choices: voucher word and the three accounts (numbers in the KIS chart of accounts)."""

    group: str = "记"
    debit_account: str = "1122"  # 应收账款
    credit_account: str = "6001"  # 主营业务收入
    tax_account: str = "22210102"  # 应交税费-应交增值税(销项税额)


def red_reference(bill_no: str) -> str:
    """The reference of the red-letter voucher of the outbound ``bill_no``."""
    return bill_no + RED_SUFFIX


def bill_no_of_reference(reference: str) -> str:
    """The outbound bill number a voucher reference belongs to (inverse of the two references)."""
    return reference[: -len(RED_SUFFIX)] if reference.endswith(RED_SUFFIX) else reference


def to_voucher(
    document: InvoiceDocument, bill_no: str, mapping: VoucherMapping, *, red: bool = False
) -> Voucher:
    """The receivable voucher of ``document`` (the red-letter one with ``red``), balanced to the cent."""
    if document.issue_date is None:
        raise DataValidationError(f"invoice {document.number}: no issue date, so no voucher date")
    gross, net, tax = (
        Decimal(v).quantize(CENT) for v in (document.total_gross, document.total_net, document.total_tax)
    )
    if gross != net + tax:
        raise DataValidationError(
            f"invoice {document.number}: gross {gross} is not net {net} + tax {tax}; the voucher would "
            "not balance. Correct the invoice totals, then replay the record."
        )
    sign = Decimal(-1) if red else Decimal(1)
    who = f"{document.customer_name}"
    invoice = document.invoice_number or document.number
    explanation = f"{'红冲 ' if red else ''}销售发票 {invoice} {who}"
    entries = [
        VoucherEntry(mapping.debit_account, debit=sign * gross, explanation=f"应收 {who} 发票 {invoice}")
    ]
    entries.append(
        VoucherEntry(mapping.credit_account, credit=sign * net, explanation=f"销售收入 发票 {invoice}")
    )
    if tax:  # a 0% invoice has no VAT line (a zero-amount entry is refused by most ledgers [L])
        entries.append(
            VoucherEntry(mapping.tax_account, credit=sign * tax, explanation=f"销项税额 发票 {invoice}")
        )
    return Voucher(
        date=document.issue_date,
        reference=red_reference(bill_no) if red else bill_no,
        entries=tuple(entries),
        explanation=explanation,
        group=mapping.group,
    )


def vouchers_for(document: InvoiceDocument, bill_no: str, mapping: VoucherMapping) -> tuple[Voucher, ...]:
    """Every voucher the document should have in KIS: the blue one, plus the red one once red-lettered.

    A document red-lettered before its first push still gets both (the pair nets to zero and leaves
    the trail finance expects: the invoice, then its reversal).
    """
    blue = to_voucher(document, bill_no, mapping)
    if document.status == "red_letter":
        return blue, to_voucher(document, bill_no, mapping, red=True)
    return (blue,)


def voucher_key(voucher: Voucher) -> tuple[object, ...]:
    """What must agree between a posted voucher and the one wanted: date and entries (account and
    amounts per side), not the wording of the explanations."""
    return (
        voucher.date,
        tuple(
            sorted(
                (e.account_number, e.debit.quantize(CENT), e.credit.quantize(CENT)) for e in voucher.entries
            )
        ),
    )


def voucher_amount(voucher: Voucher) -> Decimal:
    """The voucher's debit total (the gross amount of the invoice it books; negative when red)."""
    return sum((e.debit for e in voucher.entries), Decimal(0)).quantize(CENT)
