"""Benchmark: how fast the sync drains a backlog under Centra's rate limits
(docs/architecture.md#governed-access-to-centra).

    .venv/bin/python -m bench.sync_budget [--returns 1000] [--runs 3] [--speed 20]
                                          [--plan growth] [--share 0.5] [--seed 1]
                                          [--priority KINDS] [--processes 1] [--append-docs]

A backlog of `--returns` generated returns (the realistic mix of
`returnbridge.scenarios.generate`), every one already walked to the end of its Reveni history,
is drained by one integration: the sync (planner, executor, SQLite ledger) against the Centra
simulator enforcing `--plan`'s limits, with returnbridge holding `--share` of them, in process
(the client's governor) and across processes (the ledger's budget gate, `open_sync`'s default).
Runs until the ledger owes nothing.

`--processes N` (N > 1): N processes share the share, as N Prefect flow runs do. Each is
spawned with its own sync, governor and gate, and syncs every N-th return of the backlog
(`ReturnSync.run(return_ids=...)`, again for what a run leaves unfinished). By default each
process keeps its actions in a ledger file of its own and every gate keeps the budget in one
shared ledger file, so that the processes share the budget and nothing else; with
`--shared-ledger` they all use that one ledger, and their executors drain it together (one may
send the other's actions: the ledger's claims keep that safe, but both may take a gate slot for
the same action first, and the loser's slot is spent unused). Only the ledgers' gate keeps the
processes inside the share together; the figures are over every process's calls, merged on
the common clock (every process reads one scaled clock: `SharedScaledClock`).

Centra's windows are 10 s and one hour; at Growth and a 50 % share the hourly cap (900
mutations) binds after 15 minutes, so draining 1,000 returns (about 1,600 GraphQL mutations
plus 900 Order API writes) takes over an hour of Centra time. The simulator's rate limiter and
the client's governor therefore run on one clock `--speed` times faster than real time
(`bench.sync_support.ScaledClock`); the rest (HTTP, ledger, planner, CPU) runs at real speed,
so every real second of work costs `--speed` Centra seconds: the figures are conservative as
long as the machine keeps up with `--speed` x the allowed rate (compare two speeds to check).

Figures (per run, medians over `--runs`): Centra seconds to drain, returns drained per Centra
hour, metered mutations (GraphQL mutations, what the MUTATION_COUNT quota counts), writes and
requests (all; reads only) per return, writes per effect, 429s; the rate relative to the allowed
rate: the time the fastest client the budget allows (greedy, from empty windows, nothing to read
first) needs for the same metered mutations divided by the time we took, over the whole drain
and over its first phase (the first 900 mutations, before the hourly cap can bind); and the most
mutations and requests in any 10 s and any hour (never above the budget). Results go to
`bench/results/sync_budget-<UTC time>.json` (gitignored); `--append-docs` appends the tables
and definitions to docs/benchmarks.md. Targets: at least 95 % of the allowed mutation rate, zero
429s, with one process and with several (the sync plans alongside execution: writes start once
the first batch of orders is planned, and what a `createReturn` waiting for the hourly window
does not block is planned and sent meanwhile).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.machine import machine
from bench.sync_support import (
    CountingGovernor,
    ScaledClock,
    allowed_grants,
    append_docs,
    argument_parser,
    bench_scenario,
    bench_settings,
    centra_counters,
    centra_effects,
    done_by_kind,
    economy_figures,
    effect_counts,
    ideal_seconds,
    machine_line,
    max_in_window,
    median_of,
    owed,
    provenance,
    scenario_digest,
    simulators,
    utc_stamp,
    walk_all,
    write_results,
)
from returnbridge.clock import Now
from returnbridge.ledger import Ledger
from returnbridge.settings import Settings
from returnbridge.sync.budget import BudgetKind
from returnbridge.sync.ledger_budget import LedgerBudgetGate
from returnbridge.sync.run import ReturnSync, SyncReport
from returnbridge.sync.runtime import open_sync

TARGET_RATE = 0.95
MAX_SYNC_RUNS = 8  # a drain normally takes one run; more only while actions are owed
# With several processes, one's actions may be sent by another: a run then leaves returns
# unfinished that the next run of the same process plans on (a few short runs more).
MAX_SHARED_SYNC_RUNS = 40
_OWED = ("pending", "in_flight", "in_doubt")


class SharedScaledClock(ScaledClock):
    """A `ScaledClock` with a given origin (`time.monotonic()` at the parent's start): on Linux
    the monotonic clock is the machine's, so every process reads the same scaled time."""

    def __init__(self, speed: float, origin: float) -> None:
        super().__init__(speed)
        self._origin = origin

    @property
    def origin(self) -> float:
        return self._origin


@dataclass(frozen=True)
class ScenarioNow:
    """The sync's and ledger's clock: the scenario's `now`, moving with real time from `began`
    (`time.monotonic()`), picklable so that every process reads the same one."""

    start: datetime
    began: float

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self.began)


class CountingGate(LedgerBudgetGate):
    """A `LedgerBudgetGate` that logs the stamp of every slot it grants (on the windows' clock):
    `stamps` holds `(time, kind)` per slot."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stamps: list[tuple[float, str]] = []

    async def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        if n < 1:
            return
        at = await self.windows.acquire(self.draws(kind, n), timeout_seconds=self.timeout_seconds)
        self.acquired[kind] += n
        if at is not None:
            self.stamps.extend([(at, kind)] * n)


async def _drain(
    settings: Settings,
    ledger: Ledger,
    governor: CountingGovernor,
    gate: CountingGate,
    now: Now,
) -> list[SyncReport]:
    """`open_sync` as the product wires it, with the bench's governor and ledger gate (both on
    the scaled clock: the gate's default, the database's clock, runs in real time)."""
    reports: list[SyncReport] = []
    async with open_sync(
        settings, ledger=ledger, clock=now, governor=governor, budget=gate
    ) as sync:
        while len(reports) < MAX_SYNC_RUNS:
            reports.append(await sync.run())
            if not owed(ledger):
                break
    return reports


async def _drain_share(sync: ReturnSync, ledger: Ledger, return_ids: list[str]) -> list[SyncReport]:
    """Sync `return_ids`, then again what a run left unfinished, until a run plans nothing new
    and none of their actions is owed (another process may hold some in flight meanwhile)."""
    reports: list[SyncReport] = []
    todo = return_ids
    while todo and len(reports) < MAX_SHARED_SYNC_RUNS:
        report = await sync.run(return_ids=todo)
        reports.append(report)
        owing = {
            a.reveni_return_id for a in ledger.actions(reveni_return_ids=return_ids, states=_OWED)
        }
        if report.actions_planned == 0 and not owing:
            break
        todo = sorted(set(report.unfinished) | owing)
        if report.actions_planned == 0 and report.actions_done == 0:
            await asyncio.sleep(0.05)  # the other process is sending them: let it
    return reports


@dataclass(frozen=True)
class Job:
    """What one spawned process of `--processes` needs (picklable). `ledger_url`: where its
    actions go; `budget_url`: the ledger holding the shared budget (the same one with
    `--shared-ledger`)."""

    settings: Settings
    ledger_url: str
    budget_url: str
    return_ids: list[str]
    plan: str
    share: float
    speed: float
    origin: float
    now: ScenarioNow


def _process(job: Job, start: Any, results: Any) -> None:
    """One process of `--processes`: its own governor, gate and sync, started with the others.
    Reports ("ok", figures) or ("error", traceback)."""
    try:
        clock = SharedScaledClock(job.speed, job.origin)
        governor = CountingGovernor(job.plan, job.share, clock=clock)
        with Ledger(job.ledger_url, clock=job.now) as ledger:
            shared = job.budget_url == job.ledger_url
            budget_ledger = ledger if shared else Ledger(job.budget_url, clock=job.now)
            try:
                gate = CountingGate.for_settings(job.settings.centra, budget_ledger, clock=clock)

                async def drain() -> list[SyncReport]:
                    async with open_sync(
                        job.settings, ledger=ledger, clock=job.now, governor=governor, budget=gate
                    ) as sync:
                        start.wait(timeout=300)
                        return await _drain_share(sync, ledger, job.return_ids)

                began = clock.monotonic()
                reports = asyncio.run(drain())
                ended = clock.monotonic()
            finally:
                if not shared:
                    budget_ledger.close()
            figures = {
                "began": began,
                "ended": ended,
                "grants": governor.grants,
                "gate_acquired": dict(gate.acquired),
                "gate_stamps": gate.stamps,
                "sync_runs": len(reports),
                "rounds": [r.rounds for r in reports],
                "exceptions_new": sum(r.exceptions_new for r in reports),
                "actions_done": sum(r.actions_done for r in reports),
                "ledger_done": done_by_kind(ledger),
                "owed": owed(ledger),
            }
        results.put(("ok", figures))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _drain_in_processes(
    settings: Settings,
    folder: Path,
    budget_url: str,
    return_ids: list[str],
    processes: int,
    shared_ledger: bool,
    plan: str,
    share: float,
    clock: SharedScaledClock,
    now: ScenarioNow,
) -> tuple[float, float, list[tuple[float, bool, int]], list[dict[str, Any]]]:
    """Spawn `processes` syncs, each over every N-th return, released together; their start
    and end on the shared clock, every grant of their governors, and each one's figures."""
    context = multiprocessing.get_context("spawn")  # the simulators' threads do not fork
    start = context.Barrier(processes + 1)
    results = context.Queue()
    jobs = []
    for i in range(processes):
        url = budget_url if shared_ledger else f"sqlite:///{folder / f'ledger-{i + 1}.db'}"
        sync = settings.sync.model_copy(update={"ledger_url": url})
        jobs.append(
            Job(
                settings.model_copy(update={"sync": sync}),
                url,
                budget_url,
                return_ids[i::processes],
                plan,
                share,
                clock.speed,
                clock.origin,
                now,
            )
        )
    workers = [
        context.Process(target=_process, args=(job, start, results), name=f"sync-{i + 1}")
        for i, job in enumerate(jobs)
    ]
    for worker in workers:
        worker.start()
    try:
        start.wait(timeout=300)
    except threading.BrokenBarrierError:
        failed = [results.get(timeout=5) for _ in workers if not results.empty()]
        raise RuntimeError(f"a sync process failed to start: {failed}") from None
    started = clock.monotonic()
    reports = [results.get() for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    errors = [r[1] for r in reports if r[0] != "ok"]
    if errors:
        raise RuntimeError(f"a sync process failed:\n{errors[0]}")
    per_process = [r[1] for r in reports]
    finished = max(p["ended"] for p in per_process)
    grants = sorted(g for p in per_process for g in p["grants"])
    return started, finished, grants, per_process


def run_once(
    returns: int,
    seed: int,
    speed: float,
    plan: str,
    share: float,
    priority: Sequence[str] = (),
    processes: int = 1,
    shared_ledger: bool = False,
) -> dict[str, Any]:
    """Drain one backlog with `processes` syncs; the run's figures."""
    scenario = bench_scenario(returns, seed)
    clock = SharedScaledClock(speed, time.monotonic())
    budget = CountingGovernor(plan, share, clock=clock).budget
    if budget.mutations_10s is None or budget.mutations_1h is None:
        raise SystemExit(f"plan {plan!r} has no mutation limits: nothing to measure")
    caps = [(budget.mutations_10s, 10.0), (budget.mutations_1h, 3600.0)]
    per_process: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-sync-budget-") as tmp,
        simulators(scenario, plan=plan, clock=clock) as servers,
    ):
        walk_all(servers.reveni_url)
        now = ScenarioNow(scenario.start_time(), time.monotonic())
        with Ledger(f"sqlite:///{Path(tmp) / 'ledger.db'}", clock=now) as ledger:
            settings = bench_settings(scenario, servers, ledger.url, plan=plan, share=share)
            if priority:
                sync = settings.sync.model_copy(update={"priority": list(priority)})
                settings = settings.model_copy(update={"sync": sync})
            wall = time.perf_counter()
            if processes == 1:
                governor = CountingGovernor(plan, share, clock=clock)
                gate = CountingGate.for_settings(settings.centra, ledger, clock=clock)
                started = clock.monotonic()
                reports = asyncio.run(_drain(settings, ledger, governor, gate, now))
                finished = clock.monotonic()
                all_grants = governor.grants
                gate_acquired = dict(gate.acquired)
                stamps = gate.stamps
                sync_runs, rounds = len(reports), [r.rounds for r in reports]
                exceptions_new = sum(r.exceptions_new for r in reports)
            else:
                ids = sorted(r.id for r in scenario.reveni.returns if r.id is not None)
                started, finished, all_grants, per_process = _drain_in_processes(
                    settings,
                    Path(tmp),
                    ledger.url,
                    ids,
                    processes,
                    shared_ledger,
                    plan,
                    share,
                    clock,
                    now,
                )
                sync_runs = sum(p["sync_runs"] for p in per_process)
                gate_acquired = {
                    kind: sum(p["gate_acquired"][kind] for p in per_process)
                    for kind in ("request", "mutation")
                }
                stamps = [stamp for p in per_process for stamp in p["gate_stamps"]]
                rounds = [n for p in per_process for n in p["rounds"]]
                exceptions_new = sum(p["exceptions_new"] for p in per_process)
            wall = time.perf_counter() - wall
            if processes == 1 or shared_ledger:
                done, left = done_by_kind(ledger), owed(ledger)
            else:
                done = {
                    kind: sum(p["ledger_done"][kind] for p in per_process)
                    for kind in per_process[0]["ledger_done"]
                }
                left = sum(p["owed"] for p in per_process)
        counters = centra_counters(servers.centra_url)
        effects = effect_counts(centra_effects(servers.centra_url))
    slots = [t for t, kind in stamps if kind == "mutation"]
    grants = [t - started for t, mutation, _ in all_grants if mutation]
    requests = [t - started for t, _, _ in all_grants]
    last = max(grants, default=0.0)
    ideal = ideal_seconds(len(grants), caps)
    allowed = allowed_grants(last, caps)
    # The first phase: the first `cap_1h` mutations, before the hourly cap can bind.
    first = grants[: caps[1][0]]
    first_ideal = ideal_seconds(len(first), caps)
    first_end = max(first, default=0.0)
    figures = economy_figures(counters, returns, effects["total"])
    drain = finished - started
    return {
        "returns": returns,
        "processes": processes,
        "scenario": scenario_digest(scenario),
        "sync_runs": sync_runs,
        "rounds": rounds,
        "owed_at_end": left,
        "wall_seconds": round(wall, 1),
        "drain_seconds": round(drain, 1),
        "returns_per_hour": round(returns * 3600 / drain, 1) if drain else None,
        "first_mutation_at": round(min(grants, default=0.0), 1),
        "last_mutation_at": round(last, 1),
        "metered_mutations": len(grants),
        "gate_acquired": gate_acquired,
        "graphql_mutations": sum(
            n for op, n in counters["by_operation"].items() if op.startswith("mutation ")
        ),
        "ideal_seconds": round(ideal, 1),
        "rate_vs_allowed": round(ideal / last, 4) if last else None,
        "allowed_by_then": allowed,
        "count_vs_allowed": round(len(grants) / allowed, 4) if allowed else None,
        "first_phase_mutations": len(first),
        "first_phase_seconds": round(first_end, 1),
        "first_phase_ideal_seconds": round(first_ideal, 1),
        "first_phase_rate_vs_allowed": (round(first_ideal / first_end, 4) if first_end else None),
        "max_mutations_10s": max_in_window(grants, 10.0),
        "max_mutations_1h": max_in_window(grants, 3600.0),
        "max_requests_10s": max_in_window(requests, 10.0),
        "max_requests_1h": max_in_window(requests, 3600.0),
        # The gate's own stamps: mutation slots (every Centra write takes one) in any window.
        "gate_max_mutation_slots_10s": max_in_window(slots, 10.0),
        "gate_max_mutation_slots_1h": max_in_window(slots, 3600.0),
        "request_caps": [budget.requests_10s, budget.requests_1h],
        "cap_10s": caps[0][0],
        "cap_1h": caps[1][0],
        "effects_by_kind": effects,
        "ledger_done": done,
        **figures,
        "exceptions_new": exceptions_new,
        "per_process": [
            {
                "mutations": sum(1 for _, mutation, _ in p["grants"] if mutation),
                "requests": len(p["grants"]),
                "gate_acquired": p["gate_acquired"],
                "actions_done": p["actions_done"],
                "sync_runs": p["sync_runs"],
                "ended_at": round(p["ended"] - started, 1),
            }
            for p in per_process
        ],
    }


def run(
    returns: int,
    runs: int,
    seed: int,
    speed: float,
    plan: str,
    share: float,
    priority: Sequence[str] = (),
    processes: int = 1,
    shared_ledger: bool = False,
) -> dict[str, Any]:
    samples = [
        run_once(returns, seed, speed, plan, share, priority, processes, shared_ledger)
        for _ in range(runs)
    ]
    keys = [
        "drain_seconds",
        "returns_per_hour",
        "first_mutation_at",
        "last_mutation_at",
        "ideal_seconds",
        "rate_vs_allowed",
        "count_vs_allowed",
        "first_phase_rate_vs_allowed",
        "mutations_per_return",
        "requests_per_return",
        "reads_per_return",
        "mutations_per_effect",
        "rate_limited",
        "wall_seconds",
    ]
    return {
        "benchmark": "sync_budget",
        "when": utc_stamp(),
        "returns": returns,
        "runs": runs,
        "seed": seed,
        "speed": speed,
        "plan": plan,
        "share": share,
        "priority": list(priority),
        "processes": processes,
        "shared_ledger": shared_ledger,
        "machine": machine(),
        "code": provenance(),
        "median": {k: median_of(samples, k) for k in keys},
        "samples": samples,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| run | drain, Centra s | returns / Centra hour | mutations (metered) "
        "| first / last at, s | greedy client needs, s | **rate vs allowed** "
        "| count vs allowed by then | first phase rate vs allowed | max in 10 s / 1 h "
        "| 429s | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, s in enumerate(report["samples"], 1):
        lines.append(
            f"| {i} | {s['drain_seconds']:,.0f} | {s['returns_per_hour']:,.0f} "
            f"| {s['metered_mutations']:,} "
            f"| {s['first_mutation_at']:,.0f} / {s['last_mutation_at']:,.0f} "
            f"| {s['ideal_seconds']:,.0f} | {s['rate_vs_allowed']:.1%} "
            f"| {s['count_vs_allowed']:.1%} ({s['metered_mutations']:,} of "
            f"{s['allowed_by_then']:,}) | {s['first_phase_rate_vs_allowed']:.1%} "
            f"| {s['max_mutations_10s']} / {s['max_mutations_1h']} "
            f"(cap {s['cap_10s']} / {s['cap_1h']}) | {s['rate_limited']} "
            f"| {s['wall_seconds']:,.0f} |"
        )
    m = report["median"]
    lines.append(
        f"| **median** | {m['drain_seconds']:,.0f} | {m['returns_per_hour']:,.0f} | "
        f"| {m['first_mutation_at']:,.0f} / {m['last_mutation_at']:,.0f} "
        f"| {m['ideal_seconds']:,.0f} | **{m['rate_vs_allowed']:.1%}** "
        f"| {m['count_vs_allowed']:.1%} | {m['first_phase_rate_vs_allowed']:.1%} | "
        f"| **{m['rate_limited']:g}** | {m['wall_seconds']:,.0f} |"
    )
    if report.get("processes", 1) > 1:
        lines += [
            "",
            "| run | process | metered mutations | requests | gate slots (mutation / request) "
            "| actions done | sync runs | last run ended at, s |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for i, s in enumerate(report["samples"], 1):
            for j, p in enumerate(s["per_process"], 1):
                slots = p["gate_acquired"]
                lines.append(
                    f"| {i} | {j} | {p['mutations']:,} | {p['requests']:,} "
                    f"| {slots['mutation']:,} / {slots['request']:,} "
                    f"| {p['actions_done']:,} | {p['sync_runs']} | {p['ended_at']:,.0f} |"
                )
    lines += [
        "",
        "| per return (median) | writes | requests | reads | writes per effect |",
        "|---|---:|---:|---:|---:|",
        f"| {report['returns']:,} returns | {m['mutations_per_return']:.2f} "
        f"| {m['requests_per_return']:.2f} | {m['reads_per_return']:.2f} "
        f"| {m['mutations_per_effect']:.3f} |",
    ]
    return "\n".join(lines)


def verdict(report: dict[str, Any]) -> str:
    m = report["median"]
    rate_ok = m["rate_vs_allowed"] is not None and m["rate_vs_allowed"] >= TARGET_RATE
    zero = all(s["rate_limited"] == 0 for s in report["samples"])
    slots = ", ".join(
        f"{s['gate_max_mutation_slots_10s']} / {s['gate_max_mutation_slots_1h']}"
        for s in report["samples"]
    )
    return (
        f"gate: most mutation slots in any 10 s / 1 h, per run: {slots} (cap "
        f"{report['samples'][0]['cap_10s']} / {report['samples'][0]['cap_1h']}); "
        f"mutation rate {m['rate_vs_allowed']:.1%} of the allowed rate "
        f"(target >= {TARGET_RATE:.0%}: "
        f"{'met' if rate_ok else 'MISSED'}); 429s: "
        f"{sum(s['rate_limited'] for s in report['samples'])} over all runs (target 0: "
        f"{'met' if zero else 'MISSED'})"
    )


DEFINITIONS = """\
Definitions. *Centra s*: seconds on the clock the simulator's rate limiter and the client's
governor share, `--speed` times real time (everything else runs in real time, so each real second
of HTTP, ledger and planning work costs `--speed` Centra seconds: conservative). *Drain*: from the
sync's start until the ledger owes nothing. *Metered mutations*: GraphQL mutations (`createReturn`,
`changeStock`), what Centra's MUTATION_COUNT quota counts; Order API writes (`PUT /returns/{id}`,
`POST /order`) count as requests only (simulator [INF], and the governor agrees). *Greedy client*:
the fastest schedule the budget allows from empty windows at the sync's start, with nothing to
read first (10 mutations per 10 s and 900 per hour at Growth, 50 %). **Rate vs allowed** = the
greedy client's time for the same metered mutations / the time of our last one (the drain rate
relative to the allowed rate; the target). *Count vs allowed by then* = our metered mutations /
the greedy client's by the time of our last one (stricter just after an hourly window frees).
*First phase*: the first 900 metered mutations, before the hourly cap can bind (the 10 s window
alone limits). *Writes* = all Centra writes; *requests* = all Centra API requests; *reads* =
requests - writes; per return of the backlog. 429s: answered by the simulator.
"""


def docs_section(report: dict[str, Any], command: str) -> str:
    processes = report.get("processes", 1)
    if processes == 1:
        who = "one process (its governor and the ledger gate)"
    elif report.get("shared_ledger"):
        who = f"{processes} processes on one ledger"
    else:
        who = f"{processes} processes, one budget"

    return (
        f"\n## Sync budget use, {who} ({report['when']})\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {machine_line(report['machine'])}  \n"
        f"Backlog: {report['returns']:,} generated returns (seed {report['seed']}), all walked to "
        f"the end of their Reveni history; plan `{report['plan']}`, share "
        f"{report['share']:.0%}, Centra clock x{report['speed']:g}"
        + (f", priority {','.join(report['priority'])}" if report["priority"] else "")
        + f"; median of {report['runs']} runs.\n\n"
        f"{table(report)}\n\n{verdict(report)}\n\n{DEFINITIONS}"
    )


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--returns", type=int, default=1000, help="backlog size")
    parser.add_argument("--runs", type=int, default=3, help="runs; figures are their median")
    parser.add_argument(
        "--speed", type=float, default=20.0, help="Centra clock speed-up (rate limits only)"
    )
    parser.add_argument("--plan", default="growth", help="Centra plan the simulator enforces")
    parser.add_argument("--share", type=float, default=0.5, help="budget share of the plan")
    parser.add_argument("--seed", type=int, default=1, help="scenario seed")
    parser.add_argument(
        "--priority",
        default="",
        help="comma list of action kinds run first (the sync's `priority` setting; default none)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="sync processes sharing the share through the ledger's gate (default 1)",
    )
    parser.add_argument(
        "--shared-ledger",
        action="store_true",
        help="with --processes: every process on one ledger (default: a ledger of its own each, "
        "the budget in one shared ledger)",
    )
    parser.add_argument("--append-docs", action="store_true", help="append to benchmarks.md")
    args = parser.parse_args()
    if args.processes < 1:
        parser.error(f"--processes must be at least 1, got {args.processes}")
    if args.shared_ledger and args.processes == 1:
        parser.error("--shared-ledger needs --processes 2 or more")
    priority = [kind for kind in args.priority.split(",") if kind]
    report = run(
        args.returns,
        args.runs,
        args.seed,
        args.speed,
        args.plan,
        args.share,
        priority,
        args.processes,
        args.shared_ledger,
    )
    print(table(report))
    print(f"\n{verdict(report)}")
    print(machine_line(report["machine"]))
    out = write_results("sync_budget", report)
    print(f"wrote {out}")
    if args.append_docs:
        command = (
            f".venv/bin/python -m bench.sync_budget --returns {args.returns} --runs {args.runs} "
            f"--speed {args.speed:g} --plan {args.plan} --share {args.share:g} --seed {args.seed}"
            + (f" --priority {args.priority}" if priority else "")
            + (f" --processes {args.processes}" if args.processes > 1 else "")
            + (" --shared-ledger" if args.shared_ledger else "")
        )
        print(f"appended to {append_docs(docs_section(report, command))}")


if __name__ == "__main__":
    main()
