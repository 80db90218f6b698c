"""returnbridge's one notion of time (docs/architecture.md#time).

Everything that needs the time takes either a `Now` (a plain function returning an aware
datetime: the ledger, the sync run, the reconciliation) or a `Clock` (a `Now` that can also
wait: the executor, which sleeps between retries). Tests inject one that never sleeps; the
benchmarks one that runs faster than real time. `as_clock` turns a `Now` into a `Clock` with
real sleeps, so callers may give either.

The other kind of time is *monotonic*: `MonotonicClock`, for Centra's rate-limit governor,
whose sliding windows must not jump when the wall clock does (NTP, a VM resumed). It too can
wait, so that tests and benchmarks can run the windows without really sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol, TypeAlias, runtime_checkable

Now: TypeAlias = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, timezone-aware, in UTC."""
    return datetime.now(UTC)


@runtime_checkable
class Clock(Protocol):
    """A time source that can also wait (aware datetimes)."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait `seconds`."""
        ...


class WallClock:
    """Real time: `utc_now` and `asyncio.sleep`."""

    def now(self) -> datetime:
        return utc_now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _NowClock:
    """A plain `Now` function with real sleeps."""

    def __init__(self, now: Now) -> None:
        self.now = now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def as_clock(clock: Clock | Now | None) -> Clock:
    """`clock` as a `Clock`: the wall clock for None, a `Now` given real sleeps."""
    if clock is None:
        return WallClock()
    if isinstance(clock, Clock):
        return clock
    return _NowClock(clock)


@runtime_checkable
class MonotonicClock(Protocol):
    """Seconds that never go backwards, and a wait (Centra's governor)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait `seconds`."""
        ...


class SystemMonotonicClock:
    """Real time: `time.monotonic` and `asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
