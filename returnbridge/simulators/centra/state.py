"""The simulated Centra environment: every object, built from a scenario, plus derived reads.

Writes live in `returns_ops`, `stock_ops`, `orders_ops` and `order_processing`; each validates
completely before it touches anything, so a rejected write (non-empty `userErrors`, or an Order API
error) leaves the state exactly as it was ([C] [ERR]; one documented exception: a capture the
payment provider refuses leaves its FAILED entry, see `order_processing`). The simulator holds one
lock around every request that reads or writes the state, so requests never interleave half-way.

Modelling choices, all [INF]:
- A SKU `TEE-BLK-M` is the size `M` of variant `TEE-BLK`; a SKU without a dash is the only size
  ("One Size") of its own variant. One product per variant.
- The scenario's stock figures are physical quantities with nothing allocated; scenario orders do
  not reserve stock (their stock left with their shipments, or is not modelled).
- Scenario order lines are treated as allocated from the first warehouse that is not the returns
  warehouse; `releaseItemsBackToWarehouse` sends returned items there.
- An order's shipping charge belongs to its first shipment. Captured amount = shipped goods plus
  that shipping, captured when the shipment shipped.
- Orders in PENDING, CONFIRMED or CANCELLED without explicit `shipments` have no shipments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from returnbridge.connectors.centra.inferred import CentraInferred
from returnbridge.scenario import CentraSection, Scenario
from returnbridge.scenario import Order as ScenarioOrder
from returnbridge.scenario import Shipment as ScenarioShipment
from returnbridge.simulators.centra.records import (
    ZERO,
    AllocationRec,
    IdSequence,
    OrderLineRec,
    OrderRec,
    PaymentEntryRec,
    ProductRec,
    ReturnRec,
    ShipmentLineRec,
    ShipmentRec,
    SizeRec,
    StockChangeRec,
    StockLevel,
    VariantRec,
    WarehouseRec,
    money,
    order_hash_id,
)
from returnbridge.simulators.clock import SimClock

EventSink = Callable[[str, str, int], None]
"""Receives (type, action, id) for every change, e.g. ("return", "insert", 3)."""

PAYMENT_METHOD = "dummy-psp"  # [INF] name of the simulated payment plugin
CURRENCY_IDS = {"SEK": 1, "EUR": 2, "USD": 3, "GBP": 4, "NOK": 5, "DKK": 6}  # [INF] Currency.id
NO_SHIPMENTS_BY_DEFAULT = {"PENDING", "CONFIRMED", "CANCELLED"}


def split_sku(sku: str) -> tuple[str, str]:
    """(variant number, size name) of a SKU: `TEE-BLK-M` -> (`TEE-BLK`, `M`). [INF]"""
    head, sep, tail = sku.rpartition("-")
    return (head, tail) if sep and head and tail else (sku, "One Size")


class CentraState:
    """Everything the simulated Centra holds. Build with `from_scenario`."""

    def __init__(self, inferred: CentraInferred, clock: SimClock) -> None:
        self.inferred = inferred
        self.clock = clock
        self.ids = IdSequence()
        self.plan = "growth"
        self.returns_warehouse = 2
        self.psp_settle_seconds = 60.0
        # refund requests an asynchronous PSP has not answered, by entry id (checked on every
        # request: kept apart so that costs nothing when there are none)
        self.awaiting_psp: dict[int, PaymentEntryRec] = {}
        self.products: dict[int, ProductRec] = {}
        self.variants: dict[int, VariantRec] = {}
        self.sizes: dict[int, SizeRec] = {}
        self.size_by_sku: dict[str, int] = {}
        self.size_by_ean: dict[str, int] = {}
        self.warehouses: dict[int, WarehouseRec] = {}
        self.stock: dict[tuple[int, int], StockLevel] = {}
        self.orders: dict[int, OrderRec] = {}
        self.order_by_hash: dict[str, int] = {}
        self.shipments: dict[int, ShipmentRec] = {}
        self.shipment_lines: dict[int, ShipmentLineRec] = {}
        self.order_lines: dict[int, OrderLineRec] = {}
        self.returns: dict[int, ReturnRec] = {}
        self.stock_changes: dict[int, StockChangeRec] = {}
        self.customers: dict[str, int] = {}
        self.markets: dict[str, int] = {}
        self._sinks: list[EventSink] = []

    # ----------------------------------------------------------------------------- building

    @classmethod
    def from_scenario(
        cls, scenario: Scenario, inferred: CentraInferred, clock: SimClock
    ) -> CentraState:
        state = cls(inferred, clock)
        if scenario.now is not None:
            clock.set(scenario.now)
        state._load(scenario.centra)
        return state

    def _load(self, section: CentraSection) -> None:
        self.plan = section.plan
        self.returns_warehouse = section.returns_warehouse
        self.psp_settle_seconds = section.psp_settle_seconds
        for wh in section.warehouses:
            self.warehouses[wh.id] = WarehouseRec(wh.id, wh.name)
        for product in section.products:
            size = self._add_size(product.sku, product.ean)
            for wid in self.warehouses:
                self.stock[(size.id, wid)] = StockLevel(physical=product.stock.get(wid, 0))
        for order in section.orders:
            self._load_order(order)
        for refund in section.manual_refunds:
            if not refund.after_sync:
                self.manual_refund(
                    refund.order_number, refund.amount, at=self.clock.now() - timedelta(days=1)
                )

    def manual_refund(
        self, order_number: int, amount: Decimal, *, at: datetime | None = None
    ) -> PaymentEntryRec:
        """A refund someone made directly in Centra on the order (not on any return), through
        the PSP. KeyError for an unknown order."""
        rec = self.orders[order_number]
        entry = PaymentEntryRec(
            id=self.ids.next("payment"),
            order_number=rec.number,
            created_at=at or self.clock.now(),
            status="SUCCESS",
            entry_type=self.inferred.payment_entry_type_refund,
            value=money(amount),
            payment_method=PAYMENT_METHOD,
            external_reference=f"manual-refund-{rec.number}-{len(rec.payments)}",
            initial=True,  # not returnbridge's: someone else's, from the scenario
        )
        rec.payments.append(entry)
        return entry

    def _add_size(self, sku: str, ean: str | None) -> SizeRec:
        variant_number, size_name = split_sku(sku)
        variant = next(
            (v for v in self.variants.values() if v.variant_number == variant_number), None
        )
        if variant is None:
            product = ProductRec(self.ids.next("product"), variant_number)
            self.products[product.id] = product
            variant = VariantRec(
                self.ids.next("variant"), variant_number, variant_number, product.id
            )
            self.variants[variant.id] = variant
            product.variant_ids.append(variant.id)
        size = SizeRec(self.ids.next("size"), sku, ean, size_name, variant.id, variant.product_id)
        self.sizes[size.id] = size
        variant.size_ids.append(size.id)
        self.size_by_sku[sku] = size.id
        if ean:
            self.size_by_ean[ean] = size.id
        return size

    def _origin_warehouse(self) -> int:
        others = [wid for wid in self.warehouses if wid != self.returns_warehouse]
        return (others or list(self.warehouses))[0]

    def customer_id(self, email: str) -> int:
        if email not in self.customers:
            self.customers[email] = self.ids.next("customer")
        return self.customers[email]

    def market_id(self, market: str) -> int:
        if market not in self.markets:
            self.markets[market] = len(self.markets) + 1
        return self.markets[market]

    def _load_order(self, order: ScenarioOrder) -> None:
        created = order.created_at or (self.clock.now() - timedelta(days=7))
        rec = OrderRec(
            number=order.number,
            id=order_hash_id(order.number),
            status=order.status,
            currency=order.currency,
            market=order.market,
            customer_email=order.customer_email,
            customer_id=self.customer_id(order.customer_email),
            created_at=created,
            shipping=money(order.shipping),
            lines=[],
            refund_gateway_fails=order.refund_gateway_fails,
            psp_async=order.psp == "async",
        )
        self.market_id(order.market)
        origin = self._origin_warehouse()
        for line in order.lines:
            line_rec = OrderLineRec(
                id=self.ids.next("order_line"),
                order_number=order.number,
                size_id=self.size_by_sku[line.sku],
                quantity=line.quantity,
                unit_price=money(line.unit_price),
                tax_percent=line.tax_percent,
            )
            line_rec.allocations.append(
                AllocationRec(self.ids.next("allocation"), origin, line.quantity)
            )
            rec.lines.append(line_rec)
            self.order_lines[line_rec.id] = line_rec
        shipments: list[ScenarioShipment] = []
        if order.shipments is not None or order.status not in NO_SHIPMENTS_BY_DEFAULT:
            shipments = order.effective_shipments()
        for n, shipment in enumerate(shipments, start=1):
            ship = ShipmentRec(
                id=self.ids.next("shipment"),
                number=f"{order.number}-{n}",
                order_number=order.number,
                created_at=created + timedelta(hours=n),
                shipped_at=created + timedelta(days=1, hours=n) if shipment.shipped else None,
                lines=[],
                shipping=rec.shipping if n == 1 else ZERO,
            )
            for sline in shipment.lines:
                sl = ShipmentLineRec(
                    self.ids.next("shipment_line"), ship.id, rec.lines[sline.line - 1].id,
                    sline.quantity,
                )  # fmt: skip
                ship.lines.append(sl)
                self.shipment_lines[sl.id] = sl
            rec.shipments.append(ship)
            self.shipments[ship.id] = ship
        self._add_initial_payments(rec)
        self.orders[rec.number] = rec
        self.order_by_hash[rec.id] = rec.number

    def _add_initial_payments(self, rec: OrderRec) -> None:
        def entry(entry_type: str, value: Decimal, when: datetime) -> PaymentEntryRec:
            return PaymentEntryRec(
                id=self.ids.next("payment"),
                order_number=rec.number,
                created_at=when,
                status="SUCCESS",
                entry_type=entry_type,
                value=value,
                payment_method=PAYMENT_METHOD,
                external_reference=f"psp-{entry_type.lower()}-{rec.number}-{len(rec.payments)}",
                params_json="{}",
                initial=True,
            )

        if rec.grand_total() > 0:
            rec.payments.append(entry("AUTH", rec.grand_total(), rec.created_at))
        for ship in rec.shipments:
            if ship.shipped_at is None:
                continue
            captured = self.shipment_goods_value(ship) + ship.shipping
            if captured > 0:
                rec.payments.append(entry("CAPTURE", money(captured), ship.shipped_at))

    # ----------------------------------------------------------------------------- events

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def emit(self, object_type: str, action: str, object_id: int) -> None:
        for sink in self._sinks:
            sink(object_type, action, object_id)

    # ----------------------------------------------------------------------------- reads

    def level(self, size_id: int, warehouse_id: int) -> StockLevel:
        return self.stock.setdefault((size_id, warehouse_id), StockLevel())

    def size_levels(self, size_id: int) -> list[StockLevel]:
        return [self.level(size_id, wid) for wid in self.warehouses]

    def shipment_goods_value(self, ship: ShipmentRec) -> Decimal:
        return money(
            sum((self.order_lines[sl.order_line_id].value(sl.quantity) for sl in ship.lines), ZERO)
        )

    def shipped_quantity(self, line: OrderLineRec) -> int:
        order = self.orders[line.order_number]
        return sum(
            sl.quantity
            for ship in order.shipments
            if ship.shipped
            for sl in ship.lines
            if sl.order_line_id == line.id
        )

    def returned_quantity_of_order_line(self, line_id: int) -> int:
        return sum(
            rl.quantity for ret in self.returns.values() for rl in ret.lines
            if rl.order_line_id == line_id
        )  # fmt: skip

    def returned_quantity_of_shipment_line(self, shipment_line_id: int) -> int:
        return sum(
            rl.quantity for ret in self.returns.values() for rl in ret.lines
            if rl.shipment_line_id == shipment_line_id
        )  # fmt: skip

    def returns_of_shipment(self, shipment_id: int) -> list[ReturnRec]:
        return [r for r in self.returns.values() if r.shipment_id == shipment_id]

    def return_products_value(self, ret: ReturnRec) -> Decimal:
        return money(
            sum((self.order_lines[rl.order_line_id].value(rl.quantity) for rl in ret.lines), ZERO)
        )

    def return_refund_amount(self, ret: ReturnRec) -> Decimal:
        """Products + shipping + handling - return cost ([C] REST `refundPayment`)."""
        total = self.return_products_value(ret) + ret.shipping + ret.handling - ret.return_cost
        return money(max(total, ZERO))

    def refund_entries(self, ret: ReturnRec) -> list[PaymentEntryRec]:
        return [p for p in self.orders[ret.order_number].payments if p.return_id == ret.id]

    def refunded(self, ret: ReturnRec) -> bool:
        """A refund of `ret` went through (a pending request is not yet a refund)."""
        return any(
            p.status == "SUCCESS" and p.entry_type == self.inferred.payment_entry_type_refund
            for p in self.refund_entries(ret)
        )

    def pending_refund_requests(self) -> list[PaymentEntryRec]:
        """Asynchronous PSP refund requests the PSP has not answered yet, oldest first."""
        return [self.awaiting_psp[i] for i in sorted(self.awaiting_psp)]

    def settle_refunds(
        self, *, now: bool = False, order_number: int | None = None
    ) -> list[PaymentEntryRec]:
        """The asynchronous PSP answers its pending refund requests whose settle time has come
        on the simulator clock (all of them with `now`; only `order_number`'s if given): a
        `REFUND` SUCCESS entry, or `REFUND_FAILED` on orders whose scenario says
        `refund_gateway_fails`, with the request's PSP reference; the request takes the same
        status; a refunded return completes; Centra's order webhook fires. [INF] entries
        written on settlement. Returns the settlement entries written."""
        due = self.clock.now() - timedelta(seconds=self.psp_settle_seconds)
        written = []
        for request in self.pending_refund_requests():
            if order_number is not None and request.order_number != order_number:
                continue
            if now or request.created_at <= due:
                written.append(self._settle(request))
        return written

    def _settle(self, request: PaymentEntryRec) -> PaymentEntryRec:
        order = self.orders[request.order_number]
        failed = order.refund_gateway_fails
        entry = PaymentEntryRec(
            id=self.ids.next("payment"),
            order_number=order.number,
            created_at=self.clock.now(),
            status="FAILED" if failed else "SUCCESS",
            entry_type=(
                self.inferred.payment_entry_type_refund_failed
                if failed
                else self.inferred.payment_entry_type_refund
            ),
            value=request.value,
            payment_method=request.payment_method,
            external_reference=request.external_reference,
            params_json=(
                '{"eventCode":"REFUND","success":"false","reason":"simulated gateway failure"}'
                if failed
                else '{"eventCode":"REFUND","success":"true"}'
            ),
            return_id=request.return_id,
            via_psp=True,
            settles=request.id,
        )
        order.payments.append(entry)
        request.status = entry.status
        request.settled_by = entry.id
        del self.awaiting_psp[request.id]
        self.emit("order", "update", order.number)
        ret = self.returns.get(request.return_id) if request.return_id is not None else None
        if ret is not None and not failed and not ret.completed:
            ret.completed_at = self.clock.now()
            self.emit("return", "update", ret.id)
        return entry

    def return_status(self, ret: ReturnRec) -> str:
        return (
            self.inferred.return_status_completed
            if ret.completed
            else self.inferred.return_status_pending
        )

    def all_payments(self) -> Iterable[PaymentEntryRec]:
        for order in self.orders.values():
            yield from order.payments
