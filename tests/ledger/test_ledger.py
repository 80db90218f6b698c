"""The ledger's behaviour, each test on SQLite (WAL file) and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from ledger_support import T0, ManualClock, create_return, exchange, refund, restock

from returnbridge.core.actions import ActionStateError
from returnbridge.core.codes import ReturnException
from returnbridge.ledger import HEALED_NOTE, SCHEMA_VERSION, TEXT_LIMIT, Ledger
from returnbridge.ledger import schema as ledger_schema


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(ledger_url: str, clock: ManualClock) -> Iterator[Ledger]:
    with Ledger(ledger_url, clock=clock) as ledger:
        yield ledger


def _mismatch(rid: str = "R1", detail: str = "Centra 49.90, Reveni 45.00") -> ReturnException:
    return ReturnException(
        code="refund_amount_mismatch",
        reveni_return_id=rid,
        order_number=1001,
        amount=Decimal("45.00"),
        currency="EUR",
        detail=detail,
    )


# --------------------------------------------------------------------------- planning


def test_plan_inserts_new_keys_as_pending_and_never_resets_existing(
    ledger: Ledger, clock: ManualClock
) -> None:
    first = [create_return("R1"), refund("R1")]
    assert ledger.plan(first) == ["return:R1", "refund:R1:rf1"]
    ledger.claim("return:R1", expected="pending")
    ledger.transition("return:R1", "done", expected="in_flight", centra_ref="c-9")

    clock.advance(minutes=1)
    replanned = [
        create_return("R1", order_number=9999),
        refund("R1", amount="1.00"),
        exchange("R1"),
    ]
    assert ledger.plan(replanned) == ["exchange:R1:1"]

    done = ledger.action("return:R1")
    assert done is not None
    assert (done.state, done.order_number, done.centra_ref) == ("done", 1001, "c-9")
    again = ledger.action("refund:R1:rf1")
    assert again is not None
    assert (again.state, again.payload["amount"], again.created_at) == ("pending", "49.90", T0)


def test_plan_ignores_a_key_repeated_within_one_batch(ledger: Ledger) -> None:
    assert ledger.plan([refund("R1"), refund("R1", amount="2.00")]) == ["refund:R1:rf1"]
    record = ledger.action("refund:R1:rf1")
    assert record is not None and record.payload["amount"] == "49.90"


def test_stored_action_rebuilds_the_planned_action_exactly(ledger: Ledger) -> None:
    planned = [create_return("R1"), restock("R1", depends_on=["return:R1"]), refund("R1")]
    planned.append(exchange("R1"))
    ledger.plan(planned)
    records = ledger.actions(keys=[a.key for a in planned])
    assert {r.key: r.action() for r in records} == {a.key: a for a in planned}
    rebuilt = {r.key: r.action() for r in records}["refund:R1:rf1"].payload
    assert rebuilt.amount == Decimal("49.90") and str(rebuilt.amount) == "49.90"  # type: ignore[union-attr]


def test_actions_filter_and_order_by_created_then_key(ledger: Ledger, clock: ManualClock) -> None:
    ledger.plan([refund("R2"), create_return("R2")])
    clock.advance(seconds=1)
    ledger.plan([create_return("R1"), restock("R1")])
    assert [r.key for r in ledger.actions()] == [
        "refund:R2:rf1",
        "return:R2",
        "restock:R1",
        "return:R1",
    ]
    assert [r.key for r in ledger.actions(reveni_return_ids=["R1"])] == ["restock:R1", "return:R1"]
    assert [r.key for r in ledger.actions(kinds=["create_return"], states=["pending"])] == [
        "return:R2",
        "return:R1",
    ]
    assert ledger.actions(keys=[]) == []
    assert ledger.action("return:R9") is None


# --------------------------------------------------------------------------- state machine


def test_claim_takes_the_action_in_flight_under_a_lease(ledger: Ledger, clock: ManualClock) -> None:
    ledger.plan([refund("R1")])
    claimed = ledger.claim("refund:R1:rf1", expected="pending", lease_seconds=30)
    assert claimed is not None
    assert (claimed.state, claimed.attempts) == ("in_flight", 1)
    assert claimed.not_before == T0 + timedelta(seconds=30)
    assert ledger.claim("refund:R1:rf1", expected="pending") is None
    assert ledger.claim("refund:R9:rf1", expected="pending") is None
    with pytest.raises(ActionStateError, match="only a pending or in_doubt"):
        ledger.claim("refund:R1:rf1", expected="failed")


def test_transition_refuses_moves_the_state_machine_forbids(ledger: Ledger) -> None:
    ledger.plan([refund("R1")])
    with pytest.raises(ActionStateError, match="'pending' cannot move to 'done'"):
        ledger.transition("refund:R1:rf1", "done", expected="pending")
    ledger.claim("refund:R1:rf1", expected="pending")
    ledger.transition("refund:R1:rf1", "done", expected="in_flight", centra_ref="55")
    for illegal in ("pending", "in_flight", "failed"):
        with pytest.raises(ActionStateError):
            ledger.transition("refund:R1:rf1", illegal, expected="done")
    record = ledger.action("refund:R1:rf1")
    assert record is not None and (record.state, record.centra_ref) == ("done", "55")


def test_transition_from_a_state_the_row_is_no_longer_in_is_a_lost_race(ledger: Ledger) -> None:
    ledger.plan([refund("R1")])
    with pytest.raises(ActionStateError, match="it is 'pending' now"):
        ledger.transition("refund:R1:rf1", "pending", expected="in_flight")
    with pytest.raises(KeyError, match="no action with key 'refund:R9:rf1'"):
        ledger.transition("refund:R9:rf1", "in_flight", expected="pending")


def test_transition_stores_error_and_backoff_and_clears_the_lease(
    ledger: Ledger, clock: ManualClock
) -> None:
    ledger.plan([refund("R1")])
    ledger.claim("refund:R1:rf1", expected="pending")
    backoff = T0 + timedelta(minutes=5)
    failed = ledger.transition(
        "refund:R1:rf1", "pending", expected="in_flight", error="503 upstream", not_before=backoff
    )
    assert (failed.state, failed.last_error, failed.not_before) == (
        "pending",
        "503 upstream",
        backoff,
    )
    ledger.claim("refund:R1:rf1", expected="pending")
    blocked = ledger.transition("refund:R1:rf1", "blocked", expected="in_flight")
    assert (blocked.not_before, blocked.last_error, blocked.attempts) == (None, "503 upstream", 2)
    assert blocked.updated_at == clock.now


def test_due_orders_by_priority_then_created_then_return(
    ledger: Ledger, clock: ManualClock
) -> None:
    ledger.plan([exchange("R1"), restock("R2"), refund("R3"), restock("R1")])
    clock.advance(seconds=1)
    ledger.plan([refund("R0"), create_return("R4"), restock("R0")])
    # oldest first; one return's actions together, so an Order API write (refund, exchange)
    # and a GraphQL mutation (restock) alternate instead of one kind's backlog going first
    everything = [
        "exchange:R1:1",
        "restock:R1",
        "restock:R2",
        "refund:R3:rf1",
        "refund:R0:rf1",
        "restock:R0",
        "return:R4",
    ]
    assert [r.key for r in ledger.due()] == everything
    by_kind = ledger.due(priority=["refund", "restock"])
    assert [r.key for r in by_kind] == [
        "refund:R3:rf1",
        "refund:R0:rf1",
        "restock:R1",
        "restock:R2",
        "restock:R0",
        "exchange:R1:1",
        "return:R4",
    ]
    assert [r.key for r in ledger.due(priority=["exchange_order"], limit=2)] == [
        "exchange:R1:1",
        "restock:R1",
    ]
    assert ledger.due(limit=0) == []


def test_due_waits_for_not_before_and_for_every_dependency_done(
    ledger: Ledger, clock: ManualClock
) -> None:
    ledger.plan(
        [
            create_return("R1"),
            restock("R1", depends_on=["return:R1"]),
            refund("R1", depends_on=["return:R1", "restock:R1"]),
            refund("R2", depends_on=["return:R2"]),  # never planned: never due
        ]
    )
    assert [r.key for r in ledger.due()] == ["return:R1"]
    ledger.claim("return:R1", expected="pending")
    ledger.transition(
        "return:R1", "pending", expected="in_flight", not_before=T0 + timedelta(seconds=10)
    )
    assert ledger.due() == []
    assert [r.key for r in ledger.due(now=T0 + timedelta(seconds=10))] == ["return:R1"]
    clock.advance(seconds=10)
    ledger.claim("return:R1", expected="pending")
    ledger.transition("return:R1", "done", expected="in_flight")
    assert [r.key for r in ledger.due()] == ["restock:R1"]
    ledger.claim("restock:R1", expected="pending")
    ledger.transition("restock:R1", "done", expected="in_flight")
    assert [r.key for r in ledger.due()] == ["refund:R1:rf1"]


def test_due_finds_ready_actions_behind_many_waiting_ones(ledger: Ledger) -> None:
    waiting = [refund(f"W{i:04d}", depends_on=["return:nowhere"]) for i in range(520)]
    ledger.plan([*waiting, refund("Z1")])
    assert [r.key for r in ledger.due(limit=5)] == ["refund:Z1:rf1"]


def test_an_expired_lease_puts_the_action_in_doubt_and_due_again(
    ledger: Ledger, clock: ManualClock
) -> None:
    ledger.plan([refund("R1"), refund("R2")])
    ledger.claim("refund:R1:rf1", expected="pending", lease_seconds=60)
    ledger.claim("refund:R2:rf1", expected="pending", lease_seconds=600)
    assert ledger.expire_leases() == []
    assert ledger.expire_leases(now=T0 + timedelta(seconds=60)) == ["refund:R1:rf1"]
    record = ledger.action("refund:R1:rf1")
    assert record is not None and record.state == "in_doubt"
    clock.advance(seconds=61)
    assert [r.key for r in ledger.due()] == ["refund:R1:rf1"]
    # Read-back under a new lease, then the outcome.
    assert ledger.claim("refund:R1:rf1", expected="in_doubt") is not None
    done = ledger.transition("refund:R1:rf1", "done", expected="in_flight", centra_ref="55")
    assert (done.state, done.attempts) == ("done", 2)
    assert ledger.expire_leases() == []


def test_retry_requeues_only_failed_and_blocked(ledger: Ledger) -> None:
    ledger.plan([refund("R1"), refund("R2"), refund("R3")])
    for key, end in (("refund:R1:rf1", "failed"), ("refund:R2:rf1", "blocked")):
        ledger.claim(key, expected="pending")
        ledger.transition(key, end, expected="in_flight", not_before=T0 + timedelta(hours=1))
    assert ledger.retry(["refund:R2:rf1", "refund:R1:rf1", "refund:R3:rf1", "nope"]) == [
        "refund:R1:rf1",
        "refund:R2:rf1",
    ]
    assert [(r.state, r.not_before) for r in ledger.actions()] == [("pending", None)] * 3
    assert ledger.retry(["refund:R1:rf1"]) == []


def test_counts_every_state(ledger: Ledger) -> None:
    assert set(ledger.counts().values()) == {0}
    ledger.plan([refund("R1"), refund("R2"), refund("R3")])
    ledger.claim("refund:R1:rf1", expected="pending")
    counts = ledger.counts()
    assert (counts["pending"], counts["in_flight"], counts["done"]) == (2, 1, 0)
    assert sum(counts.values()) == 3


def test_attempts_are_kept_in_order_with_long_texts_clipped(ledger: Ledger) -> None:
    ledger.plan([refund("R1")])
    first = ledger.record_attempt(
        "refund:R1:rf1",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=2),
        request_summary="PUT /returns/55 refundPayment=true",
        error="x" * 10_000,
        outcome="pending",
    )
    second = ledger.record_attempt(
        "refund:R1:rf1",
        started_at=T0 + timedelta(minutes=1),
        finished_at=None,
        request_summary="PUT /returns/55 refundPayment=true",
        response='{"status": "ok"}',
        outcome="done",
    )
    assert first < second
    tries = ledger.attempts("refund:R1:rf1")
    assert [(a.id, a.outcome) for a in tries] == [(first, "pending"), (second, "done")]
    assert tries[0].error is not None and len(tries[0].error) == TEXT_LIMIT
    assert "more characters cut" in tries[0].error
    assert (tries[1].response, tries[1].finished_at) == ('{"status": "ok"}', None)
    assert ledger.attempts("refund:R2:rf1") == []


# --------------------------------------------------------------------------- exceptions


def test_exception_raised_again_is_the_same_one_seen_again(
    ledger: Ledger, clock: ManualClock
) -> None:
    first = ledger.raise_exception(_mismatch(), action_key="refund:R1:rf1")
    assert (first.status, first.owner, first.attempts) == ("open", "finance", 0)
    assert first.first_seen == first.last_seen == T0
    clock.advance(hours=1)
    again = ledger.raise_exception(
        ReturnException(
            "refund_amount_mismatch", "R1", 1001, amount=Decimal("44.00"), detail="now 44.00"
        )
    )
    assert again.id == first.id
    assert (again.attempts, again.first_seen, again.last_seen) == (1, T0, clock.now)
    assert (again.amount, again.currency, again.detail) == (Decimal("44.00"), None, "now 44.00")
    assert again.action_key == "refund:R1:rf1"  # not forgotten when not given
    assert len(ledger.exceptions()) == 1


def test_identity_with_missing_keys_is_still_one_exception(ledger: Ledger) -> None:
    """NULL columns would never collide in a unique constraint: the identity must still match."""
    lost = ReturnException("order_not_found", reveni_return_id=None, order_number=None)
    assert ledger.raise_exception(lost).id == ledger.raise_exception(lost).id
    per_sku = [ReturnException("sku_not_in_order", "R1", 1001, sku=s) for s in ("A", "B", None)]
    ids = {ledger.raise_exception(e).id for e in per_sku + per_sku}
    assert len(ids) == 3
    assert len(ledger.exceptions()) == 4


def test_resolved_exception_found_again_reopens_and_ignored_stays_ignored(
    ledger: Ledger, clock: ManualClock
) -> None:
    mismatch = ledger.raise_exception(_mismatch("R1"))
    other = ledger.raise_exception(_mismatch("R2"))
    resolved = ledger.resolve_exception(mismatch.id, note="credited by hand (anna)")
    assert (resolved.status, resolved.resolved_at) == ("resolved", T0)
    ignored = ledger.resolve_exception(other.id, note="known test order", status="ignored")
    assert (ignored.status, ignored.resolution_note) == ("ignored", "known test order")

    clock.advance(days=1)
    reopened = ledger.raise_exception(_mismatch("R1"))
    assert (reopened.id, reopened.status, reopened.resolved_at, reopened.resolution_note) == (
        mismatch.id,
        "open",
        None,
        None,
    )
    still_ignored = ledger.raise_exception(_mismatch("R2", detail="changed"))
    assert (still_ignored.status, still_ignored.last_seen) == ("ignored", clock.now)
    assert (still_ignored.detail, still_ignored.attempts) == (ignored.detail, 0)


def test_an_ignored_exception_reopens_when_it_is_about_more_money(
    ledger: Ledger, clock: ManualClock
) -> None:
    """Ignoring accepts an amount: a second refund made by hand on an order whose first was
    accepted raises the order's unmatched sum, and that is a new finding."""

    def unmatched(amount: str, currency: str = "SEK") -> ReturnException:
        return ReturnException(
            "unmatched_centra_refund", None, 1001, amount=Decimal(amount), currency=currency
        )

    first = ledger.raise_exception(unmatched("49.00"))
    ledger.resolve_exception(first.id, note="goodwill (anna)", status="ignored")
    clock.advance(days=1)
    assert ledger.raise_exception(unmatched("49.00")).status == "ignored"
    assert ledger.raise_exception(unmatched("20.00")).status == "ignored"  # less: still covered
    assert ledger.raise_exception(unmatched("99.00", "EUR")).status == "ignored"
    grown = ledger.raise_exception(unmatched("69.00"))
    assert (grown.id, grown.status, grown.amount, grown.resolution_note) == (
        first.id,
        "open",
        Decimal("69.00"),
        None,
    )
    changes = ledger.observe_exceptions(
        [unmatched("69.00")], scope_return_ids=None, scope_codes=["unmatched_centra_refund"]
    )
    assert not changes.new  # open already: seen, not new


def test_retried_moves_only_retrying_exceptions_back_to_open(ledger: Ledger) -> None:
    retrying = ledger.raise_exception(_mismatch("R1"))
    ledger.retry_exception(retrying.id)
    still_open = ledger.raise_exception(_mismatch("R2"))
    assert ledger.retried([retrying.id, still_open.id, 999]) == [retrying.id]
    assert ledger.exception(retrying.id).status == "open"  # type: ignore[union-attr]
    assert ledger.retried([]) == []


def test_resolve_exception_names_what_is_wrong(ledger: Ledger) -> None:
    with pytest.raises(KeyError, match="no exception with id 999"):
        ledger.resolve_exception(999, note="x")
    with pytest.raises(ValueError, match="'resolved' or 'ignored'"):
        ledger.resolve_exception(1, note="x", status="open")
    with pytest.raises(KeyError, match="no exception with id 999"):
        ledger.retry_exception(999)
    assert ledger.exception(999) is None


def test_observe_heals_only_what_it_checked_and_no_longer_finds(
    ledger: Ledger, clock: ManualClock
) -> None:
    sku = ReturnException("sku_not_in_order", "R1", 1001, sku="X")
    qty = ReturnException("quantity_exceeds_shipped", "R1", 1001, sku="Y")
    elsewhere = ReturnException("sku_not_in_order", "R2", 1002, sku="X")
    other_check = _mismatch("R1")
    scope = {
        "scope_return_ids": ["R1"],
        "scope_codes": ["sku_not_in_order", "quantity_exceeds_shipped"],
    }

    first = ledger.observe_exceptions([sku, qty, elsewhere, other_check], **scope)  # type: ignore[arg-type]
    assert [e.code for e in first.new] == [
        "sku_not_in_order",
        "quantity_exceeds_shipped",
        "sku_not_in_order",
        "refund_amount_mismatch",
    ]
    assert (first.seen, first.healed) == ([], [])

    clock.advance(minutes=5)
    second = ledger.observe_exceptions([qty], **scope)  # type: ignore[arg-type]
    assert (second.new, [e.sku for e in second.seen]) == ([], ["Y"])
    assert [(e.code, e.sku, e.status) for e in second.healed] == [
        ("sku_not_in_order", "X", "resolved")
    ]
    healed = second.healed[0]
    assert (healed.reveni_return_id, healed.resolution_note) == ("R1", HEALED_NOTE)
    assert healed.resolved_at == clock.now
    open_now = ledger.exceptions(statuses=["open"])
    assert sorted((e.reveni_return_id, e.code) for e in open_now) == [
        ("R1", "quantity_exceeds_shipped"),
        ("R1", "refund_amount_mismatch"),
        ("R2", "sku_not_in_order"),
    ]

    third = ledger.observe_exceptions([sku], **scope)  # type: ignore[arg-type]
    assert [(e.sku, e.status, e.id) for e in third.new] == [("X", "open", healed.id)]
    assert [e.sku for e in third.healed] == ["Y"]


def test_observe_over_everything_heals_order_level_exceptions_too(
    ledger: Ledger, clock: ManualClock
) -> None:
    """Reconciliation sees the whole snapshot (`scope_return_ids=None`): anything of its codes
    it no longer finds is healed, exceptions with no return id included; other codes stay."""
    unmatched = ReturnException("unmatched_centra_refund", None, 1001, amount=Decimal("49.00"))
    missing = ReturnException("restock_missing", "R1", 1001, sku="X")
    shared = _mismatch("R2")
    codes = ["unmatched_centra_refund", "restock_missing"]
    first = ledger.observe_exceptions(
        [unmatched, missing, shared], scope_return_ids=None, scope_codes=codes
    )
    assert len(first.new) == 3
    clock.advance(minutes=1)
    second = ledger.observe_exceptions([missing], scope_return_ids=None, scope_codes=codes)
    assert [(e.code, e.order_number) for e in second.healed] == [("unmatched_centra_refund", 1001)]
    assert {e.code for e in ledger.exceptions(statuses=["open"])} == {
        "restock_missing",
        "refund_amount_mismatch",
    }
    assert ledger.observe_exceptions([], scope_return_ids=[], scope_codes=codes).healed == []


def test_reopen_puts_only_done_actions_back_in_doubt_for_a_read_back(
    ledger: Ledger, clock: ManualClock
) -> None:
    ledger.plan([create_return("R1"), restock("R1", depends_on=["return:R1"])])
    ledger.claim("return:R1", expected="pending")
    ledger.transition("return:R1", "done", expected="in_flight", centra_ref="c-1")
    done_at = ledger.action("return:R1").updated_at  # type: ignore[union-attr]
    clock.advance(hours=5)
    assert ledger.reopen(["return:R1", "restock:R1", "nope"]) == ["return:R1"]
    again = ledger.action("return:R1")
    assert again is not None and again.state == "in_doubt"
    assert again.last_error is not None and "reconciliation" in again.last_error
    # its settle time counts from when it was done: a read-back that finds nothing is believed
    assert again.updated_at == done_at
    # its dependants wait for the read-back again
    assert [a.key for a in ledger.due()] == ["return:R1"]
    assert ledger.action("restock:R1").state == "pending"  # type: ignore[union-attr]


def test_observe_links_exceptions_to_their_actions(ledger: Ledger) -> None:
    failed = ReturnException("return_create_failed", "R1", 1001, detail="rejected")
    changes = ledger.observe_exceptions(
        [failed],
        scope_return_ids=["R1"],
        scope_codes=["return_create_failed"],
        action_keys={failed.key: "return:R1"},
    )
    assert changes.new[0].action_key == "return:R1"
    assert changes.new[0].owner == "ops"


def test_retry_exception_requeues_its_failed_action(ledger: Ledger, clock: ManualClock) -> None:
    ledger.plan([create_return("R1")])
    ledger.claim("return:R1", expected="pending")
    ledger.transition("return:R1", "failed", expected="in_flight", error="rejected")
    raised = ledger.raise_exception(
        ReturnException("return_create_failed", "R1", 1001), action_key="return:R1"
    )
    clock.advance(hours=2)
    assert ledger.retry_exception(raised.id) == ["return:R1"]
    record = ledger.action("return:R1")
    assert record is not None and (record.state, record.updated_at) == ("pending", clock.now)
    retrying = ledger.exception(raised.id)
    assert retrying is not None and retrying.status == "retrying"
    assert ledger.retry_exception(raised.id) == []  # already pending: nothing to re-queue
    lone = ledger.raise_exception(ReturnException("order_not_found", "R2", 4))
    assert ledger.retry_exception(lone.id) == []


def test_exceptions_filter_by_owner_status_code_and_keys(ledger: Ledger) -> None:
    ledger.raise_exception(_mismatch("R1"))
    ledger.raise_exception(ReturnException("sku_not_in_order", "R2", 1002, sku="S"))
    ledger.raise_exception(ReturnException("order_not_found", "R3", 1003))
    assert [e.reveni_return_id for e in ledger.exceptions(owner="ops")] == ["R2"]
    assert [e.code for e in ledger.exceptions(code="order_not_found")] == ["order_not_found"]
    assert [e.code for e in ledger.exceptions(order_number=1001)] == ["refund_amount_mismatch"]
    assert [e.sku for e in ledger.exceptions(reveni_return_id="R2")] == ["S"]
    assert ledger.exceptions(statuses=["resolved"]) == []
    summary = ledger.exceptions(owner="finance")[0].as_summary()
    assert (summary["amount"], summary["status"]) == ("45.00", "open")


# --------------------------------------------------------------------------- cursors and inbox


def test_cursor_is_set_and_moved(ledger: Ledger) -> None:
    assert ledger.cursor("reveni.returns") is None
    ledger.set_cursor("reveni.returns", "2026-10-01T12:00:00Z")
    ledger.set_cursor("reveni.returns", "2026-10-01T12:05:00Z")
    ledger.set_cursor("centra.orders", "7")
    assert ledger.cursor("reveni.returns") == "2026-10-01T12:05:00Z"
    assert ledger.cursor("centra.orders") == "7"


def test_inbox_resources_lists_what_a_source_announced_since(
    ledger: Ledger, clock: ManualClock
) -> None:
    ledger.inbox_add("centra", "e1", "{}", resource_id="1001", event_type="order.update")
    clock.advance(minutes=10)
    since = clock.now
    ledger.inbox_add("centra", "e2", "{}", resource_id="1002", event_type="order.update")
    ledger.inbox_add("centra", "e3", "{}", resource_id="1002", event_type="order.create")
    ledger.inbox_add("centra", "e4", "{}", resource_id="77", event_type="return.update")
    ledger.inbox_add("reveni", "e5", "{}", resource_id="ret_1", event_type="return.updated")
    ledger.inbox_processed([1, 2])
    assert ledger.inbox_resources("centra", since=since, event_prefix="order.") == ["1002"]
    assert ledger.inbox_resources("centra", since=since) == ["1002", "77"]
    assert ledger.inbox_resources("centra", since=since - timedelta(hours=1)) == [
        "1001",
        "1002",
        "77",
    ]


def test_inbox_keeps_each_event_once_oldest_first(ledger: Ledger, clock: ManualClock) -> None:
    assert ledger.inbox_add("reveni", "evt-2", '{"id": "evt-2"}', resource_id="R2")
    clock.advance(seconds=1)
    assert ledger.inbox_add("centra", "evt-2", "x=1", event_type="order.updated")
    assert not ledger.inbox_add("reveni", "evt-2", "changed body")
    assert ledger.inbox_add("reveni", "evt-1", "{}", received_at=T0 - timedelta(seconds=5))
    pending = ledger.inbox_pending()
    assert [(e.source, e.event_id) for e in pending] == [
        ("reveni", "evt-1"),
        ("reveni", "evt-2"),
        ("centra", "evt-2"),
    ]
    assert (pending[1].body, pending[1].resource_id) == ('{"id": "evt-2"}', "R2")
    assert pending[2].event_type == "order.updated"
    assert [e.event_id for e in ledger.inbox_pending(source="centra")] == ["evt-2"]
    assert len(ledger.inbox_pending(limit=2)) == 2
    ledger.inbox_processed([pending[0].id, pending[2].id])
    assert [e.event_id for e in ledger.inbox_pending()] == ["evt-2"]


def test_commit_sync_moves_cursor_and_inbox_together(ledger: Ledger, clock: ManualClock) -> None:
    ledger.inbox_add("reveni", "e1", "{}")
    ledger.inbox_add("reveni", "e2", "{}")
    ids = [e.id for e in ledger.inbox_pending()]
    ledger.commit_sync(cursor_name="reveni.returns", cursor_value="c1", inbox_ids=ids[:1])
    assert ledger.cursor("reveni.returns") == "c1"
    assert [e.event_id for e in ledger.inbox_pending()] == ["e2"]
    ledger.commit_sync(cursor_name="reveni.returns", cursor_value=None, inbox_ids=ids)
    assert ledger.cursor("reveni.returns") == "c1"
    assert ledger.inbox_pending() == []


def test_commit_sync_that_fails_changes_nothing(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.set_cursor("reveni.returns", "c0")
    ledger.inbox_add("reveni", "e1", "{}")
    ids = [e.id for e in ledger.inbox_pending()]

    def crash(*_args: object) -> None:
        raise RuntimeError("power cut between cursor and inbox")

    monkeypatch.setattr(Ledger, "_mark_inbox_processed", staticmethod(crash))
    with pytest.raises(RuntimeError, match="power cut"):
        ledger.commit_sync(cursor_name="reveni.returns", cursor_value="c1", inbox_ids=ids)
    assert ledger.cursor("reveni.returns") == "c0"
    assert [e.id for e in ledger.inbox_pending()] == ids


# --------------------------------------------------------------------------- values


def test_datetimes_come_back_as_the_same_instant_in_utc(ledger: Ledger) -> None:
    stockholm = timezone(timedelta(hours=2))
    started = datetime(2026, 10, 25, 2, 30, 15, 123456, tzinfo=stockholm)
    ledger.plan([refund("R1")])
    ledger.record_attempt(
        "refund:R1:rf1",
        started_at=started,
        finished_at=started + timedelta(microseconds=1),
        request_summary="s",
        outcome="done",
    )
    attempt = ledger.attempts("refund:R1:rf1")[0]
    assert attempt.started_at == started
    assert attempt.started_at.utcoffset() == timedelta(0)
    assert attempt.started_at.hour == 0
    assert ledger.due(now=started.astimezone(UTC)) != []
    ledger.inbox_add("centra", "e", "b", received_at=started)
    assert ledger.inbox_pending()[0].received_at.tzinfo == UTC
    with pytest.raises(ValueError, match="naive"):
        ledger.due(now=datetime(2026, 10, 1, 12, 0))
    with pytest.raises(ValueError, match="naive"):
        ledger.record_attempt(
            "refund:R1:rf1",
            started_at=datetime(2026, 10, 1),
            finished_at=None,
            request_summary="s",
            outcome="done",
        )


def test_money_comes_back_as_the_exact_decimal(ledger: Ledger) -> None:
    for amount in ("12.30", "0.10", "123456789012.345678", "-0.01"):
        raised = ledger.raise_exception(
            ReturnException("refund_missing", f"R{amount}", 1, amount=Decimal(amount))
        )
        stored = ledger.exception(raised.id)
        assert stored is not None and stored.amount == Decimal(amount)
        assert str(stored.amount) == amount
    with pytest.raises(TypeError, match="money must be a Decimal"):
        ledger.raise_exception(ReturnException("refund_missing", "RF", 1, amount=0.1))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- opening


def test_reopening_keeps_data_and_restores_a_missing_index(ledger_url: str) -> None:
    with Ledger(ledger_url) as first:
        first.plan([refund("R1")])
        with first._engine.begin() as conn:
            conn.execute(sa.text("DROP INDEX ix_actions_reveni_return_id"))
    with Ledger(ledger_url) as second:
        assert [r.key for r in second.actions()] == ["refund:R1:rf1"]
        with second._engine.connect() as conn:
            names = {ix["name"] for ix in sa.inspect(conn).get_indexes("actions")}
            versions = conn.execute(sa.select(ledger_schema.schema_version.c.version)).scalars()
            assert list(versions) == [SCHEMA_VERSION]
        assert "ix_actions_reveni_return_id" in names


def test_a_newer_schema_is_refused(ledger_url: str) -> None:
    with Ledger(ledger_url) as ledger, ledger._engine.begin() as conn:
        conn.execute(
            sa.insert(ledger_schema.schema_version).values(
                version=SCHEMA_VERSION + 1, applied_at=T0
            )
        )
    with pytest.raises(RuntimeError, match="newer than this returnbridge"):
        Ledger(ledger_url)


def test_sqlite_runs_in_wal_with_a_busy_timeout(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path}/x.db") as ledger, ledger._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_default_url_is_a_sqlite_file_under_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Ledger() as ledger:
        assert ledger.url == "sqlite+pysqlite:///data/returnbridge.db"
    assert (tmp_path / "data" / "returnbridge.db").is_file()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "scheme 'mysql' is not supported"),
        ("postgresql+psycopg2://u@h/db", "scheme 'postgresql\\+psycopg2' is not supported"),
        ("sqlite://", "in-memory"),
        ("not a url", "is not a database URL"),
    ],
)
def test_an_unusable_url_is_refused_with_its_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ledger(url)


def test_the_password_never_shows(postgres_server: object) -> None:
    url = postgres_server.fresh_url()  # type: ignore[attr-defined]
    secret_url = url.replace("postgres@", "postgres:s3cr3t@")
    with Ledger(secret_url.replace("postgresql+psycopg://", "postgresql://")) as ledger:
        assert "s3cr3t" not in f"{ledger} {ledger!r} {ledger.url}"
        assert "***" in ledger.url
        assert ledger.dialect == "postgresql"


def test_adopting_an_effect_centra_already_shows_records_it_done(
    ledger: Ledger, clock: ManualClock
) -> None:
    ledger.plan([create_return("R1"), refund("R1"), refund("R2"), refund("R3")])
    ledger.claim("refund:R2:rf1", expected="pending")  # in flight: its executor settles it
    ledger.claim("refund:R3:rf1", expected="pending")
    ledger.transition("refund:R3:rf1", "in_doubt", expected="in_flight")
    clock.advance(minutes=1)
    adopt = {"reveni_return_id": "R1", "order_number": 1001}
    assert ledger.adopt("return:R1", centra_ref="c-1", **adopt)  # type: ignore[arg-type]
    assert ledger.adopt("restock:R1", centra_ref="s-1", **adopt)  # type: ignore[arg-type]
    assert not ledger.adopt("refund:R2:rf1", centra_ref="x", **adopt)  # type: ignore[arg-type]
    assert ledger.adopt("refund:R3:rf1", centra_ref="p-3", **adopt)  # type: ignore[arg-type]
    assert not ledger.adopt("return:R1", centra_ref="c-2", **adopt)  # type: ignore[arg-type]
    states = {r.key: (r.kind, r.state, r.centra_ref) for r in ledger.actions()}
    assert states == {
        "return:R1": ("create_return", "done", "c-1"),
        "refund:R1:rf1": ("refund", "pending", None),
        "refund:R2:rf1": ("refund", "in_flight", None),
        "refund:R3:rf1": ("refund", "done", "p-3"),
        "restock:R1": ("restock", "done", "s-1"),
    }
    assert ledger.claim("refund:R3:rf1", expected="in_doubt") is None
    with pytest.raises(ValueError, match="not an action key"):
        ledger.adopt("bogus:R1", centra_ref="x", **adopt)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no order number"):
        ledger.adopt("return:R9", reveni_return_id="R9", order_number=None, centra_ref="x")
    assert ledger.adopt("refund:R1:rf1", reveni_return_id="R1", order_number=None, centra_ref="p")
