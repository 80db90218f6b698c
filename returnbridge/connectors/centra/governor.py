"""In-process budget for Centra calls: our share of the environment's rate limits.

Centra's limits are per environment and shared by every integration (reference/centra.md §1.6), so
returnbridge spends only `budget_share` of each quota (design.md §6). One `Governor` is shared by
every client of the same environment in a process (`Governor.shared`), so concurrent flows and
tasks draw from one budget; across processes the Prefect rate limit does the same job.

Each budget is an exact sliding window: at most `capacity = floor(quota x share)` calls in *any*
window of the quota's length. That is stricter than a continuous-refill token bucket of the same
capacity (which admits a full burst plus a full refill, up to twice the capacity, in one window),
and it implies the bucket never runs dry: whether Centra meters with token buckets, fixed windows or
sliding windows (the algorithm is [INF]), a share of 1.0 never earns a 429 from our own traffic.
The sustained rate is the same as the bucket's; only the burst is smaller.

The complexity bucket is not governed: our documents are small and fixed, far below it.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from returnbridge.connectors.centra.plans import Plan, RateLimitInterval, get_plan


class Clock(Protocol):
    """Time source of a governor; tests inject a fake one so nothing really sleeps."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> Awaitable[None]: ...


class SystemClock:
    """Real time: `time.monotonic` and `asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SlidingWindow:
    """At most `capacity` grants in any `length`-second window (timestamps of recent grants)."""

    def __init__(self, capacity: int, length: float) -> None:
        self.capacity = capacity
        self.length = length
        self._grants: deque[float] = deque()

    def wait_time(self, now: float) -> float:
        """Seconds until one more grant fits; 0 if it fits now."""
        while self._grants and self._grants[0] <= now - self.length:
            self._grants.popleft()
        if len(self._grants) < self.capacity:
            return 0.0
        # The oldest grant inside the window leaves it `length` seconds after it was made.
        return self._grants[-self.capacity] + self.length - now

    def take(self, now: float) -> None:
        self._grants.append(now)


@dataclass(frozen=True)
class Budget:
    """Capacities actually granted to us, per kind and window (for logs and the benchmark)."""

    requests_10s: int | None
    requests_1h: int | None
    mutations_10s: int | None
    mutations_1h: int | None


def _capacity(quota: int, share: float) -> int:
    return max(1, math.floor(quota * share + 1e-9))


class Governor:
    """Waits until a Centra call fits the budget; pauses everyone after a 429.

    `acquire(mutation)` takes one request token, plus one mutation token for a mutation (a mutation
    is also a request, [C] [RL-old]). Check-and-take is synchronous and guarded by a thread lock,
    so one governor is safe across tasks, event loops and threads. The `unlimited` plan never
    waits for quota; a `Retry-After` from Centra is honoured on every plan, since it is Centra
    saying no, not our estimate.
    """

    _registry: ClassVar[dict[tuple[str, str, float], Governor]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, plan: Plan | str, share: float, *, clock: Clock | None = None) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"budget share must be in (0, 1], got {share}")
        self.plan = get_plan(plan) if isinstance(plan, str) else plan
        self.share = share
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._paused_until = -math.inf
        self._requests: list[SlidingWindow] = []
        self._mutations: list[SlidingWindow] = []
        for interval in RateLimitInterval:
            if self.plan.requests is not None:
                quota = self.plan.requests.for_interval(interval)
                self._requests.append(SlidingWindow(_capacity(quota, share), interval.seconds))
            if self.plan.mutations is not None:
                quota = self.plan.mutations.for_interval(interval)
                self._mutations.append(SlidingWindow(_capacity(quota, share), interval.seconds))
        self.granted_requests = 0
        self.granted_mutations = 0

    @classmethod
    def shared(cls, base_url: str, plan: str, share: float) -> Governor:
        """The process-wide governor of one Centra environment at one plan and share."""
        key = (base_url.rstrip("/"), plan, share)
        with cls._registry_lock:
            governor = cls._registry.get(key)
            if governor is None:
                governor = cls._registry[key] = cls(plan, share)
            return governor

    @property
    def budget(self) -> Budget:
        def caps(windows: list[SlidingWindow]) -> tuple[int | None, int | None]:
            return (windows[0].capacity, windows[1].capacity) if windows else (None, None)

        r10, r1h = caps(self._requests)
        m10, m1h = caps(self._mutations)
        return Budget(r10, r1h, m10, m1h)

    async def acquire(self, mutation: bool = False) -> None:
        """Return once one request (and one mutation, if `mutation`) may be sent now."""
        while True:
            wait = self._try_take(mutation)
            if wait <= 0:
                return
            await self.clock.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (Centra answered 429 with this Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock.monotonic() + max(0.0, seconds))

    def _try_take(self, mutation: bool) -> float:
        with self._lock:
            now = self.clock.monotonic()
            if now < self._paused_until:
                return self._paused_until - now
            windows = self._requests + (self._mutations if mutation else [])
            wait = max((w.wait_time(now) for w in windows), default=0.0)
            if wait > 0:
                return wait
            for window in windows:
                window.take(now)
            self.granted_requests += 1
            self.granted_mutations += int(mutation)
            return 0.0


JitterSource = Callable[[], float]
