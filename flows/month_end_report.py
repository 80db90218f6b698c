"""Deployment `month-end-report`: on the 1st at 07:00 in the brand's timezone (prefect.yaml),
the previous month's report: Reveni's invoice against Centra, HTML e-mailed to Finance.

Reads like the run: invoice, figures, settlement, render, e-mail, artifacts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from reports.month_end import render_month_end
from returnbridge.monthend.run import MonthEndResult
from returnbridge.monthend.runtime import open_month_end
from tasks.month_end_steps import (
    email_report,
    month_figures,
    publish_artifacts,
    read_invoice,
    record_settlement,
    render_report,
)
from tasks.observe import month_end_run_name, observed_run
from tasks.run_settings import run_settings

# Waiting for the night's reconciliation to leave the warehouse is part of the run (up to
# RETURNBRIDGE_MONTHEND__WAREHOUSE_WAIT); a run stuck past an hour is stopped and retried.
MONTH_END_TIMEOUT_SECONDS = 3600


class MailNotSent(RuntimeError):
    """The report was made but its e-mail was not sent: kept in the outbox for a retry."""


# A failed e-mail fails the run, so Prefect retries it: the retry makes the same report again
# (the settlement exceptions are the same ones) and sends the kept message, never a second one.
@flow(
    name="month-end-report",
    flow_run_name=month_end_run_name,
    timeout_seconds=MONTH_END_TIMEOUT_SECONDS,
    log_prints=False,
    retries=3,
    retry_delay_seconds=900,
)
async def month_end_report(
    month: str | None = None,
    invoice_file: str | None = None,
    send: bool = True,
    resend: bool = False,
) -> dict[str, Any]:
    """The month-end report: Reveni's invoice against Centra, e-mailed to Finance once per month
    and recipient list. A run whose e-mail could not be sent fails after saving the report and
    is retried (3 times, 15 minutes apart). Returns the report's figures.

    Args:
        month: The month (YYYY-MM, the brand's timezone); empty means the last complete month.
        invoice_file: A CSV export of Reveni's invoice on the worker's disk
            (docs/invoice-csv.md); empty means Reveni's invoice API.
        send: E-mail the report (a retried run never e-mails twice).
        resend: E-mail it again on purpose, as a new message.
    """
    await observed_run()
    settings = await run_settings()
    invoice_path = Path(invoice_file) if invoice_file else None
    async with open_month_end(
        settings, render=render_month_end, month=month, use_invoice_api=invoice_path is None
    ) as month_end:
        invoice, notes = await read_invoice(month_end, invoice_path)
        report = month_figures(month_end, invoice, notes)
        result = MonthEndResult(report=report)
        rendered = render_report(month_end, report, result, None)
        record_settlement(month_end, report, result)
        email_report(month_end, rendered, result, send, resend)
    await publish_artifacts(result)
    if result.mail == "failed":
        raise MailNotSent(
            f"the month-end report of {result.report.month} was made ({result.html_path}) but "
            f"not e-mailed: {result.mail_detail}. It is kept in the ledger's outbox; a retry of "
            "this run (or the next run) sends it."
        )
    return result.summary()
