"""Build a ready-to-run `ReturnSync` (clients, ledger, planner, executor) or `Reconciliation`
(the same, plus the warehouse and Slack) from the settings.

Flows, the CLI and the demo all start here, so there is one way to wire the parts together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from returnbridge.connectors.centra import CentraClient, Governor
from returnbridge.connectors.slack import DigestPoster
from returnbridge.core.budget import BudgetGate
from returnbridge.core.executor import Executor, ExecutorConfig
from returnbridge.core.planner import PlannerConfig
from returnbridge.ledger import Ledger
from returnbridge.reconcile.run import Reconciliation
from returnbridge.reconcile.warehouse import Warehouse
from returnbridge.settings import Settings
from returnbridge.sync import ReturnSync, SyncConfig, utc_now
from returnbridge.sync_settings import SyncSettings


def sync_config(
    settings: SyncSettings, *, not_returnable: frozenset[str], payment_entry_type_refund: str
) -> SyncConfig:
    """The sync's configuration from its settings section."""
    return SyncConfig(
        planner=PlannerConfig(
            returns_warehouse_id=settings.returns_warehouse_id,
            exchange_order_base=settings.exchange_order_base,
            instant_deadline_warn_days=settings.instant_deadline_warn_days,
            not_returnable=not_returnable,
            payment_entry_type_refund=payment_entry_type_refund,
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
    clock: Callable[[], datetime] = utc_now,
    governor: Governor | None = None,
    orders_per_query: int | None = None,
) -> AsyncIterator[ReturnSync]:
    """A `ReturnSync` with its clients open; closes what it opened. `governor` /
    `orders_per_query`: the Centra client's (default: the process-wide governor of the plan,
    the configured batch size)."""
    own_ledger = ledger is None
    ledger = ledger or Ledger(settings.sync.ledger_url)
    inferred = settings.centra.inferred
    config = sync_config(
        settings.sync,
        not_returnable=frozenset({inferred.order_status_archived, "CANCELLED"}),
        payment_entry_type_refund=inferred.payment_entry_type_refund,
    )
    try:
        async with (
            settings.reveni.client() as reveni,
            CentraClient(
                settings.centra, governor=governor, orders_per_query=orders_per_query
            ) as centra,
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


@asynccontextmanager
async def open_reconciliation(
    settings: Settings,
    *,
    ledger: Ledger | None = None,
    budget: BudgetGate | None = None,
    clock: Callable[[], datetime] = utc_now,
    poster: DigestPoster | None = None,
) -> AsyncIterator[Reconciliation]:
    """A `Reconciliation` over the sync's clients and ledger, the warehouse, and Slack (a
    `DigestPoster` from `settings.slack` unless one is given, none when Slack is disabled or has
    no token);
    closes what it opened."""
    rec = settings.reconcile
    if poster is None and settings.slack.active:
        poster = DigestPoster(settings.slack)
    with Warehouse(
        rec.warehouse_path, threads=rec.duckdb_threads, memory_limit=rec.duckdb_memory_limit
    ) as warehouse:
        async with open_sync(settings, ledger=ledger, budget=budget, clock=clock) as sync:
            yield Reconciliation(
                reveni=sync.reveni,
                centra=sync.centra,
                ledger=sync.ledger,
                warehouse=warehouse,
                sync=sync,
                settings=rec,
                slack=settings.slack,
                poster=poster,
                clock=clock,
            )
