"""Reveni connector: the merchant API client, its error types, wire models, the incremental
listing (`changed_since`) and webhook helpers. Nothing outside this package speaks Reveni's wire
format; every inferred detail of it lives in `ReveniInferred`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from returnbridge.connectors.reveni.encoding import (
    format_filter_value,
    normalise_return,
    parse_filter_value,
    status_from_wire,
    status_name,
    status_to_wire,
    transaction_type_to_wire,
)
from returnbridge.connectors.reveni.errors import (
    ReveniAuthError,
    ReveniError,
    ReveniInDoubt,
    ReveniNotFound,
    ReveniQueryError,
    ReveniRateLimited,
    ReveniRejected,
    ReveniTransient,
)
from returnbridge.connectors.reveni.inferred import (
    DEFAULT_REVENI_INFERRED,
    ReveniBilling,
    ReveniInferred,
)
from returnbridge.connectors.reveni.models import (
    Customer,
    Delivery,
    ExchangeOrder,
    ExchangeRequest,
    Invoice,
    InvoiceLine,
    Merchant,
    OrderRef,
    Refund,
    Return,
    ReturnItem,
    Summary,
    WebhookData,
    WebhookEvent,
    WebhookSubscription,
    wire_context,
)
from returnbridge.connectors.reveni.statuses import (
    ReturnStatus,
    StatusMoveError,
)
from returnbridge.connectors.reveni.webhooks import (
    WebhookError,
    parse_envelope,
    sign_body,
    verify_signature,
)
from returnbridge.lazy import lazy_exports

if TYPE_CHECKING:
    from returnbridge.connectors.reveni.client import (
        ItemDecision,
        ReveniClient,
    )
    from returnbridge.connectors.reveni.pagination import (
        ChangedReturns,
        ReturnPage,
        changed_since,
    )

# Imported on first use (PEP 562): these modules do I/O (HTTP, databases) and importing a
# pure module of this package (models, inputs, records ...) must not load them, so that
# `core/` stays free of I/O at run time too (docs/architecture.md#rooms-and-imports).
_LAZY: dict[str, str] = {
    "ItemDecision": "returnbridge.connectors.reveni.client",
    "ReveniClient": "returnbridge.connectors.reveni.client",
    "ChangedReturns": "returnbridge.connectors.reveni.pagination",
    "ReturnPage": "returnbridge.connectors.reveni.pagination",
    "changed_since": "returnbridge.connectors.reveni.pagination",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "DEFAULT_REVENI_INFERRED",
    "ChangedReturns",
    "Customer",
    "Delivery",
    "ExchangeOrder",
    "ExchangeRequest",
    "Invoice",
    "InvoiceLine",
    "ItemDecision",
    "Merchant",
    "OrderRef",
    "Refund",
    "Return",
    "ReturnItem",
    "ReturnPage",
    "ReturnStatus",
    "ReveniAuthError",
    "ReveniBilling",
    "ReveniClient",
    "ReveniError",
    "ReveniInDoubt",
    "ReveniInferred",
    "ReveniNotFound",
    "ReveniQueryError",
    "ReveniRateLimited",
    "ReveniRejected",
    "ReveniTransient",
    "StatusMoveError",
    "Summary",
    "WebhookData",
    "WebhookError",
    "WebhookEvent",
    "WebhookSubscription",
    "changed_since",
    "format_filter_value",
    "normalise_return",
    "parse_envelope",
    "parse_filter_value",
    "sign_body",
    "status_from_wire",
    "status_name",
    "status_to_wire",
    "transaction_type_to_wire",
    "verify_signature",
    "wire_context",
]
