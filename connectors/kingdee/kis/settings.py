"""Connection settings of one Kingdee KIS cloud connection (the ``kingdee_kis`` template).

:class:`KisSettings` is the contract with ``hub.config`` (which mirrors it in pydantic): keep its field
names. Secrets arrive already resolved from ``${ENV}`` references; :meth:`KisSettings.register_secrets`
makes sure :func:`hub.secrets.redact` masks them in every log line and error text.

:class:`KisQuirks` gathers the facts the public sources leave unknown (ERP-APIS §6). Each has the safest
default we could choose; a template may override them once a real tenant has been observed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from connectors.retry import RetryPolicy
from hub.errors import ConfigError
from hub.secrets import register_secret

AuthFlow = Literal["koas", "open_platform"]


@dataclass(frozen=True)
class KisSettings:
    """One KIS cloud connection.

    Attributes:
        name: connection name; every error message starts with it.
        base_url: gateway root, ``https://api.kingdee.com`` in production, the sandbox URL in tests.
        auth_flow: ``"koas"`` (OAuth code + account set + service gateway, ERP-APIS §2.1a) or
            ``"open_platform"`` (open.jdy.com app token with ``X-Api-*`` signing, §2.1b).
        client_id, client_secret: developer credentials (both flows).
        auth_code: koas only, the OAuth code exchanged at ``/koas/oauth2/access_token``.
        account_number: koas only, the account set (账套, ``acctnumber``) to work in.
        app_key, app_secret, outer_instance_id: open_platform only.
        connect_timeout, read_timeout: seconds, applied to every HTTP call.
        page_size: ``ItemsOfPage`` of list calls.
        ca_bundle: path of a CA bundle for a private CA; TLS is always verified.
        retry: back-off policy for transient failures (connectors/retry.py).
        refresh_margin_seconds: refresh a token this long before its absolute expiry (capped at a fifth
            of the token's lifetime so short-lived tokens are not refreshed on every call).
        base_data_app, stock_app, voucher_app: KIS app codes (paths are case-insensitive at the gateway).
    """

    name: str
    base_url: str
    auth_flow: AuthFlow
    client_id: str
    client_secret: str
    auth_code: str = ""
    account_number: str = ""
    app_key: str = ""
    app_secret: str = ""
    outer_instance_id: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    page_size: int = 100
    ca_bundle: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    refresh_margin_seconds: float = 600
    base_data_app: str = "APP006992"
    stock_app: str = "APP007104"
    voucher_app: str = "APP007155"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the connection and field when a setting cannot work."""
        where = f"KIS connection {self.name!r}"
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}: base_url {self.base_url!r} must start with https:// (or http:// for a sandbox)."
            )
        if self.auth_flow not in ("koas", "open_platform"):
            raise ConfigError(
                f"{where}: auth_flow must be 'koas' or 'open_platform', not {self.auth_flow!r}."
            )
        required = ["client_id", "client_secret"]
        if self.auth_flow == "koas":
            required += ["auth_code", "account_number"]
        else:
            required += ["outer_instance_id"]
        missing = [f for f in required if not getattr(self, f)]
        if missing:
            raise ConfigError(
                f"{where}: {', '.join(missing)} must be set for auth_flow {self.auth_flow!r}; "
                "add them to the template (secrets as ${ENV} references)."
            )
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ConfigError(f"{where}: connect_timeout and read_timeout must be positive seconds.")
        if not 1 <= self.page_size <= 1000:
            raise ConfigError(f"{where}: page_size must be between 1 and 1000, not {self.page_size}.")
        if self.ca_bundle is not None:
            self._check_ca_bundle(where)

    def _check_ca_bundle(self, where: str) -> None:
        """``ca_bundle`` must name a readable file: a typo would otherwise only show at the first call."""
        path = Path(self.ca_bundle or "")
        if not self.ca_bundle:
            problem = "is empty"
        elif path.is_dir():
            problem = "is a directory, not a PEM file"
        elif not path.is_file():
            problem = "does not exist" + ("" if path.is_absolute() else f" (relative to {os.getcwd()})")
        elif not os.access(path, os.R_OK):
            raise ConfigError(
                f"{where}: ca_bundle {self.ca_bundle!r} is not readable by this user. "
                "Fix the file's permissions (the hub only needs read access) or point ca_bundle at a copy."
            )
        else:
            return
        raise ConfigError(
            f"{where}: ca_bundle {self.ca_bundle!r} {problem}. Set it to the PEM file of the private CA "
            "that signed the gateway's certificate (an absolute path is safest), or remove ca_bundle "
            "to use the system's CA store."
        )

    def register_secrets(self) -> None:
        """Register every secret value so logs and errors mask it."""
        for value in (self.client_secret, self.auth_code, self.app_secret):
            register_secret(value)

    @property
    def timeout(self) -> tuple[float, float]:
        """The ``(connect, read)`` timeout pair passed to every ``requests`` call."""
        return (self.connect_timeout, self.read_timeout)


# Placeholder error codes: the public sources give no reliable koas codes (ERP-APIS §2.2, §6 item 2).
# The sandbox uses the 1xxx values below; 40001/40014/42001 come from a PHP SDK copied from WeChat [L].
DEFAULT_AUTH_ERRCODES = frozenset({1001, 1002, 1003, 1004, 40001, 40014, 42001})
DEFAULT_THROTTLE_ERRCODES = frozenset({1030})
DEFAULT_TRANSIENT_ERRCODES = frozenset({1050})


@dataclass(frozen=True)
class KisQuirks:
    """Unknown facts of the real gateway (ERP-APIS §6), each with its safest default.

    Attributes:
        auth_errcodes: ``errcode`` values meaning "token/session/auth_data expired or invalid" (refresh once
            and retry). Unknown on the real gateway [L]; an auth failure outside this set surfaces as a
            permanent error, which stops the record instead of hiding a credentials problem.
        throttle_errcodes: ``errcode`` values meaning "slow down" (back off and retry) [L].
        transient_errcodes: ``errcode`` values meaning "try again later" [L].
        unknown_errcode_is_permanent: an errcode in none of the sets is permanent (dead-letter, visible to a
            person) rather than retried blindly. Safe because writes are idempotent by bill number anyway.
        app_token_keys: JSON keys tried, in order, for the app token of ``kingdee_auth_token``
            (``app-token`` vs ``app_token`` differ between sources, §6 item 6).
        list_filter_key: body key carrying list filters (``Data`` as in ICInventory/List) [L]. The client
            re-checks every filter locally, so a gateway that ignores it only costs extra pages.
        invoice_no_field: head field carrying the invoice number on an outbound. KIS has no standard
            field [L]; ``FHeadSelfB0163`` is the custom head field seen in a public sample body (§2.4).
        auth_data_lifetime_seconds: assumed lifetime of ``auth_data`` when the gateway does not say; the
            client also refreshes reactively on an auth error, so a wrong guess costs one extra call.
        batch_detail_size: ``ItemIds`` per ``GetListDetails`` call (≤20 seen in one client) [M].
    """

    auth_errcodes: frozenset[int] = DEFAULT_AUTH_ERRCODES
    throttle_errcodes: frozenset[int] = DEFAULT_THROTTLE_ERRCODES
    transient_errcodes: frozenset[int] = DEFAULT_TRANSIENT_ERRCODES
    unknown_errcode_is_permanent: bool = True
    app_token_keys: tuple[str, ...] = ("app-token", "app_token", "appToken")
    list_filter_key: str = "Data"
    invoice_no_field: str = "FHeadSelfB0163"
    auth_data_lifetime_seconds: float = 7200.0
    batch_detail_size: int = 20
