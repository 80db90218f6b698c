"""The simulator's clock: scenario time that only moves when told to.

Simulated timestamps (Centra createdAt and payment entries, Reveni created_at / updated_at,
webhook dates) come from this clock, so a scenario replays to the same data every time. Rate
limits and faults deliberately do *not* use it: they meter real traffic in real time.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from returnbridge.scenario import DEFAULT_START


class SimClock:
    """A settable, advanceable UTC clock."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or DEFAULT_START).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            raise ValueError("the clock needs a timezone-aware time")
        with self._lock:
            self._now = when.astimezone(UTC)
            return self._now

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now
