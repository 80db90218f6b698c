"""The cross-process budget gate the executor passes before each Centra call
(docs/architecture.md#governed-access-to-centra).

Centra's limits are per environment and shared by every integration. Inside one process the
client's `Governor` already holds our share exactly (sliding windows, `429 Retry-After`); this
module is the *other* half: a gate shared by every process (each Prefect flow run is one), so
that N processes do not each spend the whole share. The gate is a Protocol: `open_sync` passes
the ledger's `LedgerBudgetGate` (`sync/ledger_budget.py`: both windows, exactly, in the ledger
database) unless told otherwise; `NoGate` is the single-process (and test) gate.

`rate_limit_specs` turns a plan's quotas into token buckets (limit = burst, slot decay = refill
rate) that stay inside both of Centra's windows: the burst plus ten seconds of refill fits the
10-second quota, the burst plus an hour of refill fits the hourly quota. It served the gate made
of Prefect global concurrency limits (`tasks/budget.py`), which a token bucket cannot make exact:
it never admits the 10-second burst the windows allow.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

from returnbridge.connectors.centra.plans import Plan, Quota, get_plan

BudgetKind = Literal["request", "mutation"]


class BudgetGate(Protocol):
    """Waits until `n` calls of `kind` fit the budget shared across processes."""

    async def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        """Return once `n` calls of `kind` may be sent (a mutation is also a request)."""
        ...


class NoGate:
    """No cross-process budget: the client's in-process governor is the only limit."""

    async def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        """Return at once."""
        return None


@dataclass(frozen=True)
class BudgetNames:
    """Names of the shared limits; one pair per Centra environment."""

    request: str = "centra-requests"
    mutation: str = "centra-mutations"

    @classmethod
    def for_environment(cls, base_url: str) -> BudgetNames:
        """The names for the Centra environment at `base_url` (its host and port): two
        integrations against one environment share its limits, other environments do not."""
        parsed = urlsplit(base_url if "//" in base_url else f"//{base_url}")
        where = re.sub(r"[^A-Za-z0-9.:-]+", "-", parsed.netloc or base_url).strip("-")
        return cls(request=f"centra-requests:{where}", mutation=f"centra-mutations:{where}")

    def for_kind(self, kind: BudgetKind) -> list[str]:
        """The limits one call of `kind` draws from: a mutation counts as a request too [C]."""
        if kind == "mutation":
            return [self.request, self.mutation]
        if kind == "request":
            return [self.request]
        raise ValueError(f"unknown budget kind {kind!r}; expected 'request' or 'mutation'")


@dataclass(frozen=True)
class RateLimitSpec:
    """One token bucket: `limit` slots (the burst), refilled at `slot_decay_per_second`."""

    name: str
    limit: int
    slot_decay_per_second: float


def _bucket(name: str, quota: Quota, share: float) -> RateLimitSpec:
    per_10s = max(1, math.floor(quota.ten_seconds * share + 1e-9))
    per_hour = max(1, math.floor(quota.one_hour * share + 1e-9))
    sustained = min(per_10s / 10, per_hour / 3600)
    # Burst plus 10 s of refill within the 10 s quota; then refill slowed so that burst plus an
    # hour of refill stays within the hourly quota.
    burst = max(1, per_10s - math.ceil(10 * sustained))
    rate = min(sustained, (per_hour - burst) / 3600)
    if per_10s > burst:
        rate = min(rate, (per_10s - burst) / 10)
    # else: one call per 10 s; no token bucket fits that exactly (any refill lets a second call
    # into some window). It keeps the hourly rate; the in-process governor holds the window.
    rate = max(math.floor(rate * 1e6) / 1e6, 1e-6)  # rounded down, never to zero
    return RateLimitSpec(name=name, limit=burst, slot_decay_per_second=rate)


def rate_limit_specs(
    plan: Plan | str, share: float, names: BudgetNames | None = None
) -> list[RateLimitSpec]:
    """The token buckets holding `share` of `plan`'s request and mutation quotas; none for a
    plan without limits (the simulator's `unlimited`)."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"budget share must be in (0, 1], got {share}")
    resolved = get_plan(plan) if isinstance(plan, str) else plan
    names = names or BudgetNames()
    specs = []
    if resolved.requests is not None:
        specs.append(_bucket(names.request, resolved.requests, share))
    if resolved.mutations is not None:
        specs.append(_bucket(names.mutation, resolved.mutations, share))
    return specs
