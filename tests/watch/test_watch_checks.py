"""The watchdog's checks as pure functions: each fires on its condition, clears without it, and
says `unknown` (leaving the incident alone) when an input is missing; and `WatchSettings`
refuses nonsense, naming the environment variable to fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from returnbridge.settings import Settings
from returnbridge.watch.checks import (
    PSP_PENDING_PREFIX,
    DeadlineException,
    HeldActions,
    Observation,
    Probe,
    RunOutcome,
    WatchInputs,
    check_api,
    check_in_doubt,
    check_in_flight,
    check_inbox,
    check_instant_deadlines,
    check_sync_runs,
    check_unknown_webhooks,
    check_webhooks,
    deadline_of,
    evaluate,
    format_age,
    format_at,
)
from returnbridge.watch.settings import WatchSettings

NOW = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)
SETTINGS = WatchSettings()


def one(observations: list[Observation], check: str, subject: str) -> Observation:
    (found,) = [o for o in observations if (o.check, o.subject) == (check, subject)]
    return found


def states(observations: list[Observation]) -> dict[str, str]:
    return {o.key: o.state for o in observations}


# --------------------------------------------------------------------------- credentials, reach


def test_refused_credentials_fire_and_name_the_setting() -> None:
    probe = Probe(
        "reveni", "auth_failed", "GET returns: credentials refused (HTTP 401)", "RETURNBRIDGE_X"
    )
    found = check_api(WatchInputs(NOW, probes=[probe, Probe("centra", "ok")]), SETTINGS)
    assert states(found) == {
        "credentials:reveni": "firing",
        "unreachable:reveni": "clear",  # it answered: it is reachable
        "credentials:centra": "clear",
        "unreachable:centra": "clear",
    }
    alert = one(found, "credentials", "reveni")
    assert alert.title == "Reveni credentials failing"
    assert alert.figure == "GET returns: credentials refused (HTTP 401)"
    assert "RETURNBRIDGE_X" in alert.first_step


def test_a_network_error_is_unreachable_and_says_nothing_of_the_credentials() -> None:
    probe = Probe("centra", "unreachable", "GraphQL rateLimits: not sent (ConnectError)")
    found = check_api(WatchInputs(NOW, probes=[probe]), SETTINGS)
    assert states(found) == {
        "credentials:centra": "unknown",
        "unreachable:centra": "firing",
        "credentials:reveni": "unknown",  # not probed
        "unreachable:reveni": "unknown",
    }
    assert one(found, "unreachable", "centra").title == "Centra API unreachable"


# --------------------------------------------------------------------------- webhooks


def webhook_inputs(last: datetime | None, changes: int | None) -> WatchInputs:
    return WatchInputs(
        NOW, last_reveni_webhook_at=last, webhooks_known=True, reveni_changes=changes
    )


def test_silent_webhooks_fire_only_while_reveni_shows_changes() -> None:
    silent = NOW - timedelta(hours=3)
    firing = check_webhooks(webhook_inputs(silent, 4), SETTINGS)[0]
    assert firing.state == "firing"
    assert firing.figure == (
        "4 return(s) changed in Reveni in the last 2 h; last webhook received 3 h ago "
        "(2026-10-15 09:00 UTC)"
    )
    assert firing.since == silent
    assert check_webhooks(webhook_inputs(silent, 0), SETTINGS)[0].state == "clear"
    assert check_webhooks(webhook_inputs(silent, None), SETTINGS)[0].state == "unknown"
    recent = NOW - timedelta(minutes=30)
    assert check_webhooks(webhook_inputs(recent, None), SETTINGS)[0].state == "clear"


def test_no_webhook_ever_with_changes_fires_from_the_window() -> None:
    firing = check_webhooks(webhook_inputs(None, 2), SETTINGS)[0]
    assert firing.state == "firing"
    assert "last webhook received never" in firing.figure
    assert firing.since == NOW - SETTINGS.webhook_silence


def test_the_silence_is_a_setting() -> None:
    settings = WatchSettings(webhook_silence=timedelta(hours=6))
    three_hours = webhook_inputs(NOW - timedelta(hours=3), 4)
    assert check_webhooks(three_hours, settings)[0].state == "clear"


# --------------------------------------------------------------------------- inbox


@pytest.mark.parametrize(
    ("pending", "oldest_minutes", "state"),
    [
        (0, None, "clear"),
        (3, 10, "clear"),  # young and few
        (3, 16, "firing"),  # older than 15 min
        (501, 1, "firing"),  # more than 500
        (500, 15, "clear"),  # at the thresholds, not over them
    ],
)
def test_the_inbox_backlog(pending: int, oldest_minutes: int | None, state: str) -> None:
    oldest = None if oldest_minutes is None else NOW - timedelta(minutes=oldest_minutes)
    inputs = WatchInputs(NOW, inbox_pending=pending, inbox_oldest_at=oldest)
    found = check_inbox(inputs, SETTINGS)[0]
    assert found.state == state
    if state == "firing" and oldest_minutes == 16:
        assert found.figure == "3 webhook(s) not processed, the oldest 16 min old"
        assert found.since == oldest
    assert check_inbox(WatchInputs(NOW), SETTINGS)[0].state == "unknown"


# --------------------------------------------------------------------------- actions


def test_actions_in_doubt_and_read_backs_that_gave_up() -> None:
    held = HeldActions(2, NOW - timedelta(hours=1), ("refund:r1:rf1", "return:r2"))
    found = check_in_doubt(WatchInputs(NOW, in_doubt=held, action_in_doubt_open=1), SETTINGS)[0]
    assert found.state == "firing"
    assert found.figure == (
        "2 action(s) in doubt, not read back for over 30 min (refund:r1:rf1, return:r2); "
        "1 open action_in_doubt exception(s)"
    )
    only_exception = WatchInputs(NOW, in_doubt=HeldActions(0), action_in_doubt_open=2)
    assert check_in_doubt(only_exception, SETTINGS)[0].state == "firing"
    assert check_in_doubt(WatchInputs(NOW, in_doubt=HeldActions(0)), SETTINGS)[0].state == "clear"
    assert check_in_doubt(WatchInputs(NOW), SETTINGS)[0].state == "unknown"


def test_actions_stuck_in_flight() -> None:
    keys = tuple(f"return:r{i}" for i in range(7))
    held = HeldActions(7, NOW - timedelta(minutes=40), keys)
    found = check_in_flight(WatchInputs(NOW, in_flight=held), SETTINGS)[0]
    assert found.state == "firing"
    assert found.figure.startswith("7 action(s) in_flight for over 15 min (return:r0, ")
    assert found.figure.endswith("return:r4 and 2 more)")
    assert check_in_flight(WatchInputs(NOW, in_flight=HeldActions(0)), SETTINGS)[0].state == (
        "clear"
    )


# --------------------------------------------------------------------------- sync runs


def runs(*oks: bool) -> list[RunOutcome]:
    """Outcomes newest first, a minute apart."""
    return [
        RunOutcome(NOW - timedelta(minutes=i), ok, "" if ok else f"boom {i}")
        for i, ok in enumerate(oks)
    ]


@pytest.mark.parametrize(
    ("outcomes", "state"),
    [
        (runs(False, False, False, True), "firing"),
        (runs(False, False, True, False, False), "clear"),  # only two in a row
        (runs(True, False, False, False), "clear"),  # the newest worked
        ([], "clear"),
    ],
)
def test_the_sync_failing_in_a_row(outcomes: list[RunOutcome], state: str) -> None:
    assert check_sync_runs(WatchInputs(NOW, sync_runs=outcomes), SETTINGS)[0].state == state


def test_a_failing_sync_names_the_newest_error_and_the_first_failure() -> None:
    found = check_sync_runs(WatchInputs(NOW, sync_runs=runs(False, False, False)), SETTINGS)[0]
    assert found.figure == (
        "the last 3 or more sync runs failed; the newest at 2026-10-15 12:00 UTC: boom 0"
    )
    assert found.since == NOW - timedelta(minutes=2)
    assert check_sync_runs(WatchInputs(NOW), SETTINGS)[0].state == "unknown"
    two = WatchSettings(sync_failures=2)
    assert check_sync_runs(WatchInputs(NOW, sync_runs=runs(False, False, True)), two)[0].state == (
        "firing"
    )


# --------------------------------------------------------------------------- instant deadlines


PLANNER_DETAIL = (
    "instant return not inspected; Reveni's 30-day window ends 2026-10-17T08:00:00+00:00 "
    "(1.8 days left)"
)
RECONCILE_DETAIL = "instant return not inspected; 2.5 days left of the 30-day window"


def deadline(detail: str, rid: str = "ret_a", order: int | None = 1001) -> DeadlineException:
    return DeadlineException(rid, order, NOW - timedelta(days=1), NOW - timedelta(hours=2), detail)


def test_the_deadline_is_read_from_either_detail() -> None:
    assert deadline_of(deadline(PLANNER_DETAIL)) == datetime(2026, 10, 17, 8, 0, tzinfo=UTC)
    assert deadline_of(deadline(RECONCILE_DETAIL)) == NOW - timedelta(hours=2) + timedelta(days=2.5)
    assert deadline_of(deadline("something else")) is None


def test_instant_deadlines_are_summarised_while_there_are_any() -> None:
    found = [
        deadline(RECONCILE_DETAIL, "ret_b", 1002),
        deadline(PLANNER_DETAIL, "ret_a", 1001),
        deadline("no date in it", "ret_c", None),
    ]
    summary = check_instant_deadlines(WatchInputs(NOW, instant_deadlines=found), SETTINGS)[0]
    assert summary.state == "firing"
    assert summary.figure == (
        "3 open instant_deadline_near exception(s); nearest window ends 2026-10-17 08:00 UTC "
        "(in 44 h, ret_a, order 1001)"
    )
    assert summary.since == NOW - timedelta(days=1)
    none = check_instant_deadlines(WatchInputs(NOW, instant_deadlines=[]), SETTINGS)[0]
    assert none.state == "clear"


# --------------------------------------------------------------------------- all of them


def test_evaluate_covers_every_check_and_subject_once() -> None:
    inputs = WatchInputs(
        NOW,
        probes=[Probe("centra", "ok"), Probe("reveni", "ok")],
        last_reveni_webhook_at=NOW,
        webhooks_known=True,
        inbox_pending=0,
        in_doubt=HeldActions(0),
        in_flight=HeldActions(0),
        sync_runs=[],
        instant_deadlines=[],
        unknown_webhooks=0,
    )
    found = evaluate(inputs, SETTINGS)
    assert sorted(o.key for o in found) == [
        "actions_in_doubt:ledger",
        "actions_stuck:ledger",
        "credentials:centra",
        "credentials:reveni",
        "inbox_backlog:inbox",
        "instant_deadline:reveni",
        "sync_failing:sync-returns",
        "unknown_webhooks:reveni",
        "unreachable:centra",
        "unreachable:reveni",
        "webhooks_silent:reveni",
    ]
    assert {o.state for o in found} == {"clear"}
    assert {o.state for o in evaluate(WatchInputs(NOW), SETTINGS)} == {"unknown"}


def test_the_psp_prefix_is_the_syncs() -> None:
    from returnbridge.sync.outcomes import PSP_PENDING

    assert PSP_PENDING_PREFIX == PSP_PENDING


def test_ages_and_moments_read_like_people_say_them() -> None:
    assert [format_age(timedelta(seconds=s)) for s in (-5, 45, 600, 3600, 3900, 200_000)] == [
        "0 s",
        "45 s",
        "10 min",
        "1 h",
        "1 h 5 min",
        "2 d 7 h",
    ]
    assert format_at(NOW) == "2026-10-15 12:00 UTC"
    with pytest.raises(ValueError, match="naive"):
        format_at(datetime(2026, 10, 15))


# --------------------------------------------------------------------------- settings


def test_the_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETURNBRIDGE_WATCH__CHANNEL", "#eng-alerts")
    monkeypatch.setenv("RETURNBRIDGE_WATCH__WEBHOOK_SILENCE", "PT6H")
    monkeypatch.setenv("RETURNBRIDGE_WATCH__INBOX_MAX_AGE", "900")
    monkeypatch.setenv("RETURNBRIDGE_WATCH__SYNC_FAILURES", "5")
    watch = Settings(_env_file=None).watch  # type: ignore[call-arg]
    assert watch.channel == "#eng-alerts"
    assert watch.webhook_silence == timedelta(hours=6)
    assert watch.inbox_max_age == timedelta(minutes=15)
    assert watch.sync_failures == 5
    assert WatchSettings().channel == "#returns-engineering"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WEBHOOK_SILENCE", "-PT1H", "must be a duration above zero"),
        ("INBOX_MAX_AGE", "PT0S", "must be a duration above zero"),
        ("IN_DOUBT_AFTER", "-60", "must be a duration above zero"),
        ("IN_FLIGHT_AFTER", "PT0M", "must be a duration above zero"),
        ("INBOX_MAX_PENDING", "0", "must be 1 or more"),
        ("SYNC_FAILURES", "-2", "must be 1 or more"),
        ("PROBE_RETRIES", "-1", "must be 0 or more"),
        ("PROBE_TIMEOUT_SECONDS", "0", "must be a number of seconds above zero"),
        ("LEASE_SECONDS", "-5", "must be a number of seconds above zero"),
        ("CHANNEL", "  ", "must name a Slack channel"),
        ("INBOX_MAX_AGE", "soon", "is not a duration: 'soon'"),
        ("SYNC_FAILURES", "three", "is not a whole number: 'three'"),
        ("LEASE_SECONDS", "long", "is not a number of seconds: 'long'"),
    ],
)
def test_a_bad_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"RETURNBRIDGE_WATCH__{variable}", value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert f"RETURNBRIDGE_WATCH__{variable} {message}" in str(caught.value)


@pytest.mark.parametrize(
    ("count", "state"), [(None, "unknown"), (0, "clear"), (50, "clear"), (51, "firing")]
)
def test_webhooks_naming_unknown_returns_fire_over_the_threshold(
    count: int | None, state: str
) -> None:
    [observation] = check_unknown_webhooks(WatchInputs(NOW, unknown_webhooks=count), SETTINGS)
    assert observation.state == state
    if state == "firing":
        assert observation.figure == "51 in the last 24 hours"
        assert "RETURNBRIDGE_RECEIVER__REVENI_SECRET" in observation.first_step
