"""The month's figures, from the warehouse and the ledger
(docs/architecture.md#the-month-end-report).

The warehouse holds both systems as the daily reconciliation last loaded them; the month-end
reads only what the month needs (narrow SQL reads, never the whole history), and the ledger
holds what went wrong. Everything is dated in the brand's timezone: a refund made at 00:30 on
1 November in Stockholm belongs to November even though it is 31 October in UTC.

- **Money out**: Reveni's refunds of the month by who paid (Reveni's instant bank transfers,
  store credit), and the refunds asked of Centra's payment provider, read as attempts exactly as
  the reconciliation reads them (`rules.refund_attempt_rows`: a request and its settlement are
  one refund), succeeded, still pending or failed.
- **Settlement inputs**: the non-PSP credits returnbridge wrote in Centra for refunds Reveni
  paid, and the facts of every return an invoice line or a credit names (`settlement.py`).
- **What went wrong**: the ledger's exceptions by owner and code, opened, resolved and open at
  the month's end with their age then, and the open Finance money.
- **Trend**: returns and refunds of the twelve months up to this one, per currency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl

from returnbridge.connectors.centra.refunds import RefundState, RefundTypes
from returnbridge.core.codes import title_of
from returnbridge.ledger.records import ExceptionRecord
from returnbridge.monthend.model import (
    AGEING_BUCKETS,
    ExceptionTally,
    Exchanges,
    MarketFigures,
    Minor,
    MoneyOut,
    MoneyProblem,
    Month,
    OpenItem,
    PaidBy,
    TrendPoint,
    add_minor,
)
from returnbridge.monthend.settlement import CentraCredit, ReturnFacts
from returnbridge.reconcile.extract import minor_units
from returnbridge.reconcile.rules import refund_attempt_rows
from returnbridge.reconcile.tables import CENTRA_PAYMENTS
from returnbridge.reconcile.warehouse import Warehouse

TREND_MONTHS = 12
# A payment provider answers a refund request within days: requests this long before the month
# are read with their answers, so a request of the month is paired with its settlement.
_PAIRING_WINDOW = timedelta(days=45)
_EXCHANGE_NOT_MADE = ("exchange_out_of_stock", "exchange_order_failed", "exchange_order_missing")


@dataclass(frozen=True)
class FigureConfig:
    """What the figures need to read Centra's refunds as the rest of returnbridge does."""

    refund_types: RefundTypes
    manual_refund_payment_method: str = "manual"


# ------------------------------------------------------------------------------ money out


def returns_in_month(wh: Warehouse, month: Month) -> int:
    found = wh.query(
        "SELECT count(*) AS n FROM reveni_returns WHERE created_at >= ? AND created_at < ?",
        [month.start, month.end],
    )
    return int(found["n"][0])


def money_out(wh: Warehouse, month: Month, config: FigureConfig) -> tuple[MoneyOut, ...]:
    """Who paid the customers of the month's refunds, and how much, per currency."""
    rows: dict[tuple[PaidBy, str], list[int]] = defaultdict(lambda: [0, 0])
    reveni = wh.query(
        "SELECT method, paid_by, status, amount_minor, currency FROM reveni_refunds "
        "WHERE created_at >= ? AND created_at < ?",
        [month.start, month.end],
    )
    for refund in reveni.iter_rows(named=True):
        if refund["paid_by"] == "reveni" and refund["status"] == "paid":
            kind = PaidBy.REVENI_INSTANT
        elif refund["method"] == "store_credit" and refund["status"] != "failed":
            kind = PaidBy.STORE_CREDIT
        else:
            continue  # paid through Centra's payment provider: counted from Centra below
        row = rows[(kind, refund["currency"])]
        row[0] += 1
        row[1] += refund["amount_minor"]
    state_kind = {
        RefundState.SETTLED.value: PaidBy.PSP_SUCCEEDED,
        RefundState.PENDING.value: PaidBy.PSP_PENDING,
        RefundState.FAILED.value: PaidBy.PSP_FAILED,
    }
    for attempt in psp_attempts(wh, month, config).iter_rows(named=True):
        row = rows[(state_kind[attempt["state"]], attempt["currency"])]
        row[0] += 1
        row[1] += attempt["amount_minor"]
    order = list(PaidBy)
    return tuple(
        MoneyOut(kind, currency, count, minor)
        for (kind, currency), (count, minor) in sorted(
            rows.items(), key=lambda item: (item[0][1], order.index(item[0][0]))
        )
    )


UNKNOWN_MARKET = "unknown"


def by_market(wh: Warehouse, month: Month) -> tuple[MarketFigures, ...]:
    """Per Centra market and currency: the month's returns (by their items' currency) and the
    refunds made in the month for returns on that market's orders (failed ones left out)."""
    found = wh.query(
        "WITH market AS ("
        "  SELECT r.reveni_return_id, coalesce(o.market, ?) AS market"
        "  FROM reveni_returns r LEFT JOIN centra_orders o USING (order_number)),"
        " returned AS ("
        "  SELECT m.market, i.currency, count(*) AS returns FROM reveni_returns r"
        "  JOIN market m USING (reveni_return_id)"
        "  LEFT JOIN (SELECT reveni_return_id, min(currency) AS currency FROM reveni_items"
        "             GROUP BY reveni_return_id) i USING (reveni_return_id)"
        "  WHERE r.created_at >= ? AND r.created_at < ? GROUP BY ALL),"
        " refunded AS ("
        "  SELECT m.market, f.currency, count(*) AS refunds, sum(f.amount_minor) AS minor"
        "  FROM reveni_refunds f JOIN market m USING (reveni_return_id)"
        "  WHERE f.status <> 'failed' AND f.created_at >= ? AND f.created_at < ? GROUP BY ALL)"
        " SELECT market, coalesce(currency, '') AS currency, coalesce(returns, 0) AS returns,"
        "  coalesce(refunds, 0) AS refunds, coalesce(minor, 0) AS minor"
        " FROM returned FULL JOIN refunded USING (market, currency) ORDER BY market, currency",
        [UNKNOWN_MARKET, month.start, month.end, month.start, month.end],
    )
    return tuple(
        MarketFigures(r["market"], r["currency"], r["returns"], r["refunds"], int(r["minor"]))
        for r in found.iter_rows(named=True)
    )


def psp_attempts(wh: Warehouse, month: Month, config: FigureConfig) -> pl.DataFrame:
    """The refunds of Centra's payment provider on orders with a Reveni return that ended in
    the month (settled or failed then), or are still pending with their request in the month:
    one row per attempt (`state` settled / pending / failed, the settlement's amount), without
    returnbridge's non-PSP credits (Reveni or store credit paid those)."""
    types = sorted(config.refund_types.all)
    marks = ", ".join("?" for _ in types)
    since = month.start - _PAIRING_WINDOW
    entries = wh.query(
        f"SELECT {', '.join(CENTRA_PAYMENTS.names())} FROM centra_payments "
        f"WHERE entry_type IN ({marks}) AND order_number IN ("
        f"  SELECT order_number FROM centra_payments WHERE entry_type IN ({marks}) "
        "   AND created_at >= ? AND created_at < ?"
        "  INTERSECT SELECT order_number FROM reveni_returns)"
        " AND created_at >= ?",
        [*types, *types, month.start, month.end, since],
    )
    if entries.is_empty():
        return entries.with_columns(pl.lit(None, pl.String).alias("state"))
    entries = entries.cast(dict(CENTRA_PAYMENTS))  # type: ignore[arg-type]
    reveni_ids = wh.query(
        "SELECT DISTINCT refund_id FROM reveni_refunds WHERE refund_id IN "
        "(SELECT unnest(?::VARCHAR[]))",
        [entries["external_reference"].drop_nulls().unique().to_list()],
    )["refund_id"]
    # the month's bounds in UTC, the entries' timezone: Polars compares datetimes of one zone
    start, end = month.start.astimezone(UTC), month.end.astimezone(UTC)
    # An attempt is dated by the entry that decided it (`entry_id`: the settlement of a paired
    # request, else the entry itself): a refund requested on 31 October and paid on 2 November
    # is November's money out; still pending at the report, it is October's pending one.
    decided = entries.lazy().select("entry_id", pl.col("created_at").alias("decided_at"))
    return (
        refund_attempt_rows(entries.lazy(), config.refund_types)
        .join(decided, on="entry_id", how="left")
        .filter(
            pl.col("decided_at") >= start,
            pl.col("decided_at") < end,
            pl.col("payment_method").ne_missing(config.manual_refund_payment_method),
            ~pl.col("external_reference").is_in(reveni_ids.implode()).fill_null(False),
        )
        .drop("decided_at")
        .collect()
    )


def exchanges(wh: Warehouse, month: Month, exceptions: Sequence[ExceptionRecord]) -> Exchanges:
    """The month's exchanges: returns with exchanged items (by the return's creation), the
    zero-value orders created in Centra, and the exchanges that could not be made."""
    asked = wh.query(
        "SELECT count(DISTINCT i.reveni_return_id) AS returns, count(*) AS items "
        "FROM reveni_items i JOIN reveni_returns r USING (reveni_return_id) "
        "WHERE i.exchange_n IS NOT NULL AND r.created_at >= ? AND r.created_at < ?",
        [month.start, month.end],
    )
    made = wh.query(
        "SELECT count(*) AS n FROM centra_orders "
        "WHERE exchange_of IS NOT NULL AND created_at >= ? AND created_at < ?",
        [month.start, month.end],
    )
    not_made = {
        exc.reveni_return_id
        for exc in exceptions
        if exc.code in _EXCHANGE_NOT_MADE and month.contains(exc.first_seen)
    }
    return Exchanges(
        returns=int(asked["returns"][0]),
        items=int(asked["items"][0]),
        orders_created=int(made["n"][0]),
        not_made=len(not_made),
    )


# ------------------------------------------------------------------------------ settlement


def reveni_paid_credits(
    wh: Warehouse, month: Month, config: FigureConfig, return_ids: Iterable[str]
) -> list[CentraCredit]:
    """returnbridge's non-PSP credits in Centra for refunds Reveni paid: those created in the
    month, and those (of any date) of the returns in `return_ids` (the invoice's lines)."""
    named = sorted(set(return_ids))
    found = wh.query(
        "SELECT p.entry_id, r.external_id AS reveni_return_id, p.order_number, p.amount_minor, "
        "  p.currency, p.created_at "
        "FROM centra_payments p JOIN centra_returns r ON r.centra_return_id = p.centra_return_id "
        "WHERE p.entry_type = ? AND p.status = 'SUCCESS' AND r.external_id IS NOT NULL "
        "  AND (p.payment_method = ? OR p.external_reference IN "
        "       (SELECT refund_id FROM reveni_refunds f WHERE f.reveni_return_id = r.external_id))"
        "  AND r.external_id IN "
        "      (SELECT reveni_return_id FROM reveni_refunds WHERE paid_by = 'reveni' "
        "       AND status = 'paid')"
        "  AND ((p.created_at >= ? AND p.created_at < ?) "
        "       OR r.external_id IN (SELECT unnest(?::VARCHAR[])))"
        "ORDER BY p.created_at, p.entry_id",
        [
            config.refund_types.refund,
            config.manual_refund_payment_method,
            month.start,
            month.end,
            named,
        ],
    )
    return [CentraCredit(**row) for row in found.iter_rows(named=True)]


def reveni_paid(wh: Warehouse, start: datetime, end: datetime) -> Minor:
    """Per currency, the instant refunds Reveni's returns data says Reveni paid in [start, end)
    (the invoice's period in Reveni's billing timezone): what its invoice should charge as
    disbursements, from a source independent of the invoice."""
    found = wh.query(
        "SELECT currency, sum(amount_minor) AS minor FROM reveni_refunds "
        "WHERE paid_by = 'reveni' AND status = 'paid' AND created_at >= ? AND created_at < ? "
        "GROUP BY currency ORDER BY currency",
        [start, end],
    )
    return {row["currency"]: int(row["minor"]) for row in found.iter_rows(named=True)}


def return_facts(wh: Warehouse, return_ids: Iterable[str]) -> dict[str, ReturnFacts]:
    """What the warehouse knows of each return named (unknown ones are left out)."""
    named = sorted(set(return_ids))
    if not named:
        return {}
    found = wh.query(
        "SELECT r.reveni_return_id, r.order_number, r.status, r.instant, "
        "  r.awaiting_inspection, "
        "  r.order_number IN (SELECT order_number FROM centra_orders) AS order_in_centra, "
        "  paid.paid_at, paid.paid_minor, paid.currency "
        "FROM reveni_returns r LEFT JOIN ("
        "  SELECT reveni_return_id, min(created_at) AS paid_at, sum(amount_minor) AS paid_minor,"
        "    min(currency) AS currency FROM reveni_refunds "
        "  WHERE paid_by = 'reveni' AND status = 'paid' GROUP BY reveni_return_id"
        ") paid USING (reveni_return_id) "
        "WHERE r.reveni_return_id IN (SELECT unnest(?::VARCHAR[]))",
        [named],
    )
    facts: dict[str, ReturnFacts] = {}
    for row in found.iter_rows(named=True):
        facts[row["reveni_return_id"]] = ReturnFacts(
            reveni_return_id=row["reveni_return_id"],
            order_number=row["order_number"],
            status=row["status"],
            instant=bool(row["instant"]),
            awaiting_inspection=bool(row["awaiting_inspection"]),
            covered=bool(row["instant"]) and row["status"] == "rejected",
            order_in_centra=bool(row["order_in_centra"]),
            reveni_paid_at=row["paid_at"],
            reveni_paid_minor=row["paid_minor"],
            currency=row["currency"],
        )
    return facts


def centra_currencies(wh: Warehouse) -> set[str]:
    found = wh.query("SELECT DISTINCT currency FROM centra_orders WHERE currency IS NOT NULL")
    return set(found["currency"].to_list())


# ------------------------------------------------------------------------------ what went wrong


@dataclass
class _Tally:
    opened: int = 0
    resolved: int = 0
    open_at_end: int = 0
    ageing: list[int] = field(default_factory=lambda: [0] * len(AGEING_BUCKETS))
    open_minor: Minor = field(default_factory=dict)


def exception_tallies(
    exceptions: Sequence[ExceptionRecord],
    month: Month,
    runbook: Callable[[str], str | None] = lambda code: None,
) -> tuple[tuple[ExceptionTally, ...], Minor]:
    """Per owner and code: opened and resolved in the month, open at its end (by age then, and
    their money); and the money at risk: open Finance amounts at the month's end. `runbook`
    gives the runbook entry of a code (`settings.links`), or None."""
    end = month.end
    tallies: dict[tuple[str, str], _Tally] = {}
    at_risk: Minor = {}
    for exc in exceptions:
        first_seen = seen_in(exc, month)
        opened = month.contains(first_seen)
        closed_at = _closed_at(exc)
        resolved = closed_at is not None and month.contains(closed_at)
        open_at_end = _open_at_end(exc, month)
        if not (opened or resolved or open_at_end):
            continue
        tally = tallies.setdefault((exc.owner, exc.code), _Tally())
        tally.opened += opened
        tally.resolved += resolved
        if not open_at_end:
            continue
        tally.open_at_end += 1
        tally.ageing[_bucket((end - first_seen).days)] += 1
        if exc.amount is not None and exc.currency:
            minor = _minor(exc.amount, exc.currency)
            add_minor(tally.open_minor, exc.currency, minor)
            if exc.owner == "finance":
                add_minor(at_risk, exc.currency, minor)
    out = tuple(
        ExceptionTally(
            owner=owner,
            code=code,
            title=_title(code),
            opened=t.opened,
            resolved=t.resolved,
            open_at_end=t.open_at_end,
            ageing=tuple(t.ageing),
            open_minor=dict(sorted(t.open_minor.items())),
            runbook_url=runbook(code),
        )
        for (owner, code), t in sorted(tallies.items())
    )
    return out, dict(sorted(at_risk.items()))


def open_items(exceptions: Sequence[ExceptionRecord], month: Month) -> tuple[OpenItem, ...]:
    """The open Finance exceptions with money at the month's end (what `money_at_risk` sums),
    per currency largest first."""
    items: list[OpenItem] = []
    for exc in exceptions:
        if exc.owner != "finance" or exc.amount is None or not exc.currency:
            continue
        if not _open_at_end(exc, month):
            continue
        items.append(
            OpenItem(
                exception_id=exc.id,
                code=exc.code,
                title=_title(exc.code),
                order_number=exc.order_number,
                reveni_return_id=exc.reveni_return_id,
                currency=exc.currency,
                minor=_minor(exc.amount, exc.currency),
                opened=seen_in(exc, month).astimezone(month.zone).date(),
                centra_minor=_centra_minor(exc),
            )
        )
    return tuple(sorted(items, key=lambda i: (i.currency, -i.minor, i.opened, i.exception_id)))


def _closed_at(exc: ExceptionRecord) -> datetime | None:
    return exc.resolved_at if exc.status in ("resolved", "ignored") else None


def _open_at_end(exc: ExceptionRecord, month: Month) -> bool:
    """Opened before the month's end (`seen_in`) and not closed by then."""
    closed_at = _closed_at(exc)
    return seen_in(exc, month) < month.end and (closed_at is None or closed_at >= month.end)


def _centra_minor(exc: ExceptionRecord) -> int | None:
    """Centra's side of a money mismatch (facts `centra_amount`, `centra_currency`) in minor
    units, when it is in the exception's currency and readable; else None."""
    centra = exc.facts.get("centra_amount")
    if not centra or not exc.currency:
        return None
    if exc.facts.get("centra_currency", exc.currency) != exc.currency:
        return None
    with suppress(ArithmeticError, ValueError):
        return _minor(Decimal(centra), exc.currency)
    return None


def seen_in(exc: ExceptionRecord, month: Month) -> datetime:
    """When `exc` counts as opened: when returnbridge first saw it, or, for an exception the
    month-end report raises about a month (fact `period`), that month's last instant at the
    latest: October's unmatched settlement line, found on 1 November, is October's."""
    period = exc.facts.get("period")
    if not period:
        return exc.first_seen
    try:
        about = Month.parse(period, month.zone)
    except ValueError:
        return exc.first_seen
    return min(exc.first_seen, about.end - timedelta(microseconds=1))


def problem_money(exc: ExceptionRecord) -> tuple[str, int] | None:
    """The money of one problem, in minor units: for a refund amount mismatch with Centra's
    amount known (fact `centra_amount`, same currency), the difference; else its amount."""
    if exc.amount is None or not exc.currency:
        return None
    money = _minor(exc.amount, exc.currency)
    centra = _centra_minor(exc)  # unreadable or another currency: the amount as recorded
    if exc.code == "refund_amount_mismatch" and centra is not None:
        money = abs(money - centra)
    return exc.currency, money


def money_problem(exceptions: Sequence[ExceptionRecord], code: str, month: Month) -> MoneyProblem:
    """The exceptions of `code` opened in the month: how many, their money (`problem_money`),
    and how many of them (and how much) were resolved since (recovered)."""
    count = recovered = 0
    minor: Minor = {}
    recovered_minor: Minor = {}
    for exc in exceptions:
        if exc.code != code or not month.contains(seen_in(exc, month)):
            continue
        count += 1
        found = problem_money(exc)
        money = found[1] if found is not None else 0
        if exc.currency:
            add_minor(minor, exc.currency, money)
        if exc.status == "resolved":
            recovered += 1
            if exc.currency:
                add_minor(recovered_minor, exc.currency, money)
    return MoneyProblem(count, minor, recovered, recovered_minor)


def _bucket(age_days: int) -> int:
    for index, (_, low, high) in enumerate(AGEING_BUCKETS):
        if age_days >= low and (high is None or age_days <= high):
            return index
    return 0


def _title(code: str) -> str:
    """The plain title the digests, `exceptions list` and the runbook use for `code`."""
    return title_of(code)


def _minor(amount: Decimal, currency: str) -> int:
    return minor_units(amount, currency, "exception amount")


# ------------------------------------------------------------------------------ trend


def trend(wh: Warehouse, month: Month) -> tuple[TrendPoint, ...]:
    """Returns requested and refunds made in each of the twelve months up to `month`, per
    currency (a return counts under the currency of its items)."""
    first = month.shifted(-(TREND_MONTHS - 1))
    zone = str(month.zone)
    returns = wh.query(
        "SELECT r.created_at, i.currency FROM reveni_returns r LEFT JOIN ("
        "  SELECT reveni_return_id, min(currency) AS currency FROM reveni_items "
        "  GROUP BY reveni_return_id) i USING (reveni_return_id) "
        "WHERE r.created_at >= ? AND r.created_at < ?",
        [first.start, month.end],
    )
    refunds = wh.query(
        "SELECT created_at, currency, amount_minor FROM reveni_refunds "
        "WHERE status <> 'failed' AND created_at >= ? AND created_at < ?",
        [first.start, month.end],
    )
    if returns.is_empty() and refunds.is_empty():
        return ()

    def by_month(frame: pl.DataFrame) -> pl.LazyFrame:
        return frame.lazy().with_columns(
            pl.col("created_at")
            .cast(pl.Datetime("us", "UTC"))
            .dt.convert_time_zone(zone)
            .dt.strftime("%Y-%m")
            .alias("month"),
            pl.col("currency").fill_null(""),
        )

    counted = (
        by_month(returns)
        .group_by("month", "currency")
        .agg(pl.len().cast(pl.Int64).alias("returns"))
    )
    paid = (
        by_month(refunds)
        .group_by("month", "currency")
        .agg(
            pl.len().cast(pl.Int64).alias("refunds"),
            pl.col("amount_minor").sum().cast(pl.Int64).alias("refunds_minor"),
        )
    )
    joined = (
        counted.join(paid, on=["month", "currency"], how="full", coalesce=True)
        .with_columns(pl.col("returns", "refunds", "refunds_minor").fill_null(0))
        .sort("currency", "month")
        .collect()
    )
    currencies = sorted(set(joined["currency"].to_list()))
    months = [first.shifted(k).text for k in range(TREND_MONTHS)]
    have = {(r["month"], r["currency"]): r for r in joined.iter_rows(named=True)}
    points = []
    for currency in currencies:
        for text in months:
            row = have.get((text, currency))
            points.append(
                TrendPoint(
                    month=text,
                    currency=currency,
                    returns=int(row["returns"]) if row else 0,
                    refunds=int(row["refunds"]) if row else 0,
                    refunds_minor=int(row["refunds_minor"]) if row else 0,
                )
            )
    return tuple(points)
