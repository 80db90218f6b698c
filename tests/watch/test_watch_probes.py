"""The watchdog against the Centra and Reveni simulators over real HTTP, wired from the
settings as the CLI and the flow wire it (`open_watchdog`): refused credentials and an API that
does not answer each open their own incident, named by the setting to fix, and recover when
fixed; silent webhooks alert only while Reveni shows changes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle
from ledger_support import ManualClock
from reveni_sim_support import ReveniSimHandle, running_reveni_sim
from watch_support import engineering_messages, engineering_standin

from returnbridge.ledger import Ledger
from returnbridge.settings import Settings
from returnbridge.simulators.slack import SlackStandIn
from returnbridge.watch.runner import WatchReport, run_watchdog


@pytest.fixture(scope="module")
def engineering_slack() -> Iterator[SlackStandIn]:
    with engineering_standin() as standin:
        yield standin


@pytest.fixture
def slack(engineering_slack: SlackStandIn) -> SlackStandIn:
    engineering_slack.reset()
    return engineering_slack


@pytest.fixture
def reveni_sim() -> Iterator[ReveniSimHandle]:
    with running_reveni_sim() as handle:
        yield handle


@pytest.fixture
def clock(reveni_sim: ReveniSimHandle) -> ManualClock:
    """The watchdog's clock at the Reveni simulator's (its returns change on that clock)."""
    now = reveni_sim.control.get("/_sim/clock").json()["now"]
    return ManualClock(datetime.fromisoformat(now))


@pytest.fixture
def ledger(tmp_path: Path, clock: ManualClock) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", clock=clock) as opened:
        yield opened


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def settings(
    centra: CentraSimHandle, reveni: ReveniSimHandle, slack: SlackStandIn, **changes: Any
) -> Settings:
    """Settings for the simulators and the stand-in; `changes`: `section__field` overrides."""
    values: dict[str, dict[str, Any]] = {
        "centra": {
            "base_url": centra.url,
            "token": centra.token,
            "order_api_secret": centra.order_api_secret,
            "plan": "enterprise",
        },
        "reveni": {"base_url": reveni.url, "api_key": reveni.api_key, "store_id": reveni.store_id},
        "slack": {"base_url": slack.base_url, "token": slack.token},
        "watch": {"probe_retries": 0},
    }
    for key, value in changes.items():
        section, name = key.split("__")
        values[section][name] = value
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def watch(
    config: Settings, ledger: Ledger, clock: ManualClock, *, minutes: float = 15
) -> WatchReport:
    report = asyncio.run(run_watchdog(config, ledger=ledger, clock=clock))
    clock.advance(minutes=minutes)
    return report


def states(report: WatchReport) -> dict[str, str]:
    return {
        o.key: o.state for o in report.observations if o.check in ("credentials", "unreachable")
    }


def test_working_credentials_open_nothing(
    centra_sim: CentraSimHandle,
    reveni_sim: ReveniSimHandle,
    slack: SlackStandIn,
    ledger: Ledger,
    clock: ManualClock,
) -> None:
    report = watch(settings(centra_sim, reveni_sim, slack), ledger, clock)
    assert set(states(report).values()) == {"clear"}
    assert report.open == [] and slack.messages() == []
    webhooks = next(o for o in report.observations if o.check == "webhooks_silent")
    assert webhooks.state == "clear"  # no webhook ever, but nothing changed in 2 h either


@pytest.mark.parametrize(
    ("change", "subject", "named", "figure"),
    [
        (
            {"centra__token": "wrong-token"},
            "centra",
            "RETURNBRIDGE_CENTRA__TOKEN",
            "GraphQL rateLimits: RateLimits: credentials refused (HTTP 40",
        ),
        (
            {"centra__order_api_secret": "wrong-secret"},
            "centra",
            "RETURNBRIDGE_CENTRA__ORDER_API_SECRET",
            "Order API GET /returns: listReturns: credentials refused (HTTP 40",
        ),
        (
            {"reveni__api_key": "wrong-key"},
            "reveni",
            "RETURNBRIDGE_REVENI__API_KEY",
            "GET returns: ",
        ),
    ],
)
def test_refused_credentials_alert_once_and_recover_when_fixed(
    change: dict[str, str],
    subject: str,
    named: str,
    figure: str,
    centra_sim: CentraSimHandle,
    reveni_sim: ReveniSimHandle,
    slack: SlackStandIn,
    ledger: Ledger,
    clock: ManualClock,
) -> None:
    broken = settings(centra_sim, reveni_sim, slack, **change)
    for _ in range(2):
        report = watch(broken, ledger, clock)
        assert states(report)[f"credentials:{subject}"] == "firing"
        assert states(report)[f"unreachable:{subject}"] == "clear"
    (incident,) = report.open
    assert incident.key == f"credentials:{subject}"
    assert incident.figure.startswith(figure)
    assert named in incident.first_step
    (alert,) = engineering_messages(slack)
    assert f"{subject.capitalize()} credentials failing" in alert and named in alert

    fixed = watch(settings(centra_sim, reveni_sim, slack), ledger, clock)
    assert fixed.open == [] and [i.key for i in fixed.closed] == [f"credentials:{subject}"]
    assert "credentials failing: recovered after 30 min" in engineering_messages(slack)[1]
    assert len(engineering_messages(slack)) == 2


def test_an_api_that_does_not_answer_is_unreachable_not_a_credentials_problem(
    centra_sim: CentraSimHandle,
    reveni_sim: ReveniSimHandle,
    slack: SlackStandIn,
    ledger: Ledger,
    clock: ManualClock,
) -> None:
    nowhere = f"http://127.0.0.1:{closed_port()}"
    down = settings(
        centra_sim, reveni_sim, slack, centra__base_url=nowhere, reveni__base_url=nowhere
    )
    report = watch(down, ledger, clock)
    assert states(report) == {
        "credentials:centra": "unknown",
        "unreachable:centra": "firing",
        "credentials:reveni": "unknown",
        "unreachable:reveni": "firing",
    }
    assert sorted(i.key for i in report.open) == ["unreachable:centra", "unreachable:reveni"]
    assert all("ConnectError" in i.figure for i in report.open)
    webhooks = next(o for o in report.observations if o.check == "webhooks_silent")
    assert webhooks.state == "unknown"  # Reveni could not be asked what changed
    assert len(engineering_messages(slack)) == 2

    back = watch(settings(centra_sim, reveni_sim, slack), ledger, clock)
    assert sorted(i.key for i in back.closed) == ["unreachable:centra", "unreachable:reveni"]
    recoveries = engineering_messages(slack)[2:]
    assert len(recoveries) == 2 and all("recovered after 15 min" in r for r in recoveries)


def test_silent_webhooks_alert_while_reveni_changes_and_recover_when_one_arrives(
    centra_sim: CentraSimHandle,
    reveni_sim: ReveniSimHandle,
    slack: SlackStandIn,
    ledger: Ledger,
    clock: ManualClock,
) -> None:
    config = settings(centra_sim, reveni_sim, slack)
    ledger.inbox_add("reveni", "evt-old", "{}", received_at=clock.now - timedelta(hours=3))
    ledger.inbox_processed(e.id for e in ledger.inbox_pending())  # a sync run processed it
    quiet = watch(config, ledger, clock, minutes=0)
    assert quiet.open == []  # silent, but nothing changed in Reveni either
    reveni_sim.sim_post("walk", {"steps": 2})  # two returns change, and no webhook comes
    report = watch(config, ledger, clock, minutes=0)
    (incident,) = report.open
    assert incident.key == "webhooks_silent:reveni"
    assert incident.figure.startswith(
        "2 return(s) changed in Reveni in the last 2 h; last webhook received 3 h ago"
    )
    (alert,) = engineering_messages(slack)
    assert "No Reveni webhooks arriving" in alert

    clock.advance(minutes=15)
    ledger.inbox_add("reveni", "evt-new", "{}", received_at=clock.now)
    ledger.inbox_processed(e.id for e in ledger.inbox_pending())
    recovered = watch(config, ledger, clock)
    assert [i.key for i in recovered.closed] == ["webhooks_silent:reveni"]
    assert "No Reveni webhooks arriving: recovered after 15 min" in engineering_messages(slack)[1]
