"""Deterministic base data: organisations, customers, materials, warehouses, stock, users and an app.

Everything derives from the seed, so two sandboxes started with the same seed hold the same data and
issue the same session ids and bill numbers.
"""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass
from decimal import Decimal

DEFAULT_ACCT_ID = "64f1a2b3c4d5e6"
DEFAULT_USER = "api_user"
DEFAULT_PASSWORD = "Sandbox#2052"  # noqa: S105 - the sandbox's own login, protects nothing
DEFAULT_CLIENT_ID = "230001"

_CUSTOMER_NAMES = (
    "苏州精工机械有限公司",
    "宁波恒达模具厂",
    "东莞联合电子有限公司",
    "佛山宏图五金制品厂",
    "温州瑞丰阀门有限公司",
    "无锡新泰纺织机械厂",
    "台州永兴汽配有限公司",
    "常州华锐电机有限公司",
    "青岛海晟橡胶制品厂",
    "厦门鼎盛包装材料公司",
)
_MATERIALS = (
    ("轴承", "6204-2RS"),
    ("齿轮", "M2 Z40"),
    ("法兰", "DN50 PN16"),
    ("螺栓", "M12x60 8.8级"),
    ("密封圈", "NBR 50x3"),
    ("电机", "YE3-90L-4 1.5kW"),
    ("阀门", "Q41F-16C DN25"),
    ("链条", "08B-1"),
)


@dataclass(frozen=True)
class Credentials:
    """Logins the sandbox accepts (printed by the CLI; they protect nothing real)."""

    acct_id: str
    username: str
    password: str
    app_id: str
    app_secret: str


def credentials_for(seed: int) -> Credentials:
    """The deterministic users and app registration of ``seed``."""
    digest = hashlib.sha256(f"k3cloud-sandbox:{seed}".encode()).digest()
    # An AppId is "<clientId>_<32 base64 chars>" (24 random bytes), like the ones Kingdee issues.
    blob = base64.b64encode(digest[:24]).decode("ascii")
    app_secret = hashlib.sha256(digest).hexdigest()[:32]
    return Credentials(
        DEFAULT_ACCT_ID, DEFAULT_USER, DEFAULT_PASSWORD, f"{DEFAULT_CLIENT_ID}_{blob}", app_secret
    )


@dataclass(frozen=True)
class BaseRecord:
    """One base-data record to create."""

    form_id: str
    number: str
    name: str
    extra: tuple[tuple[str, str], ...] = ()
    forbidden: bool = False


def base_records(seed: int) -> list[BaseRecord]:
    """The base data of ``seed`` in creation order."""
    rng = random.Random(seed)
    records = [
        BaseRecord("ORG_Organizations", "100", "总公司"),
        BaseRecord("ORG_Organizations", "101", "华东工厂"),
        BaseRecord("BD_UNIT", "Pcs", "个"),
        BaseRecord("BD_UNIT", "kg", "千克"),
        BaseRecord("BD_Currency", "PRE001", "人民币", (("FCode", "CNY"),)),
        BaseRecord("BD_Currency", "PRE007", "美元", (("FCode", "USD"),)),
        BaseRecord("BD_StockStatus", "KCZT01_SYS", "可用"),
        BaseRecord("BOS_BillType", "XSCKD01_SYS", "标准销售出库单", (("FBillFormID", "SAL_OUTSTOCK"),)),
        BaseRecord("BOS_BillType", "YSD01_SYS", "标准应收单", (("FBillFormID", "AR_receivable"),)),
        BaseRecord("BOS_BillType", "XSZYFP01_SYS", "销售增值税专用发票", (("FBillFormID", "IV_SALESIC"),)),
        BaseRecord("BOS_BillType", "XSPTFP01_SYS", "销售普通发票", (("FBillFormID", "IV_SALESOC"),)),
        BaseRecord("BD_STOCK", "CK001", "成品仓"),
        BaseRecord("BD_STOCK", "CK002", "原料仓"),
    ]
    names = list(_CUSTOMER_NAMES)
    rng.shuffle(names)
    for i, name in enumerate(names, start=1):
        records.append(BaseRecord("BD_Customer", f"C{i:03d}", name, (("FShortName", name[:4]),)))
    records.append(BaseRecord("BD_Customer", "C099", "已停用客户有限公司", forbidden=True))
    for i, (name, spec) in enumerate(_MATERIALS, start=1):
        records.append(BaseRecord("BD_MATERIAL", f"M{i:03d}", name, (("FSpecification", spec),)))
    return records


def opening_stock(seed: int) -> list[tuple[str, str, str, str, Decimal]]:
    """(material, stock, lot, org, qty) rows: every material in CK001, half of them in CK002."""
    rng = random.Random(seed * 7919 + 1)
    rows = []
    for i in range(1, len(_MATERIALS) + 1):
        rows.append((f"M{i:03d}", "CK001", "", "100", Decimal(rng.randint(50, 500))))
        if i % 2 == 0:
            rows.append((f"M{i:03d}", "CK002", "", "100", Decimal(rng.randint(5, 40))))
    return rows
