"""Centra's budget kept in the ledger (`returnbridge/ledger/budget_windows.py`): exact sliding
windows at both boundaries, draws on two buckets taken whole, pruning, a clock that steps back,
and races between threads with engines of their own and between processes, on a SQLite file
and on PostgreSQL (the `ledger_url` fixture)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
from budget_support import (
    MUTATIONS,
    REQUESTS,
    FrozenClock,
    ManualClock,
    clocked_race_worker,
    frozen_race_worker,
    most_in_window,
    mutation_draws,
    request_draws,
    rows,
    units_by_bucket,
)

from returnbridge.ledger import Ledger
from returnbridge.ledger import budget_windows as budget_module
from returnbridge.ledger.budget_windows import Blocked, BudgetWindows, Draw, Taken, Window

# Growth at a 50 % share: 10 mutations per 10 s, 900 per hour; the hourly cap is made small
# where a test needs to reach it.
TEN = Window(10, 10.0)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger(ledger_url) as opened:
        yield opened


def take(windows: BudgetWindows, draws: list[Draw], count: int) -> None:
    for i in range(count):
        decision = windows.try_take(draws)
        assert isinstance(decision, Taken), f"draw {i + 1} of {count}: {decision}"


def blocked(windows: BudgetWindows, draws: list[Draw]) -> Blocked:
    decision = windows.try_take(draws)
    assert isinstance(decision, Blocked), decision
    return decision


# --------------------------------------------------------------------------- exact windows


def test_the_ten_second_window_frees_a_slot_exactly_when_its_grant_leaves(ledger: Ledger) -> None:
    clock = ManualClock(1000.0)
    windows = BudgetWindows.of_ledger(ledger, clock=clock)
    draws = [Draw("b", (TEN, Window(900, 3600.0)))]
    take(windows, draws, 4)
    clock.now = 1003.0
    take(windows, draws, 6)  # the full burst of 10 within one window, unlike a token bucket
    full = blocked(windows, draws)
    assert (full.bucket, full.window, full.used, full.wait) == ("b", TEN, 10, 7.0)
    clock.now = 1009.999
    assert blocked(windows, draws).wait == pytest.approx(0.001, abs=1e-6)
    clock.now = 1010.0  # the four grants of t=1000 leave now, not a moment later
    take(windows, draws, 4)
    assert blocked(windows, draws).wait == pytest.approx(3.0)  # then those of t=1003


def test_the_hour_window_frees_slots_exactly_an_hour_after_their_grants(ledger: Ledger) -> None:
    clock = ManualClock(1000.0)
    windows = BudgetWindows.of_ledger(ledger, clock=clock)
    hour = Window(20, 3600.0)
    draws = [Draw("b", (TEN, hour))]
    take(windows, draws, 10)
    clock.now = 1010.0
    take(windows, draws, 10)
    clock.now = 1020.0  # the 10 s window is empty, the hour is full
    full = blocked(windows, draws)
    assert (full.window, full.used, full.wait) == (hour, 20, 3580.0)
    clock.now = 4599.999
    assert blocked(windows, draws).wait == pytest.approx(0.001, abs=1e-6)
    clock.now = 4600.0  # the grants of t=1000 leave the hour
    take(windows, draws, 10)
    again = blocked(windows, draws)  # both windows full again, both free at 4610
    assert again.wait == pytest.approx(10.0)
    clock.now = 4610.0
    take(windows, draws, 10)


def test_a_draw_of_several_units_waits_until_enough_have_left(ledger: Ledger) -> None:
    clock = ManualClock(1000.0)
    windows = BudgetWindows.of_ledger(ledger, clock=clock)
    take(windows, [Draw("b", (TEN,), 5)], 1)
    clock.now = 1002.0
    take(windows, [Draw("b", (TEN,), 4)], 1)
    clock.now = 1004.0
    # 9 of 10 used: 3 more need 2 to leave, that is the 5 granted at t=1000.
    assert blocked(windows, [Draw("b", (TEN,), 3)]).wait == pytest.approx(6.0)
    take(windows, [Draw("b", (TEN,), 1)], 1)
    with pytest.raises(ValueError, match=r"11 calls can never fit budget bucket 'b'"):
        Draw("b", (TEN,), 11)


async def test_acquire_sleeps_on_the_clock_until_the_draw_fits(ledger: Ledger) -> None:
    clock = ManualClock(1000.0)
    windows = BudgetWindows.of_ledger(ledger, clock=clock)
    draws = [Draw("b", (TEN, Window(900, 3600.0)))]
    granted = [await windows.acquire(draws) for _ in range(25)]
    assert granted == [1000.0] * 10 + [1010.0] * 10 + [1020.0] * 5
    assert clock.slept == [10.0, 10.0]


async def test_acquire_times_out_naming_the_full_bucket(ledger: Ledger) -> None:
    clock = ManualClock(1000.0)
    windows = BudgetWindows.of_ledger(ledger, clock=clock)
    draws = [Draw("centra-mutations:x", (TEN,))]
    await windows.acquire([Draw("centra-mutations:x", (TEN,), 10)])
    clock.now = 1004.0
    with pytest.raises(TimeoutError, match=r"'centra-mutations:x'.*10-second window holds 10"):
        await windows.acquire(draws, timeout_seconds=5.9)
    assert clock.slept == []  # known at once: room comes only in 6 s
    assert await windows.acquire(draws, timeout_seconds=6.0) == 1010.0


# --------------------------------------------------------------------------- two buckets


def test_a_mutation_is_taken_from_both_buckets_or_from_neither(ledger: Ledger) -> None:
    clock = ManualClock(1000.0)
    windows = BudgetWindows.of_ledger(ledger, clock=clock)
    take(windows, request_draws(), 12)  # the request bucket is full, the mutation bucket empty
    refused = blocked(windows, mutation_draws())
    assert (refused.bucket, refused.used) == (REQUESTS, 12)
    assert units_by_bucket(ledger) == {REQUESTS: 12}  # nothing taken from the mutation bucket
    clock.now = 1010.0
    take(windows, mutation_draws(), 5)
    assert units_by_bucket(ledger) == {REQUESTS: 17, MUTATIONS: 5}
    # Now the mutation bucket is full: a mutation takes no request slot either.
    assert blocked(windows, mutation_draws()).bucket == MUTATIONS
    take(windows, request_draws(), 7)
    assert units_by_bucket(ledger) == {REQUESTS: 24, MUTATIONS: 5}


def test_a_bucket_drawn_twice_adds_up_and_must_agree_on_its_windows() -> None:
    windows = BudgetWindows.__new__(BudgetWindows)  # no database: the draws are refused first
    with pytest.raises(ValueError, match="two sets of windows"):
        windows.try_take([Draw("b", (TEN,)), Draw("b", (Window(5, 10.0),))])
    with pytest.raises(ValueError, match="6 calls can never fit"):
        windows.try_take([Draw("b", (Window(5, 10.0),), 3), Draw("b", (Window(5, 10.0),), 3)])


# --------------------------------------------------------------------------- rows and clocks


def test_rows_older_than_the_longest_window_are_pruned(ledger: Ledger) -> None:
    clock = ManualClock(1000.0)
    windows = BudgetWindows.of_ledger(ledger, clock=clock)
    draws = [Draw("b", (TEN, Window(900, 3600.0)))]
    take(windows, draws, 3)
    clock.now = 2000.0
    take(windows, draws, 1)
    clock.now = 4599.0  # the rows of t=1000 are still inside the hour
    take(windows, draws, 1)
    assert [at for _b, at, _u in rows(ledger)] == [1000.0] * 3 + [2000.0, 4599.0]
    clock.now = 4600.0  # ... and now they have left it
    take(windows, draws, 1)
    assert [at for _b, at, _u in rows(ledger)] == [2000.0, 4599.0, 4600.0]
    assert windows.used("b", 3600.0) == 3


def test_a_clock_that_steps_back_never_frees_a_slot_early(ledger: Ledger) -> None:
    clock = ManualClock(1000.0)
    windows = BudgetWindows.of_ledger(ledger, clock=clock)
    draws = [Draw("b", (TEN,))]
    take(windows, draws, 10)
    clock.now = 900.0  # the wall clock stepped back 100 s: the grants are "in the future"
    full = blocked(windows, draws)
    assert full.wait == pytest.approx(10.0)  # they count as granted now, for a whole window
    assert [at for _b, at, _u in rows(ledger)] == [900.0] * 10
    clock.now = 910.0
    take(windows, draws, 10)


def test_nothing_limited_needs_no_database() -> None:
    windows = BudgetWindows.__new__(BudgetWindows)  # no engine at all
    assert windows.try_take([Draw("b", ()), Draw("c", (TEN,), 0)]) == Taken(None)


def test_without_a_clock_the_windows_run_on_the_database_clock(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL's own clock (processes on several machines agree on it); on SQLite, one
    machine's, the machine's clock."""
    monkeypatch.setattr(budget_module, "_machine_time", lambda: 5000.0)
    windows = BudgetWindows.of_ledger(ledger)
    decision = windows.try_take([Draw("b", (TEN,))])
    assert isinstance(decision, Taken) and decision.at is not None
    if ledger.dialect == "sqlite":
        assert decision.at == 5000.0
    else:
        assert decision.at > 1.7e9  # the server's Unix time, not the machine's (patched) clock


# --------------------------------------------------------------------------- races


def test_threads_with_engines_of_their_own_never_take_more_than_the_windows(
    ledger_url: str,
) -> None:
    """Eight workers, each with its own engine (as separate processes have), draw at one frozen
    instant, mutations and requests mixed: the request bucket fills exactly, no more."""
    workers = 8
    with ExitStack() as stack:
        ledgers = [stack.enter_context(Ledger(ledger_url)) for _ in range(workers)]
        barrier = threading.Barrier(workers)

        def race(ledger: Ledger) -> dict[str, int]:
            windows = BudgetWindows.of_ledger(ledger, clock=FrozenClock(1000.0))
            taken = {"mutation": 0, "request": 0}
            barrier.wait(timeout=30)
            for i in range(10):
                kind = "mutation" if i % 2 == 0 else "request"
                draws = mutation_draws() if kind == "mutation" else request_draws()
                if isinstance(windows.try_take(draws), Taken):
                    taken[kind] += 1
            return taken

        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(race, ledgers))
        mutations = sum(r["mutation"] for r in results)
        requests = sum(r["request"] for r in results)
        assert mutations + requests == 12  # the request bucket's 10 s window, exactly
        assert 1 <= mutations <= 5
        assert units_by_bucket(ledgers[0]) == {REQUESTS: 12, MUTATIONS: mutations}


def test_processes_racing_at_one_instant_take_exactly_the_windows(ledger_url: str) -> None:
    processes, tries = 4, 20
    with Ledger(ledger_url):
        pass  # created and migrated before the race
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=frozen_race_worker, args=(ledger_url, 1000.0, tries, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    errors = [r[1] for r in reports if r[0] != "ok"]
    assert not errors, errors[0]
    mutations = sum(r[1] for r in reports)
    requests = sum(r[2] for r in reports)
    assert mutations + requests == 12 and 1 <= mutations <= 5
    with Ledger(ledger_url) as ledger:
        assert units_by_bucket(ledger) == {REQUESTS: 12, MUTATIONS: mutations}


def test_processes_on_the_database_clock_stay_inside_both_windows(ledger_url: str) -> None:
    """Real time, real waits: four processes take 8 grants each from a bucket of 3 per 0.2 s
    and 10 per second; the grants' own stamps never crowd either window."""
    processes, grants = 4, 8
    spec = [(3, 0.2), (10, 1.0)]
    with Ledger(ledger_url):
        pass
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=clocked_race_worker, args=(ledger_url, spec, grants, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    errors = [r[1] for r in reports if r[0] != "ok"]
    assert not errors, errors[0]
    times = [t for report in reports for t in report[1]]
    assert len(times) == processes * grants
    for capacity, seconds in spec:
        assert most_in_window(times, seconds) <= capacity, (capacity, seconds)
