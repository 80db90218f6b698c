"""Seeded, reproducible faults for the simulated Reveni (docs/architecture.md#the-simulators).

Two generators restart from the seed whenever the settings change:
- every API request (never `/_sim`) draws exactly two numbers, whatever happens next:
  `error_rate` answers 500 and `rate_limit_rate` a spurious 429 with `Retry-After:
  retry_after_seconds`, both before anything is done; `latency_ms` delays every request;
- every webhook delivery (one event to one subscription) draws exactly three numbers when the
  event is raised: `drop_webhook_rate` (never sent, listed for replay),
  `duplicate_webhook_rate` (sent twice, same event id), `out_of_order_webhook_rate` (held back
  and sent after the subscription's next event).
So the same seed and the same sequence of requests and changes give the same faults.
`webhook_delay_scale` multiplies `inferred.webhook_retry_delays_seconds` (0 in fast tests).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

from returnbridge.scenario import Faults
from returnbridge.simulators.seeded import SeededInjector

_RATES = (
    "error_rate",
    "rate_limit_rate",
    "duplicate_webhook_rate",
    "out_of_order_webhook_rate",
    "drop_webhook_rate",
)


@dataclass(frozen=True)
class FaultSettings:
    seed: int = 42
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    latency_ms: int = 0
    retry_after_seconds: int = 1
    duplicate_webhook_rate: float = 0.0
    out_of_order_webhook_rate: float = 0.0
    drop_webhook_rate: float = 0.0
    webhook_delay_scale: float = 1.0

    @classmethod
    def from_scenario(cls, faults: Faults) -> FaultSettings:
        return cls(seed=faults.seed, **faults.reveni.model_dump())

    def validated(self) -> FaultSettings:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = (int,) if f.type == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, expected):
                raise ValueError(f"{f.name} must be a number, got {value!r}")
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        for name in ("latency_ms", "retry_after_seconds", "webhook_delay_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} may not be negative")
        return self


@dataclass(frozen=True)
class ApiFault:
    error: bool
    rate_limited: bool
    latency_seconds: float
    retry_after_seconds: int


@dataclass(frozen=True)
class WebhookFault:
    drop: bool
    duplicate: bool
    out_of_order: bool


class FaultInjector(SeededInjector[FaultSettings]):
    """Owns the settings and the two seeded generators."""

    def _reseed(self, seed: int) -> None:
        self._api = random.Random(f"reveni-api:{seed}")
        self._webhooks = random.Random(f"reveni-webhooks:{seed}")

    def draw_api(self) -> ApiFault:
        with self._lock:
            s = self.settings
            u_error, u_limit = self._api.random(), self._api.random()
        return ApiFault(
            error=u_error < s.error_rate,
            rate_limited=u_limit < s.rate_limit_rate,
            latency_seconds=s.latency_ms / 1000,
            retry_after_seconds=s.retry_after_seconds,
        )

    def draw_webhook(self) -> WebhookFault:
        with self._lock:
            s = self.settings
            u_drop, u_dup, u_order = (self._webhooks.random() for _ in range(3))
        return WebhookFault(
            drop=u_drop < s.drop_webhook_rate,
            duplicate=u_dup < s.duplicate_webhook_rate,
            out_of_order=u_order < s.out_of_order_webhook_rate,
        )

    @property
    def webhook_delay_scale(self) -> float:
        return self.settings.webhook_delay_scale
