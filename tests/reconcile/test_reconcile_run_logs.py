"""What a reconciliation says in its logs (the Prefect UI's run logs): one INFO line per step
through `returnbridge.reconcile.run`'s logger (load, gaps, fix, record, digests), numbers first,
the run's own figures, no customer data."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sync_support import Integration, integration

from returnbridge.scenarios import builtin_scenario
from returnbridge.simulators.slack import SlackStandIn
from returnbridge.sync.settings import SyncSettings

LOGGER = "returnbridge.reconcile.run"


@pytest.fixture
def showcase(tmp_path: Path, slack: SlackStandIn) -> Iterator[Integration]:
    """The showcase synced (the July return left for the reconciliation, as in production), and
    ret_dup_1016 refunded again by hand in Centra."""
    with integration(
        builtin_scenario("showcase"),
        tmp_path,
        slack=slack.settings(),
        initial_look_back=SyncSettings().initial_look_back,
    ) as it:
        it.walk()
        for _ in range(4):
            it.run()
        it.manual_refund(1016, "299.00")
        yield it


def steps(caplog: pytest.LogCaptureFixture, day: object) -> list[str]:
    """The reconciliation's INFO lines for run date `day`, without the prefix, in order."""
    prefix = f"reconciliation {day}: "
    return [
        r.getMessage().removeprefix(prefix)
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.INFO and r.getMessage().startswith(prefix)
    ]


def test_each_step_says_what_it_did_in_numbers(
    showcase: Integration, slack: SlackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="returnbridge")
    report = showcase.reconcile()
    load, gaps, after, fix, record, digests = steps(caplog, report.run_date)

    rows = sum(report.loaded.values())
    assert rows > 0 and load.startswith(f"loaded {rows} rows (")
    for table, n in report.loaded.items():
        assert not n or f"{n} {table}" in load, (table, load)
    assert load.endswith(
        f"from {len(showcase.scenario.reveni.returns)} Reveni returns and "
        f"{report.loaded['centra_orders']} Centra orders read, 0 rejected"
    )

    planted = {
        "duplicate_refund": 1,
        "instant_deadline_near": 1,
        "refund_failed_at_gateway": 1,
        "refund_missing": 1,
        "restock_missing": 1,
        "return_missing": 1,
        "unmatched_centra_refund": 1,
    }
    assert report.counts() == planted
    assert gaps.startswith(f"7 gaps ({', '.join(f'1 {code}' for code in sorted(planted))}), ")
    assert "0 more explained by open exceptions; full computation (no earlier computation)" in gaps
    assert after.startswith(
        "4 gaps left after the fixes (1 duplicate_refund, 1 instant_deadline_near, "
        "1 refund_failed_at_gateway, 1 unmatched_centra_refund), "
    )
    assert "incremental computation" in after

    # ret_old_1017's return, restock and refund: one return, planned now, all three healed
    assert report.replanned_returns == ["ret_old_1017"]
    assert report.fix_sync["actions_done"] == 3
    assert fix == (
        "3 fixable gaps on 1 returns re-enqueued (0 left for the next run): 0 actions reopened, "
        "0 retried; sync 3 done, 0 failed, 0 in doubt; 3 of them gone, 0 still there"
    )

    assert report.outcomes() == {"healed": 3, "still_open": 4}
    assert record == (
        f"7 gaps recorded (3 healed, 0 retried, 4 still open); {report.exceptions_new} "
        f"exceptions opened, {report.exceptions_healed} healed"
    )
    assert report.exceptions_healed == 3

    assert [d.sent for d in report.digests] == [True, True, True]
    assert digests == "3 digests posted (cx, finance, ops), 0 kept (none)"


def test_kept_digests_are_said_and_then_posted_with_their_date(
    showcase: Integration, slack: SlackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="returnbridge")
    slack.set_faults(down=True)
    first = showcase.reconcile()
    (kept,) = [s for s in steps(caplog, first.run_date) if "digests" in s]
    assert kept.startswith("0 digests posted (none), 3 kept (cx, finance, ops: ")
    assert first.digests[0].error and kept.endswith(f"{first.digests[0].error})")

    slack.set_faults(down=False)
    caplog.clear()
    day = first.run_date + timedelta(days=1)
    second = showcase.reconcile(run_date=day)
    lines = steps(caplog, day)
    assert "0 fixable gaps, nothing to fix" in lines  # the first run healed what it could
    assert lines[-1] == (
        f"6 digests posted (cx, finance, ops, cx of {first.run_date}, finance of "
        f"{first.run_date}, ops of {first.run_date}), 0 kept (none)"
    )
    assert all(d.sent for d in second.digests)


def test_no_customer_e_mail_reaches_the_logs(
    showcase: Integration, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="returnbridge")
    report = showcase.reconcile()
    emails = {o.customer_email for o in showcase.scenario.centra.orders}
    said = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("returnbridge"))
    assert f"reconciliation {report.run_date}: 7 gaps recorded" in said
    assert not any(email in said for email in emails)
