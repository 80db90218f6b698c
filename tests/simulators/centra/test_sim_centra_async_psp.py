"""The simulated asynchronous PSP (scenario `psp: async`): a refund is a REFUND_REQUEST left
PENDING until the PSP answers on the simulator clock (or `POST /_sim/psp/settle`), then a REFUND
(paid) or REFUND_FAILED (refused) entry with the same reference, the return completed when paid,
Centra's order webhook fired; `/_sim/effects` lists one refund per request with its status."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle, centra_sim_scenario_data, running_centra_sim
from test_sim_centra_order_api import make_return

from returnbridge.scenario import Scenario

HISTORY = """query($id: [Int!]) { returns(where: {id: $id}) { returnStatus
  refundPaymentHistory { entryType status externalReference value { value } } } }"""


def scenario(*, fails: bool = False, settle: float = 60) -> Scenario:
    data = centra_sim_scenario_data()
    data["centra"]["psp_settle_seconds"] = settle
    order = data["centra"]["orders"][0]
    order["psp"] = "async"
    order["refund_gateway_fails"] = fails
    return Scenario.model_validate(data)


@pytest.fixture
def sim() -> Iterator[CentraSimHandle]:
    with running_centra_sim(scenario()) as handle:
        yield handle


def history(sim: CentraSimHandle, rid: int) -> dict[str, Any]:
    result: dict[str, Any] = sim.data(HISTORY, {"id": [rid]})["returns"][0]
    return result


def refunds(sim: CentraSimHandle) -> list[dict[str, Any]]:
    return [r for r in sim.client.get("/_sim/effects").json()["refunds"] if r["return_id"]]


def wait_for(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_refund_is_a_pending_request_until_the_psp_answers_on_the_clock(
    sim: CentraSimHandle,
) -> None:
    rid = make_return(sim, 1001)
    answer = sim.rest("PUT", f"/returns/{rid}", json={"refundPayment": True})
    assert answer.status_code == 200
    assert answer.json()["refund"]["status"] == "PENDING"
    assert answer.json()["return"]["completed"] is False  # completes when the PSP pays
    (request,) = history(sim, rid)["refundPaymentHistory"]
    assert (request["entryType"], request["status"]) == ("REFUND_REQUEST", "PENDING")
    (effect,) = refunds(sim)
    assert (effect["status"], effect["asynchronous"], effect["answered_by"]) == (
        "PENDING",
        True,
        None,
    )
    (pending,) = sim.client.get("/_sim/psp").json()["pending"]
    assert pending["return_id"] == rid and pending["amount"] == effect["amount"]

    sim.client.post("/_sim/clock", json={"advance_seconds": 59}).raise_for_status()
    assert refunds(sim)[0]["status"] == "PENDING"  # not yet
    sim.client.post("/_sim/clock", json={"advance_seconds": 2}).raise_for_status()
    wait_for(lambda: refunds(sim)[0]["status"] == "SUCCESS")
    settled = history(sim, rid)
    assert settled["returnStatus"] == "COMPLETED"
    request, paid = settled["refundPaymentHistory"]
    assert (paid["entryType"], paid["status"]) == ("REFUND", "SUCCESS")
    assert paid["externalReference"] == request["externalReference"] is not None
    assert paid["value"] == request["value"]
    (effect,) = refunds(sim)  # still one refund: the settlement is not listed again
    assert effect["answered_by"] is not None and effect["answered_at"] is not None
    assert sim.client.get("/_sim/psp").json()["pending"] == []
    again = sim.rest("PUT", f"/returns/{rid}", json={"refundPayment": True})
    assert again.status_code == 400 and "already refunded" in again.json()["msg"]


def test_a_refused_refund_is_answered_with_refund_failed_and_leaves_the_return_pending() -> None:
    with running_centra_sim(scenario(fails=True)) as sim:
        rid = make_return(sim, 1001)
        answer = sim.rest("PUT", f"/returns/{rid}", json={"refundPayment": True})
        assert answer.status_code == 200 and answer.json()["refund"]["status"] == "PENDING"
        settled = sim.client.post("/_sim/psp/settle", json={}).raise_for_status().json()
        assert [s["status"] for s in settled["settled"]] == ["FAILED"]
        after = history(sim, rid)
        assert after["returnStatus"] == "PENDING"
        assert [(e["entryType"], e["status"]) for e in after["refundPaymentHistory"]] == [
            ("REFUND_REQUEST", "FAILED"),
            ("REFUND_FAILED", "FAILED"),
        ]
        assert [r["status"] for r in refunds(sim)] == ["FAILED"]


def test_settling_fires_the_order_webhook_and_settle_checks_its_input(
    sim: CentraSimHandle,
) -> None:
    rid = make_return(sim, 1001)
    sim.rest("PUT", f"/returns/{rid}", json={"refundPayment": True}).raise_for_status()
    events: list[tuple[str, str, int]] = []
    sim.sim.state.subscribe(lambda kind, action, id_: events.append((kind, action, id_)))
    bad = sim.client.post("/_sim/psp/settle", json={"order_number": 4242})
    assert bad.status_code == 400 and "4242" in bad.json()["error"]
    assert sim.client.post("/_sim/psp/settle", json={"x": 1}).status_code == 400
    none = sim.client.post("/_sim/psp/settle", json={"order_number": 1002}).json()
    assert none["settled"] == []
    assert len(sim.client.post("/_sim/psp/settle", json={"order_number": 1001}).json()["settled"])
    assert ("order", "update", 1001) in events and ("return", "update", rid) in events
