"""In-process budget for Centra calls: our share of the environment's rate limits.

Centra's limits are per environment and shared by every integration ([C] [RL-new]), so
returnbridge spends only `budget_share` of each quota
(docs/architecture.md#governed-access-to-centra). One `Governor` is shared by every client of the
same environment in a process (`Governor.shared`), so concurrent flows and tasks draw from one
budget; across processes the ledger's budget gate (`sync/ledger_budget.py`) holds the same
windows.

Each budget is an exact sliding window: at most `capacity = floor(quota x share)` calls in *any*
window of the quota's length. That is stricter than a continuous-refill token bucket of the same
capacity (which admits a full burst plus a full refill, up to twice the capacity, in one window),
and it implies the bucket never runs dry: whether Centra meters with token buckets, fixed windows or
sliding windows (the algorithm is [INF]), a share of 1.0 never earns a 429 from our own traffic.
The sustained rate is the same as the bucket's; only the burst is smaller.

Query complexity is budgeted the same way, weighted by each request's estimated cost
(complexity.py; the transport corrects it with the cost Centra reports). A single request costing
more than the whole window is admitted once the window is empty: it can never fit otherwise, and
the client sizes its batches to avoid that.

Callers are served first come, first served per window: while a caller waits for a window to drain,
a later caller takes no units from that window even if its smaller request would fit, or a stream
of small reads would keep a large batched read (which needs most of the complexity window) waiting
forever. A later caller that needs none of the windows an earlier one waits for goes ahead: reads
do not queue behind a mutation that waits for the hourly mutation quota.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from returnbridge.clock import MonotonicClock, SystemMonotonicClock
from returnbridge.connectors.centra.plans import Plan, RateLimitInterval, RateLimitType, get_plan


class SlidingWindow:
    """At most `capacity` units granted in any `length`-second window (a log of recent grants)."""

    def __init__(self, capacity: int, length: float) -> None:
        self.capacity = capacity
        self.length = length
        self._grants: deque[tuple[float, int]] = deque()
        self._total = 0

    def _evict(self, now: float) -> None:
        # The epsilon keeps float rounding from leaving a grant a hair inside the window after
        # sleeping exactly until it should have left (which would spin on ever-tinier sleeps).
        while self._grants and self._grants[0][0] + self.length <= now + 1e-9:
            self._total -= self._grants.popleft()[1]

    def wait_time(self, now: float, amount: int = 1) -> float:
        """Seconds until `amount` more units fit; 0 if they fit now."""
        self._evict(now)
        if self._total + amount <= self.capacity or self._total == 0:
            return 0.0  # fits, or can never fit and the window is as empty as it gets
        # Units that must leave the window first; all of them if `amount` can never fit.
        must_leave = self._total if amount > self.capacity else self._total + amount - self.capacity
        left = 0
        for granted_at, units in self._grants:
            left += units
            if left >= must_leave:
                return granted_at + self.length - now
        return self.length  # unreachable: the whole log adds up to `_total`

    def take(self, now: float, amount: int = 1) -> None:
        """Record `amount` units granted at `now` (not before the latest grant)."""
        if amount > 0:
            self._grants.append((now, amount))
            self._total += amount

    @property
    def used(self) -> int:
        """Units granted in the window as of the last eviction."""
        return self._total


@dataclass(frozen=True)
class Budget:
    """Capacities actually granted to us, per kind and window (for logs and the benchmark)."""

    requests_10s: int | None
    requests_1h: int | None
    mutations_10s: int | None
    mutations_1h: int | None
    complexity_10s: int | None
    complexity_1h: int | None


# How soon a caller queued behind an earlier one looks again when the earlier one is due now.
_QUEUE_POLL_SECONDS = 0.001


@dataclass
class _Waiter:
    """A caller waiting in `acquire`: the windows it waits for and when it expects to fit."""

    windows: frozenset[SlidingWindow] = frozenset()
    ready_at: float = -math.inf


def _capacity(quota: int, share: float) -> int:
    return max(1, math.floor(quota * share + 1e-9))


class Governor:
    """Waits until a Centra call fits the budget; pauses everyone after a 429.

    `acquire(mutation, complexity)` takes one request token, one mutation token for a mutation
    (a mutation is also a request, [C] [RL-old]) and `complexity` complexity tokens.
    Check-and-take is synchronous and guarded by a thread lock, so one governor is safe across
    tasks, event loops and threads. The `unlimited` plan never waits for quota; a `Retry-After`
    from Centra is honoured on every plan, since it is Centra saying no, not our estimate.
    """

    _registry: ClassVar[dict[tuple[str, str, float], Governor]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, plan: Plan | str, share: float, *, clock: MonotonicClock | None = None
    ) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"budget share must be in (0, 1], got {share}")
        self.plan = get_plan(plan) if isinstance(plan, str) else plan
        self.share = share
        self.clock: MonotonicClock = clock or SystemMonotonicClock()
        self._lock = threading.Lock()
        self._paused_until = -math.inf
        # Callers waiting in `acquire`, oldest first, with the windows each one waits for.
        self._waiting: dict[object, _Waiter] = {}
        self._requests = self._windows(RateLimitType.REQUEST_COUNT)
        self._mutations = self._windows(RateLimitType.MUTATION_COUNT)
        self._complexity = self._windows(RateLimitType.QUERY_COMPLEXITY)
        self.granted_requests = 0
        self.granted_mutations = 0
        self.granted_complexity = 0

    def _windows(self, kind: RateLimitType) -> list[SlidingWindow]:
        quota = self.plan.quota(kind)
        if quota is None:
            return []
        return [
            SlidingWindow(_capacity(quota.for_interval(interval), self.share), interval.seconds)
            for interval in RateLimitInterval
        ]

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
        """The capacities this governor grants, per kind and window."""

        def caps(windows: list[SlidingWindow]) -> tuple[int | None, int | None]:
            return (windows[0].capacity, windows[1].capacity) if windows else (None, None)

        return Budget(*caps(self._requests), *caps(self._mutations), *caps(self._complexity))

    async def acquire(self, mutation: bool = False, complexity: int = 0) -> None:
        """Return once one request (a mutation, if `mutation`) costing `complexity` may be sent.

        Callers waiting for the same window are served in arrival order. Units are taken only at
        the moment this returns, so a caller cancelled while waiting takes nothing.
        """
        ticket = object()
        with self._lock:
            self._waiting[ticket] = _Waiter()
        try:
            while True:
                wait = self._try_take(ticket, mutation, max(0, complexity))
                if wait <= 0:
                    return
                await self.clock.sleep(wait)
        finally:
            with self._lock:
                self._waiting.pop(ticket, None)  # still there if cancelled while waiting

    def charge(self, complexity: int) -> None:
        """Record complexity spent beyond what was acquired (Centra reported a higher cost)."""
        if complexity <= 0:
            return
        with self._lock:
            now = self.clock.monotonic()
            for window in self._complexity:
                window.take(now, complexity)
            self.granted_complexity += complexity

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (Centra answered 429 with this Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock.monotonic() + max(0.0, seconds))

    def _try_take(self, ticket: object, mutation: bool, complexity: int) -> float:
        """Take the units and return 0, or return how long to sleep before asking again."""
        with self._lock:
            now = self.clock.monotonic()
            costs = [(w, 1) for w in self._requests]
            costs += [(w, 1) for w in self._mutations] if mutation else []
            costs += [(w, complexity) for w in self._complexity] if complexity else []
            if now < self._paused_until:
                return self._paused_until - now
            waits = {w: w.wait_time(now, amount) for w, amount in costs}
            wait = max(waits.values(), default=0.0)
            mine = self._waiting[ticket]
            for other, earlier in self._waiting.items():
                if other is ticket:
                    break
                if not earlier.windows.isdisjoint(waits):
                    # Someone asked first for a window this needs: they go first, then look again.
                    return max(wait, earlier.ready_at - now, _QUEUE_POLL_SECONDS)
            if wait > 0:
                mine.windows = frozenset(w for w, seconds in waits.items() if seconds > 0)
                mine.ready_at = now + wait
                return wait
            del self._waiting[ticket]
            for window, amount in costs:
                window.take(now, amount)
            self.granted_requests += 1
            self.granted_mutations += int(mutation)
            self.granted_complexity += complexity
            return 0.0

    def complexity_capacity(self) -> int | None:
        """The complexity we may spend per 10 seconds (None: not limited)."""
        return self._complexity[0].capacity if self._complexity else None
