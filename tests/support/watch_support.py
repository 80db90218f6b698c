"""Helpers for the watchdog's tests: a Slack stand-in with the engineering channel, a watchdog
over a real ledger without API probes, and the ledger states that make each ledger check fire
and clear."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ledger_support import ManualClock, create_return

from returnbridge.core.codes import ReturnException
from returnbridge.ledger import Ledger
from returnbridge.ledger.sync_runs import record_sync_run
from returnbridge.simulators.slack import SlackStandIn
from returnbridge.simulators.slack.app import DEFAULT_CHANNELS
from returnbridge.watch.runner import Watchdog, WatchReport
from returnbridge.watch.settings import WatchSettings

ENGINEERING = "#returns-engineering"
DEADLINE_DETAIL = (
    "instant return not inspected; Reveni's 30-day window ends {end} ({days:.1f} days left)"
)


@contextmanager
def engineering_standin() -> Iterator[SlackStandIn]:
    """The Slack stand-in whose workspace also has the engineering channel."""
    with SlackStandIn(channels=[*DEFAULT_CHANNELS, ENGINEERING]) as standin:
        yield standin


@contextmanager
def ledger_watchdog(
    ledger: Ledger, slack: SlackStandIn, clock: Callable[[], datetime], **settings: Any
) -> Iterator[Watchdog]:
    """A watchdog over `ledger` posting to the stand-in, without API probes (their checks say
    `unknown`), on `clock`; `settings` are WatchSettings fields."""
    with slack.settings().client() as poster:
        yield Watchdog(WatchSettings(**settings), ledger, poster=poster, clock=clock)


def run(watchdog: Watchdog) -> WatchReport:
    return asyncio.run(watchdog.run())


def engineering_messages(slack: SlackStandIn) -> list[str]:
    """The text of every message the stand-in took in the engineering channel, oldest first."""
    return [m["text"] for m in slack.messages() if m["channel"] == ENGINEERING]


@dataclass(frozen=True)
class Condition:
    """A ledger state that makes one check fire (`make`) and then clear (`clear`)."""

    check: str
    title: str
    make: Callable[[Ledger, ManualClock], None]
    clear: Callable[[Ledger, ManualClock], None]


def _old_webhook(ledger: Ledger, clock: ManualClock) -> None:
    ledger.inbox_add("centra", "evt-1", "{}", event_type="order.updated", received_at=clock.now)
    clock.advance(minutes=20)


def _process_inbox(ledger: Ledger, clock: ManualClock) -> None:
    ledger.inbox_processed(e.id for e in ledger.inbox_pending())


def _in_doubt(ledger: Ledger, clock: ManualClock) -> None:
    ledger.plan([create_return("ret_doubt")])
    ledger.claim("return:ret_doubt", expected="pending")
    ledger.transition("return:ret_doubt", "in_doubt", expected="in_flight", error="timeout")
    clock.advance(minutes=31)


def _settle_in_doubt(ledger: Ledger, clock: ManualClock) -> None:
    ledger.claim("return:ret_doubt", expected="in_doubt")
    ledger.transition("return:ret_doubt", "done", expected="in_flight", centra_ref="55")


def _in_flight(ledger: Ledger, clock: ManualClock) -> None:
    ledger.plan([create_return("ret_stuck")])
    ledger.claim("return:ret_stuck", expected="pending")
    clock.advance(minutes=16)


def _finish_in_flight(ledger: Ledger, clock: ManualClock) -> None:
    ledger.transition("return:ret_stuck", "done", expected="in_flight", centra_ref="56")


def _failing_sync(ledger: Ledger, clock: ManualClock) -> None:
    for _ in range(3):
        record_sync_run(ledger, ok=False, started_at=clock.now, detail="ReveniTransient: 503")
        clock.advance(minutes=1)


def _working_sync(ledger: Ledger, clock: ManualClock) -> None:
    record_sync_run(ledger, ok=True, started_at=clock.now)


def _deadline_near(ledger: Ledger, clock: ManualClock) -> None:
    end = clock.now + timedelta(days=2)
    detail = DEADLINE_DETAIL.format(end=end.isoformat(), days=2.0)
    ledger.raise_exception(
        ReturnException("instant_deadline_near", "ret_inst", 1003, detail=detail)
    )


def _deadline_inspected(ledger: Ledger, clock: ManualClock) -> None:
    for exc in ledger.exceptions(code="instant_deadline_near"):
        ledger.resolve_exception(exc.id, note="inspected in Reveni")


CONDITIONS = [
    Condition("inbox_backlog", "Webhook inbox backing up", _old_webhook, _process_inbox),
    Condition("actions_in_doubt", "Ledger actions in doubt", _in_doubt, _settle_in_doubt),
    Condition("actions_stuck", "Ledger actions stuck in flight", _in_flight, _finish_in_flight),
    Condition("sync_failing", "Sync runs failing", _failing_sync, _working_sync),
    Condition(
        "instant_deadline",
        "Instant refunds near Reveni's 30-day window",
        _deadline_near,
        _deadline_inspected,
    ),
]
