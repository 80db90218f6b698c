"""The reconciliation's steps as Prefect tasks: thin calls into
`returnbridge.reconcile.run.Reconciliation`, so the Prefect UI shows where a run spends its time
and where it failed. No task retries: a failed load changes nothing (one transaction), and the
next run starts from the same watermarks.
"""

from __future__ import annotations

import polars as pl
from prefect import task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from returnbridge.reconcile.run import ReconcileReport, Reconciliation


@task(name="load-snapshots", persist_result=False)
async def load_snapshots(reconciliation: Reconciliation, report: ReconcileReport) -> None:
    """What changed in Reveni and Centra since the last load, into the warehouse."""
    await reconciliation.load(report)


@task(name="compute-gaps", persist_result=False)
def compute_gaps(reconciliation: Reconciliation, report: ReconcileReport) -> pl.DataFrame:
    """The gap rules over the warehouse (Polars)."""
    return reconciliation.find_gaps(report)


@task(name="fix-gaps", persist_result=False)
async def fix_gaps(
    reconciliation: Reconciliation, report: ReconcileReport, gaps: pl.DataFrame
) -> pl.DataFrame:
    """Re-enqueue the fixable gaps through the ledger, run them, and find the gaps again."""
    if not reconciliation.settings.fix:
        return gaps
    return await reconciliation.fix(report, gaps)


@task(name="record-gaps", persist_result=False)
def record_gaps(
    reconciliation: Reconciliation,
    report: ReconcileReport,
    before: pl.DataFrame,
    after: pl.DataFrame,
) -> None:
    """Exceptions for the owners, and the day's gaps with their outcomes in the warehouse."""
    reconciliation.record(report, before, after)


@task(name="send-digests", persist_result=False)
def send_digests(
    reconciliation: Reconciliation, report: ReconcileReport, flow_run_url: str | None
) -> None:
    """One digest per owner to Slack; what Slack does not take is kept for the next run."""
    reconciliation.send_digests(report, flow_run_url=flow_run_url)


@task(name="publish-reconciliation-report", persist_result=False)
async def publish_report(report: ReconcileReport) -> None:
    """The day's gaps as a table artifact, and a markdown summary by owner."""
    await acreate_table_artifact(
        [
            {k: ("" if v is None else str(v)) for k, v in gap.items() if k != "detail"}
            for gap in report.gaps
        ]
        or [{"gaps": "none"}],
        key="reconciliation-gaps",
        description=f"Gaps found by the reconciliation of {report.run_date}, with outcomes.",
    )
    await acreate_markdown_artifact(render_markdown(report), key="reconciliation-summary")


def render_markdown(report: ReconcileReport) -> str:
    """The run in a few lines: what was loaded, gaps by code and outcome, the digests."""
    lines = [
        f"# Reconciliation {report.run_date}",
        "",
        f"As of {report.as_of.isoformat()}; loaded "
        + ", ".join(f"{n} {table}" for table, n in report.loaded.items() if n)
        + ".",
        "",
        "| gap | count |",
        "|---|---:|",
    ]
    lines += [f"| `{code}` | {n} |" for code, n in report.counts().items()] or ["| none | 0 |"]
    outcomes = ", ".join(f"{k} {v}" for k, v in report.outcomes().items())
    lines += ["", f"Outcomes: {outcomes or 'none'}"]
    if not report.reveni_complete:
        lines.append("Reveni kept changing during the load: the watermark was held back.")
    if report.rejected_rows:
        lines.append(f"{len(report.rejected_rows)} Reveni rows could not be read (skipped).")
    lines += ["", "## Digests", ""]
    for digest in report.digests:
        state = f"posted to {digest.channel}" if digest.sent else f"kept: {digest.error}"
        lines.append(f"- **{digest.owner}** ({digest.run_date}): {state}")
    return "\n".join(lines)
