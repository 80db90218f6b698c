"""Refunds asked of an asynchronous PSP (a `REFUND_REQUEST` left PENDING, later settled by a
`REFUND` or refused by a `REFUND_FAILED` with its reference): in progress, neither missing nor a
duplicate, until they wait longer than `refund_pending_max`; in the gap rules, in the planner,
and through an incremental reconciliation whose only change is the clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from builders import (
    T0,
    item,
    ledger_row,
    own_return,
    priced_order,
    refund_entry,
    reveni_refund,
    reveni_return_of,
)
from polars.testing import assert_frame_equal
from reconcile_builders import DAY, NOW, Item, World

from returnbridge.connectors.centra.models import PaymentEntry
from returnbridge.connectors.reveni.models import Return as ReveniReturn
from returnbridge.core.codes import Owner
from returnbridge.core.planner import PlannerConfig, ReturnPlan, plan_returns
from returnbridge.core.validation import OrderHistory
from returnbridge.ledger.records import ActionRecord
from returnbridge.reconcile.incremental import current_gaps
from returnbridge.reconcile.rules import GapConfig, compute_gaps
from returnbridge.reconcile.tables import GAPS
from returnbridge.reconcile.warehouse import Warehouse

TEE, JEANS = "TEE-BLK-M", "JEANS-32"
REQUEST, REFUND, REFUSED = "REFUND_REQUEST", "REFUND", "REFUND_FAILED"
MAX = GapConfig().refund_pending_max  # 48 hours
HOUR = timedelta(hours=1)


# ------------------------------------------------------------------------------ rules


def gaps(world: World, *, now: datetime = NOW, **config: Any) -> pl.DataFrame:
    return compute_gaps(world.snapshot(), config=GapConfig(**config), now=now)


def found(world: World, **config: Any) -> list[tuple[object, ...]]:
    frame = gaps(world, **config)
    return sorted(
        frame.select("code", "reveni_return_id", "order_number", "sku", "amount_minor").rows()
    )


def codes(world: World, **config: Any) -> list[str]:
    return sorted(gaps(world, **config)["code"].to_list())


def payment(
    w: World,
    order: int,
    centra_return_id: int | None,
    entry_type: str,
    status: str,
    amount: int,
    *,
    at: datetime,
    reference: str | None = "psp-1",
    method: str = "adyen",
) -> int:
    """One Centra payment entry, at `at`, with the PSP's reference."""
    return w.credit(
        order,
        centra_return_id,
        amount,
        status=status,
        payment_method=method,
        entry_type=entry_type,
        reference=reference,
        at=at,
    )


def awaiting_credit(
    w: World, *, method: str = "original_payment_method", paid_by: str = "merchant"
) -> int:
    """Order 1001 with Reveni return ret_1 accepted and refunded 299.00 SEK, its Centra return
    and its restock: everything but the credit. Returns the Centra return id."""
    w.order(1001)
    cid = w.centra_return("ret_1", 1001, [(TEE, 1)], total=29900)
    w.reveni("ret_1", 1001, [Item(TEE)], refund=29900, method=method, paid_by=paid_by)
    w.restock("ret_1", [(TEE, 1)])
    return cid


def test_a_young_pending_request_is_neither_missing_nor_duplicate_nor_too_long() -> None:
    w = World()
    cid = awaiting_credit(w)
    assert found(w) == [("refund_missing", "ret_1", 1001, None, 29900)]  # without it
    payment(w, 1001, cid, REQUEST, "PENDING", 29900, at=NOW - 2 * HOUR)
    assert found(w) == []


def test_a_request_unanswered_longer_than_refund_pending_max_is_raised_once() -> None:
    w = World()
    cid = awaiting_credit(w)
    asked = NOW - MAX - 2 * HOUR  # 2026-10-18 10:00
    entry = payment(w, 1001, cid, REQUEST, "PENDING", 29900, at=asked)
    got = gaps(w)
    assert got.select(
        "code", "owner", "order_number", "reveni_return_id", "sku", "amount_minor", "currency",
        "since", "age_days", "fixable",
    ).rows() == [
        ("refund_pending_too_long", Owner.FINANCE.value, 1001, "ret_1", None, 29900, "SEK",
         asked, 2, False),
    ]  # fmt: skip
    assert got["detail"][0] == (
        f"refund request {entry} of 299.00 SEK asked of the PSP on 2026-10-18 10:00 UTC, "
        "no answer since"
    )
    assert got.schema == GAPS
    # still in progress: never refund_missing, whatever its age; a longer max waits more
    assert found(w, refund_pending_max=MAX + 3 * HOUR) == []


def test_refund_pending_max_is_inclusive_at_its_boundary() -> None:
    w = World()
    cid = awaiting_credit(w)
    payment(w, 1001, cid, REQUEST, "PENDING", 29900, at=NOW - MAX)
    assert codes(w) == ["refund_pending_too_long"]
    assert codes(w, now=NOW - timedelta(seconds=1)) == []


def test_pending_requests_of_one_return_sum_in_one_gap_from_the_oldest() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(TEE), Item(JEANS, price=49900)], refund=79800)
    a = w.centra_return("ret_1", 1001, [(TEE, 1)], total=29900, shipment=1)
    b = w.centra_return("ret_1", 1001, [(JEANS, 1)], total=49900, shipment=2)
    w.restock("ret_1", [(TEE, 1), (JEANS, 1)])
    first = payment(w, 1001, a, REQUEST, "PENDING", 29900, at=NOW - MAX - 5 * HOUR,
                    reference="psp-a")  # fmt: skip
    second = payment(w, 1001, b, REQUEST, "PENDING", 49900, at=NOW - MAX - HOUR,
                     reference="psp-b")  # fmt: skip
    got = gaps(w)
    assert got.select("code", "reveni_return_id", "amount_minor", "since").rows() == [
        ("refund_pending_too_long", "ret_1", 79800, NOW - MAX - 5 * HOUR)
    ]
    assert got["detail"][0].startswith(f"refund request {first}, {second} of 798.00 SEK")


def test_a_split_return_with_one_part_answered_waits_for_the_other() -> None:
    w = World()
    w.order(1001)
    w.reveni("ret_1", 1001, [Item(TEE), Item(JEANS, price=49900)], refund=79800)
    a = w.centra_return("ret_1", 1001, [(TEE, 1)], total=29900, shipment=1)
    b = w.centra_return("ret_1", 1001, [(JEANS, 1)], total=49900, shipment=2)
    w.restock("ret_1", [(TEE, 1), (JEANS, 1)])
    payment(w, 1001, a, REQUEST, "PENDING", 29900, at=NOW - 6 * HOUR, reference="psp-a")
    payment(w, 1001, b, REQUEST, "PENDING", 49900, at=NOW - 5 * HOUR, reference="psp-b")
    assert found(w) == []
    payment(w, 1001, a, REFUND, "SUCCESS", 29900, at=NOW - 4 * HOUR, reference="psp-a")
    # part b is still under way at the PSP: nothing to report yet, as in the planner
    assert found(w) == []


def test_a_request_refused_by_a_refund_failed_entry_is_refund_failed_at_gateway() -> None:
    w = World()
    cid = awaiting_credit(w)
    payment(w, 1001, cid, REQUEST, "PENDING", 29900, at=NOW - MAX - 5 * HOUR)
    payment(w, 1001, cid, REFUSED, "FAILED", 29900, at=NOW - MAX - 4 * HOUR)
    assert found(w) == [("refund_failed_at_gateway", "ret_1", 1001, None, 29900)]
    # the refusal's own status does not matter: REFUND_FAILED is a failure
    w = World()
    cid = awaiting_credit(w)
    payment(w, 1001, cid, REQUEST, "PENDING", 29900, at=NOW - 3 * HOUR)
    payment(w, 1001, cid, REFUSED, "SUCCESS", 29900, at=NOW - 2 * HOUR)
    assert found(w) == [("refund_failed_at_gateway", "ret_1", 1001, None, 29900)]


def test_a_refusal_of_another_reference_leaves_the_request_pending() -> None:
    w = World()
    cid = awaiting_credit(w)
    payment(w, 1001, cid, REQUEST, "PENDING", 29900, at=NOW - 3 * HOUR)
    payment(w, 1001, cid, REFUSED, "FAILED", 29900, at=NOW - 2 * HOUR, reference="psp-other")
    assert found(w) == []  # still under way: not failed at the gateway, not missing


def test_a_request_settled_by_a_refund_entry_is_the_credit() -> None:
    for request_status in ("PENDING", "SUCCESS"):  # whether or not Centra flips the request
        w = World()
        cid = awaiting_credit(w)
        payment(w, 1001, cid, REQUEST, request_status, 29900, at=NOW - MAX - 5 * HOUR)
        payment(w, 1001, cid, REFUND, "SUCCESS", 29900, at=NOW - MAX - 4 * HOUR)
        assert found(w) == [], request_status  # one credit, not two; not pending


def test_a_request_settled_for_another_amount_is_compared_by_the_settlement() -> None:
    w = World()
    cid = awaiting_credit(w)
    payment(w, 1001, cid, REQUEST, "PENDING", 29900, at=NOW - 5 * HOUR)
    payment(w, 1001, cid, REFUND, "SUCCESS", 25000, at=NOW - 4 * HOUR)
    got = gaps(w)
    assert got["code"].to_list() == ["refund_amount_mismatch"]
    assert got["detail"][0] == "Reveni refunded 299.00 SEK; Centra credited 250.00 SEK"


def test_a_psp_request_on_a_refund_reveni_paid_is_a_duplicate_only_once_settled() -> None:
    # returnbridge recorded Reveni's payment with a non-PSP credit; someone also asked the PSP
    w = World()
    w.order(1001)
    cid = w.done("ret_1", 1001, [Item(TEE)], refund=29900, method="bank_transfer",
                 paid_by="reveni")  # fmt: skip
    payment(w, 1001, cid, REQUEST, "PENDING", 29900, at=NOW - 3 * HOUR)
    assert found(w) == []  # nothing paid twice yet
    payment(w, 1001, cid, REFUND, "SUCCESS", 29900, at=NOW - 2 * HOUR)
    assert codes(w) == ["duplicate_refund"]
    # and without the non-PSP credit: the PSP request is under way, then it pays twice
    w = World()
    cid = awaiting_credit(w, method="bank_transfer", paid_by="reveni")
    payment(w, 1001, cid, REQUEST, "PENDING", 29900, at=NOW - 3 * HOUR)
    assert found(w) == []
    payment(w, 1001, cid, REFUND, "SUCCESS", 29900, at=NOW - 2 * HOUR)
    assert found(w) == [("duplicate_refund", "ret_1", 1001, None, 29900)]


def test_a_pending_refund_made_on_the_order_covers_a_refund_without_credit() -> None:
    w = World()
    awaiting_credit(w)
    payment(w, 1001, None, REQUEST, "PENDING", 29900, at=NOW - MAX - 5 * HOUR)
    # the credit, under way: not missing, not unmatched, and not this rule's (not on a return)
    assert found(w) == []


def test_a_pending_refund_made_on_the_order_is_never_unmatched_until_it_settles() -> None:
    w = World()
    awaiting_credit(w)
    payment(w, 1001, None, REQUEST, "PENDING", 4900, at=NOW - 5 * HOUR, reference="psp-9")
    assert found(w) == [("refund_missing", "ret_1", 1001, None, 29900)]  # another amount
    payment(w, 1001, None, REFUND, "SUCCESS", 4900, at=NOW - 4 * HOUR, reference="psp-9")
    assert found(w) == [
        ("refund_missing", "ret_1", 1001, None, 29900),
        ("unmatched_centra_refund", None, 1001, None, 4900),
    ]


def test_a_pending_refund_made_on_the_order_repeats_a_credit_only_once_settled() -> None:
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE)], refund=29900)
    payment(w, 1001, None, REQUEST, "PENDING", 29900, at=NOW - 5 * HOUR)
    assert found(w) == []
    payment(w, 1001, None, REFUND, "SUCCESS", 29900, at=NOW - 4 * HOUR)
    assert found(w) == [("duplicate_refund", "ret_1", 1001, None, 29900)]


def test_an_old_pending_request_on_a_centra_return_returnbridge_did_not_create_is_not_raised() -> (
    None
):
    w = World()
    w.order(1001)
    w.done("ret_1", 1001, [Item(TEE)], refund=29900)
    manual = w.centra_return(None, 1001, [(TEE, 1)], total=4900)
    payment(w, 1001, manual, REQUEST, "PENDING", 4900, at=NOW - MAX - 5 * HOUR)
    assert found(w) == []


# ------------------------------------------------------------------------------ planner

CONFIG = PlannerConfig(returns_warehouse_id=2)
PLAN_NOW = T0 + timedelta(days=10)


def entry(entry_id: int, entry_type: str, status: str, minutes: int, **kw: Any) -> dict[str, Any]:
    """A refund entry as Centra shows it, `minutes` after T0, with reference psp-1."""
    made = refund_entry(entry_id, "10.00", status=status, entry_type=entry_type,
                        reference=kw.pop("reference", "psp-1"), **kw)  # fmt: skip
    return {**made, "createdAt": (T0 + timedelta(minutes=minutes)).isoformat()}


def psp_return(
    entries: Sequence[dict[str, Any]], method: str = "original_payment_method"
) -> tuple[ReveniReturn, OrderHistory]:
    """Reveni return r1 refunded 10.00 EUR (by the PSP by default) and its Centra return 77,
    showing `entries` as its refund payment history."""
    order = priced_order(1, [("A", 1, "10.00")])
    ret = reveni_return_of(
        "r1", 1, [item("A", restock=False)], refunds=[reveni_refund("f1", method, "10.00")]
    )
    centra = own_return(order, "r1", [(1101, 1)], rid=77, refunds=entries)
    return ret, OrderHistory(order, (centra,))


def plan(
    ret: ReveniReturn, history: OrderHistory, ledger: Sequence[ActionRecord] = ()
) -> ReturnPlan:
    return plan_returns(
        [ret],
        {history.order.number: history},
        {row.key: row for row in ledger},
        stock={},
        config=CONFIG,
        now=PLAN_NOW,
    )[ret.id]


def test_the_planner_waits_for_a_pending_request_and_never_asks_again() -> None:
    ret, history = psp_return([entry(8, REQUEST, "PENDING", 5)])
    p = plan(ret, history)
    assert (p.actions, p.exceptions, p.waiting) == ((), (), ("refund:r1:f1",))
    assert p.adopted == {"return:r1": "77"} and not p.complete
    # an earlier synchronous refusal does not make it failed while a request is under way
    refused = entry(7, REFUND, "FAILED", 1, reference="psp-0")
    ret, history = psp_return([refused, entry(8, REQUEST, "PENDING", 5)])
    p = plan(ret, history)
    assert (p.actions, p.exceptions, p.waiting) == ((), (), ("refund:r1:f1",))
    # without the request, the same return gets its refund
    ret, history = psp_return([])
    assert [a.key for a in plan(ret, history).actions] == ["refund:r1:f1"]


def test_the_planner_leaves_a_pending_request_the_executor_awaits_to_it() -> None:
    ret, history = psp_return([])
    (refund,) = plan(ret, history).actions
    ret, history = psp_return([entry(8, REQUEST, "PENDING", 5)])
    p = plan(ret, history, [ledger_row(refund, "in_doubt")])
    assert (p.actions, p.exceptions, p.waiting, p.complete) == ((), (), (), False)


def test_a_refund_an_earlier_plan_left_pending_is_held_once_centra_shows_a_request() -> None:
    ret, history = psp_return([])
    (refund,) = plan(ret, history).actions  # planned; the run ended before it was sent
    ret, history = psp_return([entry(8, REQUEST, "PENDING", 5)])  # asked in Centra meanwhile
    p = plan(ret, history, [ledger_row(refund, "pending")])
    assert p.actions == () and p.waiting == ("refund:r1:f1",)
    assert p.held == ("refund:r1:f1",)  # so the sync blocks it (`SyncRun._block_held`)


def test_the_planner_adopts_a_settled_asynchronous_refund_once() -> None:
    for request_status in ("PENDING", "SUCCESS"):
        ret, history = psp_return(
            [entry(8, REQUEST, request_status, 5), entry(9, REFUND, "SUCCESS", 50)]
        )
        p = plan(ret, history)
        assert p.adopted == {"return:r1": "77", "refund:r1:f1": "9"}, request_status
        # one refund, not "2 successful refunds"
        assert (p.actions, p.exceptions, p.waiting, p.complete) == ((), (), (), True)


def test_the_planner_flags_a_request_the_psp_refused_and_does_not_retry() -> None:
    ret, history = psp_return([entry(8, REQUEST, "PENDING", 5), entry(9, REFUSED, "FAILED", 50)])
    p = plan(ret, history)
    assert p.actions == () and p.waiting == () and not p.complete
    assert [(e.code, e.owner) for e in p.exceptions] == [
        ("refund_failed_at_gateway", Owner.FINANCE)
    ]
    assert "refund:r1:f1" not in p.adopted


def test_a_pending_refund_made_by_hand_on_the_order_is_not_paid_again() -> None:
    ret, history = psp_return([])
    request = PaymentEntry.model_validate(entry(55, REQUEST, "PENDING", 5))
    order = history.order.model_copy(
        update={"payment_history": [*history.order.payment_history, request]}
    )
    p = plan(ret, OrderHistory(order, history.returns))
    assert p.actions == () and p.held == ("refund:r1:f1",)
    assert [e.code for e in p.exceptions] == ["duplicate_refund"]
    assert "payment entry 55" in p.exceptions[0].detail


# ------------------------------------------------------------------------------ incremental


def _rows(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.select(GAPS.names())
    return frame.sort(frame.columns, nulls_last=True)


def _clock_only_world() -> World:
    """ret_1..ret_3 on three orders, each awaiting its PSP's answer; ret_4 fully processed."""
    w = World()
    for n, status in enumerate(("PENDING", "PENDING", "SUCCESS"), start=1):
        w.order(1000 + n)
        cid = w.centra_return(f"ret_{n}", 1000 + n, [(TEE, 1)], total=29900)
        w.reveni(f"ret_{n}", 1000 + n, [Item(TEE)], refund=29900)
        w.restock(f"ret_{n}", [(TEE, 1)])
        # asked 47 hours before NOW: not too long yet; ret_3's request was answered
        payment(w, 1000 + n, cid, REQUEST, status, 29900, at=NOW - MAX + HOUR,
                reference=f"psp-{n}")  # fmt: skip
    w.order(1004)
    w.done("ret_4", 1004, [Item(TEE)], refund=29900)
    return w


def test_only_the_clock_passing_refund_pending_max_is_found_incrementally(tmp_path: Path) -> None:
    w = _clock_only_world()
    config = GapConfig()
    with Warehouse(tmp_path / "warehouse.duckdb") as wh:
        wh.load(w.snapshot().frames(), snapshot_date=DAY, source="history")
        first = current_gaps(wh, config=config, now=NOW)
        assert first.mode == "full" and first.gaps.height == 0
        later = NOW + 2 * HOUR  # no load since: only the clock moved
        after = current_gaps(wh, config=config, now=later)
        full = compute_gaps(wh.snapshot(), config=config, now=later)
    assert after.mode == "incremental", after.reason
    assert full.select("code", "reveni_return_id").rows() == [
        ("refund_pending_too_long", "ret_1"),
        ("refund_pending_too_long", "ret_2"),
    ]
    assert_frame_equal(_rows(after.gaps), _rows(full))
    # the recomputation was about the orders with a request pending, not everything
    assert after.scope_returns == 2


def test_a_refund_entry_left_pending_is_found_incrementally_when_it_waits_too_long(
    tmp_path: Path,
) -> None:
    w = World()
    cid = awaiting_credit(w)
    payment(w, 1001, cid, REFUND, "PENDING", 29900, at=NOW - MAX + HOUR)
    config = GapConfig()
    later = NOW + 2 * HOUR
    with Warehouse(tmp_path / "warehouse.duckdb") as wh:
        wh.load(w.snapshot().frames(), snapshot_date=DAY, source="history")
        assert current_gaps(wh, config=config, now=NOW).gaps.height == 0
        after = current_gaps(wh, config=config, now=later)  # no load since
        full = compute_gaps(wh.snapshot(), config=config, now=later)
    assert full["code"].to_list() == ["refund_pending_too_long"]
    assert after.mode == "incremental", after.reason
    assert_frame_equal(_rows(after.gaps), _rows(full))


def test_a_refund_pending_too_long_heals_incrementally_when_the_psp_answers(
    tmp_path: Path,
) -> None:
    w = _clock_only_world()
    config = GapConfig()
    later = NOW + 2 * HOUR
    with Warehouse(tmp_path / "warehouse.duckdb") as wh:
        wh.load(w.snapshot().frames(), snapshot_date=DAY, source="history")
        assert current_gaps(wh, config=config, now=later).gaps.height == 2
        # the PSP answers ret_1's request: order 1001's payments reloaded
        payments = wh.snapshot().centra_payments.filter(pl.col("order_number") == 1001)
        answer = payments.with_columns(
            entry_id=pl.lit(999, pl.Int64),
            entry_type=pl.lit(REFUND),
            status=pl.lit("SUCCESS"),
            created_at=pl.lit(later),
        )
        wh.load({"centra_payments": pl.concat([payments, answer])}, snapshot_date=DAY,
                source="psp answer")  # fmt: skip
        after = current_gaps(wh, config=config, now=later + HOUR)
        full = compute_gaps(wh.snapshot(), config=config, now=later + HOUR)
    assert after.mode == "incremental", after.reason
    assert full.select("code", "reveni_return_id").rows() == [("refund_pending_too_long", "ret_2")]
    assert_frame_equal(_rows(after.gaps), _rows(full))
