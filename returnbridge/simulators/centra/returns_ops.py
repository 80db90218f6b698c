"""Return writes of the Integration API: create, complete, uncomplete, delete ([C]).

createReturn rules ([C] unless marked): the shipment must be shipped; every line must be a line of
that shipment; a line's quantity may not exceed shipped minus already returned; exactly one stock
policy; each cost may not exceed what remains of it on the shipment; `createdAt` dates the return
([C]; it may not lie in the future, [INF]). There is no dedupe: the same input twice creates two
returns ([INF]), which is what forces a client to read back.

Every write stamps the order's `updated_at` (Order.updatedAt, docs/architecture.md#the-simulators).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from returnbridge.simulators.centra.outcomes import (
    ErrorCollector,
    MutationRejected,
    UserError,
    decimal_from_input,
)
from returnbridge.simulators.centra.records import (
    ZERO,
    ReturnLineRec,
    ReturnRec,
    ShipmentRec,
    StockChangeLineRec,
    StockChangeRec,
    StockPolicy,
    money,
)
from returnbridge.simulators.centra.state import CentraState

_COSTS = (("shippingCost", "shipping"), ("handlingCost", "handling"), ("voucherValue", "voucher"))


def create_return(state: CentraState, inp: Mapping[str, Any]) -> ReturnRec:
    """Validate `inp` (a ReturnCreateInput) completely, then create the return and move stock."""
    errors = ErrorCollector()
    ship = state.shipments.get(inp["shipment"]["id"])
    if ship is None:
        message = f"Shipment {inp['shipment']['id']} not found."
        raise MutationRejected([UserError(message, ["input", "shipment", "id"])])
    order = state.orders[ship.order_number]
    if order.status == "CANCELLED":
        errors.add(f"Order {order.number} is cancelled.", "input", "shipment", "id")
    if (
        order.status == state.inferred.order_status_archived
        and not state.inferred.returns_allowed_on_archived_orders
    ):
        errors.add(f"Order {order.number} is archived.", "input", "shipment", "id")
    if not ship.shipped:
        errors.add(
            f"Shipment {ship.number} is not shipped; only shipped items can be returned.",
            "input", "shipment", "id",
        )  # fmt: skip
    requested = _validate_lines(state, ship, inp["lines"], errors)
    policy, policy_warehouse = _validate_policy(state, inp["returnStockActionPolicy"], errors)
    costs = {
        attr: _validate_cost(state, ship, key, attr, inp.get(key), order.currency, errors)
        for key, attr in _COSTS
    }
    return_cost = ZERO
    if inp.get("returnCost") is not None:
        return_cost = _money_input(inp["returnCost"], order.currency, errors, "returnCost")
    now = state.clock.now()
    created_at = inp.get("createdAt") or now
    if created_at > now:
        errors.add("createdAt may not be in the future.", "input", "createdAt")
    errors.raise_if_any()

    ret = ReturnRec(
        id=state.ids.next("return"),
        order_number=order.number,
        shipment_id=ship.id,
        created_at=created_at,
        lines=[
            ReturnLineRec(
                state.ids.next("return_line"), sl_id, state.shipment_lines[sl_id].order_line_id, qty
            )
            for sl_id, qty in requested
        ],
        policy=policy,
        policy_warehouse_id=policy_warehouse,
        comment=inp.get("comment"),
        external_id=inp.get("externalId"),
        shipping=costs["shipping"],
        handling=costs["handling"],
        voucher=costs["voucher"],
        return_cost=return_cost,
    )
    state.returns[ret.id] = ret
    _restock(state, ret)
    _touch(state, ret)
    state.emit("return", "insert", ret.id)
    return ret


def complete_return(state: CentraState, return_id: int) -> ReturnRec:
    """Complete a pending return; a completed one is a userError ([C])."""
    errors = ErrorCollector()
    ret = state.returns.get(return_id)
    if ret is None:
        errors.add(f"Return {return_id} not found.", "id")
    elif ret.completed:
        errors.add(f"Return {return_id} is already completed.", "id")
    errors.raise_if_any()
    assert ret is not None
    ret.completed_at = state.clock.now()
    _touch(state, ret)
    state.emit("return", "update", ret.id)
    return ret


def uncomplete_return(state: CentraState, return_id: int) -> ReturnRec:
    """Reopen a completed return ([C]). A refunded one cannot be reopened ([INF]: a refund
    "cannot be undone" [C], and the Order API refuses the same for `completed: false`)."""
    errors = ErrorCollector()
    ret = state.returns.get(return_id)
    if ret is None:
        errors.add(f"Return {return_id} not found.", "id")
    elif not ret.completed:
        errors.add(f"Return {return_id} is not completed.", "id")
    elif state.refunded(ret):
        errors.add(f"Return {return_id} is refunded and cannot be uncompleted.", "id")
    errors.raise_if_any()
    assert ret is not None
    ret.completed_at = None
    _touch(state, ret)
    state.emit("return", "update", ret.id)
    return ret


def delete_return(state: CentraState, return_id: int) -> ReturnRec:
    """Delete a pending return and reverse its stock effect ([C]); the deleted return as it was
    (ReturnDeletePayload.return, [C-ex]).

    [C]: release / different warehouse re-allocate the items from that warehouse; remove gives
    the quantities back to the shipment lines (here by itself: returnable quantities are derived
    from the existing returns). [INF]: since shipped goods hold no allocation in the simulator,
    "re-allocate" is modelled as taking the restocked items out of that warehouse again, which
    needs them free to allocate; a completed or refunded return cannot be deleted; the webhook
    action is `delete`.
    """
    errors = ErrorCollector()
    ret = state.returns.get(return_id)
    if ret is None:
        errors.add(f"Return {return_id} not found.", "id")
    elif ret.completed:
        errors.add(f"Return {return_id} is completed; uncomplete it before deleting it.", "id")
    elif state.refund_entries(ret):
        errors.add(f"Return {return_id} has refund entries and cannot be deleted.", "id")
    restocked = _restocked_lines(state, ret) if ret is not None else []
    net: dict[tuple[int, int], int] = defaultdict(int)
    for size_id, wid, qty in restocked:
        net[(size_id, wid)] += qty
    for (size_id, wid), qty in net.items():
        free = state.level(size_id, wid).free_to_allocate
        if qty > free:
            errors.add(
                f"Cannot take back {qty} of {state.sizes[size_id].sku} from warehouse {wid}: "
                f"only {free} free to allocate.",
                "id",
            )
    errors.raise_if_any()
    assert ret is not None
    if restocked:
        _record_stock(state, restocked, -1, f"Return {ret.id} deleted")  # [INF] label
    del state.returns[ret.id]
    _touch(state, ret)
    state.emit("return", "delete", ret.id)
    return ret


def _touch(state: CentraState, ret: ReturnRec) -> None:
    """The return's order changed now (Order.updatedAt)."""
    state.orders[ret.order_number].updated_at = state.clock.now()


def _restocked_lines(state: CentraState, ret: ReturnRec) -> list[tuple[int, int, int]]:
    """(size id, warehouse id, quantity) that the return's stock policy put back in stock."""
    if ret.policy is StockPolicy.REMOVE:
        return []
    out = []
    for rl in ret.lines:
        oline = state.order_lines[rl.order_line_id]
        if ret.policy is StockPolicy.DIFFERENT_WAREHOUSE:
            assert ret.policy_warehouse_id is not None
            wid = ret.policy_warehouse_id
        else:
            wid = oline.allocations[0].warehouse_id
        out.append((oline.size_id, wid, rl.quantity))
    return out


def _validate_lines(
    state: CentraState, ship: ShipmentRec, lines: list[Mapping[str, Any]], errors: ErrorCollector
) -> list[tuple[int, int]]:
    if not lines:
        errors.add("A return needs at least one line.", "input", "lines")
    taken: dict[int, int] = defaultdict(int)
    requested: list[tuple[int, int]] = []
    for i, line in enumerate(lines):
        sl_id, qty = line["shipmentLine"]["id"], line["quantity"]
        sline = state.shipment_lines.get(sl_id)
        if sline is None or sline.shipment_id != ship.id:
            errors.add(
                f"Shipment line {sl_id} is not a line of shipment {ship.number}.",
                "input", "lines", i, "shipmentLine", "id",
            )  # fmt: skip
            continue
        if qty < 1:
            errors.add("Quantity must be at least 1.", "input", "lines", i, "quantity")
            continue
        left = sline.quantity - state.returned_quantity_of_shipment_line(sl_id) - taken[sl_id]
        if qty > left:
            errors.add(
                f"Cannot return {qty} of shipment line {sl_id}: only {max(left, 0)} left to return "
                f"(shipped {sline.quantity}).",
                "input", "lines", i, "quantity",
            )  # fmt: skip
            continue
        taken[sl_id] += qty
        requested.append((sl_id, qty))
    return requested


def _validate_policy(
    state: CentraState, policy: Mapping[str, Any], errors: ErrorCollector
) -> tuple[StockPolicy, int | None]:
    chosen = [key for key in StockPolicy if policy.get(key.value) not in (None, False)]
    if len(chosen) != 1:
        errors.add(
            "Give exactly one of releaseItemsBackToWarehouse, sendItemsToDifferentWarehouse, "
            "removeItemsFromStock.",
            "input", "returnStockActionPolicy",
        )  # fmt: skip
        return StockPolicy.REMOVE, None
    if chosen[0] is StockPolicy.DIFFERENT_WAREHOUSE:
        wid = policy[StockPolicy.DIFFERENT_WAREHOUSE.value]["id"]
        if wid not in state.warehouses:
            errors.add(
                f"Warehouse {wid} not found.",
                "input", "returnStockActionPolicy", "sendItemsToDifferentWarehouse", "id",
            )  # fmt: skip
        return chosen[0], wid
    return chosen[0], None


def _money_input(
    value: Mapping[str, Any], currency: str, errors: ErrorCollector, *path: str
) -> Decimal:
    try:
        amount = decimal_from_input(value["value"])
    except ValueError:
        errors.add("value is not a number.", "input", *path, "value")
        return ZERO
    code = value.get("currencyIsoCode")
    if code is not None and code != currency:
        errors.add(
            f"Currency {code} does not match the order currency {currency}.",
            "input", *path, "currencyIsoCode",
        )  # fmt: skip
    if amount < 0:
        errors.add("value may not be negative.", "input", *path, "value")
    return money(amount)


def _validate_cost(
    state: CentraState,
    ship: ShipmentRec,
    key: str,
    attr: str,
    spec: Mapping[str, Any] | None,
    currency: str,
    errors: ErrorCollector,
) -> Decimal:
    used = sum((getattr(r, attr) for r in state.returns_of_shipment(ship.id)), ZERO)
    remaining = money(getattr(ship, attr) - used)
    if spec is None:
        return ZERO
    from_shipment = spec.get("fromShipment") is True
    if (spec.get("value") is not None) == from_shipment:
        errors.add("Give exactly one of value or fromShipment.", "input", key)
        return ZERO
    if from_shipment:
        return remaining
    amount = _money_input(spec["value"], currency, errors, key, "value")
    if amount > remaining:
        errors.add(
            f"{key} {amount} exceeds the {remaining} that remains on shipment {ship.number}.",
            "input", key, "value", "value",
        )  # fmt: skip
    return amount


def _restock(state: CentraState, ret: ReturnRec) -> None:
    """Apply the return's stock policy to warehouse stock, recorded as a stock change."""
    restocked = _restocked_lines(state, ret)
    if restocked:
        # [INF] how Centra labels a return's restock
        _record_stock(state, restocked, 1, f"Return {ret.id}")


def _record_stock(
    state: CentraState, moves: list[tuple[int, int, int]], sign: int, description: str
) -> None:
    """Change physical stock by `sign` x each (size, warehouse, quantity), as one stock change."""
    lines: list[StockChangeLineRec] = []
    for size_id, wid, qty in moves:
        state.level(size_id, wid).physical += sign * qty
        lines.append(
            StockChangeLineRec(state.ids.next("stock_change_line"), size_id, wid, sign * qty)
        )
    change = StockChangeRec(
        id=state.ids.next("stock_change"),
        created_at=state.clock.now(),
        description=description,
        warehouse_id=lines[0].warehouse_id,
        lines=lines,
        source="return",
    )
    state.stock_changes[change.id] = change
