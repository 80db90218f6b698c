"""The Reveni client over real loopback HTTP, against a small Starlette app this test controls:
headers and paths as sent on the wire, auth, retries of reads, writes in doubt, and a refused
connection (nothing listening)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from reveni_client_support import RecordingSleep, return_payload
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from returnbridge.connectors.reveni import (
    ItemDecision,
    ReveniAuthError,
    ReveniClient,
    ReveniInDoubt,
    ReveniTransient,
)
from returnbridge.simulators.server import RunningServer, free_port, serve_in_thread

KEY = "loopback-key"
RID = "a3a7640d671c4cde8adff13560e25f7b"
PREFIX = "/merchants/v0/stores/store_1"


class Script:
    """What the app answers, and what it saw."""

    def __init__(self) -> None:
        self.failures_before_success = 0
        self.seen: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        async def get_return(request: Request) -> Response:
            self.seen.append(
                {"path": request.url.path, "headers": dict(request.headers), "method": "GET"}
            )
            if request.headers.get("authorization") != f"Bearer {KEY}":
                return JSONResponse({"detail": "Invalid token."}, status_code=401)
            if self.failures_before_success > 0:
                self.failures_before_success -= 1
                if self.failures_before_success % 2:
                    return JSONResponse({"detail": "busy"}, 503)
                return JSONResponse({"detail": "slow down"}, 429, headers={"Retry-After": "0"})
            return JSONResponse(return_payload(request.path_params["return_id"]))

        async def partial_validate(request: Request) -> Response:
            self.seen.append({"path": request.url.path, "body": await request.json()})
            return JSONResponse({"detail": "internal error"}, status_code=500)

        return Starlette(
            routes=[
                Route(f"{PREFIX}/returns/{{return_id}}", get_return),
                Route(
                    f"{PREFIX}/returns/{{return_id}}/partial_validate",
                    partial_validate,
                    methods=["POST"],
                ),
            ]
        )


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[RunningServer, Script]]:
    script = Script()
    with serve_in_thread(script.app()) as server:
        yield server, script


def client(url: str, key: str = KEY, **kwargs: Any) -> ReveniClient:
    return ReveniClient(url, key, "store_1", sleep=RecordingSleep(), **kwargs)


async def test_get_return_over_http(served: tuple[RunningServer, Script]) -> None:
    server, script = served
    async with client(server.url) as reveni:
        ret = await reveni.get_return(RID)
    assert ret.id == RID
    sent = script.seen[-1]
    assert sent["path"] == f"{PREFIX}/returns/{RID}"
    assert sent["headers"]["accept"] == "application/json"
    assert sent["headers"]["content-type"] == "application/json"


async def test_reads_retry_503_and_429_over_http(served: tuple[RunningServer, Script]) -> None:
    server, script = served
    script.failures_before_success = 3
    async with client(server.url) as reveni:
        ret = await reveni.get_return(RID)
        assert reveni.requests == 4 and reveni.retries == 3 and reveni.rate_limited == 2
    assert ret.id == RID


async def test_wrong_key_is_an_auth_error(served: tuple[RunningServer, Script]) -> None:
    server, _ = served
    async with client(server.url, key="stolen") as reveni:
        with pytest.raises(ReveniAuthError) as info:
            await reveni.get_return(RID)
        assert reveni.requests == 1
    assert info.value.status == 401 and "Invalid token." in str(info.value)


async def test_write_answered_with_500_is_in_doubt(served: tuple[RunningServer, Script]) -> None:
    server, script = served
    before = len(script.seen)
    async with client(server.url) as reveni:
        with pytest.raises(ReveniInDoubt):
            await reveni.partial_validate(RID, [ItemDecision("item_1", "accepted")])
    assert len(script.seen) == before + 1
    assert script.seen[-1]["body"] == {"items": [{"item_id": "item_1", "status": "accepted"}]}


async def test_connection_refused_is_transient_for_reads_and_writes() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with client(url, read_retries=2) as reveni:
        with pytest.raises(ReveniTransient):
            await reveni.get_return(RID)
        assert reveni.requests == 3
        with pytest.raises(ReveniTransient, match="not sent"):
            await reveni.partial_validate(RID, [ItemDecision("item_1", "accepted")])
        assert reveni.requests == 4
