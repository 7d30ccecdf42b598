"""All canonical-store models; importing this package registers them on ``Base.metadata``."""

from crm_core.models.base import Base
from crm_core.models.catalog import Product, Warehouse
from crm_core.models.customers import Contact, Customer, Interaction
from crm_core.models.inventory import DeliveryPromise, IncomingSupply, InventoryPosition, InventorySnapshot
from crm_core.models.invoices import Invoice, InvoiceLine
from crm_core.models.sales import (
    ALL_STAGES,
    LOST,
    STAGES,
    Opportunity,
    OpportunityStageChange,
    Quote,
    QuoteLine,
    QuoteVersion,
    SalesOrder,
    SalesOrderLine,
)
from crm_core.models.sync import (
    DeadLetter,
    DeliveryQueueItem,
    ExternalBinding,
    NumberSequence,
    OutboxEvent,
    ProcessedFile,
    QuarantinedRecord,
    ReconciliationResult,
    ReconciliationRun,
    SyncCursor,
    SyncLock,
)

__all__ = [
    "ALL_STAGES",
    "LOST",
    "STAGES",
    "Base",
    "Contact",
    "Customer",
    "DeadLetter",
    "DeliveryPromise",
    "DeliveryQueueItem",
    "ExternalBinding",
    "IncomingSupply",
    "Interaction",
    "InventoryPosition",
    "InventorySnapshot",
    "Invoice",
    "InvoiceLine",
    "NumberSequence",
    "Opportunity",
    "OpportunityStageChange",
    "OutboxEvent",
    "ProcessedFile",
    "Product",
    "QuarantinedRecord",
    "Quote",
    "QuoteLine",
    "QuoteVersion",
    "ReconciliationResult",
    "ReconciliationRun",
    "SalesOrder",
    "SalesOrderLine",
    "SyncCursor",
    "SyncLock",
    "Warehouse",
]
