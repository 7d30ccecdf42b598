"""The template models, one per connector kind, and the project config (``hub.yaml``).

``TemplateSpec`` is the discriminated union (on ``kind``) every template and every configured connection
is validated against. These hand-written models are the source of truth; the JSON Schema is generated.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from hub.config.models.base import (
    SHANGHAI,
    Cursor,
    MappingRef,
    RetryPolicyConfig,
    Schedule,
    Strict,
    TemplateBase,
    ValidationRef,
)
from hub.config.models.files import ErpSftpCsvTemplate, ExcelCustomersTemplate
from hub.config.models.kingdee import KingdeeK3CloudTemplate, KingdeeKisTemplate
from hub.config.models.notify import NotifyDingtalkTemplate, NotifyEmailTemplate, NotifyWecomTemplate
from hub.config.models.rest import RestSourceTemplate
from hub.config.types import Identifier, SecretRef, TimeZoneName

AnyTemplate = (
    KingdeeKisTemplate
    | KingdeeK3CloudTemplate
    | ErpSftpCsvTemplate
    | ExcelCustomersTemplate
    | RestSourceTemplate
    | NotifyWecomTemplate
    | NotifyDingtalkTemplate
    | NotifyEmailTemplate
)
TemplateSpec = Annotated[AnyTemplate, Field(discriminator="kind")]
TEMPLATE_ADAPTER: TypeAdapter[Any] = TypeAdapter(TemplateSpec)

KINDS: dict[str, type[TemplateBase]] = {
    "kingdee_kis": KingdeeKisTemplate,
    "kingdee_k3cloud": KingdeeK3CloudTemplate,
    "erp_sftp_csv": ErpSftpCsvTemplate,
    "excel_customers": ExcelCustomersTemplate,
    "rest_source": RestSourceTemplate,
    "notify_wecom": NotifyWecomTemplate,
    "notify_dingtalk": NotifyDingtalkTemplate,
    "notify_email": NotifyEmailTemplate,
}


class ProjectConfig(Strict):
    """``hub.yaml``: the named connections of one installation, each made from a template.

    In the file a connection may give only what differs from its template (``template: kingdee_kis`` plus
    overrides); after loading, every entry in ``connections`` is the complete, validated template model.
    """

    version: Literal[1] = 1
    timezone: TimeZoneName = SHANGHAI
    database_url: SecretRef | None = Field(
        None,
        description="Canonical store URL as an environment reference; default: HUB_DATABASE_URL or SQLite.",
    )
    templates_dir: str | None = Field(None, description="Extra template directory, relative to hub.yaml.")
    mappings_dir: str | None = Field(None, description="Extra mapping directory, relative to hub.yaml.")
    connections: dict[Identifier, TemplateSpec] = Field(default_factory=dict)


__all__ = [
    "KINDS",
    "SHANGHAI",
    "TEMPLATE_ADAPTER",
    "AnyTemplate",
    "Cursor",
    "ErpSftpCsvTemplate",
    "ExcelCustomersTemplate",
    "KingdeeK3CloudTemplate",
    "KingdeeKisTemplate",
    "MappingRef",
    "NotifyDingtalkTemplate",
    "NotifyEmailTemplate",
    "NotifyWecomTemplate",
    "ProjectConfig",
    "RestSourceTemplate",
    "RetryPolicyConfig",
    "Schedule",
    "Strict",
    "TemplateBase",
    "TemplateSpec",
    "ValidationRef",
]
