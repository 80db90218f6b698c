"""Helpers for tests that run the Centra simulator over real HTTP (fixtures: conftest.py)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from returnbridge.scenario import Scenario
from returnbridge.simulators.centra.app import create_app
from returnbridge.simulators.centra.simulator import CentraSimulator
from returnbridge.simulators.server import serve_in_thread

CENTRA_SIM_SCENARIO: dict[str, Any] = {
    "now": "2026-10-15T12:00:00Z",
    "centra": {
        "plan": "growth",
        "warehouses": [{"id": 1, "name": "Main"}, {"id": 2, "name": "Returns"}],
        "returns_warehouse": 2,
        "products": [
            {"sku": "TEE-BLK-S", "ean": "7350000000004", "stock": {1: 10, 2: 0}},
            {"sku": "TEE-BLK-M", "ean": "7350000000011", "stock": {1: 5, 2: 0}},
            {"sku": "TEE-BLK-L", "ean": "7350000000028", "stock": {1: 3, 2: 1}},
            {"sku": "JEANS-32", "ean": "7350000000035", "stock": {1: 0, 2: 0}},
        ],
        "orders": [
            {
                "number": 1001,
                "status": "SHIPPED",
                "currency": "SEK",
                "customer_email": "anna@example.com",
                "created_at": "2026-10-01T10:00:00Z",
                "shipping": "49.00",
                "lines": [{"sku": "TEE-BLK-M", "quantity": 2, "unit_price": "299.00"}],
            },
            {
                "number": 1002,
                "status": "ARCHIVED",
                "created_at": "2026-09-20T08:30:00Z",
                "lines": [{"sku": "TEE-BLK-S", "quantity": 1, "unit_price": "299.00"}],
            },
            {
                "number": 1003,
                "status": "PROCESSING",
                "currency": "EUR",
                "market": "DE",
                "customer_email": "clara@example.com",
                "created_at": "2026-10-03T14:15:00Z",
                "lines": [
                    {"sku": "TEE-BLK-L", "quantity": 1, "unit_price": "29.00", "tax_percent": 19},
                    {"sku": "JEANS-32", "quantity": 2, "unit_price": "89.00", "tax_percent": 19},
                ],
                "shipments": [
                    {
                        "shipped": True,
                        "lines": [{"line": 1, "quantity": 1}, {"line": 2, "quantity": 1}],
                    },
                    {"shipped": False, "lines": [{"line": 2, "quantity": 1}]},
                ],
            },
            {
                "number": 1004,
                "status": "SHIPPED",
                "currency": "EUR",
                "market": "FR",
                "created_at": "2026-10-04T09:00:00Z",
                "lines": [{"sku": "TEE-BLK-M", "quantity": 1, "unit_price": "29.00"}],
                "refund_gateway_fails": True,
            },
            {
                "number": 1005,
                "status": "PENDING",
                "created_at": "2026-10-05T11:45:00Z",
                "lines": [{"sku": "TEE-BLK-S", "quantity": 1, "unit_price": "299.00"}],
            },
        ],
        "manual_refunds": [{"order_number": 1001, "amount": "49.00"}],
    },
}


@dataclass
class CentraSimHandle:
    """A running Centra simulator: where it listens, its credentials, and the live object."""

    url: str
    token: str
    order_api_secret: str
    sim: CentraSimulator
    client: httpx.Client

    @property
    def order_api_url(self) -> str:
        return self.url + self.sim.inferred.order_api_base_path

    def graphql(
        self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """POST a GraphQL request with the Bearer token."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        body = {"query": query, "variables": variables or {}}
        return self.client.post("/graphql", json=body, headers=headers, **kwargs)

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a query that must succeed and return its `data`."""
        response = self.graphql(query, variables)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    def rest(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the Order API with the shared secret."""
        headers = {"API-Authorization": self.order_api_secret, **kwargs.pop("headers", {})}
        return self.client.request(method, self.order_api_url + path, headers=headers, **kwargs)


def centra_sim_scenario_data() -> dict[str, Any]:
    """A fresh copy of the small Centra scenario the simulator tests share."""
    return copy.deepcopy(CENTRA_SIM_SCENARIO)


@contextmanager
def running_centra_sim(
    scenario: Scenario | None = None, **options: Any
) -> Iterator[CentraSimHandle]:
    """Serve a Centra simulator over real HTTP for the duration of the block."""
    options.setdefault("plan", "unlimited")
    app = create_app(scenario, **options)
    token = options.get("token", "centra-sim-token")
    secret = options.get("order_api_secret", "centra-sim-secret")
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield CentraSimHandle(server.url, token, secret, app.state.sim, client)
