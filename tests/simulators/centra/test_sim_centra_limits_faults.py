"""The Centra simulator's rate limits and seeded faults (never applied to /_sim)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from centra_sim_support import CentraSimHandle, running_centra_sim

from returnbridge.connectors.centra.inferred import CentraInferred
from returnbridge.connectors.centra.plans import RateLimitType, get_plan
from returnbridge.scenario import Scenario
from returnbridge.simulators.centra.faults import AfterCommit, FaultInjector, FaultSettings
from returnbridge.simulators.centra.limits import RateLimiter, TokenBucket, retry_after_value

RATE_LIMITS = "{ rateLimits { type intervalSeconds quota usedQuota remainingQuota } }"


class FrozenTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def freeze_limits(handle: CentraSimHandle, plan: str = "growth") -> FrozenTime:
    frozen = FrozenTime()
    handle.sim.limiter.time_source = frozen
    handle.sim.limiter.set_plan(get_plan(plan))
    return frozen


# ----------------------------------------------------------------------------- units


def test_token_bucket_refills_continuously() -> None:
    bucket = TokenBucket(60, 10, now=0.0)
    bucket.tokens = 0
    bucket.refill(0.5)
    assert bucket.tokens == pytest.approx(3)
    assert bucket.wait_for(4) == pytest.approx(1 / 6)
    assert bucket.wait_for(61) == 10  # never fits: come back after a window


def test_refused_request_takes_nothing() -> None:
    frozen = FrozenTime()
    limiter = RateLimiter(get_plan("growth"), frozen)
    assert limiter.try_acquire({RateLimitType.MUTATION_COUNT: 21}) == 10
    rows = {(r["type"], r["intervalSeconds"]): r for r in limiter.rows()}
    assert rows[("MUTATION_COUNT", "TEN_SECONDS")]["usedQuota"] == 0


def test_retry_after_encodings() -> None:
    assert retry_after_value(2.2, "unix_timestamp", wall_now=100.0) == "103"
    assert retry_after_value(2.2, "seconds") == "3"
    assert retry_after_value(0, "http_date", wall_now=0.0) == "Thu, 01 Jan 1970 00:00:00 GMT"


# ----------------------------------------------------------------------------- over HTTP


def test_rate_limits_query_returns_six_rows(centra_scenario: Scenario) -> None:
    with running_centra_sim(centra_scenario, plan="growth") as sim:
        freeze_limits(sim)
        rows = sim.data(RATE_LIMITS)["rateLimits"]
    assert len(rows) == 6
    assert all(r["quota"] == r["usedQuota"] + r["remainingQuota"] for r in rows)
    requests = next(
        r for r in rows if (r["type"], r["intervalSeconds"]) == ("REQUEST_COUNT", "TEN_SECONDS")
    )
    assert (requests["quota"], requests["usedQuota"]) == (60, 1)


def test_over_the_request_quota_is_429_with_a_timestamp(centra_scenario: Scenario) -> None:
    with running_centra_sim(centra_scenario, plan="growth") as sim:
        frozen = freeze_limits(sim)
        statuses = [sim.graphql("{ warehouses { id } }").status_code for _ in range(60)]
        assert set(statuses) == {200}
        refused = sim.graphql("{ warehouses { id } }")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= int(time.time())
        assert sim.rest("GET", "/returns").status_code == 429  # the REST API shares the budget
        frozen.now += 10 / 60  # one token back
        assert sim.graphql("{ warehouses { id } }").status_code == 200
        assert sim.client.get("/_sim/counters").json()["rate_limited"] == 2


def test_each_aliased_mutation_takes_a_mutation_token(centra_scenario: Scenario) -> None:
    with running_centra_sim(centra_scenario, plan="growth") as sim:
        freeze_limits(sim)
        mutation = (
            "mutation { a: completeReturn(id: 1) { userErrors { message } } "
            "b: completeReturn(id: 2) { userErrors { message } } }"
        )
        assert sim.graphql(mutation).status_code == 200
        rows = sim.data(RATE_LIMITS)["rateLimits"]
    used = {(r["type"], r["intervalSeconds"]): r["usedQuota"] for r in rows}
    assert used[("MUTATION_COUNT", "TEN_SECONDS")] == 2
    assert used[("REQUEST_COUNT", "ONE_HOUR")] == 2


def test_retry_after_format_follows_the_inferred_setting(centra_scenario: Scenario) -> None:
    inferred = CentraInferred(retry_after_format="seconds")
    with running_centra_sim(centra_scenario, plan="growth", inferred=inferred) as sim:
        freeze_limits(sim)
        big = (
            "mutation { "
            + " ".join(
                f"m{i}: completeReturn(id: {i}) {{ userErrors {{ message }} }}" for i in range(21)
            )
            + " }"
        )
        refused = sim.graphql(big)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "10"


def test_unlimited_plan_never_limits(centra_sim: CentraSimHandle) -> None:
    for _ in range(70):
        assert centra_sim.graphql("{ warehouses { id } }").status_code == 200


# ----------------------------------------------------------------------------- faults


def draws(settings: FaultSettings, n: int) -> list[Any]:
    injector = FaultInjector(settings)
    return [injector.draw() for _ in range(n)]


def test_fault_draws_are_reproducible_per_seed() -> None:
    settings = FaultSettings(seed=7, error_rate=0.3, rate_limit_rate=0.3)
    assert draws(settings, 50) == draws(settings, 50)
    assert draws(settings, 50) != draws(
        FaultSettings(seed=8, error_rate=0.3, rate_limit_rate=0.3), 50
    )


def test_seeded_errors_hit_the_same_requests_and_never_sim(centra_sim: CentraSimHandle) -> None:
    def run() -> list[int]:
        centra_sim.client.post(
            "/_sim/faults", json={"seed": 3, "error_rate": 0.4, "rate_limit_rate": 0.2}
        )
        statuses = []
        for _ in range(30):
            statuses.append(centra_sim.graphql("{ warehouses { id } }").status_code)
            assert centra_sim.client.get("/_sim/counters").status_code == 200
        return statuses

    first, second = run(), run()
    assert first == second
    assert {200, 500, 429} <= set(first)
    expected = [
        500 if d.error else 429 if d.rate_limited else 200
        for d in draws(FaultSettings(seed=3, error_rate=0.4, rate_limit_rate=0.2), 30)
    ]
    assert first == expected


def test_faults_from_the_scenario_apply(centra_scenario: Scenario) -> None:
    faulty = centra_scenario.model_copy(
        update={
            "faults": centra_scenario.faults.model_copy(
                update={
                    "centra": centra_scenario.faults.centra.model_copy(update={"error_rate": 1.0})
                }
            )
        }
    )
    with running_centra_sim(faulty) as sim:
        response = sim.graphql("{ warehouses { id } }")
        assert response.status_code == 500
        assert sim.client.get("/_sim/counters").json()["errors_5xx"] == 1


def first_draw_seed(mode: AfterCommit) -> int:
    for seed in range(100):
        if (
            draws(FaultSettings(seed=seed, timeout_after_commit_rate=1.0), 1)[0].after_commit
            is mode
        ):
            return seed
    raise AssertionError("no seed found")


def create_return_body(sim: CentraSimHandle) -> dict[str, Any]:
    ship = sim.sim.state.orders[1001].shipments[0]
    return {
        "query": "mutation($i: ReturnCreateInput!) { createReturn(input: $i) { return { id } } }",
        "variables": {
            "i": {
                "shipment": {"id": ship.id},
                "lines": [{"shipmentLine": {"id": ship.lines[0].id}, "quantity": 1}],
                "returnStockActionPolicy": {"removeItemsFromStock": True},
                "externalId": "ret_timeout",
            }
        },
    }


def test_timeout_after_commit_stall_applies_the_effect(centra_sim: CentraSimHandle) -> None:
    body = create_return_body(centra_sim)
    seed = first_draw_seed(AfterCommit.STALL)
    centra_sim.client.post(
        "/_sim/faults", json={"seed": seed, "timeout_after_commit_rate": 1.0, "stall_seconds": 5}
    )
    with pytest.raises(httpx.ReadTimeout):
        centra_sim.client.post(
            "/graphql", json=body, headers={"Authorization": "Bearer centra-sim-token"}, timeout=0.3
        )
    returns = centra_sim.client.get("/_sim/effects").json()["returns"]
    assert [r["external_id"] for r in returns] == ["ret_timeout"]
    assert centra_sim.client.get("/_sim/counters").json()["timeouts_after_commit"] == 1


def test_timeout_after_commit_drop_applies_the_effect(centra_sim: CentraSimHandle) -> None:
    body = create_return_body(centra_sim)
    seed = first_draw_seed(AfterCommit.DROP)
    centra_sim.client.post("/_sim/faults", json={"seed": seed, "timeout_after_commit_rate": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):
        centra_sim.client.post(
            "/graphql", json=body, headers={"Authorization": "Bearer centra-sim-token"}
        )
    assert len(centra_sim.client.get("/_sim/effects").json()["returns"]) == 1


def test_timeout_after_commit_spares_reads(centra_sim: CentraSimHandle) -> None:
    centra_sim.client.post("/_sim/faults", json={"timeout_after_commit_rate": 1.0})
    assert centra_sim.graphql("{ warehouses { id } }").status_code == 200


def test_timeout_after_commit_on_rest_order_creation(centra_sim: CentraSimHandle) -> None:
    seed = first_draw_seed(AfterCommit.DROP)
    centra_sim.client.post("/_sim/faults", json={"seed": seed, "timeout_after_commit_rate": 1.0})
    body = {
        "products": [{"sku": "TEE-BLK-S", "qty": 1, "unitPrice": 0}],
        "orderNumber": 555,
        "address": {"email": "a@example.com", "country": "SE"},
    }
    with pytest.raises(httpx.RemoteProtocolError):
        centra_sim.rest("POST", "/order", json=body)
    created = centra_sim.client.get("/_sim/effects").json()["orders_created"]
    assert [o["order_number"] for o in created] == [555]


def test_bad_fault_settings_are_400(centra_sim: CentraSimHandle) -> None:
    assert centra_sim.client.post("/_sim/faults", json={"error_rate": 2}).status_code == 400
    assert centra_sim.client.post("/_sim/faults", json={"bogus": 1}).status_code == 400
