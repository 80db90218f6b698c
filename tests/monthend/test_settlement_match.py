"""Settlement line by line (`match_settlement`): each way a disbursement line or a Centra credit
can end, on small hand-made invoices of October 2026."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from returnbridge.monthend.model import (
    InvoiceDoc,
    InvoiceKind,
    InvoiceLine,
    Match,
    Settlement,
    SettlementLine,
    Side,
    TieOut,
)
from returnbridge.monthend.settlement import CentraCredit, ReturnFacts, match_settlement

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
IN_OCT = datetime(2026, 10, 12, 9, tzinfo=UTC)
IN_SEP = datetime(2026, 9, 20, 9, tzinfo=UTC)
IN_NOV = datetime(2026, 11, 3, 9, tzinfo=UTC)


def facts(rid: str, order: int = 1001, **changes: Any) -> ReturnFacts:
    """An accepted instant return whose refund Reveni paid in October, order in Centra."""
    base = ReturnFacts(
        reveni_return_id=rid,
        order_number=order,
        status="accepted",
        instant=True,
        awaiting_inspection=False,
        covered=False,
        order_in_centra=True,
        reveni_paid_at=IN_OCT - timedelta(days=2),
        reveni_paid_minor=4995,
        currency="EUR",
    )
    return replace(base, **changes)


def credit(
    entry: int, rid: str, amount: int, currency: str = "EUR", at: datetime = IN_OCT
) -> CentraCredit:
    return CentraCredit(entry, rid, 1001, amount, currency, at)


def disb(row: int, rid: str | None, amount: int, currency: str = "EUR") -> InvoiceLine:
    return InvoiceLine(row, InvoiceKind.DISBURSEMENT, amount, currency, return_id=rid)


def doc(*lines: InvoiceLine) -> InvoiceDoc:
    plan = InvoiceLine(99, InvoiceKind.PLAN, 29900, "EUR")
    return InvoiceDoc(source="reveni-api", period="2026-10", lines=(plan, *lines))


def settle(
    invoice: InvoiceDoc | None,
    credits: Sequence[CentraCredit] = (),
    known: Sequence[ReturnFacts] = (),
    **options: Any,
) -> Settlement:
    result = match_settlement(
        invoice,
        credits,
        {f.reveni_return_id: f for f in known},
        month_start=options.pop("month_start", START),
        month_end=options.pop("month_end", END),
        **options,
    )
    assert result.balanced
    return result


def only(result: Settlement) -> SettlementLine:
    (line,) = result.lines
    return line


def tie(result: Settlement, currency: str = "EUR") -> TieOut:
    """The split of `currency`'s tie-out (the gross and Reveni-data fields are checked by the
    tests of the independent check below)."""
    found = next(t for t in result.tie_out if t.currency == currency)
    return replace(
        found,
        covered_charged_minor=0,
        covered_credited_minor=0,
        charged_minor=0,
        reveni_paid_minor=None,
    )


# ---------------------------------------------------------------------------- matched


def test_a_disbursement_and_its_credit_match() -> None:
    result = settle(doc(disb(1, "r_1", 4995)), [credit(7, "r_1", 4995)], [facts("r_1")])
    line = only(result)
    assert (line.side, line.match, line.counterpart_minor) == (
        Side.DISBURSEMENT,
        Match.MATCHED,
        4995,
    )
    assert (line.reveni_return_id, line.order_number, line.row) == ("r_1", 1001, 1)
    assert result.exceptions == () and result.notes == ()
    assert len(result.tie_out) == 1 and tie(result) == TieOut("EUR", 4995, 4995, 0, 0, 0, 4995, 0)


def test_a_credit_posted_after_the_month_end_still_matches() -> None:
    result = settle(doc(disb(1, "r_1", 4995)), [credit(7, "r_1", 4995, at=IN_NOV)], [facts("r_1")])
    assert only(result).match is Match.MATCHED
    assert tie(result) == TieOut("EUR", 4995, 4995, 0, 0, 0, 0, 0)  # not a credit of the month


def test_the_months_credit_is_taken_before_one_from_an_earlier_month() -> None:
    credits = [credit(1, "r_1", 1000, at=IN_SEP), credit(2, "r_1", 1000)]
    result = settle(doc(disb(1, "r_1", 1000)), credits, [facts("r_1")])
    assert only(result).match is Match.MATCHED  # credit 2: nothing left on the Centra side
    assert "credit 2" in only(result).detail


def test_several_refunds_of_one_return_pair_equal_amounts_first() -> None:
    lines = doc(disb(1, "r_1", 1000), disb(2, "r_1", 2000))
    credits = [credit(1, "r_1", 1500), credit(2, "r_1", 2000)]
    result = settle(lines, credits, [facts("r_1")])
    got = [(ln.row, ln.match, ln.counterpart_minor) for ln in result.lines]
    assert got == [(1, Match.AMOUNT_DIFFERS, 1500), (2, Match.MATCHED, 2000)]
    assert tie(result) == TieOut("EUR", 3000, 2000, 0, 0, 1000, 3500, 0)


# ---------------------------------------------------------------------------- covered


def test_a_negative_disbursement_covers_the_return() -> None:
    result = settle(doc(disb(1, "r_3", 2500), disb(2, "r_3", -2500)), [], [facts("r_3")])
    assert [(ln.row, ln.match) for ln in result.lines] == [(1, Match.COVERED), (2, Match.COVERED)]
    assert "row 2" in result.lines[0].detail
    assert tie(result) == TieOut("EUR", 0, 0, 0, 0, 0)


def test_a_negative_disbursement_alone_is_covered() -> None:
    """Charged on an earlier invoice, credited on this one."""
    result = settle(doc(disb(4, "r_3", -2500)), [], [facts("r_3", status="rejected")])
    assert only(result).match is Match.COVERED
    assert tie(result) == TieOut("EUR", -2500, 0, -2500, 0, 0)


def test_a_return_the_facts_say_reveni_covers() -> None:
    """Not charged then credited: Reveni's invoice still shows the refund, nothing is due."""
    covered = facts("r_3", status="rejected", covered=True)
    result = settle(doc(disb(1, "r_3", 2500)), [], [covered])
    line = only(result)
    assert (line.match, line.counterpart_minor) == (Match.COVERED, None)
    assert "covers" in line.detail
    assert tie(result) == TieOut("EUR", 2500, 0, 2500, 0, 0)


def test_a_covered_return_that_centra_credits_anyway_is_unmatched_on_the_centra_side() -> None:
    covered = facts("r_3", status="rejected", covered=True)
    result = settle(doc(disb(1, "r_3", 2500)), [credit(5, "r_3", 2500)], [covered])
    assert [(ln.side, ln.match) for ln in result.lines] == [
        (Side.DISBURSEMENT, Match.COVERED),
        (Side.CENTRA_CREDIT, Match.UNMATCHED),
    ]
    assert "yet Centra credits it" in result.lines[1].detail
    assert tie(result) == TieOut("EUR", 2500, 0, 2500, 0, 0, 2500, 2500)


# ---------------------------------------------------------------------------- exceptions


def test_an_amount_that_differs() -> None:
    result = settle(doc(disb(1, "r_1", 4995)), [credit(7, "r_1", 4500)], [facts("r_1")])
    line = only(result)
    assert (line.match, line.amount_minor, line.counterpart_minor) == (
        Match.AMOUNT_DIFFERS,
        4995,
        4500,
    )
    assert "49.95 EUR" in line.detail and "45.00 EUR" in line.detail
    assert result.exceptions == (line,)
    assert tie(result) == TieOut("EUR", 4995, 0, 0, 0, 4995, 4500, 0)


def test_a_return_awaiting_inspection_awaits_its_credit() -> None:
    waiting = facts("r_1", status="received", awaiting_inspection=True)
    result = settle(doc(disb(1, "r_1", 4995)), [], [waiting])
    line = only(result)
    assert line.match is Match.AWAITING_CREDIT and result.exceptions == ()
    assert tie(result) == TieOut("EUR", 4995, 0, 0, 4995, 0)


@pytest.mark.parametrize(
    ("known", "reason"),
    [
        ([], "return r_1 is unknown to the warehouse"),
        ([facts("r_1", order_in_centra=False)], "no Centra order for order 1001"),
        (
            [facts("r_1", awaiting_inspection=True, status="shipped", order_in_centra=False)],
            "no Centra order for order 1001",
        ),
        ([facts("r_1")], "return accepted, but never credited in Centra"),
        ([facts("r_1", status="completed")], "return completed, but never credited"),
        ([facts("r_1", status="rejected")], "return rejected, yet disbursed and not covered"),
        ([facts("r_1", reveni_paid_at=None)], "Reveni recorded no refund it paid"),
        ([facts("r_1", status="cancelled")], "no Centra credit (return cancelled)"),
    ],
)
def test_an_unmatched_disbursement_says_why(known: list[ReturnFacts], reason: str) -> None:
    result = settle(doc(disb(1, "r_1", 4995)), [], known)
    line = only(result)
    assert line.match is Match.UNMATCHED and reason in line.detail
    assert tie(result) == TieOut("EUR", 4995, 0, 0, 0, 4995)


def test_a_credit_in_another_currency_does_not_pair() -> None:
    result = settle(doc(disb(1, "r_1", 4995)), [credit(7, "r_1", 4995, "SEK")], [facts("r_1")])
    disbursed, centra = result.lines
    assert disbursed.match is Match.UNMATCHED and "in SEK, not EUR" in disbursed.detail
    assert (centra.side, centra.match, centra.currency) == (
        Side.CENTRA_CREDIT,
        Match.UNMATCHED,
        "SEK",
    )
    assert tie(result, "SEK") == TieOut("SEK", 0, 0, 0, 0, 0, 4995, 4995)


def test_an_unknown_return_is_unmatched_and_noted() -> None:
    result = settle(doc(disb(1, "r_x", 100), disb(2, "r_y", 200), disb(3, None, 300)))
    assert [ln.match for ln in result.lines] == [Match.UNMATCHED] * 3
    assert result.lines[0].detail == "the line names no return"
    assert result.notes == (
        "2 disbursement line(s) name a return the warehouse does not know",
        "1 disbursement line(s) name no return",
    )


def test_a_currency_centra_never_saw_is_noted() -> None:
    invoice = doc(disb(1, "r_1", 4995, "NOK"), disb(2, "r_2", 100, "NOK"), disb(3, "r_3", 1))
    known = [facts("r_1"), facts("r_2"), facts("r_3")]
    result = settle(invoice, [], known, centra_currencies={"EUR", "SEK"})
    assert result.notes == ("2 invoice line(s) in NOK, a currency Centra has no order in",)
    assert settle(invoice, [], known).notes == ()  # unknown currencies: no check


# ---------------------------------------------------------------------------- the Centra side


def test_a_credit_of_a_refund_paid_before_the_month_was_on_an_earlier_invoice() -> None:
    paid_in_september = facts("r_1", reveni_paid_at=IN_SEP)
    result = settle(doc(), [credit(7, "r_1", 4995)], [paid_in_september])
    line = only(result)
    assert (line.side, line.match, line.row) == (Side.CENTRA_CREDIT, Match.EARLIER_INVOICE, None)
    assert line.event_date == IN_OCT.date() and "paid it on 2026-09-20" in line.detail
    assert tie(result) == TieOut("EUR", 0, 0, 0, 0, 0, 4995, 0)


def test_a_credit_with_no_disbursement_is_unmatched() -> None:
    result = settle(doc(), [credit(7, "r_1", 4995)], [facts("r_1")])
    line = only(result)
    assert (line.side, line.match) == (Side.CENTRA_CREDIT, Match.UNMATCHED)
    assert line.detail.startswith("credit 7: Reveni paid it on 2026-10-10")
    assert result.exceptions == (line,)
    assert tie(result) == TieOut("EUR", 0, 0, 0, 0, 0, 4995, 4995)


def test_a_credit_of_an_unknown_return_is_unmatched() -> None:
    line = only(settle(doc(), [credit(7, "r_9", 100)]))
    assert line.match is Match.UNMATCHED and "unknown to the warehouse" in line.detail


def test_a_credit_reveni_never_paid_is_left_out() -> None:
    """Store credit, say: the caller should not pass it, and it is no Reveni settlement."""
    result = settle(doc(), [credit(7, "r_1", 4995)], [facts("r_1", reveni_paid_at=None)])
    assert result.lines == () and result.tie_out == ()


def test_credits_outside_the_month_are_not_listed() -> None:
    credits = [credit(1, "r_1", 100, at=IN_SEP), credit(2, "r_1", 200, at=IN_NOV)]
    assert settle(doc(), credits, [facts("r_1")]).lines == ()


def test_the_month_is_the_callers_timezone() -> None:
    stockholm = ZoneInfo("Europe/Stockholm")
    start, end = datetime(2026, 10, 1, tzinfo=stockholm), datetime(2026, 11, 1, tzinfo=stockholm)
    first_minutes = datetime(2026, 9, 30, 22, 30, tzinfo=UTC)  # 00:30 on 1 October in Stockholm
    result = settle(
        doc(), [credit(7, "r_1", 100, at=first_minutes)], [facts("r_1")], month_start=start,
        month_end=end,
    )  # fmt: skip
    assert only(result).event_date == datetime(2026, 10, 1).date()


# ---------------------------------------------------------------------------- the whole


def test_no_invoice_matches_nothing() -> None:
    result = settle(None, [credit(7, "r_1", 4995)], [facts("r_1")])
    assert result == Settlement(
        lines=(),
        tie_out=(),
        notes=("no invoice for 2026-10: settlement not matched",),
        period="2026-10",
    )


def test_fees_are_not_settled() -> None:
    fee = InvoiceLine(1, InvoiceKind.INSTANT_TRANSACTION_FEE, 150, "EUR", return_id="r_1")
    assert settle(doc(fee), [], [facts("r_1")]) == Settlement((), (), period="2026-10")


def test_lines_come_in_one_order_whatever_the_input_order() -> None:
    lines = [
        disb(1, "r_1", 4995),
        disb(2, "r_2", 1000),
        disb(3, "r_3", -500),
        disb(4, "r_4", 700, "SEK"),
        disb(5, "r_5", 800),
        disb(6, "r_0", 50),
    ]
    credits = [
        credit(1, "r_1", 4995),
        credit(2, "r_2", 900),
        credit(3, "r_6", 300),
        credit(4, "r_7", 400),
    ]
    known = [
        facts("r_1"),
        facts("r_2"),
        facts("r_3"),
        facts("r_4", awaiting_inspection=True),
        facts("r_5", awaiting_inspection=True, reveni_paid_minor=800),
        facts("r_6"),
        facts("r_7", reveni_paid_at=IN_SEP),
    ]
    expected = settle(doc(*lines), credits, known)
    assert [(ln.side, ln.match, ln.currency, ln.reveni_return_id) for ln in expected.lines] == [
        (Side.DISBURSEMENT, Match.UNMATCHED, "EUR", "r_0"),
        (Side.DISBURSEMENT, Match.AMOUNT_DIFFERS, "EUR", "r_2"),
        (Side.DISBURSEMENT, Match.AWAITING_CREDIT, "EUR", "r_5"),
        (Side.DISBURSEMENT, Match.AWAITING_CREDIT, "SEK", "r_4"),
        (Side.DISBURSEMENT, Match.COVERED, "EUR", "r_3"),
        (Side.DISBURSEMENT, Match.MATCHED, "EUR", "r_1"),
        (Side.CENTRA_CREDIT, Match.UNMATCHED, "EUR", "r_6"),
        (Side.CENTRA_CREDIT, Match.EARLIER_INVOICE, "EUR", "r_7"),
    ]
    shuffle = random.Random(7)
    for _ in range(5):
        shuffle.shuffle(lines)
        shuffle.shuffle(credits)
        shuffle.shuffle(known)
        assert settle(doc(*lines), credits, known) == expected


def test_the_month_must_be_aware_and_forward() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        match_settlement(doc(), [], {}, month_start=START.replace(tzinfo=None), month_end=END)
    with pytest.raises(ValueError, match="not after"):
        match_settlement(doc(), [], {}, month_start=END, month_end=START)


# ---------------------------------------------------------------------------- Reveni's own data


def test_what_the_invoice_charges_is_checked_against_what_reveni_says_it_paid() -> None:
    invoice = doc(disb(1, "r_1", 4995), disb(2, "r_3", 2500), disb(3, "r_3", -2500))
    known = [facts("r_1"), facts("r_3")]
    agreed = settle(invoice, [credit(7, "r_1", 4995)], known, reveni_paid={"EUR": 7495})
    (t,) = agreed.tie_out
    assert (t.charged_minor, t.reveni_paid_minor, t.reveni_difference_minor) == (7495, 7495, 0)
    assert (t.covered_charged_minor, t.covered_credited_minor) == (2500, -2500)
    assert t.balanced and t.settled and agreed.settled

    # a disbursement line Reveni's returns data knows nothing of: the split still adds up,
    # the invoice does not agree with Reveni's own record, so it is not balanced
    padded = match_settlement(
        doc(disb(1, "r_1", 4995), disb(5, "r_1", 1000)),
        [credit(7, "r_1", 4995)],
        {"r_1": facts("r_1")},
        month_start=START,
        month_end=END,
        reveni_paid={"EUR": 4995},
    )
    (t,) = padded.tie_out
    assert t.disbursements_minor == t.matched_minor + t.unmatched_minor  # the split holds
    assert t.reveni_difference_minor == 1000
    assert not t.balanced and not padded.balanced and not padded.settled


def test_a_currency_reveni_paid_in_with_no_invoice_line_shows_the_gap() -> None:
    result = match_settlement(
        doc(), [], {}, month_start=START, month_end=END, reveni_paid={"SEK": 29900}
    )
    (t,) = result.tie_out
    assert (t.currency, t.charged_minor, t.reveni_difference_minor) == ("SEK", 0, -29900)
    assert not result.balanced


def test_balanced_but_unmatched_is_not_settled() -> None:
    result = settle(doc(disb(1, "r_1", 4995)), [], [facts("r_1")], reveni_paid={"EUR": 4995})
    (t,) = result.tie_out
    assert t.balanced and t.unmatched_minor == 4995 and not t.settled


def test_reveni_crediting_part_of_a_refund_leaves_the_rest_to_match_centra_s_credit() -> None:
    """One item of two rejected at inspection: Reveni credits 50.00 back, the brand credits the
    customer's 70.00 in Centra."""
    invoice = doc(disb(1, "r_4", 12000), disb(2, "r_4", -5000))
    result = settle(invoice, [credit(8, "r_4", 7000)], [facts("r_4", reveni_paid_minor=12000)])
    assert [(ln.side, ln.row, ln.match) for ln in result.lines] == [
        (Side.DISBURSEMENT, 2, Match.COVERED),
        (Side.DISBURSEMENT, 1, Match.MATCHED),
    ]
    assert result.exceptions == ()
    matched = result.lines[1]
    assert matched.counterpart_minor == 7000 and "credit 8" in matched.detail
    t = result.tie_out[0]
    assert (t.disbursements_minor, t.matched_minor, t.covered_minor) == (7000, 12000, -5000)
    assert t.settled


def test_a_partial_credit_with_no_matching_centra_credit_is_unmatched() -> None:
    invoice = doc(disb(1, "r_4", 12000), disb(2, "r_4", -5000))
    result = settle(invoice, [credit(8, "r_4", 12000)], [facts("r_4")])
    assert [ln.match for ln in result.lines] == [Match.AMOUNT_DIFFERS, Match.COVERED]
    assert len(result.exceptions) == 1


def test_the_invoice_period_is_reveni_s_billing_timezone_not_the_brand_s() -> None:
    """Reveni paid at 00:30 on 1 October in Stockholm, 22:30 on 30 September in UTC: billed
    on September's invoice (Reveni bills by UTC month). Centra's credit in October is a credit
    of an earlier invoice, not a credit missing a disbursement."""
    stockholm = ZoneInfo("Europe/Stockholm")
    start, end = datetime(2026, 10, 1, tzinfo=stockholm), datetime(2026, 11, 1, tzinfo=stockholm)
    paid = facts("r_1", reveni_paid_at=datetime(2026, 9, 30, 22, 30, tzinfo=UTC))
    options: dict[str, Any] = {"month_start": start, "month_end": end}
    brand_month = settle(doc(), [credit(7, "r_1", 4995)], [paid], **options)
    assert only(brand_month).match is Match.UNMATCHED  # what the brand's month alone says
    billed = settle(doc(), [credit(7, "r_1", 4995)], [paid], invoice_start=START, **options)
    assert only(billed).match is Match.EARLIER_INVOICE
    assert billed.exceptions == ()


def test_a_credit_back_that_leaves_most_of_a_refund_charged_is_not_covered() -> None:
    """5,000.00 charged, 1.00 credited back, Centra credits 89.00: over-billing, not a cover."""
    invoice = doc(disb(1, "r_5", 500000), disb(2, "r_5", -100))
    result = settle(invoice, [credit(9, "r_5", 8900)], [facts("r_5")])
    assert [ln.match for ln in result.lines] == [Match.AMOUNT_DIFFERS, Match.COVERED]
    assert result.exceptions and result.exceptions[0].counterpart_minor == 8900
    assert not result.settled


def test_a_covered_return_credited_back_only_in_part_is_unmatched() -> None:
    """Reveni covers the refund (return rejected) but credits back 1.00 of 299.00."""
    covered = facts("r_6", status="rejected", covered=True)
    result = settle(doc(disb(1, "r_6", 29900), disb(2, "r_6", -100)), [], [covered])
    assert [ln.match for ln in result.lines] == [Match.UNMATCHED, Match.COVERED]
    assert "rejected" in result.lines[0].detail
    assert tie(result).unmatched_minor == 29900


def test_a_disbursement_billed_twice_says_so() -> None:
    invoice = doc(disb(1, "r_1", 4995), disb(2, "r_1", 4995))
    result = settle(invoice, [credit(7, "r_1", 4995)], [facts("r_1")])
    (twice,) = result.exceptions
    assert twice.row == 2 and "billed again: row 1 bills the same refund" in twice.detail
    assert "credit 7" in twice.detail
    assert result.notes == ("1 invoice line(s) repeat an earlier line exactly (row 2 repeats 1): "
                            "billed twice?",)  # fmt: skip


def test_a_credited_fee_line_is_noted_and_fees_in_reveni_s_own_currency_are_not() -> None:
    credit_note = InvoiceLine(5, InvoiceKind.TRANSACTION_FEE, -90, "EUR")
    result = settle(doc(credit_note), [], [], centra_currencies={"SEK"})  # fees: EUR
    assert result.notes == ("1 fee line(s) with a negative amount, a credit (row 5)",)


def test_a_return_awaiting_inspection_billed_more_than_reveni_paid_is_unmatched() -> None:
    """5,000.00 billed for a refund Reveni's own data says was 49.95: no credit to compare
    with yet, so the line is held to what Reveni paid."""
    waiting = facts("r_2", status="pending", awaiting_inspection=True)
    result = settle(doc(disb(1, "r_2", 500000)), [], [waiting])
    line = only(result)
    assert line.match is Match.UNMATCHED
    assert "billed 5000.00 EUR where Reveni's data shows it paid 49.95 EUR" in line.detail
    assert result.exceptions == (line,)
