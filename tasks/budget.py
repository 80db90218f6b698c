"""The executor's budget gate backed by Prefect global concurrency limits
(docs/architecture.md#governed-access-to-centra).

Each Prefect flow run is its own process with its own in-process governor, so the share of
Centra's quota must also be held across processes: one global concurrency limit (GCL) per
Centra bucket, used as a rate limit (a GCL with `slot_decay_per_second` is a token bucket,
as Prefect documents it). `ensure_rate_limits` creates or updates them from the plan and share;
`PrefectBudgetGate` takes a slot before each call. Acquisition is `strict`: a missing limit is an
error, not a silently unthrottled run (a gate built with a plan creates its limits first).

Prefect's limits are coarse (idle gaps after release, leaked slots); the client's governor stays
the exact in-process limit and `429 Retry-After` the last word.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import rate_limit

from returnbridge.connectors.centra.plans import Plan, get_plan
from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.sync.budget import BudgetKind, BudgetNames, RateLimitSpec, rate_limit_specs


class PrefectBudgetGate:
    """A `BudgetGate` over the Prefect rate limits named by `names`.

    With `plan` (and `share`), the first `acquire` creates or updates the limits
    (`ensure_rate_limits`), and a plan without limits makes the gate a no-op. Without a plan
    the limits must exist already.
    """

    def __init__(
        self,
        names: BudgetNames | None = None,
        *,
        plan: Plan | str | None = None,
        share: float = 0.5,
        timeout_seconds: float | None = None,
        strict: bool = True,
    ) -> None:
        self.names = names or BudgetNames()
        self.plan = get_plan(plan) if isinstance(plan, str) else plan
        self.share = share
        self.timeout_seconds = timeout_seconds
        self.strict = strict
        self.acquired: dict[str, int] = {"request": 0, "mutation": 0}
        self._ready = self.plan is None
        self._ready_lock = asyncio.Lock()

    @classmethod
    def for_settings(cls, centra: CentraSettings, **kwargs: Any) -> PrefectBudgetGate:
        """The gate of the Centra environment `centra` names, at its plan and budget share."""
        return cls(
            BudgetNames.for_environment(centra.base_url),
            plan=centra.plan,
            share=centra.budget_share,
            **kwargs,
        )

    async def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        """Wait for `n` slots of every limit a `kind` call draws from (TimeoutError past
        `timeout_seconds`; ConcurrencySlotAcquisitionError if a limit is missing)."""
        if n < 1:
            return
        names = self.names.for_kind(kind)
        if not self._ready:
            async with self._ready_lock:
                if not self._ready:
                    assert self.plan is not None
                    await ensure_rate_limits(self.plan, self.share, self.names)
                    self._ready = True
        if self.plan is not None and not self.plan.limited:
            return
        await rate_limit(names, occupy=n, timeout_seconds=self.timeout_seconds, strict=self.strict)
        self.acquired[kind] += n


async def ensure_rate_limits(
    plan: Plan | str, share: float, names: BudgetNames | None = None
) -> list[RateLimitSpec]:
    """Create or update the GCLs holding `share` of `plan` (idempotent; returns what it set).
    A plan without limits creates none: use `NoGate` there."""
    specs = rate_limit_specs(plan, share, names)
    if not specs:
        return specs
    async with get_client() as client:
        for spec in specs:
            await client.upsert_global_concurrency_limit_by_name(
                spec.name, spec.limit, slot_decay_per_second=spec.slot_decay_per_second
            )
    return specs
