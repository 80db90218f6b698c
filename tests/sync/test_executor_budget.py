"""The cross-process budget: token buckets derived from a Centra plan (pure), and the Prefect gate
against a real Prefect test server (one module-scoped harness: it takes seconds to start)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from centra_sim_support import CentraSimHandle
from test_executor import restock_action

from returnbridge.connectors.centra import CentraClient, Governor
from returnbridge.connectors.centra.plans import PLANS
from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.ledger import Ledger
from returnbridge.sync.budget import BudgetNames, NoGate, rate_limit_specs
from returnbridge.sync.executor import Executor, ExecutorConfig

# --------------------------------------------------------------------------- pure


def test_growth_at_half_share_gives_buckets_inside_both_windows() -> None:
    requests, mutations = rate_limit_specs("growth", 0.5)
    # 30 requests / 10 s and 2,500 / h: sustained 2,500 / 3,600 s, burst 30 - 7.
    assert (requests.name, requests.limit) == ("centra-requests", 23)
    assert requests.slot_decay_per_second == pytest.approx((2500 - 23) / 3600, abs=1e-6)
    # 10 mutations / 10 s and 900 / h.
    assert (mutations.name, mutations.limit) == ("centra-mutations", 7)
    assert mutations.slot_decay_per_second == pytest.approx((900 - 7) / 3600, abs=1e-6)


@pytest.mark.parametrize("plan", [p for p in PLANS if PLANS[p].limited])
@pytest.mark.parametrize("share", [0.05, 0.25, 0.5, 1.0])
def test_a_bucket_never_grants_more_than_either_window_allows(plan: str, share: float) -> None:
    quotas = {"centra-requests": PLANS[plan].requests, "centra-mutations": PLANS[plan].mutations}
    for spec in rate_limit_specs(plan, share):
        quota = quotas[spec.name]
        assert quota is not None and spec.limit >= 1 and spec.slot_decay_per_second > 0
        per_10s = math.floor(quota.ten_seconds * share + 1e-9)
        per_hour = math.floor(quota.one_hour * share + 1e-9)
        # A token bucket grants at most its burst plus what refills within a window (a budget
        # of one call per 10 s cannot be a bucket: it gets burst 1 at the hourly rate).
        if per_10s > 1:
            assert spec.limit + 10 * spec.slot_decay_per_second <= per_10s
        else:
            assert spec.limit == 1
        assert spec.limit + 3600 * spec.slot_decay_per_second <= per_hour


def test_unlimited_plan_has_no_buckets_and_bad_shares_are_refused() -> None:
    assert rate_limit_specs("unlimited", 0.5) == []
    with pytest.raises(ValueError, match="share"):
        rate_limit_specs("growth", 0)
    with pytest.raises(ValueError, match="unknown Centra plan"):
        rate_limit_specs("platinum", 0.5)


def test_a_mutation_draws_from_the_request_limit_too() -> None:
    names = BudgetNames(request="env-a-requests", mutation="env-a-mutations")
    assert names.for_kind("mutation") == ["env-a-requests", "env-a-mutations"]
    assert names.for_kind("request") == ["env-a-requests"]
    with pytest.raises(ValueError, match="unknown budget kind"):
        names.for_kind("query")  # type: ignore[arg-type]


async def test_no_gate_lets_everything_through() -> None:
    await NoGate().acquire("mutation", 5)


def test_each_centra_environment_has_its_own_limit_names() -> None:
    names = BudgetNames.for_environment("https://brand.centra.com/graphql")
    assert names == BudgetNames(
        "centra-requests:brand.centra.com", "centra-mutations:brand.centra.com"
    )
    assert BudgetNames.for_environment("http://127.0.0.1:8081").request == (
        "centra-requests:127.0.0.1:8081"
    )


async def test_a_prefect_gate_for_an_unlimited_plan_needs_no_server() -> None:
    from tasks.budget import PrefectBudgetGate

    gate = PrefectBudgetGate.for_settings(CentraSettings(plan="unlimited"))
    await gate.acquire("mutation")
    assert gate.acquired == {"mutation": 0, "request": 0}


# --------------------------------------------------------------------------- Prefect


async def test_prefect_limits_are_created_held_and_updated(prefect_server: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.concurrency._asyncio import (
        AcquireConcurrencySlotTimeoutError,
        ConcurrencySlotAcquisitionError,
    )

    from tasks.budget import PrefectBudgetGate, ensure_rate_limits

    names = BudgetNames(request="test-requests", mutation="test-mutations")
    specs = await ensure_rate_limits("growth", 0.5, names)
    assert [(s.name, s.limit) for s in specs] == [("test-requests", 23), ("test-mutations", 7)]
    async with get_client() as client:
        stored = await client.read_global_concurrency_limit_by_name("test-mutations")
    assert (stored.limit, stored.slot_decay_per_second) == (7, specs[1].slot_decay_per_second)

    # Idempotent, and a new share updates the limits in place.
    assert await ensure_rate_limits("growth", 0.5, names) == specs
    smaller = await ensure_rate_limits("growth", 0.2, names)
    async with get_client() as client:
        stored = await client.read_global_concurrency_limit_by_name("test-mutations")
    assert stored.limit == smaller[1].limit == 3

    # The gate holds the bucket: three mutations empty it, the fourth waits (and times out).
    gate = PrefectBudgetGate(names, timeout_seconds=0.5)
    for _ in range(3):
        await gate.acquire("mutation")
    with pytest.raises(AcquireConcurrencySlotTimeoutError):
        await gate.acquire("mutation")
    await gate.acquire("request")  # the request bucket still has room
    assert gate.acquired == {"mutation": 3, "request": 1}

    # Strict: a limit nobody created is an error, not an unthrottled run.
    with pytest.raises(ConcurrencySlotAcquisitionError, match="must be created"):
        await PrefectBudgetGate(BudgetNames("nope-r", "nope-m")).acquire("request")


async def test_the_executor_passes_the_prefect_gate_before_each_write(
    prefect_server: None, centra_sim: CentraSimHandle, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from tasks.budget import PrefectBudgetGate

    # Built from the settings: the first acquire creates the environment's limits.
    settings = CentraSettings(base_url=centra_sim.url, plan="growth", budget_share=1.0)
    gate = PrefectBudgetGate.for_settings(settings, timeout_seconds=10)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        async with CentraClient(
            base_url=centra_sim.url,
            token=centra_sim.token,
            order_api_secret=centra_sim.order_api_secret,
            plan="unlimited",
            governor=Governor("unlimited", 1.0),
        ) as centra:
            action = await restock_action(centra, "ret_gated")
            ledger.plan([action])
            config = ExecutorConfig(in_doubt_settle_seconds=0)
            executor = Executor(centra, ledger, config, budget=gate, rng=random.Random(1))
            report = await executor.run()
    assert report.outcomes == {action.key: "done"}
    assert gate.acquired == {"mutation": 1, "request": 0}
    async with get_client() as client:
        stored = await client.read_global_concurrency_limit_by_name(gate.names.mutation)
    assert stored.limit == rate_limit_specs("growth", 1.0)[1].limit
