"""ASGI middleware that applies seeded faults to the API surfaces (never to `/_sim`).

Before the request: latency, then a 500 or a spurious 429 without touching state. After a write
was executed (a handler calls `mark_write`), a timeout-after-commit fault either stalls the
response for `stall_seconds` (ending early if the client hangs up) or drops the connection after
half the body. The response is buffered so that either can happen after the handler finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from returnbridge.simulators.centra.faults import AfterCommit
from returnbridge.simulators.centra.limits import retry_after_value
from returnbridge.simulators.centra.simulator import CentraSimulator

WRITE_FLAG = "centra_sim.write_executed"
CONTROL_PREFIX = "/_sim"


def mark_write(request: Request) -> None:
    """Tell the fault layer that this request changed (or tried to change) the state."""
    request.scope[WRITE_FLAG] = True


def rate_limited_headers(sim: CentraSimulator, wait_seconds: float) -> dict[str, str]:
    return {"Retry-After": retry_after_value(wait_seconds, sim.inferred.retry_after_format)}


class FaultMiddleware:
    def __init__(self, app: ASGIApp, sim: CentraSimulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        sim = self.sim
        sim.settle_due()  # whatever the PSP answered by now is visible to this request
        draw = sim.faults.draw()
        with sim.lock:
            sim.counters.requests += 1
        if draw.latency_seconds:
            await asyncio.sleep(draw.latency_seconds)
        if draw.error:
            with sim.lock:
                sim.counters.errors_5xx += 1
            await _send_json(send, 500, {"errors": [_error("Internal server error.", "internal")]})
            return
        if draw.rate_limited:
            with sim.lock:
                sim.counters.rate_limited += 1
            await _send_json(
                send,
                429,
                {"errors": [_error("Too many requests.", "rate-limit")]},
                rate_limited_headers(sim, 1.0),
            )
            return
        if draw.after_commit is None:
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []

        async def capture(message: Message) -> None:
            buffered.append(message)

        await self.app(scope, receive, capture)
        if not scope.get(WRITE_FLAG):
            for message in buffered:
                await send(message)
            return
        with sim.lock:
            sim.counters.timeouts_after_commit += 1
        if draw.after_commit is AfterCommit.STALL:
            await _stall(receive, sim.faults.settings.stall_seconds)
            with contextlib.suppress(OSError, RuntimeError):
                for message in buffered:
                    await send(message)
            return
        await _drop(send, buffered)


def _error(message: str, category: str) -> dict[str, Any]:
    return {"message": message, "extensions": {"category": category}}


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    raw = json.dumps(body).encode()
    header_list = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
    ]
    header_list += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": raw})


async def _stall(receive: Receive, seconds: float) -> None:
    """Wait `seconds`, or less if the client disconnects first."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(disconnected(), timeout=seconds)


async def _drop(send: Send, buffered: list[Message]) -> None:
    """Send the headers and half the body, then end without completing the response."""
    start = next(m for m in buffered if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in buffered if m["type"] == "http.response.body")
    await send(start)
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    # Returning now leaves the response incomplete; uvicorn closes the connection.
