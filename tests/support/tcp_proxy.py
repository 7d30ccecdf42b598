"""A small threaded TCP proxy for fault-injection tests (a Toxiproxy subset, in-process).

Put it between a client and a real server on loopback and script what the network does:

- ``latency``: seconds added before every forwarded chunk, both directions;
- ``reset_after_bytes``: after that many server->client bytes the connection is reset (RST, not FIN);
- ``hang_after_bytes``: after that many server->client bytes nothing more is forwarded, but the
  connection stays open (a stalled peer);
- ``once=True``: the reset or hang hits only the first connection that reaches the threshold; later
  connections pass clean (a transient fault that a retry gets past).

Faults can be changed while the proxy runs (:meth:`set_faults`). Counters (``connections``, ``resets``,
``hangs``, ``bytes_down``) let a test prove the fault really happened.

Example::

    with TcpProxy("127.0.0.1", sshd_port, reset_after_bytes=2 << 20, once=True) as proxy:
        connect_to("127.0.0.1", proxy.port)
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass


@dataclass
class _Faults:
    latency: float = 0.0
    reset_after_bytes: int | None = None
    hang_after_bytes: int | None = None
    once: bool = False


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream_host:upstream_port`` with scripted faults."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        latency: float = 0.0,
        reset_after_bytes: int | None = None,
        hang_after_bytes: int | None = None,
        once: bool = False,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._faults = _Faults(latency, reset_after_bytes, hang_after_bytes, once)
        self._fault_spent = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self.connections = 0
        self.resets = 0
        self.hangs = 0
        self.bytes_down = 0
        self.host = "127.0.0.1"
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> TcpProxy:
        """Listen on a free loopback port (``self.port``) and start accepting."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop, "proxy-accept")
        return self

    def stop(self) -> None:
        """Close the listener and every proxied connection; join the threads."""
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_faults(
        self,
        *,
        latency: float = 0.0,
        reset_after_bytes: int | None = None,
        hang_after_bytes: int | None = None,
        once: bool = False,
    ) -> None:
        """Replace the fault script; applies to connections accepted from now on."""
        with self._lock:
            self._faults = _Faults(latency, reset_after_bytes, hang_after_bytes, once)
            self._fault_spent = False

    # ------------------------------------------------------------------ internals

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                faults = self._faults
                armed = not (faults.once and self._fault_spent)
            self._track(client)
            self._track(upstream)
            closed = threading.Event()
            self._spawn(self._pump, "proxy-up", client, upstream, faults, False, closed)
            self._spawn(self._pump, "proxy-down", upstream, client, faults, armed, closed)

    def _claim_fault(self, faults: _Faults) -> bool:
        """True if this connection may fire the fault (``once`` lets only the first one)."""
        with self._lock:
            if faults.once and self._fault_spent:
                return False
            self._fault_spent = True
            return True

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        faults: _Faults,
        downstream_faults: bool,
        closed: threading.Event,
    ) -> None:
        sent = 0
        source.settimeout(0.2)
        try:
            while not self._stop.is_set() and not closed.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if faults.latency:
                    time.sleep(faults.latency)
                if downstream_faults:
                    limit = self._limit(faults)
                    if limit is not None and sent + len(data) >= limit[0] and self._claim_fault(faults):
                        sink.sendall(data[: max(0, limit[0] - sent)])
                        self.bytes_down += max(0, limit[0] - sent)
                        if limit[1] == "reset":
                            self.resets += 1
                            self._reset(source, sink)
                            return
                        self.hangs += 1
                        # Stalled peer: keep both sockets open, forward nothing, until someone closes.
                        closed.wait()
                        return
                    self.bytes_down += len(data)
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            closed.set()
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()

    @staticmethod
    def _limit(faults: _Faults) -> tuple[int, str] | None:
        if faults.reset_after_bytes is not None:
            return faults.reset_after_bytes, "reset"
        if faults.hang_after_bytes is not None:
            return faults.hang_after_bytes, "hang"
        return None

    @staticmethod
    def _reset(*sockets: socket.socket) -> None:
        """Abort with RST (SO_LINGER 0) so the peer sees 'connection reset', not a clean close."""
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.close()
