"""Build a ready-to-run `ReturnSync` (clients, ledger, planner, executor) from the settings.

Flows, the CLI, the demo and the reconciliation (`returnbridge.reconcile.runtime`) all start
here, so there is one way to wire the sync's parts together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from returnbridge.clock import Now, utc_now
from returnbridge.connectors.centra import Governor
from returnbridge.connectors.centra.refunds import RefundTypes
from returnbridge.core.planner import PlannerConfig
from returnbridge.ledger import Ledger
from returnbridge.settings import Settings
from returnbridge.sync.budget import BudgetGate, NoGate
from returnbridge.sync.executor import Executor, ExecutorConfig
from returnbridge.sync.ledger_budget import LedgerBudgetGate
from returnbridge.sync.run import ReturnSync, SyncConfig
from returnbridge.sync.settings import SyncSettings


def sync_config(
    settings: SyncSettings, *, not_returnable: frozenset[str], refund_types: RefundTypes
) -> SyncConfig:
    """The sync's configuration from its settings section."""
    return SyncConfig(
        planner=PlannerConfig(
            returns_warehouse_id=settings.returns_warehouse_id,
            exchange_order_base=settings.exchange_order_base,
            instant_deadline_warn_days=settings.instant_deadline_warn_days,
            not_returnable=not_returnable,
            refund_types=refund_types,
        ),
        executor=ExecutorConfig(
            priority=tuple(settings.priority),
            concurrency=settings.concurrency,
            max_attempts=settings.max_attempts,
            backoff_seconds=settings.backoff_seconds,
            backoff_max_seconds=settings.backoff_max_seconds,
            lease_seconds=settings.lease_seconds,
            read_back_attempts=settings.read_back_attempts,
            in_doubt_settle_seconds=settings.in_doubt_settle_seconds,
            psp_recheck_seconds=settings.psp_recheck_seconds,
        ),
        initial_look_back=settings.initial_look_back,
        max_rounds=settings.max_rounds,
    )


@asynccontextmanager
async def open_sync(
    settings: Settings,
    *,
    ledger: Ledger | None = None,
    budget: BudgetGate | None = None,
    clock: Now = utc_now,
    governor: Governor | None = None,
    orders_per_query: int | None = None,
) -> AsyncIterator[ReturnSync]:
    """A `ReturnSync` with its clients open; closes what it opened. `governor` /
    `orders_per_query`: the Centra client's (default: the process-wide governor of the plan,
    the configured batch size). `budget`: the executor's cross-process gate (default: the
    ledger's, `LedgerBudgetGate`, shared by every process on the same ledger and Centra
    environment; `NoGate` when `settings.sync.shared_budget` is off)."""
    own_ledger = ledger is None
    ledger = ledger or Ledger(settings.sync.ledger_url)
    inferred = settings.centra.inferred
    config = sync_config(
        settings.sync,
        not_returnable=frozenset({inferred.order_status_archived, "CANCELLED"}),
        refund_types=RefundTypes.of(inferred),
    )
    try:
        if budget is None:
            budget = (
                LedgerBudgetGate.for_settings(settings.centra, ledger)
                if settings.sync.shared_budget
                else NoGate()
            )
        async with (
            settings.reveni.client() as reveni,
            settings.centra.client(governor=governor, orders_per_query=orders_per_query) as centra,
        ):
            executor = Executor(centra, ledger, config.executor, budget=budget, clock=clock)
            yield ReturnSync(
                reveni=reveni,
                centra=centra,
                ledger=ledger,
                config=config,
                executor=executor,
                clock=clock,
            )
    finally:
        if own_ledger:
            ledger.close()
