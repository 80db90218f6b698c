"""The month-end report wired from the settings: the one way the flow, the CLI and the demo
run it (docs/architecture.md#the-month-end-report). `MonthEnd`'s methods are the steps (the
Prefect flow runs each as a task); `run_month_end` runs them all in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from returnbridge.clock import Now, utc_now
from returnbridge.connectors.centra.refunds import RefundTypes
from returnbridge.connectors.email.smtp import SmtpSender
from returnbridge.connectors.reveni.client import ReveniClient
from returnbridge.ledger import Ledger
from returnbridge.monthend.figures import Month
from returnbridge.monthend.model import InvoiceDoc, MonthEndReport
from returnbridge.monthend.run import (
    MonthEndResult,
    Rendered,
    Renderer,
    build_report,
    mail_report,
    open_warehouse,
    read_invoice,
    record_settlement,
    save_html,
)
from returnbridge.settings import Settings


def month_of(settings: Settings, month: str | None, *, now: Now = utc_now) -> Month:
    """`month` (YYYY-MM) in the brand's timezone, or the last complete one; ValueError names
    a malformed month or one that has not started yet."""
    zone = settings.reconcile.zone
    if month is None:
        return Month.last_complete(now(), zone)
    found = Month.parse(month, zone)
    if found.start > now():
        raise ValueError(f"month: {month} has not started yet in {zone}")
    return found


@dataclass
class MonthEnd:
    """One month's report being made: each method is one step, in this order."""

    settings: Settings
    month: Month
    ledger: Ledger
    reveni: ReveniClient | None
    render: Renderer
    clock: Now = utc_now
    sender: SmtpSender | None = None

    async def invoice(self, invoice_file: Path | None) -> tuple[InvoiceDoc | None, list[str]]:
        """Reveni's invoice of the month (a bad file raises `InvoiceFileError`)."""
        return await read_invoice(
            self.month, invoice_file=invoice_file, settings=self.settings.monthend,
            reveni=self.reveni,
        )  # fmt: skip

    def figures(self, invoice: InvoiceDoc | None, notes: list[str]) -> MonthEndReport:
        """The month from the warehouse and the ledger, its settlement matched."""
        with open_warehouse(
            self.settings.reconcile.warehouse_path,
            wait_seconds=self.settings.monthend.warehouse_wait.total_seconds(),
        ) as (warehouse, warehouse_notes):
            return build_report(
                warehouse,
                self.ledger,
                self.month,
                invoice=invoice,
                refund_types=RefundTypes.of(self.settings.centra.inferred),
                notes=[*warehouse_notes, *notes],
                now=self.clock(),
            )

    def record(self, report: MonthEndReport, result: MonthEndResult) -> None:
        """Unmatched settlement lines as `settlement_unmatched` for Finance in the ledger."""
        changes = record_settlement(self.ledger, report.settlement, now=self.clock())
        if changes is not None:
            result.exceptions_new = len(changes.new)
            result.exceptions_still_open = len(changes.seen)
            result.exceptions_healed = len(changes.healed)

    def publish(self, report: MonthEndReport, result: MonthEndResult, out: Path | None) -> Rendered:
        """Render the report and save its HTML (at `out`, or in the report directory)."""
        rendered = self.render(report, self.settings.monthend.line_limit)
        result.subject = rendered.subject
        result.html_path = save_html(rendered, self.settings.monthend.report_dir, report.month, out)
        return rendered

    def mail(self, rendered: Rendered, result: MonthEndResult, *, send: bool, resend: bool) -> None:
        """E-mail it through the outbox, once per month and recipient list."""
        result.recipients = list(self.settings.monthend.recipients)
        if not send:
            result.mail, result.mail_detail = "not_sent", "--no-send"
            return
        result.mail, result.mail_detail, result.message_id = mail_report(
            self.ledger,
            rendered,
            month=result.report.month,
            recipients=self.settings.monthend.recipients,
            mail=self.settings.mail,
            resend=resend,
            sender=self.sender,
            now=self.clock,
        )


@asynccontextmanager
async def open_month_end(
    settings: Settings,
    *,
    render: Renderer,
    month: str | None = None,
    use_invoice_api: bool = True,
    ledger: Ledger | None = None,
    sender: SmtpSender | None = None,
    clock: Now = utc_now,
) -> AsyncIterator[MonthEnd]:
    """A `MonthEnd` with its ledger and (when the invoice comes from the API) Reveni client
    open; closes what it opened. ValueError for a bad `month`."""
    wanted = month_of(settings, month, now=clock)
    async with AsyncExitStack() as stack:
        if ledger is None:
            ledger = stack.enter_context(Ledger(settings.sync.ledger_url, clock=clock))
        reveni = None
        if use_invoice_api and settings.monthend.invoice_source == "api":
            reveni = await stack.enter_async_context(settings.reveni.client())
        yield MonthEnd(settings, wanted, ledger, reveni, render, clock, sender)


async def run_month_end(
    settings: Settings,
    *,
    render: Renderer,
    month: str | None = None,
    invoice_file: Path | None = None,
    out: Path | None = None,
    send: bool = True,
    resend: bool = False,
    ledger: Ledger | None = None,
    sender: SmtpSender | None = None,
    clock: Now = utc_now,
) -> MonthEndResult:
    """The whole report of `month` (default: the last complete one): invoice, figures,
    settlement recorded, HTML saved, e-mailed when `send`."""
    async with open_month_end(
        settings,
        render=render,
        month=month,
        use_invoice_api=invoice_file is None,
        ledger=ledger,
        sender=sender,
        clock=clock,
    ) as month_end:
        invoice, notes = await month_end.invoice(invoice_file)
        report = month_end.figures(invoice, notes)
        result = MonthEndResult(report=report)
        month_end.record(report, result)
        rendered = month_end.publish(report, result, out)
        month_end.mail(rendered, result, send=send, resend=resend)
        return result
