"""The watchdog's incidents and figures in a real ledger (SQLite, then PostgreSQL): one open
incident per check and subject however many watchdogs see it, a new one after each recovery,
messages claimed by compare-and-set, a recovery owed only after its alert; the sync runs'
outcomes; the inbox, webhook and action figures the checks read."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TypeVar

import pytest
from ledger_support import T0, ManualClock, create_return, refund

from returnbridge.ledger import Ledger
from returnbridge.ledger.health import held_actions, inbox_backlog, last_webhook_at
from returnbridge.ledger.incidents import Incidents
from returnbridge.ledger.sync_runs import KEEP, recent_sync_runs, record_sync_run, recorded_sync_run

T = TypeVar("T")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def ledger(ledger_url: str, clock: ManualClock) -> Iterator[Ledger]:
    with Ledger(ledger_url, clock=clock) as opened:
        yield opened


def seen(incidents: Incidents, figure: str = "3 webhooks") -> bool:
    return incidents.observe(
        "inbox_backlog",
        "inbox",
        title="Webhook inbox backing up",
        figure=figure,
        first_step="Check the sync runs.",
        since=T0 - timedelta(minutes=20),
    ).opened


def test_an_incident_opens_once_and_is_seen_again_while_it_holds(
    ledger: Ledger, clock: ManualClock
) -> None:
    incidents = Incidents(ledger)
    assert seen(incidents) is True
    clock.advance(minutes=15)
    assert seen(incidents, figure="9 webhooks") is False
    (incident,) = incidents.open_incidents()
    assert (incident.key, incident.sequence, incident.figure) == (
        "inbox_backlog:inbox",
        1,
        "9 webhooks",
    )
    assert (incident.opened_at, incident.last_seen_at) == (T0, T0 + timedelta(minutes=15))
    assert incident.since == T0 - timedelta(minutes=20)
    assert (incident.alert_state, incident.recovery_state) == ("pending", None)


def test_closing_owes_a_recovery_and_the_next_opening_is_a_new_incident(
    ledger: Ledger, clock: ManualClock
) -> None:
    incidents = Incidents(ledger)
    seen(incidents)
    clock.advance(minutes=30)
    closed = incidents.close("inbox_backlog", "inbox")
    assert closed is not None and closed.closed_at == T0 + timedelta(minutes=30)
    assert closed.recovery_state == "pending"
    assert incidents.close("inbox_backlog", "inbox") is None  # nothing open any more
    assert incidents.close("sync_failing", "sync-returns") is None  # never opened
    clock.advance(minutes=15)
    assert seen(incidents) is True
    assert [(i.sequence, i.is_open) for i in incidents.incidents()] == [(1, False), (2, True)]


def in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """Run `work(i)` in `count` threads that start together; every result, or the first error."""
    start = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("did not run")] * count

    def run(i: int) -> None:
        try:
            start.wait(timeout=30)
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def test_watchdogs_opening_the_same_incident_at_once_open_one(ledger_url: str) -> None:
    def observe(_: int) -> bool:
        with Ledger(ledger_url) as own:
            return seen(Incidents(own))

    opened = in_threads(6, observe)
    assert opened.count(True) == 1
    with Ledger(ledger_url) as ledger:
        assert len(Incidents(ledger).incidents()) == 1


def test_a_message_is_claimed_by_one_watchdog_and_sent_once(
    ledger_url: str, ledger: Ledger
) -> None:
    incidents = Incidents(ledger)
    seen(incidents)
    (incident,) = incidents.open_incidents()

    def claim(_: int) -> bool:
        with Ledger(ledger_url) as own:
            return Incidents(own).claim(incident.id, "alert") is not None

    assert in_threads(6, claim).count(True) == 1
    assert incidents.undelivered() == []  # held under its lease
    sent = incidents.delivered(incident.id, "alert", "1700000000.000100")
    assert (sent.alert_state, sent.alert_ts, sent.alert_attempts) == (
        "sent",
        "1700000000.000100",
        1,
    )
    assert incidents.claim(incident.id, "alert") is None  # sent stays sent


def test_a_recovery_is_owed_only_after_its_alert(ledger: Ledger, clock: ManualClock) -> None:
    incidents = Incidents(ledger)
    seen(incidents)
    (incident,) = incidents.open_incidents()
    assert [(m.incident.id, m.kind) for m in incidents.undelivered()] == [(incident.id, "alert")]
    assert incidents.claim(incident.id, "recovery") is None  # still open: nothing to recover
    incidents.close("inbox_backlog", "inbox")
    assert incidents.claim(incident.id, "recovery") is None  # its alert is not sent yet
    assert [m.kind for m in incidents.undelivered()] == ["alert"]
    assert incidents.claim(incident.id, "alert") is not None
    incidents.delivered(incident.id, "alert", "1.1")
    assert [m.kind for m in incidents.undelivered()] == ["recovery"]
    assert incidents.claim(incident.id, "recovery") is not None
    done = incidents.delivered(incident.id, "recovery", "1.2")
    assert (done.recovery_state, done.recovery_ts) == ("sent", "1.2")
    assert incidents.undelivered() == []


def test_a_failed_message_is_owed_again_and_a_dead_senders_lease_runs_out(
    ledger: Ledger, clock: ManualClock
) -> None:
    incidents = Incidents(ledger)
    seen(incidents)
    (incident,) = incidents.open_incidents()
    assert incidents.claim(incident.id, "alert", lease_seconds=60) is not None
    kept = incidents.failed(incident.id, "alert", "Slack is unavailable (HTTP 503)")
    assert (kept.alert_state, kept.alert_error) == ("failed", "Slack is unavailable (HTTP 503)")
    assert [m.kind for m in incidents.undelivered()] == ["alert"]
    assert incidents.claim(incident.id, "alert", lease_seconds=60) is not None  # a sender dies
    clock.advance(seconds=59)
    assert incidents.undelivered() == []
    assert incidents.claim(incident.id, "alert") is None
    clock.advance(seconds=1)
    assert [m.kind for m in incidents.undelivered()] == ["alert"]
    again = incidents.claim(incident.id, "alert")
    assert again is not None and again.alert_attempts == 3


def test_bad_calls_name_what_is_wrong(ledger: Ledger) -> None:
    incidents = Incidents(ledger)
    with pytest.raises(ValueError, match="message kind must be one of"):
        incidents.claim(1, "digest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a subject"):
        incidents.observe("inbox_backlog", "", title="t", figure="f", first_step="s")
    with pytest.raises(KeyError, match="no watchdog incident with id 99"):
        incidents.delivered(99, "alert", "1.1")


# --------------------------------------------------------------------------- sync runs


def test_sync_runs_are_recorded_newest_first(ledger: Ledger, clock: ManualClock) -> None:
    record_sync_run(ledger, ok=True, started_at=T0)
    clock.advance(minutes=1)
    with pytest.raises(RuntimeError, match="Reveni down"), recorded_sync_run(ledger):
        clock.advance(seconds=20)
        raise RuntimeError("Reveni down")
    with recorded_sync_run(ledger):
        clock.advance(seconds=5)
    newest = recent_sync_runs(ledger, 5)
    assert [(r.ok, r.detail) for r in newest] == [
        (True, ""),
        (False, "RuntimeError: Reveni down"),
        (True, ""),
    ]
    assert newest[1].finished_at - newest[1].started_at == timedelta(seconds=20)
    with pytest.raises(ValueError, match="cannot finish"):
        record_sync_run(ledger, ok=True, started_at=clock.now + timedelta(minutes=1))


def test_only_the_newest_sync_runs_are_kept(ledger: Ledger) -> None:
    for _ in range(KEEP + 3):
        record_sync_run(ledger, ok=False, started_at=T0, finished_at=T0)
    assert len(recent_sync_runs(ledger, KEEP + 10)) == KEEP


# --------------------------------------------------------------------------- figures


def test_the_inbox_figures(ledger: Ledger, clock: ManualClock) -> None:
    assert inbox_backlog(ledger).pending == 0 and last_webhook_at(ledger, "reveni") is None
    ledger.inbox_add("reveni", "e1", "{}", received_at=T0 - timedelta(hours=2))
    ledger.inbox_add("reveni", "e2", "{}", received_at=T0 - timedelta(hours=1))
    ledger.inbox_add("centra", "c1", "{}", received_at=T0)
    backlog = inbox_backlog(ledger)
    assert (backlog.pending, backlog.oldest_received_at) == (3, T0 - timedelta(hours=2))
    assert last_webhook_at(ledger, "reveni") == T0 - timedelta(hours=1)
    ids = [e.id for e in ledger.inbox_pending() if e.event_id in ("e1", "c1")]
    ledger.inbox_processed(ids)
    backlog = inbox_backlog(ledger)
    assert (backlog.pending, backlog.oldest_received_at) == (1, T0 - timedelta(hours=1))
    assert last_webhook_at(ledger, "reveni") == T0 - timedelta(hours=1)  # processed or not


def test_held_actions_leave_out_the_young_and_the_psp_pending(
    ledger: Ledger, clock: ManualClock
) -> None:
    ledger.plan([create_return("r1"), refund("r2"), create_return("r3")])
    for key in ("return:r1", "refund:r2:rf1"):
        ledger.claim(key, expected="pending")
    ledger.transition("return:r1", "in_doubt", expected="in_flight", error="timeout after send")
    ledger.transition(
        "refund:r2:rf1", "in_doubt", expected="in_flight", error="refund pending at the PSP (x)"
    )
    clock.advance(minutes=40)
    ledger.claim("return:r3", expected="pending")  # claimed just now
    cutoff = clock.now - timedelta(minutes=30)
    count, named = held_actions(
        ledger,
        "in_doubt",
        not_touched_since=cutoff,
        except_error_prefix="refund pending at the PSP",
    )
    assert (count, [a.key for a in named]) == (1, ["return:r1"])
    assert named[0].updated_at == T0
    assert held_actions(ledger, "in_doubt", not_touched_since=cutoff)[0] == 2
    assert held_actions(ledger, "in_flight", not_touched_since=cutoff) == (0, [])
    clock.advance(minutes=31)
    count, named = held_actions(
        ledger, "in_flight", not_touched_since=clock.now - timedelta(minutes=30)
    )
    assert (count, [a.key for a in named]) == (1, ["return:r3"])
