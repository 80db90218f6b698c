"""The sync's steps as Prefect tasks: each one a thin call into `returnbridge.sync.run.ReturnSync`.

They exist so the Prefect UI shows where a run spends its time and where it failed; the logic is
in the core, tested without Prefect. No task retries: the core retries what is safe to retry
(reads; writes only after a read-back), and a failed run leaves the cursor where it was.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from returnbridge.core.planner import ReturnPlan
from returnbridge.sync.run import Collected, ReturnSync, SyncReport


@task(name="collect-changes", persist_result=False)
async def collect_changes(sync: ReturnSync, report: SyncReport) -> Collected:
    """Reveni returns changed since the cursor, the inbox's, and the carried-over ones."""
    collected = await sync.collect()
    sync.describe_collected(collected, report)
    return collected


@task(name="plan-and-execute", persist_result=False)
async def plan_and_execute(
    sync: ReturnSync, collected: Collected, report: SyncReport
) -> dict[str, ReturnPlan]:
    """Read Centra, plan, record in the ledger, send what is due (in rounds)."""
    return await sync.process(collected, report)


@task(name="advance-cursor", persist_result=False)
def advance_cursor(
    sync: ReturnSync, collected: Collected, plans: dict[str, ReturnPlan], report: SyncReport
) -> None:
    """Move the cursor and settle the inbox, only now that the ledger holds the run."""
    sync.commit(collected, plans, report)


@task(name="publish-sync-report", persist_result=False)
async def publish_sync_report(report: SyncReport) -> None:
    """The run's figures as a table artifact, and what is left as markdown."""
    figures = report.as_dict()
    await acreate_table_artifact(
        [{"figure": k, "value": str(v)} for k, v in figures.items() if k != "planned_calls"],
        key="sync-returns-report",
        description="What the last sync run read, planned, sent and left open.",
    )
    if report.rejected_rows or report.unfinished:
        lines = ["# Left for later", ""]
        lines += [f"- unfinished return `{rid}`" for rid in report.unfinished[:50]]
        lines += [f"- unreadable Reveni row: {row}" for row in report.rejected_rows[:50]]
        await acreate_markdown_artifact("\n".join(lines), key="sync-returns-left")
