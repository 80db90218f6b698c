"""The watchdog end to end over a real ledger (SQLite, then PostgreSQL) and the Slack stand-in
over HTTP: each ledger check opens an incident on its condition and posts one alert, however
many runs see it, and one recovery when it clears; a message Slack did not take is posted once
by a later run; two watchdogs at once post once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from ledger_support import T0, ManualClock
from watch_support import (
    CONDITIONS,
    ENGINEERING,
    Condition,
    engineering_messages,
    engineering_standin,
    ledger_watchdog,
    run,
)

from returnbridge.ledger import Ledger
from returnbridge.ledger.incidents import Incidents
from returnbridge.ledger.sync_runs import record_sync_run
from returnbridge.simulators.slack import SlackStandIn
from returnbridge.watch.runner import Watchdog, WatchReport
from returnbridge.watch.settings import WatchSettings


@pytest.fixture(scope="module")
def engineering_slack() -> Iterator[SlackStandIn]:
    with engineering_standin() as standin:
        yield standin


@pytest.fixture
def slack(engineering_slack: SlackStandIn) -> SlackStandIn:
    engineering_slack.reset()
    return engineering_slack


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def ledger(ledger_url: str, clock: ManualClock) -> Iterator[Ledger]:
    with Ledger(ledger_url, clock=clock) as opened:
        yield opened


@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: c.check)
def test_each_check_alerts_once_and_recovers_once(
    condition: Condition, ledger: Ledger, clock: ManualClock, slack: SlackStandIn
) -> None:
    with ledger_watchdog(ledger, slack, clock) as watchdog:
        first = run(watchdog)
        assert [i.key for i in first.open] == []
        assert engineering_messages(slack) == []

        condition.make(ledger, clock)
        opened = run(watchdog)
        (incident,) = opened.open
        assert incident.check == condition.check and incident.title == condition.title
        assert [i.key for i in opened.opened] == [incident.key]
        (alert,) = engineering_messages(slack)
        assert alert.startswith(f":rotating_light: returnbridge watchdog: {condition.title} since ")
        assert f"First step: {incident.first_step}" in alert

        for _ in range(3):  # the condition holds: seen again, never posted again
            clock.advance(minutes=15)
            again = run(watchdog)
            assert [i.id for i in again.open] == [incident.id] and again.opened == []
        assert len(engineering_messages(slack)) == 1

        condition.clear(ledger, clock)
        clock.advance(minutes=15)
        recovered = run(watchdog)
        assert recovered.open == [] and [i.id for i in recovered.closed] == [incident.id]
        minutes = round((clock.now - incident.opened_at).total_seconds() / 60)
        assert engineering_messages(slack)[1:] == [
            f":white_check_mark: returnbridge watchdog: {condition.title}: recovered after "
            f"{minutes} min (open since {incident.opened_at:%Y-%m-%d %H:%M} UTC, cleared "
            f"{clock.now:%Y-%m-%d %H:%M} UTC)."
        ]
        clock.advance(minutes=15)
        run(watchdog)
    assert len(engineering_messages(slack)) == 2
    assert {m["channel"] for m in slack.messages()} == {ENGINEERING}


def test_the_alert_reads_what_since_when_the_figure_and_the_first_step(
    ledger: Ledger, clock: ManualClock, slack: SlackStandIn
) -> None:
    for minute in range(3):
        at = T0 + timedelta(minutes=minute)
        record_sync_run(
            ledger,
            ok=False,
            started_at=at,
            finished_at=at,
            detail="ReveniTransient: list_returns: HTTP 503",
        )
    clock.advance(minutes=10)
    with ledger_watchdog(ledger, slack, clock) as watchdog:
        run(watchdog)
    (message,) = slack.messages()
    assert message["text"] == (
        ":rotating_light: returnbridge watchdog: Sync runs failing since 2026-10-01 12:00 UTC "
        "(10 min). the last 3 or more sync runs failed; the newest at 2026-10-01 12:02 UTC: "
        "ReveniTransient: list_returns: HTTP 503. First step: Open the newest failed "
        "sync-returns run in Prefect (or run `returnbridge sync`) and read its error."
    )
    header, since, figure, first_step, context = message["blocks"]
    assert header["text"]["text"] == ":rotating_light: Sync runs failing"
    assert [f["text"] for f in since["fields"]] == [
        "*Since*\n2026-10-01 12:00 UTC (10 min)",
        "*Check*\n`sync_failing:sync-returns`",
    ]
    assert figure["text"]["text"].startswith("the last 3 or more sync runs failed")
    assert first_step["text"]["text"].startswith("*First step:* Open the newest failed")
    assert "a recovery message follows when it clears" in context["elements"][0]["text"]


def test_slack_down_then_up_posts_the_alert_once_later(
    ledger: Ledger, clock: ManualClock, slack: SlackStandIn
) -> None:
    condition = CONDITIONS[0]
    condition.make(ledger, clock)
    slack.set_faults(down=True)
    with ledger_watchdog(ledger, slack, clock) as watchdog:
        for _ in range(2):
            down = run(watchdog)
            (delivery,) = down.deliveries
            assert not delivery.sent and "Slack is unavailable (HTTP 503" in (delivery.error or "")
            assert down.owed == 1 and down.slack.startswith("kept for the next run")
            clock.advance(minutes=15)
        assert slack.messages() == []
        (incident,) = Incidents(ledger).open_incidents()
        assert (incident.alert_state, incident.alert_attempts) == ("failed", 2)

        slack.set_faults(down=False)
        up = run(watchdog)
        assert [(d.kind, d.sent) for d in up.deliveries] == [("alert", True)]
        assert up.owed == 0 and up.slack == "posted"
        clock.advance(minutes=15)
        assert run(watchdog).deliveries == []
    (alert,) = engineering_messages(slack)
    assert condition.title in alert and "since 2026-10-01 12:00 UTC" in alert


def test_an_incident_that_opened_and_cleared_while_slack_was_down_is_told_in_order(
    ledger: Ledger, clock: ManualClock, slack: SlackStandIn
) -> None:
    condition = CONDITIONS[3]  # sync_failing
    slack.set_faults(down=True)
    with ledger_watchdog(ledger, slack, clock) as watchdog:
        condition.make(ledger, clock)
        run(watchdog)
        condition.clear(ledger, clock)
        clock.advance(minutes=15)
        cleared = run(watchdog)
        assert cleared.open == [] and cleared.owed == 1  # the recovery waits for its alert
        slack.set_faults(down=False)
        clock.advance(minutes=15)
        late = run(watchdog)
    assert [(d.kind, d.sent) for d in late.deliveries] == [("alert", True), ("recovery", True)]
    alert, recovery = engineering_messages(slack)
    assert alert.startswith(":rotating_light:") and "recovered after 15 min" in recovery


def test_a_message_slack_refuses_is_kept_with_its_error(
    ledger: Ledger, clock: ManualClock, slack: SlackStandIn
) -> None:
    CONDITIONS[0].make(ledger, clock)
    with ledger_watchdog(ledger, slack, clock, channel="#no-such-channel") as watchdog:
        report = run(watchdog)
    assert report.slack == (
        "kept for the next run: Slack rejected the message to #no-such-channel: channel_not_found"
    )
    (incident,) = Incidents(ledger).open_incidents()
    assert incident.alert_state == "failed" and "channel_not_found" in (incident.alert_error or "")
    assert slack.messages() == []


def test_two_watchdogs_at_once_post_each_message_once(ledger_url: str, slack: SlackStandIn) -> None:
    clock = ManualClock(T0)
    with Ledger(ledger_url, clock=clock) as ledger:
        CONDITIONS[3].make(ledger, clock)  # the sync failing

    def together(count: int) -> list[WatchReport]:
        start = threading.Barrier(count)
        reports: list[WatchReport | BaseException] = [RuntimeError("did not run")] * count

        def one(i: int) -> None:
            try:
                with (
                    Ledger(ledger_url, clock=clock) as own,
                    slack.settings().client() as poster,
                ):
                    watchdog = Watchdog(WatchSettings(), own, poster=poster, clock=clock)
                    start.wait(timeout=30)
                    reports[i] = asyncio.run(watchdog.run())
            except BaseException as exc:
                reports[i] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for report in reports:
            if isinstance(report, BaseException):
                raise report
        return reports  # type: ignore[return-value]

    opened = together(4)
    assert sum(len(r.opened) for r in opened) == 1
    assert sum(len(r.deliveries) for r in opened) == 1
    assert len(engineering_messages(slack)) == 1

    with Ledger(ledger_url, clock=clock) as ledger:
        CONDITIONS[3].clear(ledger, clock)
    clock.advance(minutes=20)
    closed = together(4)
    assert sum(len(r.closed) for r in closed) == 1
    alert, recovery = engineering_messages(slack)
    assert alert.startswith(":rotating_light:") and "recovered after 20 min" in recovery
    assert [c["error"] for c in slack.calls()] == [None, None]


def test_without_a_poster_the_messages_stay_owed(ledger: Ledger, clock: ManualClock) -> None:
    CONDITIONS[0].make(ledger, clock)
    report = asyncio.run(Watchdog(WatchSettings(), ledger, clock=clock).run())
    assert report.slack == "no Slack poster" and report.owed == 1 and report.undelivered
    assert [i.alert_state for i in report.open] == ["pending"]
