"""Benchmark: how fast the sync drains a backlog under Centra's rate limits
(docs/architecture.md#governed-access-to-centra).

    .venv/bin/python -m bench.sync_budget [--returns 1000] [--runs 3] [--speed 20]
                                          [--plan growth] [--share 0.5] [--seed 1]
                                          [--priority KINDS] [--append-docs]

A backlog of `--returns` generated returns (the realistic mix of
`returnbridge.scenarios.generate`), every one already walked to the end of its Reveni history,
is drained by one integration: the sync (planner, executor, SQLite ledger) against the Centra
simulator enforcing `--plan`'s limits, with returnbridge's governor holding `--share` of them.
Runs until the ledger owes nothing.

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
and definitions to docs/benchmarks.md. Targets: at least 90 % of the allowed mutation rate, zero
429s.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.machine import machine
from bench.sync_support import (
    CountingGovernor,
    ScaledClock,
    allowed_grants,
    append_docs,
    argument_parser,
    bench_clock,
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
    open_bench_sync,
    owed,
    provenance,
    scenario_digest,
    simulators,
    utc_stamp,
    walk_all,
    write_results,
)
from returnbridge.ledger import Ledger
from returnbridge.settings import Settings
from returnbridge.sync.run import SyncReport

TARGET_RATE = 0.90
MAX_SYNC_RUNS = 8  # a drain normally takes one run; more only while actions are owed


async def _drain(
    settings: Settings, ledger: Ledger, governor: CountingGovernor, clock: Any
) -> list[SyncReport]:
    reports: list[SyncReport] = []
    async with open_bench_sync(settings, ledger, governor=governor, clock=clock) as sync:
        while len(reports) < MAX_SYNC_RUNS:
            reports.append(await sync.run())
            if not owed(ledger):
                break
    return reports


def run_once(
    returns: int,
    seed: int,
    speed: float,
    plan: str,
    share: float,
    priority: Sequence[str] = (),
) -> dict[str, Any]:
    """Drain one backlog; the run's figures."""
    scenario = bench_scenario(returns, seed)
    clock = ScaledClock(speed)
    budget = CountingGovernor(plan, share, clock=clock).budget
    if budget.mutations_10s is None or budget.mutations_1h is None:
        raise SystemExit(f"plan {plan!r} has no mutation limits: nothing to measure")
    caps = [(budget.mutations_10s, 10.0), (budget.mutations_1h, 3600.0)]
    with (
        tempfile.TemporaryDirectory(prefix="bench-sync-budget-") as tmp,
        simulators(scenario, plan=plan, clock=clock) as servers,
    ):
        walk_all(servers.reveni_url)
        now = bench_clock(scenario)
        with Ledger(f"sqlite:///{Path(tmp) / 'ledger.db'}", clock=now) as ledger:
            settings = bench_settings(scenario, servers, ledger.url, plan=plan, share=share)
            if priority:
                sync = settings.sync.model_copy(update={"priority": list(priority)})
                settings = settings.model_copy(update={"sync": sync})
            governor = CountingGovernor(plan, share, clock=clock)
            started, wall = clock.monotonic(), time.perf_counter()
            reports = asyncio.run(_drain(settings, ledger, governor, now))
            finished, wall = clock.monotonic(), time.perf_counter() - wall
            done = done_by_kind(ledger)
            left = owed(ledger)
        counters = centra_counters(servers.centra_url)
        effects = effect_counts(centra_effects(servers.centra_url))
    grants = [t - started for t in governor.mutation_times]
    requests = [t - started for t in governor.request_times]
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
        "scenario": scenario_digest(scenario),
        "sync_runs": len(reports),
        "rounds": [r.rounds for r in reports],
        "owed_at_end": left,
        "wall_seconds": round(wall, 1),
        "drain_seconds": round(drain, 1),
        "returns_per_hour": round(returns * 3600 / drain, 1) if drain else None,
        "first_mutation_at": round(min(grants, default=0.0), 1),
        "last_mutation_at": round(last, 1),
        "metered_mutations": len(grants),
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
        "request_caps": [budget.requests_10s, budget.requests_1h],
        "cap_10s": caps[0][0],
        "cap_1h": caps[1][0],
        "effects_by_kind": effects,
        "ledger_done": done,
        **figures,
        "exceptions_new": sum(r.exceptions_new for r in reports),
    }


def run(
    returns: int,
    runs: int,
    seed: int,
    speed: float,
    plan: str,
    share: float,
    priority: Sequence[str] = (),
) -> dict[str, Any]:
    samples = [run_once(returns, seed, speed, plan, share, priority) for _ in range(runs)]
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
    return (
        f"mutation rate {m['rate_vs_allowed']:.1%} of the allowed rate (target >= 90 %: "
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
    return (
        f"\n## Sync budget use ({report['when']})\n\n"
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
    parser.add_argument("--append-docs", action="store_true", help="append to benchmarks.md")
    args = parser.parse_args()
    priority = [kind for kind in args.priority.split(",") if kind]
    report = run(args.returns, args.runs, args.seed, args.speed, args.plan, args.share, priority)
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
        )
        print(f"appended to {append_docs(docs_section(report, command))}")


if __name__ == "__main__":
    main()
