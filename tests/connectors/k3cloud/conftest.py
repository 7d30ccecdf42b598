"""The K/3 Cloud sandbox on a free loopback port (one per test, own SQLite file) and client factories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.kingdee.k3cloud import K3CloudClient, K3CloudSettings
from connectors.kingdee.k3cloud_sandbox import K3CloudSandbox
from connectors.retry import RetryPolicy

# Short waits keep the suite fast; the behaviour (what is retried, how often) is the production one.
FAST_RETRY = RetryPolicy(max_attempts=4, initial_wait=0.05, max_wait=0.3, max_elapsed=60)


class Admin:
    """Calls to the sandbox's /__admin__/ endpoints."""

    def __init__(self, sandbox: K3CloudSandbox) -> None:
        self.url = sandbox.admin_url

    def _call(self, method: str, name: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        response = requests.request(method, self.url + name, json=body, params=params, timeout=(2, 30))
        assert response.status_code == 200, response.text
        return response.json()

    def set(self, **patch: Any) -> dict[str, Any]:
        return self._call("PUT", "faults", patch)  # type: ignore[no-any-return]

    def script(self, *entries: dict[str, Any]) -> None:
        self.set(script=list(entries))

    def ledger(self, form_id: str | None = None) -> list[dict[str, Any]]:
        params = {"form_id": form_id} if form_id else {}
        return self._call("GET", "ledger", **params)["entries"]  # type: ignore[no-any-return]

    def creates(self, form_id: str) -> list[str]:
        return [e["number"] for e in self.ledger(form_id) if e["action"] == "create"]

    def recycle(self) -> int:
        return int(self._call("POST", "recycle")["killed_sessions"])

    def advance_clock(self, seconds: float) -> None:
        self._call("POST", "clock", {"advance": seconds})

    def seed(self, **extra: Any) -> dict[str, Any]:
        return self._call("POST", "seed", extra)  # type: ignore[no-any-return]

    def stats(self) -> dict[str, int]:
        return self._call("GET", "stats")  # type: ignore[no-any-return]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[K3CloudSandbox]:
    sb = K3CloudSandbox(tmp_path / "k3cloud.sqlite", seed=11)
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def admin(sandbox: K3CloudSandbox) -> Admin:
    return Admin(sandbox)


MakeClient = Callable[..., K3CloudClient]


@pytest.fixture
def make_client(sandbox: K3CloudSandbox) -> MakeClient:
    """``make_client(auth_mode="password", clock=None, sleep=None, **settings_overrides)``."""

    def make(
        auth_mode: str = "password",
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        **overrides: Any,
    ) -> K3CloudClient:
        creds = sandbox.credentials
        uses_app = auth_mode != "password"
        kwargs: dict[str, Any] = {
            "name": "erp-test",
            "base_url": sandbox.base_url,
            "auth_mode": auth_mode,
            "acct_id": creds.acct_id,
            "username": creds.username,
            "password": "" if uses_app else creds.password,
            "app_id": creds.app_id if uses_app else "",
            "app_secret": creds.app_secret if uses_app else "",
            "org_number": "100",
            "connect_timeout": 2.0,
            "read_timeout": 20.0,
            "retry": FAST_RETRY,
        }
        kwargs.update(overrides)
        extra: dict[str, Any] = {"clock": clock} if clock else {}
        return K3CloudClient(K3CloudSettings(**kwargs), sleep=sleep, **extra)

    return make


@pytest.fixture
def client(make_client: MakeClient) -> K3CloudClient:
    return make_client()
