"""Centra's own published GraphQL examples, verbatim, against our SDL and the simulator.

Every query and mutation about orders, returns, shipments, payment history and stock in the
public repository `centrahq/api-documentation` (the source of Centra's docs until they moved to
centra.dev) is considered. The ones kept are stored verbatim under `published_examples/`, one file
each, its first line naming the page and section. Each is validated against the SDL the client
and the simulator share, and run against the simulator over loopback HTTP, on a small scenario
that holds the ids the examples hard-code (shipment 1338, returns 315 and 436, variant 1...).

Stored (15):
- `pages/05.api-references/02.graphql-integration-api/05.examples/01.dtc/docs.md` ("Direct to
  Consumer" examples): orders by date, the latest confirmed wholesale orders (orderConnection),
  a specific order (with the page's `customerId` fragment), and createReturn, returns,
  completeReturn, uncompleteReturn, deleteReturn.
- `pages/05.api-references/02.graphql-integration-api/01.authorization/docs.md`: the
  orderConnection of "Permissions" and the `returns(where: {customerId ...})` of "Separation of
  Customer and Buyer".
- `pages/04.guides/05.pim-gql-integration/docs.md` ("Product Stock fetching and update"):
  changeStock into, out of and between warehouses, and setStock.

The ERP guide (`pages/04.guides/02.erp-gql-integration/docs.md`, and its earlier editions
`07.erp-gql-integration`, `erp-with-gql`) repeats getOrders, the five return examples,
addStock, removeStock and absoluteStock, identical except for indentation: stored once.

Left out, with the reason:
- Order and shipment processing mutations, the fulfilment side returnbridge never performs:
  updateDirectToConsumerOrder (hold, basic fields, cancelLines), cancelDirectToConsumerOrder,
  releaseRemainingOrderAuthorization, confirmOrder, setOrdersLock (ERP guide), createShipment
  (unpaid, and with capture), updateShipment (mark paid), captureShipment, completeShipment,
  updateWholesaleOrder. Simulating them means a second order workflow (status transitions,
  allocation, PSP captures, shipment completion) in the simulator's order modules, which are
  owned elsewhere; the Shipment read fields their `shipmentDetails` fragment selects that
  returnbridge can use (tracking, carrier, paidAt, shippingAddress...) are in the SDL.
- captureOrder (DTC page and ERP guide): not valid GraphQL as published, its `# number: 10 })
  {` comment swallows the closing brackets.
- "Fetching ALL the data" (DTC page): a wholesale data model (accounts with sales
  representatives, payment and shipping terms, delivery windows), brands, pricelists, shipping
  price groups and a `currencies` catalogue, none of which the one-store DTC simulator has.
- The authorization page's "before" returns query (`purchaserId`, `purchaser`): the Purchaser
  API it shows was removed; its "after" form is stored. Its `lastOrders` and `stockChanges`
  queries are placeholders (`...`), not documents.
- The events system page (`events`, `setEventListeners`, `confirmEvents`, with Order / Shipment /
  Return events): a per-token event queue returnbridge does not use (it takes webhooks).
- The PIM guide's product stock read (`productList` with `stockTotals`) and its `allInOne`
  mutation: PIM product model (ProductStatus, product and variant attributes, size charts,
  displays, ID conversions) beyond the stock they touch; createWarehouse (ERP guide) likewise.
- Products, markets, pricelists, folders, categories, displays, customers, checkout: not about
  orders, returns or stock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle, running_centra_sim
from graphql import build_schema, parse, validate

from returnbridge.connectors.centra.documents import schema_sdl
from returnbridge.scenario import parse_scenario
from returnbridge.simulators.centra.state import CentraState

EXAMPLES = Path(__file__).with_name("published_examples")
STORED = sorted(p.name for p in EXAMPLES.glob("*.graphql"))
SOURCE_PREFIX = "# source: centrahq/api-documentation pages/"

SCENARIO: dict[str, Any] = {
    "now": "2026-10-15T12:00:00Z",
    "centra": {
        "warehouses": [
            {"id": 1, "name": "Main"},
            {"id": 2, "name": "Returns"},
            {"id": 3, "name": "Inbound"},
        ],
        "returns_warehouse": 2,
        "products": [
            {"sku": "JACKET-M", "stock": {1: 2}},
            {"sku": "JACKET-L", "stock": {1: 2}},
            {"sku": "CAP", "stock": {1: 10}},  # variant 1, size 1 ("One Size")
            {"sku": "SHIRT-S", "stock": {1: 1}},  # variant 2, size "S"
            {"sku": "SCARF", "stock": {1: 3}},  # variant 2459, size 2
            {"sku": "TEE-XL", "stock": {1: 4}},  # variant 1445, size "XL"
        ],
        "orders": [
            {
                "number": 39790,
                "status": "SHIPPED",
                "customer_email": "jon.snow@example.com",  # customer 1
                "created_at": "2021-10-23T10:00:00+02:00",
                "shipping": "49.00",
                "lines": [
                    {"sku": "JACKET-M", "quantity": 4, "unit_price": "675.00"},
                    {"sku": "JACKET-L", "quantity": 4, "unit_price": "675.00"},
                ],
            },
            {
                "number": 14,
                "status": "PENDING",
                "customer_email": "jon.snow@example.com",
                "lines": [{"sku": "CAP", "quantity": 1, "unit_price": "199.00"}],
            },
        ],
    },
}


def example(name: str) -> str:
    return (EXAMPLES / name).read_text(encoding="utf-8")


def _advance(state: CentraState, kind: str, to: int) -> None:
    """Make `to` the next id of `kind` (ids are only ever handed out upwards)."""
    while state.ids.next(kind) < to - 1:
        pass


def _rekey_variant(state: CentraState, variant_number: str, new_id: int) -> None:
    variant = next(v for v in state.variants.values() if v.variant_number == variant_number)
    product = state.products[variant.product_id]
    product.variant_ids = [new_id if v == variant.id else v for v in product.variant_ids]
    for size_id in variant.size_ids:
        state.sizes[size_id].variant_id = new_id
    del state.variants[variant.id]
    variant.id = new_id
    state.variants[new_id] = variant


def _rekey_size(state: CentraState, sku: str, new_id: int) -> None:
    old = state.size_by_sku[sku]
    size = state.sizes.pop(old)
    size.id = new_id
    state.sizes[new_id] = size
    state.size_by_sku[sku] = new_id
    variant = state.variants[size.variant_id]
    variant.size_ids = [new_id if s == old else s for s in variant.size_ids]
    state.stock = {((new_id if s == old else s), w): lvl for (s, w), lvl in state.stock.items()}
    for line in state.order_lines.values():
        if line.size_id == old:
            line.size_id = new_id


def _rekey_shipment(state: CentraState, order: int, new_id: int, line_ids: list[int]) -> None:
    ship = state.orders[order].shipments[0]
    del state.shipments[ship.id]
    ship.id = new_id
    state.shipments[new_id] = ship
    for line, new_line_id in zip(ship.lines, line_ids, strict=True):
        del state.shipment_lines[line.id]
        line.id, line.shipment_id = new_line_id, new_id
        state.shipment_lines[new_line_id] = line


@pytest.fixture
def published() -> Iterator[CentraSimHandle]:
    """The simulator holding the ids Centra's examples hard-code."""
    with running_centra_sim(parse_scenario(SCENARIO, "published examples")) as handle:
        state = handle.sim.state
        with handle.sim.lock:
            _rekey_variant(state, "CAP", 1)
            _rekey_size(state, "CAP", 1)
            _rekey_variant(state, "SHIRT", 2)
            _rekey_variant(state, "SCARF", 2459)
            _rekey_size(state, "SCARF", 2)
            _rekey_variant(state, "TEE", 1445)
            _rekey_shipment(state, 39790, 1338, [2943, 2944])
        yield handle


def run(sim: CentraSimHandle, name: str) -> dict[str, Any]:
    """Send a stored example as published (no variables); it must succeed without errors."""
    return sim.data(example(name))


def payload_of(data: dict[str, Any], field: str) -> dict[str, Any]:
    payload: dict[str, Any] = data[field]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload


def stock(sim: CentraSimHandle) -> dict[tuple[str, int], int]:
    rows = sim.client.get("/_sim/state/stock").json()["stock"]
    return {(r["sku"], r["warehouse_id"]): r["physical"] for r in rows}


def return_status(sim: CentraSimHandle, return_id: int) -> list[str]:
    found = sim.data(
        "query($id: [Int!]) { returns(where: {id: $id}) { returnStatus } }", {"id": [return_id]}
    )
    return [r["returnStatus"] for r in found["returns"]]


# ----------------------------------------------------------------------------- the files


def test_the_stored_examples_name_their_source() -> None:
    assert len(STORED) == 15
    for name in STORED:
        first = example(name).splitlines()[0]
        assert first.startswith(SOURCE_PREFIX) and first.endswith(")"), name


@pytest.mark.parametrize("name", STORED)
def test_every_published_example_is_valid_against_the_sdl(name: str) -> None:
    assert validate(build_schema(schema_sdl()), parse(example(name))) == []


# ----------------------------------------------------------------------------- orders


def test_published_order_reads(published: CentraSimHandle) -> None:
    by_date = run(published, "dtc_orders_by_created_at.graphql")["orders"]
    assert [o["number"] for o in by_date] == [39790]
    lines = by_date[0]["lines"]
    assert [(line["quantity"], line["productSize"]["description"]) for line in lines] == [
        (4, "M"), (4, "L"),
    ]  # fmt: skip
    assert lines[0]["productVariant"]["name"] == lines[0]["productVariantName"] == "JACKET"

    order = run(published, "dtc_get_specific_order.graphql")["orders"]
    assert order == [
        {
            "number": 14,
            "status": "PENDING",
            "isOnHold": False,
            "shippingAddress": {"firstName": "Jon", "lastName": "Snow", "city": "Simulated city"},
            "customer": {"id": 1, "email": "jon.snow@example.com"},
        }
    ]

    # The simulated environment has one DTC store: no wholesale orders to page through.
    for name in ("dtc_latest_confirmed_wholesale_orders.graphql",
                 "auth_order_connection_wholesale.graphql"):  # fmt: skip
        connection = run(published, name)["orderConnection"]
        assert (connection["totalCount"], connection["edges"]) == (0, [])
        assert connection["pageInfo"]["hasPreviousPage"] is False


# ----------------------------------------------------------------------------- returns


def test_published_return_examples_create_read_complete_reopen_and_delete(
    published: CentraSimHandle,
) -> None:
    before = stock(published)
    with published.sim.lock:
        _advance(published.sim.state, "return", 315)
    created = payload_of(run(published, "dtc_create_return.graphql"), "createReturn")
    assert created["return"]["id"] == 315 and len(created["return"]["lines"]) == 2
    # releaseItemsBackToWarehouse: back into the warehouse the lines were allocated from
    after_create = stock(published)
    assert after_create[("JACKET-M", 1)] == before[("JACKET-M", 1)] + 2
    assert after_create[("JACKET-L", 1)] == before[("JACKET-L", 1)] + 2

    listed = run(published, "dtc_returns.graphql")["returns"]
    assert listed == [
        {
            "id": 315,
            "status": "ACTIVE",
            "lines": [{"shipmentLine": {"id": 2943}}, {"shipmentLine": {"id": 2944}}],
        }
    ]
    mine = run(published, "auth_returns_by_customer.graphql")["returns"]
    assert mine == [{"id": 315, "customer": {"email": "jon.snow@example.com"}}]

    completed = payload_of(run(published, "dtc_complete_return.graphql"), "completeReturn")
    assert completed["return"] == {"id": 315, "status": "ACTIVE"}
    assert return_status(published, 315) == ["COMPLETED"]
    reopened = payload_of(run(published, "dtc_uncomplete_return.graphql"), "uncompleteReturn")
    assert reopened["return"] == {"id": 315, "status": "ACTIVE"}
    assert return_status(published, 315) == ["PENDING"]

    with published.sim.lock:
        _advance(published.sim.state, "return", 436)
    second = payload_of(run(published, "dtc_create_return.graphql"), "createReturn")
    assert second["return"]["id"] == 436
    deleted = payload_of(run(published, "dtc_delete_return.graphql"), "deleteReturn")
    assert deleted["return"] == second["return"]  # the deleted return as it was
    assert return_status(published, 436) == []
    assert stock(published) == after_create  # its restock was taken back


# ----------------------------------------------------------------------------- stock


def test_published_stock_examples_move_stock(published: CentraSimHandle) -> None:
    before = stock(published)
    for name, field in [
        ("pim_add_stock_one_size.graphql", "changeStock"),
        ("pim_add_stock.graphql", "changeStock"),
        ("pim_remove_stock.graphql", "changeStock"),
        ("pim_move_stock.graphql", "changeStock"),
    ]:
        assert payload_of(run(published, name), field)["stockChange"]["id"] > 0
    levels = payload_of(run(published, "pim_absolute_stock.graphql"), "setStock")
    assert len(levels["stockChanges"]) == 1
    after = stock(published)
    changed = {
        key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)
    }
    assert changed == {
        ("CAP", 3): 5,  # addStockOneSize
        ("SHIRT-S", 3): 2,  # addStock
        ("CAP", 1): -5,  # removeStock
        ("SCARF", 1): -1,  # moveStock
        ("SCARF", 2): 1,
        ("TEE-XL", 1): 10 - 4,  # setStock: absolute 10
    }
