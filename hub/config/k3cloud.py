"""A validated ``kingdee_k3cloud`` connection -> ``connectors.kingdee.k3cloud.settings.K3CloudSettings``.

Like :mod:`hub.config.kis`, the connector import is lazy so that loading configs never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.config.models import KingdeeK3CloudTemplate
from hub.config.retry import retry_policy
from hub.errors import ConfigError
from hub.secrets import resolve_reference

if TYPE_CHECKING:
    from connectors.kingdee.k3cloud.settings import K3CloudSettings
    from mappings.k3cloud_outbound import K3OutboundOptions


def k3cloud_settings(
    name: str, template: KingdeeK3CloudTemplate, *, where: str = "hub.yaml"
) -> K3CloudSettings:
    """Build the connector settings, resolving every ``${ENV}`` secret (``ConfigError`` when unset)."""
    from connectors.kingdee.k3cloud.settings import K3CloudSettings

    c = template.connection
    prefix = f"{where}: connections.{name}.connection"

    def secret(field: str, value: str | None) -> str:
        return resolve_reference(value, where=f"{prefix}.{field}") if value else ""

    return K3CloudSettings(
        name=name,
        base_url=c.base_url,
        auth_mode=c.auth,
        acct_id=c.acct_id,
        username=c.username,
        password=secret("password", c.password),
        app_id=c.app_id or "",
        app_secret=secret("app_secret", c.app_secret),
        lcid=c.lcid,
        org_number=c.org_number or "0",
        connect_timeout=c.connect_timeout,
        read_timeout=c.read_timeout,
        batch_size=c.batch_size,
        ca_bundle=c.ca_bundle,
        retry=retry_policy(template.retry),
    )


def k3cloud_outbound_options(
    name: str, template: KingdeeK3CloudTemplate, *, where: str = "hub.yaml"
) -> K3OutboundOptions:
    """What the SAL_OUTSTOCK push needs beyond the login; ``ConfigError`` naming the missing setting.

    K/3 Cloud wants a sales/stock organisation on the head and a warehouse on every row, and the push
    posts no vouchers (``receivable_voucher`` is a KIS option).
    """
    from mappings.k3cloud_outbound import K3OutboundOptions

    prefix = f"{where}: connections.{name}"
    stream = template.streams.invoiced_states
    if stream is None or not stream.enabled:
        raise ConfigError(f"{prefix}.streams.invoiced_states: not enabled, so there is nothing to push.")
    if not template.connection.org_number:
        raise ConfigError(
            f"{prefix}.connection.org_number: the push needs the organisation number (FSaleOrgId / "
            'FStockOrgId of the sales outbound), e.g. "100".'
        )
    if not stream.stock_number:
        raise ConfigError(
            f"{prefix}.streams.invoiced_states.stock_number: the push needs the warehouse number "
            '(FStockID on every SAL_OUTSTOCK row), e.g. "CK001"; or set enabled: false under '
            "invoiced_states if this connection should receive no pushes."
        )
    if stream.receivable_voucher.enabled:
        raise ConfigError(
            f"{prefix}.streams.invoiced_states.receivable_voucher: K/3 Cloud connections post no "
            "vouchers; set enabled: false."
        )
    return K3OutboundOptions(org_number=template.connection.org_number)
