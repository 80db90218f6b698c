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

from returnbridge.connectors.centra.models import Address

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
"""`remove`: no stock increase (returnbridge restocks separately,
docs/architecture.md#the-life-of-a-return); `release`: back into the warehouse the items were
allocated from; or a named warehouse."""


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
    """`ReturnCreateInput` ([C]; `externalId` and `returnCost` are [INF])."""
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
    """`StockChangeInput`: into a warehouse adds, out from one removes, both moves. [C]"""
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
    """`SetStockInput` (absolute levels; Centra calls this "less secure" than deltas). [C]"""
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


def address_wire(address: Address) -> dict[str, str]:
    """An Order API address (`address`, `invoiceAddress`, `deliveryAddress` of `POST /order`) from
    an order's address ([C] email and country required; the other field names are [INF], as in
    the GraphQL Address). Empty fields are left out."""
    fields = {
        "firstName": address.first_name,
        "lastName": address.last_name,
        "address1": address.address1,
        "address2": address.address2,
        "city": address.city,
        "zipCode": address.zip_code,
        "state": address.state_or_province,
        "country": address.country,
        "email": address.email,
        "phoneNumber": address.phone_number,
    }
    return {k: v for k, v in fields.items() if v}


@dataclass(frozen=True)
class OrderCreateInput:
    """Body of REST `POST /order` ([C] [OA-create-order]), typed.

    `order_number` makes the call idempotent: a second call with the same number fails with code
    -5. `address` is copied to the order's `address` (an exchange ships where the original order
    did); `currency`, `market_id` (`marketId`) and `internal_comment` (`internalComment`, the
    exchange's marker) are sent when given. `extra` carries further store-specific fields
    (pricelist, invoice address, ...) unchanged; the typed fields win over it.
    """

    order_number: int
    products: Sequence[OrderProduct]
    created_from_origin: CreatedFromOrigin | None = None
    internal_order: bool = True
    adjust_stock: bool = True
    shipping_value: Decimal = Decimal("0")
    comment: str | None = None
    address: Address | None = None
    currency: str | None = None
    market_id: int | None = None
    internal_comment: str | None = None
    extra: Mapping[str, Any] | None = None

    def wire(self) -> dict[str, Any]:
        """The JSON body (ValueError, before a request is spent, for an obviously bad order)."""
        if not self.products:
            raise ValueError("an order needs at least one product")
        for product in self.products:
            if product.quantity < 1:
                raise ValueError(
                    f"{product.sku}: quantity must be at least 1, got {product.quantity}"
                )
            if product.unit_price < 0:
                raise ValueError(f"{product.sku}: unit price cannot be negative")
        body: dict[str, Any] = dict(self.extra or {})
        if self.address is not None:
            body["address"] = address_wire(self.address)
        if self.currency is not None:
            body["currency"] = self.currency
        if self.market_id is not None:
            body["marketId"] = self.market_id
        if self.internal_comment is not None:
            body["internalComment"] = self.internal_comment
        body.update(
            {
                "orderNumber": self.order_number,
                "products": [
                    {"sku": p.sku, "qty": p.quantity, "unitPrice": float(p.unit_price)}
                    for p in self.products
                ],
                "internalOrder": self.internal_order,
                "adjustStock": self.adjust_stock,
                "shippingValue": float(self.shipping_value),
            }
        )
        if self.created_from_origin is not None:
            origin = self.created_from_origin
            body["createdFromOrigin"] = {"type": origin.type, "id": origin.id}
        if self.comment is not None:
            body["comment"] = self.comment
        return body


@dataclass(frozen=True)
class ManualRefund:
    """A refund paid outside Centra's PSP (Reveni's instant transfer, store credit), recorded on
    the return as `manualRefund: {amount, reference}` [INF]; the amount goes out as an exact
    decimal string."""

    amount: Decimal
    reference: str


@dataclass(frozen=True)
class ReturnUpdateInput:
    """Body of REST `PUT /returns/{id}`: complete a return, optionally refund it through the PSP
    (`refund_payment`) or record a refund paid outside it (`manual_refund`, an [INF] extension)."""

    completed: bool
    refund_payment: bool
    send_email: bool = False
    manual_refund: ManualRefund | None = None

    def wire(self, *, manual_refund_accepted: bool) -> dict[str, Any]:
        """The JSON body. `manual_refund_accepted`: whether this Centra's Order API takes
        `manualRefund` (`CentraInferred.order_api_manual_refund`); ValueError, before a request
        is spent, when it is given and not accepted, or is obviously bad."""
        body: dict[str, Any] = {
            "completed": self.completed,
            "refundPayment": self.refund_payment,
            "sendEmail": self.send_email,
        }
        if self.manual_refund is not None:
            body["manualRefund"] = self._manual_refund_wire(manual_refund_accepted)
        return body

    def _manual_refund_wire(self, accepted: bool) -> dict[str, Any]:
        assert self.manual_refund is not None
        if not accepted:
            raise ValueError(
                "manual_refund: this Centra's Order API is configured not to accept "
                "`manualRefund` (CentraInferred.order_api_manual_refund is off); a refund paid "
                "outside the PSP cannot be recorded through PUT /returns/{id}"
            )
        if self.refund_payment:
            raise ValueError("give refund_payment=True or manual_refund, not both")
        amount, reference = self.manual_refund.amount, self.manual_refund.reference
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
            raise ValueError(f"manual_refund amount must be a finite Decimal >= 0, got {amount!r}")
        if not reference.strip():
            raise ValueError("manual_refund needs a reference (the payment it records)")
        return {"amount": format(amount, "f"), "reference": reference}
