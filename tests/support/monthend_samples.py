"""Month-end reports to render: every section filled in two currencies (EUR, SEK), the same with
a tie-out that does not balance, and an empty month.

The figures hang together the way `monthend/figures.py` and `monthend/settlement.py` make them:
the tie-out is computed from the settlement lines, the invoice's totals from its kinds, so a
test can check the rendered numbers against the data rather than against constants. Ids,
order numbers and amounts only: nothing names a customer.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from returnbridge.monthend.model import (
    AGEING_BUCKETS,
    RAISES_EXCEPTION,
    ExceptionTally,
    Exchanges,
    InvoiceKind,
    InvoiceKindTotal,
    InvoiceSummary,
    InvoiceTotal,
    Match,
    MoneyOut,
    MoneyProblem,
    MonthEndReport,
    PaidBy,
    Problems,
    Settlement,
    SettlementLine,
    Side,
    TieOut,
    TrendPoint,
)

MONTH = "2026-10"
TIMEZONE = "Europe/Stockholm"
TZ = ZoneInfo(TIMEZONE)
PERIOD_START = datetime(2026, 10, 1, tzinfo=TZ)
PERIOD_END = datetime(2026, 11, 1, tzinfo=TZ)
GENERATED_AT = datetime(2026, 11, 2, 5, 30, tzinfo=UTC)  # 06:30 in Stockholm (CET)
DATA_AS_OF = datetime(2026, 11, 2, 4, 0, tzinfo=UTC)
VAT_RATE = Decimal(21)  # Reveni invoices from Spain

SEK_MATCHED_PAIRS = 60  # more than the e-mail's default 50 lines a group
SAMPLE_NOTES = ("Reveni's invoice for 2026-10 is still open: its lines may change.",)

# the unbalanced variant: SEK's disbursements are one öre more than their parts
UNBALANCED_OFF_MINOR = 1


# --------------------------------------------------------------------------- money out


def _money_out() -> tuple[MoneyOut, ...]:
    return (
        MoneyOut(PaidBy.REVENI_INSTANT, "EUR", 6, 123_450),
        MoneyOut(PaidBy.PSP_SUCCEEDED, "EUR", 30, 456_789),
        MoneyOut(PaidBy.PSP_PENDING, "EUR", 2, 9_900),
        MoneyOut(PaidBy.PSP_FAILED, "EUR", 1, 4_950),
        MoneyOut(PaidBy.STORE_CREDIT, "EUR", 3, 15_000),
        MoneyOut(PaidBy.REVENI_INSTANT, "SEK", 64, 1_246_500),
        MoneyOut(PaidBy.PSP_SUCCEEDED, "SEK", 41, 2_345_600),
        MoneyOut(PaidBy.PSP_PENDING, "SEK", 1, 49_900),
        MoneyOut(PaidBy.PSP_FAILED, "SEK", 2, 79_800),
        MoneyOut(PaidBy.STORE_CREDIT, "SEK", 1, 29_900),
    )


# --------------------------------------------------------------------------- settlement


def _disbursement(
    ret: str,
    order: int,
    currency: str,
    minor: int,
    match: Match,
    counterpart: int | None = None,
    row: int = 0,
    detail: str = "",
) -> SettlementLine:
    return SettlementLine(
        Side.DISBURSEMENT,
        ret,
        order,
        currency,
        minor,
        match,
        counterpart_minor=counterpart,
        event_date=date(2026, 10, 1 + row % 28),
        row=row,
        detail=detail,
    )


def _credit(
    ret: str,
    order: int,
    currency: str,
    minor: int,
    match: Match,
    counterpart: int | None = None,
    detail: str = "",
) -> SettlementLine:
    return SettlementLine(
        Side.CENTRA_CREDIT,
        ret,
        order,
        currency,
        minor,
        match,
        counterpart_minor=counterpart,
        event_date=date(2026, 10, 20),
        detail=detail,
    )


def settlement_lines() -> tuple[SettlementLine, ...]:
    """Both sides of the month. EUR: two matched pairs, one covered, one awaiting, one amount
    that differs, one disbursement and one credit that match nothing, one credit of an earlier
    invoice. SEK: sixty matched pairs, one covered, two awaiting, one amount that differs."""
    eur = [
        _disbursement("ret_eur_001", 1001, "EUR", 40_000, Match.MATCHED, 40_000, row=1),
        _credit("ret_eur_001", 1001, "EUR", 40_000, Match.MATCHED, 40_000),
        _disbursement("ret_eur_002", 1002, "EUR", 60_000, Match.MATCHED, 60_000, row=2),
        _credit("ret_eur_002", 1002, "EUR", 60_000, Match.MATCHED, 60_000),
        _disbursement(
            "ret_eur_003",
            1003,
            "EUR",
            10_000,
            Match.COVERED,
            row=3,
            detail="instant refund; return rejected at inspection",
        ),
        _disbursement("ret_eur_004", 1004, "EUR", 8_450, Match.AWAITING_CREDIT, row=4),
        _disbursement(
            "ret_eur_005",
            1005,
            "EUR",
            3_000,
            Match.AMOUNT_DIFFERS,
            2_900,
            row=5,
            detail="Centra credited 29.00 EUR",
        ),
        _credit(
            "ret_eur_005",
            1005,
            "EUR",
            2_900,
            Match.AMOUNT_DIFFERS,
            3_000,
            detail="the invoice disburses 30.00 EUR",
        ),
        _disbursement(
            "ret_eur_006",
            1006,
            "EUR",
            2_000,
            Match.UNMATCHED,
            row=6,
            detail="no Centra credit for this return",
        ),
        _credit(
            "ret_eur_007",
            1007,
            "EUR",
            1_500,
            Match.UNMATCHED,
            detail="no disbursement on the invoice",
        ),
        _credit("ret_eur_008", 1008, "EUR", 2_500, Match.EARLIER_INVOICE),
    ]
    sek: list[SettlementLine] = []
    for n in range(SEK_MATCHED_PAIRS):
        ret = f"ret_sek_{n + 1:03d}"
        sek.append(_disbursement(ret, 2001 + n, "SEK", 20_000, Match.MATCHED, 20_000, row=10 + n))
        sek.append(_credit(ret, 2001 + n, "SEK", 20_000, Match.MATCHED, 20_000))
    sek += [
        _disbursement("ret_sek_101", 2101, "SEK", 15_000, Match.COVERED, row=80),
        _disbursement("ret_sek_102", 2102, "SEK", 9_750, Match.AWAITING_CREDIT, row=81),
        _disbursement("ret_sek_103", 2103, "SEK", 9_750, Match.AWAITING_CREDIT, row=82),
        _disbursement(
            "ret_sek_104",
            2104,
            "SEK",
            12_000,
            Match.AMOUNT_DIFFERS,
            11_000,
            row=83,
            detail="Centra credited 110.00 SEK",
        ),
        _credit("ret_sek_104", 2104, "SEK", 11_000, Match.AMOUNT_DIFFERS, 12_000),
    ]
    return (*eur, *sek)


def tie_out_of(lines: tuple[SettlementLine, ...]) -> tuple[TieOut, ...]:
    """The tie-out the settlement match computes from its lines."""
    out: list[TieOut] = []
    for currency in sorted({line.currency for line in lines}):
        disb = [x for x in lines if x.currency == currency and x.side is Side.DISBURSEMENT]
        credits = [x for x in lines if x.currency == currency and x.side is Side.CENTRA_CREDIT]

        def total(match: frozenset[Match], side: list[SettlementLine] = disb) -> int:
            return sum(x.amount_minor for x in side if x.match in match)

        out.append(
            TieOut(
                currency=currency,
                disbursements_minor=sum(x.amount_minor for x in disb),
                matched_minor=total(frozenset({Match.MATCHED})),
                covered_minor=total(frozenset({Match.COVERED})),
                awaiting_minor=total(frozenset({Match.AWAITING_CREDIT})),
                unmatched_minor=total(RAISES_EXCEPTION),
                centra_credits_minor=sum(x.amount_minor for x in credits),
                centra_unmatched_minor=sum(
                    x.amount_minor for x in credits if x.match is Match.UNMATCHED
                ),
                covered_charged_minor=sum(
                    x.amount_minor for x in disb if x.match is Match.COVERED and x.amount_minor > 0
                ),
                covered_credited_minor=sum(
                    x.amount_minor for x in disb if x.match is Match.COVERED and x.amount_minor < 0
                ),
                charged_minor=sum(max(x.amount_minor, 0) for x in disb),
                # Reveni's own data agrees with what the invoice charges
                reveni_paid_minor=sum(max(x.amount_minor, 0) for x in disb),
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------- the invoice


# currency -> kind -> (lines, net minor)
INVOICE_FEES: dict[str, dict[InvoiceKind, tuple[int, int]]] = {
    "EUR": {
        InvoiceKind.PLAN: (1, 9_900),
        InvoiceKind.TRANSACTION_FEE: (40, 4_000),
        InvoiceKind.INSTANT_TRANSACTION_FEE: (6, 900),
        InvoiceKind.REVERSE_LOGISTICS_FEE: (10, 5_000),
        InvoiceKind.MINIMUM_FEE_ADJUSTMENT: (1, 500),
    },
    "SEK": {
        InvoiceKind.TRANSACTION_FEE: (105, 105_000),
        InvoiceKind.INSTANT_TRANSACTION_FEE: (64, 32_000),
        InvoiceKind.REVERSE_LOGISTICS_FEE: (20, 98_000),
    },
}


def _vat(net: int) -> int:
    return int((Decimal(net) * VAT_RATE / 100).quantize(0))


def invoice_summary(tie_out: tuple[TieOut, ...], stated_off: int = 0) -> InvoiceSummary:
    """The invoice: the fees above, the tie-out's disbursements, gross totals stated by the API
    (SEK's stated total `stated_off` minor units away from its lines)."""
    by_kind: list[InvoiceKindTotal] = []
    totals: list[InvoiceTotal] = []
    disbursements = {t.currency: t.disbursements_minor for t in tie_out}
    disbursement_lines: dict[str, int] = {}
    for line in settlement_lines():
        if line.side is Side.DISBURSEMENT:
            disbursement_lines[line.currency] = disbursement_lines.get(line.currency, 0) + 1
    for currency, fees in sorted(INVOICE_FEES.items()):
        for kind, (count, net) in fees.items():
            by_kind.append(InvoiceKindTotal(kind, currency, count, net, _vat(net)))
        by_kind.append(
            InvoiceKindTotal(
                InvoiceKind.DISBURSEMENT,
                currency,
                disbursement_lines[currency],
                disbursements[currency],
                0,
            )
        )
        net = sum(n for _, n in fees.values())
        vat = sum(_vat(n) for _, n in fees.values())
        gross = net + vat + disbursements[currency]
        totals.append(
            InvoiceTotal(
                currency,
                net,
                vat,
                disbursements[currency],
                stated_gross_minor=gross + (stated_off if currency == "SEK" else 0),
            )
        )
    return InvoiceSummary(
        source="reveni-api",
        invoice_id="inv_2026_10",
        status="open",
        by_kind=tuple(by_kind),
        totals=tuple(totals),
    )


# --------------------------------------------------------------------------- problems, trend


def _tally(
    owner: str, code: str, title: str, opened: int, resolved: int, ageing: tuple[int, ...]
) -> ExceptionTally:
    assert len(ageing) == len(AGEING_BUCKETS)
    return ExceptionTally(owner, code, title, opened, resolved, sum(ageing), ageing)


def problems(settlement: Settlement) -> Problems:
    exceptions = settlement.exceptions
    unmatched: dict[str, int] = {}
    for line in exceptions:
        unmatched[line.currency] = unmatched.get(line.currency, 0) + line.amount_minor
    return Problems(
        duplicate_refunds=MoneyProblem(
            count=2,
            minor={"EUR": 5_000, "SEK": 30_000},
            recovered=1,
            recovered_minor={"EUR": 5_000},
        ),
        gateway_failures=MoneyProblem(count=3, minor={"EUR": 4_950, "SEK": 79_800}),
        amount_mismatches=MoneyProblem(
            count=2, minor={"EUR": 100, "SEK": 1_000}, recovered=1, recovered_minor={"SEK": 1_000}
        ),
        settlement_unmatched=MoneyProblem(count=len(exceptions), minor=unmatched),
        exceptions=(
            dataclasses.replace(
                _tally("finance", "duplicate_refund", "Refund paid twice", 2, 1, (1, 0, 0, 0)),
                open_minor={"SEK": 30_000},
            ),
            dataclasses.replace(
                _tally(
                    "finance",
                    "refund_failed_at_gateway",
                    "The payment provider refused the refund",
                    3,
                    1,
                    (1, 1, 0, 1),
                ),
                open_minor={"EUR": 4_950, "SEK": 8_000},
            ),
            dataclasses.replace(
                _tally(
                    "finance",
                    "settlement_unmatched",
                    "Invoice line and Centra credit do not match",
                    len(exceptions),
                    0,
                    (len(exceptions), 0, 0, 0),
                ),
                open_minor=dict(unmatched),
            ),
            _tally("ops", "return_missing", "Accepted in Reveni, no Centra return", 4, 4, (0,) * 4),
            _tally(
                "cx", "order_not_found", "The return names an unknown order", 1, 0, (0, 0, 1, 0)
            ),
        ),
        money_at_risk={"EUR": 4_950 + unmatched.get("EUR", 0), "SEK": 38_000},
    )


def trend(end_month: str = MONTH) -> tuple[TrendPoint, ...]:
    """Twelve months up to `end_month`, EUR and SEK, and a few returns without any refund."""
    year, month = (int(part) for part in end_month.split("-"))
    months: list[str] = []
    for back in range(11, -1, -1):
        index = year * 12 + (month - 1) - back
        months.append(f"{index // 12:04d}-{index % 12 + 1:02d}")
    points: list[TrendPoint] = []
    for n, m in enumerate(months):
        points.append(TrendPoint(m, "EUR", 30 + 3 * n, 25 + 3 * n, 300_000 + 25_000 * n))
        points.append(TrendPoint(m, "SEK", 80 - 2 * n, 70 - 2 * n, 3_000_000 - 50_000 * n))
        if n % 4 == 0:
            points.append(TrendPoint(m, "", 2, 0, 0))
    return tuple(points)


# --------------------------------------------------------------------------- the reports


def sample_report(**changes: Any) -> MonthEndReport:
    """A month with every section filled in, EUR and SEK, balanced."""
    lines = settlement_lines()
    tie = tie_out_of(lines)
    settlement = Settlement(lines=lines, tie_out=tie)
    report = MonthEndReport(
        month=MONTH,
        timezone=TIMEZONE,
        period_start=PERIOD_START,
        period_end=PERIOD_END,
        generated_at=GENERATED_AT,
        data_as_of=DATA_AS_OF,
        returns_in_month=187,
        money_out=_money_out(),
        exchanges=Exchanges(returns=5, items=7, orders_created=4, not_made=1),
        invoice=invoice_summary(tie),
        settlement=settlement,
        problems=problems(settlement),
        trend=trend(),
        notes=SAMPLE_NOTES,
    )
    return dataclasses.replace(report, **changes)


def unbalanced_report() -> MonthEndReport:
    """The sample with SEK's disbursements one öre more than matched + covered + awaiting +
    unmatched, and SEK's stated invoice total one öre off its lines."""
    base = sample_report()
    tie = tuple(
        dataclasses.replace(t, disbursements_minor=t.disbursements_minor + UNBALANCED_OFF_MINOR)
        if t.currency == "SEK"
        else t
        for t in base.settlement.tie_out
    )
    settlement = dataclasses.replace(
        base.settlement,
        tie_out=tie,
        notes=("One SEK disbursement line could not be read: its amount is not in the lines.",),
    )
    return dataclasses.replace(
        base, settlement=settlement, invoice=invoice_summary(tie, stated_off=UNBALANCED_OFF_MINOR)
    )


def empty_report(**changes: Any) -> MonthEndReport:
    """A month with nothing in it: no returns, refunds, invoice, settlement lines or exceptions."""
    report = MonthEndReport(
        month=MONTH,
        timezone=TIMEZONE,
        period_start=PERIOD_START,
        period_end=PERIOD_END,
        generated_at=GENERATED_AT,
        data_as_of=DATA_AS_OF,
        returns_in_month=0,
        money_out=(),
        exchanges=Exchanges(),
        invoice=None,
        settlement=Settlement(lines=(), tie_out=()),
        problems=Problems(
            duplicate_refunds=MoneyProblem(),
            gateway_failures=MoneyProblem(),
            amount_mismatches=MoneyProblem(),
            settlement_unmatched=MoneyProblem(),
            exceptions=(),
            money_at_risk={},
        ),
        trend=(),
        notes=("No invoice from Reveni for 2026-10.",),
    )
    return dataclasses.replace(report, **changes)
