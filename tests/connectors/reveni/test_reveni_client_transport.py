"""How the Reveni client classifies every kind of answer, against a scripted HTTP transport.

Reads retry (5xx, timeouts, dropped connections, 429 after Retry-After); writes never do. A write
that failed before sending is transient, one that may have reached Reveni is in doubt. Waits go
to a recording sleep, so nothing really sleeps.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from reveni_client_support import (
    PREFIX,
    RecordingSleep,
    client_for,
    envelope,
    request_json,
    return_payload,
    scripted,
)

from returnbridge.connectors.errors import (
    AuthError,
    InDoubtError,
    QueryError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from returnbridge.connectors.reveni import (
    ItemDecision,
    ReveniAuthError,
    ReveniError,
    ReveniInDoubt,
    ReveniNotFound,
    ReveniQueryError,
    ReveniRateLimited,
    ReveniRejected,
    ReveniTransient,
)

RID = "a3a7640d671c4cde8adff13560e25f7b"
ACCEPT = [ItemDecision("item_1", "accepted", quantity=1)]


def ok_return(**kw: Any) -> httpx.Response:
    return httpx.Response(200, json=return_payload(RID, **kw))


# --------------------------------------------------------------------------- request shape


async def test_get_return_request_shape_and_headers() -> None:
    handler, seen = scripted(ok_return())
    async with client_for(handler) as reveni:
        ret = await reveni.get_return(RID)
        assert reveni.requests == 1
    assert ret.id == RID and ret.status == "in_progress"
    request = seen[0]
    assert request.method == "GET"
    assert str(request.url) == f"{PREFIX}/returns/{RID}"
    assert request.headers["Authorization"] == "Bearer key-1"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"


async def test_ids_are_quoted_as_one_path_segment() -> None:
    handler, seen = scripted(httpx.Response(404, json={"detail": "Not found."}))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniNotFound):
            await reveni.get_return("../webhooks")
    assert seen[0].url.raw_path.decode().endswith("/returns/..%2Fwebhooks")


async def test_json_numbers_decode_as_decimal_not_float() -> None:
    body = return_payload(RID, summary={"refund_total": "0.00", "exchange_rate": "1.0"})
    body["extra_number"] = 0.1  # unknown keys are ignored, but the decoder still sees them
    handler, _ = scripted(httpx.Response(200, json=body))
    async with client_for(handler) as reveni:
        raw = await reveni._transport.read(f"returns/{RID}", name="raw")
    assert raw["extra_number"] == Decimal("0.1") and isinstance(raw["extra_number"], Decimal)


# --------------------------------------------------------------------------- reads retry


async def test_read_retries_5xx_timeouts_and_disconnects_with_backoff() -> None:
    sleep = RecordingSleep()
    handler, seen = scripted(
        httpx.Response(503),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        ok_return(),
    )
    async with client_for(handler, sleep=sleep, read_retries=4) as reveni:
        ret = await reveni.get_return(RID)
        assert reveni.requests == 4 and reveni.retries == 3
    assert ret.id == RID and len(seen) == 4
    assert len(sleep.waits) == 3
    # equal jitter around a doubling ceiling: [c/2, c] for c = 0.25, 0.5, 1.0
    for wait, ceiling in zip(sleep.waits, (0.25, 0.5, 1.0), strict=True):
        assert ceiling / 2 <= wait <= ceiling


async def test_read_gives_up_after_read_retries() -> None:
    handler, seen = scripted(httpx.Response(502))
    async with client_for(handler, read_retries=2) as reveni:
        with pytest.raises(ReveniTransient, match="HTTP 502") as info:
            await reveni.get_return(RID)
    assert len(seen) == 3
    assert isinstance(info.value, TransientError) and isinstance(info.value, ReveniError)


async def test_connection_refused_is_transient_and_retried() -> None:
    handler, seen = scripted(httpx.ConnectError("refused"), ok_return())
    async with client_for(handler) as reveni:
        await reveni.get_return(RID)
    assert len(seen) == 2


async def test_read_waits_retry_after_on_429_then_succeeds() -> None:
    sleep = RecordingSleep()
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "7"}), ok_return())
    async with client_for(handler, sleep=sleep) as reveni:
        await reveni.get_return(RID)
        assert reveni.rate_limited == 1
    assert sleep.waits == [7.0] and len(seen) == 2


async def test_429_without_retry_after_waits_a_default_second() -> None:
    sleep = RecordingSleep()
    handler, _ = scripted(httpx.Response(429), ok_return())
    async with client_for(handler, sleep=sleep) as reveni:
        await reveni.get_return(RID)
    assert sleep.waits == [1.0]


async def test_429_with_a_long_retry_after_is_raised_not_slept() -> None:
    sleep = RecordingSleep()
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "3600"}))
    async with client_for(handler, sleep=sleep, max_retry_after_seconds=60) as reveni:
        with pytest.raises(ReveniRateLimited) as info:
            await reveni.get_return(RID)
    assert info.value.retry_after == 3600 and isinstance(info.value, RateLimitedError)
    assert sleep.waits == [] and len(seen) == 1


async def test_429_retries_are_bounded_by_read_retries() -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "1"}))
    async with client_for(handler, read_retries=2) as reveni:
        with pytest.raises(ReveniRateLimited):
            await reveni.get_return(RID)
    assert len(seen) == 3


# --------------------------------------------------------------------------- read errors


@pytest.mark.parametrize(
    ("status", "kind", "shared"),
    [
        (401, ReveniAuthError, AuthError),
        (403, ReveniAuthError, AuthError),
        (400, ReveniRejected, RejectedError),
        (409, ReveniRejected, RejectedError),
        (422, ReveniRejected, RejectedError),
    ],
)
async def test_4xx_are_classified_and_never_retried(
    status: int, kind: type[Exception], shared: type[Exception]
) -> None:
    handler, seen = scripted(httpx.Response(status, json={"detail": "nope, because"}))
    async with client_for(handler) as reveni:
        with pytest.raises(kind, match="nope, because") as info:
            await reveni.get_return(RID)
    assert isinstance(info.value, shared) and len(seen) == 1


async def test_404_is_not_found_with_the_detail() -> None:
    handler, _ = scripted(httpx.Response(404, json={"detail": "Not found."}))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniNotFound) as info:
            await reveni.get_return(RID)
    assert info.value.detail == "Not found." and info.value.operation == "get_return"
    assert isinstance(info.value, ReveniError)
    assert not isinstance(info.value, RejectedError | TransientError)


async def test_rejected_keeps_status_and_detail_from_the_inferred_key() -> None:
    from returnbridge.connectors.reveni import ReveniInferred

    inferred = ReveniInferred(error_detail_key="message")
    handler, _ = scripted(httpx.Response(400, json={"message": "updated_from: bad date"}))
    async with client_for(handler, inferred=inferred) as reveni:
        with pytest.raises(ReveniRejected) as info:
            await reveni.list_returns()
    assert info.value.status == 400 and info.value.detail == "updated_from: bad date"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>proxy</html>"),
        httpx.Response(200, content=b""),
        httpx.Response(202, json={}),
        httpx.Response(204),
        httpx.Response(302, headers={"Location": "/elsewhere"}),
    ],
)
async def test_unreadable_or_non_success_reads_are_query_errors(response: httpx.Response) -> None:
    handler, seen = scripted(response)
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniQueryError) as info:
            await reveni.get_return(RID)
    assert isinstance(info.value, QueryError) and len(seen) == 1


# --------------------------------------------------------------------------- writes


async def test_partial_validate_sends_the_confirmed_body_once() -> None:
    handler, seen = scripted(ok_return(status="accepted"))
    decisions: list[ItemDecision | dict[str, Any]] = [
        ItemDecision("item_1", "accepted", quantity=1),
        {"item_id": "item_2", "status": "rejected", "reject_reason": "defect"},
    ]
    async with client_for(handler) as reveni:
        ret = await reveni.partial_validate(RID, decisions)
    assert ret.status == "accepted"
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == f"{PREFIX}/returns/{RID}/partial_validate"
    assert request_json(request) == {
        "items": [
            {"item_id": "item_1", "status": "accepted", "quantity": 1},
            {"item_id": "item_2", "status": "rejected", "reject_reason": "defect"},
        ]
    }


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("no answer"),
        httpx.RemoteProtocolError("dropped"),
        httpx.WriteTimeout("half sent"),
        httpx.Response(500),
        httpx.Response(503),
        httpx.Response(202, json={}),
        httpx.Response(200, content=b"not json"),
        httpx.Response(200, json={"id": RID}),  # accepted, but not a Return
    ],
)
async def test_write_that_may_have_landed_is_in_doubt_and_not_resent(
    failure: httpx.Response | Exception,
) -> None:
    handler, seen = scripted(failure)
    async with client_for(handler, read_retries=4) as reveni:
        with pytest.raises(ReveniInDoubt) as info:
            await reveni.partial_validate(RID, ACCEPT)
    assert len(seen) == 1
    assert isinstance(info.value, InDoubtError)
    assert info.value.operation == "partial_validate"
    assert info.value.request_summary["return_id"] == RID


@pytest.mark.parametrize(
    "failure", [httpx.ConnectError("refused"), httpx.ConnectTimeout("no route")]
)
async def test_write_that_never_left_is_transient(failure: Exception) -> None:
    handler, seen = scripted(failure)
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniTransient, match="not sent"):
            await reveni.partial_validate(RID, ACCEPT)
    assert len(seen) == 1


async def test_write_refusals_are_rejected_auth_or_not_found_never_in_doubt() -> None:
    handler, seen = scripted(
        httpx.Response(400, json={"detail": "a return in 'in_progress' cannot be decided"}),
        httpx.Response(401, json={"detail": "Invalid token."}),
        httpx.Response(404, json={"detail": "Not found."}),
        httpx.Response(429, headers={"Retry-After": "2"}),
    )
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniRejected, match="cannot be decided"):
            await reveni.partial_validate(RID, ACCEPT)
        with pytest.raises(ReveniAuthError):
            await reveni.partial_validate(RID, ACCEPT)
        with pytest.raises(ReveniNotFound):
            await reveni.partial_validate(RID, ACCEPT)
        with pytest.raises(ReveniRateLimited):
            await reveni.partial_validate(RID, ACCEPT)
    assert len(seen) == 4  # a rate-limited write is not resent by the client either


async def test_delete_webhook_accepts_204_and_reports_missing() -> None:
    handler, seen = scripted(httpx.Response(204), httpx.Response(404, json={"detail": "x"}))
    async with client_for(handler) as reveni:
        await reveni.delete_webhook("wh_1")
        with pytest.raises(ReveniNotFound):
            await reveni.delete_webhook("wh_1")
    assert seen[0].method == "DELETE" and str(seen[0].url) == f"{PREFIX}/webhooks/wh_1"


async def test_create_webhook_timeout_is_in_doubt() -> None:
    handler, seen = scripted(httpx.ReadTimeout("slow"))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniInDoubt) as info:
            await reveni.create_webhook("https://hooks.example/reveni", ["return.updated"])
    assert info.value.request_summary == {
        "url": "https://hooks.example/reveni",
        "event_types": ["return.updated"],
    }
    assert len(seen) == 1


async def test_invalid_arguments_are_refused_before_sending() -> None:
    handler, seen = scripted(httpx.Response(200, json=envelope([])))
    async with client_for(handler) as reveni:
        with pytest.raises(ValueError, match="event_types"):
            await reveni.create_webhook("https://x", ["refund.created"])
        with pytest.raises(ValueError, match="at least one item"):
            await reveni.partial_validate(RID, [])
        with pytest.raises(ValueError, match="accepted or rejected"):
            ItemDecision("i", "maybe")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="YYYY-MM"):
            await reveni.invoices("2026-13")
        with pytest.raises(ValueError, match="page_size"):
            await reveni.list_returns(page_size=1000)
        with pytest.raises(ValueError, match="unknown Reveni status"):
            await reveni.list_returns(status="lost")
    assert seen == []
