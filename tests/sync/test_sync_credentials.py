"""A wrong REST Order API secret (or GraphQL token) is a fault of the run's configuration, not
of the actions: the run stops, says which setting, exits non-zero, and leaves the actions
pending, so the first run after the fix sends them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sync_support import Integration, integration
from typer.testing import CliRunner

from returnbridge.cli import app
from returnbridge.demo import scenario_clock
from returnbridge.scenarios import builtin_scenario
from returnbridge.settings import Settings
from returnbridge.sync.run import CredentialsRefused
from returnbridge.sync.runtime import open_sync


@pytest.fixture
def showcase(tmp_path: Path) -> Iterator[Integration]:
    with integration(builtin_scenario("showcase"), tmp_path) as it:
        yield it


def _with_order_api_secret(settings: Settings, secret: str) -> Settings:
    centra = settings.centra.model_copy(update={"order_api_secret": SecretStr(secret)})
    return settings.model_copy(update={"centra": centra})


def _run(it: Integration, settings: Settings) -> None:
    async def once() -> None:
        async with open_sync(settings, ledger=it.ledger, clock=scenario_clock(it.scenario)) as s:
            await s.run()

    asyncio.run(once())


def test_a_wrong_order_api_secret_stops_the_run_and_leaves_the_actions_pending(
    showcase: Integration,
) -> None:
    showcase.walk()
    wrong = _with_order_api_secret(showcase.settings, "wrong")
    with pytest.raises(CredentialsRefused, match="RETURNBRIDGE_CENTRA__ORDER_API_SECRET"):
        _run(showcase, wrong)
    refunds = showcase.ledger.actions(kinds=["refund", "exchange_order"])
    assert refunds and {a.state for a in refunds} <= {"pending", "done"}
    assert any(a.state == "pending" for a in refunds)
    raised = {e.code for e in showcase.ledger.exceptions()}
    assert not raised & {"refund_post_failed", "exchange_order_failed"}
    # fixed: the next run sends everything, and the refused attempt never counted as a send
    showcase.run()
    left = showcase.ledger.actions(kinds=["refund", "exchange_order"], states=["pending"])
    assert left == []
    assert not {e.code for e in showcase.ledger.exceptions(statuses=["open"])} & {
        "refund_post_failed",
        "exchange_order_failed",
    }


def test_the_cli_exits_non_zero_with_one_line_naming_the_setting(showcase: Integration) -> None:
    showcase.walk()
    env = {**showcase.env(), "RETURNBRIDGE_CENTRA__ORDER_API_SECRET": "wrong"}
    result = CliRunner().invoke(app, ["sync"], env=env)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "sync failed" in line]
    assert len(lines) == 1 and "RETURNBRIDGE_CENTRA__ORDER_API_SECRET" in lines[0]
    assert "Traceback" not in result.output
