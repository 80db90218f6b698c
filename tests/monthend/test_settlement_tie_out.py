"""The settlement's tie-out balances by construction (Hypothesis): whatever mix of refunds,
Centra credits (same, other or missing amounts, several per return, other currencies, dates in
and out of the month) and invoice lines (positive and negative disbursements, fees), every
currency balances to the minor unit, every disbursement line is in the settlement exactly once
and every Reveni credit of the month at most once (exactly once, counting those a line took)."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from returnbridge.monthend.model import (
    InvoiceDoc,
    InvoiceKind,
    InvoiceLine,
    Match,
    Settlement,
    SettlementLine,
    Side,
)
from returnbridge.monthend.settlement import CentraCredit, ReturnFacts, match_settlement

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
RETURN_IDS = [f"r_{n}" for n in range(6)]
CURRENCIES = ["EUR", "SEK", "JPY"]
FEES = [kind for kind in InvoiceKind if kind is not InvoiceKind.DISBURSEMENT]
NAMED_CREDIT = re.compile(r"\bcredit (\d+)\b")

# amounts: the same few often (so lines and credits pair), anything sometimes
amounts = st.one_of(st.sampled_from([0, 1000, 2500, 4995]), st.integers(-(10**6), 10**6))
positive = st.one_of(st.sampled_from([1000, 2500, 4995]), st.integers(0, 10**6))
line_amounts = st.one_of(positive, positive, positive, positive.map(lambda n: -n))
currencies = st.sampled_from(["EUR", "EUR", "SEK", "JPY"])
rarely = st.integers(0, 4).map(lambda n: n == 0)
EDGES = [START - timedelta(microseconds=1), START, END - timedelta(microseconds=1), END]
moments = st.one_of(
    st.sampled_from(EDGES),
    st.datetimes(
        min_value=datetime(2026, 8, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
    ),
)


@st.composite
def return_facts(draw: st.DrawFn, rid: str) -> ReturnFacts:
    return ReturnFacts(
        reveni_return_id=rid,
        order_number=draw(st.none() | st.integers(1000, 1010)),
        status=draw(st.sampled_from(["shipped", "accepted", "rejected", "completed"])),
        instant=draw(st.booleans()),
        awaiting_inspection=draw(st.booleans()),
        covered=draw(rarely),
        order_in_centra=draw(st.booleans()),
        reveni_paid_at=draw(st.none() | moments),
        reveni_paid_minor=draw(st.none() | amounts),
        currency=draw(st.sampled_from(CURRENCIES)),
    )


@st.composite
def worlds(
    draw: st.DrawFn,
) -> tuple[InvoiceDoc | None, list[CentraCredit], dict[str, ReturnFacts]]:
    """Facts for some returns, invoice lines, and credits: some mirroring a disbursement line
    (its amount, another amount, or twice), the rest anything."""
    known = draw(st.lists(st.sampled_from(RETURN_IDS), unique=True))
    facts = {rid: draw(return_facts(rid)) for rid in known}
    line_rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from([InvoiceKind.DISBURSEMENT] * 3 + FEES),
                st.none() | st.sampled_from(RETURN_IDS),
                line_amounts,
                currencies,
            ),
            max_size=14,
        )
    )
    lines = tuple(
        InvoiceLine(row, kind, amount, currency, return_id=rid)
        for row, (kind, rid, amount, currency) in enumerate(line_rows, start=1)
    )
    credit_rows = draw(
        st.lists(st.tuples(st.sampled_from(RETURN_IDS), amounts, currencies, moments), max_size=8)
    )
    for line in lines:
        if line.kind is not InvoiceKind.DISBURSEMENT or line.return_id is None:
            continue
        mirrors = draw(st.sampled_from(["none", "same", "same", "other", "twice"]))
        if mirrors == "none":
            continue
        amount = line.amount_minor if mirrors != "other" else draw(amounts)
        for _ in range(2 if mirrors == "twice" else 1):
            credit_rows.append((line.return_id, amount, line.currency, draw(moments)))
    credit_rows = draw(st.permutations(credit_rows))
    credits = [
        CentraCredit(entry, rid, 1001, amount, currency, at)
        for entry, (rid, amount, currency, at) in enumerate(credit_rows, start=1)
    ]
    if draw(st.integers(0, 9)) == 0:
        return None, credits, facts
    return InvoiceDoc(source="reveni-api", period="2026-10", lines=lines), credits, facts


def named_credit(detail: str) -> int:
    """The Centra credit a line names (SettlementLine has no field for it: its detail says)."""
    found = NAMED_CREDIT.search(detail)
    assert found is not None, detail
    return int(found[1])


def settle(
    invoice: InvoiceDoc | None, credits: list[CentraCredit], facts: dict[str, ReturnFacts]
) -> Settlement:
    return match_settlement(invoice, credits, facts, month_start=START, month_end=END)


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_the_tie_out_balances_and_every_line_is_settled_once(
    world: tuple[InvoiceDoc | None, list[CentraCredit], dict[str, ReturnFacts]],
) -> None:
    invoice, credits, facts = world
    result = settle(invoice, credits, facts)
    if invoice is None:
        assert result.lines == () and result.tie_out == () and len(result.notes) == 1
        return
    disbursements = [ln for ln in invoice.lines if ln.kind is InvoiceKind.DISBURSEMENT]
    settled = [ln for ln in result.lines if ln.side is Side.DISBURSEMENT]
    centra = [ln for ln in result.lines if ln.side is Side.CENTRA_CREDIT]

    # every disbursement line exactly once, as itself
    assert all(ln.row is not None for ln in settled)
    assert sorted(ln.row or 0 for ln in settled) == [ln.row for ln in disbursements]
    by_row = {ln.row: ln for ln in disbursements}
    # a partial cover (Reveni credits part of one refund back): Centra's credit is the net
    groups: dict[tuple[str | None, str], list[InvoiceLine]] = defaultdict(list)
    for ln in disbursements:
        groups[(ln.return_id, ln.currency)].append(ln)

    def compared(line: SettlementLine) -> int:
        group = groups[(line.reveni_return_id, line.currency)]
        positive = [ln for ln in group if ln.amount_minor >= 0]
        net = sum(ln.amount_minor for ln in group)
        partial = len(positive) < len(group) and net > 0 and len(positive) == 1
        return net if partial and line.amount_minor >= 0 else line.amount_minor

    for ln in settled:
        assert ln.row is not None
        source = by_row[ln.row]
        assert (ln.reveni_return_id, ln.amount_minor, ln.currency) == (
            source.return_id,
            source.amount_minor,
            source.currency,
        )
        if ln.match is Match.MATCHED:
            assert ln.counterpart_minor == compared(ln)
        elif ln.match is Match.AMOUNT_DIFFERS:
            assert ln.counterpart_minor is not None and ln.counterpart_minor != compared(ln)
        else:
            assert ln.counterpart_minor is None
        assert ln.match is not Match.EARLIER_INVOICE

    # per currency: balanced to the minor unit, and the sums are the lines' sums
    assert result.balanced
    tied = {t.currency: t for t in result.tie_out}
    for currency in {ln.currency for ln in disbursements}:
        t = tied[currency]
        assert t.disbursements_minor == sum(
            ln.amount_minor for ln in disbursements if ln.currency == currency
        )
        assert t.disbursements_minor == (
            t.matched_minor + t.covered_minor + t.awaiting_minor + t.unmatched_minor
        )
        assert t.matched_minor == sum(
            ln.amount_minor
            for ln in settled
            if ln.currency == currency and ln.match is Match.MATCHED
        )

    # the Centra side: each Reveni credit of the month named once (by a line that took it, or
    # listed), never one outside the month; one of a refund Reveni did not pay (by the facts)
    # is left out unless a disbursement line took it
    listed = Counter(named_credit(ln.detail) for ln in centra)
    taken = Counter(
        named_credit(ln.detail)
        for ln in settled
        if ln.match in (Match.MATCHED, Match.AMOUNT_DIFFERS)
    )
    in_month = {c.entry_id: c for c in credits if START <= c.created_at < END}
    reveni = {
        entry: c
        for entry, c in in_month.items()
        if entry in taken
        or c.reveni_return_id not in facts
        or facts[c.reveni_return_id].reveni_paid_at is not None
    }
    assert all(n == 1 for n in (listed + taken).values())
    assert set(listed) <= set(reveni)
    assert set(reveni) <= set(listed) | set(taken)
    for ln in centra:
        assert ln.match in (Match.UNMATCHED, Match.EARLIER_INVOICE)
    for currency, t in tied.items():
        assert t.centra_credits_minor == sum(
            c.amount_minor for c in reveni.values() if c.currency == currency
        )
        assert t.centra_unmatched_minor == sum(
            ln.amount_minor
            for ln in centra
            if ln.currency == currency and ln.match is Match.UNMATCHED
        )
    assert set(tied) == {ln.currency for ln in disbursements} | {
        c.currency for c in reveni.values()
    }


@settings(max_examples=100, deadline=None)
@given(worlds(), st.randoms(use_true_random=False))
def test_the_order_of_the_inputs_does_not_matter(
    world: tuple[InvoiceDoc | None, list[CentraCredit], dict[str, ReturnFacts]],
    shuffler: random.Random,
) -> None:
    invoice, credits, facts = world
    expected = settle(invoice, credits, facts)
    shuffle = shuffler.shuffle
    credits = list(credits)
    shuffle(credits)
    keys = list(facts)
    shuffle(keys)
    if invoice is not None:
        lines = list(invoice.lines)
        shuffle(lines)
        invoice = InvoiceDoc(source=invoice.source, period=invoice.period, lines=tuple(lines))
    assert settle(invoice, credits, {k: facts[k] for k in keys}) == expected
