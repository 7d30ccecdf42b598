"""Real servers on loopback for the notifier tests: a group-robot HTTP endpoint (WeCom / DingTalk style)
and a small SMTP server with implicit TLS or STARTTLS and AUTH PLAIN, behind a self-signed certificate
made for the test (``cryptography`` comes with paramiko)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

# --- robot -------------------------------------------------------------------------------------------


@dataclass
class Robot:
    """Records every POST; answers ``status`` with ``reply`` (a dict as JSON, or raw text)."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    reply: dict[str, Any] | str = field(default_factory=lambda: {"errcode": 0, "errmsg": "ok"})

    def last(self) -> dict[str, Any]:
        return self.posts[-1]


def _serve_robot() -> tuple[Robot, ThreadingHTTPServer, threading.Thread]:
    state = Robot()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode("utf-8")
            parts = urlsplit(self.path)
            state.posts.append(
                {
                    "path": parts.path,
                    "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                    "raw_query": parts.query,
                    "json": json.loads(raw),
                    "raw": raw,
                }
            )
            body = (state.reply if isinstance(state.reply, str) else json.dumps(state.reply)).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    return state, server, thread


@pytest.fixture
def robot() -> Iterator[Robot]:
    state, server, thread = _serve_robot()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def second_robot() -> Iterator[Robot]:
    state, server, thread = _serve_robot()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- TLS ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfSignedCert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verifies the server against this certificate only (hostname checked too)."""
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> SelfSignedCert:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return SelfSignedCert(cert_path, key_path)


# --- SMTP --------------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the SMTP server received, and the one account it accepts."""

    host: str
    port: int
    username: str
    password: str
    security: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    auth_attempts: list[str] = field(default_factory=list)


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough ESMTP (RFC 5321/3207/4954) for ``smtplib``: EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA."""

    server: _SmtpServer

    def _reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())
        self.wfile.flush()

    def _rebind(self, sock: socket.socket) -> None:
        self.connection = sock
        self.rfile = sock.makefile("rb")
        self.wfile = sock.makefile("wb")

    def handle(self) -> None:
        box, mode = self.server.mailbox, self.server.mode
        tls = False
        if mode == "ssl":
            self._rebind(self.server.tls.wrap_socket(self.connection, server_side=True))
            tls = True
        self._reply("220 localhost ESMTP test")
        authed, sender = False, ""
        recipients: list[str] = []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                features = ["250-localhost"]
                if mode == "starttls" and not tls:
                    features.append("250-STARTTLS")
                if tls:
                    features.append("250-AUTH PLAIN")
                features.append("250 8BITMIME")
                self._reply("\r\n".join(features))
            elif verb == "STARTTLS" and mode == "starttls" and not tls:
                self._reply("220 ready to start TLS")
                self._rebind(self.server.tls.wrap_socket(self.connection, server_side=True))
                tls = True
            elif verb == "AUTH" and tls:
                _, mechanism, *rest = command.split(" ")
                box.auth_attempts.append(mechanism)
                decoded = base64.b64decode(rest[0]).split(b"\0") if rest else []
                if mechanism.upper() == "PLAIN" and decoded[1:] == [
                    box.username.encode(),
                    box.password.encode(),
                ]:
                    authed = True
                    self._reply("235 2.7.0 authentication successful")
                else:
                    self._reply("535 5.7.8 authentication credentials invalid")
            elif verb == "MAIL" and authed:
                sender, recipients = command.split(":", 1)[1].strip(), []
                self._reply("250 ok")
            elif verb == "RCPT" and authed:
                recipients.append(command.split(":", 1)[1].strip())
                self._reply("250 ok")
            elif verb == "DATA" and authed:
                self._reply("354 end data with <CR><LF>.<CR><LF>")
                data = []
                while True:
                    chunk = self.rfile.readline()
                    if chunk in (b".\r\n", b""):
                        break
                    data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                box.messages.append({"from": sender, "to": recipients, "data": b"".join(data), "tls": tls})
                self._reply("250 queued")
            elif verb == "QUIT":
                self._reply("221 bye")
                return
            elif verb in ("RSET", "NOOP"):
                self._reply("250 ok")
            else:
                self._reply("530 5.7.0 must issue STARTTLS and AUTH first")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mailbox: Mailbox, mode: str, tls: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.mailbox, self.mode, self.tls = mailbox, mode, tls


@pytest.fixture(params=["ssl", "starttls"])
def smtp(request: pytest.FixtureRequest, certificate: SelfSignedCert) -> Iterator[Mailbox]:
    """An SMTP server on loopback speaking implicit TLS or STARTTLS (both modes, parametrised)."""
    box = Mailbox("127.0.0.1", 0, "alerts@example.cn", "smtp-pass-7f3a9c", request.param)
    server = _SmtpServer(box, request.param, certificate.server_context())
    box.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield box
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
