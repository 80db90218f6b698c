"""Deployment `sync-returns`: the near-real-time sync, every minute and on webhook
(docs/architecture.md#the-sync-pipeline).

Reads like the run: collect what changed, plan and execute, advance the cursor, report.
One run at a time (prefect.yaml: concurrency limit 1, CANCEL_NEW): a slow run is never stacked.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from returnbridge.settings import load_settings
from returnbridge.sync.run import SyncReport
from returnbridge.sync.runtime import open_sync
from tasks.budget import PrefectBudgetGate
from tasks.sync_steps import advance_cursor, collect_changes, plan_and_execute, publish_sync_report


@flow(name="sync-returns", log_prints=False)
async def sync_returns(use_prefect_budget: bool = True) -> dict[str, Any]:
    """One sync run; returns the run's figures. `use_prefect_budget`: hold Centra's budget
    across processes through Prefect global concurrency limits (needs a Prefect server)."""
    settings = load_settings()
    budget = PrefectBudgetGate.for_settings(settings.centra) if use_prefect_budget else None
    report = SyncReport()
    async with open_sync(settings, budget=budget) as sync:
        collected = await collect_changes(sync, report)
        plans = await plan_and_execute(sync, collected, report)
        advance_cursor(sync, collected, plans, report)
    await publish_sync_report(report)
    return report.as_dict()
