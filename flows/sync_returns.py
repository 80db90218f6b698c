"""Deployment `sync-returns`: the near-real-time sync, every minute and on webhook
(docs/architecture.md#the-sync-pipeline).

Reads like the run: collect what changed, plan and execute, advance the cursor, report.
One run at a time (prefect.yaml: concurrency limit 1, CANCEL_NEW): a slow run is never stacked.
Centra's budget is shared with every other process through the ledger's windows.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from returnbridge.ledger.sync_runs import recorded_sync_run
from returnbridge.sync.run import SyncReport
from returnbridge.sync.runtime import open_sync
from tasks.observe import observed_run, sync_run_name
from tasks.run_settings import run_settings
from tasks.sync_steps import advance_cursor, collect_changes, plan_and_execute, publish_sync_report

# A run that takes longer is stopped (and marked failed); the ledger keeps what it did, and the
# next run carries on from there. A large backlog is worked through over several runs.
SYNC_TIMEOUT_SECONDS = 1800


@flow(
    name="sync-returns",
    flow_run_name=sync_run_name,
    timeout_seconds=SYNC_TIMEOUT_SECONDS,
    log_prints=False,
)
async def sync_returns() -> dict[str, Any]:
    """One sync run: Reveni returns changed since the cursor, the webhook inbox and the
    unfinished ones -> Centra returns, restocks, credits and exchange orders, each exactly once.
    Returns the run's figures (returns read, actions planned and done, exceptions, the cursor).
    """
    await observed_run()
    settings = await run_settings()
    report = SyncReport()
    async with open_sync(settings) as sync:
        with recorded_sync_run(sync.ledger):  # the watchdog counts failed runs in a row
            collected = await collect_changes(sync, report)
            plans = await plan_and_execute(sync, collected, report)
            advance_cursor(sync, collected, plans, report)
    await publish_sync_report(report)
    return report.as_dict()
