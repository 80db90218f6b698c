"""Fields of Centra's documented shapes the simulator serves beyond what returnbridge reads:
Order.updatedAt, Address.state, Shipment tracking and address, Currency.name, ReturnLine values
and tax, Return.returnStatus / status / totalQuantity, ReturnCreateInput.createdAt, the full
PaymentHistoryEntryType enum and the deleted return in ReturnDeletePayload."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from centra_sim_support import CentraSimHandle, centra_sim_scenario_data, running_centra_sim

from returnbridge.scenario import parse_scenario

UPDATED = "query($n: [Int!]) { orders(where: {number: $n}) { updatedAt createdAt } }"
CREATE = """mutation($input: ReturnCreateInput!) { createReturn(input: $input) {
  return { id createdAt returnStatus status totalQuantity
           lines { quantity unitPrice { value } net: unitPrice(includingTax: false) { value }
                   lineValue { value } lineNet: lineValue(includingTax: false) { value }
                   appliedTaxRules { rule { taxId taxName taxPercent }
                                     taxIncluded { value } taxAdded { value } } } }
  userErrors { message path } } }"""
DELETE = """mutation($id: Int!) { deleteReturn(id: $id) {
  return { id returnStatus lines { quantity } } userErrors { message path } } }"""


def first_shipment(sim: CentraSimHandle, number: int) -> dict[str, Any]:
    order = sim.data(
        "query($n: [Int!]) { orders(where: {number: $n}) { shipments { id lines { id } } } }",
        {"n": [number]},
    )["orders"][0]
    ship: dict[str, Any] = order["shipments"][0]
    return ship


def return_input(ship: dict[str, Any], quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "shipment": {"id": ship["id"]},
        "lines": [{"shipmentLine": {"id": ship["lines"][0]["id"]}, "quantity": quantity}],
        "returnStockActionPolicy": {"removeItemsFromStock": True},
        **extra,
    }


def updated_at(sim: CentraSimHandle, number: int) -> datetime:
    return datetime.fromisoformat(sim.data(UPDATED, {"n": [number]})["orders"][0]["updatedAt"])


def advance(sim: CentraSimHandle, seconds: int) -> datetime:
    now = sim.client.post("/_sim/clock", json={"advance_seconds": seconds}).json()["now"]
    return datetime.fromisoformat(now)


def test_order_updated_at_follows_returns_and_refunds(centra_sim: CentraSimHandle) -> None:
    order = centra_sim.data(UPDATED, {"n": [1001]})["orders"][0]
    # Until something changes: its latest dated record (the manual refund a day ago)
    assert updated_at(centra_sim, 1001) > datetime.fromisoformat(order["createdAt"])
    untouched = updated_at(centra_sim, 1005)

    now = advance(centra_sim, 60)
    ret = centra_sim.data(CREATE, {"input": return_input(first_shipment(centra_sim, 1001))})
    rid = ret["createReturn"]["return"]["id"]
    assert updated_at(centra_sim, 1001) == now
    now = advance(centra_sim, 60)
    assert centra_sim.rest("PUT", f"/returns/{rid}", json={"completed": True}).status_code == 200
    assert updated_at(centra_sim, 1001) == now
    now = advance(centra_sim, 60)  # reopening through the Order API is a change too
    assert centra_sim.rest("PUT", f"/returns/{rid}", json={"completed": False}).status_code == 200
    assert updated_at(centra_sim, 1001) == now
    now = advance(centra_sim, 60)
    assert centra_sim.data(DELETE, {"id": rid})["deleteReturn"]["userErrors"] == []
    assert updated_at(centra_sim, 1001) == now
    assert updated_at(centra_sim, 1005) == untouched  # other orders keep theirs


def test_return_fields_values_tax_and_statuses(centra_sim: CentraSimHandle) -> None:
    payload = centra_sim.data(
        CREATE, {"input": return_input(first_shipment(centra_sim, 1001), quantity=2)}
    )["createReturn"]
    assert payload["userErrors"] == []
    ret = payload["return"]
    assert (ret["returnStatus"], ret["status"], ret["totalQuantity"]) == ("PENDING", "ACTIVE", 2)
    line = ret["lines"][0]
    assert (line["unitPrice"]["value"], line["net"]["value"]) == (299.0, 239.2)
    assert (line["lineValue"]["value"], line["lineNet"]["value"]) == (598.0, 478.4)
    assert line["appliedTaxRules"] == [
        {
            "rule": {"taxId": "vat-25", "taxName": "VAT 25%", "taxPercent": 25.0},
            "taxIncluded": {"value": 119.6},
            "taxAdded": {"value": 0.0},
        }
    ]


def test_create_return_honours_created_at_and_refuses_the_future(
    centra_sim: CentraSimHandle,
) -> None:
    ship = first_shipment(centra_sim, 1001)
    dated = return_input(ship, createdAt="2026-10-10T08:00:00+02:00")
    ret = centra_sim.data(CREATE, {"input": dated})["createReturn"]["return"]
    assert datetime.fromisoformat(ret["createdAt"]) == datetime.fromisoformat(
        "2026-10-10T08:00:00+02:00"
    )
    late = centra_sim.data(CREATE, {"input": return_input(ship, createdAt="2027-01-01 00:00:00")})
    assert late["createReturn"]["return"] is None
    assert late["createReturn"]["userErrors"] == [
        {"message": "createdAt may not be in the future.", "path": ["input", "createdAt"]}
    ]


def test_delete_return_answers_the_deleted_return(centra_sim: CentraSimHandle) -> None:
    rid = centra_sim.data(CREATE, {"input": return_input(first_shipment(centra_sim, 1001))})[
        "createReturn"
    ]["return"]["id"]
    deleted = centra_sim.data(DELETE, {"id": rid})["deleteReturn"]
    assert deleted == {
        "return": {"id": rid, "returnStatus": "PENDING", "lines": [{"quantity": 1}]},
        "userErrors": [],
    }
    again = centra_sim.data(DELETE, {"id": rid})["deleteReturn"]
    assert again["return"] is None and "not found" in again["userErrors"][0]["message"]


def test_shipment_tracking_and_address(centra_sim: CentraSimHandle) -> None:
    response = centra_sim.graphql("""{ orders(where: {number: 1003}) { shipments {
        id isShipped updatedAt shippedAt paidAt capturedAt numberOfPackages trackingNumber
        returnTrackingNumber carrierInformation { carrierName serviceName }
        internalShippingCost { value } additionalMessage
        shippingAddress { firstName city country { code } state { code } } } } }""")
    assert response.status_code == 200, response.text
    body = response.json()
    assert "Shipment.shippingAddress:read" in body["extensions"]["permissionsUsed"]
    shipped, open_ = body["data"]["orders"][0]["shipments"]
    assert shipped["isShipped"] and not open_["isShipped"]
    assert shipped["trackingNumber"] == f"SIM{shipped['id']:010d}"
    assert shipped["returnTrackingNumber"] and shipped["numberOfPackages"] == 1
    assert shipped["carrierInformation"] == {
        "carrierName": "Simulated Carrier",
        "serviceName": "Standard",
    }
    assert shipped["paidAt"] == shipped["capturedAt"] == shipped["shippedAt"]
    assert shipped["updatedAt"] == shipped["shippedAt"]
    assert shipped["shippingAddress"] == {
        "firstName": "Clara",
        "city": "Simulated city",
        "country": {"code": "DE"},
        "state": None,
    }
    assert (open_["trackingNumber"], open_["carrierInformation"], open_["paidAt"]) == (
        None, None, None,
    )  # fmt: skip
    assert (open_["numberOfPackages"], open_["internalShippingCost"]) == (0, None)


def test_address_state_and_currency_name() -> None:
    data = centra_sim_scenario_data()
    data["centra"]["orders"][4]["market"] = "US"  # order 1005
    with running_centra_sim(parse_scenario(data, "us")) as sim:
        orders = sim.data("""{ orders(where: {number: [1001, 1005]}) {
            number grandTotal { currency { code name } }
            shippingAddress { stateOrProvince state { id name code } } } }""")["orders"]
    sweden, usa = orders
    assert sweden["grandTotal"]["currency"] == {"code": "SEK", "name": "Swedish krona"}
    assert sweden["shippingAddress"] == {"stateOrProvince": None, "state": None}
    assert usa["shippingAddress"] == {
        "stateOrProvince": "New York",
        "state": {"id": 1, "name": "New York", "code": "NY"},
    }


def test_payment_history_takes_every_documented_entry_type(centra_sim: CentraSimHandle) -> None:
    entries = centra_sim.data("""{ orders(where: {number: 1001}) {
        paymentHistory(where: {entryType: [AUTH, CAPTURE_PENDING, REFUND_FAILED, OTHER]}) {
          entryType } } }""")["orders"][0]["paymentHistory"]
    assert entries == [{"entryType": "AUTH"}]
