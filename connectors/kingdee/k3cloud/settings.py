"""Connection settings of one K/3 Cloud (云星空) WebAPI endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from connectors.retry import RetryPolicy
from hub.errors import ConfigError

AuthMode = Literal["password", "app_secret", "sign", "signed_headers"]
AUTH_MODES: tuple[str, ...] = ("password", "app_secret", "sign", "signed_headers")

# Which settings each login style needs (besides base_url and acct_id).
_REQUIRED_BY_MODE: dict[str, tuple[str, ...]] = {
    "password": ("username", "password"),
    "app_secret": ("username", "app_id", "app_secret"),
    "sign": ("username", "app_id", "app_secret"),
    "signed_headers": ("username", "app_id", "app_secret"),
}


@dataclass(frozen=True)
class K3CloudSettings:
    """Everything the client needs to talk to one K/3 Cloud data centre (账套).

    Attributes:
        name: connection name used in every error message (e.g. ``erp``).
        base_url: ``http(s)://<host>/K3Cloud/``; a missing trailing slash is added.
        auth_mode: ``password`` (ValidateUser), ``app_secret`` (LoginByAppSecret), ``sign``
            (LoginBySign) or ``signed_headers`` (stateless ``X-Api-*``/``X-Kd-*`` headers, no login).
        acct_id: data centre id (``acctID``).
        username / password: integration user; the password only for ``password`` mode.
        app_id / app_secret: third-party app registration (``clientId_blob`` AppId) for the other modes.
        lcid: locale id, 2052 = simplified Chinese.
        org_number: organisation number sent in ``X-Kd-Appdata`` (signed-header mode).
        connect_timeout / read_timeout: seconds, passed on every HTTP call.
        batch_size: packages per ``BatchSave`` call (community guidance: at most 20).
        ca_bundle: path of a CA bundle for a private CA; ``None`` uses the system store.
        retry: back-off policy for transient failures (one builder: :mod:`connectors.retry`).
    """

    name: str
    base_url: str
    auth_mode: AuthMode
    acct_id: str
    username: str = ""
    password: str = field(default="", repr=False)
    app_id: str = ""
    app_secret: str = field(default="", repr=False)
    lcid: int = 2052
    org_number: str = "0"
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    batch_size: int = 20
    ca_bundle: str | None = None
    retry: RetryPolicy = RetryPolicy()

    def __post_init__(self) -> None:
        where = f"K/3 Cloud connection {self.name!r}"
        if self.auth_mode not in AUTH_MODES:
            raise ConfigError(f"{where}: auth_mode {self.auth_mode!r} is not one of {', '.join(AUTH_MODES)}.")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}: base_url must start with http:// or https:// (got {self.base_url!r})."
            )
        if not self.base_url.endswith("/"):
            object.__setattr__(self, "base_url", self.base_url + "/")
        missing = [f for f in ("acct_id", *_REQUIRED_BY_MODE[self.auth_mode]) if not getattr(self, f)]
        if missing:
            raise ConfigError(
                f"{where}: auth_mode {self.auth_mode!r} needs {', '.join(missing)}; set them in the "
                "connection config (secrets as ${ENV} references)."
            )
        if self.auth_mode != "password" and "_" not in self.app_id:
            raise ConfigError(
                f"{where}: app_id must look like '<clientId>_<secret blob>' as issued by Kingdee "
                "(第三方系统登录授权); copy it unchanged."
            )
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ConfigError(f"{where}: connect_timeout and read_timeout must be positive seconds.")
        if not 1 <= self.batch_size <= 1000:
            raise ConfigError(f"{where}: batch_size must be between 1 and 1000 (20 is recommended).")
