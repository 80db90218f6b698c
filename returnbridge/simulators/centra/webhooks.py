"""The Centra Webhook plugin in Integration-API mode, as an emitter ([C] [WH]).

Each change in the simulated state becomes an event `{type, action, date, id}`; a background task
POSTs them form-encoded (`payload=<json {"events": [...]}>`, up to `max_batch` per call, 100 by
default) with `X-Centra-Signature: t=<unix>,v1=<hmac>`, a 5-second timeout and optional retries
with back-off (Centra's default: none). Request handling only appends to a queue, so a slow or
dead receiver never delays the API. Events raised while no URL is configured are discarded, as
Centra would not have sent them either.

Event names: `order` + `insert` / `update` (id = order number) and `return` + `insert` / `update`
are [C]/[C-ex] shapes; a stock change is sent as `product` + `update` with the product id ([INF]:
the published type list does not mention stock). The event `date` has the [C-ex] shape
`2021-01-29 14:40:58.628033` without a zone; the simulator prints it in the merchant's zone
(`CentraInferred.merchant_timezone`), like Centra's other local times ([INF]).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from returnbridge.connectors.centra.webhooks import (
    SIGNATURE_HEADER,
    encode_payload,
    signature_header,
)
from returnbridge.simulators.clock import SimClock


@dataclass
class WebhookStats:
    delivered_batches: int = 0
    delivered_events: int = 0
    failed_batches: int = 0
    discarded_events: int = 0
    attempts: int = 0
    last_error: str | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # last 100, newest last


class WebhookEmitter:
    """Queue plus background sender. `start()` / `stop()` run inside the server's event loop."""

    def __init__(
        self,
        clock: SimClock,
        *,
        tz: ZoneInfo | None = None,
        url: str | None = None,
        secret: str | None = None,
        max_batch: int = 100,
        timeout: float = 5.0,
        retries: int = 0,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.clock = clock
        self.tz = tz or ZoneInfo("UTC")
        self.url, self.secret = url, secret
        self.max_batch, self.timeout = max_batch, timeout
        self.retries, self.backoff_seconds = retries, backoff_seconds
        self.stats = WebhookStats()
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0

    @property
    def configured(self) -> bool:
        return bool(self.url and self.secret)

    def configure(
        self,
        url: str | None,
        secret: str | None,
        *,
        max_batch: int | None = None,
        retries: int | None = None,
        backoff_seconds: float | None = None,
        timeout: float | None = None,
    ) -> None:
        if (url is None) != (secret is None):
            raise ValueError("url and secret go together")
        if max_batch is not None and not 1 <= max_batch <= 100:
            raise ValueError("max_batch must be between 1 and 100")
        with self._lock:
            self.url, self.secret = url, secret
            if max_batch is not None:
                self.max_batch = max_batch
            if retries is not None:
                self.retries = retries
            if backoff_seconds is not None:
                self.backoff_seconds = backoff_seconds
            if timeout is not None:
                self.timeout = timeout

    def enqueue(self, object_type: str, action: str, object_id: int) -> None:
        """Record one event (any thread); it is sent by the background task."""
        event = {
            "type": object_type,
            "action": action,
            "date": self.clock.now().astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "id": object_id,
        }
        with self._lock:
            if not self.configured:
                self.stats.discarded_events += 1
                return
            self._queue.append(event)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
                loop.call_soon_threadsafe(wake.set)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "configured": self.configured,
                "url": self.url,
                "max_batch": self.max_batch,
                "retries": self.retries,
                "pending": len(self._queue) + self._in_flight,
                "delivered_batches": self.stats.delivered_batches,
                "delivered_events": self.stats.delivered_events,
                "failed_batches": self.stats.failed_batches,
                "discarded_events": self.stats.discarded_events,
                "attempts": self.stats.attempts,
                "last_error": self.stats.last_error,
                "deliveries": list(self.stats.deliveries),
            }

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="centra-sim-webhooks")
        if self._queue:
            self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _run(self) -> None:
        assert self._wake is not None
        async with httpx.AsyncClient() as client:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while True:
                    with self._lock:
                        batch = [
                            self._queue.popleft()
                            for _ in range(min(self.max_batch, len(self._queue)))
                        ]
                        url, secret = self.url, self.secret
                        self._in_flight = len(batch)
                    if not batch:
                        break
                    try:
                        if url and secret:
                            await self._deliver(client, url, secret, batch)
                    finally:
                        with self._lock:
                            self._in_flight = 0

    async def _deliver(
        self, client: httpx.AsyncClient, url: str, secret: str, batch: list[dict[str, Any]]
    ) -> None:
        body = encode_payload({"events": batch})
        outcome: dict[str, Any] = {"events": len(batch), "status": None, "attempts": 0}
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            outcome["attempts"] = attempt + 1
            self.stats.attempts += 1
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                SIGNATURE_HEADER: signature_header(secret, int(time.time()), body),
            }
            try:
                response = await client.post(
                    url, content=body, headers=headers, timeout=self.timeout
                )
            except httpx.HTTPError as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                continue
            outcome["status"] = response.status_code
            if response.is_success:
                self.stats.delivered_batches += 1
                self.stats.delivered_events += len(batch)
                self._log(outcome)
                return
            self.stats.last_error = f"HTTP {response.status_code}"
        self.stats.failed_batches += 1
        self._log(outcome)

    def _log(self, outcome: dict[str, Any]) -> None:
        with self._lock:
            self.stats.deliveries.append(outcome)
            del self.stats.deliveries[:-100]
