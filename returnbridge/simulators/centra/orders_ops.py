"""Order API (REST) writes: create an order, and complete / refund a return ([C] [OA-*]).

Refunds exist only here: the Integration API has no refund mutation ([C]). A refund is for
products + shipping + handling - return cost. On an order with a synchronous PSP it writes a
REFUND payment-history entry on the return's order, SUCCESS, or FAILED on orders whose scenario
says `refund_gateway_fails`. On an order with an asynchronous PSP (scenario `psp: async`) it
writes a REFUND_REQUEST entry left PENDING, which the PSP settles later
(`CentraState.settle_refunds`). [INF] entry types and statuses. A return is refunded at most once
("once you refund the money - that's it", [C]): a second refund of a refunded return is refused
(one asked while a request is pending is not: what the real Centra does then is unknown).

Order creation takes stock from the warehouses in the scenario's order (the market's
allocation rule, [INF]) and fails with -2 when it cannot, -5 for a number that exists ([C]).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from returnbridge.simulators.centra.outcomes import (
    DUPLICATE_NUMBER,
    EMPTY_ORDER,
    GENERAL,
    NO_STOCK,
    NOT_SELLABLE,
    OrderApiError,
)
from returnbridge.simulators.centra.records import (
    ZERO,
    AllocationRec,
    OrderLineRec,
    OrderRec,
    PaymentEntryRec,
    ReturnRec,
    money,
    order_hash_id,
)
from returnbridge.simulators.centra.state import PAYMENT_METHOD, CentraState


@dataclass(frozen=True)
class OrderProduct:
    """One `products[]` entry of `POST /order`: a size by SKU or EAN, a quantity and a price."""

    sku: str | None
    ean: str | None
    qty: int
    unit_price: Decimal
    tax_percent: Decimal = Decimal("25")


@dataclass(frozen=True)
class OrderRequest:
    """The parts of `POST /order` the simulator acts on."""

    products: list[OrderProduct]
    email: str
    order_number: int | None = None
    currency: str | None = None
    market: str | None = None
    adjust_stock: bool = True
    internal: bool = False
    origin_type: str | None = None
    origin_id: int | None = None
    shipping_value: Decimal = ZERO
    comment: str | None = None
    internal_comment: str | None = None
    captured: Decimal | None = None  # `payment.capture.amount`, recorded as a CAPTURE entry


def create_order(state: CentraState, req: OrderRequest) -> OrderRec:
    """Create an order (status PENDING) or raise OrderApiError with Centra's code."""
    if not req.products:
        raise OrderApiError(EMPTY_ORDER, "The order has no products.")
    size_ids = []
    for product in req.products:
        size_id = (
            state.size_by_sku.get(product.sku)
            if product.sku is not None
            else state.size_by_ean.get(product.ean or "")
        )
        if size_id is None:
            raise OrderApiError(
                NOT_SELLABLE, f"Product {product.sku or product.ean} is not sellable."
            )
        size_ids.append(size_id)
    if req.order_number is not None and req.order_number in state.orders:
        raise OrderApiError(
            DUPLICATE_NUMBER, "An order with the provided order number already exists."
        )
    plans = _plan_allocations(state, size_ids, req) if req.adjust_stock else None

    number = req.order_number or max(state.orders, default=0) + 1
    market = req.market or "SE"  # [INF] simulator default market (currency follows it below)
    order = OrderRec(
        number=number,
        id=order_hash_id(number),
        status="CONFIRMED" if state.inferred.order_api_autoconfirm else "PENDING",
        currency=req.currency or _market_currency(state, market),
        market=market,
        customer_email=req.email,
        customer_id=state.customer_id(req.email),
        created_at=state.clock.now(),
        shipping=money(req.shipping_value),
        lines=[],
        is_internal=req.internal,
        comment=req.comment,
        internal_comment=req.internal_comment,
        origin_type=req.origin_type,
        origin_id=req.origin_id,
        created_via_api=True,
    )
    state.market_id(market)
    for i, (product, size_id) in enumerate(zip(req.products, size_ids, strict=True)):
        line = OrderLineRec(
            id=state.ids.next("order_line"),
            order_number=number,
            size_id=size_id,
            quantity=product.qty,
            unit_price=money(product.unit_price),
            tax_percent=product.tax_percent,
        )
        for wid, qty in plans[i] if plans is not None else []:
            state.level(size_id, wid).allocated += qty
            line.allocations.append(AllocationRec(state.ids.next("allocation"), wid, qty))
        order.lines.append(line)
        state.order_lines[line.id] = line
    if req.captured is not None:
        order.payments.append(
            PaymentEntryRec(
                id=state.ids.next("payment"),
                order_number=number,
                created_at=state.clock.now(),
                status="SUCCESS",
                entry_type="CAPTURE",
                value=money(req.captured),
                payment_method=PAYMENT_METHOD,
                external_reference=f"api-capture-{number}",
            )
        )
    state.orders[number] = order
    state.order_by_hash[order.id] = number
    state.emit("order", "insert", number)
    return order


def _market_currency(state: CentraState, market: str) -> str:
    for order in state.orders.values():
        if order.market == market:
            return order.currency
    return "SEK"  # [INF] simulator default currency of a market without orders


def _plan_allocations(
    state: CentraState, size_ids: list[int], req: OrderRequest
) -> list[list[tuple[int, int]]]:
    """Per product, (warehouse, quantity) taken in warehouse priority order; -2 if short."""
    taken: dict[tuple[int, int], int] = {}
    plans = []
    for product, size_id in zip(req.products, size_ids, strict=True):
        need, plan = product.qty, []
        for wid in state.warehouses:
            free = state.level(size_id, wid).free_to_allocate - taken.get((size_id, wid), 0)
            take = min(need, max(free, 0))
            if take:
                plan.append((wid, take))
                taken[(size_id, wid)] = taken.get((size_id, wid), 0) + take
                need -= take
            if not need:
                break
        if need:
            sku = state.sizes[size_id].sku
            raise OrderApiError(
                NO_STOCK, f"Not enough stock for {sku}: {product.qty - need} of {product.qty}."
            )
        plans.append(plan)
    return plans


@dataclass(frozen=True)
class ReturnUpdate:
    """`PUT /returns/{id}`: `{completed, refundPayment, sendEmail}` plus an [INF] manual refund."""

    completed: bool | None = None
    refund_payment: bool = False
    send_email: bool = False
    manual_refund_amount: Decimal | None = None
    manual_refund_reference: str | None = None


def update_return(
    state: CentraState, ret: ReturnRec, update: ReturnUpdate
) -> PaymentEntryRec | None:
    """Complete / uncomplete / refund a return; returns the refund entry written, if any.

    A failed PSP refund is recorded (entry FAILED) and leaves the return pending, then raises
    OrderApiError(-7) so the caller answers `status: "no"`. An asynchronous PSP's request is
    written PENDING: the return completes when it settles (or now, when `completed` is asked).
    """
    refund_type = state.inferred.payment_entry_type_refund
    wants_refund = update.refund_payment or update.manual_refund_amount is not None
    if update.refund_payment and update.manual_refund_amount is not None:
        raise OrderApiError(GENERAL, "Give refundPayment or manualRefund, not both.")
    if wants_refund and state.refunded(ret):
        raise OrderApiError(GENERAL, f"Return {ret.id} is already refunded.")
    if update.completed is False and ret.completed and state.refunded(ret):
        raise OrderApiError(GENERAL, f"Return {ret.id} is refunded and cannot be uncompleted.")
    order = state.orders[ret.order_number]
    entry = None
    if wants_refund:
        via_psp = update.refund_payment
        amount = (
            state.return_refund_amount(ret)
            if via_psp
            else money(update.manual_refund_amount or ZERO)
        )
        asynchronous = via_psp and order.psp_async
        failed = via_psp and order.refund_gateway_fails and not asynchronous
        entry = PaymentEntryRec(
            id=state.ids.next("payment"),
            order_number=order.number,
            created_at=state.clock.now(),
            status="PENDING" if asynchronous else "FAILED" if failed else "SUCCESS",
            entry_type=state.inferred.payment_entry_type_refund_request
            if asynchronous
            else refund_type,
            value=amount,
            payment_method=PAYMENT_METHOD if via_psp else "manual",
            external_reference=(
                f"psp-refund-{ret.id}-{len(order.payments)}"
                if via_psp
                else update.manual_refund_reference
            ),
            params_json=(
                '{"resultCode":"Refused","refusalReason":"simulated gateway failure"}'
                if failed
                else '{"resultCode":"Received"}'
            ),
            return_id=ret.id,
            via_psp=via_psp,
        )
        order.payments.append(entry)
        if asynchronous:
            state.awaiting_psp[entry.id] = entry
        state.emit("order", "update", order.number)
        if failed:
            raise OrderApiError(GENERAL, "The payment provider refused the refund.")
    if (
        update.completed or (entry is not None and entry.status == "SUCCESS")
    ) and not ret.completed:
        ret.completed_at = state.clock.now()
        state.emit("return", "update", ret.id)
    elif update.completed is False and ret.completed:
        ret.completed_at = None
        state.emit("return", "update", ret.id)
    return entry
