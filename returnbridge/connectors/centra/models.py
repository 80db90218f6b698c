"""What the client reads from Centra, as typed values (pydantic v2).

Wire names are camelCase; the models use snake_case aliases of them. Unknown fields are ignored
(Centra adds fields between versions) but the fields we select are required and typed, so a schema
drift fails loudly at the boundary. Money is `Decimal` (the client decodes JSON numbers straight to
Decimal, never through float) and every datetime must carry an offset (docs/architecture.md#money,
docs/architecture.md#time).

Enum-valued fields stay `str`: several of their values are [INF] and configurable
(`CentraInferred`), so callers compare them with those settings rather than with a hard-coded enum.
Where the schema's values are settled, a `StrEnum` names them (`PaymentEntryType`,
`PaymentEntryStatus`); its members compare equal to the wire strings.

The answers of the REST Order API's writes are parsed here too (`ReturnUpdateResult`), leniently:
the write happened, so an odd field reads as unknown (None) rather than failing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from returnbridge.connectors.centra.errors import UserError

T = TypeVar("T")


class CentraModel(BaseModel):
    """Base of the wire models: camelCase aliases, unknown fields ignored, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


def _flatten_id(data: Any, key: str, target: str) -> Any:
    """Turn `{key: {id: X}}` into `{target: X}` so references read as plain ids."""
    if isinstance(data, dict) and isinstance(data.get(key), dict) and target not in data:
        data = {**data, target: data[key].get("id")}
    return data


class Money(CentraModel):
    """`MonetaryValue { value currency{code} conversionRate }` ([C-ex])."""

    value: Decimal
    currency: str
    conversion_rate: Decimal = Decimal(1)

    @model_validator(mode="before")
    @classmethod
    def _currency_code(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("currency"), dict):
            data = {**data, "currency": data["currency"].get("code")}
        return data


class Store(CentraModel):
    id: int
    type: str


class Market(CentraModel):
    id: int
    name: str


class Customer(CentraModel):
    id: int
    email: str
    first_name: str | None = None
    last_name: str | None = None


class Address(CentraModel):
    """An order's shipping or billing address; `country` is the ISO code (`country{code}`)."""

    first_name: str | None = None
    last_name: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    zip_code: str | None = None
    state_or_province: str | None = None
    country: str | None = None
    email: str | None = None
    phone_number: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _country_code(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("country"), dict):
            data = {**data, "country": data["country"].get("code")}
        return data


class SizeRef(CentraModel):
    """The product size an order line or a stock change line is for."""

    id: int | None = None
    sku: str = Field(alias="SKU")
    ean: str | None = Field(None, alias="EAN")
    description: str | None = None


class OrderLine(CentraModel):
    id: int
    quantity: int
    cancelled_quantity: int
    shipped_quantity: int
    returned_quantity: int
    unit_price: Money
    unit_original_price: Money
    discount_percent: Decimal
    tax_percent: Decimal
    line_value: Money
    product_name: str
    product_variant_name: str
    product_variant_id: int
    size: SizeRef = Field(alias="productSize")

    @model_validator(mode="before")
    @classmethod
    def _variant_id(cls, data: Any) -> Any:
        return _flatten_id(data, "productVariant", "productVariantId")

    @property
    def sku(self) -> str:
        """The SKU of the line's product size."""
        return self.size.sku


class ShipmentLine(CentraModel):
    """A shipped line; its `id` is what `createReturn` references ([C])."""

    id: int
    quantity: int
    order_line_id: int

    @model_validator(mode="before")
    @classmethod
    def _order_line_id(cls, data: Any) -> Any:
        return _flatten_id(data, "orderLine", "orderLineId")


class Shipment(CentraModel):
    id: int
    number: str
    created_at: AwareDatetime
    shipped_at: AwareDatetime | None = None
    is_good_to_go: bool
    is_paid: bool
    is_shipped: bool
    is_captured: bool
    lines: list[ShipmentLine]


class PaymentEntryType(StrEnum):
    """`PaymentHistoryEntryType` (schema.graphql): the values returnbridge reads ([C]; the schema
    has more). Which wire values are a refund, its request and its refusal stays configurable
    (`CentraInferred.payment_entry_type_refund*`, read through `refunds.RefundTypes`): compare
    refund entry types with those, not with these members."""

    AUTH = "AUTH"
    CAPTURE = "CAPTURE"
    CAPTURE_REQUEST = "CAPTURE_REQUEST"
    CANCEL = "CANCEL"
    CANCEL_REQUEST = "CANCEL_REQUEST"
    REFUND = "REFUND"
    REFUND_REQUEST = "REFUND_REQUEST"
    REFUND_FAILED = "REFUND_FAILED"


class PaymentEntryStatus(StrEnum):
    """`PaymentHistoryEntryStatus` (schema.graphql, [C]): SUCCESS, PENDING, FAILED."""

    SUCCESS = "SUCCESS"
    PENDING = "PENDING"
    FAILED = "FAILED"


class PaymentEntry(CentraModel):
    """One `paymentHistory` entry: AUTH, CAPTURE, REFUND ([INF]) ... with its status.

    `status` and `entry_type` are the wire strings (an unknown value is kept, not refused); compare
    them with `PaymentEntryStatus` / `PaymentEntryType` members or the inferred settings."""

    id: int
    created_at: AwareDatetime
    status: str
    entry_type: str
    value: Money
    external_reference: str | None = None
    payment_method: str | None = None


class PaymentMethod(CentraModel):
    uri: str | None = None
    plugin: str | None = None


class OrderTotals(CentraModel):
    shipping: Money
    handling: Money
    tax_included: Money
    tax_deducted: Money
    tax_added: Money
    quantity: int


class Order(CentraModel):
    """A Centra order with what a return needs: lines, shipments, payments ([INF])."""

    id: str
    number: int
    status: str
    is_on_hold: bool
    is_internal: bool
    created_at: AwareDatetime
    order_date: AwareDatetime
    store: Store
    market: Market | None = None
    grand_total: Money
    totals: OrderTotals
    payment_method: PaymentMethod | None = None
    customer: Customer | None = None
    lines: list[OrderLine]
    shipments: list[Shipment]
    payment_history: list[PaymentEntry]
    internal_comment: str | None = None

    @property
    def currency(self) -> str:
        """The order's currency code (that of its grand total)."""
        return self.grand_total.currency

    def line(self, line_id: int) -> OrderLine | None:
        """The order line with this id, or None."""
        return next((line for line in self.lines if line.id == line_id), None)


class ReturnLine(CentraModel):
    id: int
    quantity: int
    shipment_line_id: int
    order_line_id: int
    sku: str

    @model_validator(mode="before")
    @classmethod
    def _references(cls, data: Any) -> Any:
        data = _flatten_id(data, "shipmentLine", "shipmentLineId")
        if isinstance(data, dict) and isinstance(data.get("orderLine"), dict):
            order_line = data["orderLine"]
            data = {
                **data,
                "orderLineId": order_line.get("id"),
                "sku": (order_line.get("productSize") or {}).get("SKU"),
            }
        return data


class ReturnTotals(CentraModel):
    shipping: Money
    handling: Money
    voucher_value: Money
    return_cost: Money


class Return(CentraModel):
    """A Centra return. `status` is the wire's `returnStatus` (pending / completed; its values are
    [INF], `CentraInferred.return_status_*`), not Centra's generic `status` (ACTIVE...), which
    the documents do not select; `returnStatus` wins when a payload carries both. Code that builds
    a Return by field name passes `status`."""

    id: int
    status: str = Field(alias="returnStatus")
    created_at: AwareDatetime
    comment: str | None = None
    external_id: str | None = None
    returned_to_stock: bool
    shipment_id: int
    order_id: str
    order_number: int
    lines: list[ReturnLine]
    totals: ReturnTotals
    grand_total: Money
    refund_payment_history: list[PaymentEntry]

    @model_validator(mode="before")
    @classmethod
    def _references(cls, data: Any) -> Any:
        data = _flatten_id(data, "shipment", "shipmentId")
        if isinstance(data, dict) and isinstance(data.get("order"), dict):
            data = {
                **data,
                "orderId": data["order"].get("id"),
                "orderNumber": data["order"].get("number"),
            }
        return data


class StockTotals(CentraModel):
    physical_quantity: int
    available_quantity: int
    allocated_quantity: int
    demand_quantity: int
    free_to_allocate_quantity: int


class ProductSize(CentraModel):
    """A sellable size with the ids stock mutations need and its stock totals."""

    id: int
    sku: str = Field(alias="SKU")
    ean: str | None = Field(None, alias="EAN")
    description: str | None = None
    variant_id: int
    stock_totals: StockTotals

    @model_validator(mode="before")
    @classmethod
    def _variant_id(cls, data: Any) -> Any:
        return _flatten_id(data, "productVariant", "variantId")


class Warehouse(CentraModel):
    id: int
    name: str
    status: str


class StockChangeLine(CentraModel):
    id: int
    delivered_quantity: int
    size: SizeRef = Field(alias="productSize")


class StockChange(CentraModel):
    id: int
    created_at: AwareDatetime
    description: str | None = None
    warehouse_id: int
    lines: list[StockChangeLine]

    @model_validator(mode="before")
    @classmethod
    def _warehouse_id(cls, data: Any) -> Any:
        return _flatten_id(data, "warehouse", "warehouseId")


class RateLimit(CentraModel):
    """One row of `rateLimits` (3 types x 2 intervals; quota = used + remaining) [C]."""

    type: str
    interval: str = Field(alias="intervalSeconds")
    quota: int
    used_quota: int
    remaining_quota: int


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a Relay connection."""

    items: list[T]
    total_count: int
    has_next_page: bool
    end_cursor: str | None


@dataclass(frozen=True)
class Applied(Generic[T]):
    """The result of a mutation that succeeded, with Centra's non-fatal `userWarnings`."""

    value: T
    warnings: tuple[UserError, ...] = ()


class RestReturn(CentraModel):
    """A return as the REST Order API lists it (`GET /returns`; `PUT /returns/{id}` answers one
    in `return`) [C] [OA-get-returns]. The row's `date` is local time without an offset, so it is
    not read; `products` rows stay raw (`sku`, `quantity`, line ids)."""

    model_config = ConfigDict(
        alias_generator=None, populate_by_name=True, extra="ignore", frozen=True
    )

    return_id: int = Field(alias="returnId")
    completed: bool
    shipment: str | None = None
    shipment_id: int | None = Field(None, alias="shipmentId")
    order_id: str | int | None = Field(None, alias="orderId")
    selection_id: str | None = Field(None, alias="selectionId")
    customer_id: int | None = Field(None, alias="customerId")
    products: list[dict[str, Any]] = Field(default_factory=list)


# -- REST Order API answers ------------------------------------------------------------------


def lenient_decimal(value: Any) -> Decimal | None:
    """A finite amount from a JSON number or string; None when missing or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _entry_status(value: Any) -> PaymentEntryStatus | str | None:
    """A refund entry's status: the enum member when known, the wire string otherwise."""
    if value is None:
        return None
    text = str(value)
    try:
        return PaymentEntryStatus(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class RefundResult:
    """The refund entry `PUT /returns/{id}` wrote, as its answer's `refund` object tells it: an
    [INF] extension `{status, amount, currency}` (Centra documents only the `return` object; POST
    /return's answer shows `refund: {status}` [C-ex]). The status is the entry's as written
    (SUCCESS, FAILED, or PENDING while an asynchronous PSP has not answered). A field missing or
    unreadable is None."""

    status: PaymentEntryStatus | str | None
    amount: Decimal | None
    currency: str | None

    @property
    def failed(self) -> bool:
        """The PSP refused the refund (the entry is FAILED)."""
        return self.status == PaymentEntryStatus.FAILED

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> RefundResult:
        currency = raw.get("currency")
        return cls(
            status=_entry_status(raw.get("status")),
            amount=lenient_decimal(raw.get("amount")),
            currency=None if currency is None else str(currency),
        )


@dataclass(frozen=True, eq=False)
class ReturnUpdateResult(Mapping[str, Any]):
    """The answer of `PUT /returns/{id}`: `{status: "ok", return: {...}}`, the return as
    `GET /returns` lists it [C] [OA-update-return], plus the [INF] `refund` extension.

    `return_completed`: the answer's `return.completed` [C]; when that is missing, a top-level
    `returnCompleted` (the name POST /return answers with [C]); None when neither is a boolean.
    `refund`: the refund entry written, when the answer carries one (None otherwise, or when it
    is not an object): without it the refund's fate is read from the payment history later.
    The answer itself stays readable as a read-only mapping of its wire body
    (`result["return"]`, equality with a dict), for logs and tests; code reads the typed fields.
    """

    return_completed: bool | None
    refund: RefundResult | None = None
    body: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> ReturnUpdateResult:
        returned = body.get("return")
        completed = returned.get("completed") if isinstance(returned, Mapping) else None
        if not isinstance(completed, bool):
            completed = body.get("returnCompleted")
        refund = body.get("refund")
        return cls(
            return_completed=completed if isinstance(completed, bool) else None,
            refund=RefundResult.from_wire(refund) if isinstance(refund, Mapping) else None,
            body=dict(body),
        )

    def __getitem__(self, key: str) -> Any:
        return self.body[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.body)

    def __len__(self) -> int:
        return len(self.body)
