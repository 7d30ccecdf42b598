"""Kingdee templates: KIS 云 over the koas gateway, and K/3 Cloud (云星空) WebAPI (ERP-APIS §2, §3)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from hub.config.models.base import (
    SHANGHAI,
    Cursor,
    MappingRef,
    Schedule,
    Strict,
    TemplateBase,
    ValidationRef,
    check_columns,
    template_fields,
)
from hub.config.types import HttpUrl, NonEmpty, SecretRef, TimeZoneName

# Kingdee app codes look like APP007104 / app007104 (the gateway is case-insensitive).
_APP_CODE = r"^[Aa][Pp][Pp][0-9]{6}$"


class KisConnection(Strict):
    """Fields of ``connectors.kingdee.kis.settings.KisSettings`` (name and retry come from the template)."""

    base_url: HttpUrl = "https://api.kingdee.com"
    auth_flow: Literal["koas", "open_platform"] = Field(
        description="koas: ecosystem-app OAuth code; open_platform: app authorised through open.jdy.com."
    )
    client_id: NonEmpty = Field(description="Developer client id (not secret).")
    client_secret: SecretRef
    auth_code: SecretRef | None = Field(None, description="OAuth code (koas flow only).")
    account_number: str | None = Field(None, description="账套 number (AccountDB).")
    app_key: str | None = Field(None, description="App key (open_platform flow).")
    app_secret: SecretRef | None = Field(None, description="App secret (open_platform flow).")
    outer_instance_id: str | None = Field(
        None, description="outerInstanceId from open.jdy.com (open_platform)."
    )
    connect_timeout: float = Field(5.0, gt=0, le=120)
    read_timeout: float = Field(60.0, gt=0, le=600)
    page_size: int = Field(100, ge=1, le=1000, description="ItemsOfPage for List calls.")
    ca_bundle: str | None = Field(
        None, description="Path to a CA bundle (PEM) for a private CA; TLS is always verified."
    )
    refresh_margin_seconds: int = Field(
        600, ge=0, le=86_400, description="Refresh tokens this long before expiry."
    )
    base_data_app: str = Field("APP006992", pattern=_APP_CODE)
    stock_app: str = Field("APP007104", pattern=_APP_CODE)
    voucher_app: str = Field("APP007155", pattern=_APP_CODE)

    @model_validator(mode="after")
    def _flow_fields(self) -> KisConnection:
        # Same rule as KisSettings.validate(): app_key/app_secret may come from push_app_authorize.
        required = ("auth_code", "account_number") if self.auth_flow == "koas" else ("outer_instance_id",)
        missing = [n for n in required if not getattr(self, n)]
        if missing:
            raise ValueError(
                f"auth_flow {self.auth_flow} needs {', '.join(missing)} (secrets as ${{ENV}} references)"
            )
        return self


class ReceivableVoucher(Strict):
    """Optional receivable voucher posted with the outbound (off by default: finance decides)."""

    enabled: bool = False
    voucher_group: str = Field("记", description="凭证字 (voucher word).")
    debit_account: str = Field("1122", description="应收账款 account number.")
    credit_account: str = Field("6001", description="主营业务收入 account number.")
    tax_account: str = Field("22210102", description="应交税费-销项税额 account number.")


class InvoicedStatesStream(Strict):
    """Push: an invoiced (已开票) order becomes a sales outbound carrying the invoice number and amounts."""

    direction: Literal["push"] = "push"
    enabled: bool = True
    reads: Literal["invoice"] = Field("invoice", description="Canonical entity read from the store.")
    writes: Literal["salesdelivery", "SAL_OUTSTOCK"] = Field(description="ERP document written.")
    bill_number_pattern: str = Field(
        "HUB-{invoice_number}",
        description="Deterministic FBillNo built from invoice columns; it is how retries find a sent bill.",
    )
    stock_number: str | None = Field(
        None, description="Warehouse (FDCStockID by its number) the outbound ships from; KIS requires one."
    )
    receivable_voucher: ReceivableVoucher = Field(
        default_factory=lambda: ReceivableVoucher.model_validate({})
    )
    mapping: MappingRef
    validation: ValidationRef
    cursor: Cursor
    source_timezone: TimeZoneName = Field(SHANGHAI, description="Zone of the ERP's naive times.")
    batch_size: int = Field(50, ge=1, le=500)
    senders: int = Field(
        4,
        ge=1,
        le=10,
        description="Creates in flight at once (KIS has no batch create; 2-10 client threads is the "
        "community's guidance, ERP-APIS §3.9). 1 sends strictly one after another.",
    )

    @field_validator("bill_number_pattern")
    @classmethod
    def _pattern_columns(cls, value: str) -> str:
        names = template_fields(value)
        if not names:
            raise ValueError("bill_number_pattern needs a placeholder such as {invoice_number}")
        check_columns("invoice", names, "bill_number_pattern")
        return value

    @model_validator(mode="after")
    def _cursor_column(self) -> InvoicedStatesStream:
        check_columns("invoice", [self.cursor.field], "cursor.field")
        return self


class InventoryPullStream(Strict):
    """Pull: on-hand stock per material, warehouse and batch (即时库存)."""

    direction: Literal["pull"] = "pull"
    enabled: bool = True
    reads: NonEmpty = Field(description="ERP object read, e.g. ICInventory/List or STK_Inventory.")
    writes: Literal["inventory"] = "inventory"
    mapping: MappingRef
    validation: ValidationRef
    schedule: Schedule | None = Field(None, description="Overrides the connection schedule (e.g. hourly).")
    source_timezone: TimeZoneName = SHANGHAI
    max_shrink: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Refuse a snapshot whose row count fell by more than this share against the one "
        "in force.",
    )


class KisStreams(Strict):
    """The KIS streams; leave one out to disable it."""

    invoiced_states: InvoicedStatesStream | None = None
    inventory: InventoryPullStream | None = None


class KingdeeKisTemplate(TemplateBase):
    """Kingdee KIS 云 through the koas gateway (api.kingdee.com)."""

    kind: Literal["kingdee_kis"]
    connection: KisConnection
    streams: KisStreams = Field(default_factory=lambda: KisStreams())


class K3CloudConnection(Strict):
    """K/3 Cloud WebAPI login (ERP-APIS §3.3)."""

    base_url: HttpUrl = Field(description="e.g. https://tenant.ik3cloud.com/K3Cloud")
    acct_id: NonEmpty = Field(description="Data centre (账套) id.")
    username: NonEmpty
    auth: Literal["password", "app_secret", "sign", "signed_headers"] = "app_secret"
    password: SecretRef | None = None
    app_id: str | None = None
    app_secret: SecretRef | None = None
    lcid: int = 2052
    org_number: str | None = None
    connect_timeout: float = Field(5.0, gt=0, le=120)
    read_timeout: float = Field(120.0, gt=0, le=600)
    page_size: int = Field(
        2000, ge=1, le=10_000, description="Limit per ExecuteBillQuery (server cap 10000)."
    )
    batch_size: int = Field(20, ge=1, le=100, description="Packages per BatchSave.")
    ca_bundle: str | None = None

    @model_validator(mode="after")
    def _auth_fields(self) -> K3CloudConnection:
        if self.auth == "password" and self.password is None:
            raise ValueError("auth password needs password (an environment reference)")
        if self.auth in ("app_secret", "sign", "signed_headers") and (
            self.app_id is None or self.app_secret is None
        ):
            raise ValueError(f"auth {self.auth} needs app_id and app_secret")
        return self


class K3CloudStreams(Strict):
    """The K/3 Cloud streams."""

    invoiced_states: InvoicedStatesStream | None = None
    inventory: InventoryPullStream | None = None


class KingdeeK3CloudTemplate(TemplateBase):
    """Kingdee K/3 Cloud (云星空) WebAPI, on-premises or ik3cloud SaaS."""

    kind: Literal["kingdee_k3cloud"]
    connection: K3CloudConnection
    streams: K3CloudStreams = Field(default_factory=lambda: K3CloudStreams())
