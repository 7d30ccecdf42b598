"""Code -> internal id cache for KIS base data.

KIS bills carry internal ids (``FItemID``), not the codes people and the CRM use (ERP-APIS §2.4). The
cache loads a whole base-data list once, answers from memory, and reloads once when a code is missing
(it may have been created since), at most every ``reload_interval`` seconds per kind so a batch of bad
codes cannot turn into a reload storm.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from hub.errors import PermanentError


class _Coded(Protocol):
    @property
    def item_id(self) -> int: ...

    @property
    def number(self) -> str: ...


R = TypeVar("R", bound=_Coded)


class CodeIndex(Generic[R]):
    """One kind of base data (customers, materials, ...) indexed by code and by id."""

    def __init__(
        self,
        kind: str,
        endpoint: str,
        loader: Callable[[], Iterable[R]],
        connection: str,
        reload_interval: float = 60.0,
    ) -> None:
        self.kind = kind
        self.endpoint = endpoint
        self._loader = loader
        self._connection = connection
        self._reload_interval = reload_interval
        self._by_code: dict[str, R] | None = None
        self._by_id: dict[int, R] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def _load(self) -> None:
        records = list(self._loader())
        self._by_code = {r.number: r for r in records}
        self._by_id = {r.item_id: r for r in records}
        self._loaded_at = time.monotonic()

    def get(self, code: str) -> R:
        """The record for ``code``; :class:`PermanentError` naming the code when KIS does not know it."""
        code = code.strip()
        with self._lock:
            if self._by_code is None:
                self._load()
            assert self._by_code is not None
            found = self._by_code.get(code)
            if found is None and time.monotonic() - self._loaded_at >= self._reload_interval:
                self._load()
                found = self._by_code.get(code)
            if found is None:
                raise PermanentError(
                    f"KIS connection {self._connection!r}: {self.kind} code {code!r} is not in KIS base data "
                    f"({self.endpoint}). Create it in KIS (or correct the code in the CRM record) "
                    "and re-send.",
                    context={"connection": self._connection, "kind": self.kind, "code": code},
                )
            return found

    def by_id(self, item_id: int) -> R | None:
        """Reverse lookup (only for what is loaded)."""
        with self._lock:
            return self._by_id.get(item_id)

    def invalidate(self) -> None:
        """Forget everything; the next lookup reloads."""
        with self._lock:
            self._by_code = None
            self._by_id = {}

    def force_reload_on_next_miss(self) -> None:
        """Allow the next miss to reload immediately (after we created a record ourselves)."""
        with self._lock:
            self._loaded_at = 0.0
