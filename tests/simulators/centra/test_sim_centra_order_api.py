"""The Centra simulator's REST Order API: auth, refunds, order creation, return listing."""

from __future__ import annotations

from typing import Any

import pytest
from centra_sim_support import CentraSimHandle, running_centra_sim

from returnbridge.connectors.centra.inferred import CentraInferred
from returnbridge.scenario import Scenario

CREATE = """mutation($input: ReturnCreateInput!) { createReturn(input: $input) {
  return { id } userErrors { message } } }"""


def make_return(sim: CentraSimHandle, number: int, **extra: Any) -> int:
    ship = sim.data(
        "query($n: [Int!]) { orders(where: {number: $n}) { shipments { id lines { id } } } }",
        {"n": [number]},
    )["orders"][0]["shipments"][0]
    inp = {
        "shipment": {"id": ship["id"]},
        "lines": [{"shipmentLine": {"id": ship["lines"][0]["id"]}, "quantity": 1}],
        "returnStockActionPolicy": {"removeItemsFromStock": True},
        **extra,
    }
    payload = sim.data(CREATE, {"input": inp})["createReturn"]
    assert payload["userErrors"] == []
    return int(payload["return"]["id"])


def exchange_order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "products": [{"sku": "TEE-BLK-L", "qty": 1, "unitPrice": "0.00"}],
        "orderNumber": 900001,
        "address": {"email": "anna@example.com", "country": "SE"},
        "internalOrder": True,
        "createdFromOrigin": {"type": "return", "id": 1},
        "currency": "SEK",
    }
    body.update(changes)
    return body


def test_wrong_or_missing_secret_is_401(centra_sim: CentraSimHandle) -> None:
    wrong = centra_sim.rest("GET", "/returns", headers={"API-Authorization": "nope"})
    missing = centra_sim.client.get(centra_sim.order_api_url + "/returns")
    assert wrong.status_code == missing.status_code == 401
    assert wrong.json()["status"] == "no"


def test_refund_writes_a_successful_refund_entry_and_completes(
    centra_sim: CentraSimHandle,
) -> None:
    rid = make_return(centra_sim, 1001, shippingCost={"fromShipment": True})
    response = centra_sim.rest("PUT", f"/returns/{rid}", json={"refundPayment": True})
    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "ok" and answer["return"]["returnId"] == rid
    assert answer["return"]["completed"] is True and "returnCompleted" not in answer
    assert answer["refund"] == {"status": "SUCCESS", "amount": "348.00", "currency": "SEK"}
    refunds = centra_sim.client.get("/_sim/effects").json()["refunds"]
    assert refunds[-1] == {
        "order_number": 1001, "return_id": rid, "amount": "348.00", "currency": "SEK",
        "via_psp": True, "status": "SUCCESS", "asynchronous": False,
        "entry_id": refunds[-1]["entry_id"], "answered_by": None,
        "requested_at": "2026-10-15T12:00:00+00:00", "answered_at": "2026-10-15T12:00:00+00:00",
    }  # fmt: skip
    history = centra_sim.data(
        "query($id: [Int!]) { returns(where: {id: $id}) { returnStatus refundPaymentHistory { "
        "entryType status value { value } } } }",
        {"id": [rid]},
    )["returns"][0]
    assert history["returnStatus"] == "COMPLETED"
    assert history["refundPaymentHistory"] == [
        {"entryType": "REFUND", "status": "SUCCESS", "value": {"value": 348.0}}
    ]
    again = centra_sim.rest("PUT", f"/returns/{rid}", json={"refundPayment": True})
    assert again.status_code == 400 and "already refunded" in again.json()["msg"]


def test_refund_on_a_failing_gateway_is_recorded_failed(centra_sim: CentraSimHandle) -> None:
    rid = make_return(centra_sim, 1004)
    response = centra_sim.rest("PUT", f"/returns/{rid}", json={"refundPayment": True})
    assert response.status_code == 400
    assert response.json()["returnCompleted"] is False
    refund = centra_sim.client.get("/_sim/effects").json()["refunds"][-1]
    assert (refund["return_id"], refund["status"], refund["amount"]) == (rid, "FAILED", "29.00")


def test_complete_without_refund_and_manual_refund(centra_sim: CentraSimHandle) -> None:
    rid = make_return(centra_sim, 1001)
    body = {"completed": True, "manualRefund": {"amount": "299.00", "reference": "rev-1"}}
    response = centra_sim.rest("PUT", f"/returns/{rid}", json=body)
    assert response.json()["return"]["completed"] is True
    refund = centra_sim.client.get("/_sim/effects").json()["refunds"][-1]
    assert (refund["via_psp"], refund["amount"]) == (False, "299.00")


def test_manual_refund_is_rejected_when_the_inferred_switch_is_off(
    centra_scenario: Scenario,
) -> None:
    inferred = CentraInferred(order_api_manual_refund=False)
    with running_centra_sim(centra_scenario, inferred=inferred) as sim:
        rid = make_return(sim, 1001)
        body = {"completed": True, "manualRefund": {"amount": "299.00", "reference": "rev-1"}}
        response = sim.rest("PUT", f"/returns/{rid}", json=body)
        assert response.status_code == 400
        assert "manualRefund" in response.json()["msg"]
        assert sim.client.get("/_sim/effects").json()["returns"][0]["completed"] is False


def test_put_unknown_return_is_404(centra_sim: CentraSimHandle) -> None:
    assert centra_sim.rest("PUT", "/returns/4242", json={"completed": True}).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [(b"{oops", "JSON"), (b'{"refundPayment": "yes"}', "refundPayment"), (b"[1]", "object")],
)
def test_malformed_put_is_400_naming_the_field(
    centra_sim: CentraSimHandle, body: bytes, field: str
) -> None:
    rid = make_return(centra_sim, 1001)
    response = centra_sim.rest("PUT", f"/returns/{rid}", content=body)
    assert response.status_code == 400
    assert field in response.json()["msg"]


def test_create_exchange_order_and_duplicate_number(centra_sim: CentraSimHandle) -> None:
    first = centra_sim.rest("POST", "/order", json=exchange_order())
    assert first.status_code == 200
    assert first.json() == {"status": "ok", "orders": [900001]}
    duplicate = centra_sim.rest("POST", "/order", json=exchange_order())
    assert duplicate.status_code == 400
    assert duplicate.json()["errorCode"] == -5
    created = centra_sim.client.get("/_sim/effects").json()["orders_created"]
    assert created == [
        {"order_number": 900001, "origin_return_id": 1, "total": "0.00",
         "lines": [{"sku": "TEE-BLK-L", "quantity": 1}]}
    ]  # fmt: skip
    order = centra_sim.data(
        "{ orders(where: {number: 900001}) { status isInternal grandTotal { value } } }"
    )["orders"][0]
    assert order == {"status": "PENDING", "isInternal": True, "grandTotal": {"value": 0.0}}
    stock = centra_sim.data(
        '{ productSizes(where: {SKU: "TEE-BLK-L"}) { stockTotals { physicalQuantity '
        "allocatedQuantity availableQuantity } } }"
    )["productSizes"][0]["stockTotals"]
    assert stock == {"physicalQuantity": 4, "allocatedQuantity": 1, "availableQuantity": 3}


def test_create_order_without_stock_is_minus_2_and_changes_nothing(
    centra_sim: CentraSimHandle,
) -> None:
    body = exchange_order(products=[{"sku": "JEANS-32", "qty": 1, "unitPrice": 0}])
    response = centra_sim.rest("POST", "/order", json=body)
    assert response.json()["errorCode"] == -2
    assert centra_sim.client.get("/_sim/effects").json()["orders_created"] == []
    ok = centra_sim.rest("POST", "/order", json={**body, "adjustStock": False})
    assert ok.json()["status"] == "ok"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"products": []}, -3),
        ({"products": [{"sku": "NOPE", "qty": 1, "unitPrice": 1}]}, -1),
        ({"address": {"country": "SE"}}, -4),
        ({"products": [{"sku": "TEE-BLK-L", "qty": 1}]}, -4),
    ],
)
def test_create_order_error_codes(
    centra_sim: CentraSimHandle, changes: dict[str, Any], code: int
) -> None:
    response = centra_sim.rest("POST", "/order", json=exchange_order(**changes))
    assert response.json()["status"] == "no"
    assert response.json()["errorCode"] == code


def test_create_order_wrong_type_is_400_naming_the_field(centra_sim: CentraSimHandle) -> None:
    body = exchange_order(products=[{"sku": "TEE-BLK-L", "qty": "one", "unitPrice": 0}])
    response = centra_sim.rest("POST", "/order", json=body)
    assert response.status_code == 400
    assert "products[0].qty" in response.json()["msg"]


def test_get_returns_lists_and_filters(centra_sim: CentraSimHandle) -> None:
    first = make_return(centra_sim, 1001)
    make_return(centra_sim, 1004)
    listed = centra_sim.rest("GET", "/returns", params={"order": 1001}).json()
    assert listed["status"] == "ok"
    (ret,) = listed["returns"]
    assert (ret["returnId"], ret["orderId"], ret["completed"]) == (first, 1001, False)
    assert (ret["products"][0]["sku"], ret["products"][0]["quantity"]) == ("TEE-BLK-M", 1)
    assert (
        len(centra_sim.rest("GET", "/returns", params={"limit": 1, "page": 2}).json()["returns"])
        == 1
    )
    assert centra_sim.rest("GET", "/returns", params={"limit": "x"}).status_code == 400


def test_new_orders_start_confirmed_when_autoconfirm_is_on(centra_scenario: Scenario) -> None:
    with running_centra_sim(
        centra_scenario, inferred=CentraInferred(order_api_autoconfirm=True)
    ) as sim:
        assert sim.rest("POST", "/order", json=exchange_order()).status_code == 200
        order = sim.data("{ orders(where: {number: 900001}) { status } }")["orders"][0]
        assert order == {"status": "CONFIRMED"}
