"""The sandbox on a real socket: ``K3CloudSandbox(state_path, seed=...).start() -> base_url``.

Standard library ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive (the IIS front end does not
speak HTTP/2 either). Binds to 127.0.0.1 by default: the admin endpoints are unauthenticated.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .app import SandboxApp
from .seed import Credentials

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive client connections must not block stop()
    app: SandboxApp
    connections: set[socket.socket]
    connections_lock: threading.Lock

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) makes the late write fail; that is expected, not a crash.
        log.debug("k3cloud sandbox: connection from %s ended abnormally", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        log.debug("k3cloud sandbox: " + format, *args)

    def _serve(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.send_error(411, "Length Required")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            reply = self.server.app.handle(self.command, self.path, self.headers, body)
        except Exception:  # the sandbox must answer like IIS even when it has a bug
            log.exception("k3cloud sandbox: unhandled error for %s", self.path)
            self.send_response(500)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if reply.reset:
            # RST instead of FIN: the client sees "connection reset by peer" after sending its request.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    do_POST = _serve
    do_GET = _serve
    do_PUT = _serve


class K3CloudSandbox:
    """A K/3 Cloud WebAPI sandbox with its state in ``state_path`` (SQLite).

    Args:
        state_path: the SQLite file; an existing file is reused (its seed wins).
        seed: fixture and fault seed for a new state file.
        host / port: where to listen (port 0 picks a free one).
        base_path: the URL prefix, ``/K3Cloud/`` like IIS.
        settings: initial knobs (see :mod:`connectors.kingdee.k3cloud_sandbox.config`).
    """

    def __init__(
        self,
        state_path: str | Path,
        seed: int = 0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        base_path: str = "/K3Cloud/",
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.app = SandboxApp(str(state_path), seed, base_path=base_path, settings=settings)
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Start serving in a background thread; returns the base URL (``http://127.0.0.1:N/K3Cloud/``)."""
        server = _Server((self.host, self.port), _Handler)
        server.app = self.app
        server.connections = set()
        server.connections_lock = threading.Lock()
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="k3cloud-sandbox", daemon=True
        )
        self._thread.start()
        return self.base_url

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (used by the CLI); starts if not started."""
        if self._server is None:
            self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, drop open client connections and close the state file."""
        server = self._server
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            for conn in list(server.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
        self.app.store.close()

    @property
    def base_url(self) -> str:
        """``http://host:port/K3Cloud/``."""
        return f"http://{self.host}:{self.port}{self.app.base_path}"

    @property
    def admin_url(self) -> str:
        """``http://host:port/__admin__/``."""
        return f"http://{self.host}:{self.port}/__admin__/"

    @property
    def credentials(self) -> Credentials:
        """Users and app registration the sandbox accepts."""
        return self.app.credentials

    def __enter__(self) -> K3CloudSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
