"""The Centra simulator's /_sim control plane and its Webhook-plugin emitter."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle, centra_sim_scenario_data
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from returnbridge.connectors.centra.webhooks import decode_payload, verify_signature
from returnbridge.simulators.server import RunningServer, serve_in_thread

SECRET = "whsec-test"


class Receiver:
    """A local webhook endpoint that records raw bodies and headers."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = threading.Event()

    async def endpoint(self, request: Request) -> Response:
        self.calls.append((await request.body(), dict(request.headers)))
        self.arrived.set()
        return Response("ok")


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, RunningServer]]:
    rec = Receiver()
    app = Starlette(routes=[Route("/hook", rec.endpoint, methods=["POST"])])
    with serve_in_thread(app) as server:
        yield rec, server


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_webhook_emitter_posts_signed_form_bodies(
    centra_sim: CentraSimHandle, receiver: tuple[Receiver, RunningServer]
) -> None:
    rec, server = receiver
    configured = centra_sim.client.post(
        "/_sim/webhooks", json={"url": server.url + "/hook", "secret": SECRET}
    )
    assert configured.json()["configured"] is True
    ship = centra_sim.sim.state.orders[1001].shipments[0]
    centra_sim.data(
        "mutation($i: ReturnCreateInput!) { createReturn(input: $i) { return { id } } }",
        {
            "i": {
                "shipment": {"id": ship.id},
                "lines": [{"shipmentLine": {"id": ship.lines[0].id}, "quantity": 1}],
                "returnStockActionPolicy": {"removeItemsFromStock": True},
            }
        },
    )
    wait_for(lambda: centra_sim.client.get("/_sim/webhooks").json()["delivered_events"] >= 1)
    body, headers = rec.calls[0]
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    verify_signature(SECRET, headers["x-centra-signature"], body)
    events = decode_payload(body)["events"]
    # 12:00 UTC is 14:00 in the merchant's zone (Europe/Stockholm, summer time). [INF]
    assert events == [
        {"type": "return", "action": "insert", "date": "2026-10-15 14:00:00.000000", "id": 1}
    ]


def test_webhook_events_are_discarded_while_unconfigured(centra_sim: CentraSimHandle) -> None:
    centra_sim.rest(
        "POST",
        "/order",
        json={
            "products": [{"sku": "TEE-BLK-S", "qty": 1, "unitPrice": 0}],
            "address": {"email": "a@example.com", "country": "SE"},
        },
    )
    assert centra_sim.client.get("/_sim/webhooks").json()["discarded_events"] == 1


def test_failed_delivery_is_counted_and_retried(centra_sim: CentraSimHandle) -> None:
    centra_sim.client.post(
        "/_sim/webhooks",
        json={
            "url": "http://127.0.0.1:9/nothing-listens",
            "secret": SECRET,
            "retries": 1,
            "backoff_seconds": 0,
        },
    )
    centra_sim.sim.webhooks.enqueue("order", "update", 1001)
    wait_for(lambda: centra_sim.client.get("/_sim/webhooks").json()["failed_batches"] == 1)
    snapshot = centra_sim.client.get("/_sim/webhooks").json()
    assert snapshot["attempts"] == 2 and snapshot["deliveries"][0]["status"] is None


def test_webhook_batches_hold_at_most_max_batch_events(
    centra_sim: CentraSimHandle, receiver: tuple[Receiver, RunningServer]
) -> None:
    rec, server = receiver
    centra_sim.client.post(
        "/_sim/webhooks", json={"url": server.url + "/hook", "secret": SECRET, "max_batch": 1}
    )
    state = centra_sim.sim.state
    tee = state.sizes[state.size_by_sku["TEE-BLK-S"]]
    jeans = state.sizes[state.size_by_sku["JEANS-32"]]
    # One changeStock touching two products raises two events within one request.
    centra_sim.data(
        "mutation($i: StockChangeInput!) { changeStock(input: $i) { userErrors { message } } }",
        {
            "i": {
                "intoWarehouse": {"id": 1},
                "productVariants": [
                    {"productVariant": {"id": size.variant_id},
                     "sizeChanges": [{"size": {"id": size.id}, "deliveredQuantity": 1}]}
                    for size in (tee, jeans)
                ],
            }
        },
    )  # fmt: skip
    wait_for(lambda: centra_sim.sim.webhooks.snapshot()["delivered_events"] == 2)
    batches = [decode_payload(body)["events"] for body, _ in rec.calls]
    assert [[(e["type"], e["action"], e["id"]) for e in b] for b in batches] == [
        [("product", "update", tee.product_id)],
        [("product", "update", jeans.product_id)],
    ]


# ----------------------------------------------------------------------------- control plane


def test_effects_shape_starts_empty_except_manual_refunds(centra_sim: CentraSimHandle) -> None:
    effects = centra_sim.client.get("/_sim/effects").json()
    assert effects == {
        "returns": [],
        "stock_changes": [],
        "refunds": [
            {"order_number": 1001, "return_id": None, "amount": "49.00", "currency": "SEK",
             "via_psp": True, "status": "SUCCESS", "asynchronous": False,
             "entry_id": effects["refunds"][0]["entry_id"], "answered_by": None,
             "requested_at": "2026-10-14T12:00:00+00:00",
             "answered_at": "2026-10-14T12:00:00+00:00"}
        ],
        "orders_created": [],
    }  # fmt: skip


def test_load_replaces_the_state(centra_sim: CentraSimHandle) -> None:
    data = centra_sim_scenario_data()
    data["centra"]["orders"] = data["centra"]["orders"][:1]
    data["centra"]["manual_refunds"] = []
    data["now"] = "2027-01-01T00:00:00Z"
    assert centra_sim.client.post("/_sim/load", json=data).status_code == 200
    assert centra_sim.data("{ counters { orders } }") == {"counters": {"orders": 1}}
    assert centra_sim.client.get("/_sim/effects").json()["refunds"] == []
    assert centra_sim.client.get("/_sim/clock").json()["now"] == "2027-01-01T00:00:00+00:00"


def test_load_rejects_a_bad_scenario_naming_the_key(centra_sim: CentraSimHandle) -> None:
    data = centra_sim_scenario_data()
    data["centra"]["orders"][0]["lines"][0]["sku"] = "NOPE"
    response = centra_sim.client.post("/_sim/load", json=data)
    assert response.status_code == 400
    assert "orders[0].lines[0].sku: unknown SKU" in response.json()["error"]


def test_clock_set_and_advance_move_timestamps(centra_sim: CentraSimHandle) -> None:
    centra_sim.client.post("/_sim/clock", json={"set": "2026-11-01T08:00:00Z"})
    now = centra_sim.client.post("/_sim/clock", json={"advance_seconds": 90}).json()["now"]
    assert now == "2026-11-01T08:01:30+00:00"
    assert centra_sim.client.post("/_sim/clock", json={"advance_seconds": -1}).status_code == 400
    centra_sim.rest(
        "POST",
        "/order",
        json={
            "products": [{"sku": "TEE-BLK-S", "qty": 1, "unitPrice": 0}],
            "orderNumber": 2000,
            "address": {"email": "a@example.com", "country": "SE"},
        },
    )
    created = centra_sim.data("{ orders(where: {number: 2000}) { createdAt } }")["orders"][0]
    assert created["createdAt"] == "2026-11-01T09:01:30+01:00"


def test_counters_and_reset(centra_sim: CentraSimHandle) -> None:
    centra_sim.data("{ orders { number } }")
    centra_sim.rest("GET", "/returns")
    counters = centra_sim.client.get("/_sim/counters").json()
    assert (counters["requests"], counters["graphql_requests"], counters["rest_requests"]) == (
        2, 1, 1,
    )  # fmt: skip
    assert counters["by_operation"] == {"REST GET /returns": 1, "query orders": 1}
    reset = centra_sim.client.post("/_sim/counters/reset").json()
    assert reset["requests"] == 0 and reset["by_operation"] == {}
