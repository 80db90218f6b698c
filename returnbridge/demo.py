"""`returnbridge demo`: run the cycle the project has so far against local simulators.

Today that is the Centra side: start the Centra simulator on a free loopback port, load the
scenario, and read every order that a Reveni return in the scenario refers to, batched, through
the real client over HTTP. The run summary (contract.md §4) carries the simulator's ground truth
in `centra`, the API calls made, and the keys of later features present and empty.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from returnbridge.connectors.centra import CentraClient, Order
from returnbridge.scenario import Scenario
from returnbridge.simulators.centra.app import create_app
from returnbridge.simulators.server import serve_in_thread

SIM_TOKEN = "centra-sim-token"
SIM_SECRET = "centra-sim-secret"


@dataclass(frozen=True)
class OrderRead:
    """What Centra said about the order behind one Reveni return."""

    return_id: str
    order_number: int
    order: Order | None


def empty_summary() -> dict[str, Any]:
    """The run summary with every key present and empty."""
    return {
        "centra": {"returns": [], "stock_changes": [], "refunds": [], "orders_created": []},
        "exceptions": [],
        "gaps": [],
        "digests": [],
        "report": {},
        "api_calls": {"centra_requests": 0, "centra_mutations": 0, "reveni_requests": 0},
    }


async def _read_orders(url: str, scenario: Scenario) -> list[OrderRead]:
    returns = scenario.reveni.returns
    async with CentraClient(
        base_url=url,
        token=SIM_TOKEN,
        order_api_secret=SIM_SECRET,
        plan=scenario.centra.plan,
    ) as centra:
        orders = await centra.orders_by_number(r.order_number for r in returns)
    return [
        OrderRead(r.id or f"#{i + 1}", r.order_number, orders.get(r.order_number))
        for i, r in enumerate(returns)
    ]


def run_demo(scenario: Scenario) -> tuple[dict[str, Any], list[OrderRead]]:
    """Run the cycle once; return the run summary and what was read."""
    app = create_app(scenario, token=SIM_TOKEN, order_api_secret=SIM_SECRET)
    with serve_in_thread(app) as server:
        reads = asyncio.run(_read_orders(server.url, scenario))
        with httpx.Client(base_url=server.url, timeout=10) as control:
            effects = control.get("/_sim/effects").raise_for_status().json()
            counters = control.get("/_sim/counters").raise_for_status().json()
    summary = empty_summary()
    summary["centra"] = effects
    summary["api_calls"]["centra_requests"] = counters["requests"]
    summary["api_calls"]["centra_mutations"] = counters["mutations"]
    return summary, reads


def render_table(reads: list[OrderRead]) -> str:
    """A short human-readable table of the orders read."""
    header = ("return", "order", "in Centra", "status", "currency", "lines (sku shipped/ordered)")
    rows = [header]
    for read in reads:
        order = read.order
        if order is None:
            rows.append((read.return_id, str(read.order_number), "no", "-", "-", "-"))
            continue
        lines = ", ".join(f"{ln.sku} {ln.shipped_quantity}/{ln.quantity}" for ln in order.lines)
        rows.append((read.return_id, str(order.number), "yes", order.status, order.currency, lines))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
