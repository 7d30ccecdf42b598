"""One clear HubError for a bad base URL, an unreachable gateway, or wrong settings; the error table."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from connectors.kingdee.kis import KisClient
from connectors.kingdee.kis.errors import Failure, Phase, classify, parse_retry_after
from connectors.kingdee.kis.settings import KisQuirks
from connectors.retry import RetryPolicy
from hub.errors import (
    AuthError,
    ConfigError,
    HubError,
    PermanentError,
    RateLimitedError,
    TransientError,
    UnknownOutcomeError,
)

from .conftest import ClientFactory

QUICK = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02)


class _NotKis(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = b"<html><body>Welcome to nginx!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_kis_url() -> Iterator[str]:
    """A real web server that is not a KIS gateway."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotKis)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_unreachable_gateway(make_client: ClientFactory, closed_port_url: str) -> None:
    client = make_client("koas", base_url=closed_port_url, retry=QUICK)
    with pytest.raises(TransientError) as caught:
        client.check()
    text = _one_line(caught.value)
    assert "kis-koas" in text and "base_url" in text and "cannot connect" in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_base_url_that_is_not_a_kis_gateway(make_client: ClientFactory, not_kis_url: str) -> None:
    client = make_client("open_platform", base_url=not_kis_url, retry=QUICK)
    with pytest.raises(ConfigError) as caught:
        client.check()
    text = _one_line(caught.value)
    assert "kis-open_platform" in text and "not a KIS gateway" in text and "base_url" in text


def test_base_url_with_a_wrong_path(make_client: ClientFactory, sandbox: object) -> None:
    client = make_client("koas", base_url=make_client("koas").settings.base_url + "/openapi", retry=QUICK)
    with pytest.raises(ConfigError, match="endpoint not found.*base_url"):
        client.check()


def test_wrong_app_code_is_a_config_error(make_client: ClientFactory) -> None:
    with pytest.raises(ConfigError, match="app codes"):
        make_client("koas", stock_app="APP999999").find_outbound_summary("X")


def test_bad_settings_are_refused_before_any_call(make_client: ClientFactory) -> None:
    with pytest.raises(ConfigError, match="auth_code, account_number"):
        make_client("koas", auth_code="", account_number="")
    with pytest.raises(ConfigError, match="base_url"):
        make_client("koas", base_url="api.kingdee.com")


def test_unknown_account_set_names_the_choices(make_client: ClientFactory) -> None:
    with pytest.raises(ConfigError, match=r"'NOPE'.*KIS001, DEMO"):
        make_client("koas", account_number="NOPE").check()


def test_secrets_never_reach_the_error_text(make_client: ClientFactory, closed_port_url: str) -> None:
    client = make_client("koas")
    client.check()
    token = client.auth.access_token.value  # type: ignore[union-attr]
    client.transport._base = closed_port_url  # the gateway disappears mid-run
    with pytest.raises(HubError) as caught:
        next(iter(client.list_stocks()))
    text = str(caught.value)
    assert token not in text and client.settings.client_secret not in text and "access_token=" not in text


READ, WRITE, AUTH = Phase.READ, Phase.WRITE, Phase.AUTH
_reset = requests.exceptions.ConnectionError("('Connection aborted.', ConnectionResetError(104, 'reset'))")
_refused = requests.exceptions.ConnectionError(
    "HTTPConnectionPool: NewConnectionError: [Errno 111] Connection refused"
)


@pytest.mark.parametrize(
    ("failure", "phase", "expected"),
    [
        (Failure("op", status=503), READ, TransientError),
        (Failure("op", status=503), WRITE, UnknownOutcomeError),
        (Failure("op", status=429, retry_after=3.0), WRITE, RateLimitedError),
        (Failure("op", exception=requests.exceptions.ReadTimeout("t")), READ, TransientError),
        (Failure("op", exception=requests.exceptions.ReadTimeout("t")), WRITE, UnknownOutcomeError),
        (Failure("op", exception=_reset), WRITE, UnknownOutcomeError),
        (Failure("op", exception=_refused), WRITE, TransientError),  # never sent: safe to resend
        (Failure("op", exception=requests.exceptions.ConnectTimeout("t")), WRITE, TransientError),
        (Failure("op", exception=requests.exceptions.SSLError("cert")), READ, ConfigError),
        (Failure("op", status=200, errcode=10201, description="失败原因：x"), WRITE, PermanentError),
        (Failure("op", status=200, errcode=10201), AUTH, AuthError),
        (Failure("op", status=200, errcode=1001), READ, AuthError),
        (Failure("op", status=200, errcode=1030), READ, RateLimitedError),
        (Failure("op", status=400, errcode=1003), READ, AuthError),  # keyed on errcode, not on status
        (Failure("op", status=401), READ, AuthError),
        (Failure("op", status=404), READ, ConfigError),
        (Failure("op", status=200), READ, ConfigError),  # 200 without an envelope
    ],
)
def test_error_table(failure: Failure, phase: Phase, expected: type[HubError]) -> None:
    error = classify(failure, phase, KisQuirks(), "erp")
    assert type(error) is expected
    assert str(error).startswith("KIS connection 'erp': op:")
    if failure.retry_after:
        assert error.retry_after == failure.retry_after  # type: ignore[attr-defined]


def test_unknown_errcodes_can_be_configured_transient() -> None:
    quirks = KisQuirks(unknown_errcode_is_permanent=False)
    assert type(classify(Failure("op", errcode=777), READ, quirks, "erp")) is TransientError


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None


def test_client_accepts_a_session(make_settings: object, sandbox: object) -> None:
    with requests.Session() as session:
        client = KisClient(make_settings("koas"), session)  # type: ignore[operator]
        assert client.session is session and client.check().stocks_total == 2
