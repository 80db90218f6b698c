"""Acceptance: `returnbridge sim centra` as a real process, driven over HTTP like a client would.

Runs the built-in `basic` scenario (order 1001: 2 x TEE-BLK-M shipped, 49.00 shipping, SEK).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from returnbridge.connectors.centra.inferred import DEFAULT_INFERRED
from returnbridge.simulators.server import free_port

TOKEN = "centra-sim-token"  # the CLI defaults
SECRET = "centra-sim-secret"
ORDER_1001 = """query($n: [Int!]) {
  orders(where: {number: $n}) {
    id number status
    grandTotal { value currency { code } }
    shipments { id number isShipped lines { id quantity orderLine { id } } }
  }
}"""
CREATE_RETURN = """mutation($input: ReturnCreateInput!) {
  createReturn(input: $input) {
    return { id returnStatus lines { id quantity shipmentLine { id } } }
    userErrors { message path }
    userWarnings { message path }
  }
}"""


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "returnbridge", "sim", "centra", *args]


@pytest.fixture
def sim_process() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    proc = subprocess.Popen(
        _command("--port", str(port)), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()
            try:
                if httpx.get(url + "/_sim/clock", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the simulator did not start answering"
            time.sleep(0.05)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_simulator_serves_graphql_rest_and_sim(
    sim_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = sim_process
    with httpx.Client(base_url=url, timeout=10) as client:
        # A documented query, with the Bearer header and with the graphql-access cookie.
        body = {"query": ORDER_1001, "variables": {"n": [1001]}}
        by_bearer = client.post("/graphql", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        by_cookie = client.post(
            "/graphql", json=body, headers={"Cookie": f"graphql-access={TOKEN}"}
        )
        for response in (by_bearer, by_cookie):
            assert response.status_code == 200, response.text
            payload = response.json()
            assert "errors" not in payload
            assert set(payload["extensions"]) >= {"complexity", "permissionsUsed", "appVersion"}
        assert by_bearer.json()["data"] == by_cookie.json()["data"]
        order = by_bearer.json()["data"]["orders"][0]
        assert (order["number"], order["status"]) == (1001, "SHIPPED")
        assert order["grandTotal"] == {"value": 647.0, "currency": {"code": "SEK"}}
        assert client.post("/graphql", json=body).status_code == 403

        # A documented mutation on order 1001's shipment.
        ship = order["shipments"][0]
        assert ship["isShipped"] and ship["number"] == "1001-1"
        mutation = {
            "query": CREATE_RETURN,
            "variables": {
                "input": {
                    "shipment": {"id": ship["id"]},
                    "lines": [{"shipmentLine": {"id": ship["lines"][0]["id"]}, "quantity": 1}],
                    "returnStockActionPolicy": {"releaseItemsBackToWarehouse": True},
                    "comment": "acceptance",
                }
            },
        }
        created = client.post(
            "/graphql", json=mutation, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert created.status_code == 200, created.text
        payload = created.json()["data"]["createReturn"]
        assert payload["userErrors"] == [] and payload["userWarnings"] == []
        ret = payload["return"]
        assert ret["returnStatus"] == DEFAULT_INFERRED.return_status_pending
        assert ret["lines"][0]["quantity"] == 1

        # The REST Order API: refund and complete the return.
        base = DEFAULT_INFERRED.order_api_base_path
        put = client.put(
            f"{base}/returns/{ret['id']}",
            json={"completed": True, "refundPayment": True, "sendEmail": False},
            headers={"API-Authorization": SECRET},
        )
        assert put.status_code == 200, put.text
        assert put.json()["status"] == "ok" and put.json()["return"]["completed"] is True
        listed = client.get(f"{base}/returns", headers={"API-Authorization": SECRET}).json()
        assert [(r["returnId"], r["completed"]) for r in listed["returns"]] == [(ret["id"], True)]

        # The ground truth.
        effects = client.get("/_sim/effects").json()
        assert [(r["id"], r["order_number"], r["completed"]) for r in effects["returns"]] == [
            (ret["id"], 1001, True)
        ]
        assert effects["returns"][0]["lines"] == [{"sku": "TEE-BLK-M", "quantity": 1}]
        own_refunds = [r for r in effects["refunds"] if r["return_id"] == ret["id"]]
        assert own_refunds == [
            {
                "order_number": 1001,
                "return_id": ret["id"],
                "amount": "299.00",
                "currency": "SEK",
                "via_psp": True,
                "status": "SUCCESS",
                "asynchronous": False,
                "entry_id": own_refunds[0]["entry_id"],
                "answered_by": None,
                "requested_at": own_refunds[0]["requested_at"],
                "answered_at": own_refunds[0]["requested_at"],
            }
        ]
        assert effects["stock_changes"][0]["delta"] == 1

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_cli_simulator_with_a_bad_scenario_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("centra:\n  orders:\n    - {number: not-a-number, lines: []}\n")
    done = subprocess.run(
        _command("--port", str(free_port()), "--scenario", str(bad)),
        capture_output=True,
        timeout=20,
    )
    assert done.returncode == 2
    message = done.stderr.decode()
    assert str(bad) in message and "centra.orders[0].number" in message
