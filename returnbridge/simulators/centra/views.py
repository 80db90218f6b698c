"""GraphQL views over the simulator's records: one small class per Centra type.

graphql-core's default resolver reads an attribute of the parent object and, when it is callable,
calls it with `(info, **arguments)`. So a plain attribute serves a field without arguments and a
method serves a field with them (`lines(includeFullyCancelled)`, `createdAt(format)`...). Views
are built per request and hold no state of their own.

What the simulator cannot know about a scenario shipment (carrier, tracking numbers) is made up,
[INF]: shipped shipments went with one simulated carrier in one package, and were paid and
captured when they shipped. A shipment an order-processing mutation made or changed
(`ShipmentRec.processed`) shows what those mutations recorded instead. Order.updatedAt is the
latest of the order's dated records and of the last write that touched it
(`stamp_order_changes`, fed by the state's change events).
"""

from __future__ import annotations

from collections.abc import Callable
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
CURRENCY_NAMES = {  # [INF] Currency.name of the simulated currencies
    "SEK": "Swedish krona",
    "EUR": "Euro",
    "USD": "US dollar",
    "GBP": "Pound sterling",
    "NOK": "Norwegian krone",
    "DKK": "Danish krone",
}
# [INF] the state of the simulated address in markets whose countries have states (id, name, code)
MARKET_STATES = {
    "US": (1, "New York", "NY"),
    "CA": (2, "Ontario", "ON"),
    "AU": (3, "Victoria", "VIC"),
}
# [INF] the carrier of shipped scenario shipments
CARRIER: dict[str, str | None] = {"carrierName": "Simulated Carrier", "serviceName": "Standard"}
RETURN_STATUS = "ACTIVE"  # [INF] generic Return.status of every return that exists


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
            "currency": {
                "id": CURRENCY_IDS.get(currency, 99),
                "code": currency,
                "name": CURRENCY_NAMES.get(currency, currency),
            },
            "conversionRate": 1.0,
            "formattedValue": f"{amount:.2f} {currency}",
        }


def _names(email: str) -> tuple[str, str]:
    local = email.split("@", 1)[0]
    first, _, last = local.replace("_", ".").partition(".")
    return first.capitalize(), (last.capitalize() or "Customer")


def customer(ctx: ViewContext, order: OrderRec) -> dict[str, Any]:
    """The order's customer; updateDirectToConsumerOrder's customerInfo overrides name and
    e-mail as kept on the order ([INF])."""
    first, last = _names(order.customer_email)
    found = {
        "id": order.customer_id,
        "email": order.customer_email,
        "firstName": first,
        "lastName": last,
    }
    found.update({k: v for k, v in order.customer_info.items() if v is not None})
    return found


def address(ctx: ViewContext, order: OrderRec) -> dict[str, Any]:
    """The simulated customer's address (shipping = billing = shipments' address)."""
    first, last = _names(order.customer_email)
    code = order.market
    state = MARKET_STATES.get(code)
    return {
        "firstName": first,
        "lastName": last,
        "address1": "Simulated street 1",
        "city": "Simulated city",
        "zipCode": "12345",
        "stateOrProvince": state[1] if state else None,
        "country": {"id": ctx.state.market_id(code), "name": code, "code": code},
        "state": {"id": state[0], "name": state[1], "code": state[2]} if state else None,
        "email": order.customer_email,
    }


def order_address(ctx: ViewContext, order: OrderRec, billing: bool = False) -> dict[str, Any]:
    """The simulated address with what updateDirectToConsumerOrder changed in it."""
    found = address(ctx, order)
    found.update(order.billing_address if billing else order.shipping_address)
    return found


def simulated_tracking(ship: ShipmentRec) -> tuple[str, str]:
    """(tracking number, return tracking number) made up for a shipped scenario shipment."""
    return f"SIM{ship.id:010d}", f"SIMR{ship.id:09d}"


def order_updated_at(state: CentraState, order: OrderRec) -> datetime:
    """Order.updatedAt: the last write stamped on the order, or any later dated record of it."""
    times = [order.created_at, *([order.updated_at] if order.updated_at else [])]
    for ship in order.shipments:
        times += [ship.created_at, *([ship.shipped_at] if ship.shipped_at else [])]
    times += [entry.created_at for entry in order.payments]
    for ret in state.returns.values():
        if ret.order_number == order.number:
            times += [ret.created_at, *([ret.completed_at] if ret.completed_at else [])]
    return max(times)


def stamp_order_changes(state: CentraState) -> Callable[[str, str, int], None]:
    """A state event sink that stamps `updated_at` on the order an order or return event is
    about (a deleted return's order is stamped by `delete_return` itself)."""

    def stamp(object_type: str, action: str, object_id: int) -> None:
        number: int | None = None
        if object_type == "order":
            number = object_id
        elif object_type == "return" and object_id in state.returns:
            number = state.returns[object_id].order_number
        if number is not None and number in state.orders:
            state.orders[number].updated_at = state.clock.now()

    return stamp


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
        self.isOnHold = rec.is_on_hold
        self.isLocked = rec.is_locked
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

    def updatedAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        return self.ctx.date(order_updated_at(self.ctx.state, self.rec), format)

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

    def shippingAddress(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        return order_address(self.ctx, self.rec)

    def billingAddress(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        return order_address(self.ctx, self.rec, billing=True)

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
        self.quantity = rec.quantity - rec.cancelled  # cancelling lines decreases it [C-ex]
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
        self.isShipped = rec.shipped
        self.adminUser: dict[str, Any] | None = None  # made via the API or the scenario [INF]
        self.discountsApplied: list[Any] = []
        self.shipmentPlugin: dict[str, Any] | None = None
        if rec.processed:
            self._processed(rec)
            return
        tracking, return_tracking = simulated_tracking(rec)
        self.isGoodToGo = True
        self.isPaid = rec.shipped
        self.isCaptured = rec.shipped
        self.numberOfPackages = 1 if rec.shipped else 0
        self.trackingNumber: str | None = tracking if rec.shipped else None
        self.returnTrackingNumber: str | None = return_tracking if rec.shipped else None
        self.carrierInformation: dict[str, str | None] | None = CARRIER if rec.shipped else None
        self.internalShippingCost: dict[str, Any] | None = None  # not simulated
        self.additionalMessage: str | None = None

    def _processed(self, rec: ShipmentRec) -> None:
        """What the order-processing mutations recorded on the shipment."""
        currency = self.ctx.state.orders[rec.order_number].currency
        self.isGoodToGo = rec.good_to_go
        self.isPaid = rec.paid_at is not None
        self.isCaptured = rec.captured_at is not None
        self.numberOfPackages = rec.packages
        self.trackingNumber = rec.tracking_number
        self.returnTrackingNumber = rec.return_tracking_number
        self.carrierInformation = (
            {"carrierName": rec.carrier, "serviceName": rec.service}
            if rec.carrier is not None or rec.service is not None
            else None
        )
        self.internalShippingCost = self.ctx.money(rec.internal_shipping_cost or ZERO, currency)
        self.additionalMessage = rec.additional_message

    def createdAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        return self.ctx.date(self.rec.created_at, format)

    def updatedAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        rec = self.rec
        if rec.processed:
            return self.ctx.date(rec.updated_at or rec.created_at, format)
        return self.ctx.date(rec.shipped_at or rec.created_at, format)

    def shippedAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        return self.ctx.date(self.rec.shipped_at, format)

    def paidAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        rec = self.rec
        return self.ctx.date(rec.paid_at if rec.processed else rec.shipped_at, format)

    def capturedAt(self, info: GraphQLResolveInfo, format: str | None = None) -> str | None:
        rec = self.rec
        return self.ctx.date(rec.captured_at if rec.processed else rec.shipped_at, format)

    def shippingAddress(self, info: GraphQLResolveInfo) -> dict[str, Any]:
        return order_address(self.ctx, self.ctx.state.orders[self.rec.order_number])

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
        self.returnStatus = ctx.state.return_status(rec)
        self.status = RETURN_STATUS
        self.totalQuantity = sum(line.quantity for line in rec.lines)
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
        self._line = ctx.state.order_lines[rec.order_line_id]
        self._currency = ctx.state.orders[self._line.order_number].currency

    def _value(self, amount: Decimal, including_tax: bool) -> dict[str, Any]:
        rate = self._line.tax_percent
        return self.ctx.money(
            amount if including_tax else amount * 100 / (100 + rate), self._currency
        )

    def unitPrice(self, info: GraphQLResolveInfo, includingTax: bool = True) -> dict[str, Any]:
        return self._value(self._line.unit_price, includingTax)

    def lineValue(self, info: GraphQLResolveInfo, includingTax: bool = True) -> dict[str, Any]:
        return self._value(self._line.value(self.rec.quantity), includingTax)

    def appliedTaxRules(self, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
        """One VAT rule per line, included in its price ([INF] rule id and name)."""
        rate, m = self._line.tax_percent, self.ctx.money
        value = self._line.value(self.rec.quantity)
        percent = format(rate.normalize(), "f")
        return [
            {
                "rule": {
                    "taxId": f"vat-{percent}",
                    "taxName": f"VAT {percent}%",
                    "taxPercent": float(rate),
                },
                "taxAdded": m(ZERO, self._currency),
                "taxDeducted": m(ZERO, self._currency),
                "taxIncluded": m(value * rate / (100 + rate), self._currency),
            }
        ]

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
