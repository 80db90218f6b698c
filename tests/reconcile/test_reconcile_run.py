"""The daily reconciliation end to end: both simulators over loopback, a ledger file, a DuckDB
warehouse file and a Slack Web API stand-in, wired as `returnbridge reconcile` wires them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from sync_support import Integration, integration

from returnbridge.reconcile.warehouse import Warehouse
from returnbridge.scenarios import builtin_scenario
from returnbridge.scenarios.generate import generate_scenario
from returnbridge.simulators.slack import SlackStandIn
from returnbridge.sync.settings import SyncSettings

MENTIONS = {"finance": "S0FIN", "ops": "S0OPS", "cx": "S0CX"}


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


def settle(it: Integration, runs: int = 6) -> None:
    """Walk every history and sync until the ledger owes nothing."""
    it.walk()
    for _ in range(runs):
        it.run()
        counts = it.ledger.counts()
        if not any(counts.get(s, 0) for s in ("pending", "in_flight", "in_doubt")):
            return
    raise AssertionError(f"the sync did not settle: {it.ledger.counts()}")


@pytest.fixture
def showcase(tmp_path: Path, slack: SlackStandIn) -> Iterator[Integration]:
    # the product's default first look-back: the July return is before it
    with integration(
        builtin_scenario("showcase"),
        tmp_path,
        slack=slack.settings(mentions=MENTIONS),
        initial_look_back=SyncSettings().initial_look_back,
    ) as it:
        settle(it)
        it.manual_refund(1016, "299.00")  # CX refunds ret_dup_1016 again by hand
        yield it


def gap_set(gaps: list[dict[str, object]]) -> set[tuple[object, ...]]:
    return {(g["code"], g["reveni_return_id"], g["order_number"], g["outcome"]) for g in gaps}


def test_the_plants_are_found_with_owners_and_the_fixable_ones_healed(
    showcase: Integration, slack: SlackStandIn
) -> None:
    report = showcase.reconcile()
    assert gap_set(report.gaps) >= {
        ("duplicate_refund", "ret_dup_1016", 1016, "still_open"),
        ("unmatched_centra_refund", None, 1001, "still_open"),
        ("return_missing", "ret_old_1017", 1017, "healed"),
        ("restock_missing", "ret_old_1017", 1017, "healed"),
        ("refund_missing", "ret_old_1017", 1017, "healed"),
    }
    owners = {g["code"]: g["owner"] for g in report.gaps}
    assert owners["duplicate_refund"] == owners["unmatched_centra_refund"] == "finance"
    assert owners["restock_missing"] == owners["return_missing"] == "ops"
    dup = next(g for g in report.gaps if g["code"] == "duplicate_refund")
    assert (dup["amount"], dup["currency"], dup["fixable"]) == ("299.00", "SEK", False)
    # the fixes really happened in Centra (ground truth), once each
    effects = showcase.effects()
    assert [r["external_id"] for r in effects["returns"]].count("ret_old_1017") == 1
    restocks = [c for c in effects["stock_changes"] if "ret_old_1017" in c["description"]]
    assert [(c["sku"], c["delta"]) for c in restocks] == [("DRESS-RED-40", 1)]
    credits = [r for r in effects["refunds"] if r["order_number"] == 1017]
    assert [(r["amount"], r["via_psp"]) for r in credits] == [("450.00", True)]
    # the ledger: healed gaps are resolved exceptions, the others open for their owner
    healed = showcase.ledger.exceptions(reveni_return_id="ret_old_1017")
    assert {(e.code, e.status) for e in healed} == {
        ("return_missing", "resolved"),
        ("restock_missing", "resolved"),
        ("refund_missing", "resolved"),
    }
    (duplicate,) = showcase.ledger.exceptions(code="duplicate_refund")
    assert (duplicate.status, duplicate.owner, duplicate.order_number) == ("open", "finance", 1016)


def test_one_digest_per_owner_with_mention_and_no_customer_data(
    showcase: Integration, slack: SlackStandIn
) -> None:
    report = showcase.reconcile()
    messages = slack.messages()
    assert sorted(m["channel"] for m in messages) == ["#returns-cx", "#returns-finance",
                                                      "#returns-ops"]  # fmt: skip
    assert all(d.sent for d in report.digests)
    finance = next(m for m in messages if m["channel"] == "#returns-finance")
    body = json.dumps(finance["blocks"])
    assert "<!subteam^S0FIN>" in finance["text"]
    assert "duplicate_refund" in body and "ret_dup_1016" in body and "299.00 SEK" in body
    emails = {o.customer_email for o in showcase.scenario.centra.orders}
    for message in messages:
        everything = message["text"] + json.dumps(message["blocks"])
        assert not any(email in everything for email in emails), message["channel"]
        assert "@" not in everything


def test_a_second_run_sends_nothing_to_centra_and_finds_nothing_new(
    showcase: Integration,
) -> None:
    first = showcase.reconcile()
    writes = showcase.mutations()
    second = showcase.reconcile()
    assert showcase.mutations() == writes  # nothing re-sent
    still = {g for g in gap_set(first.gaps) if g[3] == "still_open"}
    assert gap_set(second.gaps) == still
    assert second.exceptions_new == 0
    assert not second.reopened and not second.replanned_returns


def test_slack_down_keeps_the_digests_and_the_next_run_sends_them(
    showcase: Integration, slack: SlackStandIn
) -> None:
    slack.set_faults(down=True)
    first = showcase.reconcile()
    assert [d.sent for d in first.digests] == [False, False, False]
    assert all("unavailable" in (d.error or "") for d in first.digests)
    assert slack.messages() == []
    slack.set_faults(down=False)
    second = showcase.reconcile(run_date=first.run_date + timedelta(days=1))
    sent = [(d.owner, d.run_date, d.sent) for d in second.digests]
    assert sent == [
        ("cx", second.run_date, True),
        ("finance", second.run_date, True),
        ("ops", second.run_date, True),
        ("cx", first.run_date, True),
        ("finance", first.run_date, True),
        ("ops", first.run_date, True),
    ]
    assert len(slack.messages()) == 6


def test_rate_limited_slack_is_waited_for(showcase: Integration, slack: SlackStandIn) -> None:
    slack.set_faults(rate_limited=1, retry_after=1)
    report = showcase.reconcile()
    assert all(d.sent for d in report.digests)
    assert [c["status"] for c in slack.calls()][:2] == [429, 200]


def test_gaps_are_kept_per_run_date_in_the_warehouse(showcase: Integration) -> None:
    day = date(2026, 10, 29)
    report = showcase.reconcile(run_date=day)
    assert report.run_date == day and report.as_of.date() <= day + timedelta(days=1)
    with Warehouse(showcase.settings.reconcile.warehouse_path, read_only=True) as warehouse:
        kept = warehouse.gaps(day)
        loads = warehouse.loads()
    assert kept.height == len(report.gaps)
    assert set(kept["outcome"].to_list()) <= {"healed", "still_open", "retried"}
    assert loads.height >= 1


def test_without_fixes_the_fixable_gaps_stay_open(showcase: Integration) -> None:
    writes = showcase.mutations()
    report = showcase.reconcile(fix=False)
    assert showcase.mutations() == writes
    assert ("restock_missing", "ret_old_1017", 1017, "still_open") in gap_set(report.gaps)


def test_a_fully_synced_history_has_no_gap_the_sync_did_not_raise(tmp_path: Path) -> None:
    """The rules mirror the planner: on generated returns the sync has processed, every gap
    the reconciliation finds is an exception the sync raised itself (same code, same keys)."""
    scenario = generate_scenario(80, seed=11, base=builtin_scenario("basic"))
    with integration(scenario, tmp_path) as it:
        settle(it)
        raised = {(e.code, e.reveni_return_id, e.order_number) for e in it.ledger.exceptions()}
        report = it.reconcile(fix=False, grace=timedelta(0))
    found = {(g["code"], g["reveni_return_id"], g["order_number"]) for g in report.gaps}
    planted = {
        ("unmatched_centra_refund", None, m.order_number) for m in scenario.centra.manual_refunds
    }
    assert planted and found - planted <= raised, found - planted - raised
    assert found >= planted
    assert report.loaded["reveni_returns"] == len(scenario.reveni.returns)


def test_a_done_action_put_back_in_doubt_is_read_back_not_resent(tmp_path: Path) -> None:
    """What a fix does to an action the ledger thinks done: Centra is read first, so an
    effect that is there after all is adopted and nothing is sent twice."""
    with integration(builtin_scenario("showcase"), tmp_path) as it:
        settle(it)
        writes = it.mutations()
        keys = [a.key for a in it.ledger.actions(reveni_return_ids=["ret_std_1001"])]
        assert it.ledger.reopen(keys) == sorted(keys)
        it.run(return_ids=["ret_std_1001"])
        assert it.mutations() == writes
        assert {a.state for a in it.ledger.actions(keys=keys)} == {"done"}


def test_the_warehouse_holds_integer_minor_units(showcase: Integration) -> None:
    showcase.reconcile()
    with Warehouse(showcase.settings.reconcile.warehouse_path, read_only=True) as warehouse:
        snapshot = warehouse.snapshot()
    assert snapshot.reveni_refunds.schema["amount_minor"] == pl.Int64
    dup = snapshot.centra_payments.filter(
        pl.col("order_number") == 1016, pl.col("entry_type") == "REFUND"
    )
    assert sorted(dup["amount_minor"].to_list()) == [29900, 29900]


def test_an_order_centra_announced_is_read_again_without_a_reveni_change(
    showcase: Integration,
) -> None:
    """A refund made directly in Centra on an order whose Reveni return changed long ago is
    seen once Centra's order webhook is in the inbox (no recheck window, no look-back)."""
    quiet = {"look_back": timedelta(0), "recheck_days": 0}
    showcase.reconcile()  # fixes ret_old_1017 (July): its Centra return is created now
    showcase.reconcile(**quiet)  # reads that new Centra return's order once
    showcase.manual_refund(1017, "20.00")
    unseen = showcase.reconcile(**quiet)
    assert ("unmatched_centra_refund", None, 1017) not in {g[:3] for g in gap_set(unseen.gaps)}
    event = '{"type":"order","action":"update","id":"1017","date":null}'
    showcase.ledger.inbox_add(
        "centra", "order:1017:update:", event, resource_id="1017", event_type="order.update"
    )
    seen = showcase.reconcile(**quiet)
    assert ("unmatched_centra_refund", None, 1017, "still_open") in gap_set(seen.gaps)


def test_without_a_slack_token_digests_are_composed_and_not_kept(tmp_path: Path) -> None:
    from returnbridge.connectors.slack import SlackSettings

    with integration(builtin_scenario("basic"), tmp_path, slack=SlackSettings()) as it:
        settle(it)
        report = it.reconcile()
        with Warehouse(it.settings.reconcile.warehouse_path, read_only=True) as warehouse:
            pending = warehouse.pending_digests()
    assert [(d.owner, d.sent, d.error) for d in report.digests] == [
        ("cx", False, "no Slack token configured"),
        ("finance", False, "no Slack token configured"),
        ("ops", False, "no Slack token configured"),
    ]
    assert pending == []


def test_a_refund_made_by_hand_before_the_sync_is_not_paid_again(tmp_path: Path) -> None:
    """CX refunds ret_std_1001's 299.00 directly in Centra before returnbridge posts Reveni's
    refund: the sync does not refund it through the PSP a second time; Finance gets a
    `duplicate_refund` to decide, and the reconciliation agrees the refund is covered."""
    with integration(builtin_scenario("showcase"), tmp_path) as it:
        it.manual_refund(1001, "299.00")
        settle(it)
        psp = [r for r in it.effects()["refunds"] if r["order_number"] == 1001 and r["via_psp"]]
        assert sorted(r["amount"] for r in psp) == ["299.00", "49.00"]  # the hand-made ones
        (held,) = it.ledger.exceptions(reveni_return_id="ret_std_1001")
        assert (held.code, held.owner, held.status) == ("duplicate_refund", "finance", "open")
        report = it.reconcile(fix=False, grace=timedelta(0))
    found = gap_set(report.gaps)
    assert not {g for g in found if g[1] == "ret_std_1001"}
    assert ("unmatched_centra_refund", None, 1001, "still_open") in found  # the 49.00 plant


def test_an_ignored_hand_refund_does_not_hide_a_later_one_on_the_same_order(
    showcase: Integration,
) -> None:
    showcase.reconcile()
    (unmatched,) = showcase.ledger.exceptions(code="unmatched_centra_refund")
    showcase.ledger.resolve_exception(unmatched.id, note="goodwill (anna)", status="ignored")
    assert showcase.reconcile().exceptions_new == 0
    showcase.manual_refund(1001, "20.00")
    later = showcase.reconcile()
    (reopened,) = showcase.ledger.exceptions(code="unmatched_centra_refund")
    assert (reopened.id, reopened.status, reopened.amount) == (
        unmatched.id,
        "open",
        Decimal("69.00"),
    )
    assert later.exceptions_new == 1
