"""The Centra simulator's mutations: validation as userErrors, atomicity, no dedupe, stock."""

from __future__ import annotations

from typing import Any

from centra_sim_support import CentraSimHandle

CREATE = """mutation($input: ReturnCreateInput!) {
  createReturn(input: $input) {
    return { id returnStatus externalId returnedToStock lines { id quantity shipmentLine { id } }
             totals { shipping { value } } grandTotal { value } }
    userErrors { message path } userWarnings { message path }
  }
}"""
COMPLETE = """mutation($id: Int!) { completeReturn(id: $id, input: {sendEmail: false}) {
  return { id returnStatus } userErrors { message path } } }"""
CHANGE = """mutation($input: StockChangeInput!) { changeStock(input: $input) {
  stockChange { id description lines { deliveredQuantity productSize { SKU } } }
  userErrors { message path } } }"""
SET = """mutation($input: SetStockInput!) { setStock(input: $input) {
  stockChanges { id lines { deliveredQuantity } } userErrors { message path } } }"""


def shipment(sim: CentraSimHandle, number: int, index: int = 0) -> dict[str, Any]:
    order = sim.data(
        "query($n: [Int!]) { orders(where: {number: $n}) "
        "{ shipments { id lines { id quantity } } } }",
        {"n": number},
    )["orders"][0]
    ship: dict[str, Any] = order["shipments"][index]
    return ship


def return_input(ship: dict[str, Any], quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "shipment": {"id": ship["id"]},
        "lines": [{"shipmentLine": {"id": ship["lines"][0]["id"]}, "quantity": quantity}],
        "returnStockActionPolicy": {"removeItemsFromStock": True},
        **extra,
    }


def create(sim: CentraSimHandle, inp: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = sim.data(CREATE, {"input": inp})["createReturn"]
    return payload


def physical(sim: CentraSimHandle, sku: str, warehouse: int) -> int:
    rows = sim.client.get("/_sim/state/stock").json()["stock"]
    return next(r["physical"] for r in rows if r["sku"] == sku and r["warehouse_id"] == warehouse)


def size_ref(sim: CentraSimHandle, sku: str) -> tuple[int, int]:
    size = sim.data(
        "query($s: [String!]) { productSizes(where: {SKU: $s}) { id productVariant { id } } }",
        {"s": [sku]},
    )["productSizes"][0]
    return size["productVariant"]["id"], size["id"]


# ----------------------------------------------------------------------------- createReturn


def test_create_return_succeeds_pending_with_external_id(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1001)
    payload = create(
        centra_sim, return_input(ship, externalId="ret_0001", shippingCost={"fromShipment": True})
    )
    assert payload["userErrors"] == [] and payload["userWarnings"] == []
    ret = payload["return"]
    assert (ret["returnStatus"], ret["externalId"], ret["returnedToStock"]) == (
        "PENDING", "ret_0001", False,
    )  # fmt: skip
    assert ret["lines"][0]["shipmentLine"]["id"] == ship["lines"][0]["id"]
    assert ret["totals"]["shipping"]["value"] == 49.0
    assert ret["grandTotal"]["value"] == 299.0 + 49.0
    found = centra_sim.data('{ returns(where: {externalId: "ret_0001"}) { id } }')["returns"]
    assert found == [{"id": ret["id"]}]


def test_create_return_on_unshipped_shipment_is_a_user_error(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1003, index=1)
    payload = create(centra_sim, return_input(ship))
    assert payload["return"] is None
    assert "is not shipped" in payload["userErrors"][0]["message"]
    assert payload["userErrors"][0]["path"] == ["input", "shipment", "id"]


def test_create_return_line_of_another_shipment_is_a_user_error(
    centra_sim: CentraSimHandle,
) -> None:
    other = shipment(centra_sim, 1004)
    inp = return_input(shipment(centra_sim, 1001))
    inp["lines"][0]["shipmentLine"]["id"] = other["lines"][0]["id"]
    errors = create(centra_sim, inp)["userErrors"]
    assert errors[0]["path"] == ["input", "lines", "0", "shipmentLine", "id"]


def test_create_return_quantity_counts_earlier_returns(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1001)  # 2 shipped
    assert create(centra_sim, return_input(ship, 1))["userErrors"] == []
    errors = create(centra_sim, return_input(ship, 2))["userErrors"]
    assert "only 1 left to return" in errors[0]["message"]
    assert errors[0]["path"] == ["input", "lines", "0", "quantity"]


def test_create_return_needs_exactly_one_stock_policy(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1001)
    for policy in (
        {},
        {"removeItemsFromStock": True, "releaseItemsBackToWarehouse": True},
        {"removeItemsFromStock": False},
    ):
        errors = create(centra_sim, return_input(ship, returnStockActionPolicy=policy))[
            "userErrors"
        ]
        assert errors[0]["path"] == ["input", "returnStockActionPolicy"], policy


def test_create_return_cost_above_remaining_is_a_user_error(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1001)
    too_much = {"value": {"value": 49.01, "currencyIsoCode": "SEK"}}
    errors = create(centra_sim, return_input(ship, shippingCost=too_much))["userErrors"]
    assert "exceeds the 49.00 that remains" in errors[0]["message"]
    # Once the shipping was returned, nothing remains for a second return.
    create(centra_sim, return_input(ship, shippingCost={"fromShipment": True}))
    again = {"value": {"value": 1, "currencyIsoCode": "SEK"}}
    assert create(centra_sim, return_input(ship, shippingCost=again))["userErrors"]


def test_rejected_create_return_changes_nothing(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1001)
    inp = return_input(ship, 1, returnStockActionPolicy={"releaseItemsBackToWarehouse": True})
    inp["lines"].append({"shipmentLine": {"id": 999}, "quantity": 1})  # one bad line
    before = centra_sim.client.get("/_sim/effects").json()
    payload = create(centra_sim, inp)
    assert payload["return"] is None and len(payload["userErrors"]) == 1
    assert centra_sim.client.get("/_sim/effects").json() == before
    assert physical(centra_sim, "TEE-BLK-M", 1) == 5


def test_duplicate_create_return_really_duplicates(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1001)
    first = create(centra_sim, return_input(ship, externalId="ret_dup"))["return"]
    second = create(centra_sim, return_input(ship, externalId="ret_dup"))["return"]
    assert first["id"] != second["id"]
    returns = centra_sim.client.get("/_sim/effects").json()["returns"]
    assert [r["external_id"] for r in returns] == ["ret_dup", "ret_dup"]


def test_stock_policies_move_warehouse_stock(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1001)
    release = {"releaseItemsBackToWarehouse": True}
    assert (
        create(centra_sim, return_input(ship, returnStockActionPolicy=release))["userErrors"] == []
    )
    assert physical(centra_sim, "TEE-BLK-M", 1) == 6  # back where it was allocated from
    other = {"sendItemsToDifferentWarehouse": {"id": 2}}
    assert create(centra_sim, return_input(ship, returnStockActionPolicy=other))["userErrors"] == []
    assert physical(centra_sim, "TEE-BLK-M", 2) == 1
    changes = centra_sim.client.get("/_sim/effects").json()["stock_changes"]
    assert [(c["warehouse_id"], c["delta"]) for c in changes] == [(1, 1), (2, 1)]


def test_returns_allowed_on_archived_orders_by_default(centra_sim: CentraSimHandle) -> None:
    assert create(centra_sim, return_input(shipment(centra_sim, 1002)))["userErrors"] == []


# ----------------------------------------------------------------------------- completeReturn


def test_complete_return_twice_is_a_user_error(centra_sim: CentraSimHandle) -> None:
    ret = create(centra_sim, return_input(shipment(centra_sim, 1001)))["return"]
    done = centra_sim.data(COMPLETE, {"id": ret["id"]})["completeReturn"]
    assert done["return"]["returnStatus"] == "COMPLETED" and done["userErrors"] == []
    again = centra_sim.data(COMPLETE, {"id": ret["id"]})["completeReturn"]
    assert again["return"] is None
    assert "already completed" in again["userErrors"][0]["message"]
    unknown = centra_sim.data(COMPLETE, {"id": 777})["completeReturn"]
    assert "not found" in unknown["userErrors"][0]["message"]


# ----------------------------------------------------------------------------- stock


def test_change_stock_into_warehouse_by_size_name(centra_sim: CentraSimHandle) -> None:
    variant, _ = size_ref(centra_sim, "TEE-BLK-M")
    inp = {
        "intoWarehouse": {"id": 2},
        "description": "returnbridge restock ret_1",
        "productVariants": [
            {"productVariant": {"id": variant}, "sizeChanges": {"size": {"name": "M"},
             "deliveredQuantity": 2}}
        ],
    }  # fmt: skip
    payload = centra_sim.data(CHANGE, {"input": inp})["changeStock"]
    assert payload["userErrors"] == []
    assert payload["stockChange"]["lines"] == [
        {"deliveredQuantity": 2, "productSize": {"SKU": "TEE-BLK-M"}}
    ]
    assert physical(centra_sim, "TEE-BLK-M", 2) == 2
    found = centra_sim.data(
        '{ stockChanges(where: {description: "returnbridge restock ret_1"}) { id } }'
    )
    assert found == {"stockChanges": [{"id": payload["stockChange"]["id"]}]}


def test_duplicate_change_stock_really_duplicates(centra_sim: CentraSimHandle) -> None:
    variant, size = size_ref(centra_sim, "TEE-BLK-S")
    inp = {
        "intoWarehouse": {"id": 2},
        "description": "same",
        "productVariants": [
            {"productVariant": {"id": variant}, "sizeChanges": [{"size": {"id": size},
             "deliveredQuantity": 1}]}
        ],
    }  # fmt: skip
    centra_sim.data(CHANGE, {"input": inp})
    centra_sim.data(CHANGE, {"input": inp})
    assert physical(centra_sim, "TEE-BLK-S", 2) == 2
    assert len(centra_sim.client.get("/_sim/effects").json()["stock_changes"]) == 2


def test_change_stock_removing_more_than_free_is_rejected_whole(
    centra_sim: CentraSimHandle,
) -> None:
    variant, size = size_ref(centra_sim, "TEE-BLK-L")
    inp = {
        "outFromWarehouse": {"id": 1},
        "description": "shrinkage",
        "productVariants": [
            {"productVariant": {"id": variant}, "sizeChanges": [
                {"size": {"id": size}, "deliveredQuantity": 2},
                {"size": {"id": size}, "deliveredQuantity": 2},
            ]}
        ],
    }  # fmt: skip
    payload = centra_sim.data(CHANGE, {"input": inp})["changeStock"]
    assert payload["stockChange"] is None
    assert "3 free, 4 to take" in payload["userErrors"][0]["message"]
    assert physical(centra_sim, "TEE-BLK-L", 1) == 3


def test_change_stock_size_of_another_variant_is_a_user_error(
    centra_sim: CentraSimHandle,
) -> None:
    variant, _ = size_ref(centra_sim, "TEE-BLK-M")
    _, jeans_size = size_ref(centra_sim, "JEANS-32")
    inp = {
        "intoWarehouse": {"id": 1},
        "productVariants": [
            {"productVariant": {"id": variant}, "sizeChanges": [{"size": {"id": jeans_size},
             "deliveredQuantity": 1}]}
        ],
    }  # fmt: skip
    errors = centra_sim.data(CHANGE, {"input": inp})["changeStock"]["userErrors"]
    assert errors[0]["path"] == ["input", "productVariants", "0", "sizeChanges", "0", "size"]


def test_set_stock_is_absolute(centra_sim: CentraSimHandle) -> None:
    variant, size = size_ref(centra_sim, "TEE-BLK-S")
    inp = {
        "warehouse": {"id": 1},
        "description": "count",
        "stockQuantityType": "PHYSICAL",
        "productVariants": [
            {"productVariant": {"id": variant}, "sizeStockLevels": [{"size": {"id": size},
             "quantity": 7}]}
        ],
    }  # fmt: skip
    payload = centra_sim.data(SET, {"input": inp})["setStock"]
    assert payload["userErrors"] == []
    assert payload["stockChanges"][0]["lines"] == [{"deliveredQuantity": -3}]
    assert physical(centra_sim, "TEE-BLK-S", 1) == 7
    inp["productVariants"][0]["sizeStockLevels"][0]["quantity"] = -1
    errors = centra_sim.data(SET, {"input": inp})["setStock"]["userErrors"]
    assert errors[0]["path"][-1] == "quantity"
    assert physical(centra_sim, "TEE-BLK-S", 1) == 7


def test_aliased_mutations_each_execute(centra_sim: CentraSimHandle) -> None:
    ship = shipment(centra_sim, 1001)
    query = """mutation($a: ReturnCreateInput!, $b: ReturnCreateInput!) {
      first: createReturn(input: $a) { return { id } userErrors { message } }
      second: createReturn(input: $b) { return { id } userErrors { message } }
    }"""
    data = centra_sim.data(query, {"a": return_input(ship), "b": return_input(ship)})
    assert data["first"]["return"]["id"] != data["second"]["return"]["id"]
    counters = centra_sim.client.get("/_sim/counters").json()
    assert counters["mutations"] == 2
    assert counters["by_operation"]["mutation createReturn"] == 2
