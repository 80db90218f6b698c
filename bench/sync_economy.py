"""Benchmark: Centra API economy of the sync against a naive one-return-at-a-time integration.

    .venv/bin/python -m bench.sync_economy [--returns 1000] [--runs 3] [--seed 1] [--append-docs]

One backlog of `--returns` generated returns (the realistic mix of
`returnbridge.scenarios.generate`), every one walked to the end of its Reveni history, is synced
twice in each run, each time into fresh simulators loaded from the same scenario (limits off:
plan `unlimited`; request counts do not depend on the plan, since the default batch of 50
orders fits Growth's complexity budget at a 50 % share):

- `sync`: returnbridge's sync (`ReturnSync.run` until the ledger owes nothing): orders and their
  returns read 50 orders per request, plan, execute, read again what the writes unlocked;
- `naive`: the baseline, same planner and executor, one return at a time with one order per
  request: per return, read its order alone, read its Centra returns alone (and the stock of its
  exchange SKUs), write; then again for what the writes unlocked (restock, refund and exchange
  need the created Centra return), as a webhook-per-return integration would.

Counted from the Centra simulator's own counters (`/_sim/counters`): `requests` = every Centra
API request (GraphQL and Order API); `writes` = the mutations among them (GraphQL mutations and
Order API writes); `reads` = requests - writes. Per return = divided by the backlog's returns
(every return, including those that need no Centra write). Effects are the simulator's ground
truth (`/_sim/effects`): returns created, stock changes, returns completed with their refund or
credit, orders created. Targets: the sync's reads per return <= 0.1 (an exchange's origin
order comes from the run's read, the origins' addresses are read together); exactly one write
per effect. Results go to `bench/results/sync_economy-<UTC time>.json` (gitignored).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import machine
from bench.sync_support import (
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
    machine_line,
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
from returnbridge.scenario import Scenario
from returnbridge.settings import Settings
from returnbridge.sync.run import Collected, SyncReport

MODES = ("sync", "naive")
TARGET_READS_PER_RETURN = 0.1
MAX_SYNC_RUNS = 8


async def batched(settings: Settings, ledger: Ledger, clock: Any) -> int:
    """returnbridge's sync, run until nothing is owed; the returns it read."""
    seen = 0
    async with open_bench_sync(settings, ledger, clock=clock) as sync:
        for _ in range(MAX_SYNC_RUNS):
            report = await sync.run()
            seen = max(seen, report.returns_seen)
            if not owed(ledger):
                break
    return seen


async def naive(settings: Settings, ledger: Ledger, clock: Any) -> int:
    """The baseline: each return on its own, one order per Centra read; the returns read."""
    async with open_bench_sync(settings, ledger, orders_per_query=1, clock=clock) as sync:
        listing = await sync.reveni.changed_since(sync.cursor())
        for ret in listing.returns:
            one = Collected({ret.id: ret}, None, True, [], [])
            await sync.process(one, SyncReport())
        return len(listing.returns)


def run_mode(mode: str, scenario: Scenario) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-sync-economy-{mode}-") as tmp,
        simulators(scenario, plan="unlimited") as servers,
    ):
        walk_all(servers.reveni_url)
        clock = bench_clock(scenario)
        with Ledger(f"sqlite:///{Path(tmp) / 'ledger.db'}", clock=clock) as ledger:
            settings = bench_settings(scenario, servers, ledger.url, plan="unlimited")
            drain = batched if mode == "sync" else naive
            started = time.perf_counter()
            seen = asyncio.run(drain(settings, ledger, clock))
            seconds = time.perf_counter() - started
            done = done_by_kind(ledger)
            left = owed(ledger)
        counters = centra_counters(servers.centra_url)
        effects = effect_counts(centra_effects(servers.centra_url))
    returns = len(scenario.reveni.returns)
    figures = economy_figures(counters, returns, effects["total"])
    return {
        "mode": mode,
        "returns": returns,
        "returns_read": seen,
        "seconds": round(seconds, 2),
        "owed_at_end": left,
        "effects_by_kind": effects,
        "ledger_done": done,
        **figures,
    }


def run(returns: int, runs: int, seed: int) -> dict[str, Any]:
    scenario = bench_scenario(returns, seed)
    samples: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(runs):
        for mode in MODES:
            samples[mode].append(run_mode(mode, scenario))
    results: dict[str, Any] = {}
    for mode, rows in samples.items():
        results[mode] = {
            key: statistics.median(row[key] for row in rows)
            for key in (
                "requests",
                "reads",
                "mutations",
                "effects",
                "requests_per_return",
                "reads_per_return",
                "mutations_per_return",
                "mutations_per_effect",
                "seconds",
            )
        }
        results[mode]["counts_vary"] = len({(r["requests"], r["mutations"]) for r in rows}) > 1
        results[mode]["effects_by_kind"] = rows[0]["effects_by_kind"]
        results[mode]["by_operation"] = rows[0]["by_operation"]
    return {
        "benchmark": "sync_economy",
        "when": utc_stamp(),
        "returns": returns,
        "runs": runs,
        "seed": seed,
        "machine": machine(),
        "code": provenance(),
        "scenario": scenario_digest(scenario),
        "same_effects": all(
            row["effects_by_kind"] == samples["sync"][0]["effects_by_kind"]
            for rows in samples.values()
            for row in rows
        ),
        "results": results,
        "samples": samples,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| integration | Centra requests | reads | writes | effects | reads / return "
        "| requests / return | writes / return | writes / effect | seconds (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, r in report["results"].items():
        lines.append(
            f"| {mode} | {r['requests']:,.0f} | {r['reads']:,.0f} | {r['mutations']:,.0f} "
            f"| {r['effects']:,.0f} | {r['reads_per_return']:.3f} "
            f"| {r['requests_per_return']:.3f} | {r['mutations_per_return']:.3f} "
            f"| {r['mutations_per_effect']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def verdict(report: dict[str, Any]) -> str:
    sync, base = report["results"]["sync"], report["results"]["naive"]
    reads_ok = sync["reads_per_return"] <= TARGET_READS_PER_RETURN
    one = all(
        row["mutations"] == row["effects"] == row["ledger_done"]["total"]
        for rows in report["samples"].values()
        for row in rows
    )
    return (
        f"sync: {sync['reads_per_return']:.3f} reads per return "
        f"(target <= {TARGET_READS_PER_RETURN:g}: "
        f"{'met' if reads_ok else 'MISSED'}), {sync['requests_per_return']:.3f} requests per "
        f"return; naive: {base['reads_per_return']:.3f} reads per return "
        f"({base['reads'] / sync['reads']:.1f}x the sync's reads). One write per effect in every "
        f"run: {'yes' if one else 'NO'}; same effects in both integrations: "
        f"{'yes' if report['same_effects'] else 'NO'}."
    )


DEFINITIONS = """\
Definitions. *Centra requests*: every request to Centra's APIs (GraphQL and Order API), from
the simulator's counters; *writes*: the mutations among them (GraphQL mutations and Order API
writes); *reads* = requests - writes. Per return = divided by the backlog's returns (all of them,
also those that need no Centra write). *Effects*: the simulator's ground truth. *naive*: the
same planner and executor, one return at a time with one order per read (its order, its Centra
returns, the stock of its exchange SKUs; again after the writes, for what they unlocked). Plan
`unlimited` (request counts do not depend on the plan at the default batch of 50 orders).
"""


def docs_section(report: dict[str, Any], command: str) -> str:
    effects = report["results"]["sync"]["effects_by_kind"]
    return (
        f"\n## Sync API economy ({report['when']})\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {machine_line(report['machine'])}  \n"
        f"Backlog: {report['returns']:,} generated returns (seed {report['seed']}); effects: "
        f"{effects['create_return']} returns created, {effects['restock']} stock changes, "
        f"{effects['refund']} returns completed with refund or credit, "
        f"{effects['exchange_order']} exchange orders. Median of {report['runs']} runs.\n\n"
        f"{table(report)}\n\n{verdict(report)}\n\n{DEFINITIONS}"
    )


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--returns", type=int, default=1000, help="backlog size")
    parser.add_argument("--runs", type=int, default=3, help="runs; figures are their median")
    parser.add_argument("--seed", type=int, default=1, help="scenario seed")
    parser.add_argument("--append-docs", action="store_true", help="append to benchmarks.md")
    args = parser.parse_args()
    report = run(args.returns, args.runs, args.seed)
    print(table(report))
    print(f"\n{verdict(report)}")
    print(machine_line(report["machine"]))
    print(f"wrote {write_results('sync_economy', report)}")
    if args.append_docs:
        command = (
            f".venv/bin/python -m bench.sync_economy --returns {args.returns} "
            f"--runs {args.runs} --seed {args.seed}"
        )
        print(f"appended to {append_docs(docs_section(report, command))}")


if __name__ == "__main__":
    main()
