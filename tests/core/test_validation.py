"""Validation of Reveni returns against Centra order history (pure core, no HTTP)."""

from __future__ import annotations

from builders import centra_order, centra_return, reveni_return

from returnbridge.core.codes import CODES, Owner, ReturnException, owner_of
from returnbridge.core.validation import OrderHistory, validate_returns


def codes(found: dict[str, list[ReturnException]]) -> dict[str, list[tuple[str, str | None]]]:
    return {rid: [(e.code, e.sku) for e in excs] for rid, excs in found.items()}


def test_every_design_code_has_one_owner_from_the_three_teams() -> None:
    assert len(CODES) == 23
    assert {c.owner for c in CODES.values()} == set(Owner)
    assert owner_of("order_not_found") is Owner.CX
    assert owner_of("order_not_returnable") is Owner.FINANCE
    assert owner_of("sku_not_in_order") is Owner.OPS
    assert owner_of("quantity_exceeds_shipped") is Owner.CX


def test_unknown_code_is_refused_where_it_is_made() -> None:
    try:
        ReturnException("refund_wrong", "r1", 1)
    except KeyError as exc:
        assert "refund_wrong" in str(exc)
    else:
        raise AssertionError("an unknown code was accepted")


def test_valid_return_raises_nothing() -> None:
    order = centra_order(1001, [("TEE-M", 2)])
    ret = reveni_return("r1", 1001, [("TEE-M", 2)])
    assert validate_returns([ret], {1001: OrderHistory(order)}) == {"r1": []}


def test_missing_order_and_non_numeric_order_name_are_order_not_found() -> None:
    found = validate_returns(
        [reveni_return("r1", 9999, [("TEE-M", 1)]), reveni_return("r2", "#A-17", [("TEE-M", 1)])],
        {},
    )
    assert codes(found) == {"r1": [("order_not_found", None)], "r2": [("order_not_found", None)]}
    assert found["r1"][0].owner is Owner.CX and found["r1"][0].order_number == 9999
    assert found["r2"][0].order_number is None


def test_archived_and_cancelled_orders_are_not_returnable_and_stop_further_checks() -> None:
    archived = centra_order(1, [("A", 1)], status="ARCHIVED")
    cancelled = centra_order(2, [("A", 1)], status="CANCELLED")
    found = validate_returns(
        [reveni_return("r1", 1, [("ZZZ", 5)]), reveni_return("r2", 2, [("A", 1)])],
        {1: OrderHistory(archived), 2: OrderHistory(cancelled)},
    )
    assert codes(found) == {
        "r1": [("order_not_returnable", None)],
        "r2": [("order_not_returnable", None)],
    }
    assert found["r1"][0].owner is Owner.FINANCE


def test_sku_not_on_the_order_is_named() -> None:
    order = centra_order(1, [("A", 1)])
    found = validate_returns(
        [reveni_return("r1", 1, [("A", 1), ("SCARF", 1)])], {1: OrderHistory(order)}
    )
    assert codes(found) == {"r1": [("sku_not_in_order", "SCARF")]}
    assert found["r1"][0].owner is Owner.OPS


def test_quantity_counts_only_shipped_shipments() -> None:
    order = centra_order(
        1, [("TEE", 1), ("JEANS", 2)], shipments=[(True, [(1, 1), (2, 1)]), (False, [(2, 1)])]
    )
    found = validate_returns([reveni_return("r1", 1, [("JEANS", 2)])], {1: OrderHistory(order)})
    assert codes(found) == {"r1": [("quantity_exceeds_shipped", "JEANS")]}
    assert "shipped 1" in found["r1"][0].detail


def test_same_sku_on_two_lines_sums_both_lines() -> None:
    order = centra_order(1, [("TEE", 1, "29.00"), ("TEE", 1, "19.00")])
    ok = validate_returns([reveni_return("r1", 1, [("TEE", 2)])], {1: OrderHistory(order)})
    too_many = validate_returns([reveni_return("r1", 1, [("TEE", 3)])], {1: OrderHistory(order)})
    assert codes(ok) == {"r1": []}
    assert codes(too_many) == {"r1": [("quantity_exceeds_shipped", "TEE")]}


def test_two_items_of_one_sku_in_one_return_are_added_up() -> None:
    order = centra_order(1, [("TEE", 2)])
    found = validate_returns(
        [reveni_return("r1", 1, [("TEE", 1), ("TEE", 2)])], {1: OrderHistory(order)}
    )
    assert codes(found) == {"r1": [("quantity_exceeds_shipped", "TEE")]}


def test_second_return_on_an_order_gets_only_what_the_first_left() -> None:
    order = centra_order(1, [("DRESS", 3)])
    first = reveni_return("a", 1, [("DRESS", 2)], minutes=0)
    second = reveni_return("b", 1, [("DRESS", 2)], minutes=5)
    found = validate_returns([second, first], {1: OrderHistory(order)})  # input order irrelevant
    assert codes(found) == {"a": [], "b": [("quantity_exceeds_shipped", "DRESS")]}


def test_an_inspected_return_claims_only_its_accepted_units() -> None:
    order = centra_order(1, [("DRESS", 2)])
    first = reveni_return("a", 1, [("DRESS", 2, "accepted", 1)], status="accepted")
    second = reveni_return("b", 1, [("DRESS", 1)], minutes=5)
    assert codes(validate_returns([first, second], {1: OrderHistory(order)})) == {"a": [], "b": []}


def test_rejected_cancelled_and_expired_returns_claim_nothing_and_raise_nothing() -> None:
    order = centra_order(1, [("DRESS", 1)])
    returns = [
        reveni_return("x", 1, [("DRESS", 1), ("NOPE", 1)], status="cancelled"),
        reveni_return("y", 1, [("DRESS", 1)], status="expired", minutes=1),
        reveni_return("z", 1, [("DRESS", 1, "rejected")], status="rejected", minutes=2),
        reveni_return("ok", 1, [("DRESS", 1)], minutes=3),
    ]
    assert codes(validate_returns(returns, {1: OrderHistory(order)})) == {
        "x": [],
        "y": [],
        "z": [],
        "ok": [],
    }
    # A withdrawn return on a missing order raises nothing either: nothing will be written.
    assert validate_returns([reveni_return("c", 9, [("A", 1)], status="cancelled")], {}) == {
        "c": []
    }


def test_centra_returns_made_elsewhere_count_as_already_returned() -> None:
    order = centra_order(1, [("TEE", 2)])
    manual = centra_return(order, [("TEE", 1)], external_id=None)
    found = validate_returns(
        [reveni_return("r1", 1, [("TEE", 2)])], {1: OrderHistory(order, [manual])}
    )
    assert codes(found) == {"r1": [("quantity_exceeds_shipped", "TEE")]}
    assert "1 already returned or claimed, 1 left" in found["r1"][0].detail


def test_a_returns_own_centra_return_is_not_counted_twice() -> None:
    order = centra_order(1, [("TEE", 2)])
    own = centra_return(order, [("TEE", 2)], external_id="r1")
    ret = reveni_return("r1", 1, [("TEE", 2, "accepted")], status="accepted")
    assert codes(validate_returns([ret], {1: OrderHistory(order, [own])})) == {"r1": []}


def test_centra_return_of_a_rejected_reveni_return_still_counts() -> None:
    order = centra_order(1, [("TEE", 1)])
    stale = centra_return(order, [("TEE", 1)], external_id="gone")
    rejected = reveni_return("gone", 1, [("TEE", 1, "rejected")], status="rejected")
    later = reveni_return("new", 1, [("TEE", 1)], minutes=9)
    found = validate_returns([rejected, later], {1: OrderHistory(order, [stale])})
    assert codes(found) == {"gone": [], "new": [("quantity_exceeds_shipped", "TEE")]}


def test_summary_row_has_the_contract_keys() -> None:
    row = ReturnException("order_not_returnable", "r2", 1002, detail="x").as_summary()
    assert {"code", "owner", "order_number", "reveni_return_id", "sku", "status"} <= set(row)
    assert row["owner"] == "finance" and row["status"] == "open"
