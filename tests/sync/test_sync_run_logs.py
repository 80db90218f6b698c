"""What a sync run says in its logs (the Prefect UI's run logs): one INFO line per step through
`returnbridge.sync.run`'s logger, numbers first, the run's own figures, no customer data."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_support import Integration, integration

from returnbridge.scenarios import builtin_scenario

LOGGER = "returnbridge.sync.run"


@pytest.fixture
def showcase(tmp_path: Path) -> Iterator[Integration]:
    with integration(builtin_scenario("showcase"), tmp_path) as it:
        yield it


def lines(caplog: pytest.LogCaptureFixture, prefix: str = "sync") -> list[str]:
    """The sync's INFO lines so far, in order."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.INFO and r.getMessage().startswith(prefix)
    ]


def test_each_step_of_a_run_says_what_it_did_in_numbers(
    showcase: Integration, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="returnbridge")
    showcase.walk()
    first = showcase.run()
    returns = len(showcase.scenario.reveni.returns)
    assert first.returns_seen == returns and first.actions_done > 0
    assert first.cursor_before is None and first.cursor_after is not None
    assert lines(caplog) == [
        f"sync: read {returns} returns ({returns} from Reveni, 0 from the inbox, 0 carried over), "
        "0 rejected; 0 inbox events",
        f"sync: {first.actions_planned} actions planned (0 found done in Centra), "
        f"{first.actions_done} done, {first.actions_failed} failed, "
        f"{first.actions_in_doubt} in doubt, 0 blocked; {first.exceptions_new} exceptions "
        "opened, 0 healed, 1 raised by Centra calls; "
        f"{first.rounds} rounds, {len(first.unfinished)} returns unfinished",
        f"sync: 0 inbox events settled; cursor moved from none to {first.cursor_after}",
    ]
    # the figures are the run's, as the ledger holds them
    states = showcase.ledger.counts()
    assert (first.actions_done, first.actions_failed, first.actions_in_doubt) == (
        states["done"],
        states["failed"],
        states["in_doubt"],
    )
    assert first.actions_failed == 1  # the PSP fails the refund on order 1004: raised sending
    assert first.exceptions_new + 1 == len(showcase.ledger.exceptions()) > 1
    assert first.rounds == 2  # created returns unlock their restocks, refunds, exchanges

    # a webhook names a return Reveni's changed list no longer has; the unfinished one carries
    caplog.clear()
    body = (
        '{"id": "evt_logs", "event": "return.updated", "created": 1, '
        '"data": {"resource_id": "ret_std_1001", "status": "accepted"}}'
    )
    assert showcase.ledger.inbox_add("reveni", "evt_logs", body, resource_id="ret_std_1001")
    waiting = {a.reveni_return_id for a in showcase.ledger.actions(states=["in_doubt"])}
    waiting |= {
        e.reveni_return_id for e in showcase.ledger.exceptions(code="exchange_out_of_stock")
    }
    second = showcase.run()
    assert (second.from_inbox, second.inbox_events) == (1, 1)
    # the refund waiting for its PSP's answer, the exchange waiting for stock
    assert second.carried_over == len(waiting) == 2
    changed = second.returns_seen - 1 - second.carried_over
    collect, process, commit = lines(caplog)
    assert collect == (
        f"sync: read {second.returns_seen} returns ({changed} from Reveni, 1 from the inbox, "
        f"{second.carried_over} carried over), 0 rejected; 1 inbox events"
    )
    assert process.startswith(f"sync: {second.actions_planned} actions planned (")
    assert f"; {second.rounds} rounds, {len(second.unfinished)} returns unfinished" in process
    moved = (
        f"stays at {second.cursor_after}"
        if second.cursor_after == first.cursor_after
        else f"moved from {first.cursor_after} to {second.cursor_after}"
    )
    assert commit == f"sync: 1 inbox events settled; cursor {moved}"


def test_a_dry_run_says_what_it_would_send(
    showcase: Integration, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="returnbridge")
    showcase.walk()
    report = showcase.run(return_ids=["ret_std_1001"], dry_run=True)
    assert report.planned_calls
    assert lines(caplog) == [
        "sync (dry run): read 1 returns (1 from Reveni, 0 from the inbox, 0 carried over), "
        "0 rejected; 0 inbox events",
        f"sync (dry run): {len(report.planned_calls)} Centra calls planned for 1 returns, "
        "nothing sent",
    ]


def test_no_customer_e_mail_reaches_the_logs(
    showcase: Integration, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="returnbridge")
    showcase.walk()
    showcase.run()
    showcase.run()
    emails = {o.customer_email for o in showcase.scenario.centra.orders}
    emails |= {r.customer_email for r in showcase.scenario.reveni.returns if r.customer_email}
    said = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("returnbridge"))
    assert f"sync: read {len(showcase.scenario.reveni.returns)} returns" in said
    assert not any(email in said for email in emails)
