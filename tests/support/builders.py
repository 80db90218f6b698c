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
from returnbridge.core.actions import Action, return_comment
from returnbridge.ledger.records import ActionRecord

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


# --- builders for the planner: priced orders with several shipments, Centra returns with their
# --- refund entries, Reveni returns with exchanges/restock/refunds, and ledger rows.


def priced_order(
    number: int,
    lines: Sequence[tuple[str, int, str]],
    shipments: Sequence[tuple[bool, Sequence[tuple[int, int]]]] | None = None,
    *,
    shipment_minutes: Sequence[int] = (),
    status: str = "SHIPPED",
    currency: str = "EUR",
) -> Order:
    """Like `centra_order`, with what planning needs: a size and variant id per SKU and the
    grand total (= captured) of its lines; `shipment_minutes[i]`: when shipment i+1 was created,
    in minutes after T0 (so shipment order can differ from shipment id order)."""
    base = centra_order(number, lines, status=status, currency=currency, shipments=shipments)
    data = base.model_dump(by_alias=True, mode="json")
    size_ids = {sku: n for n, sku in enumerate(sorted({spec[0] for spec in lines}), start=1)}
    for row in data["lines"]:
        sku = row["productSize"]["SKU"]
        row["productSize"]["id"] = size_ids[sku]
        row["productVariantId"] = 100 + size_ids[sku]
    for row, minutes in zip(data["shipments"], shipment_minutes, strict=False):
        row["createdAt"] = (T0 + timedelta(minutes=minutes)).isoformat()
    total = sum((Decimal(spec[2]) * spec[1] for spec in lines), Decimal(0))
    data["grandTotal"] = _money(total, currency)
    return Order.model_validate(data)


def refund_entry(
    entry_id: int,
    amount: str | Decimal,
    *,
    status: str = "SUCCESS",
    payment_method: str = "dummy-psp",
    reference: str | None = None,
    entry_type: str = "REFUND",
    currency: str = "EUR",
) -> dict[str, Any]:
    """A `refundPaymentHistory` entry as the Centra simulator writes it (PSP by default;
    `payment_method="manual"` for a non-PSP credit)."""
    return {
        "id": entry_id,
        "createdAt": T0.isoformat(),
        "status": status,
        "entryType": entry_type,
        "value": _money(amount, currency),
        "externalReference": reference,
        "paymentMethod": payment_method,
    }


def own_return(
    order: Order,
    external_id: str | None,
    lines: Sequence[tuple[int, int]],
    *,
    rid: int = 1,
    refunds: Sequence[dict[str, Any]] = (),
) -> CentraReturn:
    """A Centra return of (shipment line id, quantity) on the shipment holding those lines, with
    its grand total computed as Centra does for a return without shipping or costs."""
    slines = {sl.id: (shipment.id, sl) for shipment in order.shipments for sl in shipment.lines}
    shipment_id = slines[lines[0][0]][0]
    rows, total = [], Decimal(0)
    for n, (sline_id, qty) in enumerate(lines, start=1):
        sline = slines[sline_id][1]
        line = order.line(sline.order_line_id)
        assert line is not None
        total += line.unit_price.value * qty
        rows.append(
            {
                "id": rid * 100 + n,
                "quantity": qty,
                "shipmentLineId": sline_id,
                "orderLineId": line.id,
                "sku": line.sku,
            }
        )
    currency = order.currency
    zero = _money("0", currency)
    return CentraReturn.model_validate(
        {
            "id": rid,
            "status": "PENDING",
            "createdAt": T0.isoformat(),
            "externalId": external_id,
            "returnedToStock": False,
            "shipmentId": shipment_id,
            "orderId": order.id,
            "orderNumber": order.number,
            "lines": rows,
            "totals": {
                "shipping": zero,
                "handling": zero,
                "voucherValue": zero,
                "returnCost": zero,
            },
            "grandTotal": _money(total, currency),
            "refundPaymentHistory": list(refunds),
        }
    )


def reveni_refund(
    refund_id: str,
    method: str,
    amount: str,
    *,
    paid_by: str | None = None,
    status: str | None = None,
    currency: str = "EUR",
    minutes: int = 0,
) -> dict[str, Any]:
    """A Reveni refund; paid_by and status default as Reveni sets them for the method."""
    default_paid_by, default_status = {
        "bank_transfer": ("reveni", "paid"),
        "store_credit": ("merchant", "paid"),
        "original_payment_method": ("merchant", "pending"),
    }[method]
    return {
        "id": refund_id,
        "method": method,
        "amount": amount,
        "currency": currency,
        "status": status or default_status,
        "paid_by": paid_by or default_paid_by,
        "created_at": (T0 + timedelta(minutes=minutes)).isoformat(),
    }


def item(
    sku: str,
    quantity: int = 1,
    *,
    status: str = "accepted",
    accepted: int | None = None,
    restock: bool | None = True,
    exchange: str | None = None,
    unit_price: str | None = None,
) -> dict[str, Any]:
    """A Reveni return item (accepted and restocked by default)."""
    return {
        "sku": sku,
        "quantity": quantity,
        "status": status,
        "accepted_quantity": accepted,
        "restock": restock if status == "accepted" else False,
        "exchange": None if exchange is None else {"sku": exchange, "quantity": quantity},
        "unit_price": unit_price,
        "currency": None if unit_price is None else "EUR",
    }


def reveni_return_of(
    rid: str,
    order_name: str | int,
    items: Sequence[dict[str, Any]],
    *,
    status: str = "accepted",
    instant: bool = False,
    type_: str = "refund",
    refunds: Sequence[dict[str, Any]] = (),
    minutes: int = 0,
    updated_minutes: int | None = None,
) -> ReveniReturn:
    """A Reveni return from `item(...)` dicts (accepted by default)."""
    created = T0 + timedelta(minutes=minutes)
    updated = created if updated_minutes is None else T0 + timedelta(minutes=updated_minutes)
    return ReveniReturn.model_validate(
        {
            "id": rid,
            "type": type_,
            "instant": instant,
            "status": status,
            "order": {"name": str(order_name)},
            "return_items": [
                {"item_id": f"{rid}-{n}", **spec} for n, spec in enumerate(items, start=1)
            ],
            "refunds": list(refunds),
            "created_at": created.isoformat(),
            "updated_at": updated.isoformat(),
        }
    )


def ledger_row(action: Action, state: str, centra_ref: str | None = None) -> ActionRecord:
    """The ledger row of `action` in `state`."""
    return ActionRecord(
        key=action.key,
        kind=action.kind,
        reveni_return_id=action.reveni_return_id,
        order_number=action.order_number,
        state=state,
        attempts=0 if state == "pending" else 1,
        payload=action.payload_json(),
        depends_on=action.depends_on,
        centra_ref=centra_ref,
        last_error=None,
        not_before=None,
        created_at=T0,
        updated_at=T0,
    )


def own_part(
    order: Order,
    external_id: str,
    lines: Sequence[tuple[int, int]],
    *,
    rid: int = 1,
    refunds: Sequence[dict[str, Any]] = (),
    exchange: bool = False,
) -> CentraReturn:
    """`own_return` with the comment returnbridge gives a part it creates
    (`actions.return_comment`): the exchange part of a mixed return when `exchange`."""
    ret = own_return(order, external_id, lines, rid=rid, refunds=refunds)
    return ret.model_copy(update={"comment": return_comment(external_id, exchange=exchange)})
