"""The gap rules, one at a time: each finds its gap, and nothing on consistent data.

Every test starts from a world where both systems agree (`World.done`), then takes away or adds
the one thing the rule is about. Partial returns, two returns on one order, the same SKU on two
lines at two prices and several currencies are covered where they change the answer.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import polars as pl
import pytest
from reconcile_builders import NOW, Item, World

from returnbridge.core.actions import exchange_order_number
from returnbridge.reconcile.rules import RULES, GapConfig, compute_gaps
from returnbridge.reconcile.tables import GAPS

TEE, JEANS = "TEE-BLK-M", "JEANS-32"


def gaps(world: World, *, explained: pl.DataFrame | None = None, **config: object) -> pl.DataFrame:
    return compute_gaps(
        world.snapshot(),
        config=GapConfig(**config),
        now=NOW,
        explained=explained,  # type: ignore[arg-type]
    )


def open_exception(code: str, rid: str, order: int) -> pl.DataFrame:
    return pl.DataFrame({"code": [code], "reveni_return_id": [rid], "order_number": [order]})


def found(world: World, **config: object) -> list[tuple[object, ...]]:
    frame = gaps(world, **config)
    return sorted(
        frame.select("code", "reveni_return_id", "order_number", "sku", "amount_minor").rows()
    )


def test_a_consistent_world_has_no_gaps() -> None:
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE, 2)], refund=59800)
    w.order(1002, currency="EUR")
    w.done("ret_2", 1002, [Item(TEE, accepted=1, quantity=2, price=2500)], refund=2500,
           currency="EUR", method="bank_transfer", paid_by="reveni")  # fmt: skip
    w.order(1003)
    w.done("ret_3", 1003, [Item(TEE), Item(JEANS, exchange_sku="JEANS-34")], refund=29900)
    assert found(w) == []
    assert gaps(w).schema == GAPS


def test_every_rule_is_registered_under_a_code_with_an_owner() -> None:
    assert set(RULES) == {
        "return_missing",
        "refund_missing",
        "refund_amount_mismatch",
        "duplicate_refund",
        "unmatched_centra_refund",
        "refund_failed_at_gateway",
        "refund_pending_too_long",
        "restock_missing",
        "restock_duplicated",
        "exchange_order_missing",
        "exchange_not_zero_value",
        "instant_deadline_near",
    }


# ------------------------------------------------------------------------------ return_missing


def test_return_missing_when_no_centra_return_carries_the_id() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(TEE)], refund=29900)
    got = gaps(w).filter(pl.col("code") == "return_missing")
    assert got.select("reveni_return_id", "order_number", "owner", "fixable").rows() == [
        ("ret_1", 1001, "ops", True)
    ]
    assert got["age_days"].to_list() == [3]


def test_return_missing_waits_for_the_grace_period_and_for_acceptance() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_new", 1001, [Item(TEE)], updated_at=NOW - timedelta(minutes=5))
    w.reveni("ret_transit", 1001, [Item(TEE)], status="shipped")
    w.reveni("ret_rejected", 1001, [Item(TEE, accepted=0)], status="rejected")
    w.reveni("ret_partial_none", 1001, [Item(TEE, accepted=0)], status="partially_accepted")
    assert found(w) == []


def test_return_missing_is_not_raised_for_an_order_centra_cannot_return() -> None:
    w = World()
    w.order(1001, status="ARCHIVED")
    w.reveni("ret_1", 1001, [Item(TEE)])
    w.reveni("ret_2", 4040, [Item(TEE)])  # Centra has no order 4040: order_not_found's domain
    assert found(w) == []


def test_two_returns_on_one_order_are_matched_each_by_its_own_id() -> None:
    w = World()
    w.order(1001)
    w.done("ret_a", 1001, [Item(TEE)], refund=29900)
    w.reveni("ret_b", 1001, [Item(TEE)], refund=29900)
    assert [(c, r) for c, r, *_ in found(w)] == [
        ("refund_missing", "ret_b"),
        ("restock_missing", "ret_b"),
        ("return_missing", "ret_b"),
    ]


# ------------------------------------------------------------------------------ refunds


def test_refund_missing_carries_reveni_amount_and_currency() -> None:
    w = World()
    w.order(1001, currency="EUR")
    cid = w.centra_return("ret_1", 1001, [(TEE, 1)], total=2500, currency="EUR")
    w.reveni("ret_1", 1001, [Item(TEE, price=2500)], refund=2500, currency="EUR")
    w.restock("ret_1", [(TEE, 1)])
    assert cid
    got = gaps(w)
    assert got.select("code", "amount_minor", "currency", "owner", "fixable").rows() == [
        ("refund_missing", 2500, "EUR", "finance", True)
    ]


def test_a_failed_reveni_refund_is_not_expected_in_centra() -> None:
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE)], refund=None)
    w.refund("ret_1", 29900, status="failed")
    assert found(w) == []


def test_a_rejected_refund_item_of_an_exchange_return_needs_no_credit() -> None:
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE, accepted=0), Item(JEANS, exchange_sku="JEANS-34")],
           refund=None, status="partially_accepted")  # fmt: skip
    w.refund("ret_1", 29900)  # Reveni recorded a refund, but no refunded item was accepted
    assert found(w) == []


def test_refund_failed_at_gateway_instead_of_missing() -> None:
    w = World()
    w.order(1001)
    cid = w.centra_return("ret_1", 1001, [(TEE, 1)], total=29900)
    w.reveni("ret_1", 1001, [Item(TEE)], refund=29900)
    w.restock("ret_1", [(TEE, 1)])
    w.credit(1001, cid, 29900, status="FAILED")
    assert found(w) == [("refund_failed_at_gateway", "ret_1", 1001, None, 29900)]


def test_a_failed_entry_followed_by_a_successful_one_is_no_gap() -> None:
    w = World()
    w.order(1001)
    cid = w.done("ret_1", 1001, [Item(TEE)], refund=29900)
    w.credit(1001, cid, 29900, status="FAILED")
    assert found(w) == []


def test_amount_mismatch_when_credited_differently() -> None:
    w = World()
    w.order(1001)
    cid = w.done("ret_1", 1001, [Item(TEE)], refund=None)
    w.refund("ret_1", 25000)
    w.credit(1001, cid, 29900)
    got = gaps(w)
    assert got.select("code", "amount_minor", "fixable").rows() == [
        ("refund_amount_mismatch", 25000, False)
    ]
    assert got["detail"][0] == "Reveni refunded 250.00 SEK; Centra credited 299.00 SEK"


def test_amount_mismatch_instead_of_missing_when_the_psp_would_refund_another_amount() -> None:
    w = World()
    w.order(1001)
    w.centra_return("ret_1", 1001, [(TEE, 1)], total=29900)
    w.reveni("ret_1", 1001, [Item(TEE)], refund=34800)  # shipping included by Reveni
    w.restock("ret_1", [(TEE, 1)])
    assert found(w) == [("refund_amount_mismatch", "ret_1", 1001, None, 34800)]


def test_refund_tolerance_is_in_each_currencys_minor_units() -> None:
    w = World()
    w.order(1001, currency="JPY")
    cid = w.done("ret_1", 1001, [Item(TEE, price=5000)], refund=None, currency="JPY")
    w.refund("ret_1", 5001, currency="JPY")
    w.credit(1001, cid, 5000, currency="JPY")
    assert [c for c, *_ in found(w)] == ["refund_amount_mismatch"]
    assert found(w, refund_tolerance=Decimal("1")) == []


def test_a_reveni_paid_refund_may_be_less_than_centras_value() -> None:
    w = World()
    w.order(1001)
    w.centra_return("ret_1", 1001, [(TEE, 1)], total=29900)
    w.reveni("ret_1", 1001, [Item(TEE)], refund=20000, method="bank_transfer", paid_by="reveni")
    w.restock("ret_1", [(TEE, 1)])
    assert found(w) == [("refund_missing", "ret_1", 1001, None, 20000)]


def test_two_credits_on_one_return_are_a_duplicate() -> None:
    w = World()
    w.order(1001)
    cid = w.done("ret_1", 1001, [Item(TEE)], refund=29900)
    w.credit(1001, cid, 29900)
    got = gaps(w)
    assert got.select("code", "owner", "fixable").rows() == [("duplicate_refund", "finance", False)]


def test_a_psp_refund_on_a_return_reveni_paid_is_a_duplicate() -> None:
    w = World()
    w.order(1001)
    cid = w.centra_return("ret_1", 1001, [(TEE, 1)], total=29900)
    w.reveni("ret_1", 1001, [Item(TEE)], refund=29900, method="bank_transfer", paid_by="reveni")
    w.restock("ret_1", [(TEE, 1)])
    w.credit(1001, cid, 29900, payment_method="adyen")
    assert [c for c, *_ in found(w)] == ["duplicate_refund"]


def test_a_refund_made_in_centra_repeating_a_credit_is_a_duplicate_not_unmatched() -> None:
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE)], refund=29900)
    w.credit(1001, None, 29900, payment_method="adyen")
    assert found(w) == [("duplicate_refund", "ret_1", 1001, None, 29900)]


def test_a_refund_made_in_centra_covers_a_reveni_refund_without_credit() -> None:
    """Not refund_missing (re-posting would pay twice) and not unmatched: it is the credit."""
    w = World()
    w.order(1001)
    w.centra_return("ret_1", 1001, [(TEE, 1)], total=29900)
    w.reveni("ret_1", 1001, [Item(TEE)], refund=29900)
    w.restock("ret_1", [(TEE, 1)])
    w.credit(1001, None, 29900)
    assert found(w) == []


def test_refunds_made_in_centra_pair_one_to_one() -> None:
    w = World()
    w.order(1001)
    for rid in ("ret_a", "ret_b"):
        w.centra_return(rid, 1001, [(TEE, 1)], total=29900)
        w.reveni(rid, 1001, [Item(TEE)], refund=29900)
        w.restock(rid, [(TEE, 1)])
    w.credit(1001, None, 29900)  # covers one of the two only
    assert [c for c, *_ in found(w)] == ["refund_missing"]


def test_unmatched_centra_refunds_sum_per_order_and_currency() -> None:
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE)], refund=29900)
    first = w.credit(1001, None, 4900)
    second = w.credit(1001, None, 1000)
    w.order(2002)
    w.credit(2002, None, 9900)  # no Reveni return on 2002: Centra's own business
    got = gaps(w)
    assert got.select("code", "order_number", "reveni_return_id", "amount_minor").rows() == [
        ("unmatched_centra_refund", 1001, None, 5900)
    ]
    assert (
        got["detail"][0]
        == f"Centra refund entries {first}, {second} have no Reveni refund behind them"
    )


def test_a_refund_on_a_centra_return_returnbridge_did_not_create_is_unmatched() -> None:
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE)], refund=29900)
    manual = w.centra_return(None, 1001, [(TEE, 1)], total=4900)
    w.credit(1001, manual, 4900)
    assert [c for c, *_ in found(w)] == ["unmatched_centra_refund"]
    w.credit(1001, manual, 29900)  # the amount of ret_1's credit again: paid twice
    assert [c for c, *_ in found(w)] == ["duplicate_refund", "unmatched_centra_refund"]


def test_a_failed_or_non_refund_entry_is_never_unmatched() -> None:
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE)], refund=29900)
    w.credit(1001, None, 4900, status="FAILED")
    w.credit(1001, None, 59800, entry_type="CAPTURE")
    assert found(w) == []


def test_two_credits_for_a_split_return_over_two_shipments_are_not_a_duplicate() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(TEE), Item(JEANS, price=49900)], refund=79800)
    a = w.centra_return("ret_1", 1001, [(TEE, 1)], total=29900, shipment=1)
    b = w.centra_return("ret_1", 1001, [(JEANS, 1)], total=49900, shipment=2)
    w.credit(1001, a, 29900)
    w.credit(1001, b, 49900)
    w.restock("ret_1", [(TEE, 1), (JEANS, 1)])
    assert found(w) == []
    w.credit(1001, b, 49900)  # a second credit on one of the parts
    assert found(w) == [("duplicate_refund", "ret_1", 1001, None, 79800)]


def test_a_restock_made_within_the_grace_period_is_not_duplicated() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(TEE)], updated_at=NOW - timedelta(minutes=5))
    w.centra_return("ret_1", 1001, [(TEE, 1)], total=29900)
    w.restock("ret_1", [(TEE, 1)])
    assert found(w) == []


# ------------------------------------------------------------------------------ restocks


def test_restock_missing_per_sku_with_partial_acceptance() -> None:
    w = World()
    w.order(1001)
    w.centra_return("ret_1", 1001, [(TEE, 1), (JEANS, 2)], total=0)
    w.reveni("ret_1", 1001, [Item(TEE, 2, accepted=1), Item(JEANS, 2)], status="partially_accepted")
    w.restock("ret_1", [(TEE, 1), (JEANS, 1)])
    got = gaps(w)
    assert got.select("code", "sku", "fixable").rows() == [("restock_missing", JEANS, True)]
    assert got["detail"][0] == "2 accepted for restock, 1 restocked"


def test_items_not_marked_restock_are_not_expected_back() -> None:
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE, restock=False)], refund=29900)
    assert found(w) == []


def test_the_same_sku_on_two_lines_restocks_as_one_sum() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(TEE, price=29900), Item(TEE, price=19900)])
    w.centra_return("ret_1", 1001, [(TEE, 1), (TEE, 1)], total=49800)
    w.restock("ret_1", [(TEE, 2)])
    assert found(w) == []


def test_restock_duplicated_by_a_second_stock_change() -> None:
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE)], refund=29900)
    w.restock("ret_1", [(TEE, 1)])
    got = gaps(w)
    assert got.select("code", "sku", "owner", "fixable").rows() == [
        ("restock_duplicated", TEE, "ops", False)
    ]
    assert got["detail"][0] == "2 restocked in 2 stock changes, 1 accepted for restock"


def test_a_restock_for_a_rejected_item_is_duplicated_stock() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(TEE, accepted=0)], status="rejected")
    w.restock("ret_1", [(TEE, 1)])
    assert [(c, s) for c, _, _, s, _ in found(w)] == [("restock_duplicated", TEE)]


# ------------------------------------------------------------------------------ exchanges


def test_exchange_order_missing_and_fixable() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(JEANS, exchange_sku="JEANS-34")])
    w.centra_return("ret_1", 1001, [(JEANS, 1)], total=49900, exchange_part=True)
    w.restock("ret_1", [(JEANS, 1)])
    got = gaps(w)
    assert got.select("code", "sku", "owner", "fixable").rows() == [
        ("exchange_order_missing", "JEANS-34", "cx", True)
    ]


def test_exchange_not_zero_value() -> None:
    w = World()
    w.order(1001, currency="DKK")
    w.reveni("ret_1", 1001, [Item(JEANS, exchange_sku="JEANS-34")], currency="DKK")
    w.centra_return("ret_1", 1001, [(JEANS, 1)], total=0, currency="DKK", exchange_part=True)
    w.restock("ret_1", [(JEANS, 1)])
    number = w.exchange_order("ret_1", total=12550, currency="DKK")
    got = gaps(w)
    assert got.select("code", "amount_minor", "currency", "owner").rows() == [
        ("exchange_not_zero_value", 12550, "DKK", "finance")
    ]
    assert got["detail"][0] == f"exchange order {number} totals 125.50 DKK"


def test_an_exchange_order_is_found_by_its_marker_under_any_candidate_number() -> None:
    """Two exchanges whose first numbers collide: the second's order is under its next
    number, marked as its own; the other exchange's order is never taken for it."""
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(JEANS, exchange_sku="JEANS-34")])
    w.centra_return("ret_1", 1001, [(JEANS, 1)], total=49900, exchange_part=True)
    w.restock("ret_1", [(JEANS, 1)])
    # another exchange's order sits under ret_1's first number
    w.order(exchange_order_number("ret_1", 0), status="CONFIRMED", total=0, exchange_of="ret_9:0")
    assert [c for c, *_ in found(w)] == ["exchange_order_missing"]
    w.exchange_order("ret_1", attempt=1)
    assert found(w) == []


def test_an_unmarked_order_under_the_first_number_counts_as_the_exchanges() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(JEANS, exchange_sku="JEANS-34")])
    w.centra_return("ret_1", 1001, [(JEANS, 1)], total=49900, exchange_part=True)
    w.restock("ret_1", [(JEANS, 1)])
    w.exchange_order("ret_1", marked=False, total=100)
    assert [(c, a) for c, _, _, _, a in found(w)] == [("exchange_not_zero_value", 100)]


def test_a_rejected_exchange_item_needs_no_order() -> None:
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE), Item(JEANS, accepted=0, exchange_sku="JEANS-34")],
           refund=29900, status="partially_accepted")  # fmt: skip
    assert found(w) == []


# ------------------------------------------------------------------------------ deadlines


def test_instant_deadline_near_only_for_uninspected_instant_returns() -> None:
    w = World()
    w.order(1001)
    near = NOW - timedelta(days=28)
    w.reveni("ret_near", 1001, [Item(TEE)], status="shipped", instant=True, awaiting=True,
             created_at=near, updated_at=near)  # fmt: skip
    w.reveni("ret_far", 1001, [Item(TEE)], status="shipped", instant=True, awaiting=True,
             created_at=NOW - timedelta(days=10))  # fmt: skip
    w.reveni("ret_std", 1001, [Item(TEE)], status="shipped", awaiting=True, created_at=near)
    got = gaps(w)
    assert got.select("code", "reveni_return_id", "owner").rows() == [
        ("instant_deadline_near", "ret_near", "ops")
    ]
    assert got["detail"][0] == "instant return not inspected; 2.0 days left of the 30-day window"


# ------------------------------------------------------------------------------ explained


def test_a_gap_explained_by_an_open_exception_is_not_raised_twice() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(TEE)], refund=29900)
    explained = pl.DataFrame(
        {
            "code": ["quantity_exceeds_shipped"],
            "reveni_return_id": ["ret_1"],
            "order_number": [1001],
        }
    )
    assert gaps(w, explained=explained).height == 0
    other = explained.with_columns(pl.lit("ret_other").alias("reveni_return_id"))
    assert gaps(w, explained=other).height == 3


def test_an_out_of_stock_exchange_explains_its_missing_order_only() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(JEANS, exchange_sku="JEANS-34")])
    w.centra_return("ret_1", 1001, [(JEANS, 1)], total=49900, exchange_part=True)
    explained = open_exception("exchange_out_of_stock", "ret_1", 1001)
    codes = gaps(w, explained=explained)["code"].to_list()
    assert codes == ["restock_missing"]


def test_unknown_rule_and_naive_now_are_refused() -> None:
    w = World()
    with pytest.raises(ValueError, match="no gap rule for"):
        compute_gaps(w.snapshot(), now=NOW, codes=["nope"])
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_gaps(w.snapshot(), now=NOW.replace(tzinfo=None))
