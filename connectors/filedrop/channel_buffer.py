"""An SFTP channel's receive buffer that hands out bytes without moving the rest of the buffer.

paramiko keeps what the server sent in an ``array.array`` and removes each read from its front with
``del buffer[:n]``, which moves every byte still buffered. An SFTP reply is read in two pieces (its
4-byte length, then the body), and during a prefetched download the buffer holds up to the channel
window (2 MB), so a 66 MB file moved gigabytes of memory, holding the GIL, on the thread the hub's
parser shares it with (a larger window made it slower still: 64 MB, 6 s for the file). CPython drops
a ``bytearray``'s front by moving a start offset instead, so :func:`trim_reads_in_place` gives the
channel's buffer a ``bytearray``; paramiko's locking, waiting and closing stay as they are.

It relies on paramiko internals unchanged since 2.x (``BufferedPipe._buffer``, ``_lock``,
``_buffer_frombytes``, ``_buffer_tobytes``); on a paramiko without them the channel keeps its own
buffer and a warning says so.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import paramiko
from paramiko.buffered_pipe import BufferedPipe

__all__ = ["trim_reads_in_place"]

log = logging.getLogger(__name__)

_INTERNALS = ("_buffer", "_lock", "_buffer_frombytes", "_buffer_tobytes")


class _ByteArrayPipe(BufferedPipe):
    """:class:`BufferedPipe` over a ``bytearray`` (``del buffer[:n]`` moves a start offset)."""

    _buffer: bytearray

    def _buffer_frombytes(self, data: bytes) -> None:
        self._buffer += data

    def _buffer_tobytes(self, limit: int | None = None) -> bytes:
        return bytes(self._buffer[:limit])


def trim_reads_in_place(channel: paramiko.Channel) -> None:
    """Give ``channel``'s receive buffer a ``bytearray`` (see the module doc); what it holds is kept."""
    pipe = channel.in_buffer
    if type(pipe) is BufferedPipe and all(hasattr(pipe, name) for name in _INTERNALS):
        internals = cast(Any, pipe)  # private attributes: not in paramiko's stubs
        with internals._lock:  # the transport thread feeds the buffer under this lock
            internals._buffer = bytearray(internals._buffer)
            internals.__class__ = _ByteArrayPipe
    elif not isinstance(pipe, _ByteArrayPipe):
        log.warning(
            "paramiko %s: the channel buffer's internals changed; keeping it as is (downloads move the "
            "buffered bytes on every read)",
            paramiko.__version__,
        )
