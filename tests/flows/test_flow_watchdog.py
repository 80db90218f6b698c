"""The `watchdog` Prefect flow, run by a real Prefect server (the test harness) with its settings
from the environment as a deployment has them: it returns the figures, leaves its artifact, and
a run whose alert Slack did not take fails, its message posted once by the next run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sync_support import environment
from watch_support import engineering_messages, engineering_standin

from returnbridge.ledger import Ledger
from returnbridge.ledger.sync_runs import record_sync_run
from returnbridge.simulators.slack import SlackStandIn


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with engineering_standin() as standin:
        yield standin


@pytest.fixture
def configured(tmp_path: Path, slack: SlackStandIn) -> Iterator[str]:
    """The environment of a deployment whose sync has failed three times in a row."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as ledger:
        for _ in range(3):
            record_sync_run(ledger, ok=False, started_at=datetime.now(UTC), detail="boom")
    env = {
        "RETURNBRIDGE_SYNC__LEDGER_URL": url,
        "RETURNBRIDGE_SLACK__BASE_URL": slack.base_url,
        "RETURNBRIDGE_SLACK__TOKEN": slack.token,
    }
    with environment(env):
        yield url


async def test_the_flow_alerts_once_and_publishes_its_incidents(
    prefect_server: None, configured: str, slack: SlackStandIn
) -> None:
    from prefect.client.orchestration import get_client

    from flows.watchdog import watchdog

    figures: dict[str, Any] = await watchdog(probe=False)
    assert figures["opened"] == ["sync_failing:sync-returns"]
    assert [m["sent"] for m in figures["messages"]] == [True]
    again: dict[str, Any] = await watchdog(probe=False)
    assert again["open_incidents"] == 1 and again["messages"] == []
    assert len(engineering_messages(slack)) == 1
    async with get_client() as client:
        latest = {a.key: a for a in await client.read_latest_artifacts() if a.key}
    artifact = latest["watchdog-incidents"]
    assert artifact.type == "markdown"
    assert "# Watchdog: 1 open incident(s)" in str(artifact.data)
    assert "`sync_failing:sync-returns`" in str(artifact.data)


async def test_a_run_slack_did_not_take_fails_and_the_next_posts_it(
    prefect_server: None, configured: str, slack: SlackStandIn
) -> None:
    from prefect.client.schemas.objects import StateType

    from flows.watchdog import AlertsNotPosted, watchdog

    slack.set_faults(down=True)
    state = await watchdog(probe=False, return_state=True)
    assert state.type == StateType.FAILED
    with pytest.raises(AlertsNotPosted, match="they stay owed for the next run"):
        await state.result()
    slack.set_faults(down=False)
    figures: dict[str, Any] = await watchdog(probe=False)
    assert [(m["kind"], m["sent"]) for m in figures["messages"]] == [("alert", True)]
    assert len(engineering_messages(slack)) == 1
    assert watchdog.timeout_seconds == 300 and watchdog.name == "watchdog"
