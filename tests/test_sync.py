"""The sync run (returnbridge/sync.py) over both simulators: level-triggered, exactly once, and
the cursor moved only after the ledger holds the run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_support import Integration, integration

from returnbridge.connectors.centra import CentraClient
from returnbridge.connectors.centra.inputs import StockLevel
from returnbridge.scenarios import builtin_scenario
from returnbridge.sync import ReturnSync


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
