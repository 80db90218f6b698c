"""GraphQL views over the simulator's records: one small class per Centra type.

graphql-core's default resolver reads an attribute of the parent object and, when it is callable,
calls it with `(info, **arguments)`. So a plain attribute serves a field without arguments and a
method serves a field with them (`lines(includeFullyCancelled)`, `createdAt(format)`...). Views
are built per request and hold no state of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from graphql import GraphQLResolveInfo

from returnbridge.simulators.centra.paging import page_of
from returnbridge.simulators.centra.records import (
    ZERO,
    OrderLineRec,
    OrderRec,
    PaymentEntryRec,
    ProductRec,
    ReturnLineRec,
    ReturnRec,
    ShipmentLineRec,
    ShipmentRec,
    SizeRec,
    StockChangeLineRec,
    StockChangeRec,
    StockLevel,
    StockPolicy,
    VariantRec,
    WarehouseRec,
    money,
)
from returnbridge.simulators.centra.state import CURRENCY_IDS, PAYMENT_METHOD, CentraState
from returnbridge.simulators.centra.timefmt import format_datetime

STORE = {"id": 1, "name": "Retail", "type": "DIRECT_TO_CONSUMER"}  # [INF] one DTC store


@dataclass(frozen=True)
class ViewContext:
    """What every view needs: the state and the merchant's zone for dates."""

    state: CentraState
    tz: ZoneInfo

    def date(self, value: datetime | None, php_format: str | None = None) -> str | None:
        return None if value is None else format_datetime(value, self.tz, php_format)

    def money(self, amount: Decimal, currency: str) -> dict[str, Any]:
        amount = money(amount)
        return {
            "value": float(amount),
            "currency": {"id": CURRENCY_IDS.get(currency, 99), "code": currency},
            "conversionRate": 1.0,
            "formattedValue": f"{amount:.2f} {currency}",
        }


def _names(email: str) -> tuple[str, str]:
    local = email.split("@", 1)[0]
    first, _, last = local.replace("_", ".").partition(".")
    return first.capitalize(), (last.capitalize() or "Customer")


def customer(ctx: ViewContext, order: OrderRec) -> dict[str, Any]:
    first, last = _names(order.customer_email)
    return {
        "id": order.customer_id,
        "email": order.customer_email,
        "firstName": first,
        "lastName": last,
    }


def stock_totals(levels: list[StockLevel]) -> dict[str, int]:
    physical = sum(level.physical for level in levels)
    allocated = sum(level.allocated for level in levels)
    fta = physical - allocated
    return {
        "physicalQuantity": physical,
        "availableQuantity": fta,  # FTA - demand + incoming; no demand or incoming is simulated
        "allocatedQuantity": allocated,
        "demandQuantity": 0,
        "unshippedQuantity": allocated,
        "onDeliveryQuantity": 0,
        "linkedIncomingQuantity": 0,
        "unlinkedIncomingQuantity": 0,
        "freeToAllocateQuantity": fta,
    }


class OrderView:
    def __init__(self, ctx: ViewContext, rec: OrderRec) -> None:
        self.ctx, self.rec = ctx, rec
        self.id = rec.id
        self.number = rec.number
        self.status = rec.status
        self.isOnHold = False
        self.isInternal = rec.is_internal
        self.store = STORE
        self.market = {"id": ctx.state.market_id(rec.market), "name": rec.market}
        self.internalComment = rec.internal_comment
        self.discountsApplied: list[Any] = []
        self.paymentMethod = {
            "uri": PAYMENT_METHOD,
            "plugin": PAYMENT_METHOD,
            "name": "Simulated PSP",
        }

    def createdAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        return self.ctx.date(self.rec.created_at, format)

    orderDate = createdAt

    def grandTotal(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        return self.ctx.money(self.rec.grand_total(), self.rec.currency)

    def totals(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        rec, m = self.rec, self.ctx.money
        tax = sum(
            (line.value() * line.tax_percent / (100 + line.tax_percent) for line in rec.lines), ZERO
        )
        if rec.lines and rec.shipping:
            rate = max(line.tax_percent for line in rec.lines)  # [INF] shipping taxed at top rate
            tax += rec.shipping * rate / (100 + rate)
        return {
            "shipping": m(rec.shipping, rec.currency),
            "handling": m(ZERO, rec.currency),
            "taxIncluded": m(tax, rec.currency),
            "taxDeducted": m(ZERO, rec.currency),
            "taxAdded": m(ZERO, rec.currency),
            "quantity": sum(line.quantity - line.cancelled for line in rec.lines),
        }

    def customer(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        return customer(self.ctx, self.rec)

    def _address(self) -> dict[str, Any]:
        first, last = _names(self.rec.customer_email)
        code = self.rec.market
        return {
            "firstName": first,
            "lastName": last,
            "address1": "Simulated street 1",
            "city": "Simulated city",
            "zipCode": "12345",
            "country": {"id": self.ctx.state.market_id(code), "name": code, "code": code},
            "email": self.rec.customer_email,
        }

    def shippingAddress(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        return self._address()

    billingAddress = shippingAddress

    def lines(
        self, info: GraphQLResolveInfo, includeFullyCancelled: bool | None = None
    ) -> list[OrderLineView]:
        return [
            OrderLineView(self.ctx, line)
            for line in self.rec.lines
            if includeFullyCancelled or line.cancelled < line.quantity
        ]

    def shipments(self, info: GraphQLResolveInfo) -> list[ShipmentView]:
        return [ShipmentView(self.ctx, ship) for ship in self.rec.shipments]

    def paymentHistory(
        self, info: GraphQLResolveInfo, where: dict[str, Any] | None = None
    ) -> list[PaymentEntryView]:
        types = (where or {}).get("entryType")
        return [
            PaymentEntryView(self.ctx, entry)
            for entry in self.rec.payments
            if not types or entry.entry_type in types
        ]


class OrderLineView:
    def __init__(self, ctx: ViewContext, rec: OrderLineRec) -> None:
        self.ctx, self.rec = ctx, rec
        state = ctx.state
        size = state.sizes[rec.size_id]
        currency = state.orders[rec.order_number].currency
        self.id = rec.id
        self.quantity = rec.quantity
        self.cancelledQuantity = rec.cancelled
        self.unitPrice = ctx.money(rec.unit_price, currency)
        self.unitOriginalPrice = self.unitPrice
        self.discountPercent = 0.0
        self.hasAnyDiscount = False
        self.taxPercent = float(rec.tax_percent)
        self.productName = state.products[size.product_id].name
        self.productVariantName = state.variants[size.variant_id].name
        self.comment = None
        self._currency = currency
        self._size = size

    def shippedQuantity(self, info: GraphQLResolveInfo) -> int:
        return self.ctx.state.shipped_quantity(self.rec)

    def returnedQuantity(self, info: GraphQLResolveInfo) -> int:
        return self.ctx.state.returned_quantity_of_order_line(self.rec.id)

    def lineValue(
        self, info: GraphQLResolveInfo, includingTax: bool | None = None
    ) -> dict[str, Any]:
        value = self.rec.value()
        if includingTax is False:
            value = value * 100 / (100 + self.rec.tax_percent)
        return self.ctx.money(value, self._currency)

    def product(self, info: GraphQLResolveInfo) -> ProductView:
        return ProductView(self.ctx, self.ctx.state.products[self._size.product_id])

    def productVariant(self, info: GraphQLResolveInfo) -> VariantView:
        return VariantView(self.ctx, self.ctx.state.variants[self._size.variant_id])

    def productSize(self, info: GraphQLResolveInfo) -> SizeView:
        return SizeView(self.ctx, self._size)

    def allocations(self, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
        state = self.ctx.state
        return [
            {
                "id": a.id,
                "quantity": a.quantity,
                "warehouse": WarehouseView(self.ctx, state.warehouses[a.warehouse_id]),
            }
            for a in self.rec.allocations
        ]


class ShipmentView:
    def __init__(self, ctx: ViewContext, rec: ShipmentRec) -> None:
        self.ctx, self.rec = ctx, rec
        self.id = rec.id
        self.number = rec.number
        self.isGoodToGo = True
        self.isPaid = rec.shipped
        self.isShipped = rec.shipped
        self.isCaptured = rec.shipped

    def createdAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        return self.ctx.date(self.rec.created_at, format)

    def shippedAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        return self.ctx.date(self.rec.shipped_at, format)

    def lines(self, info: GraphQLResolveInfo) -> list[ShipmentLineView]:
        return [ShipmentLineView(self.ctx, line) for line in self.rec.lines]

    def order(self, info: GraphQLResolveInfo) -> OrderView:
        return OrderView(self.ctx, self.ctx.state.orders[self.rec.order_number])

    def grandTotal(
        self, info: GraphQLResolveInfo, includingTax: bool | None = None
    ) -> dict[str, Any]:
        state = self.ctx.state
        order = state.orders[self.rec.order_number]
        return self.ctx.money(
            state.shipment_goods_value(self.rec) + self.rec.shipping, order.currency
        )


class ShipmentLineView:
    def __init__(self, ctx: ViewContext, rec: ShipmentLineRec) -> None:
        self.ctx, self.rec = ctx, rec
        self.id = rec.id
        self.quantity = rec.quantity

    def orderLine(self, info: GraphQLResolveInfo) -> OrderLineView:
        return OrderLineView(self.ctx, self.ctx.state.order_lines[self.rec.order_line_id])

    def lineValue(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        state = self.ctx.state
        line = state.order_lines[self.rec.order_line_id]
        return self.ctx.money(
            line.value(self.rec.quantity), state.orders[line.order_number].currency
        )


class PaymentEntryView:
    def __init__(self, ctx: ViewContext, rec: PaymentEntryRec) -> None:
        self.ctx, self.rec = ctx, rec
        self.id = rec.id
        self.status = rec.status
        self.entryType = rec.entry_type
        self.value = ctx.money(rec.value, ctx.state.orders[rec.order_number].currency)
        self.externalReference = rec.external_reference
        self.paramsJSON = rec.params_json
        self.paymentMethod = rec.payment_method

    def createdAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        return self.ctx.date(self.rec.created_at, format)


class ReturnView:
    def __init__(self, ctx: ViewContext, rec: ReturnRec) -> None:
        self.ctx, self.rec = ctx, rec
        self.id = rec.id
        self.status = ctx.state.return_status(rec)
        self.comment = rec.comment
        self.externalId = rec.external_id
        self.returnedToStock = rec.policy is not StockPolicy.REMOVE
        self.store = STORE
        self._currency = ctx.state.orders[rec.order_number].currency

    def createdAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        return self.ctx.date(self.rec.created_at, format)

    def shipment(self, info: GraphQLResolveInfo) -> ShipmentView:
        return ShipmentView(self.ctx, self.ctx.state.shipments[self.rec.shipment_id])

    def order(self, info: GraphQLResolveInfo) -> OrderView:
        return OrderView(self.ctx, self.ctx.state.orders[self.rec.order_number])

    def customer(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        return customer(self.ctx, self.ctx.state.orders[self.rec.order_number])

    def lines(self, info: GraphQLResolveInfo) -> list[ReturnLineView]:
        return [ReturnLineView(self.ctx, line) for line in self.rec.lines]

    def totals(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        rec, m, cur = self.rec, self.ctx.money, self._currency
        return {
            "shipping": m(rec.shipping, cur),
            "handling": m(rec.handling, cur),
            "voucherValue": m(rec.voucher, cur),
            "returnCost": m(rec.return_cost, cur),
        }

    def grandTotal(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        return self.ctx.money(self.ctx.state.return_refund_amount(self.rec), self._currency)

    def refundPaymentHistory(self, info: GraphQLResolveInfo) -> list[PaymentEntryView]:
        return [PaymentEntryView(self.ctx, e) for e in self.ctx.state.refund_entries(self.rec)]


class ReturnLineView:
    def __init__(self, ctx: ViewContext, rec: ReturnLineRec) -> None:
        self.ctx, self.rec = ctx, rec
        self.id = rec.id
        self.quantity = rec.quantity

    def shipmentLine(self, info: GraphQLResolveInfo) -> ShipmentLineView:
        return ShipmentLineView(self.ctx, self.ctx.state.shipment_lines[self.rec.shipment_line_id])

    def orderLine(self, info: GraphQLResolveInfo) -> OrderLineView:
        return OrderLineView(self.ctx, self.ctx.state.order_lines[self.rec.order_line_id])


class ProductView:
    def __init__(self, ctx: ViewContext, rec: ProductRec) -> None:
        self.ctx, self.rec = ctx, rec
        self.id = rec.id
        self.name = rec.name

    def variants(self, info: GraphQLResolveInfo) -> list[VariantView]:
        return [VariantView(self.ctx, self.ctx.state.variants[v]) for v in self.rec.variant_ids]


class VariantView:
    def __init__(self, ctx: ViewContext, rec: VariantRec) -> None:
        self.ctx, self.rec = ctx, rec
        self.id = rec.id
        self.name = rec.name
        self.variantNumber = rec.variant_number

    def product(self, info: GraphQLResolveInfo) -> ProductView:
        return ProductView(self.ctx, self.ctx.state.products[self.rec.product_id])

    def productSizes(self, info: GraphQLResolveInfo) -> list[SizeView]:
        return [SizeView(self.ctx, self.ctx.state.sizes[s]) for s in self.rec.size_ids]


class SizeView:
    def __init__(self, ctx: ViewContext, rec: SizeRec) -> None:
        self.ctx, self.rec = ctx, rec
        self.id = rec.id
        self.SKU = rec.sku
        self.EAN = rec.ean
        self.GTIN = rec.ean
        self.UPC = None
        self.sizeNumber = str(ctx.state.variants[rec.variant_id].size_ids.index(rec.id) + 1)
        self.description = rec.name
        self.preorder = False

    def productVariant(self, info: GraphQLResolveInfo) -> VariantView:
        return VariantView(self.ctx, self.ctx.state.variants[self.rec.variant_id])

    def stockTotals(self, info: GraphQLResolveInfo) -> dict[str, int]:
        return stock_totals(self.ctx.state.size_levels(self.rec.id))


class WarehouseView:
    def __init__(self, ctx: ViewContext, rec: WarehouseRec) -> None:
        self.ctx, self.rec = ctx, rec
        self.id = rec.id
        self.name = rec.name
        self.status = "ACTIVE"

    def _stock(self, where: dict[str, Any] | None) -> list[StockView]:
        wanted = (where or {}).get("productSizeId")
        return [
            StockView(self.ctx, self.rec, self.ctx.state.sizes[size_id])
            for size_id in sorted(self.ctx.state.sizes)
            if not wanted or size_id in wanted
        ]

    def stock(
        self,
        info: GraphQLResolveInfo,
        where: dict[str, Any] | None = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> list[StockView]:
        return page_of(self._stock(where), limit, page, maximum=200)

    def stockTotals(self, info: GraphQLResolveInfo) -> dict[str, int]:
        state = self.ctx.state
        return stock_totals([state.level(size_id, self.rec.id) for size_id in state.sizes])


class StockView:
    def __init__(self, ctx: ViewContext, warehouse: WarehouseRec, size: SizeRec) -> None:
        level = ctx.state.level(size.id, warehouse.id)
        self.productSize = SizeView(ctx, size)
        self.warehouse = WarehouseView(ctx, warehouse)
        self.physicalQuantity = level.physical
        self.freeToAllocateQuantity = level.free_to_allocate
        self.allocatedQuantity = level.allocated


class StockChangeView:
    def __init__(self, ctx: ViewContext, rec: StockChangeRec) -> None:
        self.ctx, self.rec = ctx, rec
        self.id = rec.id
        readable = ctx.state.inferred.stock_change_description_readable
        self.description = rec.description if readable else None
        self.comment = self.description

    def createdAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        return self.ctx.date(self.rec.created_at, format)

    def warehouse(self, info: GraphQLResolveInfo) -> WarehouseView:
        return WarehouseView(self.ctx, self.ctx.state.warehouses[self.rec.warehouse_id])

    def lines(self, info: GraphQLResolveInfo) -> list[StockChangeLineView]:
        return [StockChangeLineView(self.ctx, self.rec, line) for line in self.rec.lines]


class StockChangeLineView:
    def __init__(self, ctx: ViewContext, change: StockChangeRec, rec: StockChangeLineRec) -> None:
        self.ctx, self.change, self.rec = ctx, change, rec
        self.id = rec.id
        self.deliveredQuantity = rec.delta

    def productSize(self, info: GraphQLResolveInfo) -> SizeView:
        return SizeView(self.ctx, self.ctx.state.sizes[self.rec.size_id])

    def stockChange(self, info: GraphQLResolveInfo) -> StockChangeView:
        return StockChangeView(self.ctx, self.change)
