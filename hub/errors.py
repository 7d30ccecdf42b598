"""One exception tree for the whole hub, rooted at :class:`HubError`.

What a caller should do with a failure is shown by its type, never by parsing text::

    HubError
    ├── ConfigError            bad template, config or environment: fix the file; nothing ran
    ├── DomainError            a canonical-store invariant was broken (bad credit code, illegal
    │                          transition, edited sent quote ...): the transaction is rolled back
    ├── DataValidationError    a record failed validation before leaving: quarantine it, go on
    ├── TransientError         retry later with back-off (5xx, timeout, reset, throttling)
    │   ├── RateLimitedError   the peer asked us to slow down; carries ``retry_after`` seconds
    │   └── UnknownOutcomeError a write was sent but no reply came: look the document up before
    │                          re-sending it (never blindly repeat a write)
    ├── AuthError              credentials rejected or expired: refresh once, then fail loudly
    ├── PermanentError         the peer refused this record for good: dead-letter it
    └── InfrastructureError    the hub itself cannot go on (store unreachable ...): fail the run

Messages must name the file, field, record or connection concerned and say what to do. They must
never contain a secret: :func:`hub.secrets.redact` is applied by :meth:`HubError.__str__`.
"""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """Root of every error the hub raises on purpose."""

    def __init__(self, message: str, *, context: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = dict(context or {})

    def __str__(self) -> str:
        # Imported lazily: hub.secrets imports nothing from here, but keep the root dependency-free.
        from hub.secrets import redact

        return redact(self.message)


class ConfigError(HubError):
    """A template, project config or environment reference is wrong; nothing was run."""


class DomainError(HubError):
    """A business rule of the canonical store was broken; the whole transaction is refused."""


class DataValidationError(HubError):
    """A record failed validation; it is quarantined with its reasons and the rest go on."""


class TransientError(HubError):
    """Worth retrying later with back-off."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, context: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, context=context)
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """The peer throttled us; ``retry_after`` (seconds) is honoured when it said how long."""


class UnknownOutcomeError(TransientError):
    """A write may or may not have been applied (timeout or lost reply after sending).

    The only safe reaction is to look the document up by its deterministic key (bill number)
    before sending it again.
    """


class AuthError(HubError):
    """Credentials were refused or a token expired; refresh once, then surface a clear error."""


class PermanentError(HubError):
    """The peer refused this record for good (validation, unknown id); dead-letter it."""


class InfrastructureError(HubError):
    """The hub cannot go on (store unreachable, disk full); fail the run loudly."""


def is_retryable(exc: BaseException) -> bool:
    """True when ``exc`` is worth retrying with back-off."""
    return isinstance(exc, TransientError)
