"""Read a KIS list op to its end: every row once, none missed, while the list may change (B.4 case 14).

KIS pages by number (``CurrentPage``/``ItemsOfPage``, ERP-APIS §2.2): a page is an offset into the list
*as it is now*. No evidenced list op takes a cursor (a "rows after key K" filter), so cursor pages are out
of reach; a row inserted or deleted before the read position while we page shifts every later page by one
row, and the reader sees a row twice (insert) or misses one (delete). This module makes offset pages safe:

* a failed page is retried by ``fetch`` itself (the client's one retry builder: 5xx, timeouts, throttling,
  connectors/retry.py); nothing here repeats a call on its own;
* rows are deduplicated by their key (:data:`KEYS`: ``FItemID``, ``FInterID``, ... per op, or a ``key``
  function); the memory kept is a set of keys, never the rows;
* the list's size (``TotalItems`` and the page count) is compared on every page with the first page of
  the pass: when it changed, rows may have shifted, so the read starts again from page 1 (rows already
  yielded are not yielded again);
* a pass whose size stayed put but whose distinct keys differ from ``TotalItems`` (an insert plus a
  delete, an unstable sort order) is read again too;
* after :data:`MAX_PASSES` passes without a consistent one: :class:`TransientError` naming the list op.

A consistent pass saw exactly ``TotalItems`` distinct rows with an unchanged size from first to last page:
every row of the list as it then stood has been yielded. Rows yielded in an earlier pass that the
consistent pass did not see were deleted during the read; they are counted (``paging_vanished``), logged
and kept in :attr:`PagedRead.vanished`, so the rows yielded minus those equal the source's final total.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Hashable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from hub.errors import TransientError

log = logging.getLogger(__name__)

#: A gateway that never says "last page" must not loop forever.
MAX_PAGES = 100_000
#: Passes over a list that keeps changing before giving up with a TransientError.
MAX_PASSES = 4

#: Row key per list op (lower-case ``obj/op``): alternatives in order, the first whose fields are all there.
KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "customer/list": (("FItemID",),),
    "material/list": (("FItemID",),),
    "stock/list": (("FItemID",),),
    "measureunit/list": (("FItemID",),),
    "salesdelivery/list": (("FInterID",), ("FID",)),
    "voucher/list": (("FVoucherID",), ("FID",)),
    "icinventory/list": (
        ("FMaterialID", "FStockID", "FBatchNo"),
        ("FMaterialNumber", "FStockNumber", "FBatchNo"),
    ),
}

Row = dict[str, Any]
KeyFunc = Callable[[Mapping[str, Any]], Hashable]


def row_digest(row: Mapping[str, Any]) -> bytes:
    """16-byte digest of a whole row: the key of a row without a known key field."""
    text = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def key_for(op: str) -> KeyFunc:
    """The row key of list ``op`` (``"Customer/List"``, ``"app006992/customer/list"`` ...).

    Falls back to :func:`row_digest` for an unknown op or a row lacking the key fields, so a renamed key
    field can never collapse every row into one.
    """
    alternatives = KEYS.get("/".join([p for p in op.lower().split("/") if p][-2:]), ())

    def key(row: Mapping[str, Any]) -> Hashable:
        for fields in alternatives:
            values = [row.get(f) for f in fields]
            if all(v is not None for v in values):
                return tuple(_plain(v) for v in values) if len(values) > 1 else _plain(values[0])
        return row_digest(row)

    return key


def _plain(value: Any) -> Hashable:
    """``1001``, ``"1001"`` and ``Decimal(1001)`` are one key."""
    if isinstance(value, Decimal | float) and value == int(value):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value if isinstance(value, Hashable) else str(value)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _truthy(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, Decimal):
        return value != 0
    return bool(value)


class PagedRead:
    """Iterate to get every row of one list op once; the figures are final once iteration ends.

    Args:
        fetch: one page: takes the request body, returns the envelope ``data`` (retries transient
            failures itself).
        op: the list op as named in errors and logs (``"app006992/Customer/List"``).
        page_size: ``ItemsOfPage``.
        extra: more body fields (filters, ``OrderBy``).
        key: row key; default :func:`key_for` of ``op``.
        connection: connection name for messages.
        on_event: called with ``paging_restarts`` / ``paging_duplicates`` / ``paging_vanished`` once per
            event (the client's stats counter).
        max_passes: passes before giving up.

    Attributes:
        total: ``TotalItems`` of the consistent pass (None when the gateway does not say).
        passes: passes read (1 when nothing moved).
        calls: pages fetched (successful ``fetch`` calls).
        duplicates: rows met twice within one pass (an insert before the read position).
        vanished: keys yielded but gone from the list by the consistent pass (deleted during the read).
    """

    def __init__(
        self,
        fetch: Callable[[dict[str, Any]], Any],
        *,
        op: str,
        page_size: int,
        extra: Mapping[str, Any] | None = None,
        key: KeyFunc | None = None,
        connection: str = "",
        on_event: Callable[[str], None] | None = None,
        max_passes: int = MAX_PASSES,
    ) -> None:
        self._fetch = fetch
        self.op = op
        self.page_size = page_size
        self.extra = dict(extra or {})
        self.key = key or key_for(op)
        self.connection = connection
        self._on_event = on_event or (lambda _name: None)
        self.max_passes = max(1, max_passes)
        self.total: int | None = None
        self.passes = 0
        self.calls = 0
        self.duplicates = 0
        self.vanished: set[Hashable] = set()

    def _event(self, name: str) -> None:
        self._on_event(name)

    def __iter__(self) -> Iterator[Row]:
        seen: set[Hashable] = set()  # keys yielded
        first: tuple[int | None, int | None] = (None, None)
        last = first
        for pass_no in range(1, self.max_passes + 1):
            self.passes = pass_no
            # Pass 1 yields every key it meets, so its own key set is ``seen``; later passes need their own.
            this_pass: set[Hashable] = seen if pass_no == 1 else set()
            changed_at = 0
            for page in range(1, MAX_PAGES + 1):
                body = {"CurrentPage": page, "ItemsOfPage": self.page_size, **self.extra}
                data = self._fetch(body) or {}
                self.calls += 1
                rows = data.get("List") or []
                size = (_int(data.get("TotalItems")), _int(data.get("TotalPages", data.get("TotalPage"))))
                if page == 1:
                    first = size
                elif size != first and not changed_at:
                    changed_at = page
                last = size
                for row in rows:
                    k = self.key(row)
                    if k in this_pass:  # met twice in this pass: the list shifted under us
                        self.duplicates += 1
                        self._event("paging_duplicates")
                        continue
                    if this_pass is not seen:
                        this_pass.add(k)
                    if k not in seen:
                        seen.add(k)
                        yield row
                if changed_at or not rows:
                    break
                has_next = _truthy(data.get("HasNextPage"))
                total_pages = size[1]
                if has_next is None and total_pages is None:
                    more = len(rows) >= self.page_size
                else:
                    more = bool(has_next) or (total_pages is not None and page < total_pages)
                if not more:
                    break
            total = first[0]
            if not changed_at and (total is None or len(this_pass) == total):
                self.total = total
                if pass_no > 1:
                    self.vanished = seen - this_pass
                    for _ in self.vanished:
                        self._event("paging_vanished")
                    if self.vanished:
                        log.warning(
                            "KIS %s %s: %d row(s) read earlier were deleted while paging (keys %s)",
                            self.connection,
                            self.op,
                            len(self.vanished),
                            sorted(map(str, self.vanished))[:5],
                        )
                return
            why = (
                f"the list size changed at page {changed_at} (TotalItems/pages {first} -> {last})"
                if changed_at
                else f"{len(this_pass)} distinct rows but TotalItems={total}"
            )
            if pass_no < self.max_passes:
                self._event("paging_restarts")
                log.warning(
                    "KIS %s %s: %s; reading again from page 1 (pass %d of %d)",
                    self.connection,
                    self.op,
                    why,
                    pass_no + 1,
                    self.max_passes,
                )
                continue
            raise TransientError(
                f"KIS connection {self.connection!r}: list {self.op} kept changing while it was read "
                f"({self.max_passes} passes; last: {why}), so no pass saw every row exactly once. The rows "
                "delivered so far are unique; run the read again when the ERP is quieter.",
                context={"connection": self.connection, "op": self.op, "passes": self.max_passes},
            )
