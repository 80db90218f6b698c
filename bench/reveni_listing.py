"""Benchmark: Reveni incremental listing (`changed_since`) against naive paging, with and without
returns changing while the list is read, over real HTTP against the Reveni simulator.

    .venv/bin/python -m bench.reveni_listing [--returns 2000] [--runs 5] [--page-size 100]

For each layout (returns spread over 30 days, or all changed on one day: the worst case for the
inferred day-precision `updated_from`) and each churn setting (none, or a thread moving random
returns on and off hold as fast as the simulator takes it, each move sending the return to the
end of the list), it reports the median of the runs: returns listed per second, list requests,
passes, how many answers were complete (a partial answer holds its cursor back so the next call
re-reads what may have slid past) and how many returns each reader missed outright. Results go
to `bench/results/reveni_listing-<UTC time>.json` (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from pydantic import SecretStr

from returnbridge.connectors.reveni.settings import ReveniSettings
from returnbridge.scenario import (
    CentraSection,
    Order,
    OrderLine,
    Product,
    Refund,
    ReturnItem,
    ReveniReturn,
    ReveniSection,
    Scenario,
)
from returnbridge.simulators.reveni.app import create_app
from returnbridge.simulators.server import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
KEY, STORE = "bench-key", "store_1"
BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)


def build_scenario(returns: int, *, same_day: bool, seed: int = 11) -> Scenario:
    """`returns` open returns on as many orders, created over 30 days or within one day."""
    rng = random.Random(seed)
    now = datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    span = timedelta(hours=20) if same_day else timedelta(days=30)
    first = now - span - timedelta(hours=1)
    orders = [
        Order(
            number=500_000 + i, lines=[OrderLine(sku="SKU-1", quantity=1, unit_price=Decimal(50))]
        )
        for i in range(returns)
    ]
    offsets = sorted(rng.random() for _ in range(returns))
    return Scenario(
        now=now,
        centra=CentraSection(products=[Product(sku="SKU-1")], orders=orders),
        reveni=ReveniSection(
            store_id=STORE,
            returns=[
                ReveniReturn(
                    id=f"ret_{i:06d}",
                    order_number=500_000 + i,
                    created_at=first + span * offsets[i],
                    items=[ReturnItem(sku="SKU-1", quantity=1)],
                    refund=Refund(method="original_payment_method", amount=Decimal(50)),
                )
                for i in range(returns)
            ],
        ),
    )


class Churn:
    """Moves random returns to on_hold and back while running: each move re-sorts them last."""

    def __init__(self, url: str, ids: list[str], seed: int) -> None:
        self.url, self.ids, self.rng = url, ids, random.Random(seed)
        self.moves = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        held: list[str] = []
        with httpx.Client(base_url=self.url, timeout=10) as control:
            while not self._stop.is_set():
                if held and (len(held) > 20 or self.rng.random() < 0.5):
                    rid, status = held.pop(self.rng.randrange(len(held))), "in_progress"
                else:
                    rid, status = self.rng.choice(self.ids), "on_hold"
                    if rid in held:
                        continue
                    held.append(rid)
                control.post(f"/_sim/returns/{rid}/status", json={"status": status})
                self.moves += 1

    def __enter__(self) -> Churn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Sample:
    layout: str
    churn: bool
    method: str
    seconds: float
    returns_per_second: float
    requests: int
    passes: int
    complete: bool
    missed: int
    moves: int


def _settings(url: str, page_size: int) -> ReveniSettings:
    return ReveniSettings(base_url=url, api_key=SecretStr(KEY), store_id=STORE, page_size=page_size)


async def _incremental(url: str, page_size: int) -> tuple[set[str], int, int, bool]:
    async with _settings(url, page_size).client() as client:
        result = await client.changed_since(BEGINNING)
        ids = [r.id for r in result.returns]
        assert len(ids) == len(set(ids)), "changed_since repeated a return"
        return set(ids), result.requests, result.passes, result.complete


async def _naive(url: str, page_size: int) -> tuple[set[str], int, int, bool]:
    async with _settings(url, page_size).client() as client:
        ids = {r.id async for r in client.iter_returns(updated_from=BEGINNING)}
        return ids, client.requests, 1, True


def run_once(
    layout: str, churn: bool, method: str, returns: int, page_size: int, seed: int
) -> Sample:
    scenario = build_scenario(returns, same_day=layout == "one_day")
    all_ids = [r.id for r in scenario.reveni.returns if r.id]
    with serve_in_thread(create_app(scenario, api_key=KEY)) as server:
        reader = _incremental if method == "changed_since" else _naive
        started = time.perf_counter()
        if churn:
            with Churn(server.url, all_ids, seed) as mover:
                time.sleep(0.05)  # let it get going
                started = time.perf_counter()
                seen, requests, passes, complete = asyncio.run(reader(server.url, page_size))
            moves = mover.moves
        else:
            seen, requests, passes, complete = asyncio.run(reader(server.url, page_size))
            moves = 0
        seconds = time.perf_counter() - started
    return Sample(
        layout, churn, method, seconds, len(seen) / seconds, requests, passes, complete,
        len(set(all_ids) - seen), moves,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--returns", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    rows = []
    for layout in ("spread", "one_day"):
        for churn in (False, True):
            for method in ("changed_since", "naive"):
                samples = [
                    run_once(layout, churn, method, args.returns, args.page_size, seed)
                    for seed in range(args.runs)
                ]
                med = statistics.median
                row = {
                    "layout": layout,
                    "churn": churn,
                    "method": method,
                    "returns_per_second": round(med(s.returns_per_second for s in samples)),
                    "requests": med(s.requests for s in samples),
                    "passes": med(s.passes for s in samples),
                    "complete_answers": sum(s.complete for s in samples),
                    "missed_median": med(s.missed for s in samples),
                    "missed_max": max(s.missed for s in samples),
                    "moves_during_read": med(s.moves for s in samples),
                }
                rows.append(row)
                print(json.dumps(row))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    machine = {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
               "python": platform.python_version()}  # fmt: skip
    (RESULTS / f"reveni_listing-{stamp}.json").write_text(
        json.dumps({"args": vars(args), "machine": machine, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
