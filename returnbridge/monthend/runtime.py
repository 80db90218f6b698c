"""The month-end report wired from the settings: the one way the flow, the CLI and the demo
run it (docs/architecture.md#the-month-end-report). `MonthEnd`'s methods are the steps (the
Prefect flow runs each as a task); `run_month_end` runs them all in order."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from returnbridge.clock import Now, utc_now
from returnbridge.connectors.centra.refunds import RefundTypes
from returnbridge.connectors.email.smtp import SmtpSender
from returnbridge.connectors.reveni.client import ReveniClient
from returnbridge.ledger import Ledger
from returnbridge.monthend.figures import Month
from returnbridge.monthend.model import (
    InvoiceDoc,
    InvoiceKind,
    MonthEndReport,
    add_minor,
    money_text,
)
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

log = logging.getLogger(__name__)


def month_of(settings: Settings, month: str | None, *, now: Now = utc_now) -> Month:
    """`month` (YYYY-MM) in the brand's timezone, or the last complete one; ValueError names
    a malformed month or one that has not started yet."""
    zone = settings.reconcile.zone
    if month is None or not month.strip():  # the Prefect UI's cleared field sends ""
        return Month.last_complete(now(), zone)
    found = Month.parse(month.strip(), zone)
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
        doc, notes = await read_invoice(
            self.month, invoice_file=invoice_file, settings=self.settings.monthend,
            reveni=self.reveni,
        )  # fmt: skip
        if doc is None:
            log.info(
                "month-end %s: no invoice, the settlement is not matched (%d notes)",
                self.month.text,
                len(notes),
            )
        else:
            kinds = Counter(line.kind for line in doc.lines)
            log.info(
                "month-end %s: invoice read: %d lines (%d disbursements, %d fees) from %s%s",
                self.month.text,
                len(doc.lines),
                kinds[InvoiceKind.DISBURSEMENT],
                len(doc.lines) - kinds[InvoiceKind.DISBURSEMENT],
                doc.source,
                f", {doc.status}" if doc.status else "",
            )
        return doc, notes

    def figures(self, invoice: InvoiceDoc | None, notes: list[str]) -> MonthEndReport:
        """The month from the warehouse and the ledger, its settlement matched."""
        with open_warehouse(
            self.settings.reconcile.warehouse_path,
            wait_seconds=self.settings.monthend.warehouse_wait.total_seconds(),
        ) as (warehouse, warehouse_notes):
            report = build_report(
                warehouse,
                self.ledger,
                self.month,
                invoice=invoice,
                refund_types=RefundTypes.of(self.settings.centra.inferred),
                notes=[*warehouse_notes, *notes],
                now=self.clock(),
                links=self.settings.links,
                billing_zone=ZoneInfo(self.settings.reveni.inferred.billing.timezone),
            )
        money: dict[str, int] = {}
        for row in report.money_out:
            add_minor(money, row.currency, row.minor)
        matches = Counter(line.match.value for line in report.settlement.lines)
        log.info(
            "month-end %s: %d returns, %d refunds out (%s); settlement %d lines (%s), %s; %d notes",
            report.month,
            report.returns_in_month,
            sum(row.count for row in report.money_out),
            ", ".join(f"{money_text(m, c)} {c}" for c, m in sorted(money.items())) or "none",
            len(report.settlement.lines),
            ", ".join(f"{n} {match}" for match, n in sorted(matches.items())) or "none",
            (
                "no settlement"
                if not report.settlement.tie_out
                else "balanced"
                if report.settlement.balanced
                else "NOT balanced"
            ),
            len(report.notes),
        )
        return report

    def record(self, report: MonthEndReport, result: MonthEndResult) -> None:
        """Unmatched settlement lines as `settlement_unmatched` for Finance in the ledger."""
        changes = record_settlement(self.ledger, report.settlement, now=self.clock())
        if changes is None:
            log.info("month-end %s: nothing to match, no settlement recorded", report.month)
            return
        result.exceptions_new = len(changes.new)
        result.exceptions_still_open = len(changes.seen)
        result.exceptions_healed = len(changes.healed)
        log.info(
            "month-end %s: settlement_unmatched %d new, %d still open, %d healed",
            report.month,
            result.exceptions_new,
            result.exceptions_still_open,
            result.exceptions_healed,
        )

    def publish(self, report: MonthEndReport, result: MonthEndResult, out: Path | None) -> Rendered:
        """Render the report and save its HTML (at `out`, or in the report directory)."""
        rendered = self.render(report, self.settings.monthend.line_limit)
        result.subject = rendered.subject
        result.html_path = save_html(rendered, self.settings.monthend.report_dir, report.month, out)
        log.info("month-end %s: report saved to %s", report.month, result.html_path)
        return rendered

    def mail(self, rendered: Rendered, result: MonthEndResult, *, send: bool, resend: bool) -> None:
        """E-mail it through the outbox, once per month and recipient list."""
        result.recipients = list(self.settings.monthend.recipients)
        if not send:
            result.mail, result.mail_detail = "not_sent", "--no-send"
        else:
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
        misconfigured = send and result.mail == "not_sent" and bool(result.recipients)
        log.log(
            logging.WARNING if misconfigured else logging.INFO,
            "month-end %s: e-mail %s",
            result.report.month,
            _mail_outcome(result),
        )


def _mail_outcome(result: MonthEndResult) -> str:
    """What became of the e-mail, in words; never an address (a failure's own error, which may
    name one, is logged where it happened)."""
    count = len(result.recipients)
    if result.mail == "sent":
        return f"sent to {count} recipients"
    if result.mail == "already_sent":
        return f"not sent again: {result.mail_detail}"
    if result.mail == "failed":
        return f"to {count} recipients failed; kept in the outbox, the next run sends it"
    return f"not sent: {result.mail_detail}"


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
        # saved before anything is recorded: a report that cannot be written changes nothing
        rendered = month_end.publish(report, result, out)
        month_end.record(report, result)
        month_end.mail(rendered, result, send=send, resend=resend)
        return result
