"""``row_hash``: one canonical text per invoice (header and lines), hashed with SHA-256.

Defined once here and used by the ORM flush rules (:mod:`crm_core.invariants`), the bulk path
(:mod:`crm_core.bulk`, vectorised over the same text) and the push engine, so an unchanged document is
recognised whichever way it was written. Kept free of pandas/numpy so the store imports it cheaply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from hub.errors import DomainError

if TYPE_CHECKING:
    from crm_core.models import Invoice

_HASH_VERSION = "inv1"
_US = "\x1f"  # between the fields of one record
_MAX_SHOWN = 20  # problems listed in one refusal message
_RS = "\x1e"  # between records (header, lines)


# --- canonical content and row_hash ---------------------------------------------------------------


def _fixed(value: int, places: int) -> str:
    """A scaled integer as fixed-point text: ``_fixed(-1250, 2) == "-12.50"``."""
    scale = 10**places
    whole, frac = divmod(abs(value), scale)
    return f"{'-' if value < 0 else ''}{whole}.{frac:0{places}d}"


def _opt(value: object) -> str:
    return "" if value is None else str(value)


def canonical_invoice_text(header: Sequence[str], lines: Iterable[Sequence[str]]) -> str:
    """The canonical content of one invoice, the input of ``row_hash`` (the one definition).

    ``header`` is the invoice's fields in :data:`INVOICE_COLUMNS` order and ``lines`` its lines sorted by
    ``line_no``, each in :data:`LINE_COLUMNS` order without ``number``. Every field is text: integers in
    decimal, missing values empty, dates ISO, money with exactly 2 places and quantities, unit prices and
    tax rates with exactly 4 (``"13.00"``, ``"0.1300"``).
    """
    return _RS.join((_HASH_VERSION, _US.join(header), _RS.join(_US.join(line) for line in lines)))


def _sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


@dataclass(frozen=True)
class InvoiceLineDoc:
    """One invoice line with Decimal amounts; net and tax are computed (half up) when left out."""

    line_no: int
    product_id: int
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal
    net_amount: Decimal | None = None
    tax_amount: Decimal | None = None
    order_line_id: int | None = None


@dataclass(frozen=True)
class InvoiceDoc:
    """One invoice document with Decimal amounts; totals are the sums of the lines when left out."""

    number: str
    customer_id: int
    status: str = "draft"
    invoice_type: str = "vat_special"
    invoice_number: str | None = None
    issue_date: date | None = None
    order_id: int | None = None
    lines: tuple[InvoiceLineDoc, ...] = ()
    total_net: Decimal | None = None
    total_tax: Decimal | None = None
    total_gross: Decimal | None = None


def _scaled(value: Decimal | int | str | float, places: int, where: str) -> int:
    """``value`` x 10**places as an exact integer; more places than allowed is refused, not rounded."""
    try:
        scaled = Decimal(str(value)).scaleb(places)
    except (InvalidOperation, ValueError) as exc:
        raise InvoiceBatchRefused(
            [InvoiceProblem(where, "not_a_number", f"{value!r} is not a number")]
        ) from exc
    if scaled != scaled.to_integral_value():
        raise InvoiceBatchRefused(
            [InvoiceProblem(where, "too_many_places", f"{value} has more than {places} decimal places")]
        )
    return int(scaled)


def _half_up_div(numerator: int, divisor: int) -> int:
    """``numerator / divisor`` rounded half up (away from zero on .5), like ``money()``."""
    whole = (abs(numerator) * 2 + divisor) // (2 * divisor)
    return -whole if numerator < 0 else whole


def _line_amounts(q_e4: int, p_e4: int, r_e4: int) -> tuple[int, int]:
    """Net and tax in fen for one line: net = qty x price, tax = net x rate, each half up to the cent."""
    net = _half_up_div(q_e4 * p_e4, 1_000_000)
    return net, _half_up_div(net * r_e4, 10_000)


def _doc_row(doc: InvoiceDoc) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A document as one invoice row and its line rows in the frame schema (scaled integers)."""
    lines = []
    net_sum = tax_sum = 0
    for line in doc.lines:
        where = f"{doc.number} line {line.line_no}"
        quantity_e4 = _scaled(line.quantity, 4, where)
        unit_price_e4 = _scaled(line.unit_price, 4, where)
        tax_rate_e4 = _scaled(line.tax_rate, 4, where)
        row: dict[str, Any] = {
            "number": doc.number,
            "line_no": line.line_no,
            "product_id": line.product_id,
            "order_line_id": line.order_line_id,
            "quantity_e4": quantity_e4,
            "unit_price_e4": unit_price_e4,
            "tax_rate_e4": tax_rate_e4,
        }
        net, tax = _line_amounts(quantity_e4, unit_price_e4, tax_rate_e4)
        net_fen = net if line.net_amount is None else _scaled(line.net_amount, 2, where)
        tax_fen = tax if line.tax_amount is None else _scaled(line.tax_amount, 2, where)
        row["net_amount_fen"], row["tax_amount_fen"] = net_fen, tax_fen
        net_sum += net_fen
        tax_sum += tax_fen
        lines.append(row)
    invoice = {
        "number": doc.number,
        "invoice_number": doc.invoice_number,
        "customer_id": doc.customer_id,
        "order_id": doc.order_id,
        "invoice_type": doc.invoice_type,
        "status": doc.status,
        "issue_date": doc.issue_date,
        "total_net_fen": net_sum if doc.total_net is None else _scaled(doc.total_net, 2, doc.number),
        "total_tax_fen": tax_sum if doc.total_tax is None else _scaled(doc.total_tax, 2, doc.number),
        "total_gross_fen": (
            net_sum + tax_sum if doc.total_gross is None else _scaled(doc.total_gross, 2, doc.number)
        ),
    }
    return invoice, lines


def _header_fields(row: dict[str, Any]) -> list[str]:
    issue = row["issue_date"]
    return [
        row["number"],
        _opt(row["invoice_number"]),
        str(row["customer_id"]),
        _opt(row["order_id"]),
        row["invoice_type"],
        row["status"],
        issue.isoformat() if issue is not None else "",
        _fixed(row["total_net_fen"], 2),
        _fixed(row["total_tax_fen"], 2),
        _fixed(row["total_gross_fen"], 2),
    ]


def _line_fields(row: dict[str, Any]) -> list[str]:
    return [
        str(row["line_no"]),
        str(row["product_id"]),
        _opt(row["order_line_id"]),
        _fixed(row["quantity_e4"], 4),
        _fixed(row["unit_price_e4"], 4),
        _fixed(row["tax_rate_e4"], 4),
        _fixed(row["net_amount_fen"], 2),
        _fixed(row["tax_amount_fen"], 2),
    ]


def invoice_row_hash(doc: InvoiceDoc) -> str:
    """sha256 (hex) of :func:`canonical_invoice_text` for one document."""
    invoice, lines = _doc_row(doc)
    lines.sort(key=lambda r: r["line_no"])
    return _sha256(canonical_invoice_text(_header_fields(invoice), [_line_fields(r) for r in lines]))


def row_hash_of_invoice(invoice: Invoice) -> str:
    """``row_hash`` of an ORM :class:`~crm_core.models.Invoice` (for the ORM path to store).

    Uses the object's current totals and lines as they are; call it after the flush rules have filled
    the line amounts and totals (e.g. in a ``before_flush`` hook after ``_check_invoice``).
    """
    doc = InvoiceDoc(
        number=invoice.number,
        customer_id=invoice.customer_id,
        status=invoice.status,
        invoice_type=invoice.invoice_type,
        invoice_number=invoice.invoice_number,
        issue_date=invoice.issue_date,
        order_id=invoice.order_id,
        total_net=Decimal(invoice.total_net).quantize(Decimal("0.01"), ROUND_HALF_UP),
        total_tax=Decimal(invoice.total_tax).quantize(Decimal("0.01"), ROUND_HALF_UP),
        total_gross=Decimal(invoice.total_gross).quantize(Decimal("0.01"), ROUND_HALF_UP),
        lines=tuple(
            InvoiceLineDoc(
                line_no=line.line_no,
                product_id=line.product_id,
                quantity=Decimal(line.quantity).quantize(Decimal("0.0001"), ROUND_HALF_UP),
                unit_price=Decimal(line.unit_price).quantize(Decimal("0.0001"), ROUND_HALF_UP),
                tax_rate=Decimal(line.tax_rate).quantize(Decimal("0.0001"), ROUND_HALF_UP),
                net_amount=Decimal(line.net_amount).quantize(Decimal("0.01"), ROUND_HALF_UP),
                tax_amount=Decimal(line.tax_amount).quantize(Decimal("0.01"), ROUND_HALF_UP),
                order_line_id=line.order_line_id,
            )
            for line in invoice.lines
        ),
    )
    return invoice_row_hash(doc)


# --- refusals ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceProblem:
    """One broken rule: the invoice ``number``, a short ``rule`` code and a human ``detail``."""

    number: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.number}: {self.detail} [{self.rule}]"


class InvoiceBatchRefused(DomainError):
    """The whole batch was refused (nothing written) because some invoices break the store's rules."""

    def __init__(self, problems: Sequence[InvoiceProblem]) -> None:
        self.problems = list(problems)
        numbers = sorted({p.number for p in self.problems})
        shown = "\n".join(f"  - {p}" for p in self.problems[:_MAX_SHOWN])
        more = len(self.problems) - _MAX_SHOWN
        message = (
            f"invoice batch refused, nothing was written: {len(numbers)} invoice(s) break the store's rules "
            f"({', '.join(numbers[:_MAX_SHOWN])}{', ...' if len(numbers) > _MAX_SHOWN else ''}).\n{shown}"
            + (f"\n  ... and {more} more problem(s)" if more > 0 else "")
            + "\nFix these invoices (or leave them out) and load the batch again."
        )
        super().__init__(message, context={"invoices": numbers, "problems": len(self.problems)})
