"""The simulated REST Order API answers in the documented shapes ([C] order-api reference, "get
returns" and "update return"): `GET /returns` rows with `date`, `shipment`, `selectionId`,
`customerId`, `taxDeduction` and products' `sku` / `quantity`; `PUT /returns/{id}` answering
`{status: "ok", return: <that row>}` plus the [INF] `refund` entry, whose status passes through."""

from __future__ import annotations

import re
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle

from returnbridge.simulators.centra import order_api

ROW_KEYS = {
    "returnId", "completed", "shipment", "shipmentId", "orderId", "selectionId", "customerId",
    "date", "returnCost", "shippingCost", "handlingCost", "voucherValue", "taxValue",
    "taxDeduction", "currency", "returnToStock", "comment", "createdFrom", "products",
}  # fmt: skip
PRODUCT_KEYS = {"returnLineId", "shipmentLineId", "orderLineId", "sku", "quantity"}


def new_return(sim: CentraSimHandle, number: int) -> tuple[int, dict[str, Any]]:
    order = sim.data(
        "query($n: [Int!]) { orders(where: {number: $n}) "
        "{ id shipments { id number lines { id } } } }",
        {"n": [number]},
    )["orders"][0]
    ship = order["shipments"][0]
    created = sim.data(
        """mutation($input: ReturnCreateInput!) { createReturn(input: $input) {
             return { id } userErrors { message } } }""",
        {
            "input": {
                "shipment": {"id": ship["id"]},
                "lines": [{"shipmentLine": {"id": ship["lines"][0]["id"]}, "quantity": 1}],
                "returnStockActionPolicy": {"removeItemsFromStock": True},
            }
        },
    )["createReturn"]
    assert created["userErrors"] == []
    return int(created["return"]["id"]), {"id": order["id"], "shipment": ship}


def listed(sim: CentraSimHandle, rid: int) -> dict[str, Any]:
    (row,) = sim.rest("GET", "/returns", params={"return": rid}).json()["returns"]
    return dict(row)


def test_get_returns_rows_carry_the_documented_fields(centra_sim: CentraSimHandle) -> None:
    rid, order = new_return(centra_sim, 1001)
    row = listed(centra_sim, rid)
    assert set(row) == ROW_KEYS
    assert {"createdAt", "SKU", "qty"}.isdisjoint(row)
    assert row["shipment"] == order["shipment"]["number"]
    assert row["shipmentId"] == order["shipment"]["id"]
    assert row["selectionId"] == order["id"]
    assert isinstance(row["customerId"], int) and row["taxDeduction"] == "0.00"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["date"])
    (product,) = row["products"]
    assert set(product) == PRODUCT_KEYS
    assert (product["sku"], product["quantity"]) == ("TEE-BLK-M", 1)


def test_put_answers_the_return_as_get_lists_it(centra_sim: CentraSimHandle) -> None:
    rid, _ = new_return(centra_sim, 1001)
    answer = centra_sim.rest("PUT", f"/returns/{rid}", json={"completed": True}).json()
    assert answer == {"status": "ok", "return": listed(centra_sim, rid)}
    assert answer["return"]["completed"] is True


def test_put_with_a_refund_adds_the_refund_entry_beside_the_return(
    centra_sim: CentraSimHandle,
) -> None:
    rid, _ = new_return(centra_sim, 1001)
    answer = centra_sim.rest("PUT", f"/returns/{rid}", json={"refundPayment": True}).json()
    assert set(answer) == {"status", "return", "refund"}
    assert answer["return"] == listed(centra_sim, rid)
    assert answer["refund"]["status"] == "SUCCESS" and answer["refund"]["currency"] == "SEK"


def test_the_refund_entrys_status_passes_through_as_written(
    centra_sim: CentraSimHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = order_api.update_return

    def pending(*args: Any, **kwargs: Any) -> Any:
        entry = written(*args, **kwargs)
        if entry is not None:
            entry.status = "PENDING"  # as an asynchronous PSP's request is written
        return entry

    monkeypatch.setattr(order_api, "update_return", pending)
    rid, _ = new_return(centra_sim, 1001)
    answer = centra_sim.rest("PUT", f"/returns/{rid}", json={"refundPayment": True}).json()
    assert answer["status"] == "ok" and answer["refund"]["status"] == "PENDING"
