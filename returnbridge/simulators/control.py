"""What every simulator's `/_sim` control plane shares: JSON bodies, 400s, and the clock,
faults and counters endpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from returnbridge.simulators.clock import SimClock

Handler = Callable[[Request], Awaitable[Response]]


class ControlError(Exception):
    """A bad control request: 400 with the message."""


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object body (`{}` when empty); ControlError otherwise."""
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ControlError(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ControlError("body must be a JSON object")
    return body


def bad_requests_are_400(handler: Handler) -> Handler:
    """Answer ControlError, ValueError and TypeError with 400 `{"error": message}`."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except (ControlError, ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return endpoint


class _Counters(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


class _Faults(Protocol):
    @property
    def settings(self) -> Any: ...  # a dataclass

    def update(self, **changes: Any) -> Any: ...


class Simulated(Protocol):
    """What the shared endpoints need of a simulator."""

    clock: SimClock
    lock: threading.RLock
    counters: Any  # _Counters; Any so each simulator's own counters class fits

    @property
    def faults(self) -> _Faults: ...

    def reset_counters(self) -> None: ...


def common_routes(sim: Simulated) -> list[Route]:
    """`/clock`, `/faults` (GET, POST changes) and `/counters` (GET, POST `/counters/reset`)."""

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            sim.faults.update(**await json_body(request))
        return JSONResponse(asdict(sim.faults.settings))

    async def counters(request: Request) -> Response:
        with sim.lock:
            return JSONResponse(sim.counters.as_dict())

    async def reset_counters(request: Request) -> Response:
        sim.reset_counters()
        return JSONResponse(sim.counters.as_dict())

    return [
        Route("/clock", bad_requests_are_400(_clock(sim.clock)), methods=["GET", "POST"]),
        Route("/faults", bad_requests_are_400(faults), methods=["GET", "POST"]),
        Route("/counters", bad_requests_are_400(counters), methods=["GET"]),
        Route("/counters/reset", bad_requests_are_400(reset_counters), methods=["POST"]),
    ]


def _clock(clock: SimClock) -> Handler:
    """`GET` the simulated time; `POST {"set": iso}` or `{"advance_seconds": n}` to move it."""

    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            body = await json_body(request)
            if "set" in body:
                clock.set(datetime.fromisoformat(str(body["set"]).replace("Z", "+00:00")))
            elif "advance_seconds" in body:
                seconds = body["advance_seconds"]
                if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                    raise ControlError("advance_seconds must be a number")
                clock.advance(float(seconds))
            else:
                raise ControlError("give `set` (ISO time) or `advance_seconds`")
        return JSONResponse({"now": clock.now().isoformat()})

    return endpoint
