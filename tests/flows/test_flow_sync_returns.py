"""The `sync-returns` Prefect flow, run by a real Prefect server (the test harness) against both
simulators, configured through the environment exactly as a deployment is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sync_support import Integration, environment, integration

from returnbridge.scenarios import builtin_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Integration]:
    with integration(builtin_scenario("showcase"), tmp_path) as it, environment(it.env()):
        yield it


async def test_the_flow_syncs_and_publishes_its_report(
    prefect_server: None, configured: Integration
) -> None:
    from prefect.client.orchestration import get_client

    from flows.sync_returns import sync_returns

    configured.walk()
    figures: dict[str, Any] = await sync_returns()
    assert figures["returns_seen"] == len(configured.scenario.reveni.returns)
    assert figures["actions_done"] > 0 and figures["cursor_after"] is not None
    assert {r["external_id"] for r in configured.effects()["returns"]} >= {"ret_std_1001"}
    async with get_client() as client:
        artifact = await client.read_latest_artifacts()
    assert "sync-returns-report" in {a.key for a in artifact}
    again: dict[str, Any] = await sync_returns()
    assert again["actions_done"] == 0  # exactly once, run after run


def test_the_deployment_runs_one_sync_at_a_time() -> None:
    """prefect.yaml: the entrypoint exists, and overlapping runs are cancelled, not stacked."""
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (deployment,) = [d for d in config["deployments"] if d["name"] == "sync-returns"]
    path, _, name = deployment["entrypoint"].partition(":")
    assert (ROOT / path).is_file() and name == "sync_returns"
    assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert deployment["schedules"][0]["interval"] == 60
