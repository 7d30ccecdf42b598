"""A validated ``kingdee_kis`` connection -> ``connectors.kingdee.kis.settings.KisSettings``.

This is the one place ``hub.config`` reaches up into a connector; the import is lazy so that loading
configs never imports connector code, and the function is the agreed contract with the KIS connector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.config.models import KingdeeKisTemplate
from hub.config.retry import retry_policy
from hub.secrets import resolve_reference

if TYPE_CHECKING:
    from connectors.kingdee.kis.settings import KisSettings


def kis_settings(name: str, template: KingdeeKisTemplate, *, where: str = "hub.yaml") -> KisSettings:
    """Build the connector settings, resolving every ``${ENV}`` secret (``ConfigError`` when unset)."""
    from connectors.kingdee.kis.settings import KisSettings

    c = template.connection
    prefix = f"{where}: connections.{name}.connection"

    def secret(field: str, value: str | None) -> str:
        return resolve_reference(value, where=f"{prefix}.{field}") if value else ""

    return KisSettings(
        name=name,
        base_url=c.base_url,
        auth_flow=c.auth_flow,
        client_id=c.client_id,
        client_secret=secret("client_secret", c.client_secret),
        auth_code=secret("auth_code", c.auth_code),
        account_number=c.account_number or "",
        app_key=c.app_key or "",
        app_secret=secret("app_secret", c.app_secret),
        outer_instance_id=c.outer_instance_id or "",
        connect_timeout=c.connect_timeout,
        read_timeout=c.read_timeout,
        page_size=c.page_size,
        ca_bundle=c.ca_bundle,
        retry=retry_policy(template.retry),
        refresh_margin_seconds=c.refresh_margin_seconds,
        base_data_app=c.base_data_app,
        stock_app=c.stock_app,
        voucher_app=c.voucher_app,
    )
