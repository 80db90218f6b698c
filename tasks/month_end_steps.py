"""The month-end report's steps as Prefect tasks: thin calls into
`returnbridge.monthend.runtime.MonthEnd`, so the Prefect UI shows where a run spends its time
and where it failed. Only the e-mail is retried (a failed send is kept in the ledger's outbox and
the retry sends that message); nothing before it writes anything but the HTML and the idempotent
settlement exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from returnbridge.connectors.email.settings import MailSettings
from returnbridge.connectors.email.smtp import SmtpSender
from returnbridge.ledger.store import Ledger
from returnbridge.monthend.invoice import InvoiceFileError
from returnbridge.monthend.mailing import MailDelivery, deliver_unsent
from returnbridge.monthend.model import MATCH_LABELS, InvoiceDoc, MonthEndReport, money_text
from returnbridge.monthend.run import MonthEndResult, Rendered
from returnbridge.monthend.runtime import MonthEnd


@dataclass(frozen=True)
class InvoiceRefused:
    """The invoice file given cannot be used: the run's answer, not a failure of the task."""

    problem: str


@task(name="read-invoice", persist_result=False)
async def read_invoice(
    month_end: MonthEnd, invoice_file: Path | None
) -> tuple[InvoiceDoc | None, list[str]] | InvoiceRefused:
    """Reveni's invoice of the month: a CSV export, or the Reveni client's invoices call. A bad
    file is returned as `InvoiceRefused` (naming its line and column), so the run fails with one
    line instead of a failed task's traceback."""
    try:
        return await month_end.invoice(invoice_file)
    except InvoiceFileError as exc:
        return InvoiceRefused(str(exc))


@task(name="month-figures", persist_result=False)
def month_figures(
    month_end: MonthEnd, invoice: InvoiceDoc | None, notes: list[str]
) -> MonthEndReport:
    """The month from the warehouse and the ledger; the settlement matched line by line."""
    return month_end.figures(invoice, notes)


@task(name="record-settlement", persist_result=False)
def record_settlement(month_end: MonthEnd, report: MonthEndReport, result: MonthEndResult) -> None:
    """Unmatched settlement lines as `settlement_unmatched` exceptions for Finance."""
    month_end.record(report, result)


@task(name="render-report", persist_result=False)
def render_report(
    month_end: MonthEnd, report: MonthEndReport, result: MonthEndResult, out: Path | None
) -> Rendered:
    """The HTML (charts, CSS inlined) and its text alternative; the HTML saved."""
    return month_end.publish(report, result, out)


class MailKept(RuntimeError):
    """The e-mail was not sent this time: kept in the outbox, tried again."""


# A failed send is tried again inside the run (which stays Running and sends heartbeats): the
# kept message, never a second one.
MAIL_RETRIES = 3
MAIL_RETRY_DELAY_SECONDS = 900


@task(
    name="email-report",
    persist_result=False,
    retries=MAIL_RETRIES,
    retry_delay_seconds=MAIL_RETRY_DELAY_SECONDS,
)
def email_report(
    month_end: MonthEnd, rendered: Rendered, result: MonthEndResult, send: bool, resend: bool
) -> None:
    """Through the outbox: once per month and recipient list. A failed send raises `MailKept`
    (the message stays in the outbox), so the task is tried again; a retry re-sends the kept
    message only."""
    month_end.mail(rendered, result, send=send, resend=resend)
    if result.mail == "failed":
        raise MailKept(f"e-mail not sent, kept in the outbox: {result.mail_detail}")


@task(name="send-kept-e-mails", persist_result=False)
def send_kept_mail(ledger: Ledger, mail: MailSettings) -> list[MailDelivery]:
    """Every e-mail a failed send left in the outbox (a month-end report whose server was
    down), sent now: the daily reconciliation runs this, so a kept report goes out within a
    day even if its own run's retries are spent. Nothing when e-mail is off."""
    if not mail.active:
        return []
    return deliver_unsent(ledger, SmtpSender(mail))


@task(name="publish-month-end-artifacts", persist_result=False)
async def publish_artifacts(result: MonthEndResult) -> None:
    """A markdown summary (figures, tie-out, where the report went) and the settlement lines
    that need a person as a table."""
    report = result.report
    await acreate_markdown_artifact(render_markdown(result), key="month-end-report")
    await acreate_table_artifact(
        [
            {
                "side": line.side.value,
                "match": MATCH_LABELS[line.match],
                "reveni_return_id": line.reveni_return_id or "",
                "order_number": "" if line.order_number is None else str(line.order_number),
                "amount": f"{money_text(line.amount_minor, line.currency)} {line.currency}",
                "detail": line.detail,
            }
            for line in report.settlement.exceptions
        ]
        or [{"settlement_unmatched": "none"}],
        key="month-end-settlement-unmatched",
        description=f"Settlement lines of {report.month} that need Finance.",
    )


def render_markdown(result: MonthEndResult) -> str:
    """The month in a few lines: totals per currency, the tie-out, where the report went."""
    report = result.report
    lines = [f"# Month-end {report.month} ({report.timezone})", "", f"**{result.subject}**", ""]
    lines += [f"> {note}" for note in report.notes]
    lines += [
        "",
        "| currency | disbursed | matched | covered | awaiting | unmatched | Reveni's data"
        " differs | tie-out |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for tie in report.settlement.tie_out:
        c = tie.currency
        off = tie.reveni_difference_minor
        verdict = "settled" if tie.settled else "balanced, unmatched" if tie.balanced else "NO"
        lines.append(
            f"| {c} | {money_text(tie.disbursements_minor, c)} | {money_text(tie.matched_minor, c)}"
            f" | {money_text(tie.covered_minor, c)} | {money_text(tie.awaiting_minor, c)}"
            f" | {money_text(tie.unmatched_minor, c)}"
            f" | {'-' if off is None else money_text(off, c)} | {verdict} |"
        )
    lines += ["", "| money out | currency | count | amount |", "|---|---|---:|---:|"]
    lines += [
        f"| {row.paid_by.value} | {row.currency} | {row.count} | "
        f"{money_text(row.minor, row.currency)} |"
        for row in report.money_out
    ]
    where = str(result.html_path) if result.html_path else "not saved"
    lines += ["", f"HTML: `{where}`", f"E-mail: {result.mail} ({result.mail_detail})"]
    return "\n".join(lines)
