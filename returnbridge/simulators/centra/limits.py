"""Centra's rate limits: three buckets x two windows, metered as token buckets ([C] [RL-new]).

Each (type, interval) pair is a bucket whose capacity is the plan's quota, refilled continuously
at quota / window-length per second ([INF]: Centra's metering algorithm is not published; the
docs say "token buckets"). A client that never exceeds the quota in any sliding window (the
client's governor) therefore never sees a 429 from here. A request is admitted only if every
bucket holds its cost; a refused request takes nothing. The `unlimited` plan admits everything.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Mapping

from returnbridge.connectors.centra.plans import Plan, RateLimitInterval, RateLimitType


class TokenBucket:
    """Capacity `capacity`, refilled at `capacity / window` tokens per second."""

    def __init__(self, capacity: int, window: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / window
        self.window = window
        self.tokens = float(capacity)
        self.updated = now

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.capacity), self.tokens + elapsed * self.rate)
        self.updated = now

    def wait_for(self, amount: int) -> float:
        """Seconds until `amount` tokens are available (after `refill`); 0 if they are."""
        if amount <= self.tokens + 1e-9:
            return 0.0
        if amount > self.capacity:
            return self.window  # can never fit; tell the client to come back after a window
        return (amount - self.tokens) / self.rate


class RateLimiter:
    """Admission control for one simulated Centra environment."""

    def __init__(self, plan: Plan, time_source: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self.time_source = time_source
        self.set_plan(plan)

    def set_plan(self, plan: Plan) -> None:
        """Switch plans; buckets start full."""
        with self._lock:
            self.plan = plan
            now = self.time_source()
            self._buckets: dict[tuple[RateLimitType, RateLimitInterval], TokenBucket] = {}
            for kind in RateLimitType:
                quota = plan.quota(kind)
                if quota is None:
                    continue
                for interval in RateLimitInterval:
                    self._buckets[(kind, interval)] = TokenBucket(
                        quota.for_interval(interval), interval.seconds, now
                    )

    def try_acquire(self, costs: Mapping[RateLimitType, int]) -> float | None:
        """Take `costs` from every bucket and return None, or take nothing and return the wait."""
        with self._lock:
            now = self.time_source()
            wait = 0.0
            for (kind, _), bucket in self._buckets.items():
                bucket.refill(now)
                wait = max(wait, bucket.wait_for(costs.get(kind, 0)))
            if wait > 0:
                return wait
            for (kind, _), bucket in self._buckets.items():
                bucket.tokens -= costs.get(kind, 0)
            return None

    def rows(self) -> list[dict[str, object]]:
        """The `rateLimits` query: quota = usedQuota + remainingQuota, 6 rows ([C] [RL-old])."""
        with self._lock:
            now = self.time_source()
            rows: list[dict[str, object]] = []
            for kind in RateLimitType:
                for interval in RateLimitInterval:
                    bucket = self._buckets.get((kind, interval))
                    if bucket is None:  # unlimited plan: report a quota that is never used up
                        quota, remaining = 2**31 - 1, 2**31 - 1
                    else:
                        bucket.refill(now)
                        quota, remaining = bucket.capacity, math.floor(bucket.tokens + 1e-9)
                    rows.append(
                        {
                            "type": kind.value,
                            "intervalSeconds": interval.value,
                            "quota": quota,
                            "usedQuota": quota - remaining,
                            "remainingQuota": remaining,
                        }
                    )
            return rows


def retry_after_value(wait_seconds: float, encoding: str, wall_now: float | None = None) -> str:
    """The `Retry-After` header for a wait, encoded per `CentraInferred.retry_after_format`.

    [C] says it is "a timestamp at which to resume"; whether that is unix seconds, an HTTP date
    or (as RFC 9110 also allows) a delay in seconds is [INF].
    """
    wall = time.time() if wall_now is None else wall_now
    if encoding == "seconds":
        return str(max(1, math.ceil(wait_seconds)))
    if encoding == "http_date":
        return email.utils.formatdate(math.ceil(wall + wait_seconds), usegmt=True)
    return str(math.ceil(wall + max(wait_seconds, 1e-3)))
