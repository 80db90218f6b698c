"""Top-level GraphQL fields: queries (filters, sorting, paging) and mutations.

Filters follow the documented `where` keys ([C]). Mutations turn
`MutationRejected` into the payload's `userErrors`; the write functions have already guaranteed
that a rejection changed nothing (but for a capture the PSP refused, whose FAILED entry the
payload carries: order_processing.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from graphql import GraphQLResolveInfo

from returnbridge.simulators.centra.order_processing import (
    CaptureFailed,
    Done,
    cancel_dtc_order,
    capture_order,
    capture_shipment,
    complete_shipment,
    confirm_order,
    create_shipment,
    release_remaining_authorization,
    set_orders_lock,
    update_dtc_order,
    update_shipment,
)
from returnbridge.simulators.centra.outcomes import MutationRejected, UserError
from returnbridge.simulators.centra.paging import connection, page_of
from returnbridge.simulators.centra.records import (
    OrderRec,
    ReturnRec,
    ShipmentRec,
    StockChangeRec,
)
from returnbridge.simulators.centra.returns_ops import (
    complete_return,
    create_return,
    delete_return,
    uncomplete_return,
)
from returnbridge.simulators.centra.stock_ops import change_stock, set_stock
from returnbridge.simulators.centra.views import (
    OrderView,
    PaymentEntryView,
    ProductView,
    ReturnView,
    ShipmentView,
    SizeView,
    StockChangeLineView,
    StockChangeView,
    ViewContext,
    WarehouseView,
)

Where = dict[str, Any] | None
RateLimitRows = Callable[[], list[dict[str, Any]]]


def _in_range(value: datetime, bounds: dict[str, Any] | None) -> bool:
    if not bounds:
        return True
    low, high = bounds.get("from"), bounds.get("to")
    return (low is None or value >= low) and (high is None or value <= high)


def _matches(value: Any, wanted: list[Any] | None) -> bool:
    return not wanted or value in wanted


def filter_orders(ctx: ViewContext, where: Where) -> list[OrderRec]:
    w = where or {}
    if w.get("storeType") == "WHOLESALE":
        return []  # the simulated environment has one DTC store
    return [
        o
        for o in ctx.state.orders.values()
        if _matches(o.number, w.get("number"))
        and _matches(o.id, w.get("id"))
        and _matches(o.status, w.get("status"))
        and _matches(o.customer_id, w.get("customerId"))
        and _in_range(o.created_at, w.get("createdAt"))
        and _in_range(o.created_at, w.get("orderDate"))
    ]


def sort_orders(orders: list[OrderRec], sort: list[str] | None) -> list[OrderRec]:
    keys: dict[str, Callable[[OrderRec], Any]] = {
        "id": lambda o: o.number,  # the hash id has no order; Centra's internal id follows number
        "number": lambda o: o.number,
        "createdAt": lambda o: (o.created_at, o.number),
        "orderDate": lambda o: (o.created_at, o.number),
    }
    result = sorted(orders, key=lambda o: o.number)
    for spec in reversed(sort or []):
        field, _, direction = spec.rpartition("_")
        result.sort(key=keys[field], reverse=direction == "DESC")
    return result


def filter_returns(ctx: ViewContext, where: Where, sort: list[str] | None) -> list[ReturnRec]:
    w = where or {}
    state = ctx.state
    if w.get("storeType") == "WHOLESALE":
        return []
    found = [
        r
        for r in state.returns.values()
        if _matches(r.id, w.get("id"))
        and _matches(state.orders[r.order_number].customer_id, w.get("customerId"))
        and _matches(r.order_number, w.get("orderNumber"))
        and _matches(r.external_id, w.get("externalId"))
        and _in_range(r.created_at, w.get("createdAt"))
    ]
    for spec in reversed(sort or []):
        field, _, direction = spec.rpartition("_")
        key: Callable[[ReturnRec], Any] = (
            (lambda r: r.id) if field == "id" else (lambda r: (r.created_at, r.id))
        )
        found.sort(key=key, reverse=direction == "DESC")
    return found


def filter_stock_changes(ctx: ViewContext, where: Where) -> list[StockChangeRec]:
    w = where or {}
    description = w.get("description")
    return [
        c
        for c in ctx.state.stock_changes.values()
        if _matches(c.id, w.get("id"))
        and (description is None or c.description == description)
        and _matches(c.warehouse_id, w.get("warehouseId"))
    ]


class Counters:
    def __init__(self, ctx: ViewContext) -> None:
        self.ctx = ctx

    def orders(self, info: GraphQLResolveInfo, where: Where = None) -> int:
        return len(filter_orders(self.ctx, where))

    def returns(self, info: GraphQLResolveInfo, where: Where = None) -> int:
        return len(filter_returns(self.ctx, where, None))

    def products(self, info: GraphQLResolveInfo, where: Where = None) -> int:
        ids = (where or {}).get("id")
        return sum(1 for p in self.ctx.state.products if _matches(p, ids))


def _payload(**fields: Any) -> dict[str, Any]:
    return {**fields, "userErrors": [], "userWarnings": []}


def _rejected(exc: MutationRejected, **empty: Any) -> dict[str, Any]:
    errors = [{"message": e.message, "path": e.path} for e in exc.errors]
    return {**empty, "userErrors": errors, "userWarnings": []}


def _messages(found: list[UserError]) -> list[dict[str, Any]]:
    return [{"message": e.message, "path": e.path} for e in found]


class Root:
    """The root value for both operation types; one method per top-level field."""

    def __init__(self, ctx: ViewContext, rate_limit_rows: RateLimitRows) -> None:
        self.ctx = ctx
        self._rate_limit_rows = rate_limit_rows
        self.inferred = ctx.state.inferred

    # ---------------------------------------------------------------- queries

    def orders(
        self,
        info: GraphQLResolveInfo,
        where: Where = None,
        sort: list[str] | None = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> list[OrderView]:
        found = sort_orders(filter_orders(self.ctx, where), sort)
        chosen = page_of(
            found,
            limit,
            page,
            maximum=self.inferred.orders_limit_max,
            default=self.inferred.orders_limit_default,
        )
        return [OrderView(self.ctx, o) for o in chosen]

    def orderConnection(
        self,
        info: GraphQLResolveInfo,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        where: Where = None,
        sort: list[str] | None = None,
    ) -> dict[str, Any]:
        found = sort_orders(filter_orders(self.ctx, where), sort)
        return connection(
            found,
            "number",
            lambda o: o.number,
            lambda o: OrderView(self.ctx, o),
            first=first,
            after=after,
            last=last,
            before=before,
            maximum=self.inferred.orders_limit_max,
            default=self.inferred.orders_limit_default,
            descending=bool(sort and sort[0].endswith("_DESC")),  # sort[0] orders the list
        )

    def order(self, info: GraphQLResolveInfo, id: str) -> OrderView | None:
        number = self.ctx.state.order_by_hash.get(id)
        return None if number is None else OrderView(self.ctx, self.ctx.state.orders[number])

    def returns(
        self,
        info: GraphQLResolveInfo,
        where: Where = None,
        sort: list[str] | None = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> list[ReturnView]:
        found = filter_returns(self.ctx, where, sort)
        chosen = page_of(found, limit, page, maximum=self.inferred.returns_limit_max)
        return [ReturnView(self.ctx, r) for r in chosen]

    def warehouses(
        self,
        info: GraphQLResolveInfo,
        where: Where = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> list[WarehouseView]:
        ids = (where or {}).get("id")
        found = [w for wid, w in self.ctx.state.warehouses.items() if _matches(wid, ids)]
        return [WarehouseView(self.ctx, w) for w in page_of(found, limit, page, maximum=200)]

    def products(
        self,
        info: GraphQLResolveInfo,
        where: Where = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> list[ProductView]:
        ids = (where or {}).get("id")
        found = [p for pid, p in self.ctx.state.products.items() if _matches(pid, ids)]
        return [ProductView(self.ctx, p) for p in page_of(found, limit, page, maximum=200)]

    def productSizes(
        self,
        info: GraphQLResolveInfo,
        where: Where = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> list[SizeView]:
        w = where or {}
        found = [
            s
            for s in self.ctx.state.sizes.values()
            if _matches(s.id, w.get("id"))
            and _matches(s.sku, w.get("SKU"))
            and _matches(s.ean, w.get("EAN"))
        ]
        return [SizeView(self.ctx, s) for s in page_of(found, limit, page, maximum=200)]

    def stockChangeConnection(
        self,
        info: GraphQLResolveInfo,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        where: Where = None,
    ) -> dict[str, Any]:
        return connection(
            filter_stock_changes(self.ctx, where),
            "id",
            lambda c: c.id,
            lambda c: StockChangeView(self.ctx, c),
            first=first,
            after=after,
            last=last,
            before=before,
            maximum=200,
        )

    def stockChanges(
        self,
        info: GraphQLResolveInfo,
        where: Where = None,
        limit: int | None = None,
        page: int | None = None,
    ) -> list[StockChangeView]:
        found = filter_stock_changes(self.ctx, where)
        return [StockChangeView(self.ctx, c) for c in page_of(found, limit, page, maximum=200)]

    def stockChangeLines(
        self, info: GraphQLResolveInfo, limit: int | None = None, page: int | None = None
    ) -> list[StockChangeLineView]:
        lines = [
            StockChangeLineView(self.ctx, change, line)
            for change in self.ctx.state.stock_changes.values()
            for line in change.lines
        ]
        return page_of(lines, limit, page, maximum=200)

    def counters(self, info: GraphQLResolveInfo) -> Counters:
        return Counters(self.ctx)

    def rateLimits(self, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
        return self._rate_limit_rows()

    # ---------------------------------------------------------------- mutations

    def createReturn(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            ret = create_return(self.ctx.state, input)
        except MutationRejected as exc:
            return _rejected(exc, **{"return": None})
        return _payload(**{"return": ReturnView(self.ctx, ret)})

    def completeReturn(
        self,
        info: GraphQLResolveInfo,
        id: int,
        input: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            ret = complete_return(self.ctx.state, id)
        except MutationRejected as exc:
            return _rejected(exc, **{"return": None})
        return _payload(**{"return": ReturnView(self.ctx, ret)})

    def uncompleteReturn(self, info: GraphQLResolveInfo, id: int) -> dict[str, Any]:
        try:
            ret = uncomplete_return(self.ctx.state, id)
        except MutationRejected as exc:
            return _rejected(exc, **{"return": None})
        return _payload(**{"return": ReturnView(self.ctx, ret)})

    def deleteReturn(self, info: GraphQLResolveInfo, id: int) -> dict[str, Any]:
        try:
            ret = delete_return(self.ctx.state, id)
        except MutationRejected as exc:
            return _rejected(exc, **{"return": None})
        return _payload(**{"return": ReturnView(self.ctx, ret)})  # the return as it was [C-ex]

    def changeStock(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            change = change_stock(self.ctx.state, input)
        except MutationRejected as exc:
            return _rejected(exc, stockChange=None)
        return _payload(stockChange=StockChangeView(self.ctx, change))

    def setStock(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            changes = set_stock(self.ctx.state, input)
        except MutationRejected as exc:
            return _rejected(exc, stockChanges=[])
        return _payload(stockChanges=[StockChangeView(self.ctx, c) for c in changes])

    # ------------------------------------------------ order and shipment processing

    def _entries(self, done: Done[Any] | CaptureFailed) -> dict[str, Any]:
        entry = PaymentEntryView(self.ctx, done.entry) if done.entry is not None else None
        return {"paymentHistoryEntry": entry, "paymentHistoryEntries": [entry] if entry else []}

    def _order_done(self, done: Done[OrderRec], **extra: Any) -> dict[str, Any]:
        return {
            "order": OrderView(self.ctx, done.value),
            **extra,
            "userErrors": [],
            "userWarnings": _messages(done.warnings),
        }

    def _shipment_done(self, done: Done[ShipmentRec], **extra: Any) -> dict[str, Any]:
        return {
            "shipment": ShipmentView(self.ctx, done.value),
            **extra,
            "userErrors": [],
            "userWarnings": _messages(done.warnings),
        }

    def updateDirectToConsumerOrder(
        self, info: GraphQLResolveInfo, order: dict[str, Any], input: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            done = update_dtc_order(self.ctx.state, order, input)
        except MutationRejected as exc:
            return _rejected(exc, order=None)
        return self._order_done(done)

    def cancelDirectToConsumerOrder(
        self, info: GraphQLResolveInfo, id: str, input: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            done = cancel_dtc_order(self.ctx.state, id, input)
        except MutationRejected as exc:
            return _rejected(exc, order=None, paymentHistoryEntry=None)
        entry = self._entries(done)["paymentHistoryEntry"]
        return self._order_done(done, paymentHistoryEntry=entry)

    def confirmOrder(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            done = confirm_order(self.ctx.state, input)
        except MutationRejected as exc:
            return _rejected(exc, order=None)
        return self._order_done(done)

    def setOrdersLock(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            done = set_orders_lock(self.ctx.state, input)
        except MutationRejected as exc:
            return _rejected(exc, orders=[])
        return _payload(orders=[OrderView(self.ctx, o) for o in done.value])

    def captureOrder(self, info: GraphQLResolveInfo, order: dict[str, Any]) -> dict[str, Any]:
        try:
            done = capture_order(self.ctx.state, order)
        except CaptureFailed as failed:
            return _rejected(failed, order=None, **self._entries(failed))
        except MutationRejected as exc:
            return _rejected(exc, order=None, **self._entries(Done(None)))
        return self._order_done(done, **self._entries(done))

    def releaseRemainingOrderAuthorization(
        self, info: GraphQLResolveInfo, order: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            done = release_remaining_authorization(self.ctx.state, order)
        except MutationRejected as exc:
            return _rejected(exc, order=None, **self._entries(Done(None)))
        return self._order_done(done, **self._entries(done))

    def createShipment(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> dict[str, Any]:
        try:
            done = create_shipment(self.ctx.state, input)
        except MutationRejected as exc:
            return _rejected(exc, shipment=None)
        return self._shipment_done(done)

    def updateShipment(
        self, info: GraphQLResolveInfo, id: int, input: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            done = update_shipment(self.ctx.state, id, input)
        except MutationRejected as exc:
            return _rejected(exc, shipment=None)
        return self._shipment_done(done)

    def captureShipment(self, info: GraphQLResolveInfo, id: int) -> dict[str, Any]:
        try:
            done = capture_shipment(self.ctx.state, id)
        except CaptureFailed as failed:
            return _rejected(failed, shipment=None, **self._entries(failed))
        except MutationRejected as exc:
            return _rejected(exc, shipment=None, **self._entries(Done(None)))
        return self._shipment_done(done, **self._entries(done))

    def completeShipment(
        self, info: GraphQLResolveInfo, id: int, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            done = complete_shipment(self.ctx.state, id, input)
        except MutationRejected as exc:
            return _rejected(exc, shipment=None)
        return self._shipment_done(done)
