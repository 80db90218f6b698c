"""The cross-process budget gate kept in the ledger: the default `BudgetGate` of `open_sync`
and `open_reconciliation` (docs/architecture.md#governed-access-to-centra).

Every process that syncs against one Centra environment opens the same ledger, so the ledger's
database is where their shared spending is kept: `ledger/budget_windows.py` holds both of
Centra's windows (10 s and one hour) exactly, as sliding windows, in the table `budget_calls`.
This module only says what a call of each kind draws: a request one unit of the environment's
request bucket, a mutation one unit of the request bucket *and* one of the mutation bucket (a
mutation is also a request [C]), each bucket with `floor(quota x share)` units per window, as the
in-process `Governor` computes them. A plan without limits (the simulator's `unlimited`) makes
the gate a no-op that never touches the database.
"""

from __future__ import annotations

import math
from typing import Any, Self

from returnbridge.clock import MonotonicClock
from returnbridge.connectors.centra.plans import Plan, Quota, RateLimitInterval, get_plan
from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.ledger import Ledger
from returnbridge.ledger.budget_windows import BudgetWindows, Draw, Window
from returnbridge.sync.budget import BudgetKind, BudgetNames


def window_limits(plan: Plan | str, share: float) -> dict[BudgetKind, tuple[Window, ...]]:
    """The sliding windows of `share` of `plan`'s request and mutation quotas, by kind: each
    window holds `floor(quota x share)` calls, at least one (the governor's capacities). A kind
    the plan does not limit has no windows."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"budget share must be in (0, 1], got {share}")
    resolved = get_plan(plan) if isinstance(plan, str) else plan

    def windows(quota: Quota | None) -> tuple[Window, ...]:
        if quota is None:
            return ()
        return tuple(
            Window(
                max(1, math.floor(quota.for_interval(interval) * share + 1e-9)),
                float(interval.seconds),
            )
            for interval in RateLimitInterval
        )

    return {"request": windows(resolved.requests), "mutation": windows(resolved.mutations)}


class LedgerBudgetGate:
    """A `BudgetGate` over the `budget_calls` table of `ledger`'s database, shared by every
    process on that ledger that names the same buckets (`names`: one pair per Centra
    environment).

    `clock`: None uses the database's clock and real sleeps (the default; see
    `ledger/budget_windows.py`); tests and benchmarks give a `MonotonicClock` shared by every
    process. `timeout_seconds`: `acquire` raises TimeoutError, naming the full bucket, rather
    than wait longer (default: waits as long as it takes; the executor's deadline cancels it).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        plan: Plan | str,
        share: float,
        names: BudgetNames | None = None,
        clock: MonotonicClock | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        self.names = names or BudgetNames()
        self.plan = get_plan(plan) if isinstance(plan, str) else plan
        self.share = share
        self.limits = window_limits(self.plan, share)
        self.timeout_seconds = timeout_seconds
        self.windows = BudgetWindows.of_ledger(ledger, clock=clock)
        self.acquired: dict[BudgetKind, int] = {"request": 0, "mutation": 0}

    @classmethod
    def for_settings(cls, centra: CentraSettings, ledger: Ledger, **kwargs: Any) -> Self:
        """The gate of the Centra environment `centra` names, at its plan and budget share, in
        `ledger`'s database."""
        return cls(
            ledger,
            plan=centra.plan,
            share=centra.budget_share,
            names=BudgetNames.for_environment(centra.base_url),
            **kwargs,
        )

    def draws(self, kind: BudgetKind, n: int = 1) -> list[Draw]:
        """What `n` calls of `kind` take: `n` units of each bucket the kind draws from."""
        windows = {self.names.request: self.limits["request"]}
        windows[self.names.mutation] = self.limits["mutation"]
        return [Draw(bucket, windows[bucket], n) for bucket in self.names.for_kind(kind)]

    async def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        """Return once `n` calls of `kind` fit both windows of every bucket they draw from,
        taken in one transaction (TimeoutError past `timeout_seconds`; ValueError if `n` is
        more than a window can ever hold)."""
        if n < 1:
            return
        await self.windows.acquire(self.draws(kind, n), timeout_seconds=self.timeout_seconds)
        self.acquired[kind] += n
