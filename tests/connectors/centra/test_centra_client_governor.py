"""The governor keeps us inside our share of Centra's limits, on a fake clock (no real sleeps)."""

from __future__ import annotations

import asyncio
import bisect
import random

import pytest
from centra_fakes import FakeClock

from returnbridge.connectors.centra.governor import Governor
from returnbridge.connectors.centra.plans import Plan, Quota


def max_in_any_window(times: list[float], length: float) -> int:
    """The most grants inside any half-open window [t, t + length)."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + length) - i for i, t in enumerate(ordered)), default=0
    )


TINY = Plan("tiny", requests=Quota(10, 30), mutations=Quota(4, 8), complexity=None)
HEAVY = Plan("heavy", requests=Quota(100, 1000), mutations=None, complexity=Quota(1000, 5000))
WIDE = Plan("wide", requests=Quota(100, 10**6), mutations=None, complexity=Quota(1000, 10**6))


def max_weighted_in_any_window(grants: list[tuple[float, int]], length: float) -> int:
    """The largest sum of costs granted inside any half-open window [t, t + length)."""
    return max((sum(c for u, c in grants if t <= u < t + length) for t, _ in grants), default=0)


async def test_sequential_reads_never_exceed_share_in_any_window() -> None:
    clock = FakeClock()
    governor = Governor("growth", 0.5, clock=clock)  # 30 per 10 s, 2,500 per hour
    times = []
    for _ in range(400):
        await governor.acquire()
        times.append(clock.now)
    assert max_in_any_window(times, 10) == 30
    # 400 requests at 30 per 10 s need at least 13 full windows after the first burst.
    assert clock.now >= 130


async def test_concurrent_callers_share_one_budget_across_both_windows() -> None:
    clock = FakeClock()
    governor = Governor(TINY, 1.0, clock=clock)
    rng = random.Random(7)
    grants: list[tuple[float, bool]] = []

    async def caller(mutation: bool) -> None:
        await governor.acquire(mutation=mutation)
        grants.append((clock.now, mutation))

    await asyncio.gather(*(caller(rng.random() < 0.4) for _ in range(120)))
    requests = [t for t, _ in grants]
    mutations = [t for t, m in grants if m]
    assert len(requests) == 120
    assert max_in_any_window(requests, 10) <= 10
    assert max_in_any_window(requests, 3600) <= 30
    assert max_in_any_window(mutations, 10) <= 4
    assert max_in_any_window(mutations, 3600) <= 8
    assert governor.granted_requests == 120
    assert governor.granted_mutations == len(mutations)


async def test_share_scales_capacity_and_rounds_down() -> None:
    governor = Governor("growth", 0.25, clock=FakeClock())
    budget = governor.budget
    assert (budget.requests_10s, budget.requests_1h) == (15, 1250)
    assert (budget.mutations_10s, budget.mutations_1h) == (5, 450)
    assert (budget.complexity_10s, budget.complexity_1h) == (62_500, 7_500_000)


async def test_retry_after_pauses_every_caller() -> None:
    clock = FakeClock()
    governor = Governor("enterprise", 0.5, clock=clock)
    await governor.acquire()
    governor.pause(30)
    grants: list[float] = []

    async def caller() -> None:
        await governor.acquire()
        grants.append(clock.now)

    await asyncio.gather(*(caller() for _ in range(5)))
    assert len(grants) == 5 and min(grants) >= 30


async def test_a_shorter_pause_does_not_shorten_a_longer_one() -> None:
    clock = FakeClock()
    governor = Governor("growth", 0.5, clock=clock)
    governor.pause(20)
    governor.pause(5)
    await governor.acquire()
    assert clock.now >= 20


async def test_unlimited_plan_never_waits() -> None:
    clock = FakeClock()
    governor = Governor("unlimited", 1.0, clock=clock)
    for i in range(5000):
        await governor.acquire(mutation=i % 2 == 0)
    assert clock.now == 0.0
    assert governor.budget.requests_10s is None


async def test_unlimited_plan_still_honours_retry_after() -> None:
    clock = FakeClock()
    governor = Governor("unlimited", 1.0, clock=clock)
    governor.pause(3)
    await governor.acquire()
    assert clock.now >= 3


def test_shared_governor_is_one_per_environment_plan_and_share() -> None:
    first = Governor.shared("http://centra.test/", "growth", 0.5)
    assert Governor.shared("http://centra.test", "growth", 0.5) is first
    assert Governor.shared("http://centra.test", "growth", 0.4) is not first
    assert Governor.shared("http://other.test", "growth", 0.5) is not first


def test_share_must_be_a_fraction() -> None:
    import pytest

    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            Governor("growth", bad)


async def test_complexity_is_budgeted_by_cost_in_both_windows() -> None:
    clock = FakeClock()
    governor = Governor(HEAVY, 1.0, clock=clock)
    rng = random.Random(11)
    grants: list[tuple[float, int]] = []

    async def caller(cost: int) -> None:
        await governor.acquire(complexity=cost)
        grants.append((clock.now, cost))

    await asyncio.gather(*(caller(rng.randint(50, 400)) for _ in range(60)))
    assert len(grants) == 60
    assert max_weighted_in_any_window(grants, 10) <= 1000
    assert max_weighted_in_any_window(grants, 3600) <= 5000 or clock.now > 3600


async def test_a_request_costing_more_than_the_window_waits_for_an_empty_window() -> None:
    clock = FakeClock()
    governor = Governor(HEAVY, 1.0, clock=clock)
    await governor.acquire(complexity=300)
    await governor.acquire(complexity=1500)  # can never fit: admitted once the window is empty
    assert clock.now >= 10
    start = clock.now
    await governor.acquire(complexity=1)
    assert clock.now >= start + 10  # and it holds the window as long as it is in it


async def test_charging_reported_complexity_delays_later_callers() -> None:
    clock = FakeClock()
    governor = Governor(HEAVY, 1.0, clock=clock)
    await governor.acquire(complexity=100)
    governor.charge(850)  # Centra reported 950 for a request we estimated at 100
    await governor.acquire(complexity=100)
    assert clock.now >= 10
    assert governor.granted_complexity == 1050


async def test_a_large_request_is_not_starved_by_a_stream_of_small_ones() -> None:
    clock = FakeClock()
    governor = Governor(WIDE, 1.0, clock=clock)  # 1,000 complexity per 10 s
    big_granted: list[float] = []

    async def small_stream() -> None:
        for _ in range(40):
            await governor.acquire(complexity=150)

    async def big() -> None:
        await asyncio.sleep(0)  # arrives after the stream has started
        await governor.acquire(complexity=900)
        big_granted.append(clock.now)

    await asyncio.gather(*(small_stream() for _ in range(6)), big())
    # The stream alone needs 240 s; first come, first served admits the big one within two
    # windows instead of after the stream has dried up.
    assert clock.now >= 200
    assert big_granted and big_granted[0] <= 40


async def test_a_cancelled_waiter_takes_nothing_and_leaves_the_queue() -> None:
    clock = FakeClock()
    governor = Governor(TINY, 1.0, clock=clock)  # 10 requests per 10 s
    for _ in range(10):
        await governor.acquire()
    waiter = asyncio.create_task(governor.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert governor.granted_requests == 10
    await governor.acquire()  # not stuck behind the cancelled caller
    assert governor.granted_requests == 11
    assert 10 <= clock.now < 11


async def test_reads_do_not_queue_behind_a_mutation_waiting_for_the_hourly_quota() -> None:
    clock = FakeClock()
    governor = Governor(
        Plan("m", requests=Quota(10, 1000), mutations=Quota(4, 4), complexity=None),
        1.0,
        clock=clock,
    )
    for _ in range(4):
        await governor.acquire(mutation=True)
    mutation = asyncio.create_task(governor.acquire(mutation=True))  # needs the next hour
    await asyncio.sleep(0)
    await governor.acquire()
    assert clock.now < 10 and not mutation.done()
    await mutation
    assert clock.now >= 3600
