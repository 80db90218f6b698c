"""The Centra simulator as one ASGI app: GraphQL, the REST Order API and `/_sim`.

`create_app` is what tests, the demo and `returnbridge sim centra` use; the simulator object is
`app.state.sim`. `run` serves it with uvicorn in the foreground.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route

from returnbridge.connectors.centra.inferred import DEFAULT_INFERRED, CentraInferred
from returnbridge.scenario import Scenario
from returnbridge.simulators.centra.control import control_api
from returnbridge.simulators.centra.graphql_api import graphql_endpoint
from returnbridge.simulators.centra.middleware import CONTROL_PREFIX, FaultMiddleware
from returnbridge.simulators.centra.order_api import order_api
from returnbridge.simulators.centra.simulator import CentraSimulator

PSP_POLL_SECONDS = 0.2  # how often the simulated PSP looks at the clock (real seconds)


def create_app(
    scenario: Scenario | None = None,
    *,
    token: str = "centra-sim-token",
    order_api_secret: str = "centra-sim-secret",
    inferred: CentraInferred = DEFAULT_INFERRED,
    plan: str | None = None,
    stall_seconds: float = 30.0,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> Starlette:
    """A Starlette app serving one simulated Centra environment built from `scenario`."""
    sim = CentraSimulator(
        scenario,
        token=token,
        order_api_secret=order_api_secret,
        inferred=inferred,
        plan=plan,
        stall_seconds=stall_seconds,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    )

    async def psp() -> None:
        """The asynchronous PSP answers on its own, webhook and all, as time passes."""
        while True:
            await asyncio.sleep(PSP_POLL_SECONDS)
            sim.settle_due()

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await sim.webhooks.start()
        answering = asyncio.create_task(psp())
        try:
            yield
        finally:
            answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answering
            await sim.webhooks.stop()

    app = Starlette(
        routes=[
            Route("/graphql", graphql_endpoint(sim), methods=["POST"]),
            Mount(inferred.order_api_base_path, app=order_api(sim)),
            Mount(CONTROL_PREFIX, app=control_api(sim)),
        ],
        middleware=[Middleware(FaultMiddleware, sim=sim)],
        lifespan=lifespan,
    )
    app.state.sim = sim
    return app


def run(
    scenario: Scenario | None, host: str = "127.0.0.1", port: int = 8081, **options: Any
) -> None:
    """Serve the simulator in the foreground until interrupted (`returnbridge sim centra`).

    `options` are `create_app`'s keyword arguments."""
    uvicorn.run(create_app(scenario, **options), host=host, port=port, log_level="info")
