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
from returnbridge.settings import load_settings
from tasks.budget import PrefectBudgetGate
from tasks.month_end_steps import send_kept_mail
from tasks.reconcile_steps import (
    compute_gaps,
    fix_gaps,
    load_snapshots,
    publish_report,
    record_gaps,
    send_digests,
)


def flow_run_url(ui_base: str | None) -> str | None:
    """This flow run's page in the Prefect UI, for the digests: under `ui_base` when set
    (RETURNBRIDGE_RECONCILE__PREFECT_UI_URL), else Prefect's own PREFECT_UI_URL."""
    if ui_base and flow_run.id:
        return f"{ui_base.rstrip('/')}/flow-runs/flow-run/{flow_run.id}"
    url: str | None = flow_run.ui_url
    return url


@flow(name="daily-reconciliation", log_prints=False)
async def daily_reconciliation(
    run_date: date | None = None, use_prefect_budget: bool = True
) -> dict[str, Any]:
    """One reconciliation; returns the run's figures. `run_date`: record the gaps under that
    day (default: today in the brand's timezone). `use_prefect_budget`: share Centra's budget
    with the sync through Prefect global concurrency limits (needs a Prefect server)."""
    settings = load_settings()
    budget = PrefectBudgetGate.for_settings(settings.centra) if use_prefect_budget else None
    url = flow_run_url(settings.reconcile.prefect_ui_url)
    async with open_reconciliation(
        settings, budget=budget, render_digest=render_digest
    ) as reconciliation:
        report = reconciliation.start(run_date)
        await load_snapshots(reconciliation, report)
        gaps = compute_gaps(reconciliation, report)
        after = await fix_gaps(reconciliation, report, gaps)
        record_gaps(reconciliation, report, gaps, after)
        send_digests(reconciliation, report, url)
        kept = send_kept_mail(reconciliation.ledger, settings.mail)
    await publish_report(report)
    return report.as_dict() | {"kept_e_mails": [(m.key, m.status) for m in kept]}
