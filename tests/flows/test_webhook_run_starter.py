"""What a webhook starts under Prefect (`returnbridge receiver --trigger prefect`, and `serve`):
a `sync-returns` run named and tagged for the webhook, never a run that the deployment's
one-at-a-time rule would cancel (docs/architecture.md#deployments-and-scale-out). Against the
session's real Prefect test server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from returnbridge.cli_serve import WebhookRunStarter

NAME = "webhook-starter-test"


@pytest.fixture
async def deployment(prefect_server: None) -> AsyncIterator[UUID]:
    from prefect.client.orchestration import get_client

    from flows.sync_returns import sync_returns

    deployment_id = await (await sync_returns.ato_deployment(name=NAME)).apply()
    yield deployment_id
    async with get_client() as client:
        await client.delete_deployment(deployment_id)


async def _runs(deployment_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async with get_client() as client:
        return list(
            await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
        )


async def _run_in_state(deployment_id: UUID, state: Any) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        run = await client.create_flow_run_from_deployment(deployment_id, state=state)
        await client.set_flow_run_state(run.id, state, force=True)
        return run


def _starter() -> WebhookRunStarter:
    return WebhookRunStarter(f"sync-returns/{NAME}", poll_seconds=0.2)


async def test_a_webhook_starts_a_named_tagged_run(deployment: UUID) -> None:
    name = await _starter().start()
    (run,) = await _runs(deployment)
    assert run.name == name and name.startswith("sync-returns-webhook-")
    assert "trigger:webhook" in run.tags
    assert run.state_type.value == "SCHEDULED"


async def test_a_webhook_during_a_run_waits_for_it_and_then_starts_one(
    deployment: UUID, caplog: pytest.LogCaptureFixture
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Running

    running = await _run_in_state(deployment, Running())
    caplog.set_level("INFO", logger="returnbridge.cli_serve")
    waiting = asyncio.create_task(_starter().start())
    await asyncio.sleep(1.0)
    assert not waiting.done()  # no competing run while one is going
    assert len(await _runs(deployment)) == 1
    assert f"sync run {running.name} is running; a new run starts when it ends" in caplog.text
    async with get_client() as client:
        await client.set_flow_run_state(running.id, Completed(), force=True)
    name = await asyncio.wait_for(waiting, 10)
    assert name is not None and name.startswith("sync-returns-webhook-")
    assert {r.name for r in await _runs(deployment)} == {running.name, name}


async def test_a_webhook_just_before_a_scheduled_run_is_left_to_it(deployment: UUID) -> None:
    from prefect.states import Scheduled

    due = await _run_in_state(
        deployment, Scheduled(scheduled_time=datetime.now(UTC) + timedelta(seconds=1))
    )
    assert await _starter().start() == due.name
    assert [r.id for r in await _runs(deployment)] == [due.id]
