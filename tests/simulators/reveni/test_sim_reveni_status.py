"""The Reveni simulator's status machine, validation and refunds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from reveni_sim_support import WALK_STEPS, ReveniSimHandle, running_reveni_sim

from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.connectors.reveni.models import Return, wire_context


@pytest.fixture(scope="module")
def server() -> Iterator[ReveniSimHandle]:
    with running_reveni_sim() as handle:
        yield handle


@pytest.fixture
def reveni(server: ReveniSimHandle) -> ReveniSimHandle:
    server.reset()
    return server


def _status(reveni: ReveniSimHandle, return_id: str, status: str, **extra: Any) -> Any:
    return reveni.control.post(
        f"/_sim/returns/{return_id}/status", json={"status": status, **extra}
    )


def _validate(reveni: ReveniSimHandle, return_id: str, *items: dict[str, Any]) -> Any:
    return reveni.api.post(f"returns/{return_id}/partial_validate", json={"items": list(items)})


def _item_ids(reveni: ReveniSimHandle, return_id: str) -> list[str]:
    return [i["item_id"] for i in reveni.get_return(return_id)["return_items"]]


# ---------------------------------------------------------------------------- the walk


def test_walk_plays_histories_round_robin_with_strictly_increasing_updated_at(
    reveni: ReveniSimHandle,
) -> None:
    walked = reveni.sim_post("walk")
    assert (walked["steps"], walked["remaining"]) == (WALK_STEPS, 0)
    changes = [(c["return_id"][:8], c["status"]) for c in walked["changes"]]
    assert changes[:5] == [
        ("ret_std", "shipped"),
        ("ret_inst", "shipped"),
        ("ret_exch", "shipped"),
        ("ret_part", "received"),  # skipped shipped: a forward move may skip steps
        (changes[4][0], "in_progress"),  # the generated id, pending -> in_progress
    ]
    states = {r["id"]: r["status"] for r in reveni.listing(page_size=100)["results"]}
    assert states["ret_std"] == "accepted" and states["ret_inst"] == "rejected"
    assert states["ret_partial"] == "partially_accepted" and states["ret_exch"] == "shipped"
    stamps = sorted(r["updated_at"] for r in reveni.listing(page_size=100)["results"])
    changed = stamps[-len({c["return_id"] for c in walked["changes"]}) :]
    assert len(set(changed)) == len(changed)
    assert reveni.control.get("/_sim/clock").json()["now"] == "2026-10-15T12:00:12+00:00"
    assert reveni.sim_post("walk") == {"steps": 0, "remaining": 0, "changes": []}


def test_walk_takes_at_most_the_steps_asked(reveni: ReveniSimHandle) -> None:
    first = reveni.sim_post("walk", {"steps": 3})
    assert (first["steps"], first["remaining"]) == (3, WALK_STEPS - 3)
    assert reveni.sim_post("walk")["steps"] == WALK_STEPS - 3


def test_walk_skips_a_history_the_machine_no_longer_allows(reveni: ReveniSimHandle) -> None:
    assert _status(reveni, "ret_exch", "cancelled").status_code == 200
    changes = reveni.sim_post("walk")["changes"]
    skipped = [c for c in changes if c["return_id"] == "ret_exch"]
    assert len(skipped) == 1 and "cannot move to 'shipped'" in skipped[0]["skipped"]


def test_on_hold_returns_to_the_status_it_was_held_in(reveni: ReveniSimHandle) -> None:
    reveni.sim_post("walk", {"steps": 3})  # ret_exch is now shipped
    assert _status(reveni, "ret_exch", "on_hold").json()["status"] == "on_hold"
    refused = _status(reveni, "ret_exch", "received")
    assert refused.status_code == 400 and "allowed: ['shipped']" in refused.json()["error"]
    assert _status(reveni, "ret_exch", "shipped").json()["status"] == "shipped"
    assert _status(reveni, "ret_exch", "received").status_code == 200


def test_refused_moves_change_nothing(reveni: ReveniSimHandle) -> None:
    before = reveni.get_return("ret_std")
    for status, message in (
        ("completed", "cannot move to 'completed'"),
        ("lost", "unknown status"),
        ("in_progress", "cannot move"),
    ):
        response = _status(reveni, "ret_std", status)
        assert response.status_code == 400 and message in response.json()["error"]
    assert reveni.get_return("ret_std") == before
    assert _status(reveni, "nope", "shipped").status_code == 404
    unknown_key = reveni.control.post("/_sim/returns/ret_std/status", json={"state": "x"})
    assert unknown_key.status_code == 400


def test_terminal_statuses_are_final(reveni: ReveniSimHandle) -> None:
    assert _status(reveni, "ret_std", "accepted").status_code == 200
    assert _status(reveni, "ret_std", "completed").json()["status"] == "completed"
    response = _status(reveni, "ret_std", "on_hold")
    assert response.status_code == 400 and "'completed' is final" in response.json()["error"]


def test_a_pending_return_cannot_be_decided(reveni: ReveniSimHandle) -> None:
    pending = reveni.ids(status="pending")[0]
    assert _status(reveni, pending, "accepted").status_code == 400
    response = _validate(reveni, pending, {"item_id": _item_ids(reveni, pending)[0]})
    assert response.status_code == 400


# ---------------------------------------------------------------------------- decisions


def test_decisions_from_sim_follow_the_scenario_flags_or_explicit_items(
    reveni: ReveniSimHandle,
) -> None:
    # ret_partial's second item has accepted: false, so `accepted` contradicts the flags.
    refused = _status(reveni, "ret_partial", "accepted")
    assert refused.status_code == 400 and "every item" in refused.json()["error"]
    ok = _status(reveni, "ret_partial", "accepted", items=[{"sku": "TEE-BLK-M", "accepted": True}])
    body = ok.json()
    assert body["status"] == "accepted"
    assert [i["accepted_quantity"] for i in body["return_items"]] == [1, 1]
    # Explicit items are an API-driven decision: Σ unit price x accepted units (29 + 19).
    assert [(r["amount"], r["currency"]) for r in body["refunds"]] == [("48.00", "EUR")]


def test_rejecting_rejects_every_item_and_contradictions_are_refused(
    reveni: ReveniSimHandle,
) -> None:
    contradiction = _status(
        reveni, "ret_std", "rejected", items=[{"sku": "TEE-BLK-M", "accepted": True}]
    )
    assert contradiction.status_code == 400
    body = _status(reveni, "ret_std", "rejected").json()
    [item] = body["return_items"]
    assert (item["status"], item["accepted_quantity"], item["restock"]) == ("rejected", 0, False)
    assert body["refunds"] == []  # a rejected standard return gets no refund


def test_partial_validate_decides_items_then_the_return(reveni: ReveniSimHandle) -> None:
    exchanged, refunded = _item_ids(reveni, "ret_mixed")
    first = _validate(
        reveni, "ret_mixed", {"item_id": refunded, "quantity": 1, "status": "accepted"}
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "for_review" and body["refunds"] == []
    assert [i["status"] for i in body["return_items"]] == ["pending", "accepted"]
    assert body["return_items"][1]["restock"] is False  # the scenario's flag
    second = _validate(
        reveni,
        "ret_mixed",
        {
            "item_id": exchanged,
            "status": "rejected",
            "reject_reason": "defect",
            "reject_reason_text": "torn seam",
        },
    ).json()
    assert second["status"] == "partially_accepted"
    rejected = second["return_items"][0]
    assert (rejected["reject_reason"], rejected["reject_reason_text"]) == ("defect", "torn seam")
    [refund] = second["refunds"]
    assert (refund["method"], refund["amount"], refund["currency"]) == (
        "original_payment_method",
        "19.00",
        "EUR",
    )
    assert (refund["status"], refund["paid_by"]) == ("pending", "merchant")
    Return.model_validate(second, context=wire_context())


def test_partial_acceptance_by_quantity(reveni: ReveniSimHandle) -> None:
    created = reveni.sim_post(
        "returns",
        {
            "order_number": 1001,
            "items": [{"sku": "TEE-BLK-M", "quantity": 2}],
            "refund": {"method": "store_credit", "amount": "598.00"},
        },
    )
    [item_id] = [i["item_id"] for i in created["return_items"]]
    body = _validate(
        reveni,
        created["id"],
        {"item_id": item_id, "quantity": 1, "status": "accepted", "restock": False},
    ).json()
    assert body["status"] == "partially_accepted"
    item = body["return_items"][0]
    assert (item["status"], item["accepted_quantity"], item["restock"]) == ("accepted", 1, False)
    assert reveni.model(body).return_items[0].accepted_units == 1
    [refund] = body["refunds"]  # API-driven: 1 x 299.00, not the scenario's 598.00
    assert (refund["method"], refund["amount"], refund["currency"]) == (
        "store_credit",
        "299.00",
        "SEK",
    )
    assert (refund["status"], refund["paid_by"]) == ("paid", "merchant")


def test_full_acceptance_through_the_api(reveni: ReveniSimHandle) -> None:
    [item_id] = _item_ids(reveni, "ret_std")
    body = _validate(reveni, "ret_std", {"item_id": item_id, "status": "accepted"}).json()
    assert body["status"] == "accepted"
    assert body["return_items"][0]["accepted_quantity"] == 1
    assert body["return_items"][0]["restock"] is True


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"item_id": "nope", "status": "accepted"}], "unknown item_id"),
        ([{"item_id": "{0}", "status": "accepted"}] * 2, "decided twice"),
        ([{"item_id": "{0}", "status": "accepted", "quantity": 0}], "out of range 1..1"),
        ([{"item_id": "{0}", "status": "accepted", "quantity": 2}], "out of range 1..1"),
        ([{"item_id": "{0}", "status": "accepted", "quantity": "1"}], "expected an integer"),
        ([{"item_id": "{0}", "status": "maybe"}], "items[0].status"),
        ([{"item_id": "{0}", "status": "accepted", "restock": "yes"}], "restock"),
        ([], "non-empty list"),
        (["x"], "expected an object"),
    ],
)
def test_partial_validate_refusals(reveni: ReveniSimHandle, items: list[Any], message: str) -> None:
    [item_id] = _item_ids(reveni, "ret_std")
    before = reveni.get_return("ret_std")
    filled = [
        {k: (v.format(item_id) if isinstance(v, str) else v) for k, v in i.items()}
        if isinstance(i, dict)
        else i
        for i in items
    ]
    response = reveni.api.post("returns/ret_std/partial_validate", json={"items": filled})
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert reveni.get_return("ret_std") == before


def test_an_item_cannot_be_decided_twice_across_calls(reveni: ReveniSimHandle) -> None:
    exchanged, _ = _item_ids(reveni, "ret_mixed")
    assert _validate(reveni, "ret_mixed", {"item_id": exchanged, "status": "accepted"}).is_success
    again = _validate(reveni, "ret_mixed", {"item_id": exchanged, "status": "rejected"})
    assert again.status_code == 400 and "already accepted" in again.json()["detail"]
    assert (
        _validate(reveni, "nope", {"item_id": exchanged, "status": "accepted"}).status_code == 404
    )


def test_a_decided_return_cannot_be_validated_again(reveni: ReveniSimHandle) -> None:
    assert _status(reveni, "ret_std", "accepted").status_code == 200
    [item_id] = _item_ids(reveni, "ret_std")
    response = _validate(reveni, "ret_std", {"item_id": item_id, "status": "accepted"})
    assert response.status_code == 400 and "cannot be validated" in response.json()["detail"]


# ---------------------------------------------------------------------------- refunds


def test_instant_refunds_are_paid_at_creation_and_stay_paid_when_rejected(
    reveni: ReveniSimHandle,
) -> None:
    [refund] = reveni.get_return("ret_inst")["refunds"]
    assert (refund["method"], refund["amount"], refund["currency"]) == (
        "bank_transfer",
        "89.00",
        "EUR",
    )
    assert (refund["status"], refund["paid_by"]) == ("paid", "reveni")
    assert refund["created_at"] == "2026-10-06T10:00:00Z"
    [store_credit] = reveni.get_return("ret_nf")["refunds"]
    assert (store_credit["method"], store_credit["paid_by"], store_credit["status"]) == (
        "store_credit",
        "merchant",
        "paid",
    )
    reveni.sim_post("walk")
    after = reveni.get_return("ret_inst")
    assert after["status"] == "rejected" and after["refunds"] == [refund]


def test_standard_refunds_come_with_acceptance_for_the_scenario_amount(
    reveni: ReveniSimHandle,
) -> None:
    assert reveni.get_return("ret_std")["refunds"] == []
    reveni.sim_post("walk")
    accepted = reveni.get_return("ret_std")
    [refund] = accepted["refunds"]
    assert (refund["method"], refund["amount"], refund["currency"]) == (
        "original_payment_method",
        "299.00",
        "SEK",
    )
    assert (refund["status"], refund["paid_by"]) == ("pending", "merchant")
    assert refund["created_at"] == accepted["updated_at"]
    assert accepted["summary"]["refund_total"] == "299.00"
    partial = reveni.get_return("ret_partial")
    assert [r["amount"] for r in partial["refunds"]] == ["29.00"]
    assert [i["status"] for i in partial["return_items"]] == ["accepted", "rejected"]
    assert reveni.get_return("ret_exch")["refunds"] == []


def test_a_merchant_refund_can_be_configured_paid() -> None:
    inferred = ReveniInferred(refund_status_on_merchant_refund="paid")
    with running_reveni_sim(inferred=inferred) as reveni:
        reveni.sim_post("walk")
        assert reveni.get_return("ret_std")["refunds"][0]["status"] == "paid"


def test_refunds_added_from_sim(reveni: ReveniSimHandle) -> None:
    before = reveni.get_return("ret_exch")["updated_at"]
    body = reveni.sim_post(
        "returns/ret_exch/refunds", {"method": "bank_transfer", "amount": "5.50"}
    )
    [refund] = body["refunds"]
    assert (refund["amount"], refund["currency"], refund["paid_by"], refund["status"]) == (
        "5.50",
        "EUR",
        "reveni",
        "paid",
    )
    assert body["updated_at"] > before
    body = reveni.sim_post(
        "returns/ret_exch/refunds",
        {"method": "original_payment_method", "amount": 7, "currency": "SEK", "status": "failed"},
    )
    assert [(r["amount"], r["currency"], r["status"]) for r in body["refunds"]][1] == (
        "7.00",
        "SEK",
        "failed",
    )
    for bad in (
        {"method": "cash", "amount": "1"},
        {"method": "store_credit", "amount": "x"},
        {"method": "store_credit", "amount": 1.5},
        {"method": "store_credit", "amount": "-1"},
        {"method": "store_credit", "amount": "1", "paid_by": "me"},
    ):
        assert reveni.control.post("/_sim/returns/ret_exch/refunds", json=bad).status_code == 400


def test_money_formats_follow_the_inferred_setting() -> None:
    for money_format, price, refund in (("minor_units", 29900, 8900), ("number", 299, 89)):
        inferred = ReveniInferred(money_format=money_format)
        with running_reveni_sim(inferred=inferred) as reveni:
            std = reveni.get_return("ret_std")  # validates with the matching wire context
            assert std["return_items"][0]["unit_price"] == price
            inst = reveni.get_return("ret_inst")
            assert inst["refunds"][0]["amount"] == refund
            parsed = reveni.model(inst)
            assert str(parsed.refunds[0].amount) in ("89", "89.00")


def test_status_casing_and_partly_accepted_name_are_configurable() -> None:
    inferred = ReveniInferred(status_case="upper", partially_accepted_status="partly_accepted")
    with running_reveni_sim(inferred=inferred) as reveni:
        reveni.sim_post("walk")
        rows = reveni.api.get("returns", params={"status": "PARTLY_ACCEPTED"}).json()["results"]
        assert [(r["id"], r["status"]) for r in rows] == [("ret_partial", "PARTLY_ACCEPTED")]
        lower = reveni.api.get("returns", params={"status": "partly_accepted"}).json()["results"]
        assert lower == rows  # either casing, unless status_case_strict


# ---------------------------------------------------------------------------- creation


def test_returns_created_from_sim(reveni: ReveniSimHandle) -> None:
    body = reveni.sim_post(
        "returns",
        {
            "order_number": 1003,
            "type": "exchange",
            "items": [{"sku": "JEANS-32", "quantity": 1, "exchange_sku": "TEE-BLK-S"}],
            "history": ["pending", "in_progress"],
        },
    )
    assert len(body["id"]) == 32 and body["status"] == "pending"
    assert body["created_at"] == body["updated_at"] == "2026-10-15T12:00:00Z"
    assert body["customer"]["email"] == "clara@example.com"
    assert reveni.get_return(body["id"]) == body
    assert {"return_id": body["id"], "status": "in_progress"} in reveni.sim_post("walk")["changes"]
    tee = [{"sku": "TEE-BLK-S", "quantity": 1}]
    named = reveni.sim_post(
        "returns",
        {"id": "ret_new", "order_number": 1, "created_at": "2026-10-01T00:00:00Z", "items": tee},
    )
    assert named["created_at"] == "2026-10-01T00:00:00Z"
    assert named["updated_at"] > body["updated_at"]  # created now, even if dated earlier
    for bad, message in (
        ({"order_number": 1, "items": [{"sku": "NOPE", "quantity": 1}]}, "unknown SKU"),
        ({"id": "ret_std", "order_number": 1, "items": tee}, "already exists"),
        ({"order_number": 1, "items": []}, "items"),
        ({"order_number": 1, "items": tee, "color": 1}, "color"),
    ):
        response = reveni.control.post("/_sim/returns", json=bad)
        assert response.status_code == 400 and message in response.json()["error"]
