"""The facts the planner puts on the exceptions it raises (core/codes.py `FACTS`): the other side of
a money mismatch and the deadline of an instant return, what a digest shows its owner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from builders import T0, item, own_return, priced_order, reveni_refund, reveni_return_of

from returnbridge.connectors.centra.models import Order
from returnbridge.connectors.reveni.models import Return as ReveniReturn
from returnbridge.core.codes import FACTS
from returnbridge.core.planner import PlannerConfig, ReturnPlan, centra_side, plan_returns
from returnbridge.core.validation import OrderHistory

CONFIG = PlannerConfig(returns_warehouse_id=2)


def plan(ret: ReveniReturn, history: OrderHistory, now: datetime) -> ReturnPlan:
    return plan_returns(
        [ret], {history.order.number: history}, {}, stock={}, config=CONFIG, now=now
    )[ret.id]


def accepted(
    refund: dict[str, object], order: Order | None = None
) -> tuple[ReveniReturn, OrderHistory]:
    order = order or priced_order(1, [("A", 1, "10.00"), ("B", 1, "5.00")])
    ret = reveni_return_of("r1", 1, [item("A", restock=False)], refunds=[refund])
    centra = own_return(order, "r1", [(1101, 1)], rid=77)
    return ret, OrderHistory(order, (centra,))


def test_a_psp_mismatch_carries_centras_computed_credit() -> None:
    ret, history = accepted(reveni_refund("f1", "original_payment_method", "9.00"))
    (exc,) = plan(ret, history, T0 + timedelta(days=10)).exceptions
    assert exc.code == "refund_amount_mismatch"
    assert (exc.amount, exc.currency) == (Decimal("9.00"), "EUR")  # Reveni's side
    assert dict(exc.facts) == {"centra_amount": "10.00", "centra_currency": "EUR"}
    assert {name for name, _ in exc.facts} <= set(FACTS)


def test_a_reveni_paid_refund_above_centras_value_carries_that_value() -> None:
    ret, history = accepted(reveni_refund("f1", "bank_transfer", "12.00"))
    (exc,) = plan(ret, history, T0 + timedelta(days=10)).exceptions
    assert exc.code == "refund_amount_mismatch"
    assert dict(exc.facts) == {"centra_amount": "10.00", "centra_currency": "EUR"}


def test_a_refund_in_another_currency_names_the_orders_currency() -> None:
    ret, history = accepted(
        reveni_refund("f1", "original_payment_method", "100.00", currency="SEK")
    )
    (exc,) = plan(ret, history, T0 + timedelta(days=10)).exceptions
    assert (exc.amount, exc.currency) == (Decimal("100.00"), "SEK")
    assert dict(exc.facts) == {"centra_amount": "10.00", "centra_currency": "EUR"}


def test_the_centra_side_has_the_currencys_minor_unit_digits() -> None:
    assert centra_side(Decimal("10"), "EUR") == (
        ("centra_amount", "10.00"),
        ("centra_currency", "EUR"),
    )
    assert dict(centra_side(Decimal("1500"), "JPY"))["centra_amount"] == "1500"


def test_the_facts_are_not_part_of_the_identity() -> None:
    ret, history = accepted(reveni_refund("f1", "original_payment_method", "9.00"))
    (exc,) = plan(ret, history, T0 + timedelta(days=10)).exceptions
    assert exc.key == ("refund_amount_mismatch", "r1", 1, None)


def test_an_instant_deadline_carries_the_deadline_in_utc() -> None:
    ret = reveni_return_of(
        "r1", 7, [item("A", status="pending")], status="shipped", instant=True, minutes=90
    )
    order = priced_order(7, [("A", 1, "10.00")])
    near = plan(ret, OrderHistory(order), T0 + timedelta(days=28))
    (exc,) = near.exceptions
    assert exc.code == "instant_deadline_near"
    deadline = datetime.fromisoformat(dict(exc.facts)["deadline"])
    assert deadline == T0 + timedelta(minutes=90) + timedelta(days=CONFIG.instant_window_days)
    assert deadline.utcoffset() == timedelta(0)
    assert dict(exc.facts)["deadline"] == deadline.astimezone(UTC).isoformat()
    # past the window: still raised, with the same deadline
    (late,) = plan(ret, OrderHistory(order), T0 + timedelta(days=31)).exceptions
    assert late.facts == exc.facts
