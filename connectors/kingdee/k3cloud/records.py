"""Typed records the K/3 Cloud client returns (plain frozen dataclasses, no transport objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.errors import HubError


@dataclass(frozen=True)
class RowError:
    """One entry of ``ResponseStatus.Errors``: which package (``dindex``) and field failed, and why."""

    message: str
    field_name: str | None = None
    dindex: int = 0


@dataclass(frozen=True)
class SuccessEntity:
    """One entry of ``ResponseStatus.SuccessEntitys``."""

    id: int | None
    number: str | None
    dindex: int = 0
    entry_ids: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ResponseStatus:
    """The parsed ``Result.ResponseStatus`` object (values parsed leniently: ``"false"`` -> False)."""

    is_success: bool
    msg_code: int = 0
    error_code: int | None = None
    errors: tuple[RowError, ...] = ()
    success_entities: tuple[SuccessEntity, ...] = ()
    success_messages: tuple[str, ...] = ()

    def summary(self) -> str:
        """The error messages joined for an error text (``"FCustomerID: ...; ..."``)."""
        parts = [f"{e.field_name}: {e.message}" if e.field_name else e.message for e in self.errors]
        return "; ".join(parts) or "no error text returned"


@dataclass(frozen=True)
class OperationResult:
    """Outcome of Save / Submit / Audit / UnAudit / Delete / Push on success."""

    status: ResponseStatus
    id: int | None = None
    number: str | None = None
    need_return_data: tuple[dict[str, Any], ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class LoginResult:
    """A successful session login."""

    session_id: str
    user_id: int | None
    user_name: str | None
    context: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class BatchSaveResult:
    """A (possibly partial) ``BatchSave``: ``saved`` and ``failed`` are keyed by index in the input list.

    K/3 Cloud commits each package on its own, so both can be non-empty; re-send only ``failed``.
    """

    saved: dict[int, SuccessEntity]
    failed: dict[int, HubError]

    @property
    def all_saved(self) -> bool:
        """True when no package failed."""
        return not self.failed


@dataclass(frozen=True)
class BillRef:
    """A bill found by number: its internal id, number and document status (Z/A/B/C/D)."""

    form_id: str
    id: int
    number: str
    status: str | None


@dataclass(frozen=True)
class SavedBill:
    """Result of the idempotent :meth:`K3CloudClient.save_bill`.

    ``created`` is False when the bill already existed (an earlier attempt whose reply was lost, or an
    earlier run); the caller treats both the same way: the bill is in the ERP exactly once.
    """

    form_id: str
    id: int
    number: str
    created: bool
    attempts: int


@dataclass(frozen=True)
class ConnectionCheck:
    """What :meth:`K3CloudClient.check` verified."""

    name: str
    auth_mode: str
    user: str
    rows_read: int
