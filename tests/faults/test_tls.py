"""Fault matrix case 23 (TLS half): the KIS client against an HTTPS sandbox with a self-signed, a
wrong-host and a private-CA certificate. A certificate that does not verify is refused during the
handshake -- before any credential leaves the client -- and nothing (environment, session, config,
redirect) turns verification off or falls back to plain HTTP.

The signature and stale-timestamp half of case 23 is in tests/connectors/kis/test_kis_auth.py.
Certificates are made here with ``cryptography`` (installed with paramiko).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydantic
import pytest
import requests

from connectors.kingdee.kis import KisClient, KisSettings
from connectors.kingdee.kis.errors import Failure, Phase, classify
from connectors.kingdee.kis.settings import KisQuirks
from connectors.kingdee.kis_sandbox import FaultConfig, KisSandbox, SandboxAdmin
from connectors.retry import RetryPolicy
from hub.config.models.kingdee import KisConnection
from hub.errors import AuthError, ConfigError, HubError
from tests.connectors.kis import conftest as kis_fixtures
from tests.connectors.kis.conftest import ClientFactory, outbound

# The KIS tests' client fixtures, here bound to this module's ``sandbox`` (an HTTPS one).
make_settings = kis_fixtures.make_settings
make_client = kis_fixtures.make_client

ONE_TRY = RetryPolicy(max_attempts=1, initial_wait=0.01, max_wait=0.01, multiplier=1.0, max_elapsed=5.0)


# --- certificates ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Pki:
    """PEM files: a self-signed server certificate, a private CA, and two leaves it signed."""

    self_signed: tuple[Path, Path]  # (cert, key), SAN 127.0.0.1 + localhost
    ca: Path
    good: tuple[Path, Path]  # signed by ca, SAN 127.0.0.1 + localhost
    wrong_host: tuple[Path, Path]  # signed by ca, SAN erp.example.com only


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    root = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    loopback: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]

    def write(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
        cert_path, key_path = root / f"{name}.crt", root / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    def issue(
        cn: str,
        sans: list[x509.GeneralName],
        *,
        issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
        ca: bool = False,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer[0].subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        if issuer:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False
            )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key

    # Self-signed like ``openssl req -x509`` makes it (CA:TRUE, so it can be its own trust anchor).
    self_signed = issue("localhost", loopback, ca=True)
    ca = issue("Hub Test Private CA", [], ca=True)
    good = issue("127.0.0.1", loopback, issuer=ca)
    wrong = issue("erp.example.com", [x509.DNSName("erp.example.com")], issuer=ca)
    return Pki(
        self_signed=write("self_signed", *self_signed),
        ca=write("ca", *ca)[0],
        good=write("good", *good),
        wrong_host=write("wrong_host", *wrong),
    )


# --- sandboxes ---------------------------------------------------------------------------------------
SandboxFactory = Callable[..., KisSandbox]


@pytest.fixture
def start_sandbox(tmp_path: Path) -> Iterator[SandboxFactory]:
    """``start_sandbox(cert_and_key | None)`` -> a running KIS sandbox (HTTPS with a certificate)."""
    boxes: list[KisSandbox] = []

    def start(pair: tuple[Path, Path] | None = None) -> KisSandbox:
        certfile, keyfile = pair if pair else (None, None)
        box = KisSandbox(
            tmp_path / f"kis_{len(boxes)}.sqlite",
            seed=20250301,
            faults=FaultConfig(),
            certfile=certfile,
            keyfile=keyfile,
        )
        boxes.append(box)
        box.start()
        return box

    yield start
    for box in boxes:
        box.stop()


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, pki: Pki, start_sandbox: SandboxFactory) -> KisSandbox:
    """The sandbox ``make_client`` points at; its certificate is the indirect parameter (default good)."""
    kind = getattr(request, "param", "good")
    return start_sandbox(getattr(pki, kind))


def handshake_failures(box: KisSandbox, expected: int) -> int:
    """The sandbox's failed-handshake count once it reaches ``expected`` (its thread counts after the
    client has already given up), or after 5 s."""
    deadline = time.monotonic() + 5.0
    while box.tls_handshake_failures < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # a retry, if there were one, would show up here
    return box.tls_handshake_failures


def untouched(box: KisSandbox) -> None:
    """Nothing reached the gateway: no auth call, no business call, not even a 404; no write."""
    stats = box.gateway.stats_snapshot()
    assert sum(stats.values()) == 0, stats
    assert box.state.ledger() == []


def refused(exc: pytest.ExceptionInfo[HubError], box: KisSandbox, why: str) -> None:
    """A TLS refusal: ConfigError naming ca_bundle and the verify reason ``why``, one failed handshake
    (no retry), gateway untouched."""
    assert isinstance(exc.value, ConfigError), exc.value
    text = str(exc.value)
    assert "TLS verification failed" in text and "ca_bundle" in text and "never skipped" in text
    assert f"(SSLError: certificate verify failed: {why}" in text, text  # the reason, not the URL
    assert "access_token=" not in text and "HTTPSConnectionPool" not in text, text
    assert box.credentials.client_secret not in text and box.credentials.auth_code not in text
    assert handshake_failures(box, 1) == 1  # refused once, not retried
    untouched(box)


# --- cases -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sandbox", ["self_signed"], indirect=True)
@pytest.mark.parametrize("flow", ["koas", "open_platform"])
def test_self_signed_certificate_is_refused_before_any_credential_is_sent(
    flow: str, sandbox: KisSandbox, make_client: ClientFactory, pki: Pki
) -> None:
    assert sandbox.base_url.startswith("https://127.0.0.1:")
    client = make_client(flow)
    with pytest.raises(HubError) as exc:
        client.create_outbound(outbound("TLS-SELF-1"))
    refused(exc, sandbox, "self-signed certificate")

    # The refusal is the client's, not a broken server: trusting this very certificate, a client gets
    # through -- and its first call is counted, so the zero counts above could have failed.
    admin = SandboxAdmin(sandbox.base_url, ca_bundle=pki.self_signed[0])
    assert admin.ledger() == []
    trusting = make_client(flow, ca_bundle=str(pki.self_signed[0]))
    assert trusting.check().stocks_total > 0
    assert admin.stats()["calls"] > 0


@pytest.mark.parametrize("sandbox", ["wrong_host"], indirect=True)
def test_wrong_host_certificate_is_refused_even_when_its_ca_is_trusted(
    sandbox: KisSandbox, make_client: ClientFactory, pki: Pki
) -> None:
    client = make_client("koas", ca_bundle=str(pki.ca))
    with pytest.raises(HubError) as exc:
        client.check()
    # The cause is the host name, not the CA, and the error says so:
    refused(exc, sandbox, "IP address mismatch, certificate is not valid for '127.0.0.1'")
    assert "does not name base_url's host" in str(exc.value)

    # By name, with a certificate that names neither 127.0.0.1 nor localhost:
    by_name = make_client("koas", ca_bundle=str(pki.ca), base_url=f"https://localhost:{sandbox.port}")
    with pytest.raises(ConfigError, match="Hostname mismatch, certificate is not valid for 'localhost'"):
        by_name.check()


def test_private_ca_leaf_with_ca_bundle_logs_in_and_writes_once(
    sandbox: KisSandbox, make_client: ClientFactory, pki: Pki
) -> None:
    client = make_client("koas", ca_bundle=str(pki.ca))
    report = client.check()  # login: oauth token, account, gateway; then one read
    assert report.base_url.startswith("https://") and report.stocks_total > 0
    created = client.create_outbound(outbound("TLS-OK-1"))
    assert created.created
    admin = SandboxAdmin(sandbox.base_url, ca_bundle=pki.ca)
    assert [(w["bill_no"], w["fid"]) for w in admin.ledger("salesdelivery/create")] == [
        ("TLS-OK-1", created.fid)
    ]
    assert admin.stats()["route:/koas/oauth2/access_token"] == 1
    assert sandbox.tls_handshake_failures == 0


@pytest.mark.parametrize("sandbox", ["self_signed"], indirect=True)
def test_empty_ca_environment_or_an_insecure_session_do_not_disable_verification(
    sandbox: KisSandbox, make_settings: Callable[..., KisSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests once read CURL_CA_BUNDLE="" as "verify nothing"; the client must not.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "")
    monkeypatch.setenv("CURL_CA_BUNDLE", "")
    with KisClient(make_settings("koas")) as client, pytest.raises(HubError) as exc:
        client.check()
    refused(exc, sandbox, "self-signed certificate")

    insecure = requests.Session()
    insecure.verify = False  # a caller's session cannot switch verification off either
    with (
        KisClient(make_settings("open_platform"), session=insecure) as client,
        pytest.raises(ConfigError, match="TLS verification failed"),
    ):
        client.check()
    assert handshake_failures(sandbox, 2) == 2
    untouched(sandbox)


def test_https_base_url_never_falls_back_to_plain_http(
    start_sandbox: SandboxFactory, make_settings: Callable[..., KisSettings], pki: Pki
) -> None:
    plain = start_sandbox(None)
    assert plain.base_url.startswith("http://")
    https_url = plain.base_url.replace("http://", "https://")

    # 1. https:// pointed at a plain-HTTP port: the handshake fails; no retry over http.
    settings = make_settings("koas", base_url=https_url, connect_timeout=1.0, read_timeout=1.0, retry=ONE_TRY)
    with KisClient(settings) as client, pytest.raises(ConfigError, match="TLS verification failed") as exc:
        client.check()  # the plain server answers the ClientHello with an HTTP 400: WRONG_VERSION_NUMBER
    text = str(exc.value)
    assert "WRONG_VERSION_NUMBER" in text, text
    assert "did not answer TLS: is base_url https:// pointing at a plain-http port?" in text, text
    assert "certificate did not verify" not in text and "access_token=" not in text, text
    untouched(plain)

    # 2. A verified https gateway redirecting to http://: the redirect is not followed.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, pki.good))
    seen: list[str] = []

    class Redirect(BaseHTTPRequestHandler):
        """Answers every call with 307 to the same path on the plain-HTTP sandbox."""

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            seen.append(self.path.split("?", 1)[0])
            self.send_response(307)
            self.send_header("Location", plain.base_url + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        settings = make_settings("koas", base_url=url, ca_bundle=str(pki.ca), retry=ONE_TRY)
        with KisClient(settings) as client, pytest.raises(AuthError, match="HTTP 307"):
            client.check()
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["/koas/oauth2/access_token"]  # the https side saw the call ...
    untouched(plain)  # ... and the http side never did


def test_kis_config_has_no_switch_to_disable_verification() -> None:
    base = {
        "auth_flow": "koas",
        "client_id": "205022",
        "client_secret": "${KIS_SECRET}",
        "auth_code": "${KIS_CODE}",
        "account_number": "ZT001",
    }
    for extra in ({"verify": False}, {"verify_tls": False}, {"insecure": True}, {"ca_bundle": False}):
        with pytest.raises(pydantic.ValidationError):
            KisConnection.model_validate({**base, **extra})
    names = {f.name for f in dataclasses.fields(KisSettings)} | set(KisConnection.model_fields)
    assert not {n for n in names if "verify" in n or "insecure" in n or "ssl" in n}, names


def test_sandbox_names_an_unreadable_certificate(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(ValueError, match="missing.pem"):
        KisSandbox(tmp_path / "k.sqlite", certfile=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="cannot load certificate"):
        KisSandbox(tmp_path / "k.sqlite", certfile=pki.ca, keyfile=pki.good[1])  # key of another cert


def test_tls_error_names_the_innermost_reason_and_never_the_query(
    start_sandbox: SandboxFactory, pki: Pki
) -> None:
    """``requests`` puts the pool, host and URL (with its ``?access_token=...``) in front of the reason,
    so a cut of its text loses the reason and may keep a token. The error shows the reason only, whether
    the exception still carries its chain or was rebuilt from its text."""
    self_signed, wrong_host, plain = (
        start_sandbox(pki.self_signed),
        start_sandbox(pki.wrong_host),
        start_sandbox(),
    )
    token = "access_token=SECRET-TOKEN-123"
    cases: list[tuple[str, bool | str, str, str]] = [  # (url, verify, reason shown, advice shown)
        (
            self_signed.base_url,
            True,  # the system store
            "certificate verify failed: self-signed certificate",
            "ca_bundle",
        ),
        (
            wrong_host.base_url,
            str(pki.ca),
            "certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'",
            "does not name base_url's host",
        ),
        (
            plain.base_url.replace("http://", "https://"),
            str(pki.ca),
            "[SSL: WRONG_VERSION_NUMBER] wrong version number",
            "did not answer TLS: is base_url https:// pointing at a plain-http port?",
        ),
    ]
    for url, ca, reason, advice in cases:
        with pytest.raises(requests.exceptions.SSLError) as raised:
            requests.post(f"{url}/koas/x?{token}", verify=ca, timeout=5)
        assert str(raised.value).startswith("HTTPSConnectionPool(") and token in str(raised.value)
        flattened = requests.exceptions.SSLError(str(raised.value))  # chain gone, text kept
        for exc in (raised.value, flattened):
            error = classify(Failure("POST /koas/x", exception=exc), Phase.AUTH, KisQuirks(), "erp")
            text = str(error)
            assert isinstance(error, ConfigError)
            assert f"TLS verification failed (SSLError: {reason})." in text, text
            assert advice in text and "SECRET-TOKEN" not in text and "access_token=" not in text, text


def test_ca_bundle_that_is_not_a_readable_file_is_refused_before_any_call(
    tmp_path: Path, make_settings: Callable[..., KisSettings], sandbox: KisSandbox, pki: Pki
) -> None:
    missing = tmp_path / "corp-ca.pem"
    for value, problem in [
        (str(missing), "does not exist"),
        ("certs/corp-ca.pem", "does not exist (relative to "),
        (str(tmp_path), "is a directory, not a PEM file"),
        ("", "is empty"),
    ]:
        settings = make_settings("koas", ca_bundle=value)
        with pytest.raises(ConfigError) as exc:
            settings.validate()
        text = str(exc.value)
        assert text.startswith(f"KIS connection 'kis-koas': ca_bundle {value!r} {problem}"), text
        assert "Set it to the PEM file of the private CA" in text, text
        with pytest.raises(ConfigError, match="ca_bundle"):
            KisClient(settings)  # the client validates on construction: no handshake, no call
    assert sandbox.tls_handshake_failures == 0
    untouched(sandbox)

    make_settings("koas", ca_bundle=str(pki.ca)).validate()  # a readable PEM file passes
    make_settings("koas", ca_bundle=None).validate()  # and so does no ca_bundle (system store)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: permissions cannot be tested")
def test_unreadable_ca_bundle_says_to_fix_permissions(
    tmp_path: Path, make_settings: Callable[..., KisSettings], pki: Pki
) -> None:
    locked = tmp_path / "locked.pem"
    locked.write_bytes(pki.ca.read_bytes())
    locked.chmod(0)
    with pytest.raises(ConfigError, match=r"ca_bundle '.*locked\.pem' is not readable by this user\. Fix"):
        make_settings("koas", ca_bundle=str(locked)).validate()
