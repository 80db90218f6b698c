"""Typed arguments of Centra writes, and their wire shape (GraphQL variables, REST bodies).

Obviously invalid arguments (no lines, a zero quantity, a zero stock delta) raise ValueError here,
before a request is spent; everything that needs Centra's state to judge is left to Centra, whose
refusal becomes `CentraRejected`.

Money goes out as a JSON number via `float`: amounts with at most two decimals round-trip exactly
through the shortest float repr, and `MonetaryValueInput.value` is a Float in the schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypedDict

DateRange = TypedDict("DateRange", {"from": str, "to": str}, total=False)
"""`DateTimeRangeFilter`: ISO 8601 with offset, or Centra's "2022-06-23 15:47:12". [C-ex]"""


class OrderFilter(TypedDict, total=False):
    """`OrderFilter` keys (wire names): number [C-ex], id [3P], the rest [C-ex]/[INF]."""

    number: list[int]
    id: list[str]
    status: list[str]
    storeType: str
    createdAt: DateRange
    orderDate: DateRange
    customerId: list[int]


class ReturnFilter(TypedDict, total=False):
    """`ReturnFilter` keys (wire names); `orderNumber` and `externalId` are [INF]."""

    id: list[int]
    customerId: list[int]
    storeType: str
    createdAt: DateRange
    orderNumber: list[int]
    externalId: list[str]


FROM_SHIPMENT: Literal["from_shipment"] = "from_shipment"
"""A return cost taken from what remains of that cost on the shipment (`{fromShipment: true}`)."""

ReturnCost = Decimal | Literal["from_shipment"]


@dataclass(frozen=True)
class ReturnLineInput:
    """Return `quantity` items of one shipment line (`createReturn` works on shipment lines)."""

    shipment_line_id: int
    quantity: int


@dataclass(frozen=True)
class SendToWarehouse:
    """Return stock policy: put the items into this warehouse ([INF] input shape `{id}`)."""

    warehouse_id: int


ReturnStockPolicy = Literal["remove", "release"] | SendToWarehouse
"""`remove`: no stock increase (returnbridge restocks separately, design.md §2);
`release`: back into the warehouse the items were allocated from; or a named warehouse."""


@dataclass(frozen=True)
class StockDelta:
    """A signed change of one product size's physical stock (`changeStock` is a delta)."""

    variant_id: int
    size_id: int
    quantity: int


@dataclass(frozen=True)
class StockLevel:
    """An absolute stock level of one product size (`setStock`)."""

    variant_id: int
    size_id: int
    quantity: int


@dataclass(frozen=True)
class OrderProduct:
    """One product of a REST-created order, by SKU."""

    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class CreatedFromOrigin:
    """What a new order was created from; `type="return"` links an exchange to its return. [C]"""

    type: Literal["return", "order", "plugin"]
    id: int


def money_input(amount: Decimal, currency: str | None = None) -> dict[str, Any]:
    """`MonetaryValueInput { value, currencyIsoCode }`."""
    if not amount.is_finite():
        raise ValueError(f"amount must be finite, got {amount}")
    wire: dict[str, Any] = {"value": float(amount)}
    if currency is not None:
        wire["currencyIsoCode"] = currency
    return wire


def _cost_input(cost: ReturnCost, currency: str | None) -> dict[str, Any]:
    if cost == FROM_SHIPMENT:
        return {"fromShipment": True}
    assert isinstance(cost, Decimal)
    if cost < 0:
        raise ValueError(f"a return cost cannot be negative, got {cost}")
    return {"value": money_input(cost, currency)}


def _policy_input(policy: ReturnStockPolicy) -> dict[str, Any]:
    if isinstance(policy, SendToWarehouse):
        return {"sendItemsToDifferentWarehouse": {"id": policy.warehouse_id}}
    if policy == "remove":
        return {"removeItemsFromStock": True}
    if policy == "release":
        return {"releaseItemsBackToWarehouse": True}
    raise ValueError(f"unknown return stock policy {policy!r}")


def return_create_input(
    *,
    shipment_id: int,
    lines: Sequence[ReturnLineInput],
    stock_policy: ReturnStockPolicy,
    comment: str | None = None,
    external_id: str | None = None,
    shipping_cost: ReturnCost | None = None,
    handling_cost: ReturnCost | None = None,
    voucher_value: ReturnCost | None = None,
    return_cost: Decimal | None = None,
    currency: str | None = None,
) -> dict[str, Any]:
    """`ReturnCreateInput` ([C] §3.2; `externalId` and `returnCost` are [INF])."""
    if not lines:
        raise ValueError("a return needs at least one line")
    for line in lines:
        if line.quantity < 1:
            raise ValueError(
                f"shipment line {line.shipment_line_id}: quantity must be at least 1, "
                f"got {line.quantity}"
            )
    ids = [line.shipment_line_id for line in lines]
    if len(set(ids)) != len(ids):
        raise ValueError("each shipment line may appear once per return")
    wire: dict[str, Any] = {
        "shipment": {"id": shipment_id},
        "lines": [
            {"shipmentLine": {"id": ln.shipment_line_id}, "quantity": ln.quantity} for ln in lines
        ],
        "returnStockActionPolicy": _policy_input(stock_policy),
    }
    if comment is not None:
        wire["comment"] = comment
    if external_id is not None:
        wire["externalId"] = external_id
    for key, cost in (
        ("shippingCost", shipping_cost),
        ("handlingCost", handling_cost),
        ("voucherValue", voucher_value),
    ):
        if cost is not None:
            wire[key] = _cost_input(cost, currency)
    if return_cost is not None:
        wire["returnCost"] = money_input(return_cost, currency)
    return wire


def _group_by_variant(
    rows: Sequence[StockDelta] | Sequence[StockLevel], size_key: str, qty_key: str
) -> list[dict[str, Any]]:
    variants: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        variants.setdefault(row.variant_id, []).append(
            {"size": {"id": row.size_id}, qty_key: row.quantity}
        )
    return [{"productVariant": {"id": vid}, size_key: sizes} for vid, sizes in variants.items()]


def stock_change_input(
    *,
    description: str,
    deltas: Sequence[StockDelta],
    into_warehouse_id: int | None = None,
    out_from_warehouse_id: int | None = None,
) -> dict[str, Any]:
    """`StockChangeInput`: into a warehouse adds, out from one removes, both moves. [C] §4.2"""
    if into_warehouse_id is None and out_from_warehouse_id is None:
        raise ValueError("a stock change needs into_warehouse_id, out_from_warehouse_id or both")
    if not deltas:
        raise ValueError("a stock change needs at least one delta")
    if any(d.quantity == 0 for d in deltas):
        raise ValueError("a stock delta of 0 changes nothing; leave it out")
    if not description.strip():
        raise ValueError("a stock change needs a description (it is how it is read back)")
    wire: dict[str, Any] = {
        "description": description,
        "productVariants": _group_by_variant(deltas, "sizeChanges", "deliveredQuantity"),
    }
    if into_warehouse_id is not None:
        wire["intoWarehouse"] = {"id": into_warehouse_id}
    if out_from_warehouse_id is not None:
        wire["outFromWarehouse"] = {"id": out_from_warehouse_id}
    return wire


def set_stock_input(
    *,
    warehouse_id: int,
    levels: Sequence[StockLevel],
    description: str | None = None,
    quantity_type: Literal["PHYSICAL", "FTA"] = "PHYSICAL",
) -> dict[str, Any]:
    """`SetStockInput` (absolute levels; Centra calls this "less secure" than deltas). [C] §4.2"""
    if not levels:
        raise ValueError("set_stock needs at least one level")
    if any(level.quantity < 0 for level in levels):
        raise ValueError("a stock level cannot be negative")
    wire: dict[str, Any] = {
        "warehouse": {"id": warehouse_id},
        "stockQuantityType": quantity_type,
        "productVariants": _group_by_variant(levels, "sizeStockLevels", "quantity"),
    }
    if description is not None:
        wire["description"] = description
    return wire


def order_create_body(
    *,
    order_number: int,
    products: Sequence[OrderProduct],
    created_from_origin: CreatedFromOrigin | None = None,
    internal_order: bool = True,
    adjust_stock: bool = True,
    shipping_value: Decimal = Decimal("0"),
    comment: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Body of REST `POST /order` ([C] [OA-create-order] §5). `orderNumber` makes it idempotent:
    a second call with the same number fails with code -5. `extra` carries the store-specific
    fields (address, market, pricelist, ...) unchanged."""
    if not products:
        raise ValueError("an order needs at least one product")
    for product in products:
        if product.quantity < 1:
            raise ValueError(f"{product.sku}: quantity must be at least 1, got {product.quantity}")
        if product.unit_price < 0:
            raise ValueError(f"{product.sku}: unit price cannot be negative")
    body: dict[str, Any] = dict(extra or {})
    body.update(
        {
            "orderNumber": order_number,
            "products": [
                {"sku": p.sku, "qty": p.quantity, "unitPrice": float(p.unit_price)}
                for p in products
            ],
            "internalOrder": internal_order,
            "adjustStock": adjust_stock,
            "shippingValue": float(shipping_value),
        }
    )
    if created_from_origin is not None:
        body["createdFromOrigin"] = {"type": created_from_origin.type, "id": created_from_origin.id}
    if comment is not None:
        body["comment"] = comment
    return body
