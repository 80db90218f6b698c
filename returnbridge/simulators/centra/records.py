"""The simulator's in-memory Centra objects: plain dataclasses, no behaviour beyond derived values.

Ids follow Centra's shapes: orders have a 32-hex hash `id` plus an integer `number`; everything
else has an integer id ([C] [IDC]). Each kind of object counts from its own base, so a client that
sends an order-line id where a shipment-line id belongs is caught instead of passing by luck.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal("0.00")
CENT = Decimal("0.01")


def money(value: Decimal) -> Decimal:
    """Round to cents the way Centra prints amounts."""
    return value.quantize(CENT)


def order_hash_id(number: int) -> str:
    """Deterministic 32-hex order id for an order number (Centra's ids are opaque hashes)."""
    return hashlib.md5(f"centra-sim-order:{number}".encode()).hexdigest()


ID_BASES: dict[str, int] = {
    "product": 1001,
    "variant": 2001,
    "size": 3001,
    "customer": 1,
    "order_line": 1,
    "allocation": 400_001,
    "shipment": 1,
    "shipment_line": 100_001,
    "payment": 300_001,
    "return": 1,
    "return_line": 200_001,
    "stock_change": 1,
    "stock_change_line": 500_001,
}


class IdSequence:
    """Per-kind counters starting at the kind's base in ID_BASES."""

    def __init__(self) -> None:
        self._next = dict(ID_BASES)

    def next(self, kind: str) -> int:
        value = self._next[kind]
        self._next[kind] = value + 1
        return value


class StockPolicy(StrEnum):
    """createReturn's returnStockActionPolicy, one key of three ([C])."""

    RELEASE = "releaseItemsBackToWarehouse"
    DIFFERENT_WAREHOUSE = "sendItemsToDifferentWarehouse"
    REMOVE = "removeItemsFromStock"


@dataclass
class ProductRec:
    id: int
    name: str
    variant_ids: list[int] = field(default_factory=list)


@dataclass
class VariantRec:
    id: int
    name: str
    variant_number: str
    product_id: int
    size_ids: list[int] = field(default_factory=list)


@dataclass
class SizeRec:
    id: int
    sku: str
    ean: str | None
    name: str
    variant_id: int
    product_id: int


@dataclass
class WarehouseRec:
    id: int
    name: str


@dataclass
class StockLevel:
    """One size in one warehouse. FTA = physical - allocated ([C] [STOCK])."""

    physical: int = 0
    allocated: int = 0

    @property
    def free_to_allocate(self) -> int:
        return self.physical - self.allocated


@dataclass
class AllocationRec:
    id: int
    warehouse_id: int
    quantity: int
    # Holds stock (StockLevel.allocated) although its order comes from the scenario, whose
    # allocations do not: set for items allocated by an order-processing mutation.
    reserves: bool = False


@dataclass
class OrderLineRec:
    id: int
    order_number: int
    size_id: int
    quantity: int
    unit_price: Decimal
    tax_percent: Decimal
    cancelled: int = 0
    allocations: list[AllocationRec] = field(default_factory=list)

    def value(self, quantity: int | None = None) -> Decimal:
        qty = self.quantity - self.cancelled if quantity is None else quantity
        return money(self.unit_price * qty)


@dataclass
class ShipmentLineRec:
    id: int
    shipment_id: int
    order_line_id: int
    quantity: int


@dataclass
class ShipmentRec:
    id: int
    number: str
    order_number: int
    created_at: datetime
    shipped_at: datetime | None
    lines: list[ShipmentLineRec]
    shipping: Decimal = ZERO
    handling: Decimal = ZERO
    voucher: Decimal = ZERO
    # Set once an order-processing mutation (createShipment...) made or changed the shipment:
    # its flags are then the fields below; a scenario shipment's follow `shipped` until then.
    processed: bool = False
    good_to_go: bool = False
    paid_at: datetime | None = None
    captured_at: datetime | None = None
    captured_value: Decimal | None = None
    updated_at: datetime | None = None
    additional_message: str | None = None
    external_id: str | None = None
    carrier: str | None = None
    service: str | None = None
    packages: int = 0
    tracking_number: str | None = None
    return_tracking_number: str | None = None
    internal_shipping_cost: Decimal | None = None

    @property
    def shipped(self) -> bool:
        return self.shipped_at is not None


@dataclass
class PaymentEntryRec:
    id: int
    order_number: int
    created_at: datetime
    status: str  # SUCCESS | PENDING | FAILED
    entry_type: str  # AUTH | CAPTURE | ... | REFUND_REQUEST | REFUND | REFUND_FAILED
    value: Decimal
    payment_method: str
    external_reference: str | None = None
    params_json: str | None = None
    return_id: int | None = None
    via_psp: bool = True
    initial: bool = False  # from the scenario: not an effect (except manual refunds)
    # An asynchronous PSP's refund request: the entry that settled it (REFUND or REFUND_FAILED),
    # None while pending. A settlement entry points back at its request with `settles`.
    settled_by: int | None = None
    settles: int | None = None


@dataclass
class OrderRec:
    number: int
    id: str
    status: str
    currency: str
    market: str
    customer_email: str
    customer_id: int
    created_at: datetime
    shipping: Decimal
    lines: list[OrderLineRec]
    shipments: list[ShipmentRec] = field(default_factory=list)
    payments: list[PaymentEntryRec] = field(default_factory=list)
    refund_gateway_fails: bool = False
    psp_async: bool = False
    is_internal: bool = False
    comment: str | None = None
    internal_comment: str | None = None
    origin_type: str | None = None
    origin_id: int | None = None
    created_via_api: bool = False
    # Last write that changed the order or its returns / payments (Order.updatedAt); None until
    # the first one, the view also counts the dated records the order holds.
    updated_at: datetime | None = None
    # Written by the order-processing mutations (order_processing.py).
    is_on_hold: bool = False
    hold_reason: str | None = None
    is_locked: bool = False
    shipping_address: dict[str, str | None] = field(default_factory=dict)  # over the simulated
    billing_address: dict[str, str | None] = field(default_factory=dict)
    customer_info: dict[str, str | None] = field(default_factory=dict)  # name / e-mail on order
    history: list[str] = field(default_factory=list)  # cancellation and hold comments

    def goods_total(self) -> Decimal:
        return money(sum((line.value() for line in self.lines), ZERO))

    def grand_total(self) -> Decimal:
        return money(self.goods_total() + self.shipping)


@dataclass
class ReturnLineRec:
    id: int
    shipment_line_id: int
    order_line_id: int
    quantity: int


@dataclass
class ReturnRec:
    id: int
    order_number: int
    shipment_id: int
    created_at: datetime
    lines: list[ReturnLineRec]
    policy: StockPolicy
    policy_warehouse_id: int | None = None
    comment: str | None = None
    external_id: str | None = None
    shipping: Decimal = ZERO
    handling: Decimal = ZERO
    voucher: Decimal = ZERO
    return_cost: Decimal = ZERO
    completed_at: datetime | None = None

    @property
    def completed(self) -> bool:
        return self.completed_at is not None


@dataclass
class StockChangeLineRec:
    id: int
    size_id: int
    warehouse_id: int
    delta: int


@dataclass
class StockChangeRec:
    id: int
    created_at: datetime
    description: str | None
    warehouse_id: int
    lines: list[StockChangeLineRec]
    source: str  # changeStock | setStock | return
