"""What the sync benchmarks share (`bench.sync_budget`, `bench.sync_economy`, `bench.sync_latency`).

The simulators run in this process (uvicorn in threads) over loopback HTTP, as in the demo; the
sync is returnbridge's own `ReturnSync` (planner, executor, ledger on a SQLite file), wired as
`returnbridge.sync.runtime.open_sync` wires it, except that the Centra client can be given its own
`Governor` (a scaled clock, a counting subclass) and batch size.

Time scaling (`ScaledClock`): Centra's limits are windows of 10 s and one hour. The client's
`Governor` takes a clock (`monotonic`, `sleep`) and the simulator's `RateLimiter` a time source,
so both can run on one accelerated clock: the simulator meters the same sliding windows the
governor budgets, `speed` times faster than real time. Everything else (HTTP, the ledger, the
planner, CPU time) runs at real speed, so every real second of work counts `speed` simulated
seconds: a benchmark on a scaled clock measures rates relative to the allowed rate
conservatively, as long as the machine keeps up with `speed` x the allowed rate.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import hashlib
import json
import math
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from returnbridge.clock import Now, utc_now
from returnbridge.connectors.centra import Governor
from returnbridge.connectors.centra.plans import Plan
from returnbridge.demo import CENTRA_SECRET, CENTRA_TOKEN, REVENI_KEY, demo_settings, scenario_clock
from returnbridge.ledger import Ledger
from returnbridge.scenario import Scenario
from returnbridge.scenarios.generate import generate_scenario
from returnbridge.settings import Settings
from returnbridge.simulators.centra.app import create_app as create_centra_app
from returnbridge.simulators.reveni.app import create_app as create_reveni_app
from returnbridge.simulators.server import serve_in_thread
from returnbridge.sync.run import ReturnSync
from returnbridge.sync.runtime import open_sync

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"


# ---------------------------------------------------------------------------------- machine


def provenance() -> dict[str, Any]:
    """The git commit measured and whether the working tree had changes on top of it."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--short"))}


def scenario_digest(scenario: Scenario) -> dict[str, Any]:
    """What the benchmark ran on: returns, orders, and a digest of the whole scenario."""
    body = scenario.model_dump_json().encode()
    return {
        "returns": len(scenario.reveni.returns),
        "orders": len(scenario.centra.orders),
        "sha256": hashlib.sha256(body).hexdigest()[:16],
    }


def machine_line(m: dict[str, Any]) -> str:
    return f"{m['cores']} cores, {m['cpu']}, Python {m['python']} ({m['platform']})"


# ---------------------------------------------------------------------------------- clocks


class ScaledClock:
    """A monotonic clock running `speed` times faster than real time (the governor's `Clock`).

    `monotonic()` is in simulated seconds since the clock was made; `sleep(s)` sleeps `s`
    simulated seconds, that is `s / speed` real ones. Safe from any thread."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._origin = time.monotonic()

    def monotonic(self) -> float:
        return (time.monotonic() - self._origin) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class _LastRead:
    """Wraps a clock and remembers the last time read from it."""

    def __init__(self, clock: ScaledClock) -> None:
        self.clock = clock
        self.last = 0.0

    def monotonic(self) -> float:
        self.last = self.clock.monotonic()
        return self.last

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)


class CountingGovernor(Governor):
    """A `Governor` that logs the moment (on its clock) of every grant: `grants` holds
    `(time, mutation, complexity)` per request let through."""

    def __init__(self, plan: Plan | str, share: float, *, clock: ScaledClock) -> None:
        self._reads = _LastRead(clock)
        super().__init__(plan, share, clock=self._reads)
        self.grants: list[tuple[float, bool, int]] = []

    def _try_take(self, ticket: object, mutation: bool, complexity: int) -> float:
        # The grant's own instant: the clock reading `Governor._try_take` decided on (it reads
        # the clock once, under its lock, on the event loop's thread).
        wait = super()._try_take(ticket, mutation, complexity)
        if wait <= 0:
            self.grants.append((self._reads.last, mutation, complexity))
        return wait

    @property
    def request_times(self) -> list[float]:
        return [t for t, _, _ in self.grants]

    @property
    def mutation_times(self) -> list[float]:
        return [t for t, mutation, _ in self.grants if mutation]


# ---------------------------------------------------------------------------------- scenario


def bench_scenario(returns: int, seed: int) -> Scenario:
    """`returns` generated returns in the realistic mix (`returnbridge.scenarios.generate`)."""
    return generate_scenario(returns, seed=seed)


@dataclass(frozen=True)
class Servers:
    centra_url: str
    reveni_url: str
    centra_app: Any
    reveni_app: Any


@contextmanager
def simulators(
    scenario: Scenario, *, plan: str, clock: ScaledClock | None = None
) -> Iterator[Servers]:
    """The Centra simulator (enforcing `plan`, metered on `clock` when given) and the Reveni
    simulator, loaded from `scenario`, served on loopback ports in threads."""
    centra_app = create_centra_app(
        scenario, token=CENTRA_TOKEN, order_api_secret=CENTRA_SECRET, plan=plan
    )
    if clock is not None:
        limiter = centra_app.state.sim.limiter
        limiter.time_source = clock.monotonic
        limiter.set_plan(limiter.plan)  # buckets start full, on the scaled clock
    reveni_app = create_reveni_app(scenario, api_key=REVENI_KEY)
    with serve_in_thread(centra_app) as centra, serve_in_thread(reveni_app) as reveni:
        yield Servers(centra.url, reveni.url, centra_app, reveni_app)


def walk_all(reveni_url: str) -> int:
    """Walk every scenario return through its whole status history; the steps made."""
    with httpx.Client(base_url=reveni_url, timeout=120) as control:
        steps: int = control.post("/_sim/walk").raise_for_status().json()["steps"]
    return steps


def bench_settings(
    scenario: Scenario,
    servers: Servers,
    ledger_url: str,
    *,
    plan: str,
    share: float = 0.5,
) -> Settings:
    """returnbridge's settings pointing at the simulators (the demo's), at `plan` and `share`."""
    settings = demo_settings(scenario, servers.centra_url, servers.reveni_url, ledger_url)
    centra = settings.centra.model_copy(update={"plan": plan, "budget_share": share})
    return settings.model_copy(update={"centra": centra})


def bench_clock(scenario: Scenario) -> Now:
    """The sync's and ledger's clock: the scenario's `now`, moving with real time (as in the
    demo), so that the planner judges the scenario's dates as of the scenario."""
    return scenario_clock(scenario)


def open_bench_sync(
    settings: Settings,
    ledger: Ledger,
    *,
    governor: Governor | None = None,
    orders_per_query: int | None = None,
    clock: Now | None = None,
) -> AbstractAsyncContextManager[ReturnSync]:
    """`runtime.open_sync` with a governor of its own for each run (open_sync's default, the
    process-wide one, would carry one run's spending into the next) unless one is given."""
    return open_sync(
        settings,
        ledger=ledger,
        clock=clock or utc_now,
        governor=governor or Governor(settings.centra.plan, settings.centra.budget_share),
        orders_per_query=orders_per_query,
    )


def owed(ledger: Ledger) -> int:
    """Actions the sync still owes (pending, in flight or in doubt)."""
    counts = ledger.counts()
    return sum(counts.get(state, 0) for state in ("pending", "in_flight", "in_doubt"))


# ---------------------------------------------------------------------------------- ground truth


def centra_counters(centra_url: str) -> dict[str, Any]:
    with httpx.Client(base_url=centra_url, timeout=30) as control:
        counters: dict[str, Any] = control.get("/_sim/counters").raise_for_status().json()
    return counters


def centra_effects(centra_url: str) -> dict[str, Any]:
    with httpx.Client(base_url=centra_url, timeout=60) as control:
        effects: dict[str, Any] = control.get("/_sim/effects").raise_for_status().json()
    return effects


def effect_counts(effects: dict[str, Any]) -> dict[str, int]:
    """Centra effects by kind, from the simulator's ground truth: returns created, stock
    changes (one per description: a change has a line per SKU), returns completed (the refund
    or credit call completes the return), orders created."""
    counts = {
        "create_return": len(effects["returns"]),
        "restock": len({c["description"] for c in effects["stock_changes"]}),
        "refund": sum(1 for r in effects["returns"] if r["completed"]),
        "exchange_order": len(effects["orders_created"]),
    }
    counts["total"] = sum(counts.values())
    return counts


def done_by_kind(ledger: Ledger) -> dict[str, int]:
    """Ledger actions done, by kind, with the total."""
    kinds = Counter(a.kind for a in ledger.actions(states=["done"]))
    counts = {kind: kinds.get(kind, 0) for kind in effect_kinds()}
    counts["total"] = sum(counts.values())
    return counts


def effect_kinds() -> tuple[str, ...]:
    return ("create_return", "restock", "refund", "exchange_order")


def economy_figures(counters: dict[str, Any], returns: int, effects: int) -> dict[str, Any]:
    """Requests per return (all, reads only) and mutations per effect, from Centra's counters.

    `reads` = Centra API requests that are not mutations (GraphQL queries and Order API reads);
    `requests` = every Centra API request, mutations included; both per return of the backlog.
    """
    requests = int(counters["requests"])
    mutations = int(counters["mutations"])
    reads = requests - mutations
    return {
        "requests": requests,
        "reads": reads,
        "mutations": mutations,
        "rate_limited": int(counters["rate_limited"]),
        "effects": effects,
        "requests_per_return": round(requests / returns, 3) if returns else None,
        "reads_per_return": round(reads / returns, 3) if returns else None,
        "mutations_per_return": round(mutations / returns, 3) if returns else None,
        "mutations_per_effect": round(mutations / effects, 4) if effects else None,
        "by_operation": counters.get("by_operation", {}),
    }


# ---------------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], p: float) -> float:
    """The `p`-th percentile (0-100) with linear interpolation between ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median_of(samples: Sequence[dict[str, Any]], key: str) -> Any:
    values = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(values) if values else None


def max_in_window(times: Sequence[float], length: float) -> int:
    """Most events in any window `[t, t + length)` (a grant leaves the governor's window
    `length` seconds after it was made, to within 1e-9 s)."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + length - 1e-6) - i)
    return best


def greedy_schedule(
    windows: Sequence[tuple[int, float]], *, duration: float = math.inf, count: int | None = None
) -> list[float]:
    """Grant times of the fastest client under sliding-window caps `(capacity, length)`,
    starting with empty windows: it takes every call as soon as every window has room, and no
    schedule makes more calls by any time. Up to `duration` seconds or `count` grants."""
    if not windows:
        raise ValueError("no windows: nothing limits the rate")
    grants: list[float] = []
    t = 0.0
    while t <= duration + 1e-9 and (count is None or len(grants) < count):
        room = min(cap - _inside(grants, t, length) for cap, length in windows)
        if count is not None:
            room = min(room, count - len(grants))
        grants.extend([t] * max(0, room))
        # the next moment a full window frees a slot: its oldest grant leaves it
        leaves = [
            grants[bisect.bisect_right(grants, t - length)] + length
            for cap, length in windows
            if _inside(grants, t, length) >= cap
        ]
        if not leaves:
            break  # `count` reached
        t = min(leaves)
    return [g for g in grants if g <= duration + 1e-9]


def _inside(grants: list[float], t: float, length: float) -> int:
    """Grants still inside the window `(t - length, t]` (a grant leaves after `length`)."""
    return len(grants) - bisect.bisect_right(grants, t - length)


def allowed_grants(duration: float, windows: Sequence[tuple[int, float]]) -> int:
    """The most calls a client may make in `[0, duration]` under the sliding-window caps."""
    return len(greedy_schedule(windows, duration=duration))


def ideal_seconds(calls: int, windows: Sequence[tuple[int, float]]) -> float:
    """When the fastest client makes its `calls`-th call (0 for none)."""
    return greedy_schedule(windows, count=calls)[-1] if calls else 0.0


# ---------------------------------------------------------------------------------- output


def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring's first line as description, the rest as help
    epilog."""
    lines = (doc or "").splitlines()
    return argparse.ArgumentParser(
        description=lines[0] if lines else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(lines[2:]) or None,
    )


def write_results(name: str, report: dict[str, Any]) -> Path:
    """`bench/results/<name>-<UTC time>.json` (gitignored)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = report["when"].replace(":", "").replace("+0000", "Z")
    out = RESULTS / f"{name}-{stamp}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return out


def append_docs(section: str) -> Path:
    if not DOCS.exists():
        DOCS.write_text(
            "# Benchmarks\n\nMeasured figures, newest last. Each section names the command and "
            "the machine; rerun the command\nto compare.\n"
        )
    with DOCS.open("a") as handle:
        handle.write(section)
    return DOCS


def utc_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def seconds_between(start: datetime, end: datetime) -> float:
    return (end - start) / timedelta(seconds=1)
