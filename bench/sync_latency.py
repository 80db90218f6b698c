"""Benchmark: latency from a Reveni webhook to its Centra effect, limits off.

    .venv/bin/python -m bench.sync_latency [--returns 100] [--rate 2] [--debounce 1.0]
                                           [--runs 3] [--seed 1] [--append-docs]

The near-real-time path as `returnbridge receiver --trigger inline` runs it: the Reveni
simulator POSTs its webhooks to returnbridge's receiver, which commits each to the ledger's
inbox and wakes a `DebouncedTrigger` (`--debounce` seconds, the receiver command's default 1.0);
each trigger run opens the sync and runs it once (`ReturnSync.run`). Centra's limits are off
(simulator plan `unlimited`): this measures returnbridge, not the budget.

Setup per run: `--returns` generated returns (`returnbridge.scenarios.generate`); each return
that Reveni accepts (fully or partly) is walked up to just before its acceptance, every other
one to the end of its history, with no webhook subscription yet; one sync run takes that
backlog (no Centra write: nothing is accepted yet). Then the receiver subscribes, and the
returns are accepted one by one at `--rate` per second (the simulator emits `return.updated`).

Latency per accepted return, from the ledger (one clock): from the `received_at` of the first
inbox event about the return (committed before the receiver answered) to the `updated_at` of
its ledger action when it became `done` (set right after Centra answered the write; the Centra
simulator's own timestamps are on its simulated clock, which does not move with real time, so
they cannot be used). `first effect` = the `createReturn`; `all effects` = the last of its
actions (restock, refund or credit, exchange order). p50, p95 and max per run; the figures are
medians over `--runs`. Results go to `bench/results/sync_latency-<UTC time>.json` (gitignored).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.machine import machine
from bench.sync_support import (
    append_docs,
    argument_parser,
    bench_clock,
    bench_scenario,
    bench_settings,
    machine_line,
    open_bench_sync,
    owed,
    percentile,
    provenance,
    scenario_digest,
    seconds_between,
    simulators,
    utc_stamp,
    write_results,
)
from returnbridge.connectors.reveni.settings import ReveniSettings
from returnbridge.connectors.reveni.statuses import ACCEPTED
from returnbridge.connectors.reveni.wire import EVENT_TYPES
from returnbridge.ledger import Ledger, schema
from returnbridge.receiver.app import create_receiver
from returnbridge.receiver.settings import ReceiverSettings
from returnbridge.receiver.trigger import DebouncedTrigger
from returnbridge.scenario import ReveniReturn, Scenario
from returnbridge.settings import Settings
from returnbridge.simulators.server import serve_in_thread

SETTLE_SECONDS = 60.0  # after the last acceptance, until the sync owes nothing (bounded)


def split_history(ret: ReveniReturn) -> tuple[list[str], str | None]:
    """(statuses walked before the measurement, the accepting status or None)."""
    history = [str(s) for s in ret.history]
    for i, status in enumerate(history):
        if status in ACCEPTED:
            return history[1:i], status
    return history[1:], None


def _set_status(control: httpx.Client, rid: str, status: str) -> None:
    control.post(f"/_sim/returns/{rid}/status", json={"status": status}).raise_for_status()


async def _subscribe(settings: ReveniSettings, receiver_url: str) -> None:
    async with settings.client() as reveni:
        await reveni.ensure_webhook(receiver_url, list(EVENT_TYPES))


def _sync_until_idle(settings: Settings, ledger: Ledger, clock: Any) -> None:
    async def runs() -> None:
        async with open_bench_sync(settings, ledger, clock=clock) as sync:
            for _ in range(4):
                await sync.run()
                if not owed(ledger):
                    return

    asyncio.run(runs())


def _inbox_first_seen(ledger_url: str) -> dict[str, datetime]:
    """When the receiver first committed an event about each return (the inbox, read-only)."""
    t = schema.inbox
    engine = sa.create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.resource_id, t.c.received_at).where(t.c.source == "reveni")
            ).all()
    finally:
        engine.dispose()
    first: dict[str, datetime] = {}
    for rid, at in rows:
        if rid is not None and (rid not in first or at < first[rid]):
            first[rid] = at
    return first


def run_once(scenario: Scenario, rate: float, debounce: float, ledger_dir: Path) -> dict[str, Any]:
    """One run: accept the returns one by one and time each to its Centra effects."""
    clock = bench_clock(scenario)
    plans = {r.id: split_history(r) for r in scenario.reveni.returns if r.id}
    accepted = [(rid, status) for rid, (_, status) in plans.items() if status is not None]
    db = ledger_dir / "ledger.db"
    ledger_url = f"sqlite:///{db}"
    with (
        simulators(scenario, plan="unlimited") as servers,
        Ledger(ledger_url, clock=clock) as ledger,
        httpx.Client(base_url=servers.reveni_url, timeout=30) as control,
    ):
        settings = bench_settings(scenario, servers, ledger.url, plan="unlimited")
        for rid, (before, _) in plans.items():
            for status in before:
                _set_status(control, rid, status)
        _sync_until_idle(settings, ledger, clock)  # the backlog: nothing accepted yet
        writes_before = len(ledger.actions(states=["done"]))

        def run_sync() -> None:
            _sync_until_once(settings, ledger, clock)

        with DebouncedTrigger(run_sync, delay_seconds=debounce) as trigger:
            receiver_app = create_receiver(ledger, ReceiverSettings(), on_event=trigger.notify)
            with serve_in_thread(receiver_app) as receiver:
                asyncio.run(_subscribe(settings.reveni, receiver.url + "/webhooks/reveni"))
                began = time.monotonic()
                for i, (rid, status) in enumerate(accepted):
                    pause = began + i / rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    _set_status(control, rid, status)
                fed = time.monotonic() - began
                deadline = time.monotonic() + SETTLE_SECONDS
                while control.get("/_sim/webhooks").raise_for_status().json()["pending"]:
                    if time.monotonic() > deadline:
                        raise TimeoutError("Reveni webhooks still pending")
                    time.sleep(0.05)
                time.sleep(debounce + 0.2)  # the last notification fires by itself
                while time.monotonic() < deadline:  # then until read and done
                    trigger.flush(timeout=SETTLE_SECONDS)
                    if not ledger.inbox_pending(limit=1) and not owed(ledger):
                        break
                    trigger.notify()
                if trigger.failures:
                    raise RuntimeError(f"{trigger.failures} sync run(s) failed; see the log")
                sync_runs = trigger.runs
        first_seen = _inbox_first_seen(ledger_url)
        done = ledger.actions(reveni_return_ids=[rid for rid, _ in accepted], states=["done"])
        left = owed(ledger)
    first: list[float] = []
    every: list[float] = []
    no_effect: list[str] = []
    by_return: dict[str, list[datetime]] = {}
    creates: dict[str, datetime] = {}
    for action in done:
        by_return.setdefault(action.reveni_return_id, []).append(action.updated_at)
        if action.kind == "create_return":
            creates[action.reveni_return_id] = action.updated_at
    for rid, _ in accepted:
        seen = first_seen.get(rid)
        if seen is None or rid not in creates:
            no_effect.append(rid)
            continue
        first.append(seconds_between(seen, creates[rid]))
        every.append(seconds_between(seen, max(by_return[rid])))
    return {
        "accepted": len(accepted),
        "measured": len(first),
        "no_effect": len(no_effect),
        "writes_before": writes_before,
        "feed_seconds": round(fed, 1),
        "sync_runs": sync_runs,
        "owed_at_end": left,
        "first_effect": _summary(first),
        "all_effects": _summary(every),
    }


def _sync_until_once(settings: Settings, ledger: Ledger, clock: Any) -> None:
    async def once() -> None:
        async with open_bench_sync(settings, ledger, clock=clock) as sync:
            await sync.run()

    asyncio.run(once())


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "max": round(max(values), 3),
    }


def run(returns: int, runs: int, seed: int, rate: float, debounce: float) -> dict[str, Any]:
    scenario = bench_scenario(returns, seed)
    samples = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-sync-latency-") as tmp:
            samples.append(run_once(scenario, rate, debounce, Path(tmp)))
    median: dict[str, Any] = {}
    for which in ("first_effect", "all_effects"):
        median[which] = {
            stat: statistics.median(s[which][stat] for s in samples if s[which][stat] is not None)
            for stat in ("p50", "p95", "max")
        }
    return {
        "benchmark": "sync_latency",
        "when": utc_stamp(),
        "returns": returns,
        "runs": runs,
        "seed": seed,
        "rate": rate,
        "debounce": debounce,
        "machine": machine(),
        "code": provenance(),
        "scenario": scenario_digest(scenario),
        "median": median,
        "samples": samples,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| run | accepted | measured | sync runs | first effect p50 / p95 / max (s) "
        "| all effects p50 / p95 / max (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def cell(d: dict[str, Any]) -> str:
        return f"{d['p50']:.2f} / {d['p95']:.2f} / {d['max']:.2f}"

    for i, s in enumerate(report["samples"], 1):
        lines.append(
            f"| {i} | {s['accepted']} | {s['measured']} | {s['sync_runs']} "
            f"| {cell(s['first_effect'])} | {cell(s['all_effects'])} |"
        )
    m = report["median"]
    lines.append(
        f"| **median** | | | | **{cell(m['first_effect'])}** | **{cell(m['all_effects'])}** |"
    )
    return "\n".join(lines)


DEFINITIONS = """\
Measured per accepted return from the ledger, on one clock: from the `received_at` of the first
inbox event about the return (the receiver commits it before answering Reveni) to the
`updated_at` of its ledger action when it became `done` (right after Centra answered the
write; the Centra simulator's own timestamps run on its simulated clock, which does not move
with real time). *First effect*: the `createReturn`; *all effects*: the last of the return's
actions (restock, refund or credit, exchange order). Path: Reveni simulator -> receiver ->
inbox -> `DebouncedTrigger` -> one `ReturnSync.run` per trigger (clients opened per run, as
`returnbridge receiver --trigger inline` does). Per-run p50 / p95 / max; the median row is the
median of the runs' figures.
"""


def docs_section(report: dict[str, Any], command: str) -> str:
    return (
        f"\n## Sync latency, webhook to Centra effect ({report['when']})\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {machine_line(report['machine'])}  \n"
        f"{report['returns']} generated returns (seed {report['seed']}), accepted one by one at "
        f"{report['rate']:g} per second; debounce {report['debounce']:g} s; Centra plan "
        f"`unlimited`; {report['runs']} runs.\n\n{table(report)}\n\n{DEFINITIONS}"
    )


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--returns", type=int, default=100, help="generated returns")
    parser.add_argument("--rate", type=float, default=2.0, help="acceptances per second")
    parser.add_argument(
        "--debounce", type=float, default=1.0, help="trigger delay (s) after a webhook"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs; figures are their median")
    parser.add_argument("--seed", type=int, default=1, help="scenario seed")
    parser.add_argument("--append-docs", action="store_true", help="append to benchmarks.md")
    args = parser.parse_args()
    report = run(args.returns, args.runs, args.seed, args.rate, args.debounce)
    print(table(report))
    print(machine_line(report["machine"]))
    print(f"wrote {write_results('sync_latency', report)}")
    if args.append_docs:
        command = (
            f".venv/bin/python -m bench.sync_latency --returns {args.returns} "
            f"--rate {args.rate:g} --debounce {args.debounce:g} --runs {args.runs} "
            f"--seed {args.seed}"
        )
        print(f"appended to {append_docs(docs_section(report, command))}")


if __name__ == "__main__":
    main()
