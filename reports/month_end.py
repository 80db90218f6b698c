"""The month-end report Finance closes the month with: an e-mail (HTML with inline charts, and a
text/plain alternative) and a self-contained HTML file to keep.

Pure: `render_month_end(report)` answers a `RenderedReport` and does no I/O besides reading its
templates from the package. The e-mail connector sends it and the entry point that builds the
report hands this renderer in: the library never imports `reports/`
(docs/architecture.md#rooms-and-imports).

How it is built, and why:
- `_view(report, limit)` turns the report into plain view data (every amount already formatted,
  every verdict already decided), so the templates only lay things out and the HTML and the text
  part cannot disagree on a number.
- One template set for the e-mail and the file: the e-mail references the charts as `cid:`
  parts and lists at most `line_limit` settlement lines a group (a month has thousands of
  matched lines; nobody reads them in a mail client), the file embeds the charts as data: URIs
  and lists every line (`file_line_limit=None`), since it is what is kept.
- The CSS lives in `templates/month_end.css` and is inlined into `style=""` attributes with
  css_inline (mail clients drop `<style>` blocks); the layout is tables, at most 720 px wide,
  with nothing remote to load and no script.
- Autoescaping is on for HTML: return ids, details and notes come from Reveni's and Centra's
  data. The text template is not HTML and is not escaped (escaping would print `&lt;`).
- Money is formatted from integer minor units with `money_text`, thousands grouped by a thin
  space, the currency code after: "12 345.67 EUR". Dates are shown in the brand's timezone.
- The e-mail's HTML loses its class attributes once the CSS is inlined and the matched lines get
  a narrow table: Gmail clips a message past 102 KB of HTML, and what it clips is out of sight.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from reports.charts import (
    format_count,
    format_money,
    group_thousands,
    money_by_method_chart,
    month_title,
    png_size,
    trend_chart,
    trend_months,
)
from reports.digest import owner_title
from returnbridge.connectors.email.message import InlineImage
from returnbridge.connectors.reveni.models import currency_exponent
from returnbridge.monthend.model import (
    AGEING_BUCKETS,
    INVOICE_KIND_LABELS,
    MATCH_LABELS,
    PAID_BY_LABELS,
    InvoiceKind,
    InvoiceKindTotal,
    InvoiceSummary,
    InvoiceTotal,
    Match,
    MoneyProblem,
    MonthEndReport,
    OpenItem,
    PaidBy,
    Settlement,
    SettlementLine,
    Side,
    TieOut,
)

__all__ = [
    "RenderedReport",
    "format_money",
    "group_thousands",
    "render_month_end",
    "subject_of",
]

# Next to this module, found by its path rather than `PackageLoader("reports")`: under pytest the
# name `reports` can resolve to the namespace package tests/reports, which has no templates.
TEMPLATES = Path(__file__).resolve().parent / "templates"
HTML_TEMPLATE = "month_end.html.j2"
TEXT_TEMPLATE = "month_end.txt.j2"
DEFAULT_LINE_LIMIT = 50

FEE_KINDS = tuple(kind for kind in InvoiceKind if kind is not InvoiceKind.DISBURSEMENT)
# what counts as refunded: paid out by someone, not merely asked for or refused
REFUNDED = (PaidBy.REVENI_INSTANT, PaidBy.PSP_SUCCEEDED, PaidBy.STORE_CREDIT)
# The market table and the trend count refunds as Reveni approved them; section 1 counts money
# as it left. Said under both, so nobody adds one to the other.
APPROVED_NOTE = (
    "Refunds as Reveni approved them, by Reveni's date. Section 1 is money as it left: the "
    "payment provider's refunds by Centra's date, so a refund the provider refused or one "
    "held by an exception is here and not there, and one paid this month for an earlier "
    "month's return is there under this month and here under its own."
)


@dataclass(frozen=True)
class RenderedReport:
    """The report ready to send and to keep.

    `html_email` references the charts as `cid:<cid>` (each in `images`); `html_file` is the
    same page with the charts embedded as data: URIs and every settlement line listed, so the
    saved file stands alone. `text` is the text/plain alternative: the key figures and the
    tie-out per currency."""

    subject: str
    html_email: str
    html_file: str
    text: str
    images: tuple[InlineImage, ...]


# --------------------------------------------------------------------------- view data


@dataclass(frozen=True)
class Money:
    """An amount as shown: "1 234.50 EUR", and whether it is below zero (shown in its own
    colour, never hidden)."""

    text: str
    currency: str
    negative: bool = False

    def __str__(self) -> str:
        return self.text


def _money(minor: int, currency: str) -> Money:
    return Money(format_money(minor, currency), currency, minor < 0)


def _monies(amounts: Mapping[str, int]) -> tuple[Money, ...]:
    """Amounts per currency, by currency code, zeros left out."""
    return tuple(_money(amounts[c], c) for c in sorted(amounts) if amounts[c])


@dataclass(frozen=True)
class FigureRow:
    """A labelled row of a figures table. `tone`: "" | "total" | "good" | "bad" | "warn"."""

    label: str
    count: str = ""
    amount: Money | None = None
    tone: str = ""


@dataclass(frozen=True)
class MarketRow:
    market: str
    returns: str
    refunds: str
    amount: Money | None


@dataclass(frozen=True)
class MoneyOutBlock:
    currency: str
    rows: tuple[FigureRow, ...]
    refunded: FigureRow


@dataclass(frozen=True)
class KindRow:
    label: str
    lines: str
    net: Money
    vat: Money
    gross: Money
    tone: str = ""


@dataclass(frozen=True)
class InvoiceBlock:
    currency: str
    kinds: tuple[KindRow, ...]  # the fee kinds, the fees' subtotal, disbursements, the total
    stated: Money | None
    agrees: bool | None
    verdict: str


@dataclass(frozen=True)
class InvoiceView:
    source: str
    invoice_id: str
    status: str
    status_warning: str
    blocks: tuple[InvoiceBlock, ...]


@dataclass(frozen=True)
class TieOutBlock:
    currency: str
    rows: tuple[FigureRow, ...]  # disbursements, its four parts, their sum, the difference
    balanced: bool
    verdict: str
    centra: tuple[FigureRow, ...]
    reveni: tuple[FigureRow, ...] = ()  # charged vs Reveni's own data (none when not read)
    tone: str = "good"  # good: settled; warn: balanced, lines unmatched; bad: not balanced


@dataclass(frozen=True)
class LineRow:
    side: str
    return_id: str
    order: str
    day: str
    invoice: Money | None
    centra: Money | None
    difference: Money | None
    status: str
    detail: str


@dataclass(frozen=True)
class LineGroup:
    key: str
    title: str
    explanation: str
    tone: str
    total: int
    rows: tuple[LineRow, ...]
    more: int
    sums: tuple[Money, ...]


@dataclass(frozen=True)
class ProblemRow:
    label: str
    count: str
    money: tuple[Money, ...]
    recovered: str
    recovered_money: tuple[Money, ...]
    open: bool  # more than were recovered or resolved


@dataclass(frozen=True)
class TallyRow:
    owner: str
    code: str
    title: str
    opened: str
    resolved: str
    open_at_end: str
    ageing: tuple[str, ...]
    money: tuple[Money, ...]
    tone: str
    still_open: bool
    old: tuple[bool, ...]  # per ageing bucket: open ones older than 30 days
    runbook_url: str | None = None


@dataclass(frozen=True)
class TrendRow:
    month: str
    returns: str
    cells: tuple[tuple[str, Money], ...]  # per currency: refunds, refunded


@dataclass(frozen=True)
class Headline:
    currency: str
    disbursed: Money | None
    refunded: Money | None
    balanced: bool | None
    at_risk: Money | None
    tie_text: str = "no disbursements"  # "balanced", "balanced; 25.00 EUR unmatched", ...
    tie_tone: str = "muted"  # good, warn, bad, muted (the CSS pill)


@dataclass(frozen=True)
class ImageRef:
    src: str
    alt: str
    width: int
    height: int


@dataclass(frozen=True)
class OpenItemRow:
    exception: str  # "#12"
    title: str
    code: str
    order: str
    return_id: str
    opened: str
    amount: Money
    centra: Money | None  # a mismatch's other side


@dataclass(frozen=True)
class View:
    open_items: tuple[OpenItemRow, ...]
    open_items_more: int
    approved_note: str
    month: str
    month_title: str
    timezone: str
    period: str
    generated_at: str
    data_as_of: str
    data_missing: bool
    warnings: tuple[str, ...]
    empty: bool
    empty_text: str
    returns_in_month: str
    exceptions_count: int
    headlines: tuple[Headline, ...]
    money_out: tuple[MoneyOutBlock, ...]
    exchanges: tuple[FigureRow, ...]
    markets: tuple[MarketRow, ...]
    invoice: InvoiceView | None
    no_invoice_text: str
    tie_outs: tuple[TieOutBlock, ...]
    settlement_notes: tuple[str, ...]
    groups: tuple[LineGroup, ...]
    matched: LineGroup
    problems: tuple[ProblemRow, ...]
    tallies: tuple[TallyRow, ...]
    tally_total: TallyRow | None
    ageing_labels: tuple[str, ...]
    at_risk: tuple[Money, ...]
    trend_currencies: tuple[str, ...]
    trend: tuple[TrendRow, ...]
    line_limit: int | None


# --------------------------------------------------------------------------- small helpers


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _local(moment: datetime, zone: ZoneInfo | None) -> datetime:
    """`moment` in the brand's timezone (a naive datetime is taken as UTC)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone) if zone is not None else aware


def _when(moment: datetime, zone: ZoneInfo | None) -> str:
    """A moment for people, in the brand's timezone: "2026-11-02 06:30 CET"."""
    local = _local(moment, zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or ''}".strip()


def _period(report: MonthEndReport, zone: ZoneInfo | None) -> str:
    """The month's days, e.g. "2026-10-01 to 2026-10-31 (Europe/Stockholm)": the model's end
    is exclusive, people read the last day."""
    first = _local(report.period_start, zone).date()
    last = (_local(report.period_end, zone) - timedelta(microseconds=1)).date()
    return f"{first.isoformat()} to {last.isoformat()} ({report.timezone})"


def _day(value: date | None) -> str:
    return value.isoformat() if value is not None else ""


def _to_the_unit(currency: str) -> str:
    return "to the cent" if currency_exponent(currency) > 0 else "exactly"


def _source_text(source: str) -> str:
    if source == "reveni-api":
        return "Reveni API"
    if source.startswith("csv:"):
        return f"CSV file {source.removeprefix('csv:')}"
    return source


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{format_count(count)} {one if count == 1 else (many or one + 's')}"


# --------------------------------------------------------------------------- sections


def _money_out(report: MonthEndReport) -> tuple[MoneyOutBlock, ...]:
    totals: dict[str, dict[PaidBy, tuple[int, int]]] = {}
    for row in report.money_out:
        methods = totals.setdefault(row.currency, {})
        count, minor = methods.get(row.paid_by, (0, 0))
        methods[row.paid_by] = (count + row.count, minor + row.minor)
    blocks: list[MoneyOutBlock] = []
    for currency in sorted(totals):
        methods = totals[currency]
        rows = []
        for paid_by in PaidBy:
            count, minor = methods.get(paid_by, (0, 0))
            tone = ""
            if paid_by is PaidBy.PSP_FAILED and count:
                tone = "bad"
            elif paid_by is PaidBy.PSP_PENDING and count:
                tone = "warn"
            rows.append(
                FigureRow(
                    PAID_BY_LABELS[paid_by], format_count(count), _money(minor, currency), tone
                )
            )
        refunded_count = sum(methods.get(p, (0, 0))[0] for p in REFUNDED)
        refunded_minor = sum(methods.get(p, (0, 0))[1] for p in REFUNDED)
        blocks.append(
            MoneyOutBlock(
                currency,
                tuple(rows),
                FigureRow(
                    "Refunded (Reveni, provider succeeded, store credit)",
                    format_count(refunded_count),
                    _money(refunded_minor, currency),
                    "total",
                ),
            )
        )
    return tuple(blocks)


def _markets(report: MonthEndReport) -> tuple[MarketRow, ...]:
    return tuple(
        MarketRow(
            m.market,
            format_count(m.returns),
            format_count(m.refunds),
            _money(m.refunds_minor, m.currency) if m.currency else None,
        )
        for m in report.by_market
    )


def _exchanges(report: MonthEndReport) -> tuple[FigureRow, ...]:
    ex = report.exchanges
    return (
        FigureRow("Returns with an exchange", format_count(ex.returns)),
        FigureRow("Items exchanged", format_count(ex.items)),
        FigureRow("Zero-value exchange orders created in Centra", format_count(ex.orders_created)),
        FigureRow(
            "Exchanges not made (out of stock, order failed)",
            format_count(ex.not_made),
            tone="bad" if ex.not_made else "",
        ),
    )


def _invoice_block(
    currency: str, kinds: Sequence[InvoiceKindTotal], total: InvoiceTotal | None
) -> InvoiceBlock:
    by_kind: dict[InvoiceKind, tuple[int, int, int]] = {}
    for k in kinds:
        lines, net, vat = by_kind.get(k.kind, (0, 0, 0))
        by_kind[k.kind] = (lines + k.lines, net + k.net_minor, vat + k.vat_minor)

    def row(label: str, lines: int, net: int, vat: int, tone: str = "") -> KindRow:
        return KindRow(
            label,
            format_count(lines),
            _money(net, currency),
            _money(vat, currency),
            _money(net + vat, currency),
            tone,
        )

    rows = [row(INVOICE_KIND_LABELS[kind], *by_kind.get(kind, (0, 0, 0))) for kind in FEE_KINDS]
    fee_lines = sum(by_kind.get(kind, (0, 0, 0))[0] for kind in FEE_KINDS)
    if total is None:  # a currency with lines but no total: add the lines up
        fees_net = sum(by_kind.get(kind, (0, 0, 0))[1] for kind in FEE_KINDS)
        fees_vat = sum(by_kind.get(kind, (0, 0, 0))[2] for kind in FEE_KINDS)
        disb = by_kind.get(InvoiceKind.DISBURSEMENT, (0, 0, 0))[1]
        total = InvoiceTotal(currency, fees_net, fees_vat, disb)
    rows.append(row("Fees", fee_lines, total.fees_net_minor, total.vat_minor, "subtotal"))
    disb_lines = by_kind.get(InvoiceKind.DISBURSEMENT, (0, 0, 0))[0]
    rows.append(
        row(INVOICE_KIND_LABELS[InvoiceKind.DISBURSEMENT], disb_lines, total.disbursements_minor, 0)
    )
    rows.append(
        KindRow(
            "Total",
            format_count(fee_lines + disb_lines),
            _money(total.fees_net_minor + total.disbursements_minor, currency),
            _money(total.vat_minor, currency),
            _money(total.gross_minor, currency),
            "total",
        )
    )
    agrees = total.agrees
    if total.stated_gross_minor is None:
        verdict = "The invoice states no total (a CSV export has none): only its lines are shown."
    elif agrees:
        verdict = "The invoice's stated total agrees with its lines."
    else:
        off = total.stated_gross_minor - total.gross_minor
        verdict = (
            "The invoice's stated total does NOT agree with its lines: it states "
            f"{format_money(total.stated_gross_minor, currency)}, its lines add up to "
            f"{format_money(total.gross_minor, currency)} (difference "
            f"{format_money(off, currency)})."
        )
    stated = (
        None if total.stated_gross_minor is None else _money(total.stated_gross_minor, currency)
    )
    return InvoiceBlock(currency, tuple(rows), stated, agrees, verdict)


def _invoice(invoice: InvoiceSummary | None) -> InvoiceView | None:
    if invoice is None:
        return None
    totals = {t.currency: t for t in invoice.totals}
    currencies = sorted(set(totals) | {k.currency for k in invoice.by_kind})
    blocks = tuple(
        _invoice_block(c, [k for k in invoice.by_kind if k.currency == c], totals.get(c))
        for c in currencies
    )
    status = invoice.status or ""
    warning = (
        "The invoice is still open: Reveni may add or change lines before it is issued."
        if status == "open"
        else ""
    )
    return InvoiceView(
        _source_text(invoice.source), invoice.invoice_id or "", status, warning, blocks
    )


def _tie_out(tie: TieOut) -> TieOutBlock:
    c = tie.currency
    parts = tie.matched_minor + tie.covered_minor + tie.awaiting_minor + tie.unmatched_minor
    off = tie.disbursements_minor - parts
    covered_label = "Covered by Reveni (return rejected)"
    if tie.covered_charged_minor or tie.covered_credited_minor:
        covered_label += (
            f": {format_money(tie.covered_charged_minor, c)} charged, "
            f"{format_money(-tie.covered_credited_minor, c)} credited back"
        )
    rows = (
        FigureRow(
            "Disbursements on Reveni's invoice",
            amount=_money(tie.disbursements_minor, c),
            tone="total",
        ),
        FigureRow("Matched to a Centra credit", amount=_money(tie.matched_minor, c)),
        FigureRow(covered_label, amount=_money(tie.covered_minor, c)),
        FigureRow("Awaiting inspection", amount=_money(tie.awaiting_minor, c)),
        FigureRow(
            "Unmatched or amount differs",
            amount=_money(tie.unmatched_minor, c),
            tone="bad" if tie.unmatched_minor else "",
        ),
        FigureRow(
            "Matched + covered + awaiting + unmatched", amount=_money(parts, c), tone="subtotal"
        ),
        FigureRow("Difference", amount=_money(off, c), tone="good" if off == 0 else "bad"),
    )
    reveni: tuple[FigureRow, ...] = ()
    difference = tie.reveni_difference_minor
    if tie.reveni_paid_minor is not None and difference is not None:
        reveni = (
            FigureRow(
                "Charged on the invoice for instant refunds (before credits back)",
                amount=_money(tie.charged_minor, c),
            ),
            FigureRow(
                "Instant refunds Reveni's returns data says it paid in the invoice's period",
                amount=_money(tie.reveni_paid_minor, c),
            ),
            FigureRow(
                "Difference", amount=_money(difference, c), tone="good" if not difference else "bad"
            ),
        )
    unmatched = tie.unmatched_minor + tie.centra_unmatched_minor
    if off:
        tone = "bad"
        verdict = (
            f"NOT balanced: the disbursements are {format_money(off, c)} away from their parts."
        )
    elif difference:
        tone = "bad"
        verdict = (
            f"NOT balanced: the invoice charges {format_money(tie.charged_minor, c)} for instant "
            "refunds, Reveni's own returns data shows "
            f"{format_money(tie.reveni_paid_minor or 0, c)} paid in the period "
            f"({format_money(difference, c)} differs)."
        )
    elif tie.settled:
        tone = "good"
        checked = " and agrees with Reveni's returns data" if reveni else ""
        verdict = f"Balanced {_to_the_unit(c)}{checked}; every line settled."
    else:
        tone = "warn"
        verdict = (
            f"Balanced {_to_the_unit(c)}, but {format_money(unmatched, c)} is unmatched: see the "
            "lines that need a person."
        )
    centra = (
        FigureRow(
            "Reveni-paid credits in Centra this month", amount=_money(tie.centra_credits_minor, c)
        ),
        FigureRow(
            "of which with no disbursement on the invoice",
            amount=_money(tie.centra_unmatched_minor, c),
            tone="bad" if tie.centra_unmatched_minor else "",
        ),
    )
    return TieOutBlock(c, rows, tie.balanced, verdict, centra, reveni, tone)


def _line_row(line: SettlementLine) -> LineRow:
    c = line.currency
    invoice_minor: int | None
    centra_minor: int | None
    if line.side is Side.DISBURSEMENT:
        side = f"Invoice row {line.row}" if line.row is not None else "Invoice"
        invoice_minor, centra_minor = line.amount_minor, line.counterpart_minor
    else:
        side = "Centra credit"
        invoice_minor, centra_minor = line.counterpart_minor, line.amount_minor
    invoice = None if invoice_minor is None else _money(invoice_minor, c)
    centra = None if centra_minor is None else _money(centra_minor, c)
    difference = (
        None
        if invoice_minor is None or centra_minor is None or invoice_minor == centra_minor
        else _money(invoice_minor - centra_minor, c)
    )
    return LineRow(
        side=side,
        return_id=line.reveni_return_id or "",
        order="" if line.order_number is None else str(line.order_number),
        day=_day(line.event_date),
        invoice=invoice,
        centra=centra,
        difference=difference,
        status=MATCH_LABELS[line.match],
        detail=line.detail,
    )


def _line_key(line: SettlementLine) -> tuple[str, str, int, int, int, int]:
    """By currency, then return (a disbursement next to its credit), the invoice side first."""
    return (
        line.currency,
        line.reveni_return_id or "",
        0 if line.side is Side.DISBURSEMENT else 1,
        line.order_number or 0,
        line.row or 0,
        line.amount_minor,
    )


def _group(
    key: str,
    title: str,
    explanation: str,
    tone: str,
    lines: Iterable[SettlementLine],
    limit: int | None,
) -> LineGroup:
    ordered = sorted(lines, key=_line_key)
    shown = ordered if limit is None else ordered[:limit]
    sums: dict[str, int] = {}
    for line in ordered:
        sums[line.currency] = sums.get(line.currency, 0) + line.amount_minor
    return LineGroup(
        key=key,
        title=title,
        explanation=explanation,
        tone=tone,
        total=len(ordered),
        rows=tuple(_line_row(line) for line in shown),
        more=len(ordered) - len(shown),
        sums=_monies(sums),
    )


def _groups(settlement: Settlement, limit: int | None) -> tuple[tuple[LineGroup, ...], LineGroup]:
    """The groups a person reads, in the order they need attention; and the matched lines."""

    def of(*matches: Match) -> list[SettlementLine]:
        return [line for line in settlement.lines if line.match in matches]

    groups = (
        _group(
            "attention",
            "Lines that need a person",
            "The amount differs between the invoice and Centra, or one side has nothing for "
            "the return. Each one is a settlement_unmatched exception for Finance.",
            "bad",
            of(Match.AMOUNT_DIFFERS, Match.UNMATCHED),
            limit,
        ),
        _group(
            "covered",
            "Covered by Reveni",
            "Instant refunds Reveni paid for returns it then rejected: Reveni bears them, no "
            "Centra credit is due.",
            "",
            of(Match.COVERED),
            limit,
        ),
        _group(
            "awaiting",
            "Awaiting inspection",
            "Disbursed, not inspected yet: Centra is credited once the return is accepted.",
            "",
            of(Match.AWAITING_CREDIT),
            limit,
        ),
        _group(
            "earlier",
            "Disbursed on an earlier invoice",
            "Credits in Centra this month for refunds Reveni disbursed in an earlier period.",
            "",
            of(Match.EARLIER_INVOICE),
            limit,
        ),
    )
    matched = _group(
        "matched",
        "Matched",
        "Both sides have the return, for the same amount and currency.",
        "good",
        of(Match.MATCHED),
        limit,
    )
    return groups, matched


def _problem(label: str, problem: MoneyProblem, recovered_label: str) -> ProblemRow:
    return ProblemRow(
        label=label,
        count=format_count(problem.count),
        money=_monies(problem.minor),
        recovered=f"{format_count(problem.recovered)} {recovered_label}" if problem.count else "",
        recovered_money=_monies(problem.recovered_minor),
        open=problem.count > problem.recovered,
    )


def _ageing(values: Sequence[int]) -> tuple[int, ...]:
    """`values` fitted to `AGEING_BUCKETS` (missing buckets zero, extra ones in the last)."""
    n = len(AGEING_BUCKETS)
    fitted = [*values[:n], *([0] * max(0, n - len(values)))]
    if len(values) > n:
        fitted[-1] += sum(values[n:])
    return tuple(fitted)


def _tallies(report: MonthEndReport) -> tuple[tuple[TallyRow, ...], TallyRow | None]:
    rows: list[TallyRow] = []
    opened = resolved = open_at_end = 0
    ageing_total = [0] * len(AGEING_BUCKETS)
    money_total: dict[str, int] = {}
    for t in sorted(report.problems.exceptions, key=lambda t: (t.owner, t.code)):
        ageing = _ageing(t.ageing)
        rows.append(
            TallyRow(
                owner=owner_title(t.owner),
                code=t.code,
                title=t.title,
                opened=format_count(t.opened),
                resolved=format_count(t.resolved),
                open_at_end=format_count(t.open_at_end),
                ageing=tuple(format_count(a) for a in ageing),
                money=_monies(t.open_minor),
                tone="",
                still_open=t.open_at_end > 0,
                old=tuple(index >= 2 and n > 0 for index, n in enumerate(ageing)),
                runbook_url=t.runbook_url,
            )
        )
        opened += t.opened
        resolved += t.resolved
        open_at_end += t.open_at_end
        ageing_total = [a + b for a, b in zip(ageing_total, ageing, strict=True)]
        for currency, minor in t.open_minor.items():
            money_total[currency] = money_total.get(currency, 0) + minor
    if not rows:
        return (), None
    total = TallyRow(
        owner="",
        code="",
        title="All exceptions",
        opened=format_count(opened),
        resolved=format_count(resolved),
        open_at_end=format_count(open_at_end),
        ageing=tuple(format_count(a) for a in ageing_total),
        money=_monies(money_total),
        tone="total",
        still_open=open_at_end > 0,
        old=tuple(index >= 2 and n > 0 for index, n in enumerate(ageing_total)),
    )
    return tuple(rows), total


def _trend(report: MonthEndReport) -> tuple[tuple[str, ...], tuple[TrendRow, ...]]:
    months = trend_months(report.trend)
    shown = set(months)
    currencies = tuple(sorted({p.currency for p in report.trend if p.currency}))
    returns: dict[str, int] = {}
    refunds: dict[tuple[str, str], tuple[int, int]] = {}
    for p in report.trend:
        if p.month not in shown:
            continue
        returns[p.month] = returns.get(p.month, 0) + p.returns
        if p.currency:
            count, minor = refunds.get((p.month, p.currency), (0, 0))
            refunds[(p.month, p.currency)] = (count + p.refunds, minor + p.refunds_minor)
    rows = tuple(
        TrendRow(
            month=month,
            returns=format_count(returns.get(month, 0)),
            cells=tuple(
                (
                    format_count(refunds.get((month, c), (0, 0))[0]),
                    _money(refunds.get((month, c), (0, 0))[1], c),
                )
                for c in currencies
            ),
        )
        for month in months
    )
    return currencies, rows


def _headlines(report: MonthEndReport) -> tuple[Headline, ...]:
    ties = {t.currency: t for t in report.settlement.tie_out}
    refunded: dict[str, int] = {}
    for row in report.money_out:
        if row.paid_by in REFUNDED:
            refunded[row.currency] = refunded.get(row.currency, 0) + row.minor
    out = []
    for currency in report.currencies:
        tie = ties.get(currency)
        risk = report.problems.money_at_risk.get(currency, 0)
        out.append(
            Headline(
                currency=currency,
                disbursed=None if tie is None else _money(tie.disbursements_minor, currency),
                refunded=_money(refunded[currency], currency) if currency in refunded else None,
                balanced=None if tie is None else tie.balanced,
                at_risk=_money(risk, currency) if risk else None,
                tie_text=_tie_text(tie),
                tie_tone=_tie_tone(tie),
            )
        )
    return tuple(out)


def _tie_text(tie: TieOut | None) -> str:
    if tie is None:
        return "no disbursements"
    if not tie.balanced:
        return "NOT balanced"
    unmatched = tie.unmatched_minor + tie.centra_unmatched_minor
    if unmatched:
        return f"balanced; {format_money(unmatched, tie.currency)} unmatched"
    return "balanced"


def _tie_tone(tie: TieOut | None) -> str:
    if tie is None:
        return "muted"
    if not tie.balanced:
        return "bad"
    return "good" if tie.settled else "warn"


def _warnings(report: MonthEndReport) -> tuple[str, ...]:
    """What a reader must know before the figures: the report's own notes (made with the
    figures, so the e-mail, the file, the CLI and the artifact all say the same)."""
    return tuple(report.notes)


def _open_item(item: OpenItem) -> OpenItemRow:
    return OpenItemRow(
        exception=f"#{item.exception_id}" if item.exception_id else "new",
        title=item.title,
        code=item.code,
        order=str(item.order_number) if item.order_number is not None else "",
        return_id=item.reveni_return_id or "",
        opened=item.opened.isoformat(),
        amount=_money(item.minor, item.currency),
        centra=None if item.centra_minor is None else _money(item.centra_minor, item.currency),
    )


def _view(report: MonthEndReport, limit: int | None) -> View:
    zone = _zone(report.timezone)
    groups, matched = _groups(report.settlement, limit)
    tallies, tally_total = _tallies(report)
    trend_currencies, trend_rows = _trend(report)
    title = month_title(report.month)
    items = report.problems.open_items
    shown_items = items if limit is None else items[:limit]
    return View(
        month=report.month,
        month_title=title,
        timezone=report.timezone,
        period=_period(report, zone),
        generated_at=_when(report.generated_at, zone),
        data_as_of="never loaded" if report.data_as_of is None else _when(report.data_as_of, zone),
        data_missing=report.data_as_of is None,
        warnings=_warnings(report),
        empty=report.empty,
        empty_text=f"No returns, refunds or invoice lines in {title}.",
        returns_in_month=format_count(report.returns_in_month),
        exceptions_count=len(report.settlement.exceptions),
        headlines=_headlines(report),
        money_out=_money_out(report),
        exchanges=_exchanges(report),
        markets=_markets(report),
        invoice=_invoice(report.invoice),
        no_invoice_text=f"No invoice from Reveni for {title}: there are no fees or "
        "disbursements to show, and nothing to settle against Centra.",
        tie_outs=tuple(
            _tie_out(t) for t in sorted(report.settlement.tie_out, key=lambda t: t.currency)
        ),
        settlement_notes=report.settlement.notes,
        groups=groups,
        matched=matched,
        problems=(
            _problem(
                "Duplicate refunds (money paid twice)",
                report.problems.duplicate_refunds,
                "recovered",
            ),
            _problem(
                "Refunds the payment provider refused", report.problems.gateway_failures, "resolved"
            ),
            _problem(
                "Refund amount mismatches (money: the difference)",
                report.problems.amount_mismatches,
                "resolved",
            ),
            _problem(
                "Refunds made in Centra with no Reveni refund behind them",
                report.problems.centra_only_refunds,
                "resolved",
            ),
            _problem(
                "Settlement lines unmatched", report.problems.settlement_unmatched, "resolved"
            ),
        ),
        tallies=tallies,
        tally_total=tally_total,
        ageing_labels=tuple(label for label, _, _ in AGEING_BUCKETS),
        at_risk=_monies(report.problems.money_at_risk),
        open_items=tuple(_open_item(item) for item in shown_items),
        open_items_more=len(report.problems.open_items) - len(shown_items),
        trend_currencies=trend_currencies,
        approved_note=APPROVED_NOTE,
        trend=trend_rows,
        line_limit=limit,
    )


# --------------------------------------------------------------------------- subject


def subject_of(report: MonthEndReport) -> str:
    """The subject, e.g. "Returns month-end 2026-10: 12 345.00 EUR + 1 500.00 SEK disbursed,
    balanced, 2 settlement exceptions": the verdict fits in an inbox line; one line, no
    customer data."""
    head = f"Returns month-end {report.month}"
    if report.incomplete:  # never an empty month that is only missing its data
        head = f"{head}: INCOMPLETE ({', '.join(report.incomplete)})"
    if report.empty:
        return f"{head}: no returns, refunds or invoice lines"
    ties = sorted(report.settlement.tie_out, key=lambda t: t.currency)
    parts: list[str] = []
    if report.invoice is None:
        parts.append("no invoice")
    if ties:
        parts.append(
            " + ".join(format_money(t.disbursements_minor, t.currency) for t in ties) + " disbursed"
        )
        off = [t.currency for t in ties if not t.balanced]
        parts.append(f"NOT balanced ({', '.join(off)})" if off else "balanced")
    elif report.invoice is not None:
        parts.append("nothing disbursed")
    exceptions = len(report.settlement.exceptions)
    parts.append(
        "no settlement exceptions"
        if exceptions == 0
        else _plural(exceptions, "settlement exception")
    )
    return f"{head}: {', '.join(parts)}"


# --------------------------------------------------------------------------- rendering


def _autoescape(template_name: str | None) -> bool:
    """Escape everything but the text/plain template."""
    return not (template_name or "").endswith(".txt.j2")


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=_autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["ljust"] = lambda value, width: str(value).ljust(int(width))
    env.filters["rjust"] = lambda value, width: str(value).rjust(int(width))
    return env


@lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    return css_inline.CSSInliner(
        keep_style_tags=False, load_remote_stylesheets=False, minify_css=True
    )


def _image_refs(images: Sequence[InlineImage], *, embed: bool) -> dict[str, ImageRef]:
    refs: dict[str, ImageRef] = {}
    for image in images:
        width, height = png_size(image.png)
        src = (
            "data:image/png;base64," + base64.b64encode(image.png).decode("ascii")
            if embed
            else f"cid:{image.cid}"
        )
        refs[image.cid] = ImageRef(src, image.alt, width, height)
    return refs


_TAG = re.compile(r"<[a-zA-Z][^<>]*>")
_CLASS = re.compile(r'\s+class="[^"]*"')


def _without_classes(html: str) -> str:
    """`html` with the class attributes taken out of its tags. Once the CSS is inlined they do
    nothing in a mail client but weigh: Gmail clips a message whose HTML passes 102 KB. Only
    tags are touched: data is escaped, so a `<` in the page always opens a real tag."""
    return _TAG.sub(lambda tag: _CLASS.sub("", tag.group(0)), html)


def _html(view: View, charts: Mapping[str, InlineImage | None], *, embed: bool) -> str:
    """The page, CSS inlined; the e-mail's without class attributes, the file's with them
    (a person or a test may still select by class in the saved file)."""
    present = [image for image in charts.values() if image is not None]
    refs = _image_refs(present, embed=embed)
    slots = {name: (None if image is None else refs[image.cid]) for name, image in charts.items()}
    html = _inliner().inline(
        _environment().get_template(HTML_TEMPLATE).render(r=view, charts=slots)
    )
    return html if embed else _without_classes(html)


def render_month_end(
    report: MonthEndReport,
    line_limit: int = DEFAULT_LINE_LIMIT,
    *,
    file_line_limit: int | None = None,
) -> RenderedReport:
    """The report as subject, HTML e-mail (charts as `cid:`), self-contained HTML file (charts as
    data: URIs), text part and chart images.

    `line_limit` caps the settlement lines listed per group in the e-mail and its text part
    ("... and N more"); `file_line_limit` does the same for the saved file (None: every line).
    `line_limit` may be passed by position: `monthend.run.Renderer` calls `render(report, n)`."""
    if line_limit < 0 or (file_line_limit is not None and file_line_limit < 0):
        raise ValueError("line limits must not be negative")
    charts = {
        "money_by_method": money_by_method_chart(report),
        "trend": trend_chart(report),
    }
    images = tuple(image for image in charts.values() if image is not None)
    email_view = _view(report, line_limit)
    file_view = email_view if file_line_limit == line_limit else _view(report, file_line_limit)
    text = _environment().get_template(TEXT_TEMPLATE).render(r=email_view)
    return RenderedReport(
        subject=subject_of(report),
        html_email=_html(email_view, charts, embed=False),
        html_file=_html(file_view, charts, embed=True),
        text=text,
        images=images,
    )
