"""The Centra simulator's Integration API reads, over real HTTP: auth, errors, envelope, paging."""

from __future__ import annotations

import base64

import httpx
from centra_sim_support import CentraSimHandle

ORDERS = """query($where: OrderFilter, $limit: Int, $page: Int, $sort: [OrderSort!]) {
  orders(where: $where, limit: $limit, page: $page, sort: $sort) { number status }
}"""


def numbers(sim: CentraSimHandle, **variables: object) -> list[int]:
    return [o["number"] for o in sim.data(ORDERS, variables)["orders"]]


# ----------------------------------------------------------------------------- auth


def test_bearer_token_and_cookie_are_both_accepted(centra_sim: CentraSimHandle) -> None:
    query = {"query": "{ rateLimits { type } }"}
    bearer = centra_sim.client.post(
        "/graphql", json=query, headers={"Authorization": "Bearer centra-sim-token"}
    )
    cookie = centra_sim.client.post(
        "/graphql", json=query, headers={"Cookie": "graphql-access=centra-sim-token"}
    )
    assert bearer.status_code == cookie.status_code == 200


def test_unknown_or_missing_token_is_403(centra_sim: CentraSimHandle) -> None:
    query = {"query": "{ rateLimits { type } }"}
    wrong = centra_sim.client.post("/graphql", json=query, headers={"Authorization": "Bearer x"})
    missing = centra_sim.client.post("/graphql", json=query)
    assert wrong.status_code == missing.status_code == 403
    assert wrong.json()["errors"][0]["message"]


def test_missing_permission_is_200_with_an_authorization_error(
    centra_sim: CentraSimHandle,
) -> None:
    centra_sim.client.post("/_sim/tokens", json={"token": "narrow", "permissions": ["Return:read"]})
    response = centra_sim.client.post(
        "/graphql",
        json={"query": "{ orders { number } }"},
        headers={"Authorization": "Bearer narrow"},
    )
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["extensions"]["category"] == "authorization"
    assert error["message"] == "You need Order:read permission to access orders."


# ----------------------------------------------------------------------------- 400s


def test_bad_json_is_400(centra_sim: CentraSimHandle) -> None:
    response = centra_sim.client.post(
        "/graphql",
        content=b"{not json",
        headers={"Authorization": "Bearer centra-sim-token", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["errors"][0]["message"]


def test_syntax_error_is_400_with_locations(centra_sim: CentraSimHandle) -> None:
    response = centra_sim.graphql("{ orders { number }")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["locations"] and error["extensions"]["category"] == "graphql"


def test_undocumented_field_is_400_naming_it(centra_sim: CentraSimHandle) -> None:
    response = centra_sim.graphql("{ orders { number userIP } }")  # Centra's, not modelled
    assert response.status_code == 400
    assert "Cannot query field 'userIP' on type 'Order'" in response.json()["errors"][0]["message"]


def test_wrong_variable_type_is_400(centra_sim: CentraSimHandle) -> None:
    response = centra_sim.graphql(ORDERS, {"limit": "ten"})
    assert response.status_code == 400
    assert "$limit" in response.json()["errors"][0]["message"]


def test_missing_required_argument_is_400(centra_sim: CentraSimHandle) -> None:
    response = centra_sim.graphql("{ order { number } }")
    assert response.status_code == 400
    assert "argument 'id'" in response.json()["errors"][0]["message"]


def test_bad_date_literal_is_400(centra_sim: CentraSimHandle) -> None:
    response = centra_sim.graphql('{ orders(where: {createdAt: {from: "yesterday"}}) { number } }')
    assert response.status_code == 400
    assert "not a date-time" in response.json()["errors"][0]["message"]


# ----------------------------------------------------------------------------- envelope


def test_every_200_carries_extensions(centra_sim: CentraSimHandle) -> None:
    body = centra_sim.graphql("{ orders(limit: 2) { number lines { id } } }").json()
    extensions = body["extensions"]
    assert extensions["appVersion"] == "v0.34.6"
    assert extensions["permissionsUsed"] == ["Order:read"]
    # 1 (orders) + 2 x (1 number + 1 lines + 10 x 1 id) per the simulator's formula
    assert extensions["complexity"] == 1 + 2 * (1 + 1 + 10)


def test_deprecated_gtin_is_reported(centra_sim: CentraSimHandle) -> None:
    body = centra_sim.graphql('{ productSizes(where: {SKU: "TEE-BLK-M"}) { GTIN EAN } }').json()
    assert body["data"]["productSizes"] == [{"GTIN": "7350000000011", "EAN": "7350000000011"}]
    assert body["extensions"]["deprecatedFieldsUsed"] == ["ProductSize.GTIN"]


def test_interfaces_resolve_to_direct_to_consumer_types(centra_sim: CentraSimHandle) -> None:
    data = centra_sim.data(
        "{ orders(where: {number: 1001}) { __typename shipments { __typename } "
        "... on DirectToConsumerOrder { customer { email firstName } } } }"
    )
    order = data["orders"][0]
    assert order["__typename"] == "DirectToConsumerOrder"
    assert order["shipments"][0]["__typename"] == "DirectToConsumerShipment"
    assert order["customer"] == {"email": "anna@example.com", "firstName": "Anna"}


# ----------------------------------------------------------------------------- orders


def test_orders_filter_by_single_number_and_by_list(centra_sim: CentraSimHandle) -> None:
    assert numbers(centra_sim, where={"number": 1003}) == [1003]
    assert numbers(centra_sim, where={"number": [1004, 1001, 9999]}) == [1001, 1004]


def test_orders_filter_by_hash_id(centra_sim: CentraSimHandle) -> None:
    ids = {o["number"]: o["id"] for o in centra_sim.data("{ orders { id number } }")["orders"]}
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids.values())
    assert numbers(centra_sim, where={"id": [ids[1002]]}) == [1002]
    order = centra_sim.data("query($id: String!) { order(id: $id) { number } }", {"id": ids[1004]})
    assert order == {"order": {"number": 1004}}
    assert centra_sim.data('{ order(id: "0" ) { number } }') == {"order": None}


def test_orders_filter_by_status_and_created_at(centra_sim: CentraSimHandle) -> None:
    assert numbers(centra_sim, where={"status": ["ARCHIVED", "PENDING"]}) == [1002, 1005]
    window = {"from": "2026-10-03 00:00:00", "to": "2026-10-04T23:59:59+02:00"}
    assert numbers(centra_sim, where={"createdAt": window}) == [1003, 1004]


def test_orders_limit_page_and_sort(centra_sim: CentraSimHandle) -> None:
    assert numbers(centra_sim, limit=2, page=1) == [1001, 1002]
    assert numbers(centra_sim, limit=2, page=3) == [1005]
    assert numbers(centra_sim, limit=2, page=4) == []
    assert numbers(centra_sim, limit=2, sort=["createdAt_DESC"]) == [1005, 1004]


def test_orders_limit_out_of_range_is_an_error(centra_sim: CentraSimHandle) -> None:
    body = centra_sim.graphql(ORDERS, {"limit": 201}).json()
    assert body["data"] is None
    assert "limit must be between 1 and 200" in body["errors"][0]["message"]


def test_counters_count_orders(centra_sim: CentraSimHandle) -> None:
    data = centra_sim.data("{ counters { orders(where: {status: SHIPPED}) } }")
    assert data == {"counters": {"orders": 2}}


CONNECTION = """
query($first: Int, $after: String, $last: Int, $before: String) {
  orderConnection(first: $first, after: $after, last: $last, before: $before) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { number } }
  }
}"""


def test_order_connection_cursors_are_base64_number(centra_sim: CentraSimHandle) -> None:
    page = centra_sim.data(CONNECTION, {"first": 2})["orderConnection"]
    assert page["totalCount"] == 5
    assert [e["node"]["number"] for e in page["edges"]] == [1001, 1002]
    assert page["pageInfo"]["endCursor"] == base64.b64encode(b"number:1002").decode()
    assert page["pageInfo"]["hasNextPage"] is True
    assert page["pageInfo"]["hasPreviousPage"] is False
    seen = [e["node"]["number"] for e in page["edges"]]
    while page["pageInfo"]["hasNextPage"]:
        page = centra_sim.data(CONNECTION, {"first": 2, "after": page["pageInfo"]["endCursor"]})[
            "orderConnection"
        ]
        seen += [e["node"]["number"] for e in page["edges"]]
    assert seen == [1001, 1002, 1003, 1004, 1005]
    assert page["pageInfo"]["hasPreviousPage"] is True


def test_order_connection_last_before(centra_sim: CentraSimHandle) -> None:
    before = base64.b64encode(b"number:1004").decode()
    page = centra_sim.data(CONNECTION, {"last": 2, "before": before})["orderConnection"]
    assert [e["node"]["number"] for e in page["edges"]] == [1002, 1003]


def test_order_connection_rejects_a_malformed_cursor(centra_sim: CentraSimHandle) -> None:
    body = centra_sim.graphql(CONNECTION, {"first": 1, "after": "!!"}).json()
    assert "Invalid cursor" in body["errors"][0]["message"]


# ----------------------------------------------------------------------------- order details


def test_order_money_shipments_and_payments(centra_sim: CentraSimHandle) -> None:
    order = centra_sim.data(
        """{ orders(where: {number: 1003}) {
              createdAt orderDate(format: "Y-m-d")
              grandTotal { value currency { code } formattedValue }
              lines { id quantity shippedQuantity returnedQuantity taxPercent
                      lineValue(includingTax: false) { value } productSize { SKU description }
                      productVariant { variantNumber } allocations { quantity warehouse { id } } }
              shipments { number isShipped shippedAt lines { id quantity orderLine { id } } }
              paymentHistory(where: {entryType: [CAPTURE]}) { entryType status value { value } }
        } }"""
    )["orders"][0]
    assert order["createdAt"] == "2026-10-03T16:15:00+02:00"  # merchant zone [INF]
    assert order["orderDate"] == "2026-10-03"
    assert order["grandTotal"] == {
        "value": 207.0, "currency": {"code": "EUR"}, "formattedValue": "207.00 EUR",
    }  # fmt: skip
    tee, jeans = order["lines"]
    assert (jeans["quantity"], jeans["shippedQuantity"], jeans["returnedQuantity"]) == (2, 1, 0)
    assert tee["lineValue"]["value"] == round(29 / 1.19, 2)
    assert tee["productSize"] == {"SKU": "TEE-BLK-L", "description": "L"}
    assert tee["productVariant"] == {"variantNumber": "TEE-BLK"}
    assert tee["allocations"] == [{"quantity": 1, "warehouse": {"id": 1}}]
    first, second = order["shipments"]
    assert (first["number"], first["isShipped"]) == ("1003-1", True)
    assert (second["number"], second["isShipped"], second["shippedAt"]) == ("1003-2", False, None)
    assert order["paymentHistory"] == [
        {"entryType": "CAPTURE", "status": "SUCCESS", "value": {"value": 118.0}}
    ]


def test_pending_order_without_explicit_shipments_has_none(centra_sim: CentraSimHandle) -> None:
    order = centra_sim.data("{ orders(where: {number: 1005}) { shipments { id } } }")["orders"]
    assert order == [{"shipments": []}]


def test_stock_reads(centra_sim: CentraSimHandle) -> None:
    data = centra_sim.data(
        """{ productSizes(where: {EAN: ["7350000000028"]}) {
               SKU stockTotals { physicalQuantity availableQuantity freeToAllocateQuantity } }
             warehouses { id name status stock(limit: 2, page: 2) { productSize { SKU }
               physicalQuantity freeToAllocateQuantity } } }"""
    )
    assert data["productSizes"] == [
        {
            "SKU": "TEE-BLK-L",
            "stockTotals": {
                "physicalQuantity": 4, "availableQuantity": 4, "freeToAllocateQuantity": 4,
            },
        }
    ]  # fmt: skip
    main = data["warehouses"][0]
    assert (main["id"], main["name"], main["status"]) == (1, "Main", "ACTIVE")
    assert [(s["productSize"]["SKU"], s["physicalQuantity"]) for s in main["stock"]] == [
        ("TEE-BLK-L", 3),
        ("JEANS-32", 0),
    ]


def test_get_is_not_the_graphql_method(centra_sim: CentraSimHandle) -> None:
    response = centra_sim.client.get("/graphql")
    assert response.status_code == 405


def test_request_without_query_is_400(centra_sim: CentraSimHandle) -> None:
    response = centra_sim.client.post(
        "/graphql", json={"variables": {}}, headers={"Authorization": "Bearer centra-sim-token"}
    )
    assert response.status_code == 400
    assert isinstance(response, httpx.Response)
