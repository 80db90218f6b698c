"""What the simulators offer for reconciliation plants: a return whose history happened
before the simulation started, and a refund someone makes directly in Centra."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from returnbridge.connectors.reveni.inferred import DEFAULT_REVENI_INFERRED
from returnbridge.demo import CENTRA_SECRET, CENTRA_TOKEN
from returnbridge.scenario import ScenarioError, parse_scenario
from returnbridge.scenarios import builtin_scenario
from returnbridge.simulators.centra.app import create_app as create_centra_app
from returnbridge.simulators.clock import SimClock
from returnbridge.simulators.reveni.state import ReveniState
from returnbridge.simulators.server import serve_in_thread


def test_a_history_before_start_is_played_at_load_without_events() -> None:
    scenario = builtin_scenario("showcase")
    clock = SimClock(scenario.start_time())
    state = ReveniState.from_scenario(scenario, DEFAULT_REVENI_INFERRED, clock)
    events: list[str] = []
    state.subscribe(lambda event, rec: events.append(rec.id))
    old = state.get("ret_old_1017")
    created = datetime(2026, 7, 1, 9, tzinfo=UTC)
    assert (old.status, old.created_at) == ("accepted", created)
    assert old.updated_at == created + timedelta(hours=3)  # three steps after in_progress
    assert [c.status for c in old.changes] == ["in_progress", "shipped", "received", "accepted"]
    assert [r.amount for r in old.refunds] and not old.remaining_history
    assert clock.now() == scenario.start_time()  # the clock was not moved by the old history
    state.walk()
    assert "ret_old_1017" not in events  # nothing to walk, nothing announced


def test_before_start_needs_created_at() -> None:
    data = {
        "centra": {"products": [{"sku": "X"}], "orders": [
            {"number": 1, "lines": [{"sku": "X", "quantity": 1, "unit_price": "1.00"}]}]},
        "reveni": {"returns": [{"order_number": 1, "items": [{"sku": "X", "quantity": 1}],
                                "before_start": True}]},
    }  # fmt: skip
    with pytest.raises(ScenarioError, match=r"reveni.returns\[0\].*before_start: needs created_at"):
        parse_scenario(data, "plant.yaml")


@pytest.fixture(scope="module")
def centra() -> httpx.Client:
    app = create_centra_app(
        builtin_scenario("showcase"), token=CENTRA_TOKEN, order_api_secret=CENTRA_SECRET
    )
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_after_sync_manual_refunds_wait_for_the_control_plane(centra: httpx.Client) -> None:
    def manual() -> list[tuple[int, str]]:
        refunds = centra.get("/_sim/effects").json()["refunds"]
        return [(r["order_number"], r["amount"]) for r in refunds if r["return_id"] is None]

    assert manual() == [(1001, "49.00")]  # 1016's is `after_sync`
    made = centra.post("/_sim/manual_refunds", json={"order_number": 1016, "amount": "299.00"})
    assert made.status_code == 201
    assert manual() == [(1001, "49.00"), (1016, "299.00")]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"order_number": 4040, "amount": "1.00"}, "Centra has no order 4040"),
        ({"order_number": 1016, "amount": "-1"}, "amount must be positive"),
        ({"order_number": 1016, "amount": "abc"}, "amount must be a decimal string"),
        ({"order_number": "1016", "amount": "1"}, "order_number must be an integer"),
        ({"order_number": 1016, "amount": "1", "x": 1}, "unknown key(s): ['x']"),
    ],
)
def test_bad_manual_refunds_are_refused_naming_the_problem(
    centra: httpx.Client, body: dict[str, object], message: str
) -> None:
    answer = centra.post("/_sim/manual_refunds", json=body)
    assert answer.status_code == 400 and message in answer.text
