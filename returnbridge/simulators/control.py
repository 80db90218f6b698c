"""What every simulator's `/_sim` control plane shares: JSON bodies, 400s, the clock endpoint."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

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


def clock_endpoint(clock: SimClock) -> Handler:
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
