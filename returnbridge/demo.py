"""`returnbridge demo`: run the cycle the project has so far against local simulators.

1. Start the Centra and Reveni simulators on free loopback ports, loaded from the scenario, and a
   webhook receiver for Reveni's notifications.
2. Subscribe to Reveni's `return.created` / `return.updated` webhooks through the API, then walk
   every scenario return through its status history (the simulator emits the webhooks).
3. Validation pass (design.md §2 step 1): list every return changed since the start of time,
   fetch back any return a webhook named that the listing did not bring (webhooks are thin: the
   payload is never trusted), batch-read the Centra orders and the returns already on them, and
   raise the validation exceptions with their owners. No Centra writes yet.

The run summary (contract.md §4) carries the Centra simulator's ground truth in `centra`, the
exceptions found, the API calls made, and the keys of later features present and empty.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from returnbridge.connectors.centra import CentraClient
from returnbridge.connectors.centra.inferred import DEFAULT_INFERRED
from returnbridge.connectors.reveni import ReveniClient
from returnbridge.connectors.reveni.models import Return as ReveniReturn
from returnbridge.connectors.reveni.models import WebhookEvent
from returnbridge.connectors.reveni.webhooks import WebhookError, parse_envelope
from returnbridge.connectors.reveni.wire import EVENT_TYPES
from returnbridge.core.codes import ReturnException
from returnbridge.core.validation import OrderHistory, validate_returns
from returnbridge.scenario import Scenario
from returnbridge.simulators.centra.app import create_app as create_centra_app
from returnbridge.simulators.reveni.app import create_app as create_reveni_app
from returnbridge.simulators.server import serve_in_thread

log = logging.getLogger(__name__)

CENTRA_TOKEN = "centra-sim-token"
CENTRA_SECRET = "centra-sim-secret"
REVENI_KEY = "reveni-sim-key"
# Every return ever changed: the first validation pass has no cursor yet.
BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)
WEBHOOK_SETTLE_SECONDS = 30.0


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


class WebhookInbox:
    """Receives Reveni webhooks for the demo: checks the envelope, keeps it, answers 200.

    Malformed requests get a 400 naming the problem and a warning in the log. The sync's own
    receiver, which commits to the ledger's inbox before answering, replaces this in the next
    milestone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[WebhookEvent] = []

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            try:
                event = parse_envelope(await request.body())
            except WebhookError as exc:
                log.warning("refused a Reveni webhook: %s", exc)
                return JSONResponse({"error": str(exc)}, status_code=400)
            with self._lock:
                self.events.append(event)
            return JSONResponse({"received": event.id})

        return Starlette(routes=[Route("/webhooks/reveni", receive, methods=["POST"])])

    def snapshot(self) -> list[WebhookEvent]:
        with self._lock:
            return list(self.events)


@dataclass
class DemoRun:
    """Everything the demo saw: the summary plus what the human table is made of."""

    summary: dict[str, Any]
    returns: list[ReveniReturn]
    exceptions: list[ReturnException]
    orders_found: int
    webhooks: list[WebhookEvent] = field(default_factory=list)
    walked_steps: int = 0


@contextmanager
def _simulators(scenario: Scenario) -> Iterator[tuple[str, str, str, WebhookInbox]]:
    inbox = WebhookInbox()
    centra_app = create_centra_app(scenario, token=CENTRA_TOKEN, order_api_secret=CENTRA_SECRET)
    reveni_app = create_reveni_app(scenario, api_key=REVENI_KEY)
    with (
        serve_in_thread(centra_app) as centra,
        serve_in_thread(reveni_app) as reveni,
        serve_in_thread(inbox.app()) as receiver,
    ):
        yield centra.url, reveni.url, receiver.url + "/webhooks/reveni", inbox


def _wait_for_webhooks(control: httpx.Client, timeout: float = WEBHOOK_SETTLE_SECONDS) -> None:
    """Until the Reveni simulator has nothing left to deliver (bounded)."""
    deadline = time.monotonic() + timeout
    while control.get("/_sim/webhooks").raise_for_status().json()["pending"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Reveni webhooks still pending after {timeout:.0f} s")
        time.sleep(0.02)


async def _subscribe(reveni_url: str, store_id: str, receiver_url: str) -> None:
    async with ReveniClient(reveni_url, REVENI_KEY, store_id) as reveni:
        await reveni.ensure_webhook(receiver_url, list(EVENT_TYPES))


async def _validation_pass(
    centra_url: str, reveni_url: str, scenario: Scenario, events: list[WebhookEvent]
) -> tuple[list[ReveniReturn], list[ReturnException], int]:
    async with (
        ReveniClient(reveni_url, REVENI_KEY, scenario.reveni.store_id) as reveni,
        CentraClient(
            base_url=centra_url,
            token=CENTRA_TOKEN,
            order_api_secret=CENTRA_SECRET,
            plan=scenario.centra.plan,
        ) as centra,
    ):
        changed = await reveni.changed_since(BEGINNING)
        returns = {r.id: r for r in changed.returns}
        for event in events:  # the receiver rule: fetch back by id, never trust the payload
            if event.data.resource_id not in returns:
                fetched = await reveni.fetch_for_event(event)
                if fetched is not None:
                    returns[fetched.id] = fetched
        numbers = {n for r in returns.values() if (n := r.order.number) is not None}
        orders = await centra.orders_by_number(numbers)
        existing = await centra.returns_for_orders(orders) if orders else {}
    histories = {n: OrderHistory(o, existing.get(n, [])) for n, o in orders.items()}
    found = validate_returns(
        returns.values(),
        histories,
        not_returnable=frozenset({DEFAULT_INFERRED.order_status_archived, "CANCELLED"}),
    )
    ordered = sorted(returns.values(), key=lambda r: (r.created_at, r.id))
    exceptions = [exc for ret in ordered for exc in found[ret.id]]
    return ordered, exceptions, len(orders)


def run_demo(scenario: Scenario) -> DemoRun:
    """Run the cycle once over real HTTP; return what happened."""
    with (
        _simulators(scenario) as (centra_url, reveni_url, receiver_url, inbox),
        httpx.Client(base_url=centra_url, timeout=10) as centra_control,
        httpx.Client(base_url=reveni_url, timeout=10) as reveni_control,
    ):
        asyncio.run(_subscribe(reveni_url, scenario.reveni.store_id, receiver_url))
        walked = reveni_control.post("/_sim/walk").raise_for_status().json()["steps"]
        _wait_for_webhooks(reveni_control)
        events = inbox.snapshot()
        returns, exceptions, orders_found = asyncio.run(
            _validation_pass(centra_url, reveni_url, scenario, events)
        )
        effects = centra_control.get("/_sim/effects").raise_for_status().json()
        centra_counters = centra_control.get("/_sim/counters").raise_for_status().json()
        reveni_counters = reveni_control.get("/_sim/counters").raise_for_status().json()
    summary = empty_summary()
    summary["centra"] = effects
    summary["exceptions"] = [exc.as_summary() for exc in exceptions]
    summary["api_calls"] = {
        "centra_requests": centra_counters["requests"],
        "centra_mutations": centra_counters["mutations"],
        "reveni_requests": reveni_counters["requests"],
    }
    return DemoRun(summary, returns, exceptions, orders_found, events, walked)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def render_report(run: DemoRun) -> str:
    """The demo's human output: what was read, then the exceptions by owner."""
    calls = run.summary["api_calls"]
    distinct = len({e.id for e in run.webhooks})
    lines = [
        f"Reveni: {len(run.returns)} returns; {run.walked_steps} status changes walked; "
        f"{len(run.webhooks)} webhooks received ({distinct} distinct); "
        f"{calls['reveni_requests']} API requests.",
        f"Centra: {run.orders_found} orders read; {calls['centra_requests']} API requests, "
        f"{calls['centra_mutations']} writes (validation only, nothing written yet).",
        "",
    ]
    if not run.exceptions:
        lines.append("Validation: every return is valid.")
        return "\n".join(lines)
    lines.append(f"Validation exceptions ({len(run.exceptions)}):")
    rows = [
        (
            e.code,
            e.owner.value,
            "-" if e.order_number is None else str(e.order_number),
            e.reveni_return_id or "-",
            e.sku or "-",
            e.detail,
        )
        for e in run.exceptions
    ]
    lines.append(_table(("code", "owner", "order", "return", "sku", "detail"), rows))
    owners = Counter(e.owner.value for e in run.exceptions)
    lines.append("")
    lines.append("By owner: " + ", ".join(f"{o} {n}" for o, n in sorted(owners.items())))
    return "\n".join(lines)
