"""The simulator object: one simulated Reveni store and everything around it.

It owns the state (rebuilt by `load`), the simulated clock, the accepted API key, the fault
injector, the webhook deliverer and the request counters. The HTTP layers (merchant API,
`/_sim`) are thin functions over it; tests reach it as `app.state.sim`.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from returnbridge.connectors.reveni.encoding import status_to_wire
from returnbridge.connectors.reveni.inferred import DEFAULT_REVENI_INFERRED, ReveniInferred
from returnbridge.scenario import Scenario
from returnbridge.simulators.clock import SimClock
from returnbridge.simulators.reveni import invoices
from returnbridge.simulators.reveni.effects import effects
from returnbridge.simulators.reveni.faults import FaultInjector, FaultSettings
from returnbridge.simulators.reveni.records import ReturnRec
from returnbridge.simulators.reveni.state import ReveniState
from returnbridge.simulators.reveni.webhooks import WebhookDeliverer


@dataclass
class RequestCounters:
    """What the simulated Reveni was asked (API requests only, never `/_sim`)."""

    requests: int = 0  # faulted or not
    errors_5xx: int = 0
    rate_limited: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)  # "GET returns/{return_id}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_endpoint": dict(sorted(self.by_endpoint.items())),
            "errors_5xx": self.errors_5xx,
            "rate_limited": self.rate_limited,
        }


class ReveniSimulator:
    """One simulated Reveni store."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        api_key: str = "reveni-sim-key",
        inferred: ReveniInferred = DEFAULT_REVENI_INFERRED,
        webhook_secret: str | None = None,
    ) -> None:
        scenario = scenario or Scenario()
        self.inferred = inferred
        self.api_key = api_key
        self.lock = threading.RLock()
        self.clock = SimClock(scenario.start_time())
        self.counters = RequestCounters()
        self.faults = FaultInjector(FaultSettings.from_scenario(scenario.faults))
        self.webhooks = WebhookDeliverer(inferred, self.faults, webhook_secret)
        self.state = self._build(scenario)

    def _build(self, scenario: Scenario) -> ReveniState:
        state = ReveniState.from_scenario(scenario, self.inferred, self.clock)
        state.subscribe(self._raise_event)
        return state

    def _raise_event(self, event: str, rec: ReturnRec) -> None:
        self.webhooks.emit(event, rec.id, status_to_wire(rec.status, self.inferred), rec.updated_at)

    @property
    def store_id(self) -> str:
        return self.state.store_id

    def load(self, scenario: Scenario) -> None:
        """Replace returns, clock, faults and webhook events with `scenario`'s. Subscriptions,
        the webhook secret, the API key and the counters stay."""
        with self.lock:
            self.clock.set(scenario.start_time())
            self.webhooks.reset()
            self.faults.configure(FaultSettings.from_scenario(scenario.faults))
            self.state = self._build(scenario)

    def emit(self, return_id: str, event: str) -> dict[str, Any]:
        """Raise `event` for a return's current status (`/_sim/webhooks/emit`)."""
        with self.lock:
            rec = self.state.get(return_id)
            raised = self.webhooks.emit(
                event, rec.id, status_to_wire(rec.status, self.inferred), self.clock.now()
            )
        return {"id": raised.id, "event": raised.event, "resource_id": rec.id}

    def effects(self) -> dict[str, Any]:
        with self.lock:
            return effects(self.state)

    def invoice(self, period: str) -> dict[str, Any] | None:
        """The invoice of `period` (YYYY-MM); None for a period after the clock's month."""
        with self.lock:
            return invoices.invoice(
                list(self.state.returns.values()),
                self.store_id,
                period,
                self.clock.now(),
                self.inferred,
            )

    def invoices(self) -> list[dict[str, Any]]:
        """Every period's invoice, from the first activity to the clock's month."""
        with self.lock:
            returns = list(self.state.returns.values())
            now = self.clock.now()
            found = [
                invoices.invoice(returns, self.store_id, p, now, self.inferred)
                for p in invoices.periods(returns, now, self.inferred)
            ]
        return [inv for inv in found if inv is not None]

    def reset_counters(self) -> None:
        with self.lock:
            self.counters = RequestCounters()
