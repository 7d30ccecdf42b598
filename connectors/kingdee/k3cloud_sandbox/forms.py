"""Form metadata of the sandbox: which fields each form has, their kinds, labels and rules.

Field keys are matched case-insensitively (``FCUSTOMERID`` = ``FCustomerID``), as the real server does.
Sub-head objects (``SubHeadEntity``, ``FsubHeadFinc``) are flattened into the head: queries address their
fields directly, as in K/3 Cloud.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldDef:
    """One field. ``kind``: text, date, decimal, int, bool, ref (base data by number), lot, computed."""

    key: str
    kind: str
    label: str
    target: str | None = None
    required: bool = False
    default: str | None = None


@dataclass(frozen=True)
class EntityDef:
    """An entry table (单据体) such as ``FEntity``."""

    key: str
    label: str
    fields: tuple[FieldDef, ...]
    required: bool = False

    def field(self, key: str) -> FieldDef | None:
        """Field by key, case-insensitively."""
        lowered = key.lower()
        return next((f for f in self.fields if f.key.lower() == lowered), None)

    @property
    def view_name(self) -> str:
        """Name of the entry array in a ``View`` reply (the key without its leading ``F``)."""
        return self.key[1:] if self.key.startswith("F") else self.key


@dataclass(frozen=True)
class FormDef:
    """One form (业务对象)."""

    form_id: str
    name: str
    kind: str  # "bill" | "base" | "derived"
    number_field: str
    head: tuple[FieldDef, ...]
    entities: tuple[EntityDef, ...] = ()
    sub_heads: tuple[str, ...] = ()
    pk_alias: str = "FID"
    number_prefix: str = ""
    default_bill_type: str | None = None

    def head_field(self, key: str) -> FieldDef | None:
        """Head (or flattened sub-head) field by key, case-insensitively."""
        lowered = key.lower()
        return next((f for f in self.head if f.key.lower() == lowered), None)

    def entity(self, key: str) -> EntityDef | None:
        """Entity by key, case-insensitively."""
        lowered = key.lower()
        return next((e for e in self.entities if e.key.lower() == lowered), None)

    def sub_head(self, key: str) -> str | None:
        """Canonical sub-head name for ``key`` or None."""
        lowered = key.lower()
        return next((s for s in self.sub_heads if s.lower() == lowered), None)

    def entry_field(self, key: str) -> tuple[EntityDef, FieldDef] | None:
        """(entity, field) for an entry field key."""
        for entity in self.entities:
            found = entity.field(key)
            if found is not None:
                return entity, found
        return None


def _ref(key: str, label: str, target: str, required: bool = False, default: str | None = None) -> FieldDef:
    return FieldDef(key, "ref", label, target=target, required=required, default=default)


def _base(
    form_id: str, name: str, pk_alias: str, *extra: FieldDef, sub_heads: tuple[str, ...] = ()
) -> FormDef:
    head = (
        FieldDef("FNumber", "text", "编码", required=True),
        FieldDef("FName", "text", "名称", required=True),
        FieldDef("FForbidStatus", "text", "禁用状态", default="A"),
        _ref("FCreateOrgId", "创建组织", "ORG_Organizations", default="100"),
        _ref("FUseOrgId", "使用组织", "ORG_Organizations", default="100"),
        *extra,
    )
    return FormDef(form_id, name, "base", "FNumber", head, sub_heads=sub_heads, pk_alias=pk_alias)


ORG = "ORG_Organizations"

FORMS: dict[str, FormDef] = {}


def _register(*forms: FormDef) -> None:
    for form in forms:
        FORMS[form.form_id.lower()] = form


_register(
    FormDef(
        ORG,
        "组织机构",
        "base",
        "FNumber",
        (
            FieldDef("FNumber", "text", "编码", required=True),
            FieldDef("FName", "text", "名称", required=True),
            FieldDef("FForbidStatus", "text", "禁用状态", default="A"),
        ),
        pk_alias="FOrgID",
    ),
    _base("BD_UNIT", "计量单位", "FUNITID"),
    _base("BD_Currency", "币别", "FCURRENCYID", FieldDef("FCode", "text", "货币代码")),
    _base("BD_StockStatus", "库存状态", "FStockStatusId"),
    _base("BOS_BillType", "单据类型", "FBILLTYPEID", FieldDef("FBillFormID", "text", "单据")),
    _base(
        "BD_Customer",
        "客户",
        "FCUSTID",
        FieldDef("FShortName", "text", "简称"),
        FieldDef("FTaxRegisterCode", "text", "纳税登记号"),
        _ref("FTRADINGCURRID", "结算币别", "BD_Currency"),
    ),
    _base(
        "BD_MATERIAL",
        "物料",
        "FMATERIALID",
        FieldDef("FSpecification", "text", "规格型号"),
        FieldDef("FErpClsID", "text", "物料属性", default="1"),
        _ref("FBaseUnitId", "基本单位", "BD_UNIT", default="Pcs"),
        sub_heads=("SubHeadEntity",),  # the base unit travels in a sub-head object on the wire
    ),
    _base("BD_STOCK", "仓库", "FSTOCKID", FieldDef("FStockProperty", "text", "仓库属性", default="1")),
)

_register(
    FormDef(
        "SAL_OUTSTOCK",
        "销售出库单",
        "bill",
        "FBillNo",
        (
            _ref("FBillTypeID", "单据类型", "BOS_BillType", default="XSCKD01_SYS"),
            FieldDef("FBillNo", "text", "单据编号"),
            FieldDef("FDate", "date", "日期", required=True),
            _ref("FSaleOrgId", "销售组织", ORG, required=True),
            _ref("FStockOrgId", "发货组织", ORG, required=True),
            _ref("FCustomerID", "客户", "BD_Customer", required=True),
            _ref("FReceiverID", "收货方", "BD_Customer"),
            _ref("FSettleID", "结算方", "BD_Customer"),
            _ref("FPayerID", "付款方", "BD_Customer"),
            FieldDef("FOwnerTypeIdHead", "text", "货主类型", default="BD_OwnerOrg"),
            FieldDef("FNote", "text", "备注"),
            _ref("FSettleCurrID", "结算币别", "BD_Currency", default="PRE001"),
            _ref("FLocalCurrID", "本位币", "BD_Currency", default="PRE001"),
            FieldDef("FExchangeTypeID", "lot", "汇率类型"),
        ),
        entities=(
            EntityDef(
                "FEntity",
                "明细信息",
                (
                    _ref("FMaterialId", "物料编码", "BD_MATERIAL", required=True),
                    _ref("FUnitID", "库存单位", "BD_UNIT", default="Pcs"),
                    FieldDef("FRealQty", "decimal", "实发数量", required=True),
                    FieldDef("FTaxPrice", "decimal", "含税单价"),
                    FieldDef("FEntryTaxRate", "decimal", "税率%"),
                    _ref("FStockID", "仓库", "BD_STOCK", required=True),
                    _ref("FStockStatusId", "库存状态", "BD_StockStatus", default="KCZT01_SYS"),
                    FieldDef("FLot", "lot", "批号"),
                    FieldDef("FIsFree", "bool", "是否赠品"),
                    FieldDef("FOwnerTypeID", "text", "货主类型", default="BD_OwnerOrg"),
                    _ref("FOwnerID", "货主", ORG),
                    FieldDef("FEntrynote", "text", "备注"),
                    FieldDef("FAllAmount", "computed", "价税合计"),
                    FieldDef("FARJOINQTY", "computed", "关联应收数量"),
                ),
                required=True,
            ),
        ),
        sub_heads=("SubHeadEntity",),
        number_prefix="XSCKD",
        default_bill_type="XSCKD01_SYS",
    ),
    FormDef(
        "AR_receivable",
        "应收单",
        "bill",
        "FBillNo",
        (
            _ref("FBillTypeID", "单据类型", "BOS_BillType", default="YSD01_SYS"),
            FieldDef("FBillNo", "text", "单据编号"),
            FieldDef("FDATE", "date", "业务日期", required=True),
            _ref("FCUSTOMERID", "客户", "BD_Customer", required=True),
            _ref("FCURRENCYID", "币别", "BD_Currency", default="PRE001"),
            _ref("FSETTLEORGID", "结算组织", ORG, required=True),
            _ref("FPAYORGID", "收款组织", ORG),
            _ref("FSALEORGID", "销售组织", ORG),
            FieldDef("FISTAX", "bool", "按含税单价录入"),
            FieldDef("FISPRICEEXCLUDETAX", "bool", "价外税"),
            FieldDef("FSetAccountType", "text", "立账类型", default="1"),
            FieldDef("FBUSINESSTYPE", "text", "业务类型"),
            FieldDef("FISINVOICEARLIER", "bool", "先到票后入库"),
            _ref("FMAINBOOKSTDCURRID", "本位币", "BD_Currency"),
            FieldDef("FEXCHANGETYPE", "lot", "汇率类型"),
            FieldDef("FExchangeRate", "decimal", "汇率"),
            FieldDef("FALLAMOUNTFOR", "computed", "价税合计"),
        ),
        entities=(
            EntityDef(
                "FEntityDetail",
                "明细",
                (
                    _ref("FMATERIALID", "物料编码", "BD_MATERIAL", required=True),
                    FieldDef("FPriceQty", "decimal", "计价数量", required=True),
                    FieldDef("FTaxPrice", "decimal", "含税单价"),
                    FieldDef("FPrice", "decimal", "单价"),
                    FieldDef("FEntryTaxRate", "decimal", "税率%"),
                    FieldDef("FNoTaxAmountFor_D", "decimal", "不含税金额"),
                    FieldDef("FALLAMOUNTFOR_D", "computed", "价税合计"),
                    FieldDef("FNOINVOICEQTY", "computed", "未开票数量"),
                    FieldDef("FNOINVOICEAMOUNT", "computed", "未开票金额"),
                    FieldDef("FSRCBILLNO", "text", "源单编号"),
                    FieldDef("FSRCROWID", "int", "源单行内码"),
                ),
                required=True,
            ),
            EntityDef(
                "FEntityPlan",
                "收款计划",
                (FieldDef("FPAYRATE", "decimal", "应收比例%"), FieldDef("FENDDATE", "date", "到期日")),
            ),
        ),
        sub_heads=("FsubHeadFinc",),
        number_prefix="AR",
        default_bill_type="YSD01_SYS",
    ),
)


def _invoice(form_id: str, name: str, entity: str, prefix: str, bill_type: str) -> FormDef:
    return FormDef(
        form_id,
        name,
        "bill",
        "FBillNo",
        (
            _ref("FBillTypeID", "单据类型", "BOS_BillType", default=bill_type),
            FieldDef("FBillNo", "text", "单据编号"),
            FieldDef("FDATE", "date", "业务日期", required=True),
            _ref("FCUSTOMERID", "客户", "BD_Customer", required=True),
            _ref("FSETTLEORGID", "结算组织", ORG, required=True),
            _ref("FCURRENCYID", "币别", "BD_Currency", default="PRE001"),
            FieldDef("FINVOICENO", "text", "发票号"),
        ),
        entities=(
            EntityDef(
                entity,
                "明细",
                (
                    _ref("FMATERIALID", "物料编码", "BD_MATERIAL", required=True),
                    FieldDef("FPRICEQTY", "decimal", "计价数量", required=True),
                    FieldDef("FAUXTAXPRICE", "decimal", "含税单价"),
                    FieldDef("FTAXRATE", "decimal", "税率%"),
                    FieldDef("FALLAMOUNTFOR", "decimal", "价税合计"),
                    FieldDef("FSRCBILLNO", "text", "源单编号"),
                    FieldDef("FSRCROWID", "int", "源单行内码"),
                ),
                required=True,
            ),
        ),
        number_prefix=prefix,
        default_bill_type=bill_type,
    )


_register(
    _invoice("IV_SALESIC", "销售增值税专用发票", "FSALESICENTRY", "XSZYFP", "XSZYFP01_SYS"),
    _invoice("IV_SALESOC", "销售普通发票", "FSALESOCENTRY", "XSPTFP", "XSPTFP01_SYS"),
    FormDef(
        "STK_Inventory",
        "即时库存",
        "derived",
        "FID",
        (
            _ref("FMaterialId", "物料", "BD_MATERIAL"),
            _ref("FStockId", "仓库", "BD_STOCK"),
            _ref("FStockOrgId", "库存组织", ORG),
            FieldDef("FLot", "lot", "批号"),
            _ref("FStockStatusId", "库存状态", "BD_StockStatus"),
            _ref("FBaseUnitId", "基本单位", "BD_UNIT"),
            FieldDef("FBaseQty", "decimal", "库存量(基本单位)"),
            FieldDef("FQty", "decimal", "库存量(库存单位)"),
            FieldDef("FStockName", "text", "仓库名称"),
        ),
    ),
)


@dataclass(frozen=True)
class PushRule:
    """A conversion rule (转换规则) of ``Push``."""

    rule_id: str
    source: str
    target: str
    default: bool = True
    extra: dict[str, str] = field(default_factory=dict)


PUSH_RULES: tuple[PushRule, ...] = (
    PushRule("AR_OutStockToReceivableMap", "SAL_OUTSTOCK", "AR_receivable"),
    PushRule("IV_ReceivableToSalesIC_Entry", "AR_receivable", "IV_SALESIC"),
    PushRule("IV_ReceivableToSalesOC_Entry", "AR_receivable", "IV_SALESOC"),
)


def form(form_id: str) -> FormDef | None:
    """The form with this id (case-insensitive) or None."""
    return FORMS.get((form_id or "").lower())
