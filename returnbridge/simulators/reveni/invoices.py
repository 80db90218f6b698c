"""Billing-period invoices of the simulated Reveni ([R-DOC S9] line kinds; the rest [INFER]).

Per calendar month in `inferred.billing.timezone`:
- `plan`: the subscription, dated the first day of the period;
- `transaction_fee`: each return created in the period, and `instant_transaction_fee` for each
  instant one;
- `reverse_logistics_fee`: each return whose Reveni label was used, i.e. that first entered
  shipped, received, for_review, accepted or partially_accepted in the period;
- `disbursement`: each refund Reveni paid (`paid_by: reveni`, status `paid`) in the refund's
  currency, without VAT; with `covered_refunds: charged_then_credited` an instant return
  rejected in the period gets a negative disbursement (Reveni covers it), with `not_charged`
  its refund is never disbursed;
- `minimum_fee_adjustment`: the difference to `minimum_fee` when the fees are below it.
Fees carry `vat_rate`; `totals` per currency include VAT. The current period's invoice is
`open`, earlier ones `issued`; there is none for a period after the clock's month.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.simulators.reveni.records import ReturnRec, hex_id, quantize
from returnbridge.simulators.reveni.wireformat import money

LABEL_USED = frozenset({"shipped", "received", "for_review", "accepted", "partially_accepted"})
KIND_ORDER = (  # the order of same-time lines on an invoice
    "plan",
    "transaction_fee",
    "instant_transaction_fee",
    "reverse_logistics_fee",
    "disbursement",
    "minimum_fee_adjustment",
)
FEE_KINDS = frozenset(
    {"plan", "transaction_fee", "instant_transaction_fee", "reverse_logistics_fee"}
)
_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


class PeriodError(ValueError):
    """A `period` that is not YYYY-MM."""


@dataclass(frozen=True)
class Line:
    kind: str
    amount: Decimal
    currency: str
    at: datetime
    vat_rate: Decimal = Decimal(0)
    return_id: str | None = None
    order_number: int | None = None


def parse_period(text: str) -> tuple[int, int]:
    match = _PERIOD.match(text)
    if not match or not 1 <= int(match[2]) <= 12:
        raise PeriodError(f"period: expected YYYY-MM, got {text!r}")
    return int(match[1]), int(match[2])


def period_of(when: datetime, inferred: ReveniInferred) -> tuple[int, int]:
    local = when.astimezone(ZoneInfo(inferred.billing.timezone))
    return local.year, local.month


def period_text(period: tuple[int, int]) -> str:
    return f"{period[0]:04d}-{period[1]:02d}"


def return_fees(rec: ReturnRec, inferred: ReveniInferred) -> Decimal:
    """The per-return fees (no VAT) this return puts on invoices."""
    billing = inferred.billing
    fees = billing.transaction_fee
    if rec.instant:
        fees += billing.instant_transaction_fee
    if rec.entered(LABEL_USED) is not None:
        fees += billing.reverse_logistics_fee
    return fees


def _events(returns: list[ReturnRec], inferred: ReveniInferred) -> list[Line]:
    """Every dated line the returns put on invoices (any period)."""
    billing = inferred.billing
    lines: list[Line] = []
    for rec in returns:
        fees = [("transaction_fee", billing.transaction_fee, rec.created_at)]
        if rec.instant:
            fees.append(
                ("instant_transaction_fee", billing.instant_transaction_fee, rec.created_at)
            )
        if (label_used := rec.entered(LABEL_USED)) is not None:
            fees.append(("reverse_logistics_fee", billing.reverse_logistics_fee, label_used))
        for kind, amount, at in fees:
            lines.append(
                Line(kind, amount, billing.currency, at, billing.vat_rate, rec.id, rec.order_number)
            )
        if rec.covered_at is not None and billing.covered_refunds == "not_charged":
            continue  # Reveni covers it: never disbursed
        for refund in rec.refunds:
            if refund.paid_by != "reveni" or refund.status != "paid":
                continue
            charges = [(refund.amount, refund.created_at)]
            if rec.covered_at is not None:  # charged, then credited
                charges.append((-refund.amount, rec.covered_at))
            lines += [
                Line(
                    "disbursement",
                    amount,
                    refund.currency,
                    at,
                    Decimal(0),
                    rec.id,
                    rec.order_number,
                )
                for amount, at in charges
            ]
    return lines


def _local_date(at: datetime, inferred: ReveniInferred) -> date:
    return at.astimezone(ZoneInfo(inferred.billing.timezone)).date()


def periods(returns: list[ReturnRec], now: datetime, inferred: ReveniInferred) -> list[str]:
    """Every period from the first activity (or the clock's month) to the clock's month."""
    current = period_of(now, inferred)
    starts = [period_of(line.at, inferred) for line in _events(returns, inferred)]
    year, month = min([current, *starts])
    out = []
    while (year, month) <= current:
        out.append(period_text((year, month)))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def invoice_id(store_id: str, period: str) -> str:
    return hex_id("invoice", store_id, period)


def invoice(
    returns: list[ReturnRec], store_id: str, period: str, now: datetime, inferred: ReveniInferred
) -> dict[str, Any] | None:
    """The invoice of `period` (YYYY-MM), or None for a period after the clock's month."""
    year, month = parse_period(period)
    current = period_of(now, inferred)
    if (year, month) > current:
        return None
    billing = inferred.billing
    start = date(year, month, 1)
    end = (date(year + (month == 12), month % 12 + 1, 1)) - timedelta(days=1)
    lines = [
        line
        for line in _events(returns, inferred)
        if start <= _local_date(line.at, inferred) <= end
    ]
    lines.sort(key=lambda ln: (ln.at, KIND_ORDER.index(ln.kind), ln.return_id or ""))
    tz = ZoneInfo(billing.timezone)
    if billing.plan_fee > 0:
        first = datetime.combine(start, time(0), tz)
        lines.insert(0, Line("plan", billing.plan_fee, billing.currency, first, billing.vat_rate))
    fees = sum((ln.amount for ln in lines if ln.kind in FEE_KINDS), Decimal(0))
    if fees < billing.minimum_fee:
        lines.append(
            Line(
                "minimum_fee_adjustment",
                billing.minimum_fee - fees,
                billing.currency,
                datetime.combine(end, time(0), tz),
                billing.vat_rate,
            )
        )
    totals: dict[str, Decimal] = {}
    for ln in lines:
        gross = quantize(ln.amount * (1 + ln.vat_rate / 100), ln.currency)
        totals[ln.currency] = totals.get(ln.currency, Decimal(0)) + gross
    return {
        "id": invoice_id(store_id, period),
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "currency": billing.currency,
        "status": "open" if (year, month) == current else "issued",
        "lines": [
            {
                "kind": ln.kind,
                "return_id": ln.return_id,
                "order_number": str(ln.order_number) if ln.order_number is not None else None,
                "amount": money(ln.amount, ln.currency, inferred),
                "currency": ln.currency,
                "vat_rate": str(ln.vat_rate),
                "event_date": _local_date(ln.at, inferred).isoformat(),
            }
            for ln in lines
        ],
        "totals": {c: money(v, c, inferred) for c, v in sorted(totals.items())},
        "collection": "sepa_direct_debit",
    }
