"""`refund_attempts`: Centra's refund entries folded into refunds asked of Centra, one shape at a
time (synchronous, asynchronous request then settlement, refusal, unreferenced, several on one
reference, other entry types, other wire values)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from returnbridge.connectors.centra.inferred import CentraInferred
from returnbridge.connectors.centra.models import Money, PaymentEntry
from returnbridge.connectors.centra.refunds import (
    DEFAULT_REFUND_TYPES,
    RefundAttempt,
    RefundState,
    RefundTypes,
    entry_state,
    in_state,
    refund_attempts,
)

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
SETTLED, PENDING, FAILED = RefundState.SETTLED, RefundState.PENDING, RefundState.FAILED


def entry(
    entry_id: int,
    entry_type: str,
    status: str,
    *,
    amount: str = "10.00",
    reference: str | None = None,
    minutes: int = 0,
    currency: str = "EUR",
    method: str = "adyen",
) -> PaymentEntry:
    return PaymentEntry(
        id=entry_id,
        created_at=T0 + timedelta(minutes=minutes),
        status=status,
        entry_type=entry_type,
        value=Money(value=Decimal(amount), currency=currency),
        external_reference=reference,
        payment_method=method,
    )


def seen(attempts: list[RefundAttempt]) -> list[tuple[int, Decimal, datetime, RefundState]]:
    """What a caller reads of each attempt: the proving entry's id, amount, when asked, state."""
    return [(a.id, a.amount, a.created_at, a.state) for a in attempts]


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --------------------------------------------------------------------------- synchronous


def test_a_synchronous_successful_refund_is_settled() -> None:
    refund = entry(9, "REFUND", "SUCCESS", amount="12.50", reference="psp-9", minutes=3)
    (attempt,) = refund_attempts([refund])
    assert seen([attempt]) == [(9, Decimal("12.50"), at(3), SETTLED)]
    assert (attempt.entry, attempt.settled_by) == (refund, None)
    assert (attempt.currency, attempt.external_reference, attempt.payment_method) == (
        "EUR",
        "psp-9",
        "adyen",
    )


def test_a_synchronous_failed_refund_is_failed() -> None:
    (attempt,) = refund_attempts([entry(9, "REFUND", "FAILED", amount="12.50", minutes=3)])
    assert seen([attempt]) == [(9, Decimal("12.50"), at(3), FAILED)]
    assert attempt.settled_by is None


def test_a_synchronous_refund_in_an_unknown_status_is_not_taken_as_paid() -> None:
    (attempt,) = refund_attempts([entry(9, "REFUND", "CANCELLED")])
    assert attempt.state is FAILED


# --------------------------------------------------------------------------- asynchronous


def test_a_request_the_psp_has_not_answered_is_pending() -> None:
    request = entry(5, "REFUND_REQUEST", "PENDING", amount="10.00", reference="psp-1", minutes=1)
    (attempt,) = refund_attempts([request])
    assert seen([attempt]) == [(5, Decimal("10.00"), at(1), PENDING)]
    assert (attempt.entry, attempt.settled_by) == (request, None)


def test_a_request_flipped_to_success_and_its_refund_entry_are_one_settled_refund() -> None:
    request = entry(5, "REFUND_REQUEST", "SUCCESS", amount="10.00", reference="psp-1", minutes=1)
    refund = entry(6, "REFUND", "SUCCESS", amount="9.50", reference="psp-1", minutes=30)
    attempts = refund_attempts([request, refund])
    # one refund, not two: proven by the settlement, asked for at the request's time
    assert seen(attempts) == [(6, Decimal("9.50"), at(1), SETTLED)]
    assert (attempts[0].entry, attempts[0].settled_by) == (request, refund)
    assert in_state(attempts, SETTLED) == attempts


def test_a_request_left_pending_is_settled_by_a_refund_entry_with_its_reference() -> None:
    request = entry(5, "REFUND_REQUEST", "PENDING", reference="psp-1", minutes=1)
    refund = entry(6, "REFUND", "SUCCESS", reference="psp-1", minutes=600)
    attempts = refund_attempts([refund, request])  # input order does not matter
    assert seen(attempts) == [(6, Decimal("10.00"), at(1), SETTLED)]
    assert attempts[0].settled_by == refund
    assert in_state(attempts, PENDING) == []


@pytest.mark.parametrize("status", ["SUCCESS", "FAILED", "PENDING"])
def test_a_refund_failed_entry_fails_the_request_whatever_its_own_status(status: str) -> None:
    request = entry(5, "REFUND_REQUEST", "PENDING", reference="psp-1", minutes=1)
    refusal = entry(7, "REFUND_FAILED", status, reference="psp-1", minutes=45)
    attempts = refund_attempts([request, refusal])
    assert seen(attempts) == [(7, Decimal("10.00"), at(1), FAILED)]
    assert attempts[0].settled_by == refusal
    assert entry_state(refusal, DEFAULT_REFUND_TYPES) is FAILED


def test_a_refund_failed_entry_no_request_claims_is_a_failed_refund_of_its_own() -> None:
    (attempt,) = refund_attempts([entry(7, "REFUND_FAILED", "SUCCESS", reference="x", minutes=2)])
    assert seen([attempt]) == [(7, Decimal("10.00"), at(2), FAILED)]


def test_a_request_without_reference_keeps_its_own_status_and_settlements_stay_apart() -> None:
    request = entry(5, "REFUND_REQUEST", "PENDING", amount="10.00", minutes=1)
    unreferenced = entry(6, "REFUND", "SUCCESS", amount="4.00", minutes=2)
    referenced = entry(7, "REFUND", "SUCCESS", amount="3.00", reference="psp-7", minutes=3)
    attempts = refund_attempts([request, unreferenced, referenced])
    assert seen(attempts) == [
        (5, Decimal("10.00"), at(1), PENDING),
        (6, Decimal("4.00"), at(2), SETTLED),
        (7, Decimal("3.00"), at(3), SETTLED),
    ]
    assert all(a.settled_by is None for a in attempts)
    flipped = entry(5, "REFUND_REQUEST", "SUCCESS", minutes=1)
    assert seen(refund_attempts([flipped])) == [(5, Decimal("10.00"), at(1), SETTLED)]
    refused = entry(5, "REFUND_REQUEST", "FAILED", minutes=1)
    assert seen(refund_attempts([refused])) == [(5, Decimal("10.00"), at(1), FAILED)]


def test_a_settlement_of_another_reference_does_not_settle_a_request() -> None:
    request = entry(5, "REFUND_REQUEST", "PENDING", reference="psp-1", minutes=1)
    other = entry(6, "REFUND", "SUCCESS", reference="psp-2", minutes=2)
    assert seen(refund_attempts([request, other])) == [
        (5, Decimal("10.00"), at(1), PENDING),
        (6, Decimal("10.00"), at(2), SETTLED),
    ]


def test_requests_and_settlements_of_one_reference_pair_in_order_oldest_first() -> None:
    first = entry(11, "REFUND_REQUEST", "PENDING", amount="10.00", reference="r", minutes=1)
    second = entry(12, "REFUND_REQUEST", "PENDING", amount="20.00", reference="r", minutes=2)
    refused = entry(13, "REFUND_FAILED", "FAILED", amount="10.00", reference="r", minutes=3)
    paid = entry(14, "REFUND", "SUCCESS", amount="20.00", reference="r", minutes=4)
    entries = [first, second, refused, paid]
    for _ in range(5):  # the answer never depends on the order they are read in
        random.Random(_).shuffle(entries)
        attempts = refund_attempts(entries)
        assert seen(attempts) == [
            (13, Decimal("10.00"), at(1), FAILED),
            (14, Decimal("20.00"), at(2), SETTLED),
        ]
        assert [(a.entry, a.settled_by) for a in attempts] == [(first, refused), (second, paid)]


def test_a_second_request_with_no_settlement_left_takes_its_own_status() -> None:
    first = entry(11, "REFUND_REQUEST", "PENDING", reference="r", minutes=1)
    second = entry(12, "REFUND_REQUEST", "PENDING", reference="r", minutes=2)
    paid = entry(14, "REFUND", "SUCCESS", reference="r", minutes=4)
    assert seen(refund_attempts([second, paid, first])) == [
        (14, Decimal("10.00"), at(1), SETTLED),
        (12, Decimal("10.00"), at(2), PENDING),
    ]


def test_entries_at_one_time_are_ordered_by_id() -> None:
    late_id = entry(21, "REFUND_REQUEST", "PENDING", reference="r", minutes=1)
    early_id = entry(20, "REFUND_REQUEST", "PENDING", reference="r", minutes=1)
    paid = entry(30, "REFUND", "SUCCESS", reference="r", minutes=2)
    attempts = refund_attempts([late_id, paid, early_id])
    assert [(a.entry.id, a.id, a.state) for a in attempts] == [
        (20, 30, SETTLED),
        (21, 21, PENDING),
    ]


def test_attempts_come_oldest_first_by_the_time_each_was_asked_for() -> None:
    request = entry(5, "REFUND_REQUEST", "PENDING", reference="r", minutes=10)
    early = entry(3, "REFUND", "FAILED", minutes=5)
    settles = entry(8, "REFUND", "SUCCESS", reference="r", minutes=40)
    later = entry(6, "REFUND", "SUCCESS", minutes=20)
    assert [(a.id, a.created_at) for a in refund_attempts([settles, later, request, early])] == [
        (3, at(5)),
        (8, at(10)),
        (6, at(20)),
    ]


# --------------------------------------------------------------------------- other entries


def test_entries_of_other_types_are_ignored() -> None:
    others = [
        entry(1, "AUTH", "SUCCESS", amount="100.00"),
        entry(2, "CAPTURE", "SUCCESS", amount="100.00", reference="r"),
        entry(3, "CAPTURE", "PENDING", reference="r"),
        entry(4, "CANCEL", "FAILED"),
    ]
    assert refund_attempts(others) == []
    request = entry(5, "REFUND_REQUEST", "PENDING", reference="r", minutes=1)
    # a CAPTURE with the request's reference settles nothing
    assert seen(refund_attempts([*others, request])) == [(5, Decimal("10.00"), at(1), PENDING)]
    assert refund_attempts([]) == []


def test_the_three_wire_values_are_configurable() -> None:
    types = RefundTypes(refund="CREDIT", request="CREDIT_ASKED", failed="CREDIT_REFUSED")
    entries = [
        entry(1, "CREDIT_ASKED", "PENDING", reference="a", minutes=1),
        entry(2, "CREDIT", "SUCCESS", reference="a", minutes=2),
        entry(3, "CREDIT_ASKED", "PENDING", reference="b", minutes=3),
        entry(4, "CREDIT_REFUSED", "SUCCESS", reference="b", minutes=4),
        entry(5, "CREDIT_ASKED", "PENDING", reference="c", minutes=5),
        entry(6, "REFUND", "SUCCESS", reference="c", minutes=6),  # not a refund here
        entry(7, "REFUND_REQUEST", "PENDING", minutes=7),  # nor this
    ]
    assert seen(refund_attempts(entries, types)) == [
        (2, Decimal("10.00"), at(1), SETTLED),
        (4, Decimal("10.00"), at(3), FAILED),
        (5, Decimal("10.00"), at(5), PENDING),
    ]
    # with the default wire values, only the default-named entries are refunds
    assert seen(refund_attempts(entries)) == [
        (6, Decimal("10.00"), at(6), SETTLED),
        (7, Decimal("10.00"), at(7), PENDING),
    ]
    inferred = CentraInferred(
        payment_entry_type_refund="CREDIT",
        payment_entry_type_refund_request="CREDIT_ASKED",
        payment_entry_type_refund_failed="CREDIT_REFUSED",
    )
    assert RefundTypes.of(inferred) == types
    assert types.all == frozenset({"CREDIT", "CREDIT_ASKED", "CREDIT_REFUSED"})
    assert RefundTypes("REFUND", "REFUND_REQUEST", "REFUND_FAILED") == DEFAULT_REFUND_TYPES


def test_in_state_keeps_the_attempts_order() -> None:
    attempts = refund_attempts(
        [
            entry(1, "REFUND", "SUCCESS", minutes=1),
            entry(2, "REFUND_REQUEST", "PENDING", minutes=2),
            entry(3, "REFUND", "FAILED", minutes=3),
            entry(4, "REFUND", "SUCCESS", minutes=4),
        ]
    )
    assert [a.id for a in in_state(attempts, SETTLED)] == [1, 4]
    assert [a.id for a in in_state(attempts, PENDING)] == [2]
    assert [a.id for a in in_state(attempts, FAILED)] == [3]
