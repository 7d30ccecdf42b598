"""Whole-file prefetch for a paramiko SFTP file, without paramiko's race that silently turns it off.

paramiko's :meth:`SFTPFile.prefetch` sends its read requests from a background thread and marks the
prefetch done as soon as no request is outstanding. When that thread falls behind the replies (it
needs the GIL, and the hub's parser holds it for long stretches), the set of outstanding requests
empties half-way, the file believes the prefetch finished, and every later ``read`` is a synchronous
round trip per 32 KiB while the prefetched replies pile up unread: measured, a 66 MB download went from
0.4 s to 14 s in about one pull in three (paramiko issue #2453, fix proposed in PR #2519, not
released in paramiko 5.1).

:func:`prefetch_whole_file` starts paramiko's prefetch with that one decision corrected: the prefetch
is done only when the last request has been sent *and* answered. Everything else (request sizes,
buffering, error handling) stays paramiko's. The correction relies on paramiko internals that have
not changed since 3.3 (``_start_prefetch``, ``_prefetch_thread``, ``_async_response``,
``_prefetch_lock``, ``_prefetch_extents``, ``_prefetch_done``); on a paramiko without them the plain
prefetch runs and a warning says so.
"""

from __future__ import annotations

import logging
from typing import Any

import paramiko

__all__ = ["prefetch_whole_file", "race_free"]

log = logging.getLogger(__name__)

_INTERNALS = (
    "_start_prefetch",
    "_prefetch_thread",
    "_async_response",
    "_prefetch_lock",
    "_prefetch_extents",
    "_prefetch_done",
)


class _RaceFreePrefetchFile(paramiko.SFTPFile):
    """An :class:`paramiko.SFTPFile` whose prefetch is done only once every request was sent and answered."""

    _all_requested: bool = True

    def _start_prefetch(self, chunks: Any, max_concurrent_requests: Any = None) -> None:
        # Before the request thread starts: a reply may be processed before its first request returns.
        self._all_requested = False
        super()._start_prefetch(chunks, max_concurrent_requests)  # type: ignore[misc]

    def _prefetch_thread(self, chunks: Any, max_concurrent_requests: Any) -> None:
        try:
            super()._prefetch_thread(chunks, max_concurrent_requests)  # type: ignore[misc]
        except (EOFError, OSError, paramiko.SSHException) as exc:
            # The connection died while requests were being sent. The reading thread finds out on its
            # own (its next read fails and the download is retried); raised here, the error was only a
            # traceback of an unhandled thread exception in the log.
            log.debug("SFTP prefetch requests stopped: the connection failed (%r)", exc)
        finally:
            with self._prefetch_lock:  # type: ignore[attr-defined]
                self._all_requested = True
                if not self._prefetch_extents:  # type: ignore[attr-defined]
                    self._prefetch_done = True

    def _async_response(self, t: Any, msg: Any, num: Any) -> None:
        # Runs on the reading thread; the reader looks at _prefetch_done only after this returns.
        super()._async_response(t, msg, num)  # type: ignore[misc]
        with self._prefetch_lock:  # type: ignore[attr-defined]
            if not self._all_requested:
                self._prefetch_done = False  # the replies caught up with the requests; more are coming


def race_free(handle: paramiko.SFTPFile) -> paramiko.SFTPFile:
    """``handle`` with the prefetch race corrected (it becomes a :class:`_RaceFreePrefetchFile`).

    Done by changing the object's class rather than by a subclass of :class:`paramiko.SFTPClient`:
    paramiko builds the file object inside ``SFTPClient.open``, and the subclass adds no state
    ``__init__`` would have to set (``_all_requested`` has a class default).
    """
    if type(handle) is paramiko.SFTPFile and all(hasattr(handle, name) for name in _INTERNALS):
        handle.__class__ = _RaceFreePrefetchFile
    elif not isinstance(handle, _RaceFreePrefetchFile):
        log.warning(
            "paramiko %s: SFTP prefetch internals changed; using its prefetch as is (a download may "
            "slow to one round trip per 32 KiB when its request thread falls behind)",
            paramiko.__version__,
        )
    return handle


def prefetch_whole_file(handle: paramiko.SFTPFile, size: int) -> paramiko.SFTPFile:
    """Prefetch all ``size`` bytes of ``handle`` (see the module doc); returns the handle to read from."""
    handle = race_free(handle)
    handle.prefetch(size)
    return handle
