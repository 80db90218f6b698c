"""The simulator object: one simulated Centra environment and everything around it.

It owns the state (rebuilt by `load`), the simulated clock, the schema, the accepted credentials,
the rate limiter, the fault injector, the webhook emitter and the request counters. The HTTP
layers (GraphQL, Order API, `/_sim`) are thin functions over it; tests reach it as
`app.state.sim`.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from returnbridge.connectors.centra.inferred import DEFAULT_INFERRED, CentraInferred
from returnbridge.connectors.centra.plans import get_plan
from returnbridge.scenario import DEFAULT_START, Scenario
from returnbridge.simulators.centra.effects import effects
from returnbridge.simulators.centra.faults import FaultInjector, FaultSettings
from returnbridge.simulators.centra.limits import RateLimiter
from returnbridge.simulators.centra.schema import build_centra_schema
from returnbridge.simulators.centra.state import CentraState
from returnbridge.simulators.centra.views import stamp_order_changes
from returnbridge.simulators.centra.webhooks import WebhookEmitter
from returnbridge.simulators.clock import SimClock


@dataclass
class RequestCounters:
    """What the simulated Centra was asked, for `GET /_sim/counters` and the run summary."""

    requests: int = 0  # every request to the API surfaces (not /_sim), faulted or not
    graphql_requests: int = 0
    rest_requests: int = 0
    mutations: int = 0  # GraphQL mutation fields executed + Order API writes executed
    rate_limited: int = 0  # 429s sent, real and spurious
    errors_5xx: int = 0
    timeouts_after_commit: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "graphql_requests": self.graphql_requests,
            "rest_requests": self.rest_requests,
            "mutations": self.mutations,
            "rate_limited": self.rate_limited,
            "errors_5xx": self.errors_5xx,
            "timeouts_after_commit": self.timeouts_after_commit,
            "by_operation": dict(sorted(self.by_operation.items())),
        }


class CentraSimulator:
    """One simulated Centra environment."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        token: str = "centra-sim-token",
        order_api_secret: str = "centra-sim-secret",
        inferred: CentraInferred = DEFAULT_INFERRED,
        plan: str | None = None,
        stall_seconds: float = 30.0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        self.inferred = inferred
        self.tz = ZoneInfo(inferred.merchant_timezone)
        self.lock = threading.RLock()
        self.clock = SimClock()
        self.schema = build_centra_schema(self.tz)
        self.tokens: dict[str, frozenset[str] | None] = {token: None}  # None: every permission
        self.order_api_secret = order_api_secret
        self.plan_override = plan
        self.stall_seconds = stall_seconds
        self.counters = RequestCounters()
        self.webhooks = WebhookEmitter(
            self.clock, tz=self.tz, url=webhook_url, secret=webhook_secret
        )
        scenario = scenario or Scenario()
        self.limiter = RateLimiter(get_plan(plan or scenario.centra.plan))
        self.faults = FaultInjector(
            FaultSettings.from_scenario(scenario.faults.seed, scenario.faults.centra, stall_seconds)
        )
        self.state = self._build(scenario)

    def _build(self, scenario: Scenario) -> CentraState:
        state = CentraState.from_scenario(scenario, self.inferred, self.clock)
        state.subscribe(self.webhooks.enqueue)
        state.subscribe(stamp_order_changes(state))  # Order.updatedAt
        return state

    def load(self, scenario: Scenario) -> None:
        """Replace all data with `scenario`'s; plan and faults follow it (unless overridden)."""
        with self.lock:
            self.clock.set(DEFAULT_START)
            self.state = self._build(scenario)
            self.limiter.set_plan(get_plan(self.plan_override or scenario.centra.plan))
            self.faults.configure(
                FaultSettings.from_scenario(
                    scenario.faults.seed, scenario.faults.centra, self.stall_seconds
                )
            )

    def effects(self) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            self.state.settle_refunds()
            return effects(self.state)

    def settle_due(self) -> int:
        """Let the asynchronous PSP answer the refund requests whose time has come on the
        simulator clock; how many it answered."""
        with self.lock:
            return len(self.state.settle_refunds())

    def reset_counters(self) -> None:
        with self.lock:
            self.counters = RequestCounters()
