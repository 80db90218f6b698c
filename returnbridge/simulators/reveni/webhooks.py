"""Webhook subscriptions and at-least-once delivery of the simulated Reveni.

Subscriptions are made through the merchant API (`POST webhooks`, [R-OBS S4]). Every change
raises an event `{id, event, created, data: {resource_id, status}}` ([R-OBS S4] envelope); it is
queued for every subscription that asked for its type and POSTed as JSON by a background task,
so a slow or dead receiver never delays the API. The body is fixed when the event is raised:
retries, duplicates and replays send the same bytes and the same event id.

- A non-2xx answer or a transport error (timeout: `inferred.webhook_timeout_seconds`) is retried
  after `inferred.webhook_retry_delays_seconds` (times the fault setting `webhook_delay_scale`);
  after the last one the delivery counts as failed ([INFER]).
- Seeded faults, drawn per delivery when the event is raised (`faults.py`): dropped (listed,
  replayable), duplicated, or held back and sent right after the subscription's next event
  (`held`; one at a time per subscription: while one is held, the next event is not held but
  releases it; `flush` releases every held one).
- Replays (`replay`) draw no faults. With a secret (`create_app(webhook_secret=...)` or
  `/_sim/webhooks`), each attempt carries `inferred.webhook_signature_header` =
  `sign_body(secret, body)` ([INFER]: no Reveni source mentions signing).
- `pending` counts queued, in-flight and waiting-to-retry deliveries; held ones are separate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import httpx

from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.connectors.reveni.webhooks import sign_body
from returnbridge.simulators.reveni.faults import FaultInjector
from returnbridge.simulators.reveni.records import hex_id
from returnbridge.simulators.reveni.wireformat import timestamp

LOG_SIZE = 100


@dataclass
class Subscription:
    id: str
    url: str
    event_types: list[str]
    created_at: datetime

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "event_types": list(self.event_types),
            "created_at": timestamp(self.created_at),
        }


@dataclass
class Event:
    id: str
    event: str
    resource_id: str
    status: str
    body: bytes


@dataclass
class Delivery:
    event: Event
    subscription_id: str
    url: str
    generation: int
    attempts: int = 0
    replay: bool = False


@dataclass
class WebhookStats:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    replayed: int = 0
    attempts: int = 0
    last_error: str | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # last LOG_SIZE, newest last


class WebhookDeliverer:
    """Subscriptions, the event log and the background sender (`start`/`stop` in the server's
    event loop). Every method may be called from any thread."""

    def __init__(
        self, inferred: ReveniInferred, faults: FaultInjector, secret: str | None = None
    ) -> None:
        self.inferred = inferred
        self.faults = faults
        self.secret = secret
        self.subscriptions: dict[str, Subscription] = {}
        self._subscribed = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self.generation = 0
        self._in_flight = 0
        self._reset_data()

    def _reset_data(self) -> None:
        self.stats = WebhookStats()
        self.events: dict[str, Event] = {}
        self._queue: deque[Delivery] = deque()
        self._held: dict[str, list[Delivery]] = {}
        self._dropped: list[Delivery] = []
        self._failed: list[Delivery] = []
        self._retrying = 0

    def reset(self) -> None:
        """Forget every event and delivery (a new scenario); subscriptions and secret stay."""
        with self._lock:
            self.generation += 1
            self._reset_data()

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, url: str, event_types: list[str], now: datetime) -> Subscription:
        with self._lock:
            self._subscribed += 1
            sub = Subscription(hex_id("webhook", self._subscribed), url, event_types, now)
            self.subscriptions[sub.id] = sub
            return sub

    def unsubscribe(self, subscription_id: str) -> bool:
        with self._lock:
            return self.subscriptions.pop(subscription_id, None) is not None

    def list_subscriptions(self) -> list[Subscription]:
        with self._lock:
            return list(self.subscriptions.values())

    def set_secret(self, secret: str | None) -> None:
        with self._lock:
            self.secret = secret

    # ------------------------------------------------------------------ events

    def emit(self, event_type: str, resource_id: str, status: str, created: datetime) -> Event:
        """Raise an event and queue it for its subscribers, drawing the seeded faults."""
        with self._lock:
            event_id = hex_id("event", self.generation, len(self.events) + 1)
            envelope = {
                "id": event_id,
                "event": event_type,
                "created": int(created.timestamp()),
                "data": {"resource_id": resource_id, "status": status},
            }
            body = json.dumps(envelope, separators=(",", ":")).encode()
            event = Event(event_id, event_type, resource_id, status, body)
            self.events[event.id] = event
            for sub in self.subscriptions.values():
                if event_type in sub.event_types:
                    self._route(Delivery(event, sub.id, sub.url, self.generation))
        self._notify()
        return event

    def _route(self, delivery: Delivery) -> None:
        fault = self.faults.draw_webhook()
        if fault.drop:
            self.stats.dropped += 1
            self._dropped.append(delivery)
            self._log(delivery, "dropped", None)
            return
        copies = [delivery]
        if fault.duplicate:
            self.stats.duplicated += 1
            copies.append(replace(delivery))
        held = self._held.pop(delivery.subscription_id, None)
        if held is not None:
            self._queue.extend(copies)  # the next event goes first, then the held one
            self._queue.extend(held)
        elif fault.out_of_order:
            self.stats.reordered += 1
            self._held[delivery.subscription_id] = copies
        else:
            self._queue.extend(copies)

    def replay(self, event_ids: list[str] | None = None) -> int:
        """Re-send events without faults: the given ones to every subscription that wants their
        type, or (default) every dropped delivery to its subscription. Returns deliveries queued."""
        with self._lock:
            if event_ids is None:
                queued = [
                    Delivery(d.event, d.subscription_id, d.url, self.generation, replay=True)
                    for d in self._dropped
                    if d.subscription_id in self.subscriptions
                ]
                self._dropped.clear()
            else:
                unknown = [e for e in event_ids if e not in self.events]
                if unknown:
                    raise ValueError(f"event_ids: unknown event(s) {unknown}")
                queued = [
                    Delivery(self.events[e], sub.id, sub.url, self.generation, replay=True)
                    for e in event_ids
                    for sub in self.subscriptions.values()
                    if self.events[e].event in sub.event_types
                ]
                replayed = {(d.event.id, d.subscription_id) for d in queued}
                self._dropped = [
                    d for d in self._dropped if (d.event.id, d.subscription_id) not in replayed
                ]
            self.stats.replayed += len(queued)
            self._queue.extend(queued)
        self._notify()
        return len(queued)

    def flush(self) -> int:
        """Release every held-back delivery now; returns how many."""
        with self._lock:
            released = [d for held in self._held.values() for d in held]
            self._held.clear()
            self._queue.extend(released)
        self._notify()
        return len(released)

    # ------------------------------------------------------------------ reads

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_flight + self._retrying

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            s = self.stats
            return {
                "subscriptions": [sub.view() for sub in self.subscriptions.values()],
                "signed": self.secret is not None,
                "pending": len(self._queue) + self._in_flight + self._retrying,
                "held": sum(len(h) for h in self._held.values()),
                "events": len(self.events),
                "delivered": s.delivered,
                "failed": s.failed,
                "dropped": s.dropped,
                "duplicated": s.duplicated,
                "reordered": s.reordered,
                "replayed": s.replayed,
                "attempts": s.attempts,
                "last_error": s.last_error,
                "dropped_events": [
                    {"event_id": d.event.id, "subscription_id": d.subscription_id}
                    for d in self._dropped
                ],
                "failed_events": [
                    {"event_id": d.event.id, "subscription_id": d.subscription_id}
                    for d in self._failed
                ],
                "deliveries": list(s.deliveries),
            }

    # ------------------------------------------------------------------ the sender

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="reveni-sim-webhooks")
        self._wake.set()

    async def stop(self) -> None:
        for timer in list(self._timers):
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed at shutdown
                loop.call_soon_threadsafe(wake.set)

    async def _run(self) -> None:
        assert self._wake is not None
        timeout = self.inferred.webhook_timeout_seconds
        async with httpx.AsyncClient(timeout=timeout) as client:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while True:
                    with self._lock:
                        if not self._queue:
                            break
                        delivery = self._queue.popleft()
                        self._in_flight += 1
                    try:
                        await self._attempt(client, delivery)
                    finally:
                        with self._lock:
                            self._in_flight -= 1

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        with self._lock:
            if delivery.generation != self.generation:
                return  # raised before the last load
            delivery.attempts += 1
            self.stats.attempts += 1
            secret = self.secret
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[self.inferred.webhook_signature_header] = sign_body(
                secret, delivery.event.body, self.inferred
            )
        status: int | None = None
        try:
            response = await client.post(delivery.url, content=delivery.event.body, headers=headers)
            status = response.status_code
            ok = response.is_success
            error = None if ok else f"HTTP {status}"
        except Exception as exc:  # any failure to send (timeout, refused, bad URL) is an attempt
            ok, error = False, f"{type(exc).__name__}: {exc}"
        with self._lock:
            if delivery.generation != self.generation:
                return
            if ok:
                self.stats.delivered += 1
                self._log(delivery, "delivered", status)
                return
            self.stats.last_error = error
            delays = self.inferred.webhook_retry_delays_seconds
            if delivery.attempts > len(delays):
                self.stats.failed += 1
                self._failed.append(delivery)
                self._log(delivery, "failed", status)
                return
            self._retrying += 1
            delay = delays[delivery.attempts - 1] * self.faults.webhook_delay_scale
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def requeue() -> None:
            if timer is not None:
                self._timers.discard(timer)
            with self._lock:
                if delivery.generation == self.generation:
                    self._retrying -= 1
                    self._queue.append(delivery)
            if self._wake is not None:
                self._wake.set()

        timer = loop.call_later(delay, requeue)
        self._timers.add(timer)

    def _log(self, delivery: Delivery, outcome: str, http_status: int | None) -> None:
        """Append to the delivery log; hold the lock."""
        self.stats.deliveries.append(
            {
                "event_id": delivery.event.id,
                "event": delivery.event.event,
                "resource_id": delivery.event.resource_id,
                "status": delivery.event.status,
                "subscription_id": delivery.subscription_id,
                "url": delivery.url,
                "outcome": outcome,
                "http_status": http_status,
                "attempts": delivery.attempts,
                "replay": delivery.replay,
            }
        )
        del self.stats.deliveries[:-LOG_SIZE]
