"""Deployment `daily-reconciliation`: once a day in the brand's timezone (prefect.yaml), both
systems into the warehouse, gaps, fixes through the ledger, one digest per owner.

Reads like the run: load, compute gaps, fix, record, send digests, send the e-mails a failed
send kept in the outbox (a month-end report), report.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from reports.digest import render_digest
from returnbridge.reconcile.runtime import open_reconciliation
from tasks.month_end_steps import send_kept_mail
from tasks.observe import observed_run, reconcile_run_name
from tasks.reconcile_steps import (
    compute_gaps,
    fix_gaps,
    load_snapshots,
    publish_report,
    record_gaps,
    send_digests,
)
from tasks.run_settings import run_settings

# Loading a large history for the first time can take a while; a run stuck longer is stopped
# (one transaction per load: nothing half-loaded) and the next day's run starts again.
RECONCILE_TIMEOUT_SECONDS = 3 * 3600


def flow_run_url(ui_base: str | None) -> str | None:
    """This flow run's page in the Prefect UI, for the digests: under `ui_base` when set
    (RETURNBRIDGE_RECONCILE__PREFECT_UI_URL), else Prefect's own PREFECT_UI_URL."""
    if ui_base and flow_run.id:
        return f"{ui_base.rstrip('/')}/flow-runs/flow-run/{flow_run.id}"
    url: str | None = flow_run.ui_url
    return url


@flow(
    name="daily-reconciliation",
    flow_run_name=reconcile_run_name,
    timeout_seconds=RECONCILE_TIMEOUT_SECONDS,
    log_prints=False,
)
async def daily_reconciliation(run_date: date | None = None) -> dict[str, Any]:
    """One reconciliation: both systems into the warehouse, the gaps, fixes through the ledger,
    one digest per owner. Returns the run's figures.

    Args:
        run_date: The day (YYYY-MM-DD, the brand's timezone) the gaps are recorded under and
            aged to the end of; empty means today.
    """
    await observed_run()
    settings = await run_settings()
    url = flow_run_url(settings.reconcile.prefect_ui_url)
    async with open_reconciliation(settings, render_digest=render_digest) as reconciliation:
        report = reconciliation.start(run_date)
        await load_snapshots(reconciliation, report)
        gaps = compute_gaps(reconciliation, report)
        after = await fix_gaps(reconciliation, report, gaps)
        record_gaps(reconciliation, report, gaps, after)
        send_digests(reconciliation, report, url)
        kept = send_kept_mail(reconciliation.ledger, settings.mail)
    await publish_report(report)
    return report.as_dict() | {"kept_e_mails": [(m.key, m.status) for m in kept]}
