"""The sync run (returnbridge/sync/run.py) over both simulators: level-triggered, exactly once, and
the cursor moved only after the ledger holds the run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_support import Integration, integration
from typer.testing import CliRunner

from returnbridge.cli import app
from returnbridge.connectors.centra import CentraClient
from returnbridge.connectors.centra.inputs import StockLevel
from returnbridge.demo import scenario_clock
from returnbridge.ledger import ActionRecord
from returnbridge.scenarios import builtin_scenario
from returnbridge.sync.run import ReturnSync
from returnbridge.sync.runtime import open_sync


@pytest.fixture
def showcase(tmp_path: Path) -> Iterator[Integration]:
    with integration(builtin_scenario("showcase"), tmp_path) as it:
        yield it


def open_codes(it: Integration, rid: str) -> set[str]:
    return {e.code for e in it.ledger.exceptions(reveni_return_id=rid, statuses=["open"])}


def test_a_second_run_changes_nothing(showcase: Integration) -> None:
    showcase.walk()
    first = showcase.run()
    assert first.returns_seen == len(showcase.scenario.reveni.returns)
    effects, mutations = showcase.effects(), showcase.mutations()
    assert mutations > 0
    second = showcase.run()
    assert showcase.mutations() == mutations
    assert showcase.effects() == effects
    assert second.actions_planned == 0 and second.exceptions_new == 0


def test_a_run_that_dies_before_its_commit_leaves_the_cursor_and_loses_nothing(
    showcase: Integration, monkeypatch: pytest.MonkeyPatch
) -> None:
    showcase.walk()

    def die(*_: object) -> None:
        raise RuntimeError("killed before the commit")

    with monkeypatch.context() as patch:
        patch.setattr(ReturnSync, "commit", die)
        with pytest.raises(RuntimeError, match="killed"):
            showcase.run()
    assert showcase.ledger.cursor("reveni_returns") is None  # not advanced
    effects, mutations = showcase.effects(), showcase.mutations()
    again = showcase.run()  # reads the same returns again: nothing is sent twice
    assert again.returns_seen == len(showcase.scenario.reveni.returns)
    assert showcase.mutations() == mutations and showcase.effects() == effects
    assert showcase.ledger.cursor("reveni_returns") is not None


def test_returns_are_processed_as_they_move_across_runs(
    showcase: Integration, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Level-triggered: whatever status a run sees, the next run picks up from there."""
    while showcase.walk(steps=7):
        showcase.run()
    showcase.run()
    once = showcase.effects()
    tmp_path = tmp_path_factory.mktemp("all-at-once")
    with integration(builtin_scenario("showcase"), tmp_path) as other:
        other.walk()
        other.run()
        all_at_once = other.effects()
    assert sorted(r["external_id"] for r in once["returns"]) == sorted(
        r["external_id"] for r in all_at_once["returns"]
    )
    assert len(once["stock_changes"]) == len(all_at_once["stock_changes"])
    assert len(once["refunds"]) == len(all_at_once["refunds"])
    assert len(once["orders_created"]) == len(all_at_once["orders_created"])


def test_a_dry_run_describes_the_centra_calls_and_writes_nothing(showcase: Integration) -> None:
    showcase.walk()
    report = showcase.run(dry_run=True)
    assert report.dry_run
    calls = "\n".join(report.planned_calls)
    assert "return:ret_std_1001: createReturn shipment" in calls
    assert showcase.mutations() == 0
    assert showcase.ledger.counts() == {} or sum(showcase.ledger.counts().values()) == 0
    assert showcase.ledger.cursor("reveni_returns") is None


def test_a_replay_of_one_return_leaves_the_cursor_alone(showcase: Integration) -> None:
    showcase.walk()
    report = showcase.run(return_ids=["ret_std_1001"])
    assert report.returns_seen == 1
    assert {r["external_id"] for r in showcase.effects()["returns"]} == {"ret_std_1001"}
    assert showcase.ledger.cursor("reveni_returns") is None


def test_an_exchange_waits_for_stock_and_heals_when_it_returns(showcase: Integration) -> None:
    showcase.walk()
    showcase.run()
    assert "exchange_out_of_stock" in open_codes(showcase, "ret_exch_1008")

    async def restock_jeans() -> None:
        async with CentraClient(showcase.settings.centra) as centra:
            size = (await centra.product_sizes_by_sku(["JEANS-32"]))["JEANS-32"]
            await centra.set_stock(
                warehouse_id=1,
                levels=[StockLevel(variant_id=size.variant_id, size_id=size.id, quantity=3)],
            )

    asyncio.run(restock_jeans())
    report = showcase.run()  # nothing changed in Reveni: the open exception carries it over
    assert report.carried_over >= 1
    assert "exchange_out_of_stock" not in open_codes(showcase, "ret_exch_1008")
    created = showcase.effects()["orders_created"]
    assert any(line["sku"] == "JEANS-32" for order in created for line in order["lines"])


def test_inbox_events_are_fetched_back_and_settled(showcase: Integration) -> None:
    showcase.walk()
    showcase.run()
    body = (
        '{"id": "evt_x", "event": "return.updated", "created": 1, '
        '"data": {"resource_id": "ret_std_1001", "status": "accepted"}}'
    )
    assert showcase.ledger.inbox_add("reveni", "evt_x", body, resource_id="ret_std_1001")
    report = showcase.run()
    assert report.inbox_events == 1
    assert showcase.ledger.inbox_pending() == []


def _run_sending_no_refunds(it: Integration) -> None:
    """One sync run whose executor sends everything but refunds: they stay pending, as when a
    run ends (budget, crash) between planning a refund and sending it."""

    async def once() -> None:
        clock = scenario_clock(it.scenario)
        async with open_sync(it.settings, ledger=it.ledger, clock=clock) as sync:
            # The executor runs alongside planning (one run per sync run): it is shown no due
            # refund, whenever the planner records one.
            due = it.ledger.due

            def no_refunds(**kwargs: Any) -> list[ActionRecord]:
                return [a for a in due(**kwargs) if a.kind != "refund"]

            sync.executor.ledger.due = no_refunds  # type: ignore[method-assign]
            try:
                await sync.run()
            finally:
                del sync.executor.ledger.due

    asyncio.run(once())


def test_a_pending_refund_is_blocked_when_a_hand_made_refund_appears_and_retry_sends_it(
    showcase: Integration,
) -> None:
    showcase.walk()
    _run_sending_no_refunds(showcase)
    (pending,) = showcase.ledger.actions(reveni_return_ids=["ret_std_1001"], kinds=["refund"])
    assert pending.state == "pending"
    showcase.manual_refund(1001, "299.00")  # CX refunds the shopper by hand meanwhile
    showcase.run()
    assert showcase.ledger.action(pending.key).state == "blocked"  # type: ignore[union-attr]
    psp = [r["amount"] for r in showcase.effects()["refunds"] if r["order_number"] == 1001]
    assert sorted(psp) == ["299.00", "49.00"]  # the hand-made ones: nothing sent twice
    (held,) = showcase.ledger.exceptions(reveni_return_id="ret_std_1001")
    assert (held.code, held.status, held.action_key) == ("duplicate_refund", "open", pending.key)
    # Finance: it was for something else; send it all the same.
    retried = CliRunner().invoke(
        app, ["exceptions", "retry", str(held.id), "--confirm"], env=showcase.env()
    )
    assert retried.exit_code == 0 and "released" in retried.stdout, retried.output
    assert showcase.ledger.action(pending.key).state == "pending"  # type: ignore[union-attr]
    showcase.run()
    assert showcase.ledger.action(pending.key).state == "done"  # type: ignore[union-attr]
    psp = [r["amount"] for r in showcase.effects()["refunds"] if r["order_number"] == 1001]
    assert sorted(psp) == ["299.00", "299.00", "49.00"]
    assert showcase.ledger.exception(held.id).status == "retrying"  # type: ignore[union-attr]
    showcase.run()  # credited now: nothing to hold, the exception heals
    assert showcase.ledger.exception(held.id).status == "resolved"  # type: ignore[union-attr]


def test_held_parts_are_blocked_and_a_release_puts_every_part_back(
    showcase: Integration,
) -> None:
    from dataclasses import replace

    from ledger_support import refund

    from returnbridge.core.codes import ReturnException
    from returnbridge.core.planner import ReturnPlan
    from returnbridge.sync.run import HELD_REFUND, SyncReport

    parts = [replace(refund("r9"), key=f"refund:r9:rf1:{sid}") for sid in (11, 12)]
    showcase.ledger.plan(parts)
    held = ReturnException("duplicate_refund", "r9", 1001, detail="made by hand")
    plan = ReturnPlan("r9", 1001, (), (held,), {}, (), False, held=tuple(a.key for a in parts))

    async def record(*plans: ReturnPlan) -> None:
        clock = scenario_clock(showcase.scenario)
        async with open_sync(showcase.settings, ledger=showcase.ledger, clock=clock) as sync:
            sync.record({p.reveni_return_id: p for p in plans}, SyncReport())

    asyncio.run(record(plan))
    rows = showcase.ledger.actions(reveni_return_ids=["r9"])
    assert [(r.state, r.last_error) for r in rows] == [("blocked", HELD_REFUND)] * 2
    (exc,) = showcase.ledger.exceptions(reveni_return_id="r9")
    assert exc.action_key == parts[0].key
    assert showcase.ledger.retry_exception(exc.id) == [parts[0].key]  # one key per exception
    asyncio.run(record(replace(plan, held=())))  # released: the planner holds nothing
    assert {r.state for r in showcase.ledger.actions(reveni_return_ids=["r9"])} == {"pending"}


def test_a_retried_exception_is_checked_again_next_run_and_open_again_if_still_found(
    showcase: Integration,
) -> None:
    showcase.walk()
    showcase.run()
    showcase.run()  # takes in the payment provider's answer to the refund it left pending
    baseline = showcase.run().carried_over  # returns re-checked every run (stock, read-back)
    (exc,) = showcase.ledger.exceptions(
        code="quantity_exceeds_shipped", reveni_return_id="ret_part_1003"
    )
    showcase.ledger.retry_exception(exc.id)  # Ops fixed something in Centra, they think
    assert showcase.run().carried_over == baseline + 1
    again = showcase.ledger.exception(exc.id)
    assert again is not None and (again.status, again.attempts) == ("open", exc.attempts + 1)
    assert showcase.run().carried_over == baseline  # checked once, not every run
    # a gap the reconciliation found is re-checked by the reconciliation, not by every sync run
    from returnbridge.core.codes import ReturnException

    gap = showcase.ledger.raise_exception(ReturnException("refund_missing", "ret_std_1001", 1001))
    showcase.ledger.retry_exception(gap.id)
    assert showcase.run().carried_over == baseline
