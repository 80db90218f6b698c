"""Test doubles for the Reveni client tests: wire payloads, a scripted HTTP transport, a sleep
that only records, and a list endpoint whose returns change between page requests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from returnbridge.connectors.reveni import DEFAULT_REVENI_INFERRED, ReveniClient, ReveniInferred

BASE = "http://reveni.test"
STORE = "store_1"
PREFIX = f"{BASE}/merchants/v0/stores/{STORE}"
T0 = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)

Handler = Callable[[httpx.Request], httpx.Response]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def return_payload(
    return_id: str = "a3a7640d671c4cde8adff13560e25f7b",
    updated_at: datetime = T0,
    *,
    status: str = "in_progress",
    **overrides: Any,
) -> dict[str, Any]:
    """A valid Return as Reveni would send it (decimal-string money, lower-case statuses)."""
    body: dict[str, Any] = {
        "id": return_id,
        "store_id": STORE,
        "type": "refund",
        "instant": False,
        "status": status,
        "order": {"id": "f" * 32, "external_id": None, "name": "1001"},
        "customer": {"email": "anna@example.com", "first_name": "Anna", "last_name": None},
        "return_items": [
            {
                "item_id": "item_1",
                "sku": "TEE-BLK-M",
                "quantity": 1,
                "return_reason": "too_small",
                "exchange": None,
                "status": "pending",
                "unit_price": "299.00",
                "currency": "SEK",
            }
        ],
        "refunds": [],
        "delivery": {"carrier": "sim", "tracking_number": "TRK1", "label_status": "created"},
        "summary": {"refund_total": "0.00", "fees": "0.00", "bonuses": "0.00"},
        "created_at": iso(T0 - timedelta(days=1)),
        "updated_at": iso(updated_at),
    }
    body.update(overrides)
    return body


def envelope(
    results: list[dict[str, Any]],
    *,
    count: int | None = None,
    next_url: str | None = None,
    inferred: ReveniInferred = DEFAULT_REVENI_INFERRED,
) -> dict[str, Any]:
    return {
        inferred.envelope_count_key: len(results) if count is None else count,
        inferred.envelope_next_key: next_url,
        inferred.envelope_previous_key: None,
        inferred.envelope_items_key: results,
    }


def scripted(*steps: Handler | httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler that plays `steps` in order (the last one repeats) and records each request."""
    seen: list[httpx.Request] = []
    queue: Iterator[Handler | httpx.Response | Exception] = iter(steps)
    last = steps[-1]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = next(queue, last)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)

    return handler, seen


class RecordingSleep:
    """Stands in for asyncio.sleep: records the waits, never waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client_for(
    handler: Handler,
    *,
    inferred: ReveniInferred = DEFAULT_REVENI_INFERRED,
    sleep: RecordingSleep | None = None,
    **kwargs: Any,
) -> ReveniClient:
    return ReveniClient(
        BASE,
        "key-1",
        STORE,
        inferred=inferred,
        http_transport=httpx.MockTransport(handler),
        sleep=sleep or RecordingSleep(),
        **kwargs,
    )


def request_json(request: httpx.Request) -> Any:
    return json.loads(request.content)


# --------------------------------------------------------------------------- a changing list


@dataclass
class ChangingList:
    """`GET returns` over a mutable set of returns, sorted by (updated_at, id) ascending, with
    page-number pagination and an inclusive `updated_from` (date or datetime precision, parsed
    here independently of the client's encoding). `schedule[i]` runs just before request i is
    answered, so a test decides exactly which changes land between which pages."""

    inferred: ReveniInferred
    rows: dict[str, datetime]
    now: datetime
    schedule: dict[int, Callable[[ChangingList], None]] = field(default_factory=dict)
    requests: int = 0
    served: dict[str, datetime] = field(default_factory=dict)
    log: list[tuple[str | None, int, int, list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.rows and self.now <= max(self.rows.values()):
            raise ValueError("now must be after every updated_at")

    def tick(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def change(self, return_id: str, seconds: float = 1.0) -> None:
        """The return changes: its updated_at becomes a new, strictly later now."""
        self.rows[return_id] = self.tick(seconds)

    def add(self, return_id: str, seconds: float = 1.0) -> None:
        self.rows[return_id] = self.tick(seconds)

    def ordered(self) -> list[tuple[datetime, str]]:
        return sorted((at, rid) for rid, at in self.rows.items())

    def _bound(self, text: str) -> datetime:
        if self.inferred.date_filter_precision == "date":
            day = date.fromisoformat(text)
            zone = ZoneInfo(self.inferred.date_filter_timezone)
            return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
        return datetime.fromisoformat(text).astimezone(UTC)

    def handler(self, request: httpx.Request) -> httpx.Response:
        inf = self.inferred
        action = self.schedule.get(self.requests)
        self.requests += 1
        if action is not None:
            action(self)
        params = request.url.params
        raw_from = params.get(inf.param_updated_from)
        lower = self._bound(raw_from) if raw_from is not None else None
        page = int(params.get(inf.param_page, "1"))
        size = int(params.get(inf.param_page_size, str(inf.page_size_default)))
        rows = [(at, rid) for at, rid in self.ordered() if lower is None or at >= lower]
        start = (page - 1) * size
        if page > 1 and start >= len(rows):
            return httpx.Response(404, json={inf.error_detail_key: "Invalid page."})
        shown = rows[start : start + size]
        for at, rid in shown:
            self.served[rid] = max(self.served.get(rid, at), at)
        self.log.append((raw_from, page, size, [rid for _, rid in shown]))
        more = start + size < len(rows)
        return httpx.Response(
            200,
            json=envelope(
                [return_payload(rid, at) for at, rid in shown],
                count=len(rows),
                next_url=f"{PREFIX}/returns?page={page + 1}" if more else None,
                inferred=inf,
            ),
        )
