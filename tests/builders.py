"""Small builders of wire models for pure-core tests (no HTTP): Centra orders and returns,
Reveni returns. They go through the real pydantic models, so a builder cannot make an object the
connectors would refuse."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from returnbridge.connectors.centra.models import Order
from returnbridge.connectors.centra.models import Return as CentraReturn
from returnbridge.connectors.reveni.models import Return as ReveniReturn

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def _money(value: str | Decimal, currency: str) -> dict[str, Any]:
    return {"value": str(value), "currency": currency, "conversionRate": "1"}


def centra_order(
    number: int,
    lines: Sequence[tuple[str, int] | tuple[str, int, str]],
    *,
    status: str = "SHIPPED",
    currency: str = "EUR",
    shipments: Sequence[tuple[bool, Sequence[tuple[int, int]]]] | None = None,
) -> Order:
    """An order with `lines` as (sku, quantity[, unit price]); `shipments` as (shipped,
    [(1-based line, quantity)]); default: everything shipped in one shipment."""
    line_rows = []
    for i, spec in enumerate(lines, start=1):
        sku, qty = spec[0], spec[1]
        price = spec[2] if len(spec) > 2 else "10.00"  # type: ignore[misc]
        line_rows.append(
            {
                "id": number * 100 + i,
                "quantity": qty,
                "cancelledQuantity": 0,
                "shippedQuantity": 0,
                "returnedQuantity": 0,
                "unitPrice": _money(price, currency),
                "unitOriginalPrice": _money(price, currency),
                "discountPercent": "0",
                "taxPercent": "25",
                "lineValue": _money(Decimal(price) * qty, currency),
                "productName": sku,
                "productVariantName": sku,
                "productVariantId": 1,
                "productSize": {"id": 1, "SKU": sku},
            }
        )
    if shipments is None:
        shipments = [(True, [(i, spec[1]) for i, spec in enumerate(lines, start=1)])]
    shipment_rows = [
        {
            "id": number * 10 + s,
            "number": f"{number}-{s}",
            "createdAt": T0.isoformat(),
            "shippedAt": T0.isoformat() if shipped else None,
            "isGoodToGo": True,
            "isPaid": True,
            "isShipped": shipped,
            "isCaptured": shipped,
            "lines": [
                {
                    "id": number * 1000 + s * 100 + li,
                    "quantity": q,
                    "orderLineId": number * 100 + li,
                }
                for li, q in slines
            ],
        }
        for s, (shipped, slines) in enumerate(shipments, start=1)
    ]
    zero = _money("0", currency)
    return Order.model_validate(
        {
            "id": f"hash{number}",
            "number": number,
            "status": status,
            "isOnHold": False,
            "isInternal": False,
            "createdAt": T0.isoformat(),
            "orderDate": T0.isoformat(),
            "store": {"id": 1, "type": "DIRECT_TO_CONSUMER"},
            "grandTotal": zero,
            "totals": {
                "shipping": zero,
                "handling": zero,
                "taxIncluded": zero,
                "taxDeducted": zero,
                "taxAdded": zero,
                "quantity": 0,
            },
            "lines": line_rows,
            "shipments": shipment_rows,
            "paymentHistory": [],
        }
    )


def centra_return(
    order: Order, lines: Sequence[tuple[str, int]], *, external_id: str | None = None, rid: int = 1
) -> CentraReturn:
    """A Centra return on `order` of (sku, quantity), taken from its first shipment's lines."""
    shipment = order.shipments[0]
    rows = []
    for n, (sku, qty) in enumerate(lines, start=1):
        sline = next(
            sl
            for sl in shipment.lines
            if (line := order.line(sl.order_line_id)) and line.sku == sku
        )
        rows.append(
            {
                "id": rid * 100 + n,
                "quantity": qty,
                "shipmentLineId": sline.id,
                "orderLineId": sline.order_line_id,
                "sku": sku,
            }
        )
    zero = _money("0", order.grand_total.currency)
    return CentraReturn.model_validate(
        {
            "id": rid,
            "status": "PENDING",
            "createdAt": T0.isoformat(),
            "externalId": external_id,
            "returnedToStock": False,
            "shipmentId": shipment.id,
            "orderId": order.id,
            "orderNumber": order.number,
            "lines": rows,
            "totals": {
                "shipping": zero,
                "handling": zero,
                "voucherValue": zero,
                "returnCost": zero,
            },
            "grandTotal": zero,
            "refundPaymentHistory": [],
        }
    )


def reveni_return(
    rid: str,
    order_name: str | int,
    items: Sequence[tuple[str, int] | tuple[str, int, str] | tuple[str, int, str, int]],
    *,
    status: str = "in_progress",
    minutes: int = 0,
    instant: bool = False,
    type_: str = "refund",
    refunds: Sequence[dict[str, Any]] = (),
) -> ReveniReturn:
    """A Reveni return; items as (sku, quantity[, item status[, accepted quantity]])."""
    created = T0 + timedelta(minutes=minutes)
    return ReveniReturn.model_validate(
        {
            "id": rid,
            "type": type_,
            "instant": instant,
            "status": status,
            "order": {"name": str(order_name)},
            "return_items": [
                {
                    "item_id": f"{rid}-{n}",
                    "sku": spec[0],
                    "quantity": spec[1],
                    "status": spec[2] if len(spec) > 2 else "pending",  # type: ignore[misc]
                    "accepted_quantity": spec[3] if len(spec) > 3 else None,  # type: ignore[misc]
                }
                for n, spec in enumerate(items, start=1)
            ],
            "refunds": list(refunds),
            "created_at": created.isoformat(),
            "updated_at": created.isoformat(),
        }
    )
