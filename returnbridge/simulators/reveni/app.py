"""The Reveni simulator as one ASGI app: the merchant API and `/_sim`.

`create_app` is what tests, the demo and `returnbridge sim reveni` use; the simulator object is
`app.state.sim`. `run` serves it with uvicorn in the foreground.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from returnbridge.connectors.reveni import wire
from returnbridge.connectors.reveni.inferred import DEFAULT_REVENI_INFERRED, ReveniInferred
from returnbridge.scenario import Scenario
from returnbridge.simulators.reveni.api import merchant_api
from returnbridge.simulators.reveni.control import control_api
from returnbridge.simulators.reveni.simulator import ReveniSimulator

CONTROL_PREFIX = "/_sim"


def create_app(
    scenario: Scenario | None = None,
    *,
    api_key: str = "reveni-sim-key",
    inferred: ReveniInferred = DEFAULT_REVENI_INFERRED,
    webhook_secret: str | None = None,
) -> Starlette:
    """A Starlette app serving one simulated Reveni store built from `scenario`."""
    sim = ReveniSimulator(
        scenario, api_key=api_key, inferred=inferred, webhook_secret=webhook_secret
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await sim.webhooks.start()
        try:
            yield
        finally:
            await sim.webhooks.stop()

    app = Starlette(
        routes=[
            Mount(wire.API_PREFIX, app=merchant_api(sim)),
            Mount(CONTROL_PREFIX, app=control_api(sim)),
        ],
        lifespan=lifespan,
    )
    app.state.sim = sim
    return app


def run(
    scenario: Scenario | None, host: str = "127.0.0.1", port: int = 8082, **options: Any
) -> None:
    """Serve the simulator in the foreground until interrupted (`returnbridge sim reveni`).

    `options` are `create_app`'s keyword arguments."""
    uvicorn.run(create_app(scenario, **options), host=host, port=port, log_level="info")
