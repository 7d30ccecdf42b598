"""Default base data and credentials of the KIS sandbox (a small hardware-parts manufacturer)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class SandboxCredentials:
    """What the sandbox accepts. Every value can be set by flag or ``KIS_SANDBOX_<FIELD>`` env var."""

    client_id: str = "205022"
    client_secret: str = "kis-sandbox-client-secret"  # noqa: S105 - sandbox-only value
    auth_code: str = "kis-sandbox-oauth-code"
    account_number: str = "KIS001"
    app_key: str = "kis-sandbox-app-key"
    app_secret: str = "kis-sandbox-app-secret"  # noqa: S105 - sandbox-only value
    outer_instance_id: str = "kis-sandbox-instance"

    @classmethod
    def from_env(cls, **overrides: str | None) -> SandboxCredentials:
        """Defaults, then ``KIS_SANDBOX_*`` env vars, then non-empty ``overrides``."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            env = os.environ.get(f"KIS_SANDBOX_{f.name.upper()}")
            if env:
                values[f.name] = env
            if overrides.get(f.name):
                values[f.name] = overrides[f.name]
        return cls(**values)


DEFAULT_SEED: dict[str, list[dict[str, Any]]] = {
    "units": [
        {"number": "PCS", "name": "个"},
        {"number": "SET", "name": "套"},
        {"number": "KG", "name": "千克"},
    ],
    "customers": [
        {"number": "C001", "name": "上海精工机械有限公司", "tax_no": "91310000MA1FL0YB2X"},
        {"number": "C002", "name": "苏州恒达五金制品厂"},
        {"number": "C003", "name": "宁波东方汽配有限公司"},
        {"number": "C004", "name": "无锡华盛医疗器械有限公司"},
    ],
    "materials": [
        {"number": "M-BOLT-M8", "name": "六角螺栓", "model": "M8x30 8.8级 镀锌", "unit": "PCS"},
        {"number": "M-BOLT-M10", "name": "六角螺栓", "model": "M10x40 8.8级 镀锌", "unit": "PCS"},
        {"number": "M-BRKT-L01", "name": "L型支架", "model": "80x60x3 Q235", "unit": "PCS"},
        {"number": "M-BRKT-U02", "name": "U型支架", "model": "120x50x4 Q235", "unit": "SET"},
    ],
    "stocks": [
        {"number": "WH01", "name": "成品仓"},
        {"number": "WH02", "name": "半成品仓"},
    ],
    "accounts": [
        {"number": "1001", "name": "库存现金"},
        {"number": "1002", "name": "银行存款"},
        {"number": "1122", "name": "应收账款"},
        {"number": "2221.01", "name": "应交税费-应交增值税(销项税额)"},
        {"number": "22210102", "name": "应交税费-应交增值税-销项税额"},  # the template default
        {"number": "6001", "name": "主营业务收入"},
    ],
    "inventory": [
        {"material": "M-BOLT-M8", "stock": "WH01", "batch": "", "qty": "5000"},
        {"material": "M-BOLT-M8", "stock": "WH02", "batch": "B2025-01", "qty": "800"},
        {"material": "M-BOLT-M10", "stock": "WH01", "batch": "", "qty": "3000"},
        {"material": "M-BRKT-L01", "stock": "WH01", "batch": "", "qty": "1200"},
        {"material": "M-BRKT-U02", "stock": "WH01", "batch": "", "qty": "300"},
    ],
}
