"""Chaos (docs/architecture.md#effects-and-idempotency-keys): the sync, SIGKILLed again and again
while Centra fails, rate-limits and times out after committing and Reveni's webhooks come
doubled, reordered or not at all, still does every Centra effect exactly once, misses none
without an open exception for its owner, and never pays a customer twice; with asynchronous PSPs,
it never asks a refund while one is pending, leaves none pending, and every refusal is with
Finance.

The engine is `bench/chaos.py` (`python -m bench.chaos --returns 2000 --kills 5` is the full
size); here it runs at `make test` size, and the invariant checker is shown to catch each kind
of violation on planted ground truths (so a green chaos run means something).
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from chaos_support import (
    ChaosConfig,
    ChaosResult,
    GroundTruth,
    action,
    check_invariants,
    clean_truth,
    exception,
    explain,
    run_chaos,
)


def invariants(truth: GroundTruth) -> list[str]:
    return [v.invariant for v in check_invariants(truth)]


def with_effects(truth: GroundTruth, **changes: Any) -> GroundTruth:
    return replace(truth, centra_effects={**truth.centra_effects, **changes})


def reveni_return(truth: GroundTruth, **changes: Any) -> GroundTruth:
    return replace(truth, reveni_returns=[{**truth.reveni_returns[0], **changes}])


# ----------------------------------------------------------------------- the checker itself


def test_checker_passes_a_return_done_exactly_once() -> None:
    assert check_invariants(clean_truth()) == []


def test_checker_catches_a_second_centra_return_on_one_shipment() -> None:
    truth = clean_truth()
    twin = {**truth.centra_returns[0], "id": 2}
    assert "a" in invariants(replace(truth, centra_returns=[*truth.centra_returns, twin]))


def test_checker_catches_a_second_stock_change_and_a_second_refund_entry() -> None:
    truth = clean_truth()
    twice = replace(truth, stock_changes=truth.stock_changes * 2)
    assert "a" in invariants(twice)
    refunds = truth.centra_effects["refunds"] * 2
    assert "a" in invariants(with_effects(truth, refunds=refunds))


def test_checker_catches_an_exchange_order_no_ledger_key_accounts_for() -> None:
    stray = {"order_number": 900_000_001, "origin_return_id": 1, "total": "0.00", "lines": []}
    assert "a" in invariants(with_effects(clean_truth(), orders_created=[stray]))


def test_missing_refund_needs_an_open_exception_of_a_fitting_code() -> None:
    truth = with_effects(clean_truth(), refunds=[])
    truth = replace(truth, actions=truth.actions[:2])
    assert invariants(truth) == ["b"]
    # an exception about something else explains nothing
    assert invariants(explain(truth, exception("instant_deadline_near"))) == ["b"]
    # a resolved one neither
    assert invariants(explain(truth, exception("refund_post_failed", status="resolved"))) == ["b"]
    assert invariants(explain(truth, exception("refund_post_failed"))) == []
    assert invariants(explain(truth, exception("refund_amount_mismatch"))) == []


def test_checker_catches_a_done_action_whose_effect_centra_does_not_show() -> None:
    truth = replace(clean_truth(), stock_changes=[])
    found = check_invariants(explain(truth, exception("restock_missing")))
    assert [(v.invariant, v.subject) for v in found] == [("b", "restock:r1")]


def test_checker_catches_a_restock_of_an_item_not_accepted_for_restock() -> None:
    truth = clean_truth()
    item = {**truth.reveni_returns[0]["items"][0], "restock": False}
    truth = reveni_return(truth, items=[item])
    assert "b" in invariants(truth)


def test_checker_catches_a_psp_refund_of_a_return_reveni_paid() -> None:
    truth = clean_truth()
    paid = {
        **truth.reveni_returns[0]["refunds"][0],
        "method": "bank_transfer",
        "paid_by": "reveni",
        "status": "paid",
    }
    found = invariants(reveni_return(truth, instant=True, refunds=[paid]))
    assert "c" in found


def test_checker_catches_a_credit_other_than_revenis_amount() -> None:
    truth = clean_truth()
    refund = {**truth.reveni_returns[0]["refunds"][0], "amount": "99.00"}
    assert invariants(reveni_return(truth, refunds=[refund])) == ["c"]


def test_checker_catches_refunds_beyond_what_was_captured() -> None:
    truth = replace(clean_truth(), captured={1001: Decimal("200.00")})
    assert invariants(truth) == ["c"]


def test_failed_action_needs_an_open_exception_for_the_owner_of_its_code() -> None:
    truth = clean_truth()
    failed = action(
        "refund:r1:rf1", "refund", {"centra_return_id": 1, "via_psp": True}, state="failed"
    )
    truth = with_effects(replace(truth, actions=[*truth.actions[:2], failed]), refunds=[])
    assert sorted(invariants(truth)) == ["b", "d"]
    key = "refund:r1:rf1"
    assert invariants(explain(truth, exception("refund_post_failed", action_key=key))) == []
    wrong_owner = exception("refund_post_failed", action_key=key, owner="ops")
    assert invariants(explain(truth, wrong_owner)) == ["d"]


def test_checker_catches_a_centra_return_for_a_rejected_return() -> None:
    truth = clean_truth()
    rejected = reveni_return(truth, status="rejected", refunds=[])
    assert "e" in invariants(rejected)


def psp_refund(truth: GroundTruth, **changes: Any) -> dict[str, Any]:
    """The clean truth's PSP refund (request 300001, answered by 300002), changed."""
    return {**truth.centra_effects["refunds"][0], **changes}


def test_checker_catches_a_second_settled_refund_on_one_return() -> None:
    truth = clean_truth()
    again = psp_refund(truth, entry_id=300_003, answered_by=300_004)
    assert "f" in invariants(with_effects(truth, refunds=[psp_refund(truth), again]))
    # a refusal and then a settled refund is one settled refund
    refused = psp_refund(truth, status="FAILED")
    retried = with_effects(truth, refunds=[refused, again])
    assert "f" not in invariants(retried)


def test_checker_catches_a_refund_asked_while_another_was_pending() -> None:
    truth = clean_truth()
    # request 300001 was answered (refused) by 300005, after 300003 was asked
    refused = psp_refund(truth, status="FAILED", answered_by=300_005)
    second = psp_refund(truth, entry_id=300_003, answered_by=300_004)
    assert "g" in invariants(with_effects(truth, refunds=[refused, second]))
    # still pending when the second was asked (and ever since)
    pending = psp_refund(truth, status="PENDING", answered_by=None, answered_at=None)
    assert "g" in invariants(with_effects(truth, refunds=[pending, second]))
    # asked once the first had been answered: not this invariant
    answered_first = psp_refund(truth, status="FAILED")
    assert "g" not in invariants(with_effects(truth, refunds=[answered_first, second]))


def test_psp_refusal_needs_an_open_finance_exception_of_its_code() -> None:
    key = "refund:r1:rf1"
    truth = clean_truth()
    failed = action(key, "refund", {"centra_return_id": 1, "via_psp": True}, state="failed")
    truth = replace(truth, actions=[*truth.actions[:2], failed])
    truth = with_effects(truth, refunds=[psp_refund(truth, status="FAILED")])
    assert sorted(invariants(truth)) == ["d", "h"]
    gateway = exception("refund_failed_at_gateway", action_key=key)
    assert gateway.owner == "finance"
    assert invariants(explain(truth, gateway)) == []
    # another code explains the failed action (d), not the PSP's refusal (h)
    assert invariants(explain(truth, exception("refund_post_failed", action_key=key))) == ["h"]
    resolved = exception("refund_failed_at_gateway", action_key=key, status="resolved")
    assert "h" in invariants(explain(truth, resolved))
    with_ops = exception("refund_failed_at_gateway", action_key=key, owner="ops")
    assert sorted(invariants(explain(truth, with_ops))) == ["d", "h"]
    # refused, then settled by a refund asked after the refusal: not the last word
    clean = clean_truth()
    settled = psp_refund(clean, entry_id=300_003, answered_by=300_004)
    healed = with_effects(clean, refunds=[psp_refund(clean, status="FAILED"), settled])
    assert "h" not in invariants(healed)


def test_checker_catches_a_refund_left_pending_at_the_psp() -> None:
    truth = clean_truth()
    pending = psp_refund(truth, status="PENDING", answered_by=None, answered_at=None)
    assert invariants(with_effects(truth, refunds=[pending])) == ["i"]


# ----------------------------------------------------------------------- the chaos runs


def assert_held(result: ChaosResult) -> None:
    figures = json.dumps(result.figures, indent=1, default=str)
    assert result.converged, f"did not converge within the timeout\n{figures}"
    assert not result.violations, (
        f"{len(result.violations)} invariant violation(s):\n"
        + "\n".join(str(v) for v in result.violations[:40])
        + f"\n{figures}"
    )
    assert result.figures["kills"] >= result.config.kills
    assert result.figures["centra_5xx"] > 0 and result.figures["centra_429"] > 0
    assert result.figures["centra_timeouts_after_commit"] > 0
    hooks = result.figures["webhooks"]
    assert hooks["dropped"] > 0 and hooks["duplicated"] > 0 and hooks["reordered"] > 0
    # the asynchronous PSP was there: refunds it settled and refused, some the sync saw pending
    psp = result.figures["psp"]
    assert psp["async_refunds"].get("SUCCESS", 0) > 0 and psp["async_refunds"].get("FAILED", 0) > 0
    assert psp["seen_pending_by_sync"] > 0
    assert "PENDING" not in psp["refunds"]


def test_chaos_sixty_returns_three_kills() -> None:
    # `make test` size: ~300 Centra requests at ~10 a second (the spurious 429s hold every
    # call for their Retry-After), about 40 s on two cores (a kill on a claimed action holds it
    # for the 10 s lease: the timeout leaves room); still every fault, many times, and half the
    # orders on an asynchronous PSP. Larger runs: `bench/chaos.py` and `-m slow`.
    config = ChaosConfig(
        returns=60,
        kills=3,
        seed=7,
        waves=4,
        timeout_seconds=120,
        pause_seconds=(1.5, 3.0),
        async_psp_share=0.5,
    )
    result = run_chaos(config)
    print(json.dumps(result.figures, indent=1, default=str))  # shown with -s / on failure
    assert_held(result)


def test_chaos_async_psp_under_timeouts_after_commit() -> None:
    # A refund asked of an asynchronous PSP whose answer never reaches the sync (30 % of the
    # writes commit, then time out) is found pending on reading back and waited for, never
    # asked again: exactly one settled refund per due refund, the refused ones with Finance,
    # nothing left pending. Small (the showcase plus 20 returns): about 30 s.
    config = ChaosConfig(
        returns=20,
        kills=1,
        seed=3,
        waves=2,
        timeout_seconds=90,
        pause_seconds=(1.0, 2.0),
        async_psp_share=0.8,
        centra_timeout_after_commit_rate=0.3,
    )
    result = run_chaos(config)
    print(json.dumps(result.figures, indent=1, default=str))
    assert_held(result)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_chaos_thousand_returns_five_kills() -> None:
    config = ChaosConfig(returns=1000, kills=5, seed=11, waves=8, timeout_seconds=2000)
    result = run_chaos(config)
    print(json.dumps(result.figures, indent=1, default=str))
    assert_held(result)
