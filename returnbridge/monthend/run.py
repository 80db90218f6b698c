"""The month-end report, step by step (docs/architecture.md#the-month-end-report).

1. **Invoice**: Reveni's invoice of the month, from a CSV export (`--invoice FILE`, validated
   strictly: a bad file stops the report before anything is written) or the Reveni client's
   inferred `invoices` call; Reveni unreachable is a note on the report, not a failure.
2. **Figures** (`figures.py`): the month from the warehouse (read-only: the reconciliation is
   its only writer) and the ledger's exceptions.
3. **Settlement** (`settlement.py`): disbursements against Centra's credits, line by line;
   what does not match becomes `settlement_unmatched` exceptions for Finance in the ledger, and
   those of the month's returns that now match are healed.
4. **Render** (`reports/month_end.py`, handed in by the entry point: the library never imports
   `reports/`), save the HTML.
5. **Mail** through the ledger's outbox (`mailing.py`): once per month and recipient list under
   a stable Message-ID; a failed send is kept and retried by the next run; `resend` sends
   again on purpose.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import duckdb

from returnbridge.clock import Now, utc_now
from returnbridge.connectors.centra.refunds import RefundTypes
from returnbridge.connectors.email.message import InlineImage, build_message, domain_of
from returnbridge.connectors.email.settings import MailSettings
from returnbridge.connectors.email.smtp import SmtpSender
from returnbridge.connectors.reveni.client import ReveniClient
from returnbridge.connectors.reveni.errors import ReveniError
from returnbridge.connectors.reveni.models import currency_exponent
from returnbridge.core.codes import MONTH_END_CODES, ReturnException
from returnbridge.core.links import LinkSettings
from returnbridge.ledger.records import ExceptionChanges, ExceptionRecord
from returnbridge.ledger.store import Ledger
from returnbridge.monthend import figures
from returnbridge.monthend.figures import FigureConfig, Month
from returnbridge.monthend.invoice import (
    invoice_from_api,
    read_invoice_csv,
    summarize_invoice,
)
from returnbridge.monthend.mailing import (
    MailDelivery,
    deliver,
    queue_mail,
    recipients_key,
)
from returnbridge.monthend.model import (
    InvoiceDoc,
    InvoiceKind,
    MoneyProblem,
    MonthEndReport,
    Problems,
    Settlement,
    SettlementLine,
    add_minor,
    money_text,
)
from returnbridge.monthend.settings import MonthEndSettings
from returnbridge.monthend.settlement import match_settlement
from returnbridge.reconcile.warehouse import Warehouse

log = logging.getLogger(__name__)

MAIL_KIND = "month-end"


# How to give the invoice file, said for both ways of running the report.
_INVOICE_FILE_HOW = (
    "`returnbridge report month-end --invoice FILE`, or the month-end-report deployment's "
    "invoice_file parameter"
)


class Rendered(Protocol):
    """What a renderer gives (`reports.month_end.RenderedReport`)."""

    @property
    def subject(self) -> str: ...
    @property
    def html_email(self) -> str: ...
    @property
    def html_file(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def images(self) -> tuple[InlineImage, ...]: ...


Renderer = Callable[[MonthEndReport, int], Rendered]


@dataclass
class MonthEndResult:
    """What one month-end run made and where it went."""

    report: MonthEndReport
    subject: str = ""
    html_path: Path | None = None
    recipients: list[str] = field(default_factory=list)
    mail: str = "not_sent"  # sent | already_sent | failed | not_sent
    mail_detail: str = ""
    message_id: str | None = None
    exceptions_new: int = 0
    exceptions_still_open: int = 0
    exceptions_healed: int = 0

    @property
    def sent(self) -> bool:
        return self.mail in ("sent", "already_sent")

    def summary(self) -> dict[str, Any]:
        """The run summary's `report` (docs/architecture.md#the-cli-and-the-run-summary)."""
        return {
            "month": self.report.month,
            "html_path": None if self.html_path is None else str(self.html_path),
            "subject": self.subject,
            "emailed_to": list(self.recipients) if self.sent else [],
            "sent": self.sent,
            "mail": self.mail,
            "mail_detail": self.mail_detail,
            "message_id": self.message_id,
            "settlement_unmatched": {
                "new": self.exceptions_new,
                "still_open": self.exceptions_still_open,
                "healed": self.exceptions_healed,
            },
            "notes": list(self.report.notes),
            "totals": self.report.totals(),
        }


# ------------------------------------------------------------------------------ 1. invoice


async def read_invoice(
    month: Month,
    *,
    invoice_file: Path | None,
    settings: MonthEndSettings,
    reveni: ReveniClient | None,
) -> tuple[InvoiceDoc | None, list[str]]:
    """Reveni's invoice of `month` and the notes a reader needs about it. A bad file raises
    `InvoiceFileError` (nothing is written before); Reveni failing is a note."""
    if invoice_file is not None:
        return read_invoice_csv(invoice_file, period=month.text), []
    if settings.invoice_source == "off" or reveni is None:
        return None, [
            f"No invoice for {month.text}: the Reveni invoice API is off "
            "(RETURNBRIDGE_MONTHEND__INVOICE_SOURCE=off); give the dashboard's CSV export "
            f"to match the settlement ({_INVOICE_FILE_HOW})."
        ]
    try:
        invoices = await reveni.invoices(month.text)
    except ReveniError as exc:
        log.warning("month-end: Reveni's invoice of %s could not be read: %s", month.text, exc)
        return None, [
            f"Reveni's invoice of {month.text} could not be read ({type(exc).__name__}: {exc}); "
            "the settlement is not matched. Run again, or give the dashboard's CSV export "
            f"({_INVOICE_FILE_HOW})."
        ]
    doc = invoice_from_api(invoices, month.text)
    if doc is None:
        return None, [f"Reveni has no invoice for {month.text} yet: the settlement is not matched."]
    notes = []
    if doc.status == "open":
        notes.append(
            f"Reveni's invoice of {month.text} is still open: lines may still be added to it."
        )
    return doc, notes


# ------------------------------------------------------------------------------ 2. figures


@contextmanager
def open_warehouse(path: Path, *, wait_seconds: float) -> Iterator[tuple[Warehouse, list[str]]]:
    """The warehouse, read-only. A reconciliation holding it is waited for (up to
    `wait_seconds`); a warehouse that does not exist yet is an empty one, with a note."""
    if not path.exists():
        with Warehouse(":memory:") as empty:
            yield (
                empty,
                [
                    f"No warehouse at {path} yet: the daily reconciliation has never run, so this "
                    "report has no Reveni or Centra data."
                ],
            )
        return
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            warehouse = Warehouse(path, read_only=True)
            break
        except duckdb.IOException as exc:
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"the warehouse {path} is in use (a reconciliation is running?) and was not "
                    f"released within {wait_seconds:.0f} s: {exc}"
                ) from exc
            time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
    with warehouse:
        yield warehouse, []


def build_report(
    warehouse: Warehouse,
    ledger: Ledger,
    month: Month,
    *,
    invoice: InvoiceDoc | None,
    refund_types: RefundTypes,
    manual_refund_payment_method: str = "manual",
    notes: Sequence[str] = (),
    now: datetime,
    links: LinkSettings | None = None,
    billing_zone: ZoneInfo | None = None,
) -> MonthEndReport:
    """The report of `month` (its settlement matched, nothing recorded yet); `links` gives each
    exception code its runbook entry. `billing_zone`: the timezone of Reveni's billing periods
    (inferred; default the brand's): the invoice of "2026-10" covers October there."""
    config = FigureConfig(refund_types, manual_refund_payment_method)
    exceptions = ledger.exceptions()
    billed = Month(month.year, month.month, billing_zone or month.zone)
    # only disbursements settle against Centra: a fee line's return needs no credit or facts
    invoice_returns = (
        [
            line.return_id
            for line in invoice.lines
            if line.return_id and line.kind is InvoiceKind.DISBURSEMENT
        ]
        if invoice is not None
        else []
    )
    credits = figures.reveni_paid_credits(warehouse, month, config, invoice_returns)
    facts = figures.return_facts(
        warehouse, [*invoice_returns, *(c.reveni_return_id for c in credits)]
    )
    settlement = match_settlement(
        invoice,
        credits,
        facts,
        month_start=month.start,
        month_end=month.end,
        centra_currencies=figures.centra_currencies(warehouse),
        invoice_start=billed.start,
        reveni_paid=(
            None if invoice is None else figures.reveni_paid(warehouse, billed.start, billed.end)
        ),
    )
    # the settlement_unmatched this report raises are the month's, though recorded after it
    exceptions = with_settlement(exceptions, settlement, now=now)
    tallies, at_risk = figures.exception_tallies(
        exceptions, month, runbook=links.runbook_for if links is not None else lambda _: None
    )
    problems = Problems(
        duplicate_refunds=figures.money_problem(exceptions, "duplicate_refund", month),
        gateway_failures=figures.money_problem(exceptions, "refund_failed_at_gateway", month),
        amount_mismatches=figures.money_problem(exceptions, "refund_amount_mismatch", month),
        centra_only_refunds=figures.money_problem(exceptions, "unmatched_centra_refund", month),
        settlement_unmatched=_unmatched_problem(settlement),
        exceptions=tallies,
        money_at_risk=at_risk,
        open_items=figures.open_items(exceptions, month),
    )
    data_as_of = warehouse.last_loaded_at()
    all_notes = list(notes)
    incomplete: list[str] = []
    if data_as_of is None:
        incomplete.append("no warehouse data")
    elif data_as_of < month.end:
        incomplete.append("data loaded before the month ended")
    if data_as_of is None and not notes:
        all_notes.append(
            "The warehouse has never been loaded: the figures below are empty. Run the "
            "reconciliation, then this report again."
        )
    elif data_as_of is not None and data_as_of < month.end:
        all_notes.append(
            f"The warehouse was last loaded at {data_as_of.astimezone(month.zone):%Y-%m-%d %H:%M}"
            f" ({month.zone}), before {month.text} ended: figures may be incomplete. Run the "
            "reconciliation, then this report again."
        )
    if invoice is not None:  # without one, the invoice's own note already says why
        all_notes.extend(settlement.notes)
    return MonthEndReport(
        month=month.text,
        timezone=str(month.zone),
        period_start=month.start,
        period_end=month.end,
        generated_at=now.astimezone(month.zone),
        data_as_of=data_as_of,
        returns_in_month=figures.returns_in_month(warehouse, month),
        money_out=figures.money_out(warehouse, month, config),
        exchanges=figures.exchanges(warehouse, month, exceptions),
        invoice=None if invoice is None else summarize_invoice(invoice),
        settlement=settlement,
        problems=problems,
        trend=figures.trend(warehouse, month),
        notes=tuple(all_notes),
        by_market=figures.by_market(warehouse, month),
        incomplete=tuple(incomplete),
    )


def with_settlement(
    exceptions: Sequence[ExceptionRecord], settlement: Settlement, *, now: datetime
) -> list[ExceptionRecord]:
    """The ledger's exceptions as `record_settlement` will leave them: within the returns this
    settlement saw, its `settlement_unmatched` replace those it will heal and join those it will
    open (the recorded ones keep their id, status and history)."""
    if not settlement.tie_out and not settlement.lines:
        return list(exceptions)  # nothing matched: nothing recorded
    seen = settlement_scope(exceptions, settlement)
    found = {exc.key: exc for exc in settlement_exceptions(settlement)}

    def key(record: ExceptionRecord) -> tuple[str, str | None, int | None, str | None]:
        return (record.code, record.reveni_return_id, record.order_number, record.sku)

    out: list[ExceptionRecord] = []
    recorded: set[tuple[str, str | None, int | None, str | None]] = set()
    for record in exceptions:
        if record.code in MONTH_END_CODES and record.reveni_return_id in seen:
            if key(record) not in found:
                continue  # healed by this settlement
            recorded.add(key(record))
        out.append(record)
    for exc_key, exc in found.items():
        if exc_key in recorded:
            continue
        out.append(
            ExceptionRecord(
                id=0,
                code=exc.code,
                owner=exc.owner.value,
                reveni_return_id=exc.reveni_return_id,
                order_number=exc.order_number,
                sku=exc.sku,
                amount=exc.amount,
                currency=exc.currency,
                detail=exc.detail,
                status="open",
                first_seen=now,
                last_seen=now,
                attempts=0,
                action_key=None,
                resolved_at=None,
                resolution_note=None,
                facts=dict(exc.facts),
            )
        )
    return out


def _unmatched_problem(settlement: Settlement) -> MoneyProblem:
    minor: dict[str, int] = {}
    for line in settlement.exceptions:
        add_minor(minor, line.currency, line.amount_minor)
    return MoneyProblem(count=len(settlement.exceptions), minor=minor)


# ------------------------------------------------------------------------------ 3. settlement


def settlement_exceptions(settlement: Settlement) -> list[ReturnException]:
    """One `settlement_unmatched` per return (and currency) with lines that do not match: the
    amount is what does not match, the detail says which lines and why."""
    grouped: dict[tuple[str | None, int | None, str], list[SettlementLine]] = {}
    for line in settlement.exceptions:
        grouped.setdefault((line.reveni_return_id, line.order_number, line.currency), []).append(
            line
        )
    found = []
    for (rid, order, currency), lines in sorted(grouped.items(), key=lambda kv: str(kv[0])):
        minor = sum(line.amount_minor for line in lines)
        found.append(
            ReturnException(
                "settlement_unmatched",
                rid,
                order,
                amount=Decimal(minor).scaleb(-currency_exponent(currency)),
                currency=currency,
                detail="; ".join(
                    f"{line.side.value} {money_text(line.amount_minor, currency)} {currency}: "
                    f"{line.detail or line.match.value}"
                    for line in lines
                ),
                facts=(("period", settlement.period),) if settlement.period else (),
            )
        )
    return found


def record_settlement(
    ledger: Ledger, settlement: Settlement, *, now: datetime | None = None
) -> ExceptionChanges | None:
    """The unmatched lines as ledger exceptions for Finance; those of the returns this match
    saw that now match are healed. None when there was nothing to match (no invoice)."""
    if not settlement.tie_out and not settlement.lines:
        return None
    return ledger.observe_exceptions(
        settlement_exceptions(settlement),
        scope_return_ids=sorted(
            settlement_scope(
                [exc for code in sorted(MONTH_END_CODES) for exc in ledger.exceptions(code=code)],
                settlement,
            )
        ),
        scope_codes=sorted(MONTH_END_CODES),
        now=now,
    )


def settlement_scope(exceptions: Sequence[ExceptionRecord], settlement: Settlement) -> set[str]:
    """The returns whose month-end exceptions this settlement decides: those its lines name,
    and those of the open ones raised about its period (fact `period`) by an earlier run, e.g.
    with a wrong invoice file: made again with the right one, they heal."""
    scope = {line.reveni_return_id for line in settlement.lines if line.reveni_return_id}
    if settlement.period:
        scope |= {
            exc.reveni_return_id
            for exc in exceptions
            if exc.code in MONTH_END_CODES
            and exc.reveni_return_id
            and not exc.closed
            and exc.facts.get("period") == settlement.period
        }
    return scope


# ------------------------------------------------------------------------------ 4. render, save


def save_html(rendered: Rendered, directory: Path, month: str, out: Path | None = None) -> Path:
    """The self-contained HTML, written whole (a temp file renamed), at `out` or
    `directory/month-end-YYYY-MM.html`."""
    path = out or directory / f"month-end-{month}.html"
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory: name the HTML file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(rendered.html_file, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # written and renamed: gone already; failed: not left behind
    return path


# ------------------------------------------------------------------------------ 5. mail


def mail_report(
    ledger: Ledger,
    rendered: Rendered,
    *,
    month: str,
    recipients: Sequence[str],
    mail: MailSettings,
    resend: bool = False,
    sender: SmtpSender | None = None,
    now: Now = utc_now,
) -> tuple[str, str, str | None]:
    """Send the report through the outbox: (status, detail, Message-ID). Status `sent`,
    `already_sent` (this month went to these recipients before and `resend` is off), `failed`
    (kept in the outbox, sent again by the next run) or `not_sent` (no SMTP host or no
    recipients)."""
    if not recipients:
        return "not_sent", "no recipients (RETURNBRIDGE_MONTHEND__RECIPIENTS)", None
    if not mail.host:
        return "not_sent", "no SMTP server (RETURNBRIDGE_MAIL__HOST)", None
    key = recipients_key(MAIL_KIND, month, recipients)
    subject = f"{mail.subject_prefix} {rendered.subject}".strip()

    def build(message_id: str) -> Any:
        return build_message(
            subject=subject,
            sender=mail.sender,
            recipients=list(recipients),
            html=rendered.html_email,
            text=rendered.text,
            images=rendered.images,
            message_id=message_id,
            date=now(),
            # RFC 3834: a machine's message, so auto-responders (out of office) do not answer
            headers={
                "Auto-Submitted": "auto-generated",
                "X-Returnbridge-Report": f"month-end {month}",
            },
        )

    record = queue_mail(
        ledger,
        key=key,
        subject=subject,
        sender=mail.sender,
        recipients=list(recipients),
        build=build,
        domain=domain_of(mail.sender),
        resend=resend,
    )
    if record.status == "sent":
        sent_at = record.sent_at.isoformat() if record.sent_at else "before"
        detail = f"already sent on {sent_at} (--resend sends again)"
        if record.subject != subject:
            # e.g. sent while Reveni's invoice could not be read, made again with it
            detail = (
                f"already sent on {sent_at} as {record.subject!r}; this report differs "
                f"({subject!r}): --resend sends it as a new e-mail"
            )
        return "already_sent", detail, record.message_id
    smtp = sender or SmtpSender(mail)
    delivery: MailDelivery = deliver(ledger, smtp, record)
    # and any other month's report a failed send left in the outbox (this one was just tried);
    # this month's kept for another recipient list is superseded by this one, never sent
    for other in ledger.mail_unsent(key_prefix=f"{MAIL_KIND}:"):
        if other.id == record.id:
            continue
        if other.key.startswith(f"{MAIL_KIND}:{month}:"):
            reason = f"superseded by {record.message_id} (the recipient list changed)"
            if ledger.mail_supersede(other.id, reason) is not None:
                log.warning(
                    "month-end: the kept e-mail %s to the earlier recipient list is not sent: %s",
                    other.message_id,
                    reason,
                )
            continue
        earlier = deliver(ledger, smtp, other)
        log.info("month-end: earlier e-mail %s: %s", earlier.key, earlier.status)
    if delivery.status == "sent":
        return "sent", f"sent to {', '.join(recipients)}", record.message_id
    return delivery.status, delivery.error or "", record.message_id
