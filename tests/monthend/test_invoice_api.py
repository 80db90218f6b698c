"""Reveni's invoices from the API, normalised into an `InvoiceDoc`: the simulated Reveni's own
invoices (in every money format the connector reads), hand-written wire dicts, several invoices
in one period, and an amount finer than its currency's minor unit refused."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.connectors.reveni.models import Invoice, wire_context
from returnbridge.monthend.invoice import invoice_from_api, summarize_invoice
from returnbridge.monthend.model import InvoiceKind, InvoiceLine
from returnbridge.simulators.reveni import invoices
from returnbridge.simulators.reveni.records import ItemRec, RefundRec, ReturnRec, StatusChange

OCT = datetime(2026, 10, 5, 10, tzinfo=UTC)
NOW = datetime(2026, 10, 30, 12, tzinfo=UTC)


def rec(rid: str, order: int, amount: str, currency: str, *, covered: bool = False) -> ReturnRec:
    """An instant return whose refund Reveni paid in October (covered: rejected after)."""
    return ReturnRec(
        id=rid,
        order_number=order,
        order_external_id=None,
        type="refund",
        instant=True,
        status="rejected" if covered else "accepted",
        currency=currency,
        customer_email=None,
        created_at=OCT,
        updated_at=OCT,
        items=[ItemRec("i1", "TEE", 1, None, None, Decimal(amount), currency)],
        tracking_number="T1",
        refunds=[
            RefundRec(
                f"rf_{rid}", "bank_transfer", Decimal(amount), currency, "paid", "reveni", OCT
            )
        ],
        changes=[StatusChange("shipped", OCT.replace(day=7))],
        covered_at=OCT.replace(day=20) if covered else None,
    )


RETURNS = [
    rec("r_1", 1001, "49.95", "EUR"),
    rec("r_2", 1002, "399.00", "SEK"),
    rec("r_3", 1003, "25.00", "EUR", covered=True),
]


def simulated(inferred: ReveniInferred, period: str = "2026-10") -> Invoice:
    data = invoices.invoice(RETURNS, "store_1", period, NOW, inferred)
    assert data is not None
    # as the client reads it: over JSON, numbers decoded as Decimal
    decoded = json.loads(json.dumps(data), parse_float=Decimal)
    return Invoice.model_validate(decoded, context=wire_context(inferred))


@pytest.mark.parametrize("money_format", ["decimal_string", "number", "minor_units"])
def test_the_simulated_invoice_normalises_in_every_money_format(money_format: str) -> None:
    inferred = ReveniInferred(money_format=money_format)
    wire = simulated(inferred)
    doc = invoice_from_api([wire], "2026-10")
    assert doc is not None
    assert (doc.source, doc.period, doc.invoice_id) == ("reveni-api", "2026-10", wire.id)
    assert [line.row for line in doc.lines] == list(range(1, len(wire.lines) + 1))
    disbursed = [
        (line.return_id, line.order_number, line.amount_minor, line.currency)
        for line in doc.lines
        if line.kind is InvoiceKind.DISBURSEMENT
    ]
    assert sorted(disbursed) == [
        ("r_1", 1001, 4995, "EUR"),
        ("r_2", 1002, 39900, "SEK"),
        ("r_3", 1003, -2500, "EUR"),
        ("r_3", 1003, 2500, "EUR"),
    ]
    plan = doc.lines[0]
    assert plan == InvoiceLine(
        row=1,
        kind=InvoiceKind.PLAN,
        amount_minor=29900,
        currency="EUR",
        vat_rate=Decimal(21),
        event_date=date(2026, 10, 1),
    )
    # the simulated invoice states its totals, and they are the sum of its lines
    summary = summarize_invoice(doc)
    assert doc.stated_totals == {c: int(v.scaleb(2)) for c, v in wire.totals.items()}
    assert {t.currency: t.agrees for t in summary.totals} == {"EUR": True, "SEK": True}


def test_the_summary_by_kind_and_currency() -> None:
    doc = invoice_from_api([simulated(ReveniInferred())], "2026-10")
    assert doc is not None
    summary = summarize_invoice(doc)
    rows = [(t.kind, t.currency, t.lines, t.net_minor, t.vat_minor) for t in summary.by_kind]
    assert rows == [
        (InvoiceKind.PLAN, "EUR", 1, 29900, 6279),
        (InvoiceKind.TRANSACTION_FEE, "EUR", 3, 270, 57),  # 19 each, rounded per line
        (InvoiceKind.INSTANT_TRANSACTION_FEE, "EUR", 3, 450, 96),  # 31.5 -> 32 each
        (InvoiceKind.REVERSE_LOGISTICS_FEE, "EUR", 3, 1485, 312),  # 103.95 -> 104 each
        (InvoiceKind.DISBURSEMENT, "EUR", 3, 4995, 0),
        (InvoiceKind.DISBURSEMENT, "SEK", 1, 39900, 0),
    ]
    eur, sek = summary.totals
    assert (eur.fees_net_minor, eur.vat_minor, eur.disbursements_minor) == (32105, 6744, 4995)
    assert eur.gross_minor == eur.stated_gross_minor == 32105 + 6744 + 4995
    assert (sek.fees_net_minor, sek.vat_minor, sek.gross_minor) == (0, 0, 39900)
    assert summary.invoice_id == doc.invoice_id and summary.source == "reveni-api"


WIRE: dict[str, Any] = {
    "id": "inv_1",
    "period_start": "2026-10-01",
    "period_end": "2026-10-31",
    "currency": "EUR",
    "lines": [
        {"kind": "plan", "amount": "299.00", "currency": "EUR", "vat_rate": "21"},
        {
            "kind": "disbursement",
            "return_id": "r_1",
            "order_number": "1001",
            "amount": "49.95",
            "currency": "SEK",
            "event_date": "2026-10-05",
        },
        {
            "kind": "disbursement",
            "return_id": "r_2",
            "order_number": "#1002",
            "amount": "1.00",
            "currency": "EUR",
        },
        {
            "kind": "disbursement",
            "return_id": "r_3",
            "order_number": "SHOP-7",
            "amount": "1.00",
            "currency": "EUR",
        },
        {
            "kind": "disbursement",
            "return_id": "r_4",
            "order_number": "\u0661\u0662",
            "amount": "1.00",
            "currency": "EUR",
        },
    ],
    "totals": {"EUR": "364.79", "SEK": "49.95"},
    "status": "open",
}


def wire(**changes: Any) -> Invoice:
    return Invoice.model_validate({**WIRE, **changes})


def test_hand_written_wire_lines() -> None:
    doc = invoice_from_api([wire()], "2026-10")
    assert doc is not None
    assert doc.lines[1] == InvoiceLine(
        row=2,
        kind=InvoiceKind.DISBURSEMENT,
        amount_minor=4995,
        currency="SEK",
        return_id="r_1",
        order_number=1001,
        event_date=date(2026, 10, 5),
    )
    # order numbers: digits (a leading "#" as OrderRef reads it) or None; never non-ASCII digits
    assert [line.order_number for line in doc.lines] == [None, 1001, 1002, None, None]
    assert doc.stated_totals == {"EUR": 36479, "SEK": 4995}
    assert summarize_invoice(doc).totals[0].agrees is True


def test_no_invoice_for_the_period_is_none() -> None:
    assert invoice_from_api([], "2026-10") is None
    assert invoice_from_api([wire()], "2026-11") is None


def test_invoices_of_other_periods_are_left_out() -> None:
    september = wire(id="inv_0", period_start="2026-09-01", period_end="2026-09-30")
    doc = invoice_from_api([september, wire()], "2026-10")
    assert doc is not None and doc.invoice_id == "inv_1" and len(doc.lines) == 5


def test_several_invoices_in_a_period_are_one_document() -> None:
    correction = wire(
        id="inv_2",
        lines=[{"kind": "minimum_fee_adjustment", "amount": "-10.00", "currency": "EUR"}],
        totals={"EUR": "-12.10"},
    )
    doc = invoice_from_api([wire(), correction], "2026-10")
    assert doc is not None
    assert doc.invoice_id == "inv_1+inv_2"
    assert len(doc.lines) == 6
    assert (doc.lines[-1].row, doc.lines[-1].amount_minor) == (1, -1000)  # its own invoice's row
    assert doc.stated_totals == {"EUR": 36479 - 1210, "SEK": 4995}


def test_an_invoice_with_no_lines_is_still_the_invoice() -> None:
    doc = invoice_from_api([wire(lines=[], totals={})], "2026-10")
    assert doc is not None and doc.lines == () and doc.stated_totals == {}
    assert summarize_invoice(doc).by_kind == () and summarize_invoice(doc).totals == ()


def test_a_finer_amount_is_refused_naming_the_invoice_and_line() -> None:
    lines = [*WIRE["lines"][:2], {"kind": "plan", "amount": "299.005", "currency": "EUR"}]
    with pytest.raises(ValueError) as info:
        invoice_from_api([wire(lines=lines)], "2026-10")
    assert str(info.value) == (
        "invoice inv_1 line 3: amount 299.005 EUR is finer than a EUR minor unit (2 decimals)"
    )


def test_a_finer_amount_in_a_zero_decimal_currency_is_refused() -> None:
    lines = [{"kind": "disbursement", "return_id": "r_1", "amount": "100.5", "currency": "JPY"}]
    with pytest.raises(ValueError, match=r"line 1: amount 100\.5 JPY .* \(no decimals\)"):
        invoice_from_api([wire(lines=lines)], "2026-10")


def test_a_finer_stated_total_is_refused() -> None:
    with pytest.raises(ValueError, match=r"invoice inv_1 totals: 1\.001 EUR is finer"):
        invoice_from_api([wire(totals={"EUR": "1.001"})], "2026-10")


def test_a_vat_rate_outside_a_percent_is_refused() -> None:
    lines = [{"kind": "plan", "amount": "1.00", "currency": "EUR", "vat_rate": "121"}]
    with pytest.raises(ValueError, match="invoice inv_1 line 1: vat_rate 121"):
        invoice_from_api([wire(lines=lines)], "2026-10")


def test_a_bad_period_is_refused() -> None:
    with pytest.raises(ValueError, match="period: expected YYYY-MM"):
        invoice_from_api([wire()], "10/2026")


def test_reveni_s_billing_timezone_must_be_a_known_zone() -> None:
    """The invoice's period is read in it (the settlement's "earlier invoice"): a typo is a
    settings error naming it, not a crash on the 1st."""
    from pydantic import ValidationError

    from returnbridge.connectors.reveni.inferred import ReveniBilling

    assert ReveniBilling(timezone="Europe/Madrid").timezone == "Europe/Madrid"
    with pytest.raises(ValidationError, match="unknown timezone 'Europe/Madird'"):
        ReveniBilling(timezone="Europe/Madird")
