"""The simulator's order and shipment processing mutations: their effects and their userErrors.

Confirm, update (hold, addresses, customer, cancelLines), lock, cancel, capture and release on
orders; create, update, capture and complete on shipments (docs/architecture.md#the-simulators).
Every rejected request is also checked to have changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle, running_centra_sim

from returnbridge.scenario import parse_scenario
from returnbridge.simulators.centra.state import CentraState

SCENARIO: dict[str, Any] = {
    "now": "2026-10-15T12:00:00Z",
    "centra": {
        "warehouses": [
            {"id": 1, "name": "Main"},
            {"id": 2, "name": "Returns"},
            {"id": 3, "name": "Outlet"},
        ],
        "returns_warehouse": 2,
        "products": [
            {"sku": "TEE-M", "stock": {1: 5, 3: 2}},
            {"sku": "CAP", "stock": {1: 3}},
        ],
        "orders": [
            {  # holds its stock (fixture): 3 TEE-M + 1 CAP allocated in warehouse 1
                "number": 10,
                "status": "PENDING",
                "customer_email": "ann.lee@example.com",
                "shipping": "50.00",
                "lines": [
                    {"sku": "TEE-M", "quantity": 3, "unit_price": "100.00"},
                    {"sku": "CAP", "quantity": 1, "unit_price": "40.00"},
                ],
            },
            {
                "number": 11,
                "status": "SHIPPED",
                "customer_email": "bo.berg@example.com",
                "lines": [{"sku": "CAP", "quantity": 1, "unit_price": "40.00"}],
            },
            {  # authorized 200, captured 100 (its shipped shipment)
                "number": 12,
                "status": "PROCESSING",
                "lines": [{"sku": "TEE-M", "quantity": 2, "unit_price": "100.00"}],
                "shipments": [
                    {"shipped": True, "lines": [{"line": 1, "quantity": 1}]},
                    {"shipped": False, "lines": [{"line": 1, "quantity": 1}]},
                ],
            },
            {  # demand: its items are not allocated (fixture)
                "number": 13,
                "status": "CONFIRMED",
                "lines": [{"sku": "CAP", "quantity": 2, "unit_price": "40.00"}],
            },
        ],
    },
}

ORDER = """query($n: [Int!]) { orders(where: {number: $n}) {
  id status isOnHold isLocked isInternal internalComment updatedAt grandTotal { value }
  shippingAddress { firstName city } billingAddress { city vatNumber }
  lines { id quantity }
  allLines: lines(includeFullyCancelled: true) { id quantity cancelledQuantity
    allocations { quantity warehouse { id } } }
  shipments { id number isGoodToGo isPaid isCaptured isShipped lines { id quantity } }
  paymentHistory { entryType status value { value } }
  ... on DirectToConsumerOrder { customer { id email firstName lastName } } } }"""
UPDATE = """mutation($o: OrderInput!, $i: DirectToConsumerOrderUpdateInput!) {
  updateDirectToConsumerOrder(order: $o, input: $i) {
    order { number } userErrors { message path } } }"""
CONFIRM = """mutation($o: OrderInput!) { confirmOrder(input: {order: $o}) {
  order { status } userErrors { message path } } }"""
LOCK = """mutation($i: OrdersLockInput!) { setOrdersLock(input: $i) {
  orders { number isLocked } userErrors { message path } } }"""
CANCEL = """mutation($id: String!, $i: DirectToConsumerOrderCancelInput!) {
  cancelDirectToConsumerOrder(id: $id, input: $i) {
    order { status } paymentHistoryEntry { entryType status value { value } }
    userErrors { message path } userWarnings { message path } } }"""
CAPTURE_ORDER = """mutation($o: OrderInput!) { captureOrder(order: $o) {
  order { number } paymentHistoryEntry { entryType status value { value } }
  userErrors { message path } } }"""
RELEASE = """mutation($o: OrderInput!) { releaseRemainingOrderAuthorization(order: $o) {
  paymentHistoryEntry { entryType status value { value } } userErrors { message path } } }"""
CREATE = """mutation($i: ShipmentCreateInput!) { createShipment(input: $i) {
  shipment { id number isGoodToGo isPaid isCaptured isShipped grandTotal { value } }
  userErrors { message path } userWarnings { message path } } }"""
UPDATE_SHIPMENT = """mutation($id: Int!, $i: ShipmentUpdateInput!) {
  updateShipment(id: $id, input: $i) {
  shipment { isGoodToGo isPaid paidAt additionalMessage trackingNumber }
  userErrors { message path } } }"""
CAPTURE = """mutation($id: Int!) { captureShipment(id: $id) {
  shipment { isCaptured isPaid } paymentHistoryEntry { entryType status value { value } }
  paymentHistoryEntries { id } userErrors { message path } } }"""
COMPLETE = """mutation($id: Int!, $i: ShipmentCompleteInput) {
  completeShipment(id: $id, input: $i) {
  shipment { isShipped shippedAt trackingNumber numberOfPackages }
  userErrors { message path } } }"""
CREATE_RETURN = """mutation($i: ReturnCreateInput!) { createReturn(input: $i) {
  return { id } userErrors { message } } }"""
RELEASE_STOCK = {"releaseItemsBackToWarehouse": True}


@pytest.fixture
def sim() -> Iterator[CentraSimHandle]:
    with running_centra_sim(parse_scenario(SCENARIO, "order processing")) as handle:
        state: CentraState = handle.sim.state
        with handle.sim.lock:
            for line in state.orders[10].lines:  # placed in the checkout: it holds its stock
                for alloc in line.allocations:
                    alloc.reserves = True
                    state.level(line.size_id, alloc.warehouse_id).allocated += alloc.quantity
            for line in state.orders[13].lines:  # not allocated yet
                line.allocations.clear()
        yield handle


def order(sim: CentraSimHandle, number: int) -> dict[str, Any]:
    found: dict[str, Any] = sim.data(ORDER, {"n": [number]})["orders"][0]
    return found


def mutate(sim: CentraSimHandle, query: str, field: str, **variables: Any) -> dict[str, Any]:
    payload: dict[str, Any] = sim.data(query, variables)[field]
    return payload


def errors(payload: dict[str, Any]) -> list[str]:
    return [e["message"] for e in payload["userErrors"]]


def levels(sim: CentraSimHandle, sku: str, warehouse: int = 1) -> tuple[int, int]:
    """(physical, allocated)."""
    rows = sim.client.get("/_sim/state/stock").json()["stock"]
    row = next(r for r in rows if r["sku"] == sku and r["warehouse_id"] == warehouse)
    return row["physical"], row["allocated"]


def line_ids(sim: CentraSimHandle, number: int) -> list[int]:
    return [line["id"] for line in order(sim, number)["allLines"]]


def ship_all(sim: CentraSimHandle, number: int, **extra: Any) -> dict[str, Any]:
    """createShipment of every item of the order (after confirming it if pending)."""
    if order(sim, number)["status"] == "PENDING":
        assert errors(mutate(sim, CONFIRM, "confirmOrder", o={"number": number})) == []
    lines = [
        {"orderLine": {"id": line["id"]}, "quantity": line["quantity"]}
        for line in order(sim, number)["lines"]
    ]
    inp = {"order": {"number": number}, "lines": lines, **extra}
    return mutate(sim, CREATE, "createShipment", i=inp)


def cancel_line(line_id: int, quantity: int, **action: Any) -> dict[str, Any]:
    return {"line": {"id": line_id}, "quantity": quantity, **action}


# ----------------------------------------------------------------------------- orders


def test_confirm_moves_a_pending_order_to_confirmed_and_stamps_it(sim: CentraSimHandle) -> None:
    before = order(sim, 10)
    assert before["status"] == "PENDING" and before["updatedAt"] < "2026-10-15"
    confirmed = mutate(sim, CONFIRM, "confirmOrder", o={"number": 10})
    assert (confirmed["order"], confirmed["userErrors"]) == ({"status": "CONFIRMED"}, [])
    assert order(sim, 10)["status"] == "CONFIRMED"
    assert order(sim, 10)["updatedAt"].startswith("2026-10-15T14:00:00")  # now, in Stockholm
    assert errors(mutate(sim, CONFIRM, "confirmOrder", o={"number": 10})) == [
        "Order 10 is CONFIRMED; only a PENDING order can be confirmed."
    ]


def test_orders_are_named_by_exactly_one_existing_id_or_number(sim: CentraSimHandle) -> None:
    hash_id = order(sim, 10)["id"]
    by_hash = mutate(sim, CONFIRM, "confirmOrder", o={"id": hash_id})
    assert by_hash["order"] == {"status": "CONFIRMED"}
    assert errors(mutate(sim, CONFIRM, "confirmOrder", o={"number": 999})) == [
        "Order 999 not found."
    ]
    assert errors(mutate(sim, CONFIRM, "confirmOrder", o={"id": hash_id, "number": 10})) == [
        "Give the order by exactly one of id or number."
    ]
    assert errors(mutate(sim, CONFIRM, "confirmOrder", o={})) == [
        "Give the order by exactly one of id or number."
    ]


def test_update_changes_hold_addresses_customer_info_flags_and_comment(
    sim: CentraSimHandle,
) -> None:
    inp = {
        "isOnHold": True,
        "holdStatusChangeReason": "fraud check",
        "shippingAddress": {"city": "Malmö"},
        "billingAddress": {"vatNumber": "SE556000000001"},
        "customerInfo": {"firstName": "Annie"},
        "isInternal": True,
        "internalComment": "call first",
    }
    assert errors(mutate(sim, UPDATE, "updateDirectToConsumerOrder", o={"number": 10}, i=inp)) == []
    found = order(sim, 10)
    assert (found["isOnHold"], found["isInternal"], found["internalComment"]) == (
        True, True, "call first",
    )  # fmt: skip
    assert found["shippingAddress"] == {"firstName": "Ann", "city": "Malmö"}
    assert found["billingAddress"] == {"city": "Simulated city", "vatNumber": "SE556000000001"}
    assert found["customer"] == {
        "id": 1, "email": "ann.lee@example.com", "firstName": "Annie", "lastName": "Lee",
    }  # fmt: skip
    assert sim.sim.state.orders[10].history == ["put on hold: fraud check"]
    resumed = {"isOnHold": False}
    assert (
        errors(mutate(sim, UPDATE, "updateDirectToConsumerOrder", o={"number": 10}, i=resumed))
        == []
    )
    assert order(sim, 10)["isOnHold"] is False


def test_update_moves_the_order_to_another_existing_customer(sim: CentraSimHandle) -> None:
    moved = mutate(sim, UPDATE, "updateDirectToConsumerOrder", o={"number": 10},
                   i={"customer": {"id": 2}})  # fmt: skip
    assert errors(moved) == []
    assert order(sim, 10)["customer"]["email"] == "bo.berg@example.com"
    unknown = mutate(sim, UPDATE, "updateDirectToConsumerOrder", o={"number": 10},
                     i={"customer": {"id": 99}, "isInternal": True})  # fmt: skip
    assert errors(unknown) == ["Customer 99 not found."]
    assert order(sim, 10)["isInternal"] is False  # nothing of the rejected update was applied


def test_a_completed_order_cannot_be_held(sim: CentraSimHandle) -> None:
    inp = {"isOnHold": True, "shippingAddress": {"city": "Lund"}}
    held = mutate(sim, UPDATE, "updateDirectToConsumerOrder", o={"number": 11}, i=inp)
    assert errors(held) == [
        "Order 11 is SHIPPED; only an order that is not completed can be put on or taken off hold."
    ]
    assert order(sim, 11)["shippingAddress"]["city"] == "Simulated city"


def test_cancel_lines_release_remove_or_move_the_allocated_stock(sim: CentraSimHandle) -> None:
    tee, _cap = line_ids(sim, 10)
    assert (levels(sim, "TEE-M"), levels(sim, "TEE-M", 3)) == ((5, 3), (2, 0))
    steps = [
        (cancel_line(tee, 1, stockActionPolicy=RELEASE_STOCK), (5, 2), (2, 0)),
        (cancel_line(tee, 1, stockAction="REMOVE_FROM_STOCK"), (4, 1), (2, 0)),
        (cancel_line(tee, 1, stockActionPolicy={"sendItemsToDifferentWarehouse": {"id": 3}}),
         (3, 0), (3, 0)),
    ]  # fmt: skip
    for spec, main, outlet in steps:
        inp = {"cancelLines": [spec], "cancellationComment": "out of stock"}
        assert (
            errors(mutate(sim, UPDATE, "updateDirectToConsumerOrder", o={"number": 10}, i=inp))
            == []
        )
        assert (levels(sim, "TEE-M"), levels(sim, "TEE-M", 3)) == (main, outlet)
    found = order(sim, 10)
    assert [line["id"] for line in found["lines"]] == [_cap]  # fully cancelled: hidden
    assert found["allLines"][0] == {
        "id": tee, "quantity": 0, "cancelledQuantity": 3, "allocations": [],
    }  # fmt: skip
    assert found["grandTotal"] == {"value": 40.0 + 50.0}


def test_cancel_lines_refuses_what_is_shipped_foreign_or_ambiguous(sim: CentraSimHandle) -> None:
    (line12,) = line_ids(sim, 12)
    (tee, cap) = line_ids(sim, 10)
    inp = {
        "cancelLines": [
            cancel_line(tee, 1, stockAction="RELEASE_BACK_TO_WAREHOUSE"),  # valid on its own
            cancel_line(line12, 1, stockAction="RELEASE_BACK_TO_WAREHOUSE"),
            cancel_line(cap, 2, stockAction="RELEASE_BACK_TO_WAREHOUSE"),
            cancel_line(cap, 0, stockAction="RELEASE_BACK_TO_WAREHOUSE"),
            cancel_line(cap, 1),
            cancel_line(cap, 1, stockAction="REMOVE_FROM_STOCK", stockActionPolicy=RELEASE_STOCK),
        ]
    }
    rejected = mutate(sim, UPDATE, "updateDirectToConsumerOrder", o={"number": 10}, i=inp)
    assert errors(rejected) == [
        f"Order line {line12} is not a line of order 10.",
        f"Cannot cancel 2 of order line {cap}: only 1 unshipped items are left.",
        "quantity must be at least 1.",
        "Give exactly one of stockActionPolicy or stockAction.",
        "Give exactly one of stockActionPolicy or stockAction.",
    ]
    assert order(sim, 10)["allLines"][0]["quantity"] == 3  # the valid one was not applied
    assert levels(sim, "TEE-M") == (5, 3)
    in_shipments = {"cancelLines": [cancel_line(line12, 1, stockAction="REMOVE_FROM_STOCK")]}
    both_shipped = mutate(sim, UPDATE, "updateDirectToConsumerOrder", o={"number": 12},
                          i=in_shipments)  # fmt: skip
    assert errors(both_shipped) == [
        f"Cannot cancel 1 of order line {line12}: only 0 unshipped items are left."
    ]


def test_lock_sets_is_locked_on_every_order_named_or_none(sim: CentraSimHandle) -> None:
    unknown = mutate(sim, LOCK, "setOrdersLock", i={"orders": [{"number": 10}, {"number": 9}],
                                                    "isLocked": True})  # fmt: skip
    assert (errors(unknown), unknown["orders"]) == (["Order 9 not found."], [])
    assert order(sim, 10)["isLocked"] is False
    locked = mutate(sim, LOCK, "setOrdersLock",
                    i={"orders": [{"number": 10}, {"number": 11}], "isLocked": True})  # fmt: skip
    assert locked["orders"] == [{"number": 10, "isLocked": True}, {"number": 11, "isLocked": True}]
    assert (order(sim, 10)["isLocked"], order(sim, 12)["isLocked"]) == (True, False)
    unlocked = mutate(sim, LOCK, "setOrdersLock", i={"orders": [{"number": 11}], "isLocked": False})
    assert unlocked["orders"] == [{"number": 11, "isLocked": False}]
    assert (order(sim, 10)["isLocked"], order(sim, 11)["isLocked"]) == (True, False)


def test_cancel_order_releases_its_stock_and_its_authorization(sim: CentraSimHandle) -> None:
    hash_id = order(sim, 10)["id"]
    inp = {
        "emailOptions": {"sendEmail": False},
        "stockAction": RELEASE_STOCK,
        "cancelAuthorization": True,
        "comment": "customer asked",
    }
    cancelled = mutate(sim, CANCEL, "cancelDirectToConsumerOrder", id=hash_id, i=inp)
    assert (cancelled["userErrors"], cancelled["userWarnings"]) == ([], [])
    assert cancelled["order"] == {"status": "CANCELLED"}
    assert cancelled["paymentHistoryEntry"] == {
        "entryType": "CANCEL", "status": "SUCCESS", "value": {"value": -390.0},
    }  # fmt: skip
    assert (levels(sim, "TEE-M"), levels(sim, "CAP")) == ((5, 0), (3, 0))
    found = order(sim, 10)
    assert [line["quantity"] for line in found["lines"]] == [3, 1]  # quantities stay [C]
    assert all(line["allocations"] == [] for line in found["allLines"])
    again = mutate(sim, CANCEL, "cancelDirectToConsumerOrder", id=hash_id, i=inp)
    assert errors(again) == [
        "Order 10 is CANCELLED; only an order that is not completed can be cancelled."
    ]
    ship = mutate(sim, CREATE, "createShipment", i={
        "order": {"number": 10}, "lines": [{"orderLine": {"id": found["lines"][0]["id"]},
                                            "quantity": 1}]})  # fmt: skip
    assert errors(ship) == [
        "Order 10 is CANCELLED; shipments are made for CONFIRMED or PROCESSING orders."
    ]


def test_cancel_order_refusals_and_a_captured_order_warning(sim: CentraSimHandle) -> None:
    inp = {"emailOptions": {"sendEmail": False}, "stockAction": RELEASE_STOCK}
    shipped = mutate(sim, CANCEL, "cancelDirectToConsumerOrder", id=order(sim, 12)["id"], i=inp)
    assert errors(shipped) == [
        "Order 12 has shipped shipments; cancel its remaining lines instead."
    ]
    assert order(sim, 12)["status"] == "PROCESSING"
    two_policies = {**inp, "stockAction": {**RELEASE_STOCK, "removeItemsFromStock": True}}
    ambiguous = mutate(
        sim, CANCEL, "cancelDirectToConsumerOrder", id=order(sim, 10)["id"], i=two_policies
    )
    assert errors(ambiguous) == [
        "Give exactly one of releaseItemsBackToWarehouse, sendItemsToDifferentWarehouse, "
        "removeItemsFromStock."
    ]
    unknown = mutate(sim, CANCEL, "cancelDirectToConsumerOrder", id="f" * 32, i=inp)
    assert errors(unknown) == [f"Order {'f' * 32} not found."]

    created = ship_all(sim, 10, capture=True)
    assert created["shipment"]["isCaptured"] is True
    with_auth = {**inp, "cancelAuthorization": True}
    cancelled = mutate(sim, CANCEL, "cancelDirectToConsumerOrder", id=order(sim, 10)["id"],
                       i=with_auth)  # fmt: skip
    assert cancelled["order"] == {"status": "CANCELLED"}  # it proceeds, with a warning [C]
    assert [w["message"] for w in cancelled["userWarnings"]] == [
        "The authorization was not cancelled: the order has been captured."
    ]
    assert cancelled["paymentHistoryEntry"]["status"] == "FAILED"
    assert order(sim, 10)["shipments"] == []  # the unshipped shipment went with the order
    assert levels(sim, "TEE-M") == (5, 0)


def test_release_remaining_authorization_once_on_a_partly_captured_order(
    sim: CentraSimHandle,
) -> None:
    assert errors(mutate(sim, RELEASE, "releaseRemainingOrderAuthorization", o={"number": 10})) == [
        "Order 10 has not been partially captured."
    ]
    assert errors(mutate(sim, RELEASE, "releaseRemainingOrderAuthorization", o={"number": 11})) == [
        "Order 11 is SHIPPED; only PENDING, CONFIRMED or PROCESSING orders can release their "
        "authorization."
    ]
    released = mutate(sim, RELEASE, "releaseRemainingOrderAuthorization", o={"number": 12})
    assert released["paymentHistoryEntry"] == {
        "entryType": "CANCEL", "status": "SUCCESS", "value": {"value": -100.0},
    }  # fmt: skip
    assert errors(mutate(sim, RELEASE, "releaseRemainingOrderAuthorization", o={"number": 12})) == [
        "Nothing is left of the authorization of order 12."
    ]


def test_capture_order_captures_the_rest_once_or_fails_with_its_entry(
    sim: CentraSimHandle,
) -> None:
    captured = mutate(sim, CAPTURE_ORDER, "captureOrder", o={"number": 10})
    assert captured["paymentHistoryEntry"] == {
        "entryType": "CAPTURE", "status": "SUCCESS", "value": {"value": 390.0},
    }  # fmt: skip
    assert errors(mutate(sim, CAPTURE_ORDER, "captureOrder", o={"number": 10})) == [
        "Order 10 is captured already."
    ]
    # Order 12: authorized 200, 100 captured; once the rest is released, nothing can be captured.
    mutate(sim, RELEASE, "releaseRemainingOrderAuthorization", o={"number": 12})
    refused = mutate(sim, CAPTURE_ORDER, "captureOrder", o={"number": 12})
    assert errors(refused) == [
        "The payment provider refused to capture 100.00 SEK: only 0.00 is left of the "
        "authorization."
    ]
    assert refused["order"] is None
    assert refused["paymentHistoryEntry"] == {
        "entryType": "CAPTURE", "status": "FAILED", "value": {"value": 100.0},
    }  # fmt: skip
    assert order(sim, 12)["paymentHistory"][-1]["status"] == "FAILED"  # logged [C]


# ----------------------------------------------------------------------------- shipments


def test_create_shipment_refusals_change_nothing(sim: CentraSimHandle) -> None:
    tee, cap = line_ids(sim, 10)
    (line12,) = line_ids(sim, 12)

    def create(number: int, lines: list[tuple[int, int]], **extra: Any) -> list[str]:
        inp = {"order": {"number": number}, **extra,
               "lines": [{"orderLine": {"id": i}, "quantity": q} for i, q in lines]}  # fmt: skip
        return errors(mutate(sim, CREATE, "createShipment", i=inp))

    assert create(10, [(tee, 1)]) == [
        "Order 10 is PENDING; shipments are made for CONFIRMED or PROCESSING orders."
    ]
    mutate(sim, CONFIRM, "confirmOrder", o={"number": 10})
    assert create(10, [(tee, 2), (tee, 2), (line12, 1), (cap, 0)]) == [
        f"Cannot ship 2 of order line {tee}: only 1 of the 3 ordered are left to ship.",
        f"Order line {line12} is not a line of order 10.",
        "quantity must be at least 1.",
    ]
    assert create(10, []) == ["A shipment needs at least one line."]
    assert create(10, [(tee, 1)], createdAt="2027-01-01T00:00:00Z") == [
        "createdAt may not be in the future."
    ]
    assert create(12, [(line12, 1)]) == [
        f"Cannot ship 1 of order line {line12}: only 0 of the 2 ordered are left to ship."
    ]
    mutate(sim, UPDATE, "updateDirectToConsumerOrder", o={"number": 10}, i={"isOnHold": True})
    assert create(10, [(tee, 1)]) == ["Order 10 is on hold."]
    assert order(sim, 10)["shipments"] == [] and order(sim, 10)["status"] == "CONFIRMED"


def test_create_shipment_allocates_demand_only_when_asked(sim: CentraSimHandle) -> None:
    (cap,) = line_ids(sim, 13)
    inp: dict[str, Any] = {
        "order": {"number": 13}, "lines": [{"orderLine": {"id": cap}, "quantity": 2}],
    }  # fmt: skip
    assert errors(mutate(sim, CREATE, "createShipment", i=inp)) == [
        f"Only 0 items of order line {cap} are allocated and not in a shipment; 2 asked. Give "
        "allocateDemand: true to allocate them."
    ]
    cap_main = sim.sim.state.level(sim.sim.state.size_by_sku["CAP"], 1)
    with sim.sim.lock:
        cap_main.physical = 2  # 1 of them held by order 10: one free to allocate
    assert errors(mutate(sim, CREATE, "createShipment", i={**inp, "allocateDemand": True})) == [
        f"Not enough free stock of CAP to allocate order line {cap}: 1 short."
    ]
    with sim.sim.lock:
        cap_main.physical = 3
    created = mutate(sim, CREATE, "createShipment", i={**inp, "allocateDemand": True})
    assert errors(created) == [] and created["shipment"]["grandTotal"] == {"value": 80.0}
    assert levels(sim, "CAP") == (3, 1 + 2)
    assert order(sim, 13)["allLines"][0]["allocations"] == [{"quantity": 2, "warehouse": {"id": 1}}]
    assert order(sim, 13)["status"] == "PROCESSING"


def test_shipment_is_paid_captured_once_completed_and_returnable(sim: CentraSimHandle) -> None:
    created = ship_all(sim, 10, isGoodToGo=True, additionalMessage="gift")
    ship = created["shipment"]
    assert (ship["number"], ship["isPaid"], ship["isCaptured"], ship["isShipped"]) == (
        "10-1", False, False, False,
    )  # fmt: skip
    assert ship["grandTotal"] == {"value": 3 * 100.0 + 40.0 + 50.0}
    assert order(sim, 10)["status"] == "PROCESSING"

    unpaid = mutate(sim, COMPLETE, "completeShipment", id=ship["id"], i=None)
    assert errors(unpaid) == ["Shipment 10-1 is not paid; capture it or mark it paid first."]
    capture = mutate(sim, CAPTURE, "captureShipment", id=ship["id"])
    assert (capture["shipment"], capture["userErrors"]) == (
        {"isCaptured": True, "isPaid": True},
        [],
    )
    assert capture["paymentHistoryEntry"] == {
        "entryType": "CAPTURE", "status": "SUCCESS", "value": {"value": 390.0},
    }  # fmt: skip
    assert len(capture["paymentHistoryEntries"]) == 1
    assert errors(mutate(sim, CAPTURE, "captureShipment", id=ship["id"])) == [
        "Shipment 10-1 is captured already."
    ]
    unpay = mutate(sim, UPDATE_SHIPMENT, "updateShipment", id=ship["id"], i={"isPaid": False})
    assert errors(unpay) == ["Shipment 10-1 is captured; it stays paid."]

    future = mutate(sim, COMPLETE, "completeShipment", id=ship["id"],
                    i={"shippedAt": "2027-01-01T00:00:00Z"})  # fmt: skip
    assert errors(future) == ["shippedAt may not be in the future."]
    assert (levels(sim, "TEE-M"), levels(sim, "CAP")) == ((5, 3), (3, 1))
    done = mutate(sim, COMPLETE, "completeShipment", id=ship["id"],
                  i={"shipmentInfo": {"trackingNumber": "TRK1", "packagesNumber": 2}})  # fmt: skip
    assert done["shipment"]["isShipped"] is True
    assert (done["shipment"]["trackingNumber"], done["shipment"]["numberOfPackages"]) == ("TRK1", 2)
    assert done["shipment"]["shippedAt"].startswith("2026-10-15T14:00:00")
    assert (levels(sim, "TEE-M"), levels(sim, "CAP")) == ((2, 0), (2, 0))  # left the warehouse
    assert order(sim, 10)["status"] == "SHIPPED"
    assert errors(mutate(sim, COMPLETE, "completeShipment", id=ship["id"], i=None)) == [
        "Shipment 10-1 is shipped already."
    ]
    info = mutate(sim, UPDATE_SHIPMENT, "updateShipment", id=ship["id"],
                  i={"shipmentInfo": {"carrier": "Other"}})  # fmt: skip
    assert errors(info) == ["Shipment 10-1 is shipped; shipmentInfo cannot change."]

    lines = order(sim, 10)["shipments"][0]["lines"]
    made = mutate(sim, CREATE_RETURN, "createReturn", i={
        "shipment": {"id": ship["id"]},
        "lines": [{"shipmentLine": {"id": sl["id"]}, "quantity": sl["quantity"]} for sl in lines],
        "returnStockActionPolicy": RELEASE_STOCK,
    })  # fmt: skip
    assert errors(made) == [] and made["return"]["id"] > 0
    assert (levels(sim, "TEE-M"), levels(sim, "CAP")) == ((5, 0), (3, 0))


def test_update_shipment_marks_paid_and_good_to_go(sim: CentraSimHandle) -> None:
    ship = ship_all(sim, 10)["shipment"]
    assert ship["isGoodToGo"] is False  # not given: not good to go [INF]
    not_ready = mutate(sim, COMPLETE, "completeShipment", id=ship["id"], i=None)
    assert errors(not_ready) == [
        "Shipment 10-1 is not good to go.",
        "Shipment 10-1 is not paid; capture it or mark it paid first.",
    ]
    updated = mutate(sim, UPDATE_SHIPMENT, "updateShipment", id=ship["id"], i={
        "isGoodToGo": True, "isPaid": True, "additionalMessage": "fragile",
        "shipmentInfo": {"trackingNumber": "PRE-1"},
    })["shipment"]  # fmt: skip
    assert (updated["isGoodToGo"], updated["isPaid"], updated["additionalMessage"]) == (
        True, True, "fragile",
    )  # fmt: skip
    assert updated["paidAt"] is not None and updated["trackingNumber"] == "PRE-1"
    wrong = mutate(sim, UPDATE_SHIPMENT, "updateShipment", id=ship["id"],
                   i={"paidValue": {"value": 10, "currencyIsoCode": "EUR"}})  # fmt: skip
    assert errors(wrong) == ["Currency EUR does not match the order currency SEK."]
    assert errors(mutate(sim, UPDATE_SHIPMENT, "updateShipment", id=999, i={"isPaid": True})) == [
        "Shipment 999 not found."
    ]
    done = mutate(sim, COMPLETE, "completeShipment", id=ship["id"], i=None)
    assert (done["userErrors"], done["shipment"]["isShipped"]) == ([], True)
    payments = order(sim, 10)["paymentHistory"]
    assert [p["entryType"] for p in payments] == ["AUTH"]  # paid outside Centra: no capture


def test_a_refused_capture_fails_capture_shipment_but_only_warns_on_create(
    sim: CentraSimHandle,
) -> None:
    # Order 12: authorized 200, 100 captured, its unshipped shipment worth 100; release the rest.
    mutate(sim, RELEASE, "releaseRemainingOrderAuthorization", o={"number": 12})
    unshipped = next(s for s in order(sim, 12)["shipments"] if not s["isShipped"])
    refused = mutate(sim, CAPTURE, "captureShipment", id=unshipped["id"])
    assert errors(refused) == [
        "The payment provider refused to capture 100.00 SEK: only 0.00 is left of the "
        "authorization."
    ]
    assert refused["shipment"] is None
    assert refused["paymentHistoryEntry"]["status"] == "FAILED"
    still = next(s for s in order(sim, 12)["shipments"] if s["id"] == unshipped["id"])
    assert (still["isCaptured"], still["isPaid"]) == (False, False)

    # Order 13 (authorized 80): one cap captured, the rest released, the next capture refused.
    (cap,) = line_ids(sim, 13)
    inp = {"order": {"number": 13}, "lines": [{"orderLine": {"id": cap}, "quantity": 1}],
           "allocateDemand": True, "capture": True}  # fmt: skip
    first = mutate(sim, CREATE, "createShipment", i=inp)
    assert (first["userWarnings"], first["shipment"]["isCaptured"]) == ([], True)
    mutate(sim, RELEASE, "releaseRemainingOrderAuthorization", o={"number": 13})
    second = mutate(sim, CREATE, "createShipment", i=inp)
    assert second["userErrors"] == [] and second["shipment"]["isCaptured"] is False
    assert [w["message"] for w in second["userWarnings"]] == [
        "The payment provider refused to capture 40.00 SEK: only 0.00 is left of the authorization."
    ]
    assert len(order(sim, 13)["shipments"]) == 2  # created all the same [C]
    assert [(p["entryType"], p["status"]) for p in order(sim, 13)["paymentHistory"]] == [
        ("AUTH", "SUCCESS"), ("CAPTURE", "SUCCESS"), ("CANCEL", "SUCCESS"), ("CAPTURE", "FAILED"),
    ]  # fmt: skip


def test_an_order_capture_pays_for_shipments_captured_later(sim: CentraSimHandle) -> None:
    mutate(sim, CONFIRM, "confirmOrder", o={"number": 10})
    mutate(sim, CAPTURE_ORDER, "captureOrder", o={"number": 10})  # all 390 of it
    tee, _cap = line_ids(sim, 10)
    inp = {"order": {"number": 10}, "lines": [{"orderLine": {"id": tee}, "quantity": 1}],
           "capture": True}  # fmt: skip
    created = mutate(sim, CREATE, "createShipment", i=inp)
    assert (created["userWarnings"], created["shipment"]["isCaptured"]) == ([], True)
    again = mutate(sim, CAPTURE, "captureShipment", id=created["shipment"]["id"])
    assert errors(again) == ["Shipment 10-1 is captured already."]
    # no request to the PSP: the order's capture is the only one [C]
    assert [p["entryType"] for p in order(sim, 10)["paymentHistory"]] == ["AUTH", "CAPTURE"]


def test_processing_mutations_need_their_write_permissions(sim: CentraSimHandle) -> None:
    readable = ["Order:read", "Shipment:read", "PaymentHistory:read"]
    sim.client.post("/_sim/tokens", json={"token": "reader", "permissions": readable})
    cases = [
        (CONFIRM, {"o": {"number": 10}}, "Order:write", "confirmOrder"),
        (LOCK, {"i": {"orders": [{"number": 10}], "isLocked": True}}, "Order.isLocked:write",
         "setOrdersLock"),
        (RELEASE, {"o": {"number": 12}}, "Payment.cancel:write",
         "releaseRemainingOrderAuthorization"),
        (CREATE, {"i": {"order": {"number": 10}}}, "Shipment:write", "createShipment"),
        (CAPTURE, {"id": 1}, "Shipment:write", "captureShipment"),
    ]  # fmt: skip
    for query, variables, permission, field in cases:
        body = sim.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": "Bearer reader"},
        ).json()
        assert body["data"] is None
        assert [e["message"] for e in body["errors"]] == [
            f"You need {permission} permission to access {field}."
        ]
    assert order(sim, 10)["status"] == "PENDING" and order(sim, 10)["isLocked"] is False
