"""Smoke tests of the sync benchmarks (`bench/sync_*.py`) at tiny sizes, so that they cannot rot,
plus the arithmetic the figures rest on (the greedy budget schedule, windows, percentiles)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level package of the project, not installed
    sys.path.insert(0, str(ROOT))

from bench import sync_budget, sync_economy, sync_latency  # noqa: E402
from bench.sync_support import (  # noqa: E402
    CountingGovernor,
    ScaledClock,
    allowed_grants,
    greedy_schedule,
    ideal_seconds,
    max_in_window,
    percentile,
)

GROWTH_HALF = [(10, 10.0), (900, 3600.0)]  # Growth mutations at a 50 % share


# ------------------------------------------------------------------------------ arithmetic


def test_greedy_schedule_fills_each_window_as_soon_as_it_frees() -> None:
    assert greedy_schedule([(3, 10.0)], count=7) == [0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 20.0]
    assert allowed_grants(0.0, GROWTH_HALF) == 10
    assert allowed_grants(9.99, GROWTH_HALF) == 10
    assert allowed_grants(10.0, GROWTH_HALF) == 20
    # the hourly cap binds after 90 bursts of 10; slots come back an hour after they were used
    assert allowed_grants(890.0, GROWTH_HALF) == 900
    assert allowed_grants(3599.0, GROWTH_HALF) == 900
    assert allowed_grants(3600.0, GROWTH_HALF) == 910
    assert ideal_seconds(900, GROWTH_HALF) == 890.0
    assert ideal_seconds(901, GROWTH_HALF) == 3600.0
    assert ideal_seconds(0, GROWTH_HALF) == 0.0


def test_no_schedule_beats_the_greedy_one() -> None:
    times = greedy_schedule(GROWTH_HALF, duration=8000.0)
    assert max_in_window(times, 10.0) == 10
    assert max_in_window(times, 3600.0) == 900


def test_max_in_window_and_percentile() -> None:
    assert max_in_window([], 10.0) == 0
    assert max_in_window([0.0, 1.0, 9.0, 10.0, 10.5], 10.0) == 4  # a grant leaves at +10 s
    assert percentile([1.0], 95) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_scaled_clock_runs_fast_and_sleeps_short() -> None:
    clock = ScaledClock(100.0)
    began, real = clock.monotonic(), time.monotonic()
    asyncio.run(clock.sleep(5.0))  # 5 scaled seconds: 0.05 real ones
    assert time.monotonic() - real < 1.0
    assert clock.monotonic() - began >= 5.0


def test_counting_governor_logs_each_grant_on_its_clock() -> None:
    clock = ScaledClock(1000.0)
    governor = CountingGovernor("growth", 0.5, clock=clock)

    async def twelve_mutations() -> None:
        for _ in range(12):
            await governor.acquire(mutation=True)

    asyncio.run(twelve_mutations())
    times = governor.mutation_times
    assert len(times) == 12 and len(governor.request_times) == 12
    assert max_in_window(times, 10.0) == 10
    assert times[10] - times[0] >= 10.0 - 1e-6  # the 11th waited for the first to leave


# ------------------------------------------------------------------------------ smoke runs


def test_budget_bench_drains_a_small_backlog_within_the_budget() -> None:
    report = sync_budget.run(returns=20, runs=1, seed=3, speed=100.0, plan="growth", share=0.5)
    (sample,) = report["samples"]
    assert sample["owed_at_end"] == 0
    assert sample["rate_limited"] == 0
    assert sample["metered_mutations"] == sample["graphql_mutations"] > 0
    assert sample["max_mutations_10s"] <= sample["cap_10s"] == 10
    assert sample["mutations"] == sample["effects"] == sample["ledger_done"]["total"]
    assert 0 < sample["rate_vs_allowed"] <= 1.0
    section = sync_budget.docs_section(report, "cmd")
    assert "rate vs allowed" in section and "cmd" in section


def test_economy_bench_compares_sync_and_naive_on_the_same_effects() -> None:
    report = sync_economy.run(returns=15, runs=1, seed=3)
    assert report["same_effects"]
    sync, naive = report["results"]["sync"], report["results"]["naive"]
    assert sync["effects"] > 0
    assert sync["mutations"] == sync["effects"] == naive["mutations"]
    assert naive["reads"] > sync["reads"]
    assert "naive" in sync_economy.table(report)
    assert "One write per effect in every run: yes" in sync_economy.verdict(report)


def test_latency_bench_times_webhooks_to_effects(tmp_path: Path) -> None:
    scenario = sync_latency.bench_scenario(12, 3)
    sample = sync_latency.run_once(scenario, rate=20.0, debounce=0.05, ledger_dir=tmp_path)
    assert sample["accepted"] > 0
    assert sample["writes_before"] == 0  # nothing accepted before the measurement
    assert sample["measured"] > 0 and sample["owed_at_end"] == 0
    first, every = sample["first_effect"], sample["all_effects"]
    assert 0 < first["p50"] <= first["p95"] <= first["max"]
    assert every["p50"] >= first["p50"]


@pytest.mark.parametrize("module", ["sync_budget", "sync_economy", "sync_latency"])
def test_help_runs(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    main = {"sync_budget": sync_budget, "sync_economy": sync_economy, "sync_latency": sync_latency}
    monkeypatch.setattr(sys, "argv", [f"bench.{module}", "--help"])
    with pytest.raises(SystemExit) as stopped:
        main[module].main()
    assert stopped.value.code == 0
