"""Centra connector: the Integration API (GraphQL) and Order API (REST) client, its budget and
error types, wire models, and webhook signature checks. Nothing outside this package speaks
Centra's wire format."""

from __future__ import annotations

from typing import TYPE_CHECKING

from returnbridge.connectors.centra.errors import (
    CentraAuthError,
    CentraError,
    CentraInDoubt,
    CentraQueryError,
    CentraRateLimited,
    CentraRejected,
    CentraTransient,
    UserError,
    parse_retry_after,
)
from returnbridge.connectors.centra.inputs import (
    FROM_SHIPMENT,
    CreatedFromOrigin,
    DateRange,
    ManualRefund,
    OrderCreateInput,
    OrderFilter,
    OrderProduct,
    ReturnCost,
    ReturnFilter,
    ReturnLineInput,
    ReturnStockPolicy,
    ReturnUpdateInput,
    SendToWarehouse,
    StockDelta,
    StockLevel,
)
from returnbridge.connectors.centra.models import (
    Address,
    Applied,
    Customer,
    Market,
    Money,
    Order,
    OrderLine,
    OrderTotals,
    Page,
    PaymentEntry,
    PaymentEntryStatus,
    PaymentEntryType,
    ProductSize,
    RateLimit,
    RefundResult,
    RestReturn,
    Return,
    ReturnLine,
    ReturnTotals,
    ReturnUpdateResult,
    Shipment,
    ShipmentLine,
    StockChange,
    StockChangeLine,
    StockTotals,
    Warehouse,
)
from returnbridge.connectors.centra.webhooks import (
    SIGNATURE_HEADER,
    WebhookSignatureError,
    decode_payload,
    signature_header,
    verify_signature,
)
from returnbridge.lazy import lazy_exports

if TYPE_CHECKING:
    from returnbridge.connectors.centra.client import CentraClient
    from returnbridge.connectors.centra.governor import (
        Budget,
        Governor,
    )

# Imported on first use (PEP 562): these modules do I/O (HTTP, databases) and importing a
# pure module of this package (models, inputs, records ...) must not load them, so that
# `core/` stays free of I/O at run time too (docs/architecture.md#rooms-and-imports).
_LAZY: dict[str, str] = {
    "CentraClient": "returnbridge.connectors.centra.client",
    "Budget": "returnbridge.connectors.centra.governor",
    "Governor": "returnbridge.connectors.centra.governor",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "FROM_SHIPMENT",
    "SIGNATURE_HEADER",
    "Address",
    "Applied",
    "Budget",
    "CentraAuthError",
    "CentraClient",
    "CentraError",
    "CentraInDoubt",
    "CentraQueryError",
    "CentraRateLimited",
    "CentraRejected",
    "CentraTransient",
    "CreatedFromOrigin",
    "Customer",
    "DateRange",
    "Governor",
    "ManualRefund",
    "Market",
    "Money",
    "Order",
    "OrderCreateInput",
    "OrderFilter",
    "OrderLine",
    "OrderProduct",
    "OrderTotals",
    "Page",
    "PaymentEntry",
    "PaymentEntryStatus",
    "PaymentEntryType",
    "ProductSize",
    "RateLimit",
    "RefundResult",
    "RestReturn",
    "Return",
    "ReturnCost",
    "ReturnFilter",
    "ReturnLine",
    "ReturnLineInput",
    "ReturnStockPolicy",
    "ReturnTotals",
    "ReturnUpdateInput",
    "ReturnUpdateResult",
    "SendToWarehouse",
    "Shipment",
    "ShipmentLine",
    "StockChange",
    "StockChangeLine",
    "StockDelta",
    "StockLevel",
    "StockTotals",
    "UserError",
    "Warehouse",
    "WebhookSignatureError",
    "decode_payload",
    "parse_retry_after",
    "signature_header",
    "verify_signature",
]
