"""Domain errors of the canonical store. Each is a :class:`hub.errors.DomainError`, so the whole
transaction that raised it is rolled back and nothing is half-written."""

from __future__ import annotations

from hub.errors import DomainError


class InvalidCreditCode(DomainError):
    """A Unified Social Credit Code (统一社会信用代码) fails GB 32100 format or check character."""


class UnknownStage(DomainError):
    """An opportunity stage that is not one of the six stages or 输单."""


class IllegalTransition(DomainError):
    """A state change the state machine does not allow (opportunity, quote version, invoice)."""


class QuoteWithoutOpportunity(DomainError):
    """Quotes must always reference an opportunity."""


class SentQuoteImmutable(DomainError):
    """A sent quote version is never edited; create a new version instead."""


class InvoiceTotalMismatch(DomainError):
    """An invoice's header totals differ from the sum of its lines."""


class IssuedInvoiceImmutable(DomainError):
    """An issued invoice's lines and amounts cannot change; issue a red-letter invoice instead."""


class DuplicateCustomer(DomainError):
    """A customer with the same credit code already exists and the caller asked not to merge."""


class InvalidAmount(DomainError):
    """A money or quantity value is not acceptable (negative, too many places, unknown tax rate)."""
