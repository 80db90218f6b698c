"""Order and shipment processing of the Integration API: the fulfilment side ([C]).

Centra's published examples confirm, hold, update, lock and cancel orders, and create, pay,
capture and complete shipments. returnbridge sends none of these; the simulator runs them so
those examples run end to end, and so a test can ship what it then returns
(docs/architecture.md#the-simulators). Every function validates completely before it changes
anything (MutationRejected, nothing changed), with one documented exception: a capture the PSP
refuses fails the mutation but its FAILED entry stays in the payment history ([C] "Nothing else
about the order will change in this case, other than the new log in paymentHistory").

Order flow ([C] unless marked): PENDING -> CONFIRMED by confirmOrder only; the first shipment
makes a CONFIRMED order PROCESSING; once every line is shipped or cancelled and every shipment
completed, the order is SHIPPED (Centra's "Completed"). Shipments are made for CONFIRMED and
PROCESSING orders that are not on hold, and completed once good to go and paid [INF]. A whole
order is cancelled only while nothing of it has shipped [INF]; its unshipped shipments go with it
[INF], its lines keep their quantities [C]. Cancelling lines lowers their quantity [C-ex] and
never touches items already in a shipment [INF].

Stock: an allocation holds stock (StockLevel.allocated) when its order came through the Order
API or the allocation was made here (allocateDemand); a scenario order's allocations do not
(state.py). Completing a shipment takes its items out of the warehouses they were allocated
from, first allocation first (physical and allocated both drop) [INF]. Cancelled items are
released back to the warehouse, removed from stock, or moved to another warehouse, per the
stock action [C]: unallocated (demand) items first, then the last allocation first [INF].

Payments: authorized = SUCCESS AUTH entries, captured = SUCCESS CAPTURE entries, released =
SUCCESS CANCEL entries, written with negative values as Centra's published response shows
[C-ex]. The simulated PSP captures synchronously (CAPTURE, SUCCESS; no capture requests) [INF]
and refuses a capture larger than what is left of the authorization. An amount captured on the
order and not assigned to a shipment yet (captureOrder) pays for a shipment captured later,
without a new PSP request [C]. A shipment's value is its goods plus its shipping, the order's
shipping going to its first shipment (state.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from returnbridge.simulators.centra.outcomes import (
    ErrorCollector,
    MutationRejected,
    UserError,
    decimal_from_input,
)
from returnbridge.simulators.centra.records import (
    ZERO,
    AllocationRec,
    OrderLineRec,
    OrderRec,
    PaymentEntryRec,
    ShipmentLineRec,
    ShipmentRec,
    money,
)
from returnbridge.simulators.centra.state import PAYMENT_METHOD, CentraState
from returnbridge.simulators.centra.views import CARRIER, simulated_tracking

T = TypeVar("T")

NOT_COMPLETED = ("PENDING", "CONFIRMED", "PROCESSING")
SHIPPABLE = ("CONFIRMED", "PROCESSING")
RELEASE_PARAMS = '{"success":true,"isRequest":false,"raw":null}'  # [C-ex] a released auth
POLICY_KEYS = (
    "releaseItemsBackToWarehouse",
    "sendItemsToDifferentWarehouse",
    "removeItemsFromStock",
)
LINE_STOCK_ACTIONS = {"RELEASE_BACK_TO_WAREHOUSE": "release", "REMOVE_FROM_STOCK": "remove"}


@dataclass
class Done(Generic[T]):
    """A write that went through: what it wrote, the payment entry it made, its warnings."""

    value: T
    entry: PaymentEntryRec | None = None
    warnings: list[UserError] = field(default_factory=list)


class CaptureFailed(MutationRejected):
    """The PSP refused a capture: the mutation fails; the FAILED entry stays ([C])."""

    def __init__(self, errors: list[UserError], entry: PaymentEntryRec) -> None:
        super().__init__(errors)
        self.entry = entry


@dataclass(frozen=True)
class StockAction:
    """What happens to the stock of cancelled items: release, remove, or move to `warehouse`."""

    kind: str  # release | remove | move
    warehouse_id: int | None = None


# ----------------------------------------------------------------------------- reads


def find_order(
    state: CentraState, ref: Mapping[str, Any] | None, errors: ErrorCollector, *path: str | int
) -> OrderRec | None:
    """The order an OrderInput names by exactly one of `id` (hash) or `number` ([C])."""
    ref = ref or {}
    order_id, number = ref.get("id"), ref.get("number")
    if (order_id is None) == (number is None):
        errors.add("Give the order by exactly one of id or number.", *path)
        return None
    if number is None:
        number = state.order_by_hash.get(str(order_id))
    order = state.orders.get(number) if number is not None else None
    if order is None:
        errors.add(f"Order {order_id if order_id is not None else number} not found.", *path)
    return order


def ordered(line: OrderLineRec) -> int:
    """Items of the line not cancelled."""
    return line.quantity - line.cancelled


def in_shipments(order: OrderRec, line_id: int) -> int:
    """Items of the line in any shipment, shipped or not."""
    return sum(
        sl.quantity for ship in order.shipments for sl in ship.lines if sl.order_line_id == line_id
    )


def allocated(line: OrderLineRec) -> int:
    return sum(a.quantity for a in line.allocations)


def reserves(order: OrderRec, alloc: AllocationRec) -> bool:
    """Whether the allocation holds stock (StockLevel.allocated); see the module docstring."""
    return alloc.reserves or order.created_via_api


def shipment_value(state: CentraState, ship: ShipmentRec) -> Decimal:
    return money(state.shipment_goods_value(ship) + ship.shipping)


def _paid_total(order: OrderRec, entry_type: str) -> Decimal:
    """The sum of the order's SUCCESS entries of one type."""
    entries = [e for e in order.payments if e.entry_type == entry_type and e.status == "SUCCESS"]
    return money(sum((e.value for e in entries), ZERO))


def captured(order: OrderRec) -> Decimal:
    return _paid_total(order, "CAPTURE")


def remaining_authorization(order: OrderRec) -> Decimal:
    """Authorized, less captured and released (CANCEL values are negative)."""
    return money(_paid_total(order, "AUTH") - captured(order) + _paid_total(order, "CANCEL"))


def is_captured(ship: ShipmentRec) -> bool:
    return ship.captured_at is not None if ship.processed else ship.shipped


def is_paid(ship: ShipmentRec) -> bool:
    return ship.paid_at is not None if ship.processed else ship.shipped


def is_good_to_go(ship: ShipmentRec) -> bool:
    return ship.good_to_go if ship.processed else True


def captured_value(state: CentraState, ship: ShipmentRec) -> Decimal:
    """What of the order's captured money belongs to this shipment."""
    if not is_captured(ship):
        return ZERO
    if ship.processed and ship.captured_value is not None:
        return ship.captured_value
    return shipment_value(state, ship)


def unassigned_capture(state: CentraState, order: OrderRec) -> Decimal:
    """Captured on the order (captureOrder, the Order API) and not yet given to a shipment."""
    assigned = sum((captured_value(state, s) for s in order.shipments), ZERO)
    return money(captured(order) - assigned)


# ----------------------------------------------------------------------------- order writes


def confirm_order(state: CentraState, inp: Mapping[str, Any]) -> Done[OrderRec]:
    """PENDING -> CONFIRMED ([C]); any other status is a userError ([INF])."""
    errors = ErrorCollector()
    order = find_order(state, inp["order"], errors, "input", "order")
    if order is not None and order.status != "PENDING":
        errors.add(
            f"Order {order.number} is {order.status}; only a PENDING order can be confirmed.",
            "input", "order",
        )  # fmt: skip
    errors.raise_if_any()
    assert order is not None
    order.status = "CONFIRMED"
    _touch(state, order)
    return Done(order)


def set_orders_lock(state: CentraState, inp: Mapping[str, Any]) -> Done[list[OrderRec]]:
    """Lock or unlock every order named; one unknown order and none changes ([C])."""
    errors = ErrorCollector()
    found = [
        find_order(state, ref, errors, "input", "orders", i) for i, ref in enumerate(inp["orders"])
    ]
    if not inp["orders"]:
        errors.add("Name at least one order.", "input", "orders")
    errors.raise_if_any()
    orders = [order for order in found if order is not None]
    for order in orders:
        order.is_locked = inp["isLocked"]
        _touch(state, order)
    return Done(orders)


def update_dtc_order(
    state: CentraState, ref: Mapping[str, Any], inp: Mapping[str, Any]
) -> Done[OrderRec]:
    """updateDirectToConsumerOrder: hold, addresses, customer, flags, comments, cancelLines."""
    errors = ErrorCollector()
    order = find_order(state, ref, errors, "order")
    errors.raise_if_any()
    assert order is not None
    if order.status == "CANCELLED":
        errors.add(f"Order {order.number} is cancelled.", "order")
    if inp.get("isOnHold") is not None and order.status not in NOT_COMPLETED:
        # [C] hold applies "at any order status before it's completed"
        errors.add(
            f"Order {order.number} is {order.status}; only an order that is not completed "
            "can be put on or taken off hold.",
            "input", "isOnHold",
        )  # fmt: skip
    email = None
    if inp.get("customer") is not None:
        customer_id = inp["customer"]["id"]
        email = next((e for e, cid in state.customers.items() if cid == customer_id), None)
        if email is None:
            errors.add(f"Customer {customer_id} not found.", "input", "customer", "id")
    cancellations = _plan_cancellations(state, order, inp.get("cancelLines") or [], errors)
    errors.raise_if_any()

    for key, target in (
        ("shippingAddress", order.shipping_address),
        ("billingAddress", order.billing_address),
        ("customerInfo", order.customer_info),
    ):
        if inp.get(key) is not None:
            target.update(inp[key])
    if email is not None:
        order.customer_email, order.customer_id = email, state.customers[email]
    if inp.get("isInternal") is not None:
        order.is_internal = inp["isInternal"]
    if inp.get("isOnHold") is not None:
        order.is_on_hold = inp["isOnHold"]
        order.hold_reason = inp.get("holdStatusChangeReason")
        verb = "put on hold" if order.is_on_hold else "resumed"
        order.history.append(f"{verb}: {order.hold_reason}" if order.hold_reason else verb)
    if "internalComment" in inp:
        order.internal_comment = inp["internalComment"]
    for line, quantity, action in cancellations:
        _release(state, order, line, quantity, action)
        line.cancelled += quantity
    if cancellations and inp.get("cancellationComment"):
        order.history.append(f"lines cancelled: {inp['cancellationComment']}")
    _settle_status(state, order)
    _touch(state, order)
    return Done(order)


def cancel_dtc_order(state: CentraState, order_id: str, inp: Mapping[str, Any]) -> Done[OrderRec]:
    """cancelDirectToConsumerOrder: status CANCELLED, allocated stock handled per stockAction,
    optionally the authorization cancelled at the PSP (a failure there is a warning and a
    FAILED CANCEL entry; the cancellation proceeds, [C])."""
    errors = ErrorCollector()
    number = state.order_by_hash.get(order_id)
    order = state.orders.get(number) if number is not None else None
    if order is None:
        raise MutationRejected([UserError(f"Order {order_id} not found.", ["id"])])
    if order.status not in NOT_COMPLETED:
        errors.add(
            f"Order {order.number} is {order.status}; only an order that is not completed "
            "can be cancelled.",
            "id",
        )
    elif any(ship.shipped for ship in order.shipments):
        errors.add(
            f"Order {order.number} has shipped shipments; cancel its remaining lines instead.",
            "id",
        )
    action = _stock_policy(state, inp["stockAction"], errors, "input", "stockAction")
    errors.raise_if_any()
    assert action is not None

    for ship in order.shipments:  # unshipped: they go with the order [INF]
        for sl in ship.lines:
            del state.shipment_lines[sl.id]
        del state.shipments[ship.id]
    order.shipments = []
    for line in order.lines:  # quantities stay as they were [C]
        for alloc in line.allocations:
            _stock_effect(state, order, line, alloc, alloc.quantity, action)
        line.allocations.clear()
    order.status = "CANCELLED"
    if inp.get("comment"):
        order.history.append(f"cancelled: {inp['comment']}")
    done: Done[OrderRec] = Done(order)
    if inp.get("cancelAuthorization"):
        remaining = remaining_authorization(order)
        if captured(order) > 0 or remaining <= 0:
            reason = (
                "the order has been captured" if captured(order) > 0 else "nothing is authorized"
            )
            done.entry = _entry(
                state, order, "CANCEL", "FAILED", -max(remaining, ZERO),
                f'{{"success":false,"reason":"{reason}"}}',
            )  # fmt: skip
            done.warnings.append(
                UserError(
                    f"The authorization was not cancelled: {reason}.",
                    ["input", "cancelAuthorization"],
                )
            )
        else:
            done.entry = _entry(state, order, "CANCEL", "SUCCESS", -remaining, RELEASE_PARAMS)
    _touch(state, order)
    return done


def release_remaining_authorization(state: CentraState, ref: Mapping[str, Any]) -> Done[OrderRec]:
    """Release what is left of the authorization of a partially captured, not completed order
    as a CANCEL entry of minus that amount ([C], sign [C-ex])."""
    errors = ErrorCollector()
    order = find_order(state, ref, errors, "order")
    errors.raise_if_any()
    assert order is not None
    remaining = remaining_authorization(order)
    if order.status not in NOT_COMPLETED:
        errors.add(
            f"Order {order.number} is {order.status}; only PENDING, CONFIRMED or PROCESSING "
            "orders can release their authorization.",
            "order",
        )
    elif captured(order) <= 0:
        errors.add(f"Order {order.number} has not been partially captured.", "order")
    elif remaining <= 0:
        errors.add(f"Nothing is left of the authorization of order {order.number}.", "order")
    errors.raise_if_any()
    entry = _entry(state, order, "CANCEL", "SUCCESS", -remaining, RELEASE_PARAMS)
    _touch(state, order)
    return Done(order, entry)


def capture_order(state: CentraState, ref: Mapping[str, Any]) -> Done[OrderRec]:
    """Capture the order's total not captured yet, before any shipment ([C]); the captured
    amount then pays for shipments captured later."""
    errors = ErrorCollector()
    order = find_order(state, ref, errors, "order")
    errors.raise_if_any()
    assert order is not None
    amount = money(order.grand_total() - captured(order))
    if order.status == "CANCELLED":
        errors.add(f"Order {order.number} is cancelled.", "order")
    elif amount <= 0:
        errors.add(f"Order {order.number} is captured already.", "order")
    errors.raise_if_any()
    try:
        entry = _psp_capture(state, order, amount, ["order"])
    finally:
        _touch(state, order)  # a refused capture leaves its FAILED entry
    return Done(order, entry)


# ----------------------------------------------------------------------------- shipment writes


def create_shipment(state: CentraState, inp: Mapping[str, Any]) -> Done[ShipmentRec]:
    """createShipment: a shipment of order lines, allocating demand if asked; marked paid, or
    captured (`capture`: a failure is a warning and the shipment stays uncaptured, [C]), or
    shipped at once (`shippedAt`)."""
    errors = ErrorCollector()
    order = find_order(state, inp["order"], errors, "input", "order")
    errors.raise_if_any()
    assert order is not None
    if order.status not in SHIPPABLE:
        errors.add(
            f"Order {order.number} is {order.status}; shipments are made for CONFIRMED or "
            "PROCESSING orders.",
            "input", "order",
        )  # fmt: skip
    if order.is_on_hold:
        errors.add(f"Order {order.number} is on hold.", "input", "order")
    errors.raise_if_any()  # its lines are not worth checking then
    requested = _validate_shipment_lines(order, inp.get("lines") or [], errors)
    demand = bool(inp.get("allocateDemand"))
    allocations = _plan_allocations(state, order, requested, demand, errors)
    now = state.clock.now()
    created_at: datetime = inp.get("createdAt") or now
    shipped_at: datetime | None = inp.get("shippedAt")
    if created_at > now:
        errors.add("createdAt may not be in the future.", "input", "createdAt")
    if shipped_at is not None and shipped_at > now:
        errors.add("shippedAt may not be in the future.", "input", "shippedAt")
    elif shipped_at is not None and shipped_at < created_at:
        errors.add("shippedAt may not be before createdAt.", "input", "shippedAt")
    info = _validate_info(inp.get("shipmentInfo"), order, errors, "input", "shipmentInfo")
    errors.raise_if_any()

    for line, warehouse_id, quantity in allocations:
        line.allocations.append(
            AllocationRec(state.ids.next("allocation"), warehouse_id, quantity, reserves=True)
        )
        state.level(line.size_id, warehouse_id).allocated += quantity
    ship = ShipmentRec(
        id=state.ids.next("shipment"),
        number=f"{order.number}-{len(order.shipments) + 1}",
        order_number=order.number,
        created_at=created_at,
        shipped_at=None,
        lines=[],
        shipping=ZERO if any(s.shipping for s in order.shipments) else order.shipping,
        processed=True,
        good_to_go=bool(inp.get("isGoodToGo")),
        updated_at=now,
        additional_message=inp.get("additionalMessage"),
    )
    for line, quantity in requested:
        sl = ShipmentLineRec(state.ids.next("shipment_line"), ship.id, line.id, quantity)
        ship.lines.append(sl)
        state.shipment_lines[sl.id] = sl
    _apply_info(ship, info)
    state.shipments[ship.id] = ship
    order.shipments.append(ship)
    if order.status == "CONFIRMED":
        order.status = "PROCESSING"
    done: Done[ShipmentRec] = Done(ship)
    if inp.get("capture"):
        try:
            done.entry = _capture_shipment(state, order, ship)
        except CaptureFailed as failed:
            done.entry = failed.entry
            done.warnings += [UserError(e.message, ["input", "capture"]) for e in failed.errors]
    elif inp.get("isPaid"):
        ship.paid_at = now
    if shipped_at is not None:
        _ship(state, order, ship, shipped_at)
        _settle_status(state, order)
    _touch(state, order)
    return done


def update_shipment(
    state: CentraState, shipment_id: int, inp: Mapping[str, Any]
) -> Done[ShipmentRec]:
    """updateShipment: good-to-go, paid (outside Centra), shipment info, message ([C]); info and
    good-to-go no longer change once shipped ([C]), a captured shipment stays paid ([INF])."""
    errors = ErrorCollector()
    ship, order = _find_shipment(state, shipment_id)
    if order.status == "CANCELLED":
        errors.add(f"Order {order.number} is cancelled.", "id")
    for key in ("shipmentInfo", "isGoodToGo"):
        if ship.shipped and inp.get(key) is not None:
            errors.add(f"Shipment {ship.number} is shipped; {key} cannot change.", "input", key)
    if inp.get("isPaid") is False and is_captured(ship):
        errors.add(f"Shipment {ship.number} is captured; it stays paid.", "input", "isPaid")
    if inp.get("paidValue") is not None:  # accepted and checked, not kept [INF]
        _money(inp["paidValue"], order.currency, errors, "input", "paidValue")
    info = _validate_info(inp.get("shipmentInfo"), order, errors, "input", "shipmentInfo")
    errors.raise_if_any()

    _adopt(state, ship)
    now = state.clock.now()
    if inp.get("isGoodToGo") is not None:
        ship.good_to_go = inp["isGoodToGo"]
    if inp.get("isPaid") is not None:
        ship.paid_at = (ship.paid_at or now) if inp["isPaid"] else None
    if "additionalMessage" in inp:
        ship.additional_message = inp["additionalMessage"]
    if "externalId" in inp:
        ship.external_id = inp["externalId"]
    _apply_info(ship, info)
    ship.updated_at = now
    _touch(state, order)
    return Done(ship)


def capture_shipment(state: CentraState, shipment_id: int) -> Done[ShipmentRec]:
    """captureShipment: capture the shipment's value once; a refused capture fails ([C])."""
    errors = ErrorCollector()
    ship, order = _find_shipment(state, shipment_id)
    if order.status == "CANCELLED":
        errors.add(f"Order {order.number} is cancelled.", "id")
    elif is_captured(ship):
        errors.add(f"Shipment {ship.number} is captured already.", "id")
    errors.raise_if_any()
    _adopt(state, ship)
    try:
        entry = _capture_shipment(state, order, ship)
    finally:
        _touch(state, order)
    return Done(ship, entry)


def complete_shipment(
    state: CentraState, shipment_id: int, inp: Mapping[str, Any] | None
) -> Done[ShipmentRec]:
    """completeShipment: the shipment leaves, its items leave their warehouses, and the order
    completes when nothing is left to ship ([C])."""
    inp = inp or {}
    errors = ErrorCollector()
    ship, order = _find_shipment(state, shipment_id)
    now = state.clock.now()
    shipped_at: datetime = inp.get("shippedAt") or now
    if order.status == "CANCELLED":
        errors.add(f"Order {order.number} is cancelled.", "id")
    if ship.shipped:
        errors.add(f"Shipment {ship.number} is shipped already.", "id")
    else:
        if order.is_on_hold:
            errors.add(f"Order {order.number} is on hold.", "id")
        if not is_good_to_go(ship):
            errors.add(f"Shipment {ship.number} is not good to go.", "id")
        if not is_paid(ship):
            errors.add(
                f"Shipment {ship.number} is not paid; capture it or mark it paid first.", "id"
            )
    if shipped_at > now:
        errors.add("shippedAt may not be in the future.", "input", "shippedAt")
    elif shipped_at < ship.created_at:
        errors.add("shippedAt may not be before the shipment was created.", "input", "shippedAt")
    info = _validate_info(inp.get("shipmentInfo"), order, errors, "input", "shipmentInfo")
    errors.raise_if_any()

    _adopt(state, ship)
    _apply_info(ship, info)
    if "additionalMessage" in inp:
        ship.additional_message = inp["additionalMessage"]
    _ship(state, order, ship, shipped_at)
    _settle_status(state, order)
    _touch(state, order)
    return Done(ship)


# ----------------------------------------------------------------------------- helpers


def _touch(state: CentraState, order: OrderRec) -> None:
    """The order changed now (Order.updatedAt) and Centra's order webhook fires."""
    order.updated_at = state.clock.now()
    state.emit("order", "update", order.number)


def _find_shipment(state: CentraState, shipment_id: int) -> tuple[ShipmentRec, OrderRec]:
    ship = state.shipments.get(shipment_id)
    if ship is None:
        raise MutationRejected([UserError(f"Shipment {shipment_id} not found.", ["id"])])
    return ship, state.orders[ship.order_number]


def _entry(
    state: CentraState,
    order: OrderRec,
    entry_type: str,
    status: str,
    value: Decimal,
    params: str,
) -> PaymentEntryRec:
    entry = PaymentEntryRec(
        id=state.ids.next("payment"),
        order_number=order.number,
        created_at=state.clock.now(),
        status=status,
        entry_type=entry_type,
        value=money(value),
        payment_method=PAYMENT_METHOD,
        external_reference=f"psp-{entry_type.lower()}-{order.number}-{len(order.payments)}",
        params_json=params,
    )
    order.payments.append(entry)
    return entry


def _psp_capture(
    state: CentraState, order: OrderRec, amount: Decimal, path: list[str]
) -> PaymentEntryRec:
    """Ask the simulated PSP to capture `amount`: a SUCCESS CAPTURE entry, or a FAILED one and
    CaptureFailed when the authorization left cannot cover it."""
    remaining = remaining_authorization(order)
    if amount > remaining:
        entry = _entry(
            state, order, "CAPTURE", "FAILED", amount,
            '{"success":false,"reason":"amount exceeds the remaining authorization"}',
        )  # fmt: skip
        message = (
            f"The payment provider refused to capture {amount} {order.currency}: only "
            f"{max(remaining, ZERO)} is left of the authorization."
        )
        raise CaptureFailed([UserError(message, path)], entry)
    return _entry(state, order, "CAPTURE", "SUCCESS", amount, '{"success":true}')


def _capture_shipment(
    state: CentraState, order: OrderRec, ship: ShipmentRec
) -> PaymentEntryRec | None:
    """Capture the shipment's value: from what the order has captured and not assigned yet
    (no PSP request, no entry, [C]), else through the PSP. Marks it captured and paid."""
    amount = shipment_value(state, ship)
    entry = None
    if amount > unassigned_capture(state, order):
        entry = _psp_capture(state, order, amount, ["id"])
    now = state.clock.now()
    ship.captured_at, ship.captured_value = now, amount
    ship.paid_at = ship.paid_at or now
    ship.updated_at = now
    return entry


def _adopt(state: CentraState, ship: ShipmentRec) -> None:
    """A scenario shipment's derived flags (views.ShipmentView) become its recorded fields."""
    if ship.processed:
        return
    ship.processed, ship.good_to_go = True, True
    if ship.shipped:
        ship.paid_at = ship.captured_at = ship.shipped_at
        ship.captured_value = shipment_value(state, ship)
        ship.packages = 1
        ship.tracking_number, ship.return_tracking_number = simulated_tracking(ship)
        ship.carrier, ship.service = CARRIER["carrierName"], CARRIER["serviceName"]


def _ship(state: CentraState, order: OrderRec, ship: ShipmentRec, when: datetime) -> None:
    """Mark shipped; reserved items leave the warehouses they were allocated from."""
    shipped_before: dict[int, int] = defaultdict(int)
    for other in order.shipments:
        if other.shipped and other is not ship:
            for sl in other.lines:
                shipped_before[sl.order_line_id] += sl.quantity
    for sl in ship.lines:
        line = state.order_lines[sl.order_line_id]
        first = shipped_before[line.id]
        start = 0
        for alloc in line.allocations:  # first allocation first
            end = start + alloc.quantity
            overlap = max(0, min(end, first + sl.quantity) - max(start, first))
            if overlap and reserves(order, alloc):
                level = state.level(line.size_id, alloc.warehouse_id)
                level.allocated -= overlap
                level.physical -= overlap
            start = end
        shipped_before[line.id] += sl.quantity
    ship.shipped_at = when
    ship.updated_at = state.clock.now()


def _settle_status(state: CentraState, order: OrderRec) -> None:
    """An order whose every item is shipped or cancelled, in completed shipments, is SHIPPED."""
    if (
        order.status in SHIPPABLE
        and order.shipments
        and all(ship.shipped for ship in order.shipments)
        and all(ordered(line) == state.shipped_quantity(line) for line in order.lines)
    ):
        order.status = "SHIPPED"


def _release(
    state: CentraState, order: OrderRec, line: OrderLineRec, quantity: int, action: StockAction
) -> None:
    """Unallocate `quantity` cancelled items: demand first, then the last allocation first."""
    from_allocations = max(quantity - max(ordered(line) - allocated(line), 0), 0)
    for alloc in reversed(line.allocations):
        take = min(alloc.quantity, from_allocations)
        _stock_effect(state, order, line, alloc, take, action)
        alloc.quantity -= take
        from_allocations -= take
    line.allocations[:] = [a for a in line.allocations if a.quantity > 0]


def _stock_effect(
    state: CentraState,
    order: OrderRec,
    line: OrderLineRec,
    alloc: AllocationRec,
    quantity: int,
    action: StockAction,
) -> None:
    """Unallocate `quantity` items of a stock-holding allocation per `action` ([C] policies)."""
    if quantity <= 0 or not reserves(order, alloc):
        return
    level = state.level(line.size_id, alloc.warehouse_id)
    level.allocated -= quantity
    if action.kind in ("remove", "move"):
        level.physical -= quantity
    if action.kind == "move":
        assert action.warehouse_id is not None
        state.level(line.size_id, action.warehouse_id).physical += quantity


def _stock_policy(
    state: CentraState, spec: Mapping[str, Any], errors: ErrorCollector, *path: str | int
) -> StockAction | None:
    """A StockPolicyActionInput: exactly one key ([C])."""
    chosen = [key for key in POLICY_KEYS if spec.get(key) not in (None, False)]
    if len(chosen) != 1:
        errors.add(f"Give exactly one of {', '.join(POLICY_KEYS)}.", *path)
        return None
    if chosen[0] == "releaseItemsBackToWarehouse":
        return StockAction("release")
    if chosen[0] == "removeItemsFromStock":
        return StockAction("remove")
    warehouse_id: int = spec["sendItemsToDifferentWarehouse"]["id"]
    if warehouse_id not in state.warehouses:
        errors.add(f"Warehouse {warehouse_id} not found.", *path, chosen[0], "id")
        return None
    return StockAction("move", warehouse_id)


def _plan_cancellations(
    state: CentraState,
    order: OrderRec,
    cancel_lines: Sequence[Mapping[str, Any]],
    errors: ErrorCollector,
) -> list[tuple[OrderLineRec, int, StockAction]]:
    """Validate cancelLines: lines of the order, 1 <= quantity <= items neither cancelled nor
    in a shipment ([C] "must not ... exceed unshipped quantity"), one stock action each."""
    if cancel_lines and order.status not in NOT_COMPLETED:
        errors.add(
            f"Order {order.number} is {order.status}; its lines cannot be cancelled.",
            "input", "cancelLines",
        )  # fmt: skip
        return []
    lines = {line.id: line for line in order.lines}
    taken: dict[int, int] = defaultdict(int)
    planned = []
    for i, spec in enumerate(cancel_lines):
        path: list[str | int] = ["input", "cancelLines", i]
        line = lines.get(spec["line"]["id"])
        if line is None:
            errors.add(
                f"Order line {spec['line']['id']} is not a line of order {order.number}.",
                *path, "line", "id",
            )  # fmt: skip
            continue
        action = _line_stock_action(state, spec, errors, *path)
        quantity = spec["quantity"]
        left = ordered(line) - in_shipments(order, line.id) - taken[line.id]
        if quantity < 1:
            errors.add("quantity must be at least 1.", *path, "quantity")
        elif quantity > left:
            errors.add(
                f"Cannot cancel {quantity} of order line {line.id}: only {max(left, 0)} "
                "unshipped items are left.",
                *path, "quantity",
            )  # fmt: skip
        elif action is not None:
            taken[line.id] += quantity
            planned.append((line, quantity, action))
    return planned


def _line_stock_action(
    state: CentraState, spec: Mapping[str, Any], errors: ErrorCollector, *path: str | int
) -> StockAction | None:
    policy, action = spec.get("stockActionPolicy"), spec.get("stockAction")
    if (policy is None) == (action is None):
        errors.add("Give exactly one of stockActionPolicy or stockAction.", *path)
        return None
    if action is not None:
        return StockAction(LINE_STOCK_ACTIONS[action])
    assert policy is not None
    return _stock_policy(state, policy, errors, *path, "stockActionPolicy")


def _validate_shipment_lines(
    order: OrderRec, specs: Sequence[Mapping[str, Any]], errors: ErrorCollector
) -> list[tuple[OrderLineRec, int]]:
    """Lines of the order, 1 <= quantity <= items neither cancelled nor in a shipment."""
    if not specs:
        errors.add("A shipment needs at least one line.", "input", "lines")
    lines = {line.id: line for line in order.lines}
    taken: dict[int, int] = defaultdict(int)
    requested = []
    for i, spec in enumerate(specs):
        path: list[str | int] = ["input", "lines", i]
        line = lines.get(spec["orderLine"]["id"])
        quantity = spec["quantity"]
        if line is None:
            errors.add(
                f"Order line {spec['orderLine']['id']} is not a line of order {order.number}.",
                *path, "orderLine", "id",
            )  # fmt: skip
            continue
        left = ordered(line) - in_shipments(order, line.id) - taken[line.id]
        if quantity < 1:
            errors.add("quantity must be at least 1.", *path, "quantity")
        elif quantity > left:
            errors.add(
                f"Cannot ship {quantity} of order line {line.id}: only {max(left, 0)} of the "
                f"{ordered(line)} ordered are left to ship.",
                *path, "quantity",
            )  # fmt: skip
        else:
            taken[line.id] += quantity
            requested.append((line, quantity))
    return requested


def _plan_allocations(
    state: CentraState,
    order: OrderRec,
    requested: list[tuple[OrderLineRec, int]],
    allocate_demand: bool,
    errors: ErrorCollector,
) -> list[tuple[OrderLineRec, int, int]]:
    """Items shipped must be allocated ([INF]); with allocateDemand the shortfall is allocated
    from free-to-allocate stock, warehouses in order, the returns warehouse last ([INF])."""
    wanted: dict[int, int] = defaultdict(int)
    by_id: dict[int, OrderLineRec] = {}
    for line, quantity in requested:
        wanted[line.id] += quantity
        by_id[line.id] = line
    warehouses = sorted(state.warehouses, key=lambda w: (w == state.returns_warehouse, w))
    planned: list[tuple[OrderLineRec, int, int]] = []
    for line_id, quantity in wanted.items():
        line = by_id[line_id]
        short = quantity - (allocated(line) - in_shipments(order, line_id))
        if short <= 0:
            continue
        if not allocate_demand:
            errors.add(
                f"Only {quantity - short} items of order line {line_id} are allocated and not "
                f"in a shipment; {quantity} asked. Give allocateDemand: true to allocate them.",
                "input", "lines",
            )  # fmt: skip
            continue
        for warehouse_id in warehouses:
            take = min(short, max(state.level(line.size_id, warehouse_id).free_to_allocate, 0))
            if take:
                planned.append((line, warehouse_id, take))
                short -= take
            if not short:
                break
        if short:
            sku = state.sizes[line.size_id].sku
            errors.add(
                f"Not enough free stock of {sku} to allocate order line {line_id}: {short} short.",
                "input", "allocateDemand",
            )  # fmt: skip
    return planned


def _money(
    value: Mapping[str, Any], currency: str, errors: ErrorCollector, *path: str | int
) -> Decimal:
    try:
        amount = decimal_from_input(value["value"])
    except ValueError:
        errors.add("value is not a number.", *path, "value")
        return ZERO
    code = value.get("currencyIsoCode")
    if code is not None and code != currency:
        errors.add(
            f"Currency {code} does not match the order currency {currency}.",
            *path, "currencyIsoCode",
        )  # fmt: skip
    if amount < 0:
        errors.add("value may not be negative.", *path, "value")
    return money(amount)


def _validate_info(
    info: Mapping[str, Any] | None, order: OrderRec, errors: ErrorCollector, *path: str | int
) -> dict[str, Any] | None:
    """A ShipmentInfoInput, its cost as a Decimal in the order's currency."""
    if info is None:
        return None
    found = dict(info)
    if (info.get("packagesNumber") or 0) < 0:
        errors.add("packagesNumber may not be negative.", *path, "packagesNumber")
    if info.get("internalShippingCost") is not None:
        found["internalShippingCost"] = _money(
            info["internalShippingCost"], order.currency, errors, *path, "internalShippingCost"
        )
    return found


def _apply_info(ship: ShipmentRec, info: Mapping[str, Any] | None) -> None:
    for key, attr in (
        ("carrier", "carrier"),
        ("service", "service"),
        ("trackingNumber", "tracking_number"),
        ("returnTrackingNumber", "return_tracking_number"),
        ("internalShippingCost", "internal_shipping_cost"),
    ):
        if info is not None and key in info:
            setattr(ship, attr, info[key])
    if info is not None and info.get("packagesNumber") is not None:
        ship.packages = info["packagesNumber"]
