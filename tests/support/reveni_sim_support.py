"""Helpers for tests that run the Reveni simulator over real HTTP."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from returnbridge.connectors.reveni.encoding import normalise_return
from returnbridge.connectors.reveni.inferred import DEFAULT_REVENI_INFERRED, ReveniInferred
from returnbridge.connectors.reveni.models import Return, wire_context
from returnbridge.scenario import Scenario, parse_scenario
from returnbridge.simulators.reveni.app import create_app
from returnbridge.simulators.reveni.simulator import ReveniSimulator
from returnbridge.simulators.server import serve_in_thread

API_KEY = "reveni-sim-key"

# Orders 1001 (SEK), 1003 and 1004 (EUR; 1004 has TEE-BLK-M on two lines at 29.00 and 19.00).
REVENI_SIM_SCENARIO: dict[str, Any] = {
    "now": "2026-10-15T12:00:00Z",
    "centra": {
        "products": [
            {"sku": "TEE-BLK-S", "stock": {1: 10}},
            {"sku": "TEE-BLK-M", "stock": {1: 5}},
            {"sku": "TEE-BLK-L", "stock": {1: 3}},
            {"sku": "JEANS-32", "stock": {1: 0}},
        ],
        "orders": [
            {
                "number": 1001,
                "currency": "SEK",
                "customer_email": "anna@example.com",
                "lines": [{"sku": "TEE-BLK-M", "quantity": 2, "unit_price": "299.00"}],
            },
            {
                "number": 1003,
                "currency": "EUR",
                "customer_email": "clara@example.com",
                "lines": [
                    {"sku": "TEE-BLK-L", "quantity": 1, "unit_price": "29.00"},
                    {"sku": "JEANS-32", "quantity": 2, "unit_price": "89.00"},
                ],
            },
            {
                "number": 1004,
                "currency": "EUR",
                "customer_email": "dan@example.com",
                "lines": [
                    {"sku": "TEE-BLK-M", "quantity": 1, "unit_price": "29.00"},
                    {"sku": "TEE-BLK-M", "quantity": 1, "unit_price": "19.00"},
                ],
            },
        ],
    },
    "reveni": {
        "store_id": "store_1",
        "store_name": "Test Store",
        "currency": "EUR",
        "returns": [
            {
                "id": "ret_std",
                "order_number": 1001,
                "created_at": "2026-10-05T09:00:00Z",
                "items": [{"sku": "TEE-BLK-M", "quantity": 1, "reason": "too_small"}],
                "refund": {"method": "original_payment_method", "amount": "299.00"},
                "history": ["in_progress", "shipped", "received", "accepted"],
            },
            {
                "id": "ret_inst",
                "order_number": 1003,
                "instant": True,
                "created_at": "2026-10-06T10:00:00Z",
                "items": [{"sku": "JEANS-32", "quantity": 1, "accepted": False}],
                "refund": {"method": "bank_transfer", "amount": "89.00"},
                "history": ["in_progress", "shipped", "received", "rejected"],
            },
            {
                "id": "ret_exch",
                "order_number": 1003,
                "type": "exchange",
                "created_at": "2026-10-07T08:00:00Z",
                "items": [{"sku": "TEE-BLK-L", "quantity": 1, "exchange_sku": "TEE-BLK-M"}],
                "history": ["in_progress", "shipped"],
            },
            {
                "id": "ret_mixed",
                "order_number": 1004,
                "type": "mixed",
                "created_at": "2026-10-08T12:00:00Z",
                "items": [
                    {"sku": "TEE-BLK-M", "quantity": 1, "exchange_sku": "TEE-BLK-S"},
                    {"sku": "TEE-BLK-M", "quantity": 1, "restock": False},
                ],
                "refund": {"method": "original_payment_method", "amount": "19.00"},
                "history": ["in_progress"],
            },
            {
                "id": "ret_partial",
                "order_number": 1004,
                "created_at": "2026-09-30T23:30:00Z",
                "items": [
                    {"sku": "TEE-BLK-M", "quantity": 1},
                    {"sku": "TEE-BLK-M", "quantity": 1, "accepted": False},
                ],
                "refund": {"method": "original_payment_method", "amount": "29.00"},
                "history": ["in_progress", "received", "partially_accepted"],
            },
            {
                "id": "ret_nf",
                "order_number": 9999,
                "instant": True,
                "created_at": "2026-10-09T15:30:00Z",
                "customer_email": "Zed.Unknown@Example.com",
                "items": [{"sku": "TEE-BLK-S", "quantity": 1}],
                "refund": {"method": "store_credit", "amount": "25.00", "currency": "EUR"},
                "history": ["in_progress"],
            },
            {
                "order_number": 1001,
                "created_at": "2026-10-10T10:00:00Z",
                "items": [{"sku": "TEE-BLK-M", "quantity": 1}],
                "history": ["pending", "in_progress", "on_hold", "in_progress"],
            },
        ],
    },
}
WALK_STEPS = 12  # the histories above hold 12 steps after their first statuses


def decode(response: httpx.Response) -> Any:
    """The JSON body with numbers that have a fraction as Decimal, as the client reads them."""
    return json.loads(response.content, parse_float=Decimal)


def reveni_sim_scenario_data() -> dict[str, Any]:
    """A fresh copy of the scenario the Reveni simulator tests share."""
    return copy.deepcopy(REVENI_SIM_SCENARIO)


def reveni_sim_scenario(**changes: Any) -> Scenario:
    data = reveni_sim_scenario_data()
    data.update(changes)
    return parse_scenario(data, "REVENI_SIM_SCENARIO")


@dataclass
class ReveniSimHandle:
    """A running Reveni simulator: where it listens, its credentials and the live object."""

    url: str
    api_key: str
    store_id: str
    sim: ReveniSimulator
    api: httpx.Client  # base URL = the store's API prefix, with the Bearer key
    control: httpx.Client  # base URL = the server, for /_sim

    @property
    def inferred(self) -> ReveniInferred:
        return self.sim.inferred

    def reset(self) -> None:
        """Back to the shared scenario: no subscriptions, no secret, zero counters."""
        for sub in self.control.get("/_sim/webhooks").json()["subscriptions"]:
            assert self.api.delete(f"webhooks/{sub['id']}").status_code == 204
        self.sim_post("webhooks", {"secret": None})
        self.sim_post("load", reveni_sim_scenario_data())
        self.sim_post("counters/reset")

    def get_return(self, return_id: str) -> dict[str, Any]:
        """`GET returns/{id}`, which must succeed and validate against the client's model."""
        response = self.api.get(f"returns/{return_id}")
        assert response.status_code == 200, response.text
        body = decode(response)
        self.model(body)
        return body

    def model(self, body: dict[str, Any]) -> Return:
        """Validate a return as the client does: casing undone first, then the strict model."""
        return Return.model_validate(
            normalise_return(body, self.inferred), context=wire_context(self.inferred)
        )

    def listing(self, **params: Any) -> dict[str, Any]:
        """`GET returns` with `params`, which must succeed; every row validates."""
        response = self.api.get("returns", params=params)
        assert response.status_code == 200, response.text
        body = decode(response)
        for row in body[self.inferred.envelope_items_key]:
            self.model(row)
        return body

    def ids(self, **params: Any) -> list[str]:
        rows = self.listing(page_size=100, **params)[self.inferred.envelope_items_key]
        return [row["id"] for row in rows]

    def sim_post(self, path: str, body: Any = None) -> Any:
        """POST to /_sim, which must succeed."""
        response = self.control.post(f"/_sim/{path}", json=body if body is not None else {})
        assert response.status_code in (200, 201), response.text
        return response.json()


@contextmanager
def running_reveni_sim(
    scenario: Scenario | None = None, **options: Any
) -> Iterator[ReveniSimHandle]:
    """Serve a Reveni simulator (create_app's `options`) over real HTTP for the block."""
    scenario = scenario or reveni_sim_scenario()
    app = create_app(scenario, **options)
    sim: ReveniSimulator = app.state.sim
    api_key = options.get("api_key", API_KEY)
    inferred = options.get("inferred", DEFAULT_REVENI_INFERRED)
    with (
        serve_in_thread(app) as server,
        httpx.Client(
            base_url=f"{server.url}/merchants/v0/stores/{sim.store_id}/",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=10,
        ) as api,
        httpx.Client(base_url=server.url, timeout=10) as control,
    ):
        assert inferred is sim.inferred
        yield ReveniSimHandle(server.url, api_key, sim.store_id, sim, api, control)


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll `predicate` until it is true (bounded: fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


class Receiver:
    """A local webhook endpoint: records raw bodies and headers; can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._failures = 0
        self._failure_status = 500

    def fail_next(self, times: int, status: int = 500) -> None:
        with self._lock:
            self._failures, self._failure_status = times, status

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self.calls.append((body, dict(request.headers)))
            if self._failures:
                self._failures -= 1
                return Response("boom", status_code=self._failure_status)
        return Response("OK")

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self._failures = 0

    def bodies(self) -> list[bytes]:
        with self._lock:
            return [body for body, _ in self.calls]


@contextmanager
def running_receiver() -> Iterator[tuple[Receiver, str]]:
    """A Receiver served over HTTP; yields it and its hook URL."""
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])
    with serve_in_thread(app) as server:
        yield receiver, server.url + "/hook"
