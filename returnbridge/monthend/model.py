"""The month-end report as data (docs/architecture.md#the-month-end-report).

Plain frozen dataclasses, no I/O: `figures.py` fills them from the warehouse and the ledger,
`settlement.py` matches Reveni's invoice against Centra's credits, `reports/month_end.py`
renders them (HTML, text, charts), and `as_json()` is what `returnbridge report month-end
--json`, the demo's run summary and the Prefect artifact show.

Money is integer minor units with its ISO-4217 currency, never float (`Minor`); `money_text`
turns it into "1234.50" for people. Nothing here names a customer: ids, order numbers, SKUs and
amounts only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from returnbridge.connectors.reveni.models import currency_exponent

# currency -> integer minor units
Minor = dict[str, int]


def money_text(minor: int, currency: str) -> str:
    """`minor` units of `currency` as a plain decimal string ("1234.50", "-3.00")."""
    return str(Decimal(minor).scaleb(-currency_exponent(currency)))


def add_minor(into: Minor, currency: str, minor: int) -> None:
    into[currency] = into.get(currency, 0) + minor


@dataclass(frozen=True)
class Month:
    """A calendar month in the brand's timezone."""

    year: int
    month: int
    zone: ZoneInfo

    @classmethod
    def parse(cls, text: str, zone: ZoneInfo) -> Month:
        """`YYYY-MM`; ValueError naming what is wrong."""
        parts = text.split("-")
        if (
            len(parts) != 2
            or not all(p.isdigit() for p in parts)
            or list(map(len, parts)) != [4, 2]
        ):
            raise ValueError(f"month: expected YYYY-MM, got {text!r}")
        year, month = int(parts[0]), int(parts[1])
        if year < 1:
            raise ValueError(f"month: {text!r} has no year {year}")
        if not 1 <= month <= 12:
            raise ValueError(f"month: {text!r} has no month {month}")
        return cls(year, month, zone)

    @classmethod
    def last_complete(cls, now: datetime, zone: ZoneInfo) -> Month:
        """The last month that has ended by `now` in `zone`."""
        local = now.astimezone(zone)
        return cls(local.year, local.month, zone).shifted(-1)

    @property
    def text(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def shifted(self, months: int) -> Month:
        index = self.year * 12 + (self.month - 1) + months
        return Month(index // 12, index % 12 + 1, self.zone)

    @property
    def start(self) -> datetime:
        """The month's first instant, in the brand's zone (aware)."""
        return datetime.combine(date(self.year, self.month, 1), time(0), self.zone)

    @property
    def end(self) -> datetime:
        """The next month's first instant (exclusive)."""
        return self.shifted(1).start

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end


# ---------------------------------------------------------------------------- money out


class PaidBy(StrEnum):
    """Who paid the customer, and how (the report's "money out" rows, in this order)."""

    REVENI_INSTANT = "reveni_instant"  # Reveni paid by bank transfer (a disbursement)
    PSP_SUCCEEDED = "psp_succeeded"  # refunded through Centra's payment provider
    PSP_PENDING = "psp_pending"  # asked of the payment provider, not answered by month end
    PSP_FAILED = "psp_failed"  # the payment provider refused it
    STORE_CREDIT = "store_credit"  # the shop's own store credit / gift card


PAID_BY_LABELS: Mapping[PaidBy, str] = {
    PaidBy.REVENI_INSTANT: "Instant refunds paid by Reveni (bank transfer)",
    PaidBy.PSP_SUCCEEDED: "Refunds through the payment provider (succeeded)",
    PaidBy.PSP_PENDING: "Refunds through the payment provider (still pending)",
    PaidBy.PSP_FAILED: "Refunds through the payment provider (failed)",
    PaidBy.STORE_CREDIT: "Store credit",
}


@dataclass(frozen=True)
class MoneyOut:
    """One row of "money out": `count` refunds of `paid_by` in `currency`, summing `minor`."""

    paid_by: PaidBy
    currency: str
    count: int
    minor: int


@dataclass(frozen=True)
class Exchanges:
    """Exchanges of the month: returns with exchanged items, zero-value orders created in
    Centra, and exchanges that could not be made (out of stock, order failed)."""

    returns: int = 0
    items: int = 0
    orders_created: int = 0
    not_made: int = 0


@dataclass(frozen=True)
class MarketFigures:
    """One Centra market (and currency) of the month: returns requested on its orders, and the
    refunds made for them, whoever paid (docs/architecture.md#the-month-end-report)."""

    market: str  # Centra's market of the order; "unknown" when Centra has no such order
    currency: str
    returns: int
    refunds: int
    refunds_minor: int


# ---------------------------------------------------------------------------- the invoice


class InvoiceKind(StrEnum):
    """The kinds of line on Reveni's invoice [R-DOC S9], in the order the report lists them."""

    PLAN = "plan"
    TRANSACTION_FEE = "transaction_fee"
    INSTANT_TRANSACTION_FEE = "instant_transaction_fee"
    REVERSE_LOGISTICS_FEE = "reverse_logistics_fee"
    MINIMUM_FEE_ADJUSTMENT = "minimum_fee_adjustment"
    DISBURSEMENT = "disbursement"


INVOICE_KIND_LABELS: Mapping[InvoiceKind, str] = {
    InvoiceKind.PLAN: "Premium plan (subscription)",
    InvoiceKind.TRANSACTION_FEE: "Return/exchange transaction fees",
    InvoiceKind.INSTANT_TRANSACTION_FEE: "Instant transaction fees",
    InvoiceKind.REVERSE_LOGISTICS_FEE: "Reverse logistics fees",
    InvoiceKind.MINIMUM_FEE_ADJUSTMENT: "Minimum fee adjustment",
    InvoiceKind.DISBURSEMENT: "Disbursements on behalf of customers (no VAT)",
}


@dataclass(frozen=True)
class InvoiceLine:
    """One line of Reveni's invoice, normalised: `row` is where it came from (1-based position
    in the API's list, or the CSV file's line number as a spreadsheet shows it, the header
    being line 1), money in minor units. A negative
    disbursement credits a refund Reveni covers (an instant return it later rejected)."""

    row: int
    kind: InvoiceKind
    amount_minor: int
    currency: str
    vat_rate: Decimal = Decimal(0)  # percent
    return_id: str | None = None
    order_number: int | None = None
    event_date: date | None = None

    @property
    def vat_minor(self) -> int:
        """VAT on this line, rounded half-up to the minor unit."""
        return int((Decimal(self.amount_minor) * self.vat_rate / 100).quantize(0, ROUND_HALF_UP))


@dataclass(frozen=True)
class InvoiceDoc:
    """Reveni's invoice of one billing period, from its API or a dashboard CSV export.

    `stated_totals`: the gross totals per currency the invoice itself states (VAT included),
    when it states them (the API does; the CSV has no totals row)."""

    source: str  # "reveni-api" or "csv:<file name>"
    period: str  # YYYY-MM
    lines: tuple[InvoiceLine, ...]
    invoice_id: str | None = None
    status: str | None = None  # open | issued (API only)
    stated_totals: Minor = field(default_factory=dict)


@dataclass(frozen=True)
class InvoiceKindTotal:
    """The invoice's lines of one kind in one currency: net, VAT, gross."""

    kind: InvoiceKind
    currency: str
    lines: int
    net_minor: int
    vat_minor: int

    @property
    def gross_minor(self) -> int:
        return self.net_minor + self.vat_minor


@dataclass(frozen=True)
class InvoiceTotal:
    """The invoice's total in one currency: fees (net, VAT), disbursements, gross; and what the
    invoice itself states, when it does."""

    currency: str
    fees_net_minor: int
    vat_minor: int
    disbursements_minor: int
    stated_gross_minor: int | None = None

    @property
    def gross_minor(self) -> int:
        return self.fees_net_minor + self.vat_minor + self.disbursements_minor

    @property
    def agrees(self) -> bool | None:
        """Whether the invoice's stated total is the sum of its lines (None: states none)."""
        return (
            None if self.stated_gross_minor is None else self.stated_gross_minor == self.gross_minor
        )


@dataclass(frozen=True)
class InvoiceSummary:
    """Reveni's invoice as the report shows it."""

    source: str
    invoice_id: str | None
    status: str | None
    by_kind: tuple[InvoiceKindTotal, ...]
    totals: tuple[InvoiceTotal, ...]


# ---------------------------------------------------------------------------- settlement


class Side(StrEnum):
    DISBURSEMENT = "disbursement"  # a disbursement line of Reveni's invoice
    CENTRA_CREDIT = "centra_credit"  # a non-PSP credit in Centra of a refund Reveni paid


class Match(StrEnum):
    """How one settlement line ended (`UNMATCHED` and `AMOUNT_DIFFERS` raise
    `settlement_unmatched`)."""

    MATCHED = "matched"  # the other side has it, same return, amount and currency
    COVERED = "covered"  # an instant refund Reveni covers (return rejected): no credit due
    AWAITING_CREDIT = "awaiting_credit"  # return not inspected yet: credited when accepted
    EARLIER_INVOICE = "earlier_invoice"  # a credit of a refund Reveni paid in an earlier period
    AMOUNT_DIFFERS = "amount_differs"  # the other side has the return, for another amount
    UNMATCHED = "unmatched"  # the other side has nothing for this return


RAISES_EXCEPTION = frozenset({Match.AMOUNT_DIFFERS, Match.UNMATCHED})

MATCH_LABELS: Mapping[Match, str] = {
    Match.MATCHED: "Matched",
    Match.COVERED: "Covered by Reveni (instant refund, return rejected)",
    Match.AWAITING_CREDIT: "Awaiting inspection (credited in Centra once accepted)",
    Match.EARLIER_INVOICE: "Disbursed on an earlier invoice",
    Match.AMOUNT_DIFFERS: "Amount differs",
    Match.UNMATCHED: "Unmatched",
}


@dataclass(frozen=True)
class SettlementLine:
    """One line of either side and how it matched. `counterpart_minor`: what the other side
    has for the same return (None when nothing)."""

    side: Side
    reveni_return_id: str | None
    order_number: int | None
    currency: str
    amount_minor: int
    match: Match
    counterpart_minor: int | None = None
    event_date: date | None = None
    row: int | None = None  # the invoice line's row (disbursements)
    detail: str = ""
    entry_id: int | None = None  # the Centra payment entry of the credit (matched or own)


@dataclass(frozen=True)
class TieOut:
    """Per currency, two checks.

    1. The split: the invoice's disbursements, line by line, by how they matched;
       `disbursements == matched + covered + awaiting + unmatched` to the minor unit
       (`unmatched` includes lines whose amount differs). Every line lands in one bucket, so
       this holds unless a line was lost: it is the report's own arithmetic check.
    2. Against Reveni's own data, an independent source: what the invoice *charges* for
       disbursements (its positive lines, before Reveni credits covered refunds back) against
       the instant refunds Reveni's returns data says it paid in the invoice's period
       (`reveni_paid_minor`, None when not read). A line missing from or added to the invoice
       shows here, whatever the split says.

    `settled`: both hold and nothing is unmatched on either side."""

    currency: str
    disbursements_minor: int
    matched_minor: int
    covered_minor: int
    awaiting_minor: int
    unmatched_minor: int
    # the Centra side: Reveni-paid credits in the month and those with no disbursement
    centra_credits_minor: int = 0
    centra_unmatched_minor: int = 0
    # covered refunds gross: charged as a disbursement, credited back (negative) by Reveni
    covered_charged_minor: int = 0
    covered_credited_minor: int = 0
    charged_minor: int = 0  # the positive disbursement lines: what Reveni says it paid out
    reveni_paid_minor: int | None = None  # Reveni's returns data, the invoice's period

    @property
    def balanced(self) -> bool:
        """The split adds up and, when Reveni's data was read, agrees with the invoice."""
        split = self.disbursements_minor == (
            self.matched_minor + self.covered_minor + self.awaiting_minor + self.unmatched_minor
        )
        return split and self.reveni_difference_minor in (None, 0)

    @property
    def reveni_difference_minor(self) -> int | None:
        """Charged on the invoice minus paid by Reveni's own data (None: not read)."""
        if self.reveni_paid_minor is None:
            return None
        return self.charged_minor - self.reveni_paid_minor

    @property
    def settled(self) -> bool:
        """Balanced, and no line unmatched on either side: nothing for Finance to look at."""
        return self.balanced and self.unmatched_minor == 0 and self.centra_unmatched_minor == 0


@dataclass(frozen=True)
class Settlement:
    lines: tuple[SettlementLine, ...]
    tie_out: tuple[TieOut, ...]
    notes: tuple[str, ...] = ()  # e.g. an invoice currency Centra never saw
    period: str | None = None  # YYYY-MM (the brand's) the lines settle

    @property
    def balanced(self) -> bool:
        return all(t.balanced for t in self.tie_out)

    @property
    def settled(self) -> bool:
        return all(t.settled for t in self.tie_out)

    @property
    def exceptions(self) -> tuple[SettlementLine, ...]:
        return tuple(line for line in self.lines if line.match in RAISES_EXCEPTION)


# ---------------------------------------------------------------------------- what went wrong


AGEING_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-7 days", 0, 7),
    ("8-30 days", 8, 30),
    ("31-90 days", 31, 90),
    ("over 90 days", 91, None),
)


@dataclass(frozen=True)
class ExceptionTally:
    """Exceptions of one owner and code: opened and resolved in the month, still open at its
    end, the open ones by age at the month's end (`AGEING_BUCKETS` order) and their money."""

    owner: str
    code: str
    title: str
    opened: int
    resolved: int
    open_at_end: int
    ageing: tuple[int, ...]
    open_minor: Minor = field(default_factory=dict)
    runbook_url: str | None = None  # the code's runbook entry (`settings.links.runbook`)


@dataclass(frozen=True)
class MoneyProblem:
    """A kind of money problem in the month: how many, how much, how many recovered/closed."""

    count: int = 0
    minor: Minor = field(default_factory=dict)
    recovered: int = 0
    recovered_minor: Minor = field(default_factory=dict)


@dataclass(frozen=True)
class OpenItem:
    """One open Finance exception with money at the month's end: what makes up money at risk."""

    exception_id: int  # 0: raised by this report, recorded after it
    code: str
    title: str
    order_number: int | None
    reveni_return_id: str | None
    currency: str
    minor: int
    opened: date  # in the brand's timezone
    centra_minor: int | None = None  # a mismatch's other side


@dataclass(frozen=True)
class Problems:
    duplicate_refunds: MoneyProblem  # minor: money paid twice; recovered: resolved
    gateway_failures: MoneyProblem  # refunds the payment provider refused
    amount_mismatches: MoneyProblem  # minor: |Reveni - Centra| per currency
    settlement_unmatched: MoneyProblem
    exceptions: tuple[ExceptionTally, ...]
    money_at_risk: Minor  # open Finance exceptions' amounts at the month's end
    # refunds made in Centra (by hand) with no Reveni refund behind them: paid out, unexplained
    centra_only_refunds: MoneyProblem = field(default_factory=MoneyProblem)
    # the items of `money_at_risk`, largest first per currency
    open_items: tuple[OpenItem, ...] = ()


# ---------------------------------------------------------------------------- trend


@dataclass(frozen=True)
class TrendPoint:
    """One month of the 12-month trend in one currency: returns requested (all currencies
    counted under the currency of their refund, or "" when none), refunds and their sum."""

    month: str  # YYYY-MM
    currency: str
    returns: int
    refunds: int
    refunds_minor: int


# ---------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class MonthEndReport:
    month: str  # YYYY-MM in `timezone`
    timezone: str
    period_start: datetime  # first instant of the month (aware, in `timezone`)
    period_end: datetime  # first instant of the next month (exclusive)
    generated_at: datetime
    data_as_of: datetime | None  # the warehouse's last load, None when never loaded
    returns_in_month: int
    money_out: tuple[MoneyOut, ...]
    exchanges: Exchanges
    invoice: InvoiceSummary | None
    settlement: Settlement
    problems: Problems
    trend: tuple[TrendPoint, ...]
    notes: tuple[str, ...] = ()  # what a reader must know (incomplete data, no invoice, ...)
    by_market: tuple[MarketFigures, ...] = ()
    # why the figures cannot be the whole month, in a few words each (the subject says them)
    incomplete: tuple[str, ...] = ()

    @property
    def currencies(self) -> list[str]:
        seen = {row.currency for row in self.money_out}
        seen |= {t.currency for t in self.settlement.tie_out}
        if self.invoice is not None:
            seen |= {t.currency for t in self.invoice.totals}
        return sorted(seen)

    @property
    def empty(self) -> bool:
        """No returns, refunds, invoice lines or exceptions in the month."""
        return (
            self.returns_in_month == 0
            and not self.money_out
            and not self.settlement.lines
            and (self.invoice is None or not self.invoice.by_kind)
            and not any(t.opened or t.open_at_end for t in self.problems.exceptions)
        )

    def totals(self) -> dict[str, Any]:
        """The key figures (run summary `report.totals`, the e-mail's text part, the artifact):
        per currency, decimal strings."""
        out: dict[str, Any] = {}
        for currency in self.currencies:
            money = {
                row.paid_by.value: money_text(row.minor, currency)
                for row in self.money_out
                if row.currency == currency
            }
            entry: dict[str, Any] = {"money_out": money}
            if self.invoice is not None:
                for total in self.invoice.totals:
                    if total.currency == currency:
                        entry["invoice_gross"] = money_text(total.gross_minor, currency)
                        entry["invoice_fees_net"] = money_text(total.fees_net_minor, currency)
                        entry["invoice_vat"] = money_text(total.vat_minor, currency)
            for tie in self.settlement.tie_out:
                if tie.currency == currency:
                    entry["disbursements"] = money_text(tie.disbursements_minor, currency)
                    entry["matched"] = money_text(tie.matched_minor, currency)
                    entry["unmatched"] = money_text(tie.unmatched_minor, currency)
                    entry["covered_charged"] = money_text(tie.covered_charged_minor, currency)
                    entry["covered_credited"] = money_text(tie.covered_credited_minor, currency)
                    if tie.reveni_paid_minor is not None:
                        entry["reveni_paid"] = money_text(tie.reveni_paid_minor, currency)
                    entry["balanced"] = tie.balanced
                    entry["settled"] = tie.settled
            risk = self.problems.money_at_risk.get(currency)
            if risk:
                entry["money_at_risk"] = money_text(risk, currency)
            out[currency] = entry
        return {
            "returns": self.returns_in_month,
            "exchanges": asdict(self.exchanges),
            "settlement_unmatched": len(self.settlement.exceptions),
            # nothing settled (no invoice): neither balanced nor not, so null
            "balanced": self.settlement.balanced if self.settlement.tie_out else None,
            "settled": self.settlement.settled if self.settlement.tie_out else None,
            "currencies": out,
        }

    def as_json(self) -> dict[str, Any]:
        """The whole report as JSON-ready data (dates ISO, Decimals as strings)."""
        return _plain(asdict(self)) | {"totals": self.totals()}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, StrEnum):
        return value.value
    return value
