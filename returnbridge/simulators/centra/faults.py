"""Seeded, reproducible faults for the Integration API and the Order API.

Every request that reaches the simulated Centra (never `/_sim`) draws exactly four numbers from
one seeded generator, whatever happens next, so the same seed and the same request sequence give
the same faults. Kinds:
- `error_rate`: answer 500 before doing anything;
- `rate_limit_rate`: answer a spurious 429 (with Retry-After) before doing anything;
- `latency_ms`: delay every request;
- `timeout_after_commit_rate`: for writes (GraphQL mutations, PUT /returns, POST /order) apply
  the write, then either stall the response for `stall_seconds` (the client times out) or drop
  the connection half-way through the response. The write happened; the client cannot know.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from returnbridge.scenario import CentraFaults
from returnbridge.simulators.seeded import SeededInjector


class AfterCommit(StrEnum):
    STALL = "stall"
    DROP = "drop"


@dataclass(frozen=True)
class FaultSettings:
    seed: int = 42
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    timeout_after_commit_rate: float = 0.0
    latency_ms: int = 0
    stall_seconds: float = 30.0

    @classmethod
    def from_scenario(cls, seed: int, faults: CentraFaults, stall_seconds: float) -> FaultSettings:
        return cls(seed=seed, stall_seconds=stall_seconds, **faults.model_dump())

    def validated(self) -> FaultSettings:
        for name in ("error_rate", "rate_limit_rate", "timeout_after_commit_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.latency_ms < 0 or self.stall_seconds < 0:
            raise ValueError("latency_ms and stall_seconds may not be negative")
        return self


@dataclass(frozen=True)
class FaultDraw:
    """The faults one request gets."""

    error: bool
    rate_limited: bool
    after_commit: AfterCommit | None
    latency_seconds: float


class FaultInjector(SeededInjector[FaultSettings]):
    """Owns the settings and the seeded generator; `draw()` once per request."""

    def _reseed(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def draw(self) -> FaultDraw:
        with self._lock:
            s = self.settings
            u_error, u_limit, u_commit, u_mode = (self._rng.random() for _ in range(4))
        return FaultDraw(
            error=u_error < s.error_rate,
            rate_limited=u_limit < s.rate_limit_rate,
            after_commit=(
                (AfterCommit.STALL if u_mode < 0.5 else AfterCommit.DROP)
                if u_commit < s.timeout_after_commit_rate
                else None
            ),
            latency_seconds=s.latency_ms / 1000,
        )
