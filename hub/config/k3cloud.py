"""A validated ``kingdee_k3cloud`` connection -> ``connectors.kingdee.k3cloud.settings.K3CloudSettings``.

Like :mod:`hub.config.kis`, the connector import is lazy so that loading configs never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.config.models import KingdeeK3CloudTemplate
from hub.config.retry import retry_policy
from hub.secrets import resolve_reference

if TYPE_CHECKING:
    from connectors.kingdee.k3cloud.settings import K3CloudSettings


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
