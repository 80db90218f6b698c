"""`returnbridge reconcile` and the `daily-reconciliation` flow, configured through the
environment exactly as an operator or a deployment configures them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sync_support import Integration, environment, integration
from typer.testing import CliRunner

from returnbridge.cli import app
from returnbridge.scenarios import builtin_scenario
from returnbridge.simulators.slack import SlackStandIn

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def synced(tmp_path: Path) -> Iterator[tuple[Integration, SlackStandIn]]:
    with (
        SlackStandIn() as slack,
        integration(builtin_scenario("showcase"), tmp_path, slack=slack.settings()) as it,
    ):
        it.walk()
        it.run()
        it.run()
        yield it, slack


def test_reconcile_command_prints_the_run_as_json(
    synced: tuple[Integration, SlackStandIn],
) -> None:
    it, slack = synced
    result = CliRunner().invoke(app, ["reconcile", "--date", "2026-10-30", "--json"], env=it.env())
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["run_date"] == "2026-10-30"
    assert figures["gaps_by_code"]["unmatched_centra_refund"] == 1
    assert figures["loaded"]["reveni_returns"] == len(it.scenario.reveni.returns)
    assert [d["sent"] for d in figures["digests"]] == [True, True, True]
    assert len(slack.messages()) == 3
    table = CliRunner().invoke(app, ["reconcile", "--no-fix"], env=it.env())
    assert table.exit_code == 0, table.output
    assert "unmatched_centra_refund" in table.stdout and "digest finance" in table.stdout


def test_reconcile_with_a_bad_date_exits_2(synced: tuple[Integration, SlackStandIn]) -> None:
    it, _ = synced
    result = CliRunner().invoke(app, ["reconcile", "--date", "30/10/2026"], env=it.env())
    assert result.exit_code == 2
    assert "--date: '30/10/2026' is not a date" in result.output


def test_a_bad_timezone_setting_exits_2_naming_it(
    synced: tuple[Integration, SlackStandIn],
) -> None:
    it, _ = synced
    env = {**it.env(), "RETURNBRIDGE_RECONCILE__TIMEZONE": "Mars/Olympus"}
    result = CliRunner().invoke(app, ["reconcile"], env=env)
    assert result.exit_code == 2
    assert "unknown timezone 'Mars/Olympus'" in result.output


@pytest.fixture
def configured(synced: tuple[Integration, SlackStandIn]) -> Iterator[Integration]:
    it, _ = synced
    with environment(it.env()):
        yield it


async def test_the_flow_reconciles_and_publishes_artifacts(
    prefect_server: None, configured: Integration, synced: tuple[Integration, SlackStandIn]
) -> None:
    _, slack = synced
    from prefect.client.orchestration import get_client

    from flows.daily_reconciliation import daily_reconciliation

    os.environ["RETURNBRIDGE_RECONCILE__PREFECT_UI_URL"] = "http://prefect.example:4200"
    figures: dict[str, Any] = await daily_reconciliation()
    assert figures["gaps_by_code"]["unmatched_centra_refund"] == 1
    assert all(d["sent"] for d in figures["digests"])
    assert figures["kept_e_mails"] == []  # no month-end e-mail was waiting in the outbox
    link = "http://prefect.example:4200/flow-runs/flow-run/"
    assert all(link in json.dumps(m["blocks"]) for m in slack.messages())
    async with get_client() as client:
        artifacts = await client.read_latest_artifacts()
    assert {"reconciliation-gaps", "reconciliation-summary"} <= {a.key for a in artifacts}
    summary = next(a for a in artifacts if a.key == "reconciliation-summary")
    assert "unmatched_centra_refund" in str(summary.data)


def test_the_deployment_is_daily_in_the_brands_timezone() -> None:
    from prefect.schedules import Cron

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (deployment,) = [d for d in config["deployments"] if d["name"] == "daily-reconciliation"]
    path, _, name = deployment["entrypoint"].partition(":")
    assert (ROOT / path).is_file() and name == "daily_reconciliation"
    (schedule,) = deployment["schedules"]
    cron = Cron(schedule["cron"], timezone=schedule["timezone"])
    assert (cron.cron, cron.timezone) == ("15 2 * * *", "Europe/Stockholm")
    assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
