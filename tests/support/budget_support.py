"""Clocks and process workers for the tests of the budget kept in the ledger
(`returnbridge/ledger/budget_windows.py`, `returnbridge/sync/ledger_budget.py`): a module of its
own so that a spawned process can import the workers."""

from __future__ import annotations

import asyncio
import bisect
import traceback
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from returnbridge.ledger import Ledger
from returnbridge.ledger import schema as ledger_schema
from returnbridge.ledger.budget_windows import Blocked, BudgetWindows, Draw, Taken, Window

# A request bucket and a mutation bucket with small windows, so that a race fills them quickly.
REQUESTS = "test-requests"
MUTATIONS = "test-mutations"
REQUEST_WINDOWS = (Window(12, 10.0), Window(100, 3600.0))
MUTATION_WINDOWS = (Window(5, 10.0), Window(100, 3600.0))


def request_draws(units: int = 1) -> list[Draw]:
    return [Draw(REQUESTS, REQUEST_WINDOWS, units)]


def mutation_draws(units: int = 1) -> list[Draw]:
    """A mutation draws from both buckets (it is a request too)."""
    return [Draw(REQUESTS, REQUEST_WINDOWS, units), Draw(MUTATIONS, MUTATION_WINDOWS, units)]


class ManualClock:
    """A `MonotonicClock` that moves only when told to, or by the time slept on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FrozenClock:
    """A `MonotonicClock` that never moves (a race at one instant: windows never drain)."""

    def __init__(self, at: float) -> None:
        self.at = at

    def monotonic(self) -> float:
        return self.at

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("a frozen clock cannot wait")


def rows(ledger: Ledger) -> list[tuple[str, float, int]]:
    """Every `budget_calls` row as (bucket, at, units), oldest first."""
    t = ledger_schema.budget_calls
    with ledger._engine.connect() as conn:
        found = conn.execute(sa.select(t.c.bucket, t.c.at, t.c.units).order_by(t.c.at, t.c.id))
        return [(bucket, float(at), int(units)) for bucket, at, units in found]


def units_by_bucket(ledger: Ledger) -> dict[str, int]:
    totals: dict[str, int] = {}
    for bucket, _at, units in rows(ledger):
        totals[bucket] = totals.get(bucket, 0) + units
    return totals


def most_in_window(times: Sequence[float], seconds: float) -> int:
    """Most grants in any window of `seconds` (a grant counts until `at + seconds`)."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + seconds) - i for i, t in enumerate(ordered)), default=0
    )


def frozen_race_worker(url: str, at: float, tries: int, start: Any, results: Any) -> None:
    """One process of a race at one frozen instant: `tries` draws, alternately a mutation and a
    request, each from a fresh try. Reports ("ok", mutations taken, requests taken) or
    ("error", traceback)."""
    try:
        with Ledger(url) as ledger:
            windows = BudgetWindows.of_ledger(ledger, clock=FrozenClock(at))
            start.wait(timeout=60)
            taken = {"mutation": 0, "request": 0}
            for i in range(tries):
                kind = "mutation" if i % 2 == 0 else "request"
                draws = mutation_draws() if kind == "mutation" else request_draws()
                decision = windows.try_take(draws)
                if isinstance(decision, Taken):
                    taken[kind] += 1
                else:
                    assert isinstance(decision, Blocked)
        results.put(("ok", taken["mutation"], taken["request"]))
    except BaseException:
        results.put(("error", traceback.format_exc(), 0))


def clocked_race_worker(
    url: str, windows_spec: Sequence[tuple[int, float]], grants: int, start: Any, results: Any
) -> None:
    """One process of a race on the database's own clock: `grants` waits for one unit of a
    bucket with `windows_spec` windows. Reports ("ok", [the grants' times]) or ("error", tb)."""
    try:
        draw = Draw("race", tuple(Window(c, s) for c, s in windows_spec), 1)
        with Ledger(url) as ledger:
            windows = BudgetWindows.of_ledger(ledger)
            start.wait(timeout=60)

            async def take_all() -> list[float]:
                times = []
                for _ in range(grants):
                    at = await windows.acquire([draw])
                    assert at is not None
                    times.append(at)
                return times

            results.put(("ok", asyncio.run(take_all())))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def gate_race_worker(url: str, at: float, start: Any, results: Any) -> None:
    """One process of a race between `LedgerBudgetGate`s at one frozen instant: mutations until
    the gate times out at once. Reports ("ok", mutations acquired) or ("error", tb)."""
    from returnbridge.sync.ledger_budget import LedgerBudgetGate

    try:
        with Ledger(url) as ledger:
            gate = LedgerBudgetGate(
                ledger, plan="growth", share=0.5, clock=FrozenClock(at), timeout_seconds=0
            )
            start.wait(timeout=60)

            async def until_full() -> int:
                for _ in range(100):
                    try:
                        await gate.acquire("mutation")
                    except TimeoutError:
                        break
                return gate.acquired["mutation"]

            results.put(("ok", asyncio.run(until_full())))
    except BaseException:
        results.put(("error", traceback.format_exc()))
