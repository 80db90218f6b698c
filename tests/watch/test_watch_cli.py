"""`returnbridge watchdog` configured as an operator configures it (RETURNBRIDGE_* environment
variables), against both simulators and the Slack stand-in: it prints the open incidents, exits
0 with them unless `--fail-on-open` asks for 1, and exits 2 naming a bad setting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle
from reveni_sim_support import ReveniSimHandle, running_reveni_sim
from typer.testing import CliRunner, Result
from watch_support import ENGINEERING, engineering_messages, engineering_standin

from returnbridge.cli import app
from returnbridge.ledger import Ledger
from returnbridge.ledger.sync_runs import record_sync_run
from returnbridge.simulators.slack import SlackStandIn


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackStandIn]:
    with engineering_standin() as standin:
        yield standin


@pytest.fixture
def reveni_sim() -> Iterator[ReveniSimHandle]:
    with running_reveni_sim() as handle:
        yield handle


@pytest.fixture
def env(
    tmp_path: Path, centra_sim: CentraSimHandle, reveni_sim: ReveniSimHandle, slack: SlackStandIn
) -> dict[str, str]:
    slack.reset()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as ledger:  # a Reveni webhook just came (and was processed)
        ledger.inbox_add("reveni", "evt-1", "{}")
        ledger.inbox_processed(e.id for e in ledger.inbox_pending())
    return {
        "RETURNBRIDGE_SYNC__LEDGER_URL": url,
        "RETURNBRIDGE_CENTRA__BASE_URL": centra_sim.url,
        "RETURNBRIDGE_CENTRA__PLAN": "enterprise",
        "RETURNBRIDGE_REVENI__BASE_URL": reveni_sim.url,
        "RETURNBRIDGE_SLACK__BASE_URL": slack.base_url,
        "RETURNBRIDGE_SLACK__TOKEN": slack.token,
        "RETURNBRIDGE_WATCH__PROBE_RETRIES": "0",
    }


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, ["watchdog", *args], env=env)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sync_runs(env: dict[str, str], *oks: bool) -> None:
    with Ledger(env["RETURNBRIDGE_SYNC__LEDGER_URL"]) as ledger:
        for ok in oks:
            detail = "" if ok else "CentraTransient: HTTP 502"
            record_sync_run(ledger, ok=ok, started_at=datetime.now(UTC), detail=detail)


def test_the_command_alerts_prints_and_recovers(env: dict[str, str], slack: SlackStandIn) -> None:
    healthy = as_json(invoke(env, "--json"))
    assert healthy["open_incidents"] == 0 and healthy["channel"] == ENGINEERING
    assert {c["state"] for c in healthy["checks"]} == {"clear"}
    assert invoke(env, "--fail-on-open").exit_code == 0

    sync_runs(env, False, False, False)
    report = as_json(invoke(env, "--json"))
    assert report["opened"] == ["sync_failing:sync-returns"]
    (incident,) = report["incidents"]
    assert incident["alert"] == "sent" and "CentraTransient: HTTP 502" in incident["figure"]
    assert [m["kind"] for m in report["messages"]] == ["alert"]

    table = invoke(env)
    assert table.exit_code == 0
    assert "OPEN sync_failing:sync-returns  Sync runs failing" in table.stdout
    assert "first step: Open the newest failed sync-returns run in Prefect" in table.stdout
    assert invoke(env, "--fail-on-open").exit_code == 1
    assert len(engineering_messages(slack)) == 1  # seen four times, told once

    sync_runs(env, True)
    recovered = as_json(invoke(env, "--json"))
    assert recovered["recovered"] == ["sync_failing:sync-returns"]
    assert invoke(env, "--fail-on-open").exit_code == 0
    alert, recovery = engineering_messages(slack)
    assert alert.startswith(":rotating_light:") and "Sync runs failing: recovered after" in recovery


def test_no_post_keeps_the_alert_owed_and_fails_on_open(
    env: dict[str, str], slack: SlackStandIn
) -> None:
    sync_runs(env, False, False, False)
    kept = as_json(invoke(env, "--json", "--no-post"))
    assert kept["messages_owed"] == 1 and kept["slack"].startswith("not posted")
    assert slack.messages() == []
    assert invoke(env, "--no-post", "--fail-on-open").exit_code == 1
    posted = as_json(invoke(env, "--json"))
    assert [m["sent"] for m in posted["messages"]] == [True]


def test_a_bad_setting_exits_2_naming_it(env: dict[str, str]) -> None:
    result = invoke({**env, "RETURNBRIDGE_WATCH__INBOX_MAX_AGE": "-PT5M"})
    assert result.exit_code == 2
    assert "RETURNBRIDGE_WATCH__INBOX_MAX_AGE must be a duration above zero" in result.output
