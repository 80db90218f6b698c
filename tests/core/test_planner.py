"""The planner (pure core): one example per rule of docs/architecture.md#the-life-of-a-return."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import cast

from builders import (
    T0,
    item,
    ledger_row,
    own_part,
    own_return,
    priced_order,
    refund_entry,
    reveni_refund,
    reveni_return,
    reveni_return_of,
)

from returnbridge.connectors.centra.client import CentraClient
from returnbridge.connectors.centra.models import Order, PaymentEntry
from returnbridge.connectors.centra.models import Return as CentraReturn
from returnbridge.connectors.reveni.models import Return as ReveniReturn
from returnbridge.core.actions import (
    Action,
    CreateReturn,
    ExchangeLine,
    ExchangeOrder,
    Refund,
    Restock,
    RestockLine,
    ReturnLinePlan,
    exchange_order_number,
    exchange_order_numbers,
    return_comment,
)
from returnbridge.core.codes import Owner
from returnbridge.core.planner import PlannerConfig, ReturnPlan, plan_returns
from returnbridge.core.validation import OrderHistory
from returnbridge.ledger.records import ActionRecord
from returnbridge.sync.readback import Absent, Found, ReadBack, read_back

CONFIG = PlannerConfig(returns_warehouse_id=2)
NOW = T0 + timedelta(days=10)

# Order 7: A x2 at 10.00 (line 701), A x1 at 19.00 (702), B x1 at 5.00 (703).
# Shipment 71 (created second) holds 701 x1 (sline 7101) and 703 x1 (7103);
# shipment 72 (created first) holds 701 x1 (7201) and 702 x1 (7202).
TWO_SHIPMENTS = [(True, [(1, 1), (3, 1)]), (True, [(1, 1), (2, 1)])]


def order7() -> Order:
    return priced_order(
        7,
        [("A", 2, "10.00"), ("A", 1, "19.00"), ("B", 1, "5.00")],
        TWO_SHIPMENTS,
        shipment_minutes=[60, 0],
    )


def plan(
    returns: Sequence[ReveniReturn],
    orders: Iterable[Order | OrderHistory],
    ledger: Iterable[ActionRecord] = (),
    *,
    stock: Mapping[str, int] | None = None,
    config: PlannerConfig = CONFIG,
    now: object = NOW,
) -> dict[str, ReturnPlan]:
    histories = [o if isinstance(o, OrderHistory) else OrderHistory(o) for o in orders]
    return plan_returns(
        returns,
        {h.order.number: h for h in histories},
        {row.key: row for row in ledger},
        stock=stock or {},
        config=config,
        now=now,  # type: ignore[arg-type]
    )


def keys(p: ReturnPlan) -> list[str]:
    return [a.key for a in p.actions]


def codes(p: ReturnPlan) -> list[tuple[str, str | None]]:
    return [(e.code, e.sku) for e in p.exceptions]


def rows(
    actions: Iterable[Action], state: str = "done", ref: str | None = None
) -> list[ActionRecord]:
    return [ledger_row(a, state, ref) for a in actions]


def with_returns(order: Order, *returns: CentraReturn) -> OrderHistory:
    return OrderHistory(order, tuple(returns))


# --------------------------------------------------------------------------- 1-3: no actions


def test_a_return_failing_validation_gets_its_exceptions_and_no_actions() -> None:
    order = order7()
    plans = plan(
        [
            reveni_return_of("r1", 9999, [item("A")]),
            reveni_return_of("r2", 7, [item("ZZZ")]),
        ],
        [order],
    )
    assert codes(plans["r1"]) == [("order_not_found", None)]
    assert codes(plans["r2"]) == [("sku_not_in_order", "ZZZ")]
    assert all(not p.actions and not p.adopted and not p.complete for p in plans.values())


def test_a_return_awaiting_inspection_plans_nothing() -> None:
    for status in ("pending", "in_progress", "shipped", "received", "for_review", "on_hold"):
        ret = reveni_return_of("r1", 7, [item("A", status="pending")], status=status)
        p = plan([ret], [order7()])["r1"]
        assert (p.actions, p.exceptions, p.waiting, p.complete) == ((), (), (), False), status


def test_instant_return_not_inspected_near_the_30_day_window_is_flagged_for_ops() -> None:
    ret = reveni_return_of("r1", 7, [item("A", status="pending")], status="shipped", instant=True)
    late = plan([ret], [order7()], now=T0 + timedelta(days=27, hours=1))["r1"]
    assert codes(late) == [("instant_deadline_near", None)]
    assert late.exceptions[0].owner is Owner.OPS and "2026-10-31" in late.exceptions[0].detail
    assert not late.actions
    on_time = plan([ret], [order7()], now=T0 + timedelta(days=26, hours=23))["r1"]
    assert on_time.exceptions == ()
    past = plan([ret], [order7()], now=T0 + timedelta(days=31))["r1"]
    assert codes(past) == [("instant_deadline_near", None)]
    standard = reveni_return_of("r2", 7, [item("A", status="pending")], status="shipped")
    assert plan([standard], [order7()], now=T0 + timedelta(days=29))["r2"].exceptions == ()
    held = reveni_return_of("r3", 7, [item("A", status="pending")], status="on_hold", instant=True)
    assert codes(plan([held], [order7()], now=T0 + timedelta(days=28))["r3"]) == [
        ("instant_deadline_near", None)
    ]


def test_rejected_cancelled_and_expired_returns_write_nothing_and_leave_centra_alone() -> None:
    order = order7()
    stray = own_return(order, "r1", [(7201, 1)], rid=50)
    for status in ("rejected", "cancelled", "expired"):
        ret = reveni_return_of("r1", 7, [item("A", status="rejected")], status=status)
        p = plan([ret], [with_returns(order, stray)])["r1"]
        assert (p.actions, p.exceptions, dict(p.adopted), p.complete) == ((), (), {}, True)


# --------------------------------------------------------------------------- 4a: mapping


def test_accepted_return_creates_one_centra_return_on_the_shipment_it_was_shipped_on() -> None:
    order = priced_order(1, [("A", 2, "10.00")])
    p = plan([reveni_return_of("r1", 1, [item("A", 2)])], [order])["r1"]
    assert p.actions == (
        Action(
            key="return:r1",
            kind="create_return",
            reveni_return_id="r1",
            order_number=1,
            payload=CreateReturn(
                shipment_id=11,
                lines=(ReturnLinePlan(shipment_line_id=1101, quantity=2, sku="A"),),
                external_id="r1",
                comment="Reveni return r1",
            ),
        ),
    )
    assert p.waiting == ("restock:r1",) and not p.complete


def test_units_spread_over_several_shipments_earliest_shipment_first() -> None:
    order = order7()
    ret = reveni_return_of("r1", 7, [item("A", 2), item("B")])
    p = plan([ret], [order])["r1"]
    # Shipment 72 was created first (though its id is higher): both A go there, on its lines
    # in id order; B is only on shipment 71. One Centra return per shipment.
    assert keys(p) == ["return:r1:71", "return:r1:72"]
    payloads = [a.payload for a in p.actions]
    assert [(c.shipment_id, c.lines) for c in payloads if isinstance(c, CreateReturn)] == [
        (71, (ReturnLinePlan(7103, 1, "B"),)),
        (72, (ReturnLinePlan(7201, 1, "A"), ReturnLinePlan(7202, 1, "A"))),
    ]
    three = plan([reveni_return_of("r2", 7, [item("A", 3)])], [order])["r2"].actions
    assert [a.payload.lines for a in three] == [  # type: ignore[union-attr]
        (ReturnLinePlan(7101, 1, "A"),),
        (ReturnLinePlan(7201, 1, "A"), ReturnLinePlan(7202, 1, "A")),
    ]


def test_same_sku_on_two_lines_goes_to_the_line_whose_price_reveni_refunds() -> None:
    order = order7()
    priced = reveni_return_of("r1", 7, [item("A", unit_price="19.00")])
    payload = plan([priced], [order])["r1"].actions[0].payload
    assert isinstance(payload, CreateReturn) and payload.lines == (ReturnLinePlan(7202, 1, "A"),)
    unpriced = reveni_return_of("r2", 7, [item("A")])
    payload = plan([unpriced], [order])["r2"].actions[0].payload
    assert isinstance(payload, CreateReturn) and payload.lines == (ReturnLinePlan(7201, 1, "A"),)
    all_three = reveni_return_of("r3", 7, [item("A", 3)])
    lines = [
        line
        for action in plan([all_three], [order])["r3"].actions
        if isinstance(action.payload, CreateReturn)
        for line in action.payload.lines
    ]
    assert sorted(line.shipment_line_id for line in lines) == [7101, 7201, 7202]


def test_partial_acceptance_returns_only_the_accepted_units() -> None:
    order = priced_order(1, [("A", 3, "10.00"), ("B", 1, "5.00")])
    ret = reveni_return_of(
        "r1",
        1,
        [item("A", 3, accepted=2), item("B", status="rejected")],
        status="partially_accepted",
    )
    payload = plan([ret], [order])["r1"].actions[0].payload
    assert isinstance(payload, CreateReturn)
    assert payload.lines == (ReturnLinePlan(1101, 2, "A"),)


def test_two_returns_on_one_order_share_its_shipment_lines() -> None:
    order = order7()
    first = reveni_return_of("r1", 7, [item("A")], minutes=0)
    second = reveni_return_of("r2", 7, [item("A")], minutes=5)
    plans = plan([second, first], [order])
    assert list(plans) == ["r1", "r2"]  # (created_at, id) order, whatever the input order
    line_of = {
        rid: [ln.shipment_line_id for a in p.actions for ln in a.payload.lines]  # type: ignore[union-attr]
        for rid, p in plans.items()
    }
    assert line_of == {"r1": [7201], "r2": [7202]}
    # Once r1's Centra return exists, r2 still goes to what is left.
    centra = own_return(order, "r1", [(7201, 1)], rid=50)
    plans = plan([first, second], [with_returns(order, centra)])
    assert plans["r1"].adopted == {"return:r1": "50"}
    assert [ln.shipment_line_id for a in plans["r2"].actions[:1] for ln in a.payload.lines] == [  # type: ignore[union-attr]
        7202
    ]


def test_units_returned_by_another_centra_return_are_not_returned_again() -> None:
    order = priced_order(1, [("A", 2, "10.00")], [(True, [(1, 1)]), (True, [(1, 1)])])
    manual = own_return(order, None, [(1101, 1)], rid=40)  # made directly in Centra
    ret = reveni_return_of("r1", 1, [item("A")])
    payload = plan([ret], [with_returns(order, manual)])["r1"].actions[0].payload
    assert isinstance(payload, CreateReturn) and payload.shipment_id == 12


def test_a_ledger_only_part_of_another_return_reserves_its_lines() -> None:
    order = priced_order(1, [("A", 2, "10.00")], [(True, [(1, 1)]), (True, [(1, 1)])])
    r1 = reveni_return_of("r1", 1, [item("A")], minutes=0)
    r2 = reveni_return_of("r2", 1, [item("A")], minutes=5)
    first = plan([r1], [order])["r1"].actions
    assert first[0].payload.shipment_id == 11  # type: ignore[union-attr]
    # r1's create is in flight (not yet in Centra); r2 must not take shipment 11's line, even
    # when this run sees an older snapshot of r1 (from before it was accepted).
    stale_r1 = reveni_return_of("r1", 1, [item("A", status="pending")], status="received")
    for seen in (r1, stale_r1):
        plans = plan([seen, r2], [order], rows(first, "in_flight"))
        assert plans["r1"].actions == ()
        assert plans["r2"].actions[0].payload.shipment_id == 12  # type: ignore[union-attr]


def test_units_that_fit_nowhere_are_quantity_exceeds_shipped_and_nothing_is_created() -> None:
    order = priced_order(1, [("A", 2, "10.00")])
    # Centra already shows one unit of r1's (its ledger row lost), the other unit would have to
    # go on the same shipment, which would need a second part there: refused, nothing created.
    mine = own_return(order, "r1", [(1101, 1)], rid=50)
    other = own_return(order, None, [(1101, 1)], rid=51)
    ret = reveni_return_of("r1", 1, [item("A", 1), item("A", 1)])
    p = plan([ret], [with_returns(order, mine, other)])["r1"]
    assert codes(p) == [("quantity_exceeds_shipped", "A")] and p.actions == ()
    assert p.exceptions[0].owner is Owner.CX


def test_mapping_is_stable_once_the_ledger_has_it() -> None:
    order = order7()
    ret = reveni_return_of("r1", 7, [item("A")])
    first = plan([ret], [order])["r1"].actions
    # Meanwhile someone returned shipment 72's A directly in Centra. Re-planning the pending row
    # must keep it as it was (Centra will refuse it; a new mapping could send it twice).
    manual = own_return(order, None, [(7201, 1)], rid=40)
    again = plan([ret], [with_returns(order, manual)], rows(first, "pending"))["r1"]
    assert again.actions == first


# --------------------------------------------------------------------------- adoption, ledger


def test_a_centra_return_the_ledger_does_not_know_as_done_is_adopted_never_created_again() -> None:
    order = priced_order(1, [("A", 1, "10.00")])
    ret = reveni_return_of("r1", 1, [item("A")])
    created = plan([ret], [order])["r1"].actions
    centra = own_return(order, "r1", [(1101, 1)], rid=77)
    for ledger in (rows(created, "in_flight"), rows(created, "in_doubt"), []):
        p = plan([ret], [with_returns(order, centra)], ledger)["r1"]
        assert p.adopted == {"return:r1": "77"}
        assert keys(p) == ["restock:r1"]  # adopted counts as done: the next step is due
        assert p.actions[0].depends_on == ("return:r1",)


def test_a_part_adopted_earlier_that_centra_does_not_show_blocks_new_placement() -> None:
    # The ledger adopted `return:r1` (no payload); Centra's list lags and does not show it.
    order = priced_order(1, [("A", 1, "10.00")])
    ret = reveni_return_of("r1", 1, [item("A")])
    adopted = replace(rows(plan([ret], [order])["r1"].actions, "done", "77")[0], payload={})
    p = plan([ret], [order], [adopted])["r1"]
    assert (p.actions, p.waiting, p.complete) == ((), ("return:r1",), False)
    shown = own_return(order, "r1", [(1101, 1)], rid=77)
    assert keys(plan([ret], [with_returns(order, shown)], [adopted])["r1"]) == ["restock:r1"]


def test_units_left_after_a_lost_ledger_row_go_to_another_shipment_under_their_own_key() -> None:
    order = priced_order(1, [("A", 2, "10.00")], [(True, [(1, 1)]), (True, [(1, 1)])])
    ret = reveni_return_of("r1", 1, [item("A", 2)])
    assert keys(plan([ret], [order])["r1"]) == ["return:r1:11", "return:r1:12"]
    # Only shipment 11's part reached Centra and its ledger rows are gone.
    shown = own_return(order, "r1", [(1101, 1)], rid=77)
    p = plan([ret], [with_returns(order, shown)])["r1"]
    assert p.adopted == {"return:r1:11": "77"} and keys(p) == ["return:r1:12"]


def test_an_adopted_part_keeps_its_key_when_the_other_parts_ledger_row_is_lost() -> None:
    # Found by the stateful test: `return:r1:11` was adopted (no payload) while the return had
    # two parts; then the row of the part on shipment 12 was lost before it reached Centra.
    # Centra shows one part now, which must still be matched to the adopted key (not re-keyed
    # `return:r1`, leaving `return:r1:11` unmatched and the return waiting for ever).
    order = priced_order(1, [("A", 2, "10.00")], [(True, [(1, 1)]), (True, [(1, 1)])])
    ret = reveni_return_of("r1", 1, [item("A", 2)])
    first = plan([ret], [order])["r1"].actions
    adopted = replace(rows(first[:1], "done", "77")[0], payload={})
    shown = own_return(order, "r1", [(1101, 1)], rid=77)
    p = plan([ret], [with_returns(order, shown)], [adopted])["r1"]
    assert keys(p) == ["return:r1:12"] and p.waiting == ("restock:r1",)
    # The single-part key of an adopted part matches whichever shipment Centra shows it on.
    alone = reveni_return_of("r2", 1, [item("A")])
    single = replace(rows(plan([alone], [order])["r2"].actions, "done", "78")[0], payload={})
    shown = own_return(order, "r2", [(1201, 1)], rid=78)
    p = plan([alone], [with_returns(order, shown)], [single])["r2"]
    assert (p.waiting, keys(p)) == ((), ["restock:r2"])


def test_keys_the_executor_owns_or_finished_are_not_emitted_pending_ones_are() -> None:
    order = priced_order(1, [("A", 1, "10.00")])
    ret = reveni_return_of("r1", 1, [item("A")])
    created = plan([ret], [order])["r1"].actions
    for state in ("in_flight", "in_doubt", "failed", "blocked"):
        p = plan([ret], [order], rows(created, state))["r1"]
        assert (p.actions, p.complete) == ((), False), state
    assert plan([ret], [order], rows(created, "pending"))["r1"].actions == created
    done = plan([ret], [order], rows(created, "done", "77"))["r1"]
    assert keys(done) == ["restock:r1"]


# --------------------------------------------------------------------------- 4b: restock


def test_restock_after_every_part_is_done_one_line_per_sku_into_the_returns_warehouse() -> None:
    order = order7()
    ret = reveni_return_of("r1", 7, [item("A"), item("B"), item("A")])
    parts = plan([ret], [order])["r1"].actions
    assert keys(plan([ret], [order], rows(parts[:1], "done", "1"))["r1"]) == ["return:r1:72"]
    p = plan([ret], [order], rows(parts, "done", "1"))["r1"]
    (restock,) = p.actions
    assert restock.key == "restock:r1"
    assert restock.depends_on == ("return:r1:71", "return:r1:72")
    assert restock.payload == Restock(
        description="returnbridge restock r1",
        warehouse_id=2,
        lines=(RestockLine("A", 101, 1, 2), RestockLine("B", 102, 2, 1)),
    )


def test_no_restock_item_no_restock_action() -> None:
    order = priced_order(1, [("A", 1, "10.00")])
    ret = reveni_return_of("r1", 1, [item("A", restock=False)])
    parts = plan([ret], [order])["r1"].actions
    p = plan([ret], [order], rows(parts, "done", "5"))["r1"]
    assert (p.actions, p.waiting, p.complete) == ((), (), True)


# --------------------------------------------------------------------------- 4c: refunds


def _accepted_with_centra(
    refunds: Sequence[dict[str, object]],
    entries: Sequence[dict[str, object]] = (),
    *,
    type_: str = "refund",
    items: Sequence[dict[str, object]] | None = None,
) -> tuple[ReveniReturn, OrderHistory]:
    order = priced_order(1, [("A", 1, "10.00"), ("B", 1, "5.00")])
    ret = reveni_return_of(
        "r1", 1, items or [item("A", restock=False)], refunds=refunds, type_=type_
    )
    lines = [(1101, 1)] if items is None else [(1101, 1), (1102, 1)]
    centra = own_return(order, "r1", lines, rid=77, refunds=entries)
    return ret, with_returns(order, centra)


def test_refund_waits_until_the_centra_return_is_visible() -> None:
    order = priced_order(1, [("A", 1, "10.00")])
    ret = reveni_return_of(
        "r1", 1, [item("A", restock=False)], refunds=[reveni_refund("f1", "bank_transfer", "10.00")]
    )
    created = plan([ret], [order])["r1"].actions
    p = plan([ret], [order], rows(created, "done", "77"))["r1"]  # done, Centra not read back yet
    assert (p.actions, p.waiting) == ((), ("refund:r1:f1",))


def test_original_payment_method_refunds_through_the_psp_when_amounts_match() -> None:
    ret, history = _accepted_with_centra([reveni_refund("f1", "original_payment_method", "10.00")])
    p = plan([ret], [history])["r1"]
    assert p.adopted == {"return:r1": "77"}
    (refund,) = p.actions
    assert refund.key == "refund:r1:f1" and refund.depends_on == ("return:r1",)
    assert refund.payload == Refund(77, True, Decimal("10.00"), "EUR", "f1")


def test_refund_amount_mismatch_is_raised_for_finance_with_both_figures() -> None:
    ret, history = _accepted_with_centra([reveni_refund("f1", "original_payment_method", "9.00")])
    p = plan([ret], [history])["r1"]
    assert p.actions == () and codes(p) == [("refund_amount_mismatch", None)]
    exc = p.exceptions[0]
    assert (exc.owner, exc.amount, exc.currency) == (Owner.FINANCE, Decimal("9.00"), "EUR")
    assert "9.00" in exc.detail and "10.00" in exc.detail
    within = replace(CONFIG, refund_tolerance=Decimal("1.00"))
    assert keys(plan([ret], [history], config=within)["r1"]) == ["refund:r1:f1"]


def test_a_centra_return_holding_both_roles_of_a_mixed_return_is_compared_honestly() -> None:
    # A Centra return made before mixed returns were split (or by hand) holds the exchanged A and
    # the refunded B. Reveni refunds only B (5.00); Centra would credit 15.00: a mismatch, not a
    # silent partial PSP refund, and its units are not returned a second time.
    ret, history = _accepted_with_centra(
        [reveni_refund("f1", "original_payment_method", "5.00")],
        type_="mixed",
        items=[item("A", restock=False, exchange="A"), item("B", restock=False)],
    )
    p = plan([ret], [history], stock={"A": 5})["r1"]
    assert codes(p) == [("refund_amount_mismatch", None)]
    assert "Centra computes 15.00 EUR" in p.exceptions[0].detail
    assert [a.kind for a in p.actions] == ["exchange_order"]
    assert p.actions[0].payload.origin_return_id == 77  # type: ignore[union-attr]


def test_the_mismatch_detail_prints_money_with_the_currencys_minor_unit() -> None:
    ret, history = _accepted_with_centra([reveni_refund("f1", "original_payment_method", "9.00")])
    (centra,) = history.returns
    total = centra.grand_total.model_copy(update={"value": Decimal("10.0")})
    history = with_returns(history.order, centra.model_copy(update={"grand_total": total}))
    (exc,) = plan([ret], [history])["r1"].exceptions
    assert exc.detail == "Reveni refunds 9.00 EUR; Centra computes 10.00 EUR"


def test_instant_bank_transfer_and_store_credit_are_never_refunded_through_the_psp() -> None:
    for method, paid_by in (
        ("bank_transfer", "reveni"),
        ("store_credit", "merchant"),
        ("original_payment_method", "reveni"),
    ):
        ret, history = _accepted_with_centra(
            [reveni_refund("f1", method, "8.50", paid_by=paid_by, status="paid")]
        )
        (refund,) = plan([ret], [history])["r1"].actions
        assert refund.payload == Refund(77, False, Decimal("8.50"), "EUR", "f1"), method


def test_reveni_paid_refund_above_centras_value_is_not_recorded() -> None:
    ret, history = _accepted_with_centra([reveni_refund("f1", "bank_transfer", "12.00")])
    p = plan([ret], [history])["r1"]
    assert p.actions == () and codes(p) == [("refund_amount_mismatch", None)]


def test_refund_over_several_parts_psp_per_part_and_reveni_paid_split_exactly() -> None:
    order = order7()
    items = [item("A", restock=False), item("B", restock=False), item("A", restock=False)]
    centra = [
        own_return(order, "r1", [(7101, 1), (7103, 1)], rid=81),  # 15.00
        own_return(order, "r1", [(7201, 1)], rid=82),  # 10.00
    ]
    psp = reveni_return_of(
        "r1", 7, items, refunds=[reveni_refund("f1", "original_payment_method", "25.00")]
    )
    p = plan([psp], [with_returns(order, *centra)])["r1"]
    assert p.adopted == {"return:r1:71": "81", "return:r1:72": "82"}
    assert [(a.key, a.payload) for a in p.actions] == [
        ("refund:r1:f1:71", Refund(81, True, Decimal("15.00"), "EUR", "f1")),
        ("refund:r1:f1:72", Refund(82, True, Decimal("10.00"), "EUR", "f1")),
    ]
    paid = reveni_return_of("r1", 7, items, refunds=[reveni_refund("f1", "bank_transfer", "10.01")])
    amounts = [a.payload.amount for a in plan([paid], [with_returns(order, *centra)])["r1"].actions]  # type: ignore[union-attr]
    assert amounts == [Decimal("6.00"), Decimal("4.01")] and sum(amounts) == Decimal("10.01")


def test_a_credit_centra_already_shows_is_adopted() -> None:
    ret, history = _accepted_with_centra(
        [reveni_refund("f1", "original_payment_method", "10.00")], [refund_entry(9, "10.00")]
    )
    p = plan([ret], [history])["r1"]
    assert p.adopted == {"return:r1": "77", "refund:r1:f1": "9"}
    assert (p.actions, p.exceptions, p.complete) == ((), (), True)
    manual = refund_entry(9, "10.00", payment_method="manual", reference="f1")
    ret, history = _accepted_with_centra([reveni_refund("f1", "store_credit", "10.00")], [manual])
    assert plan([ret], [history])["r1"].adopted["refund:r1:f1"] == "9"


def test_a_failed_psp_refund_is_for_finance_and_never_retried() -> None:
    ret, history = _accepted_with_centra(
        [reveni_refund("f1", "original_payment_method", "10.00")],
        [refund_entry(9, "10.00", status="FAILED")],
    )
    p = plan([ret], [history])["r1"]
    assert p.actions == () and codes(p) == [("refund_failed_at_gateway", None)]
    assert p.exceptions[0].owner is Owner.FINANCE and not p.complete


def test_a_psp_refund_on_a_return_reveni_paid_is_a_duplicate_refund() -> None:
    ret, history = _accepted_with_centra(
        [reveni_refund("f1", "bank_transfer", "10.00")], [refund_entry(9, "10.00")]
    )
    p = plan([ret], [history])["r1"]
    assert codes(p) == [("duplicate_refund", None)] and p.actions == ()
    assert "refund:r1:f1" not in p.adopted


def _made_in_centra(history: OrderHistory, *entries: dict[str, object]) -> OrderHistory:
    """`history` with refunds someone made directly in Centra: on the order, on no return."""
    made = [PaymentEntry.model_validate(entry) for entry in entries]
    order = history.order.model_copy(
        update={"payment_history": [*history.order.payment_history, *made]}
    )
    return OrderHistory(order, history.returns)


def test_a_psp_refund_already_made_by_hand_in_centra_is_not_paid_again() -> None:
    ret, history = _accepted_with_centra([reveni_refund("f1", "original_payment_method", "10.00")])
    p = plan([ret], [_made_in_centra(history, refund_entry(55, "10.00"))])["r1"]
    assert p.actions == () and codes(p) == [("duplicate_refund", None)] and not p.complete
    exc = p.exceptions[0]
    assert (exc.owner, exc.amount, exc.currency) == (Owner.FINANCE, Decimal("10.00"), "EUR")
    assert "payment entry 55" in exc.detail and "not refund it again" in exc.detail
    assert p.held == ("refund:r1:f1",)  # an action left pending by an earlier plan is blocked
    earlier = plan([ret], [history])["r1"].actions  # planned before the refund by hand
    stale = plan(
        [ret], [_made_in_centra(history, refund_entry(55, "10.00"))], rows(earlier, "pending")
    )
    assert (stale["r1"].actions, stale["r1"].held) == ((), ("refund:r1:f1",))
    # A hand-made refund of another amount is not this one (the reconciliation reports it).
    other = _made_in_centra(
        history, refund_entry(55, "4.00"), refund_entry(56, "10.00", status="FAILED")
    )
    assert keys(plan([ret], [other])["r1"]) == ["refund:r1:f1"]


def test_a_held_refund_finance_released_is_sent_and_stays_flagged_until_credited() -> None:
    ret, history = _accepted_with_centra([reveni_refund("f1", "original_payment_method", "10.00")])
    made = _made_in_centra(history, refund_entry(55, "10.00"))
    p = plan_returns([ret], {1: made}, {}, stock={}, config=CONFIG, now=NOW, released={"r1"})["r1"]
    assert keys(p) == ["refund:r1:f1"] and p.held == ()
    assert codes(p) == [("duplicate_refund", None)] and "released by Finance" in (
        p.exceptions[0].detail
    )


def test_finance_posting_the_credit_by_hand_lets_the_return_complete() -> None:
    ret, history = _accepted_with_centra(
        [reveni_refund("f1", "original_payment_method", "10.00")], [refund_entry(9, "10.00")]
    )
    p = plan([ret], [_made_in_centra(history, refund_entry(55, "10.00"))])["r1"]
    assert p.adopted == {"return:r1": "77", "refund:r1:f1": "9"}
    assert (p.actions, p.exceptions, p.complete) == ((), (), True)


def test_a_reveni_paid_refund_is_still_recorded_over_a_refund_made_by_hand() -> None:
    # Reveni paid the customer: the non-PSP credit moves no money and records what Reveni paid;
    # the hand-made refund then repeats a credited refund, which the reconciliation reports.
    ret, history = _accepted_with_centra([reveni_refund("f1", "bank_transfer", "10.00")])
    p = plan([ret], [_made_in_centra(history, refund_entry(55, "10.00"))])["r1"]
    assert keys(p) == ["refund:r1:f1"] and p.exceptions == ()


def test_one_refund_made_by_hand_stands_for_one_reveni_refund_the_oldest() -> None:
    order = priced_order(1, [("A", 1, "10.00"), ("B", 1, "10.00")])
    psp = "original_payment_method"
    first = reveni_return_of(
        "r1", 1, [item("A", restock=False)], refunds=[reveni_refund("f1", psp, "10.00")]
    )
    second = reveni_return_of(
        "r2", 1, [item("B", restock=False)], refunds=[reveni_refund("f2", psp, "10.00", minutes=5)]
    )
    history = with_returns(
        order,
        own_return(order, "r1", [(1101, 1)], rid=77),
        own_return(order, "r2", [(1102, 1)], rid=78),
    )
    plans = plan([second, first], [_made_in_centra(history, refund_entry(55, "10.00"))])
    assert codes(plans["r1"]) == [("duplicate_refund", None)] and keys(plans["r1"]) == []
    assert codes(plans["r2"]) == [] and keys(plans["r2"]) == ["refund:r2:f2"]


def test_a_second_live_reveni_refund_is_a_duplicate_and_a_failed_one_is_ignored() -> None:
    first = reveni_refund("f1", "original_payment_method", "10.00", minutes=1)
    failed = reveni_refund("f0", "original_payment_method", "10.00", status="failed")
    ret, history = _accepted_with_centra([failed, first])
    assert keys(plan([ret], [history])["r1"]) == ["refund:r1:f1"]
    second = reveni_refund("f2", "store_credit", "10.00", minutes=2)
    ret, history = _accepted_with_centra([failed, first, second])
    p = plan([ret], [history])["r1"]
    assert keys(p) == ["refund:r1:f1"] and codes(p) == [("duplicate_refund", None)]


def test_an_exchange_only_return_has_nothing_to_credit() -> None:
    ret, history = _accepted_with_centra(
        [], type_="exchange", items=[item("A", restock=False, exchange="B")]
    )
    p = plan([ret], [history], stock={"B": 1})["r1"]
    assert [a.kind for a in p.actions] == ["exchange_order"]


# --------------------------------------------------------------------------- 4d: exchanges


def _exchange(
    rid: str = "r1", replacement: str = "B", *, minutes: int = 0, n_items: int = 1
) -> ReveniReturn:
    items = [item("A", restock=False, exchange=replacement)] * n_items
    return reveni_return_of(rid, 1, items, type_="exchange", minutes=minutes)


def test_exchange_order_after_the_return_part_is_done() -> None:
    order = priced_order(1, [("A", 2, "10.00")])
    ret = _exchange()
    created = plan([ret], [order], stock={"B": 3})["r1"]
    assert keys(created) == ["return:r1"] and created.waiting == ("exchange:r1:0",)
    p = plan([ret], [order], rows(created.actions, "done", "77"), stock={"B": 3})["r1"]
    (exchange,) = p.actions
    assert exchange.key == "exchange:r1:0" and exchange.depends_on == ("return:r1",)
    assert exchange.payload == ExchangeOrder(
        order_number=exchange_order_number("r1", 0),
        origin_order_number=1,
        origin_return_id=77,
        lines=(ExchangeLine(sku="B", quantity=1),),
        marker="returnbridge exchange r1:0",
        alternates=tuple(exchange_order_number("r1", 0, attempt=k) for k in (1, 2, 3)),
    )


def test_exchange_without_stock_is_for_cx_and_unknown_stock_waits() -> None:
    order = priced_order(1, [("A", 1, "10.00")])
    centra = own_return(order, "r1", [(1101, 1)], rid=77)
    out = plan([_exchange()], [with_returns(order, centra)], stock={"B": 0})["r1"]
    assert codes(out) == [("exchange_out_of_stock", "B")] and out.actions == ()
    assert out.exceptions[0].owner is Owner.CX
    unread = plan([_exchange()], [with_returns(order, centra)], stock={})["r1"]
    assert (unread.actions, unread.exceptions, unread.waiting) == ((), (), ("exchange:r1:0",))


def test_two_exchanges_cannot_take_the_last_unit_twice() -> None:
    order = priced_order(1, [("A", 2, "10.00")])
    centra = [
        own_return(order, "r1", [(1101, 1)], rid=77),
        own_return(order, "r2", [(1101, 1)], rid=78),
    ]
    plans = plan(
        [_exchange("r1"), _exchange("r2", minutes=1)],
        [with_returns(order, *centra)],
        stock={"B": 1},
    )
    assert keys(plans["r1"]) == ["exchange:r1:0"]
    assert codes(plans["r2"]) == [("exchange_out_of_stock", "B")]


def test_an_exchange_planned_but_not_done_holds_its_stock() -> None:
    order = priced_order(1, [("A", 2, "10.00")])
    centra = [
        own_return(order, "r1", [(1101, 1)], rid=77),
        own_return(order, "r2", [(1101, 1)], rid=78),
    ]
    history = with_returns(order, *centra)
    first = plan([_exchange("r1")], [history], stock={"B": 1})["r1"].actions
    for state in ("pending", "in_flight", "in_doubt"):
        plans = plan(
            [_exchange("r1"), _exchange("r2", minutes=1)],
            [history],
            rows(first, state),
            stock={"B": 1},
        )
        assert codes(plans["r2"]) == [("exchange_out_of_stock", "B")], state
        assert plans["r1"].actions == (first if state == "pending" else ())


def test_an_exchange_order_centra_already_has_is_adopted() -> None:
    order = priced_order(1, [("A", 1, "10.00")])
    centra = own_return(order, "r1", [(1101, 1)], rid=77)
    number = exchange_order_number("r1", 0)
    exchange = priced_order(number, [("B", 1, "0.00")])
    p = plan([_exchange()], [with_returns(order, centra), exchange], stock={"B": 0})["r1"]
    assert p.adopted == {"return:r1": "77", "exchange:r1:0": str(number)}
    assert (p.actions, p.exceptions, p.complete) == ((), (), True)


# --------------------------------------------------------------------------- 4e: mixed returns
# A mixed return refunds some items and exchanges others. Centra credits a return for all of its
# lines, so the refunded and the exchanged items go into separate Centra returns ("parts"): the
# refund is posted on, and compared with the credit of, the refund parts only.

EXCHANGE_COMMENT = return_comment("r1", exchange=True)


def _mixed(
    refunds: Sequence[dict[str, object]] = (),
    items: Sequence[dict[str, object]] | None = None,
    **kwargs: object,
) -> ReveniReturn:
    """r1 on order 1: A exchanged for X, B refunded (by default)."""
    items = items or [item("A", exchange="X"), item("B")]
    return reveni_return_of("r1", 1, items, type_="mixed", refunds=refunds, **kwargs)  # type: ignore[arg-type]


def _order1() -> Order:
    return priced_order(1, [("A", 1, "10.00"), ("B", 1, "5.00")])  # shipment 11: 1101 A, 1102 B


def test_a_mixed_return_gets_a_refund_part_and_an_exchange_part_on_one_shipment() -> None:
    order = _order1()
    ret = _mixed([reveni_refund("f1", "original_payment_method", "5.00")])
    first = plan([ret], [order], stock={"X": 1})["r1"]
    assert [(a.key, a.payload) for a in first.actions] == [
        (
            "return:r1:11",
            CreateReturn(11, (ReturnLinePlan(1102, 1, "B"),), "r1", "Reveni return r1"),
        ),
        (
            "return:r1:11:exchange",
            CreateReturn(11, (ReturnLinePlan(1101, 1, "A"),), "r1", EXCHANGE_COMMENT),
        ),
    ]
    assert sorted(first.waiting) == ["exchange:r1:0", "refund:r1:f1", "restock:r1"]
    # Both parts reached Centra (their rows still in flight): adopted, then every next step is
    # due, each on its own part. Only the refund part is credited, with exactly Reveni's 5.00.
    refund_part = own_part(order, "r1", [(1102, 1)], rid=80)
    exchange_part = own_part(order, "r1", [(1101, 1)], rid=81, exchange=True)
    history = with_returns(order, refund_part, exchange_part)
    p = plan([ret], [history], rows(first.actions, "in_flight"), stock={"X": 1})["r1"]
    assert p.adopted == {"return:r1:11": "80", "return:r1:11:exchange": "81"}
    assert p.exceptions == ()
    by_key = {a.key: a for a in p.actions}
    assert sorted(by_key) == ["exchange:r1:0", "refund:r1:f1", "restock:r1"]
    assert by_key["refund:r1:f1"].payload == Refund(80, True, Decimal("5.00"), "EUR", "f1")
    assert by_key["refund:r1:f1"].depends_on == ("return:r1:11",)
    exchange = by_key["exchange:r1:0"]
    assert exchange.depends_on == ("return:r1:11:exchange",)
    assert exchange.payload == ExchangeOrder(
        exchange_order_number("r1", 0),
        1,
        81,
        (ExchangeLine("X", 1),),
        marker="returnbridge exchange r1:0",
        alternates=exchange_order_numbers("r1", 0)[1:],
    )
    assert by_key["restock:r1"].depends_on == ("return:r1:11", "return:r1:11:exchange")
    # Settled: the refund part credited, the exchange order made; the exchange part never is.
    credited = own_part(order, "r1", [(1102, 1)], rid=80, refunds=[refund_entry(9, "5.00")])
    number = exchange_order_number("r1", 0)
    done = rows([*first.actions, by_key["restock:r1"]], "done", "1")
    settled = plan(
        [ret],
        [with_returns(order, credited, exchange_part), priced_order(number, [("X", 1, "0.00")])],
        done,
        stock={"X": 0},
    )["r1"]
    assert settled.adopted == {"refund:r1:f1": "9", "exchange:r1:0": str(number)}
    assert (settled.actions, settled.exceptions, settled.complete) == ((), (), True)


def test_the_same_sku_refunded_and_exchanged_goes_twice_on_one_shipment_line() -> None:
    order = priced_order(1, [("A", 2, "10.00")])
    ret = _mixed(
        [reveni_refund("f1", "original_payment_method", "10.00")],
        [item("A"), item("A", exchange="X")],
    )
    first = plan([ret], [order], stock={"X": 1})["r1"].actions
    assert [(a.key, a.payload.lines) for a in first] == [  # type: ignore[union-attr]
        ("return:r1:11", (ReturnLinePlan(1101, 1, "A"),)),
        ("return:r1:11:exchange", (ReturnLinePlan(1101, 1, "A"),)),
    ]
    # The exchange part's row was lost before it reached Centra; only the refund part is there.
    # It is adopted under its key, and the exchange part is planned again, under its own key.
    # The refund needs only the refund part: it is due at once.
    refund_part = own_part(order, "r1", [(1101, 1)], rid=80)
    p = plan([ret], [with_returns(order, refund_part)], stock={"X": 1})["r1"]
    assert p.adopted == {"return:r1:11": "80"}
    assert [(a.key, a.payload) for a in p.actions] == [
        ("return:r1:11:exchange", first[1].payload),
        ("refund:r1:f1", Refund(80, True, Decimal("10.00"), "EUR", "f1")),
    ]
    # Both in Centra, the ledger lost: both adopted, under the keys they were planned with.
    exchange_part = own_part(order, "r1", [(1101, 1)], rid=81, exchange=True)
    both = plan([ret], [with_returns(order, refund_part, exchange_part)], stock={"X": 1})["r1"]
    assert both.adopted == {"return:r1:11": "80", "return:r1:11:exchange": "81"}
    assert sorted(keys(both)) == ["exchange:r1:0", "refund:r1:f1", "restock:r1"]
    assert both.exceptions == ()


def test_a_mixed_return_over_two_shipments_credits_only_its_refund_parts() -> None:
    order = order7()
    # A x3 refunded: shipment 72 (created first) has 7201 and 7202, shipment 71 has 7101;
    # B exchanged: only on shipment 71, next to A's refund part there.
    ret = reveni_return_of(
        "r1",
        7,
        [item("A", 3, restock=False), item("B", exchange="X")],
        type_="mixed",
        refunds=[reveni_refund("f1", "original_payment_method", "39.00")],
    )
    first = plan([ret], [order], stock={"X": 1})["r1"].actions
    assert [(a.key, a.payload.lines) for a in first] == [  # type: ignore[union-attr]
        ("return:r1:71", (ReturnLinePlan(7101, 1, "A"),)),
        ("return:r1:71:exchange", (ReturnLinePlan(7103, 1, "B"),)),
        ("return:r1:72", (ReturnLinePlan(7201, 1, "A"), ReturnLinePlan(7202, 1, "A"))),
    ]
    centra = [
        own_part(order, "r1", [(7101, 1)], rid=81),  # 10.00
        own_part(order, "r1", [(7103, 1)], rid=82, exchange=True),  # 5.00, never credited
        own_part(order, "r1", [(7201, 1), (7202, 1)], rid=83),  # 29.00
    ]
    p = plan([ret], [with_returns(order, *centra)], rows(first), stock={"X": 1})["r1"]
    refunds = [(a.key, a.payload, a.depends_on) for a in p.actions if a.kind == "refund"]
    assert refunds == [
        ("refund:r1:f1:71", Refund(81, True, Decimal("10.00"), "EUR", "f1"), ("return:r1:71",)),
        ("refund:r1:f1:72", Refund(83, True, Decimal("29.00"), "EUR", "f1"), ("return:r1:72",)),
    ]
    (exchange,) = [a for a in p.actions if a.kind == "exchange_order"]
    assert exchange.payload.origin_return_id == 82  # type: ignore[union-attr]
    assert exchange.depends_on == ("return:r1:71:exchange",)
    # Reveni's 39.00 is compared with the refund parts' 39.00, not with the return's 44.00.
    whole = ret.model_copy(
        update={"refunds": [ret.refunds[0].model_copy(update={"amount": Decimal("44.00")})]}
    )
    mismatch = plan([whole], [with_returns(order, *centra)], rows(first), stock={"X": 1})["r1"]
    assert codes(mismatch) == [("refund_amount_mismatch", None)]
    assert "Centra computes 39.00 EUR" in mismatch.exceptions[0].detail
    assert [a.kind for a in mismatch.actions] == ["restock", "exchange_order"]


def test_partial_acceptance_of_the_exchange_item_exchanges_the_accepted_units_only() -> None:
    order = priced_order(1, [("A", 2, "10.00"), ("B", 1, "5.00")])
    ret = _mixed(
        [reveni_refund("f1", "original_payment_method", "5.00")],
        [item("A", 2, accepted=1, exchange="X"), item("B")],
        status="partially_accepted",
    )
    first = plan([ret], [order], stock={"X": 5})["r1"].actions
    assert [(a.key, a.payload.lines) for a in first] == [  # type: ignore[union-attr]
        ("return:r1:11", (ReturnLinePlan(1102, 1, "B"),)),
        ("return:r1:11:exchange", (ReturnLinePlan(1101, 1, "A"),)),
    ]
    centra = [
        own_part(order, "r1", [(1102, 1)], rid=80),
        own_part(order, "r1", [(1101, 1)], rid=81, exchange=True),
    ]
    p = plan([ret], [with_returns(order, *centra)], rows(first), stock={"X": 5})["r1"]
    by_key = {a.key: a.payload for a in p.actions}
    assert by_key["refund:r1:f1"] == Refund(80, True, Decimal("5.00"), "EUR", "f1")
    assert by_key["exchange:r1:0"].lines == (ExchangeLine("X", 1),)  # type: ignore[union-attr]


def test_a_mixed_return_with_one_role_rejected_has_one_part_under_the_plain_key() -> None:
    order = _order1()
    refund = reveni_refund("f1", "original_payment_method", "5.00")
    # The exchange item rejected: one refund part, the design's keys, credited as usual.
    only_refund = _mixed(
        [refund],
        [item("A", status="rejected", exchange="X"), item("B")],
        status="partially_accepted",
    )
    (create,) = plan([only_refund], [order])["r1"].actions
    assert create.key == "return:r1" and create.payload.comment == "Reveni return r1"  # type: ignore[union-attr]
    centra = own_part(order, "r1", [(1102, 1)], rid=80)
    p = plan([only_refund], [with_returns(order, centra)], rows([create]))["r1"]
    assert keys(p) == ["restock:r1", "refund:r1:f1"]
    # The refunded item rejected (Reveni's instant refund of it is Reveni's to recover): one
    # exchange part, never credited; its exchange order comes from it.
    paid = reveni_refund("f1", "bank_transfer", "5.00")
    only_exchange = _mixed(
        [paid],
        [item("A", exchange="X"), item("B", status="rejected")],
        status="partially_accepted",
        instant=True,
    )
    (create,) = plan([only_exchange], [order], stock={"X": 1})["r1"].actions
    assert create.key == "return:r1" and create.payload.comment == EXCHANGE_COMMENT  # type: ignore[union-attr]
    centra = own_part(order, "r1", [(1101, 1)], rid=81, exchange=True)
    p = plan([only_exchange], [with_returns(order, centra)], rows([create]), stock={"X": 1})["r1"]
    assert sorted(keys(p)) == ["exchange:r1:0", "restock:r1"] and p.exceptions == ()


def test_an_instant_mixed_refund_is_recorded_on_the_refund_part_only() -> None:
    order = _order1()
    paid = reveni_refund("f1", "bank_transfer", "5.00")
    ret = _mixed([paid], instant=True)
    first = plan([ret], [order], stock={"X": 1})["r1"].actions
    centra = [
        own_part(order, "r1", [(1102, 1)], rid=80),
        own_part(order, "r1", [(1101, 1)], rid=81, exchange=True),
    ]
    p = plan([ret], [with_returns(order, *centra)], rows(first), stock={"X": 1})["r1"]
    (refund,) = [a for a in p.actions if a.kind == "refund"]
    assert (refund.key, refund.payload) == (
        "refund:r1:f1",
        Refund(80, False, Decimal("5.00"), "EUR", "f1"),
    )
    # Reveni paying for the exchanged item too would exceed what Centra values the refunded
    # items at: not recorded.
    over = _mixed([reveni_refund("f1", "bank_transfer", "15.00")], instant=True)
    p = plan([over], [with_returns(order, *centra)], rows(first), stock={"X": 1})["r1"]
    assert codes(p) == [("refund_amount_mismatch", None)]
    assert "more than Centra's 5.00 EUR" in p.exceptions[0].detail
    # A credit on the refund part made earlier is adopted; the exchange part stays uncredited.
    manual = refund_entry(9, "5.00", payment_method="manual", reference="f1")
    centra[0] = own_part(order, "r1", [(1102, 1)], rid=80, refunds=[manual])
    p = plan([ret], [with_returns(order, *centra)], rows(first), stock={"X": 1})["r1"]
    assert p.adopted == {"refund:r1:f1": "9"} and not any(a.kind == "refund" for a in p.actions)


def test_plain_returns_keep_their_keys_and_comment() -> None:
    order = _order1()
    for items, type_ in (
        ([item("A"), item("B")], "refund"),
        ([item("A", exchange="X"), item("B", exchange="Y")], "exchange"),
    ):
        ret = reveni_return_of("r1", 1, items, type_=type_)
        (create,) = plan([ret], [order], stock={"X": 1, "Y": 1})["r1"].actions
        assert create.key == "return:r1", type_
        assert create.payload == CreateReturn(  # one Centra return holds both items
            11,
            (ReturnLinePlan(1101, 1, "A"), ReturnLinePlan(1102, 1, "B")),
            "r1",
            "Reveni return r1",
        )


class _CentraReturns:
    """The one read the `create_return` read-back makes."""

    def __init__(self, *returns: CentraReturn) -> None:
        self.rows = returns

    async def returns_by_external_id(self, ids: Iterable[str]) -> dict[str, list[CentraReturn]]:
        return {i: [r for r in self.rows if r.external_id == i] for i in ids}


def _read_back(action: Action, *shown: CentraReturn) -> ReadBack:
    return asyncio.run(read_back(cast(CentraClient, _CentraReturns(*shown)), action))


def test_read_back_tells_the_two_parts_on_one_shipment_apart_by_their_comment() -> None:
    order = _order1()
    refund_create, exchange_create = plan([_mixed()], [order], stock={"X": 1})["r1"].actions
    refund_part = own_part(order, "r1", [(1102, 1)], rid=80)
    exchange_part = own_part(order, "r1", [(1101, 1)], rid=81, exchange=True)
    assert isinstance(_read_back(exchange_create, refund_part), Absent)
    assert isinstance(_read_back(refund_create, exchange_part), Absent)
    assert _read_back(refund_create, refund_part, exchange_part) == Found(
        "80", "return 80 (PENDING)"
    )
    assert _read_back(exchange_create, exchange_part, refund_part) == Found(
        "81", "return 81 (PENDING)"
    )
    # A plain return's part is found whatever Centra's comment on it (as before the split).
    (plain,) = plan([reveni_return_of("r1", 1, [item("A")])], [order])["r1"].actions
    assert _read_back(plain, own_return(order, "r1", [(1101, 1)], rid=82)).ref == "82"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- whole plans


def test_a_settled_return_is_complete() -> None:
    ret, history = _accepted_with_centra(
        [reveni_refund("f1", "original_payment_method", "10.00")], [refund_entry(9, "10.00")]
    )
    ledger = [
        ledger_row(a, "done", "77")
        for a in plan([reveni_return_of("r1", 1, [item("A", restock=False)])], [history.order])[
            "r1"
        ].actions
    ]
    p = plan([ret], [history], ledger)["r1"]
    assert (p.actions, dict(p.adopted), p.complete) == ((), {"refund:r1:f1": "9"}, True)


def test_same_plan_for_duplicated_reordered_and_older_observations() -> None:
    order = order7()
    old = reveni_return_of("r1", 7, [item("A", status="pending")], status="received")
    new = reveni_return_of("r1", 7, [item("A"), item("B")], updated_minutes=30)
    other = reveni_return_of("r2", 7, [item("A")], minutes=3)
    expected = plan([new, other], [order])
    assert plan([other, old, new, new], [order]) == expected
    assert plan([new, other, old], [order]) == expected
    # An older snapshot alone plans nothing new, and never a second effect.
    assert plan([old, other], [order])["r1"].actions == ()


def test_legacy_reveni_return_builder_still_plans() -> None:
    order = priced_order(1001, [("TEE-M", 2, "10.00")])
    ret = reveni_return("r1", 1001, [("TEE-M", 2, "accepted")], status="accepted")
    assert keys(plan([ret], [order])["r1"]) == ["return:r1"]
