"""The KIS sandbox on a real loopback socket (stdlib ``ThreadingHTTPServer``) and its admin client.

Three ways to run it: ``hub sandbox kis --port N``, ``python -m connectors.kingdee.kis_sandbox``, or
in-process::

    sandbox = KisSandbox("/tmp/kis.sqlite", seed=7, faults=FaultConfig(p_5xx=0.3))
    base_url = sandbox.start()      # a thread; port 0 picks a free port
    ...
    sandbox.stop()

With ``certfile``/``keyfile`` it serves HTTPS (TLS 1.2+) instead and :attr:`KisSandbox.base_url` is an
``https://`` URL: the TLS cases of the fault matrix point a client at it with a self-signed, wrong-host or
private-CA certificate. The handshake runs in the connection's own thread, so a client that refuses the
certificate never reaches the gateway (:attr:`KisSandbox.tls_handshake_failures` counts such refusals).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import requests

from connectors.kingdee.kis_sandbox.faults import FaultConfig, FaultInjector
from connectors.kingdee.kis_sandbox.gateway import Gateway, Reply, Request, split_path
from connectors.kingdee.kis_sandbox.seed import DEFAULT_SEED, SandboxCredentials
from connectors.kingdee.kis_sandbox.state import SandboxState

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real gateway; every reply has a Content-Length
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms a call.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.track(self.connection, open_=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = split_path(self.path)
        query = (
            dict(parse_qsl(self.path.split("?", 1)[1], keep_blank_values=True)) if "?" in self.path else {}
        )
        headers = {k: v for k, v in self.headers.items()}
        request = Request(method, path, query, _Caseless(headers), body, self.client_address[0])
        gateway = self.server.gateway
        try:
            reply = gateway.admin(request) if path.startswith("/__admin__/") else gateway.handle(request)
        except Exception:  # a sandbox bug must show as a 500, not a hung client
            log.exception("sandbox error on %s %s", method, path)
            reply = Reply(
                500, b"<html><body>sandbox internal error</body></html>", {"Content-Type": "text/html"}
            )
        if reply.drop:
            self._drop()
            return
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        try:
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drop(self) -> None:
        # Reset the connection (SO_LINGER 0 sends RST): the client sees a dropped connection, no reply.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Caseless(dict[str, str]):
    """Header lookup ignoring case (HTTP header names are case-insensitive)."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in headers.items()})

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    gateway: Gateway
    tls: ssl.SSLContext | None = None
    handshake_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.tls_failures = 0

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Plain HTTP as before; with TLS, handshake first (in this connection's thread) and only then
        hand the connection to the handler: a client that refuses the certificate sends no request."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            request.settimeout(self.handshake_timeout)
            conn = self.tls.wrap_socket(request, server_side=True)
            conn.settimeout(None)
        except OSError as exc:  # ssl.SSLError included: refused certificate, plain HTTP, timeout
            with self._open_lock:
                self.tls_failures += 1
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            _Handler(conn, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)  # as ``shutdown_request`` does for a plain connection
            conn.close()

    def track(self, conn: socket.socket, *, open_: bool) -> None:
        """Remember live keep-alive connections so :meth:`close_connections` can end them."""
        with self._open_lock:
            if open_:
                self._open.add(conn)
            else:
                self._open.discard(conn)

    def close_connections(self) -> None:
        """Shut every live connection down: a stopped sandbox must not keep answering on old sockets."""
        with self._open_lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection error from %s", client_address, exc_info=True)


class KisSandbox:
    """A KIS cloud gateway on loopback with its state in the SQLite file ``state_path``.

    Args:
        state_path: SQLite file; created and seeded with :data:`DEFAULT_SEED` when new (``seed_defaults``).
        host, port: where to listen (port 0 = a free port, see :attr:`base_url` after :meth:`start`).
        seed: seed of the fault decisions (overrides ``faults.seed`` when given).
        faults: initial :class:`FaultConfig` (changeable at run time via ``PUT /__admin__/faults``).
        credentials: what the sandbox accepts (defaults + ``KIS_SANDBOX_*`` env vars).
        token_ttl_scale: shortcut for ``faults.token_ttl_scale``.
        certfile, keyfile: PEM certificate (chain) and private key; given, the sandbox serves HTTPS only.
            ``keyfile`` may be left out when ``certfile`` holds the key too.
    """

    def __init__(
        self,
        state_path: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        faults: FaultConfig | None = None,
        credentials: SandboxCredentials | None = None,
        token_ttl_scale: float | None = None,
        seed_defaults: bool = True,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
    ) -> None:
        tls = server_tls_context(certfile, keyfile) if certfile or keyfile else None
        config = dataclasses.replace(faults) if faults else FaultConfig()
        if seed is not None:
            config.seed = seed
        if token_ttl_scale is not None:
            config.token_ttl_scale = token_ttl_scale
        self.credentials = credentials or SandboxCredentials.from_env()
        self.state = SandboxState(state_path)
        if seed_defaults and self.state.is_empty():
            self.state.seed(DEFAULT_SEED)
        self.faults = FaultInjector(config)
        self.gateway = Gateway(self.state, self.faults, self.credentials)
        self._server = _Server((host, port), _Handler)
        self._server.gateway = self.gateway
        self._server.tls = tls
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def tls(self) -> bool:
        """True when serving HTTPS."""
        return self._server.tls is not None

    @property
    def base_url(self) -> str:
        """``http://host:port`` the sandbox listens on (``https://`` with TLS)."""
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    @property
    def tls_handshake_failures(self) -> int:
        """TLS handshakes that failed (a client refused the certificate, or spoke plain HTTP)."""
        return self._server.tls_failures

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    def start(self) -> str:
        """Serve in a background thread; returns :attr:`base_url`."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="kis-sandbox", daemon=True
        )
        self._thread.start()
        return self.base_url

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted."""
        try:
            self._server.serve_forever()
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving and close the state file (a second call does nothing)."""
        if self._closed:
            return
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.server_close()
        self._server.close_connections()
        self.state.close()

    def __enter__(self) -> KisSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_tls_context(certfile: str | Path | None, keyfile: str | Path | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the certificate chain in ``certfile`` (and its key).

    Raises:
        ValueError: naming the file when the certificate or key is missing or unreadable.
    """
    if not certfile:
        raise ValueError("KIS sandbox TLS: a key file was given without a certificate; pass both (PEM).")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"KIS sandbox TLS: cannot load certificate {str(certfile)!r}"
            f"{f' with key {str(keyfile)!r}' if keyfile else ''} ({exc}). "
            "Give a PEM certificate (chain) and its unencrypted PEM private key."
        ) from None
    return context


class SandboxAdmin:
    """Small HTTP client of ``/__admin__/`` (for tests, the demo and IT).

    ``ca_bundle``: PEM file that verifies an HTTPS sandbox's certificate (a private CA, or a self-signed
    certificate itself). Passed on every call, so ``REQUESTS_CA_BUNDLE`` cannot override it.
    """

    def __init__(
        self,
        base_url: str,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        *,
        ca_bundle: str | Path | None = None,
    ) -> None:
        self.base = base_url.rstrip("/") + "/__admin__/"
        self.session = session or requests.Session()
        self.timeout = (5.0, timeout)
        self.verify: bool | str = str(ca_bundle) if ca_bundle else True

    def _do(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        response = self.session.request(
            method, self.base + path, json=body, params=params, timeout=self.timeout, verify=self.verify
        )
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox admin {method} {path}: HTTP {response.status_code} {response.text}")
        return response.json()

    def faults(self) -> dict[str, Any]:
        """Current fault settings."""
        return dict(self._do("GET", "faults"))

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change fault settings; returns the new ones."""
        return dict(self._do("PUT", "faults", changes))

    def ledger(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Every accepted write (optionally of one endpoint)."""
        return list(self._do("GET", "ledger", params={"endpoint": endpoint} if endpoint else None)["ledger"])

    def stats(self) -> dict[str, int]:
        """Request counters."""
        return dict(self._do("GET", "stats"))

    def bills(self, bill_no: str) -> list[int]:
        """FIDs of the bills numbered ``bill_no``."""
        return list(self._do("GET", "bills", params={"bill_no": bill_no})["fids"])

    def seed(self, data: dict[str, Any]) -> dict[str, dict[str, int]]:
        """Upsert base data / inventory; returns ids by kind and number."""
        return dict(self._do("POST", "seed", data)["ids"])

    def audit(self, fid: int) -> str:
        """Audit a bill (stock decrement); returns FCheckDate."""
        return str(self._do("POST", f"audit/{fid}", {})["FCheckDate"])

    def invoice(
        self,
        fid: int,
        *,
        tran_type: int = 86,
        invoice_no: str = "",
        lines: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Simulate an 80/86 sales invoice against an outbound (all open quantities unless ``lines``)."""
        return dict(
            self._do(
                "POST",
                "invoice",
                {"fid": fid, "tran_type": tran_type, "invoice_no": invoice_no, "lines": lines},
            )
        )

    def reset(self, seed_defaults: bool = True) -> None:
        """Forget everything (and reseed the defaults)."""
        self._do("POST", "reset", {"seed_defaults": seed_defaults})

    def revoke_tokens(self, kind: str | None = None) -> int:
        """Invalidate issued tokens; returns how many."""
        return int(self._do("POST", "revoke_tokens", {"kind": kind} if kind else {})["revoked"])
