"""Settlement, line by line: Reveni's invoice disbursements against Centra's credits
(docs/architecture.md#the-month-end-report). Pure: no I/O.

Reveni bills the merchant for the instant refunds it paid ("disbursements"); returnbridge
records each such refund in Centra as a non-PSP credit on the return. `match_settlement`
pairs the two sides one-to-one per return and currency and says, for every line that does not
pair, whether that is expected (a refund Reveni covers, a return still awaiting inspection, a
credit of a refund billed on an earlier invoice) or an exception someone has to look at. Each
disbursement line lands in exactly one bucket, so the tie-out balances by construction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from returnbridge.monthend.model import (
    InvoiceDoc,
    InvoiceKind,
    InvoiceLine,
    Match,
    Settlement,
    SettlementLine,
    Side,
    TieOut,
    money_text,
)


@dataclass(frozen=True)
class CentraCredit:
    """A settled non-PSP credit in Centra (the record of a refund Reveni paid, written by
    returnbridge on the Centra return of `reveni_return_id`), from the warehouse."""

    entry_id: int
    reveni_return_id: str
    order_number: int
    amount_minor: int
    currency: str
    created_at: datetime  # UTC


@dataclass(frozen=True)
class ReturnFacts:
    """What the warehouse knows of a Reveni return that an invoice line or a credit names.

    `reveni_paid_at` / `reveni_paid_minor`: the refund Reveni itself paid (paid_by reveni,
    status paid), None when Reveni paid none. `order_in_centra`: Centra has the order (else
    no credit can ever be posted). `awaiting_inspection`: not inspected yet. `covered`: an
    instant return Reveni rejected after paying (Reveni bears the loss)."""

    reveni_return_id: str
    order_number: int | None
    status: str
    instant: bool
    awaiting_inspection: bool
    covered: bool
    order_in_centra: bool
    reveni_paid_at: datetime | None = None
    reveni_paid_minor: int | None = None
    currency: str | None = None


# The order lines are listed in: the invoice's side first, the worst outcome first.
SIDE_ORDER: tuple[Side, ...] = (Side.DISBURSEMENT, Side.CENTRA_CREDIT)
SEVERITY: tuple[Match, ...] = (
    Match.UNMATCHED,
    Match.AMOUNT_DIFFERS,
    Match.AWAITING_CREDIT,
    Match.EARLIER_INVOICE,
    Match.COVERED,
    Match.MATCHED,
)


def match_settlement(
    invoice: InvoiceDoc | None,
    credits: Sequence[CentraCredit],
    facts: Mapping[str, ReturnFacts],
    *,
    month_start: datetime,
    month_end: datetime,
    centra_currencies: Collection[str] = (),
    invoice_start: datetime | None = None,
    reveni_paid: Mapping[str, int] | None = None,
) -> Settlement:
    """Match `invoice`'s disbursement lines against Centra's `credits` of Reveni-paid refunds.

    `credits`: every such credit the warehouse has for the returns involved, of any date (a
    refund billed this month may be credited after the month end and still matches); only
    those created in [`month_start`, `month_end`) are listed on the Centra side. `facts`: per
    Reveni return id, what the warehouse knows. `centra_currencies`: the currencies Centra has
    orders in (empty: unknown, no check). `invoice_start`: the first instant of the invoice's
    period in Reveni's billing timezone (default `month_start`): a refund Reveni paid before it
    was billed on an earlier invoice. `reveni_paid`: per currency, the instant refunds Reveni's
    returns data says it paid in the invoice's period (the tie-out's independent check; None:
    not read).

    Disbursement lines, per (return, currency): a return Reveni covers (its facts say so, or
    the invoice credits it back to zero) -> every line COVERED. A partial credit (a negative
    line leaving part of the refund to the brand, e.g. one rejected item of two): the negative
    lines are COVERED and the rest pairs with Centra's credit of the net. Otherwise each line is
    paired with one credit: same amount -> MATCHED, else another amount -> AMOUNT_DIFFERS;
    with no credit left, a return awaiting inspection whose order Centra has -> AWAITING_CREDIT
    (a timing difference), else UNMATCHED with the reason. Centra credits of the month not
    paired: Reveni paid the refund before the month -> EARLIER_INVOICE; Reveni paid none -> not
    a Reveni credit, left out; else UNMATCHED. No invoice: nothing can be matched, so no lines
    and a note saying so."""
    if month_start.tzinfo is None or month_end.tzinfo is None:
        raise ValueError("month_start and month_end must be timezone-aware")
    if month_end <= month_start:
        raise ValueError(f"month_end {month_end} is not after month_start {month_start}")
    if invoice is None:
        return Settlement(
            lines=(),
            tie_out=(),
            notes=(f"no invoice for {month_start:%Y-%m}: settlement not matched",),
            period=f"{month_start:%Y-%m}",
        )
    matcher = _Matcher(credits, facts, invoice_start or month_start, month_end)
    disbursements = [line for line in invoice.lines if line.kind is InvoiceKind.DISBURSEMENT]
    groups: dict[tuple[str | None, str], list[InvoiceLine]] = defaultdict(list)
    for line in disbursements:
        groups[(line.return_id, line.currency)].append(line)
    lines: list[SettlementLine] = []
    for (return_id, currency), group in groups.items():
        lines += matcher.disbursements(return_id, currency, sorted(group, key=_by_row))
    in_month = [credit for credit in credits if month_start <= credit.created_at < month_end]
    lines += matcher.leftover_credits(in_month)
    lines.sort(key=_order)
    notes = _notes(invoice.lines, facts, centra_currencies)
    reveni_credits = [credit for credit in in_month if credit.entry_id not in matcher.skipped]
    return Settlement(
        lines=tuple(lines),
        tie_out=_tie_out(lines, reveni_credits, reveni_paid),
        notes=tuple(notes),
        period=f"{month_start:%Y-%m}",
    )


def _by_row(line: InvoiceLine) -> tuple[int, int]:
    return (line.row, line.amount_minor)


def _order(line: SettlementLine) -> tuple[int, int, str, str, int, date, int, str]:
    """Side, worst outcome first, currency, return, row; the rest only breaks ties (the detail
    names the credit), so the order never depends on the order of the inputs."""
    return (
        SIDE_ORDER.index(line.side),
        SEVERITY.index(line.match),
        line.currency,
        line.reveni_return_id or "",
        line.row or 0,
        line.event_date or date.min,
        line.amount_minor,
        line.detail,
    )


class _Matcher:
    """The pairing state: which credits (by entry id) a disbursement line has taken, and which
    of the month's credits are not Reveni's (skipped)."""

    def __init__(
        self,
        credits: Sequence[CentraCredit],
        facts: Mapping[str, ReturnFacts],
        period_start: datetime,
        month_end: datetime,
    ) -> None:
        self.facts = facts
        self.month_start = period_start
        self.pool: dict[tuple[str, str], list[CentraCredit]] = defaultdict(list)
        self.by_return: dict[str, list[CentraCredit]] = defaultdict(list)

        def preference(credit: CentraCredit) -> tuple[int, datetime, int]:
            # the month's credits first, then later ones; one from before the month most
            # likely settled an earlier invoice's line
            when = 2 if credit.created_at < period_start else int(credit.created_at >= month_end)
            return (when, credit.created_at, credit.entry_id)

        for credit in sorted(credits, key=preference):
            self.pool[(credit.reveni_return_id, credit.currency)].append(credit)
            self.by_return[credit.reveni_return_id].append(credit)
        self.consumed: set[int] = set()
        self.skipped: set[int] = set()

    # ------------------------------------------------------------------ invoice side

    def disbursements(
        self, return_id: str | None, currency: str, group: list[InvoiceLine]
    ) -> list[SettlementLine]:
        fact = self.facts.get(return_id) if return_id is not None else None
        negative = [line for line in group if line.amount_minor < 0]
        net = sum(line.amount_minor for line in group)
        rows = ", ".join(str(line.row) for line in negative)
        # covered: credited back to zero (or below: charged on an earlier invoice), or a return
        # Reveni covers that this invoice does not credit at all; a credit back that leaves part
        # of the refund charged is a partial cover, settled below
        if (negative and net <= 0) or (fact is not None and fact.covered and not negative):
            if negative:
                why = f"Reveni credits this instant refund on the invoice (row {rows})"
            else:
                why = "Reveni covers this instant refund (return rejected): no credit due"
            return [self._line(line, fact, Match.COVERED, None, why) for line in group]
        out: list[SettlementLine] = []
        pool = self.pool.get((return_id, currency), []) if return_id is not None else []
        free = [credit for credit in pool if credit.entry_id not in self.consumed]
        if negative:
            why = f"Reveni credits part of this instant refund back on the invoice (row {rows})"
            out += [self._line(line, fact, Match.COVERED, None, why) for line in negative]
            group = [line for line in group if line.amount_minor >= 0]
            if len(group) == 1 and free:
                # the brand bears the refund less Reveni's credit: Centra's credit is the net
                paired = next((c for c in free if c.amount_minor == net), free[0])
                self.consumed.add(paired.entry_id)
                if paired.amount_minor == net:
                    match = Match.MATCHED
                    detail = (
                        f"credit {paired.entry_id} of {money_text(net, currency)} {currency}, "
                        f"the refund less what Reveni credits back (row {rows})"
                    )
                else:
                    match = Match.AMOUNT_DIFFERS
                    detail = (
                        f"invoice {money_text(net, currency)} {currency} after Reveni's credit "
                        f"(row {rows}), Centra credit {paired.entry_id} "
                        f"{money_text(paired.amount_minor, currency)} {currency}"
                    )
                out.append(self._line(group[0], fact, match, paired.amount_minor, detail))
                return out
        # what Reveni's own data says it paid for this return: a return awaiting inspection has
        # no Centra credit yet to compare with, so its lines are held to that instead
        billed = sum(line.amount_minor for line in group if line.amount_minor > 0)
        paid = (
            fact.reveni_paid_minor
            if fact is not None and fact.currency == currency and fact.reveni_paid_minor
            else None
        )
        left: list[InvoiceLine] = []
        for line in group:  # equal amounts first
            credit = next((c for c in free if c.amount_minor == line.amount_minor), None)
            if credit is None:
                left.append(line)
                continue
            free.remove(credit)
            self.consumed.add(credit.entry_id)
            out.append(
                self._line(
                    line, fact, Match.MATCHED, credit.amount_minor, f"credit {credit.entry_id}"
                )
            )
        for line in left:
            if free:
                credit = free.pop(0)
                self.consumed.add(credit.entry_id)
                why = (
                    f"invoice {money_text(line.amount_minor, currency)} {currency}, Centra credit "
                    f"{credit.entry_id} {money_text(credit.amount_minor, currency)} {currency}"
                )
                out.append(self._line(line, fact, Match.AMOUNT_DIFFERS, credit.amount_minor, why))
            elif (
                fact is not None
                and fact.awaiting_inspection
                and fact.order_in_centra
                and (paid is None or billed == paid)
            ):
                why = "return not inspected yet: credited in Centra once Reveni accepts it"
                out.append(self._line(line, fact, Match.AWAITING_CREDIT, None, why))
            elif (
                fact is not None
                and fact.awaiting_inspection
                and paid is not None
                and billed != paid
            ):
                why = (
                    f"return not inspected yet, billed {money_text(billed, currency)} {currency}"
                    f" where Reveni's data shows it paid {money_text(paid, currency)} {currency}"
                )
                out.append(self._line(line, fact, Match.UNMATCHED, None, why))
            elif twin := next(
                (
                    done
                    for done in out
                    if done.match is Match.MATCHED and done.amount_minor == line.amount_minor
                ),
                None,
            ):
                why = (
                    f"billed again: row {twin.row} bills the same refund, and Centra's one "
                    f"credit ({twin.detail}) matched it"
                )
                out.append(self._line(line, fact, Match.UNMATCHED, None, why))
            else:
                why = self._why_unmatched(line, fact)
                out.append(self._line(line, fact, Match.UNMATCHED, None, why))
        return out

    def _why_unmatched(self, line: InvoiceLine, fact: ReturnFacts | None) -> str:
        if line.return_id is None:
            return "the line names no return"
        if fact is None:
            return f"return {line.return_id} is unknown to the warehouse"
        order = fact.order_number if fact.order_number is not None else line.order_number
        if not fact.order_in_centra:
            return f"no Centra order for order {order}" if order is not None else "no Centra order"
        others = sorted(
            {
                c.currency
                for c in self.by_return.get(line.return_id, [])
                if c.currency != line.currency
            }
        )
        if others:
            return f"Centra credits this return in {', '.join(others)}, not {line.currency}"
        if fact.status == "rejected":
            return "return rejected, yet disbursed and not covered"
        if fact.reveni_paid_at is None:
            return "Reveni recorded no refund it paid for this return, and Centra has no credit"
        if fact.status in ("accepted", "partially_accepted", "completed"):
            return f"return {fact.status}, but never credited in Centra"
        return f"no Centra credit (return {fact.status})"

    def _line(
        self,
        line: InvoiceLine,
        fact: ReturnFacts | None,
        match: Match,
        counterpart: int | None,
        detail: str,
    ) -> SettlementLine:
        order = line.order_number
        if order is None and fact is not None:
            order = fact.order_number
        return SettlementLine(
            side=Side.DISBURSEMENT,
            reveni_return_id=line.return_id,
            order_number=order,
            currency=line.currency,
            amount_minor=line.amount_minor,
            match=match,
            counterpart_minor=counterpart,
            event_date=line.event_date,
            row=line.row,
            detail=detail,
        )

    # ------------------------------------------------------------------ Centra side

    def leftover_credits(self, in_month: Sequence[CentraCredit]) -> list[SettlementLine]:
        out: list[SettlementLine] = []
        for credit in sorted(in_month, key=lambda c: (c.created_at, c.entry_id)):
            if credit.entry_id in self.consumed:
                continue
            fact = self.facts.get(credit.reveni_return_id)
            if fact is None:
                match, why = Match.UNMATCHED, "return unknown to the warehouse"
            elif fact.reveni_paid_at is None:
                self.skipped.add(credit.entry_id)  # not a refund Reveni paid: not this report's
                continue
            elif fact.reveni_paid_at < self.month_start:
                match = Match.EARLIER_INVOICE
                why = f"Reveni paid it on {fact.reveni_paid_at:%Y-%m-%d}, before this period"
            elif fact.covered:
                match, why = (
                    Match.UNMATCHED,
                    "Reveni covers this refund (return rejected), yet Centra credits it",
                )
            else:
                match = Match.UNMATCHED
                paid = f"Reveni paid it on {fact.reveni_paid_at:%Y-%m-%d}"
                why = f"{paid}; no disbursement on this invoice"
            out.append(
                SettlementLine(
                    side=Side.CENTRA_CREDIT,
                    reveni_return_id=credit.reveni_return_id,
                    order_number=credit.order_number,
                    currency=credit.currency,
                    amount_minor=credit.amount_minor,
                    match=match,
                    event_date=credit.created_at.astimezone(self.month_start.tzinfo).date(),
                    detail=f"credit {credit.entry_id}: {why}",
                    entry_id=credit.entry_id,
                )
            )
        return out


def _notes(
    lines: Sequence[InvoiceLine],
    facts: Mapping[str, ReturnFacts],
    centra_currencies: Collection[str],
) -> list[str]:
    """What a reader must know about the invoice's lines before trusting the settlement."""
    notes: list[str] = []
    # the notes never depend on the order of the input
    lines = sorted(
        lines,
        key=lambda ln: (ln.row, ln.amount_minor, ln.kind.value, ln.currency, ln.return_id or ""),
    )
    disbursements = [line for line in lines if line.kind is InvoiceKind.DISBURSEMENT]
    if centra_currencies:
        # disbursements only: Reveni bills its fees in its own currency (EUR), whatever the
        # brand sells in
        strange: dict[str, int] = defaultdict(int)
        for line in disbursements:
            if line.currency not in centra_currencies:
                strange[line.currency] += 1
        notes += [
            f"{count} invoice line(s) in {currency}, a currency Centra has no order in"
            for currency, count in sorted(strange.items())
        ]
    unknown = sum(
        1 for line in disbursements if line.return_id is not None and line.return_id not in facts
    )
    if unknown:
        notes.append(f"{unknown} disbursement line(s) name a return the warehouse does not know")
    nameless = sum(1 for line in disbursements if line.return_id is None)
    if nameless:
        notes.append(f"{nameless} disbursement line(s) name no return")
    credited_fees = [
        line.row
        for line in lines
        if line.kind is not InvoiceKind.DISBURSEMENT and line.amount_minor < 0
    ]
    if credited_fees:
        rows = ", ".join(map(str, credited_fees[:10])) + (
            ", ..." if len(credited_fees) > 10 else ""
        )
        notes.append(
            f"{len(credited_fees)} fee line(s) with a negative amount, a credit (row {rows})"
        )
    seen: dict[tuple[object, ...], int] = {}
    repeated: list[str] = []
    for line in lines:
        same = (
            line.kind,
            line.return_id,
            line.order_number,
            line.amount_minor,
            line.currency,
            line.vat_rate,
            line.event_date,
        )
        if same in seen:
            repeated.append(f"{line.row} repeats {seen[same]}")
        else:
            seen[same] = line.row
    if repeated:
        shown = "; ".join(repeated[:10]) + ("; ..." if len(repeated) > 10 else "")
        notes.append(
            f"{len(repeated)} invoice line(s) repeat an earlier line exactly (row {shown}): "
            "billed twice?"
        )
    return notes


def _tie_out(
    lines: Sequence[SettlementLine],
    credits: Sequence[CentraCredit],
    reveni_paid: Mapping[str, int] | None = None,
) -> tuple[TieOut, ...]:
    """Per currency, every disbursement line in exactly one bucket (AMOUNT_DIFFERS counts as
    unmatched, with the amount the invoice disbursed), and the Centra credits of the month:
    all Reveni's (a credit a disbursement line took counts even when the facts say Reveni paid
    nothing: the line shows it was); and what the invoice charges against `reveni_paid`."""
    currencies = sorted(
        {line.currency for line in lines if line.side is Side.DISBURSEMENT}
        | {credit.currency for credit in credits}
        | {currency for currency, minor in (reveni_paid or {}).items() if minor}
    )
    bucket = {
        Match.MATCHED: "matched",
        Match.COVERED: "covered",
        Match.AWAITING_CREDIT: "awaiting",
        Match.AMOUNT_DIFFERS: "unmatched",
        Match.UNMATCHED: "unmatched",
    }
    out: list[TieOut] = []
    for currency in currencies:
        sums = dict.fromkeys(("matched", "covered", "awaiting", "unmatched"), 0)
        disbursed = charged = covered_charged = covered_credited = 0
        centra_unmatched = 0
        for line in lines:
            if line.currency != currency:
                continue
            if line.side is Side.DISBURSEMENT:
                disbursed += line.amount_minor
                charged += max(line.amount_minor, 0)
                sums[bucket[line.match]] += line.amount_minor
                if line.match is Match.COVERED:
                    if line.amount_minor >= 0:
                        covered_charged += line.amount_minor
                    else:
                        covered_credited += line.amount_minor
            elif line.match is Match.UNMATCHED:
                centra_unmatched += line.amount_minor
        out.append(
            TieOut(
                currency=currency,
                disbursements_minor=disbursed,
                matched_minor=sums["matched"],
                covered_minor=sums["covered"],
                awaiting_minor=sums["awaiting"],
                unmatched_minor=sums["unmatched"],
                centra_credits_minor=sum(c.amount_minor for c in credits if c.currency == currency),
                centra_unmatched_minor=centra_unmatched,
                covered_charged_minor=covered_charged,
                covered_credited_minor=covered_credited,
                charged_minor=charged,
                reveni_paid_minor=None if reveni_paid is None else reveni_paid.get(currency, 0),
            )
        )
    return tuple(out)
