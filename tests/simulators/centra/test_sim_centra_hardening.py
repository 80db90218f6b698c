"""The Centra simulator: validations and reversals beyond the happy paths, over real HTTP.

Every rejected write must leave the state exactly as it was ([C] [ERR]), so most tests compare
`/_sim/effects` and `/_sim/state/stock` before and after.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from centra_sim_support import CentraSimHandle, centra_sim_scenario_data, running_centra_sim
from test_sim_centra_limits_faults import create_return_body, draws, first_draw_seed
from test_sim_centra_mutations import (
    CHANGE,
    COMPLETE,
    create,
    physical,
    return_input,
    shipment,
    size_ref,
)

from returnbridge.connectors.centra.inferred import CentraInferred
from returnbridge.scenario import Scenario
from returnbridge.simulators.centra.faults import AfterCommit, FaultSettings

UNCOMPLETE = """mutation($id: Int!) { uncompleteReturn(id: $id) {
  return { id returnStatus } userErrors { message path } userWarnings { message path } } }"""
DELETE = """mutation($id: Int!) { deleteReturn(id: $id) {
  userErrors { message path } userWarnings { message path } } }"""
BEARER = {"Authorization": "Bearer centra-sim-token"}


def snapshot(sim: CentraSimHandle) -> tuple[Any, Any]:
    return (
        sim.client.get("/_sim/effects").json(),
        sim.client.get("/_sim/state/stock").json(),
    )


def errors_of(sim: CentraSimHandle, inp: dict[str, Any]) -> list[dict[str, Any]]:
    payload = create(sim, inp)
    assert payload["return"] is None
    errors: list[dict[str, Any]] = payload["userErrors"]
    return errors


# ----------------------------------------------------------------------------- createReturn


def test_create_return_rejections_change_nothing(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1001)
    before = snapshot(centra_sim)
    sek = {"currencyIsoCode": "SEK"}
    cases: list[tuple[dict[str, Any], list[str], str]] = [
        ({**return_input(ship), "shipment": {"id": 999}}, ["input", "shipment", "id"], "not found"),
        (return_input(ship, 0), ["input", "lines", "0", "quantity"], "at least 1"),
        ({**return_input(ship), "lines": []}, ["input", "lines"], "at least one line"),
        (
            return_input(ship, shippingCost={"value": {"value": 1, "currencyIsoCode": "EUR"}}),
            ["input", "shippingCost", "value", "currencyIsoCode"],
            "does not match",
        ),
        (
            return_input(ship, shippingCost={"value": {"value": -1, **sek}}),
            ["input", "shippingCost", "value", "value"],
            "negative",
        ),
        (
            return_input(ship, handlingCost={"value": {"value": 0, **sek}, "fromShipment": True}),
            ["input", "handlingCost"],
            "exactly one of value or fromShipment",
        ),
        (
            return_input(ship, voucherValue={"value": {"value": 1, **sek}}),
            ["input", "voucherValue", "value", "value"],
            "exceeds the 0.00",
        ),
        (
            return_input(
                ship, returnStockActionPolicy={"sendItemsToDifferentWarehouse": {"id": 99}}
            ),
            ["input", "returnStockActionPolicy", "sendItemsToDifferentWarehouse", "id"],
            "Warehouse 99 not found",
        ),
    ]
    for inp, path, message in cases:
        errors = errors_of(centra_sim, inp)
        assert [e["path"] for e in errors] == [path], (inp, errors)
        assert message in errors[0]["message"]
    # Two line problems and a policy problem are all reported at once.
    bad = return_input(ship, 3, returnStockActionPolicy={})
    bad["lines"].append({"shipmentLine": {"id": 1}, "quantity": 1})
    assert len(errors_of(centra_sim, bad)) == 3
    # The same shipment line twice counts against one budget.
    twice = return_input(ship, 2)
    twice["lines"].append(dict(twice["lines"][0]))
    assert "only 0 left" in errors_of(centra_sim, twice)[0]["message"]
    assert snapshot(centra_sim) == before


def test_create_return_on_a_cancelled_order_is_a_user_error(centra_scenario: Scenario) -> None:
    data = centra_scenario.model_dump(mode="json")
    data["centra"]["orders"][0]["status"] = "CANCELLED"
    data["centra"]["orders"][0]["shipments"] = [{"lines": [{"line": 1, "quantity": 2}]}]
    with running_centra_sim(Scenario.model_validate(data)) as sim:
        errors = errors_of(sim, return_input(shipment(sim, 1001)))
        assert "is cancelled" in errors[0]["message"]


def test_returns_on_archived_orders_follow_the_inferred_switch(centra_scenario: Scenario) -> None:
    inferred = CentraInferred(returns_allowed_on_archived_orders=False)
    with running_centra_sim(centra_scenario, inferred=inferred) as sim:
        errors = errors_of(sim, return_input(shipment(sim, 1002)))
        assert errors[0]["path"] == ["input", "shipment", "id"]
        assert "archived" in errors[0]["message"]


def test_costs_from_shipment_take_what_remains_and_return_cost_lowers_the_refund(
    centra_sim: CentraSimHandle,
) -> None:
    ship = shipment(centra_sim, 1001)
    sek = {"currencyIsoCode": "SEK"}
    first = create(
        centra_sim,
        return_input(
            ship, shippingCost={"value": {"value": 20.5, **sek}}, returnCost={"value": 10, **sek}
        ),
    )["return"]
    assert first["totals"]["shipping"]["value"] == 20.5
    assert first["grandTotal"]["value"] == 299.0 + 20.5 - 10
    second = create(centra_sim, return_input(ship, shippingCost={"fromShipment": True}))["return"]
    assert second["totals"]["shipping"]["value"] == 28.5  # 49.00 - 20.50, in exact decimals


# ----------------------------------------------------------------------------- uncomplete / delete


def test_uncomplete_return(centra_sim: CentraSimHandle) -> None:
    ret = create(centra_sim, return_input(shipment(centra_sim, 1001)))["return"]
    pending = centra_sim.data(UNCOMPLETE, {"id": ret["id"]})["uncompleteReturn"]
    assert pending["return"] is None and "is not completed" in pending["userErrors"][0]["message"]
    centra_sim.data(COMPLETE, {"id": ret["id"]})
    done = centra_sim.data(UNCOMPLETE, {"id": ret["id"]})["uncompleteReturn"]
    assert done == {"return": {"id": ret["id"], "returnStatus": "PENDING"}, "userErrors": [],
                    "userWarnings": []}  # fmt: skip
    # A refunded return stays completed ([INF], like the Order API's `completed: false`).
    put = centra_sim.rest("PUT", f"/returns/{ret['id']}", json={"refundPayment": True})
    assert put.json()["return"]["completed"] is True
    refunded = centra_sim.data(UNCOMPLETE, {"id": ret["id"]})["uncompleteReturn"]
    assert "refunded" in refunded["userErrors"][0]["message"]
    unknown = centra_sim.data(UNCOMPLETE, {"id": 777})["uncompleteReturn"]
    assert "not found" in unknown["userErrors"][0]["message"]


def test_delete_return_reverses_its_stock_effect(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1001)
    release = create(
        centra_sim,
        return_input(ship, returnStockActionPolicy={"releaseItemsBackToWarehouse": True}),
    )["return"]
    removed = create(centra_sim, return_input(ship))["return"]
    assert physical(centra_sim, "TEE-BLK-M", 1) == 6
    assert create(centra_sim, return_input(ship))["userErrors"]  # both shipped items returned

    assert centra_sim.data(DELETE, {"id": release["id"]})["deleteReturn"] == {
        "userErrors": [], "userWarnings": [],
    }  # fmt: skip
    assert physical(centra_sim, "TEE-BLK-M", 1) == 5
    effects = centra_sim.client.get("/_sim/effects").json()
    assert [r["id"] for r in effects["returns"]] == [removed["id"]]
    assert [(c["warehouse_id"], c["delta"]) for c in effects["stock_changes"]] == [(1, 1), (1, -1)]
    # Its quantity can be returned again; deleting a remove-from-stock return moves no stock.
    assert create(centra_sim, return_input(ship))["userErrors"] == []
    assert centra_sim.data(DELETE, {"id": removed["id"]})["deleteReturn"]["userErrors"] == []
    assert len(centra_sim.client.get("/_sim/effects").json()["stock_changes"]) == 2
    assert returnable_left(centra_sim, ship) == 1


def returnable_left(sim: CentraSimHandle, ship: dict[str, Any]) -> int:
    line = ship["lines"][0]
    returned = sum(
        rl["quantity"]
        for r in sim.client.get("/_sim/effects").json()["returns"]
        for rl in r["lines"]
    )
    return int(line["quantity"]) - returned


def test_delete_return_rejections_change_nothing(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1001)
    release = {"releaseItemsBackToWarehouse": True}
    ret = create(centra_sim, return_input(ship, returnStockActionPolicy=release))["return"]
    completed = create(centra_sim, return_input(ship))["return"]
    centra_sim.data(COMPLETE, {"id": completed["id"]})
    # The restocked item was sold again: there is nothing free to take back.
    variant, size = size_ref(centra_sim, "TEE-BLK-M")
    sell = {
        "outFromWarehouse": {"id": 1},
        "productVariants": [{"productVariant": {"id": variant},
                             "sizeChanges": [{"size": {"id": size}, "deliveredQuantity": 6}]}],
    }  # fmt: skip
    assert centra_sim.data(CHANGE, {"input": sell})["changeStock"]["userErrors"] == []
    before = snapshot(centra_sim)
    for return_id, message in (
        (ret["id"], "only 0 free to allocate"),
        (completed["id"], "uncomplete it before deleting"),
        (777, "not found"),
    ):
        errors = centra_sim.data(DELETE, {"id": return_id})["deleteReturn"]["userErrors"]
        assert message in errors[0]["message"] and errors[0]["path"] == ["id"]
    assert snapshot(centra_sim) == before


# ----------------------------------------------------------------------------- changeStock


def test_change_stock_structural_rejections(centra_sim: CentraSimHandle) -> None:
    variant, size = size_ref(centra_sim, "TEE-BLK-S")
    one = [{"size": {"id": size}, "deliveredQuantity": 1}]

    def change(**inp: Any) -> list[dict[str, Any]]:
        inp.setdefault("productVariants", [{"productVariant": {"id": variant}, "sizeChanges": one}])
        payload = centra_sim.data(CHANGE, {"input": inp})["changeStock"]
        assert payload["stockChange"] is None
        errors: list[dict[str, Any]] = payload["userErrors"]
        return errors

    before = snapshot(centra_sim)
    assert (
        "same warehouse"
        in change(intoWarehouse={"id": 1}, outFromWarehouse={"id": 1})[0]["message"]
    )
    # An unknown warehouse is reported alone (not also as a misleading shortage elsewhere).
    many = [{"size": {"id": size}, "deliveredQuantity": 50}]  # more than warehouse 1 holds
    unknown = change(
        intoWarehouse={"id": 9},
        outFromWarehouse={"id": 1},
        productVariants=[{"productVariant": {"id": variant}, "sizeChanges": many}],
    )
    assert [e["path"] for e in unknown] == [["input", "intoWarehouse", "id"]]
    assert change()[0]["path"] == ["input"]
    empty = change(
        intoWarehouse={"id": 1}, productVariants=[{"productVariant": {"id": variant},
                                                    "sizeChanges": []}]
    )  # fmt: skip
    assert empty[0]["path"] == ["input", "productVariants", "0", "sizeChanges"]
    zero = [{"size": {"id": size}, "deliveredQuantity": 0}]
    assert (
        change(
            intoWarehouse={"id": 1},
            productVariants=[{"productVariant": {"id": variant}, "sizeChanges": zero}],
        )[0]["path"][-1]
        == "deliveredQuantity"
    )
    negative = [{"size": {"id": size}, "deliveredQuantity": -1}]
    assert change(
        outFromWarehouse={"id": 1},
        productVariants=[{"productVariant": {"id": variant}, "sizeChanges": negative}],
    )
    assert change(
        intoWarehouse={"id": 1}, productVariants=[{"productVariant": {"id": 1}, "sizeChanges": one}]
    )[0]["path"] == ["input", "productVariants", "0", "productVariant", "id"]
    assert snapshot(centra_sim) == before


def test_move_between_warehouses(centra_sim: CentraSimHandle) -> None:
    variant, size = size_ref(centra_sim, "TEE-BLK-L")
    inp = {
        "intoWarehouse": {"id": 2},
        "outFromWarehouse": {"id": 1},
        "productVariants": [{"productVariant": {"id": variant},
                             "sizeChanges": [{"size": {"id": size}, "deliveredQuantity": 3}]}],
    }  # fmt: skip
    assert centra_sim.data(CHANGE, {"input": inp})["changeStock"]["userErrors"] == []
    assert (physical(centra_sim, "TEE-BLK-L", 1), physical(centra_sim, "TEE-BLK-L", 2)) == (0, 4)


# ----------------------------------------------------------------------------- Order API


def test_create_order_rejects_a_non_positive_order_number(centra_sim: CentraSimHandle) -> None:
    for number in (0, -5):
        body = {
            "products": [{"sku": "TEE-BLK-S", "qty": 1, "unitPrice": 0}],
            "orderNumber": number,
            "address": {"email": "a@example.com", "country": "SE"},
        }
        response = centra_sim.rest("POST", "/order", json=body)
        assert response.status_code == 400 and "orderNumber" in response.json()["msg"]
    assert centra_sim.client.get("/_sim/effects").json()["orders_created"] == []


# ----------------------------------------------------------------------------- faults


def test_timeout_after_commit_commits_before_the_stall(centra_sim: CentraSimHandle) -> None:
    """The write is visible while the response is still being held back."""
    body = create_return_body(centra_sim)
    seed = first_draw_seed(AfterCommit.STALL)
    centra_sim.client.post(
        "/_sim/faults", json={"seed": seed, "timeout_after_commit_rate": 1.0, "stall_seconds": 0.8}
    )
    outcome: dict[str, Any] = {}

    def call() -> None:
        with httpx.Client(base_url=centra_sim.url, timeout=5) as client:
            outcome["response"] = client.post("/graphql", json=body, headers=BEARER)

    started = time.monotonic()
    worker = threading.Thread(target=call)
    worker.start()
    while not centra_sim.client.get("/_sim/effects").json()["returns"]:
        assert time.monotonic() - started < 0.7, "the write did not commit before the stall"
        time.sleep(0.01)
    assert worker.is_alive() and "response" not in outcome  # committed, still stalled
    worker.join(timeout=5)
    assert time.monotonic() - started >= 0.8
    response = outcome["response"]  # a client patient enough gets the real answer
    assert response.status_code == 200
    assert response.json()["data"]["createReturn"]["return"]["id"] == 1


def test_seeded_after_commit_faults_repeat_for_the_same_requests(
    centra_sim: CentraSimHandle,
) -> None:
    """Same seed and same request sequence (reads and writes mixed) -> same faults."""
    settings = {"seed": 11, "error_rate": 0.2, "timeout_after_commit_rate": 0.5}
    body = create_return_body(centra_sim)
    body["variables"]["i"]["returnStockActionPolicy"] = {"sendItemsToDifferentWarehouse": {"id": 2}}

    def run() -> list[str]:
        centra_sim.client.post("/_sim/load", json=centra_sim_scenario_data())
        centra_sim.client.post("/_sim/faults", json={**settings, "stall_seconds": 0})
        seen = []
        for i in range(12):
            try:
                if i % 2:
                    response = centra_sim.client.post("/graphql", json=body, headers=BEARER)
                else:
                    response = centra_sim.graphql("{ warehouses { id } }")
                seen.append(str(response.status_code))
            except httpx.RemoteProtocolError:
                seen.append("dropped")
        effects = centra_sim.client.get("/_sim/effects").json()
        seen.append(f"returns={len(effects['returns'])}")
        return seen

    first, second = run(), run()
    assert first == second
    expected = []
    for i, d in enumerate(draws(FaultSettings(**settings), 12)):
        if d.error:
            expected.append("500")
        elif i % 2 and d.after_commit is AfterCommit.DROP:
            expected.append("dropped")
        else:
            expected.append("200")  # a zero-second stall still delivers the answer
    writes = sum(
        1 for i, d in enumerate(draws(FaultSettings(**settings), 12)) if i % 2 and not d.error
    )
    assert first[:-1] == expected and first[-1] == f"returns={min(writes, 2)}"
    assert "dropped" in first and "500" in first
