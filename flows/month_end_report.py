"""Deployment `month-end-report`: on the 1st at 07:00 in the brand's timezone (prefect.yaml),
the previous month's report: Reveni's invoice against Centra, HTML e-mailed to Finance.

Reads like the run: invoice, figures, settlement, render, e-mail, artifacts.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed, State

from reports.month_end import render_month_end
from returnbridge.monthend.run import MonthEndResult
from returnbridge.monthend.runtime import month_of, open_month_end
from tasks.month_end_steps import (
    InvoiceRefused,
    MailKept,
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
# RETURNBRIDGE_MONTHEND__WAREHOUSE_WAIT, 10 minutes), and so are the e-mail's retries (3 x 15
# minutes): a run stuck past 90 minutes is stopped.
MONTH_END_TIMEOUT_SECONDS = 5400


class MailNotSent(RuntimeError):
    """The report was made but its e-mail was not sent: kept in the outbox for a retry."""


# No retries of the run: a bad parameter (month, invoice file) fails once, at once, and frees
# the deployment's one slot for the corrected run. Only the e-mail is retried, inside the run
# (tasks/month_end_steps.py: 3 times, 15 minutes apart, the run alive and sending heartbeats);
# after that the run fails and the kept message goes with the next daily reconciliation.
@flow(
    name="month-end-report",
    flow_run_name=month_end_run_name,
    timeout_seconds=MONTH_END_TIMEOUT_SECONDS,
    log_prints=False,
)
async def month_end_report(
    month: str | None = None,
    invoice_file: str | None = None,
    send: bool = True,
    resend: bool = False,
) -> dict[str, Any] | State:
    """The month-end report: Reveni's invoice against Centra, e-mailed to Finance once per month
    and recipient list. Its e-mail is tried again 3 times, 15 minutes apart; a run whose e-mail
    still could not be sent fails after saving the report (the message stays in the outbox).
    A bad month or invoice file fails the run at once, saying which. Returns the figures.

    Args:
        month: The month (YYYY-MM, the brand's timezone); empty means the last complete month.
        invoice_file: A CSV export of Reveni's invoice on the worker's disk
            (docs/invoice-csv.md); empty means Reveni's invoice API.
        send: E-mail the report (a retried run never e-mails twice).
        resend: E-mail it again on purpose, as a new message.
    """
    await observed_run()
    settings = await run_settings()
    try:
        month_of(settings, month)
    except ValueError as exc:
        return refused(str(exc))  # "month: '2026-13' has no month 13"
    invoice_path = Path(invoice_file.strip()) if invoice_file and invoice_file.strip() else None
    async with open_month_end(
        settings, render=render_month_end, month=month, use_invoice_api=invoice_path is None
    ) as month_end:
        read = await read_invoice(month_end, invoice_path)
        if isinstance(read, InvoiceRefused):
            return refused(f"invoice_file {invoice_path}: {read.problem}")
        invoice, notes = read
        report = month_figures(month_end, invoice, notes)
        result = MonthEndResult(report=report)
        rendered = render_report(month_end, report, result, None)
        record_settlement(month_end, report, result)
        with suppress(MailKept):  # the retries are spent: said below, after the artifacts
            email_report(month_end, rendered, result, send, resend)
    await publish_artifacts(result)
    if send and result.mail == "not_sent" and result.recipients:
        # recipients named, no way to reach them: Finance would wait for a report that never comes
        return refused(
            f"the month-end report of {result.report.month} was saved ({result.html_path}) but "
            f"not e-mailed to its {len(result.recipients)} recipient(s): {result.mail_detail}"
        )
    if result.mail == "failed":
        raise MailNotSent(
            f"the month-end report of {result.report.month} was made ({result.html_path}) but "
            f"not e-mailed: {result.mail_detail}. It is kept in the ledger's outbox; a retry of "
            "this run (or the next run) sends it."
        )
    return result.summary()


def refused(problem: str) -> State:
    """A run that cannot do what it was asked (a bad parameter, e-mail not set up): Failed with
    `problem` as its message, one line in its log, no traceback, no retry."""
    get_run_logger().error("month-end: %s", problem)
    return Failed(message=problem)
