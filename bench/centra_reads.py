"""Benchmark: batched vs one-by-one Centra order reads against the simulator over real HTTP.

    .venv/bin/python -m bench.centra_reads [--orders 2000] [--sample 300] [--runs 5]
                                           [--plan unlimited] [--append-docs]

Serves the Centra simulator with a generated scenario, reads every order with each batched strategy
and the first `--sample` orders with each one-by-one strategy (one request per order, so a sample
gives the same rate at a fraction of the time: the defaults finish in about a minute), and reports
the median of the runs: orders read per second and requests per 1,000 orders. Results go
to `bench/results/centra_reads-<UTC time>.json` (gitignored); `--append-docs` also appends the
table to docs/benchmarks.md. Target: at most 20 requests per 1,000 orders when batched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.machine import machine
from returnbridge.connectors.centra import Governor
from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.scenario import (
    CentraSection,
    Order,
    OrderLine,
    Product,
    Scenario,
)
from returnbridge.simulators.server import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
TOKEN, SECRET = "bench-token", "bench-secret"
FIRST_NUMBER = 100_000


def build_scenario(orders: int, seed: int = 7) -> Scenario:
    """`orders` shipped orders of 1-3 lines over 50 SKUs, deterministic for a seed."""
    rng = random.Random(seed)
    skus = [f"SKU-{i:03d}" for i in range(50)]
    start = datetime(2026, 9, 1, tzinfo=UTC)
    return Scenario(
        now=start + timedelta(days=60),
        centra=CentraSection(
            plan="unlimited",
            products=[Product(sku=sku, stock={1: 10_000, 2: 0}) for sku in skus],
            orders=[
                Order(
                    number=FIRST_NUMBER + i,
                    currency=rng.choice(["SEK", "EUR"]),
                    created_at=start + timedelta(minutes=i),
                    lines=[
                        OrderLine(
                            sku=sku,
                            quantity=rng.randint(1, 3),
                            unit_price=Decimal(rng.randint(100, 900)) + Decimal("0.90"),
                        )
                        for sku in rng.sample(skus, rng.randint(1, 3))
                    ],
                )
                for i in range(orders)
            ],
        ),
    )


@dataclass(frozen=True)
class Run:
    seconds: float
    requests: int
    orders: int


async def _read(url: str, numbers: list[int], mode: str, ids: list[str]) -> Run:
    per_query = {"batched-50": 50, "batched-200": 200}.get(mode, 1)
    settings = CentraSettings(
        base_url=url, token=SecretStr(TOKEN), order_api_secret=SecretStr(SECRET), plan="unlimited"
    )
    async with settings.client(
        orders_per_query=per_query, timeout_seconds=60, governor=Governor("unlimited", 1.0)
    ) as centra:
        started = time.perf_counter()
        if mode == "one-by-one-id":
            found = [o for o in [await centra.order_by_id(i) for i in ids] if o is not None]
            count = len(found)
        else:
            count = len(await centra.orders_by_number(numbers))
        elapsed = time.perf_counter() - started
        return Run(elapsed, centra.requests_sent, count)


async def _ids(url: str, numbers: list[int]) -> list[str]:
    settings = CentraSettings(base_url=url, token=SecretStr(TOKEN), plan="unlimited")
    async with settings.client(governor=Governor("unlimited", 1.0)) as centra:
        return [o.id for o in (await centra.orders_by_number(numbers)).values()]


def run(orders: int, runs: int, plan: str, sample: int) -> dict[str, Any]:
    from returnbridge.simulators.centra.app import create_app

    scenario = build_scenario(orders)
    numbers = [FIRST_NUMBER + i for i in range(orders)]
    app = create_app(scenario, token=TOKEN, order_api_secret=SECRET, plan=plan)
    modes = ["batched-50", "batched-200", "one-by-one-number", "one-by-one-id"]
    sample = min(sample, orders)
    results: dict[str, Any] = {}
    with serve_in_thread(app) as server:
        asyncio.run(_read(server.url, numbers[:100], "batched-50", []))  # warm-up
        for mode in modes:
            read = numbers if mode.startswith("batched") else numbers[:sample]
            ids = asyncio.run(_ids(server.url, read)) if mode == "one-by-one-id" else []
            samples = [asyncio.run(_read(server.url, read, mode, ids)) for _ in range(runs)]
            if any(s.orders != len(read) for s in samples):
                raise SystemExit(f"{mode}: read {[s.orders for s in samples]} of {len(read)}")
            seconds = statistics.median(s.seconds for s in samples)
            requests = statistics.median(s.requests for s in samples)
            results[mode] = {
                "orders_read": len(read),
                "median_seconds": round(seconds, 4),
                "orders_per_second": round(len(read) / seconds, 1),
                "requests_per_1000_orders": round(requests * 1000 / len(read), 1),
                "runs": [asdict(s) for s in samples],
            }
    return {
        "benchmark": "centra_reads",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "orders": orders,
        "sample": sample,
        "runs": runs,
        "plan": plan,
        "machine": machine(),
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| strategy | orders read | orders/s (median) | requests per 1,000 orders "
        "| median seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode, r in report["results"].items():
        lines.append(
            f"| {mode} | {r['orders_read']:,} | {r['orders_per_second']:,.0f} "
            f"| {r['requests_per_1000_orders']:g} | {r['median_seconds']:.3f} |"
        )
    return "\n".join(lines)


def docs_section(report: dict[str, Any], command: str) -> str:
    m = report["machine"]
    return (
        f"\n## Centra order reads ({report['when']})\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {m['cores']} cores, {m['cpu']}, Python {m['python']} ({m['platform']})  \n"
        f"Scenario: {report['orders']:,} orders (one-by-one strategies read the first "
        f"{report['sample']:,}), simulator plan `{report['plan']}`, "
        f"median of {report['runs']} runs; client and simulator share one process "
        "(simulator in a thread) over loopback HTTP.\n\n"
        f"{table(report)}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plan", default="unlimited")
    parser.add_argument("--append-docs", action="store_true")
    args = parser.parse_args()
    report = run(args.orders, args.runs, args.plan, args.sample)
    print(table(report))
    m = report["machine"]
    print(f"\n{m['cores']} cores, {m['cpu']}, Python {m['python']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = report["when"].replace(":", "").replace("+0000", "Z")
    out = RESULTS / f"centra_reads-{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    batched = report["results"]["batched-50"]["requests_per_1000_orders"]
    print(f"batched-50: {batched:g} requests per 1,000 orders (target <= 20)")
    if args.append_docs:
        command = (
            f".venv/bin/python -m bench.centra_reads --orders {args.orders} "
            f"--sample {args.sample} --runs {args.runs} --plan {args.plan}"
        )
        if not DOCS.exists():
            DOCS.write_text(
                "# Benchmarks\n\nMeasured figures, newest last. Each section names the command "
                "and the machine; rerun the command\nto compare.\n"
            )
        with DOCS.open("a") as handle:
            handle.write(docs_section(report, command))
        print(f"appended to {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
