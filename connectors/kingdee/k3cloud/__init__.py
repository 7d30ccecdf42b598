"""Kingdee K/3 Cloud (云星空) WebAPI connector: client, settings, signatures, error table, records."""

from .client import K3CloudClient
from .query import BillQuerySpec
from .records import (
    BatchSaveResult,
    BillRef,
    ConnectionCheck,
    LoginResult,
    OperationResult,
    ResponseStatus,
    RowError,
    SavedBill,
    SuccessEntity,
)
from .settings import K3CloudSettings

__all__ = [
    "BatchSaveResult",
    "BillQuerySpec",
    "BillRef",
    "ConnectionCheck",
    "K3CloudClient",
    "K3CloudSettings",
    "LoginResult",
    "OperationResult",
    "ResponseStatus",
    "RowError",
    "SavedBill",
    "SuccessEntity",
]
