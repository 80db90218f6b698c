"""Refunds through an asynchronous PSP (docs/architecture.md#refunds-at-the-psp): a refund request
Centra leaves PENDING is a refund in progress. The sync never asks for a second one while it
waits, reads it again until the PSP answers, ends it done when paid and failed with
`refund_failed_at_gateway` (Finance) when refused, also when the answer to the refund write was
lost (a timeout after Centra committed it)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sync_support import Integration, integration

from returnbridge.demo import scenario_clock
from returnbridge.scenario import Scenario
from returnbridge.scenarios import builtin_scenario
from returnbridge.sync.outcomes import PSP_PENDING
from returnbridge.sync.run import SyncReport
from returnbridge.sync.runtime import open_sync


def asynchronous(scenario: Scenario) -> Scenario:
    """The scenario with every order's PSP answering refunds later."""
    orders = [o.model_copy(update={"psp": "async"}) for o in scenario.centra.orders]
    return scenario.model_copy(
        update={"centra": scenario.centra.model_copy(update={"orders": orders})}
    )


class Steady(Integration):
    """An integration whose runs share one clock (moving with real time), as one deployment's
    runs do: what a run schedules for later is due in a later run."""

    def run(self, **kwargs: Any) -> SyncReport:
        clock = self.__dict__.setdefault("clock", scenario_clock(self.scenario))

        async def once() -> SyncReport:
            async with open_sync(self.settings, ledger=self.ledger, clock=clock) as sync:
                return await sync.run(**kwargs)

        return asyncio.run(once())


@pytest.fixture
def showcase(tmp_path: Path) -> Iterator[Integration]:
    with integration(asynchronous(builtin_scenario("showcase")), tmp_path) as it:
        sync = it.settings.sync.model_copy(update={"psp_recheck_seconds": 0})
        settings = it.settings.model_copy(update={"sync": sync})
        yield Steady(it.scenario, settings, it.ledger, it.centra, it.reveni)


def psp_refunds(it: Integration) -> list[dict[str, Any]]:
    """The refunds returnbridge asked of Centra's PSP (not the scenario's hand-made ones)."""
    return [r for r in it.effects()["refunds"] if r["via_psp"] and r["return_id"] is not None]


def refund_actions(it: Integration) -> dict[str, tuple[str, str | None]]:
    return {a.key: (a.state, a.last_error) for a in it.ledger.actions(kinds=["refund"])}


def settle(it: Integration) -> list[dict[str, Any]]:
    return it.answer_refunds()


def test_a_pending_refund_waits_and_is_never_asked_twice(showcase: Integration) -> None:
    showcase.walk()
    first = showcase.run()
    asked = psp_refunds(showcase)
    assert asked and {r["status"] for r in asked} == {"PENDING"}
    assert all(r["asynchronous"] for r in asked)
    waiting = {k: e for k, (s, e) in refund_actions(showcase).items() if s == "in_doubt"}
    assert len(waiting) == len(asked)
    assert all(e is not None and e.startswith(PSP_PENDING) for e in waiting.values())
    assert sum(len(r.awaiting_psp) for r in first.executed) == len(asked)
    codes = {e.code for e in showcase.ledger.exceptions(statuses=["open"])}
    assert "action_in_doubt" not in codes and "refund_post_failed" not in codes

    mutations = showcase.mutations()
    for _ in range(2):  # the PSP has not answered: read again, nothing sent
        showcase.run()
        assert showcase.mutations() == mutations
        assert psp_refunds(showcase) == asked

    answers = settle(showcase)
    assert len(answers) == len(asked)
    showcase.run()
    final = psp_refunds(showcase)
    assert len(final) == len(asked)  # still one request per refund
    by_order = {r["order_number"]: r["status"] for r in final}
    assert by_order.pop(1004) == "FAILED"  # the showcase's failing gateway
    assert set(by_order.values()) == {"SUCCESS"}
    states = refund_actions(showcase)
    failed = [k for k, (s, _) in states.items() if s == "failed"]
    assert len(failed) == 1 and "ret_same_1004" in failed[0]
    assert {s for k, (s, _) in states.items() if k not in failed} == {"done"}
    (gateway,) = showcase.ledger.exceptions(reveni_return_id="ret_same_1004", statuses=["open"])
    assert (gateway.code, gateway.owner) == ("refund_failed_at_gateway", "finance")
    assert showcase.mutations() == mutations  # the answers were read, nothing sent again


def test_a_lost_answer_to_an_asynchronous_refund_is_read_back_as_pending(
    showcase: Integration,
) -> None:
    showcase.walk()
    # Every Centra write commits and then times out: the sync never sees an answer.
    faults = {"seed": 3, "timeout_after_commit_rate": 1.0, "stall_seconds": 0.2}
    showcase.centra.post("/_sim/faults", json=faults).raise_for_status()
    for _ in range(6):
        showcase.run()
    showcase.centra.post("/_sim/faults", json={"timeout_after_commit_rate": 0.0})
    counters = showcase.centra.get("/_sim/counters").raise_for_status().json()
    assert counters["timeouts_after_commit"] >= 6  # every refund's answer was lost
    asked = psp_refunds(showcase)
    assert asked and {r["status"] for r in asked} == {"PENDING"}
    per_return: dict[int, int] = {}
    for r in asked:
        per_return[r["return_id"]] = per_return.get(r["return_id"], 0) + 1
    assert set(per_return.values()) == {1}  # never asked twice
    settle(showcase)
    for _ in range(3):
        showcase.run()
    final = psp_refunds(showcase)
    assert len(final) == len(asked)
    assert sum(r["status"] == "SUCCESS" for r in final) == len(asked) - 1
    assert {s for s, _ in refund_actions(showcase).values()} == {"done", "failed"}


def test_centra_order_webhook_has_a_waiting_refund_read_at_once(showcase: Integration) -> None:
    slow = showcase.settings.sync.model_copy(update={"psp_recheck_seconds": 3600})
    showcase.settings = showcase.settings.model_copy(update={"sync": slow})
    showcase.walk()
    showcase.run()
    waiting = [a.key for a in showcase.ledger.actions(kinds=["refund"], states=["in_doubt"])]
    assert len(waiting) == len(psp_refunds(showcase))
    settle(showcase)
    showcase.run()
    # Re-planning the returns shows the paid refunds, adopted; the refused one waits its hour.
    states = {a.key: a.state for a in showcase.ledger.actions(keys=waiting)}
    refused = next(k for k in waiting if "ret_same_1004" in k)
    assert states.pop(refused) == "in_doubt"
    assert set(states.values()) == {"done"}
    # Centra's webhook about its order (as the receiver stores it) has it read now.
    body = '{"type":"order","action":"update","date":null,"id":"1004"}'
    showcase.ledger.inbox_add(
        "centra", "order:1004:update:", body, resource_id="1004", event_type="order.update"
    )
    showcase.run()
    assert showcase.ledger.action(refused).state == "failed"  # type: ignore[union-attr]
    (gateway,) = showcase.ledger.exceptions(reveni_return_id="ret_same_1004", statuses=["open"])
    assert gateway.code == "refund_failed_at_gateway" and gateway.action_key == refused
    assert not showcase.ledger.inbox_pending()


def test_hasten_moves_only_what_waits_for_the_psp_on_those_orders(tmp_path: Path) -> None:
    from ledger_support import refund

    from returnbridge.ledger import Ledger

    with Ledger(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        ledger.plan([refund("r1"), refund("r2")])
        keys = [a.key for a in ledger.actions()]
        later = datetime.now(UTC) + timedelta(hours=1)
        for key, error in zip(
            keys, [f"{PSP_PENDING}: request 7", "read back too soon"], strict=True
        ):
            ledger.claim(key, expected="pending")
            ledger.transition(key, "in_doubt", expected="in_flight", error=error, not_before=later)
        orders = {a.order_number for a in ledger.actions()}
        assert ledger.hasten(orders, kind="refund", error_prefix=PSP_PENDING) == keys[:1]
        assert ledger.hasten(orders, kind="refund", error_prefix=PSP_PENDING) == []  # due now
        assert ledger.hasten([], kind="refund", error_prefix=PSP_PENDING) == []
        assert ledger.action(keys[1]).not_before == later  # type: ignore[union-attr]
