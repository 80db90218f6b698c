"""How the client classifies every kind of answer, against a scripted HTTP transport.

Reads retry; writes never do. A failure before sending is transient, one after sending is in
doubt. These run without a server: `httpx.MockTransport` answers, a fake clock absorbs waits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from centra_fakes import FakeClock

from returnbridge.connectors.centra import (
    CentraAuthError,
    CentraClient,
    CentraInDoubt,
    CentraQueryError,
    CentraRateLimited,
    CentraRejected,
    CentraTransient,
    Governor,
    OrderCreateInput,
    OrderProduct,
    ReturnLineInput,
    StockDelta,
)

Handler = Callable[[httpx.Request], httpx.Response]


def scripted(*steps: Handler | httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler that plays `steps` in order (the last one repeats) and records each request."""
    seen: list[httpx.Request] = []
    queue: Iterator[Handler | httpx.Response | Exception] = iter(steps)
    last: list[Handler | httpx.Response | Exception] = [steps[-1]]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = next(queue, last[0])
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)

    return handler, seen


def gql(data: Any = None, errors: Any = None, status: int = 200) -> httpx.Response:
    body: dict[str, Any] = {"data": data}
    if errors is not None:
        body["errors"] = errors
    return httpx.Response(status, json=body)


def client_for(handler: Handler, clock: FakeClock | None = None, **kwargs: Any) -> CentraClient:
    return CentraClient(
        base_url="http://centra.test",
        token="tok",
        order_api_secret="sec",
        governor=Governor("unlimited", 1.0, clock=clock or FakeClock()),
        http_transport=httpx.MockTransport(handler),
        **kwargs,
    )


RATE_LIMITS = {
    "rateLimits": [
        {
            "type": "REQUEST_COUNT",
            "intervalSeconds": "TEN_SECONDS",
            "quota": 60,
            "usedQuota": 1,
            "remainingQuota": 59,
        }
    ]
}
PAYLOAD_OK = {"createReturn": {"return": None, "userErrors": [], "userWarnings": []}}


def request_json(request: httpx.Request) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.content)
    return body


async def test_graphql_request_shape_and_bearer_token() -> None:
    handler, seen = scripted(gql(RATE_LIMITS))
    async with client_for(handler) as centra:
        rows = await centra.rate_limits()
    assert rows[0].remaining_quota == 59 and rows[0].interval == "TEN_SECONDS"
    request = seen[0]
    assert str(request.url) == "http://centra.test/graphql"
    assert request.headers["Authorization"] == "Bearer tok"
    body = request_json(request)
    assert body["operationName"] == "RateLimits" and "query RateLimits" in body["query"]


async def test_read_retries_transient_failures_with_backoff() -> None:
    clock = FakeClock()
    handler, seen = scripted(httpx.Response(503), httpx.ReadTimeout("slow"), gql(RATE_LIMITS))
    async with client_for(handler, clock, read_retries=4) as centra:
        await centra.rate_limits()
        assert centra.requests_sent == 3
    assert len(seen) == 3
    assert clock.now > 0  # backed off on the fake clock


async def test_read_gives_up_after_read_retries() -> None:
    handler, seen = scripted(httpx.Response(502))
    async with client_for(handler, read_retries=2) as centra:
        with pytest.raises(CentraTransient, match="HTTP 502"):
            await centra.rate_limits()
    assert len(seen) == 3


async def test_read_waits_retry_after_on_429_then_succeeds() -> None:
    clock = FakeClock()
    handler, _ = scripted(httpx.Response(429, headers={"Retry-After": "5"}), gql(RATE_LIMITS))
    async with client_for(handler, clock) as centra:
        await centra.rate_limits()
        assert centra.rate_limited == 1
    assert clock.now >= 5


async def test_wrong_token_is_an_auth_error_and_not_retried() -> None:
    handler, seen = scripted(httpx.Response(403, json={"errors": [{"message": "bad token"}]}))
    async with client_for(handler) as centra:
        with pytest.raises(CentraAuthError, match="403"):
            await centra.rate_limits()
    assert len(seen) == 1


async def test_missing_permission_is_an_auth_error() -> None:
    errors = [
        {
            "message": "You need Order:read permission to access orders.",
            "extensions": {"category": "authorization"},
        }
    ]
    handler, _ = scripted(gql(None, errors))
    async with client_for(handler) as centra:
        with pytest.raises(CentraAuthError, match="Order:read"):
            await centra.orders_by_number([1])


async def test_bad_query_is_a_query_error_and_not_retried() -> None:
    handler, seen = scripted(
        httpx.Response(400, json={"errors": [{"message": 'Cannot query field "x"'}]})
    )
    async with client_for(handler) as centra:
        with pytest.raises(CentraQueryError, match="Cannot query field") as info:
            await centra.rate_limits()
    assert info.value.errors and len(seen) == 1


async def test_response_not_matching_the_model_is_a_query_error() -> None:
    handler, _ = scripted(gql({"rateLimits": [{"type": "REQUEST_COUNT"}]}))
    async with client_for(handler) as centra:
        with pytest.raises(CentraQueryError, match="does not match"):
            await centra.rate_limits()


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500),
        httpx.Response(503),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
        httpx.WriteTimeout("write"),
        httpx.Response(200, content=b"<html>proxy</html>"),
    ],
    ids=["500", "503", "read-timeout", "disconnect", "reset", "write-timeout", "garbled-200"],
)
async def test_mutation_failing_after_send_is_in_doubt_and_sent_once(
    failure: httpx.Response | Exception,
) -> None:
    handler, seen = scripted(failure, gql(PAYLOAD_OK))
    async with client_for(handler, read_retries=5) as centra:
        with pytest.raises(CentraInDoubt) as info:
            await centra.create_return(
                shipment_id=7, lines=[ReturnLineInput(70, 1)], external_id="ret_1"
            )
        assert centra.mutations_sent == 1
    assert len(seen) == 1
    doubt = info.value
    assert doubt.operation == "CreateReturn"
    assert doubt.request_summary["variables"]["input"]["externalId"] == "ret_1"
    assert "read Centra back" in str(doubt)


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("connect"), httpx.PoolTimeout("pool")],
    ids=["refused", "connect-timeout", "pool-timeout"],
)
async def test_mutation_failing_before_send_is_transient(failure: Exception) -> None:
    handler, seen = scripted(failure)
    async with client_for(handler) as centra:
        with pytest.raises(CentraTransient, match="not sent"):
            await centra.complete_return(3)
    assert len(seen) == 1


async def test_mutation_429_is_rate_limited_not_retried_and_pauses_the_governor() -> None:
    clock = FakeClock()
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "9"}))
    async with client_for(handler, clock) as centra:
        with pytest.raises(CentraRateLimited) as info:
            await centra.complete_return(3)
        assert info.value.retry_after == 9
        await centra.governor.acquire()
    assert len(seen) == 1
    assert clock.now >= 9


async def test_user_errors_are_rejections_with_their_paths() -> None:
    payload = {
        "completeReturn": {
            "return": None,
            "userErrors": [{"message": "Return is already completed", "path": ["id"]}],
            "userWarnings": [],
        }
    }
    handler, _ = scripted(gql(payload))
    async with client_for(handler) as centra:
        with pytest.raises(CentraRejected, match="already completed") as info:
            await centra.complete_return(3)
    assert info.value.operation == "CompleteReturn"
    assert [(e.message, e.path) for e in info.value.user_errors] == [
        ("Return is already completed", ("id",))
    ]


async def test_orders_are_batched_deduplicated_and_missing_ones_absent() -> None:
    asked: list[list[int]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        numbers = request_json(request)["variables"]["numbers"]
        asked.append(numbers)
        return gql({"orders": []})

    async with client_for(answer, orders_per_query=50) as centra:
        found = await centra.orders_by_number([*range(1, 121), 5, 5])
        assert centra.requests_sent == 3
    assert found == {}
    assert [len(batch) for batch in asked] == [50, 50, 20]
    assert sorted(n for batch in asked for n in batch) == list(range(1, 121))


async def test_money_is_decoded_as_exact_decimal() -> None:
    sizes = {
        "productSizes": [
            {
                "id": 50,
                "SKU": "A",
                "EAN": None,
                "description": "M",
                "productVariant": {"id": 5},
                "stockTotals": {
                    "physicalQuantity": 1,
                    "availableQuantity": 1,
                    "allocatedQuantity": 0,
                    "demandQuantity": 0,
                    "freeToAllocateQuantity": 1,
                },
            }
        ]
    }
    handler, _ = scripted(httpx.Response(200, content=json.dumps({"data": sizes}).encode()))
    async with client_for(handler) as centra:
        found = await centra.product_sizes_by_sku(["A", "A"])
    assert found["A"].variant_id == 5
    from returnbridge.connectors.centra.transport import _decode

    assert _decode(httpx.Response(200, content=b'{"v": 299.9}')) == {"v": Decimal("299.9")}


async def test_rest_duplicate_order_number_is_rejected_with_code() -> None:
    handler, seen = scripted(
        httpx.Response(
            400,
            json={
                "status": "no",
                "code": -5,
                "msg": "An order with the provided order number already exists",
            },
        )
    )
    async with client_for(handler) as centra:
        with pytest.raises(CentraRejected) as info:
            await centra.create_order(
                OrderCreateInput(order_number=900001, products=[OrderProduct("A", 1, Decimal("0"))])
            )
        assert centra.rest_requests_sent == 1 and centra.requests_sent == 0
    assert info.value.error_code == -5
    request = seen[0]
    assert str(request.url) == "http://centra.test/api/order/order"
    assert request.headers["API-Authorization"] == "sec"
    assert request_json(request)["orderNumber"] == 900001


async def test_rest_write_5xx_is_in_doubt_and_read_5xx_is_retried() -> None:
    handler, seen = scripted(httpx.Response(502))
    async with client_for(handler, read_retries=1) as centra:
        with pytest.raises(CentraInDoubt, match="updateReturn"):
            await centra.update_return(3, completed=True, refund_payment=True)
        assert len(seen) == 1
        with pytest.raises(CentraTransient):
            await centra.list_returns_rest()
    assert len(seen) == 3


async def test_rest_wrong_secret_is_an_auth_error() -> None:
    handler, _ = scripted(httpx.Response(401, json={"status": "no", "msg": "unauthorized"}))
    async with client_for(handler) as centra:
        with pytest.raises(CentraAuthError):
            await centra.update_return(3, completed=True, refund_payment=False)


async def test_rest_success_bodies() -> None:
    handler, seen = scripted(
        httpx.Response(200, json={"status": "ok", "orders": [900001]}),
        httpx.Response(
            200,
            json={
                "status": "ok",
                "returns": [{"returnId": 3, "completed": False, "shipmentId": 7, "products": []}],
            },
        ),
    )
    async with client_for(handler) as centra:
        assert await centra.create_order(
            OrderCreateInput(order_number=900001, products=[OrderProduct("A", 1, Decimal("0"))])
        ) == [900001]
        rows = await centra.list_returns_rest(order=1001)
    assert rows[0].return_id == 3 and rows[0].shipment_id == 7
    assert seen[1].url.params["order"] == "1001" and "shipment" not in seen[1].url.params


def test_explicit_arguments_override_settings_and_secrets_stay_secret() -> None:
    from returnbridge.settings import CentraSettings

    settings = CentraSettings(plan="growth", orders_per_query=20)
    centra = CentraClient(settings, base_url="http://x.test", token="t0ken", budget_share=0.2)
    assert centra.settings.base_url == "http://x.test"
    assert centra.settings.orders_per_query == 20
    assert centra.governor is Governor.shared("http://x.test", "growth", 0.2)
    assert "t0ken" not in repr(centra.settings)


async def test_settings_client_takes_the_hooks_and_centras_own() -> None:
    from returnbridge.settings import CentraSettings

    settings = CentraSettings(base_url="http://y.test", plan="growth", read_retries=2)
    default = settings.client()
    assert default.governor is Governor.shared("http://y.test", "growth", 0.5)
    assert default.orders_per_query == settings.orders_per_query
    await default.aclose()

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    clock = FakeClock()
    governor = Governor("unlimited", 1.0, clock=clock)
    handler, seen = scripted(httpx.Response(503))
    async with settings.client(
        http_transport=httpx.MockTransport(handler),
        sleep=sleep,
        timeout_seconds=4,
        governor=governor,
        orders_per_query=7,
    ) as centra:
        assert centra.governor is governor and centra.orders_per_query == 7
        assert centra.settings.timeout_seconds == 4 and settings.timeout_seconds == 10
        with pytest.raises(CentraTransient):
            await centra.orders_by_number([1])
    assert len(seen) == 3 and len(waits) == 2  # the backoff went to `sleep`, not the clock
    assert clock.now == 0


async def test_retry_after_far_in_the_future_is_capped_at_the_longest_window() -> None:
    clock = FakeClock()
    # A millisecond timestamp read as seconds would pause every caller for millennia.
    handler, _ = scripted(httpx.Response(429, headers={"Retry-After": "1800000012000"}))
    async with client_for(handler, clock) as centra:
        with pytest.raises(CentraRateLimited) as info:
            await centra.complete_return(3)
        assert info.value.retry_after == 3600
        await centra.governor.acquire()
    assert 3600 <= clock.now <= 3601


@pytest.mark.parametrize(
    "answer",
    [
        gql(
            {"createReturn": {"return": None, "userErrors": [], "userWarnings": []}},
            [{"message": "Internal error", "path": ["createReturn", "return", "lines"]}],
        ),
        gql(None, [{"message": "Internal server error", "path": ["createReturn"]}]),
    ],
    ids=["partial-payload", "resolver-failed"],
)
async def test_mutation_graphql_error_during_execution_is_in_doubt(answer: httpx.Response) -> None:
    handler, seen = scripted(answer)
    async with client_for(handler) as centra:
        with pytest.raises(CentraInDoubt, match="Internal"):
            await centra.create_return(
                shipment_id=7, lines=[ReturnLineInput(70, 1)], external_id="ret_1"
            )
    assert len(seen) == 1


async def test_mutation_graphql_request_error_is_a_query_error() -> None:
    handler, _ = scripted(gql(None, [{"message": 'Unknown argument "x"', "locations": []}]))
    async with client_for(handler) as centra:
        with pytest.raises(CentraQueryError, match="Unknown argument"):
            await centra.complete_return(3)


async def test_model_mismatch_message_names_fields_but_not_customer_data() -> None:
    order = {"number": 1001, "customer": {"id": 3, "email": "anna@example.com"}}
    handler, _ = scripted(gql({"orders": [order]}))
    async with client_for(handler) as centra:
        with pytest.raises(CentraQueryError, match="does not match Order") as info:
            await centra.orders_by_number([1001])
    assert "lines" in str(info.value) and "anna@example.com" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def stock_change(change_id: int, description: str) -> dict[str, Any]:
    return {
        "id": change_id,
        "createdAt": "2026-10-05T09:00:00+02:00",
        "description": description,
        "warehouse": {"id": 1},
        "lines": [],
    }


async def test_restock_read_back_matches_the_description_exactly() -> None:
    rows = [
        stock_change(1, "returnbridge restock ret_1"),
        stock_change(2, "returnbridge restock ret_10"),
    ]
    handler, _ = scripted(gql({"stockChanges": rows}))
    async with client_for(handler) as centra:
        found = await centra.stock_changes_by_description("returnbridge restock ret_1")
    assert [c.id for c in found] == [1]


def return_wire(return_id: int, external_id: str, order_number: int) -> dict[str, Any]:
    zero = {"value": 0, "currency": {"code": "SEK"}, "conversionRate": 1}
    return {
        "id": return_id,
        "returnStatus": "PENDING",
        "createdAt": "2026-10-05T09:00:00+02:00",
        "externalId": external_id,
        "returnedToStock": False,
        "shipment": {"id": 7},
        "order": {"id": "a" * 32, "number": order_number},
        "lines": [],
        "totals": {k: zero for k in ("shipping", "handling", "voucherValue", "returnCost")},
        "grandTotal": zero,
        "refundPaymentHistory": [],
    }


async def test_return_read_backs_keep_only_what_was_asked() -> None:
    rows = [return_wire(1, "ret_1", 1001), return_wire(2, "ret_10", 1002)]
    handler, _ = scripted(gql({"returns": rows}))
    async with client_for(handler) as centra:
        by_external = await centra.returns_by_external_id(["ret_1"])
        by_order = await centra.returns_for_orders([1001])
    assert {k: [r.id for r in v] for k, v in by_external.items()} == {"ret_1": [1]}
    assert {k: [r.id for r in v] for k, v in by_order.items()} == {1001: [1]}


async def test_return_pages_respect_the_configured_returns_limit() -> None:
    from returnbridge.connectors.centra.inferred import CentraInferred
    from returnbridge.settings import CentraSettings

    handler, seen = scripted(gql({"returns": []}))
    settings = CentraSettings(inferred=CentraInferred(returns_limit_max=100))
    async with CentraClient(
        settings,
        base_url="http://centra.test",
        governor=Governor("unlimited", 1.0, clock=FakeClock()),
        http_transport=httpx.MockTransport(handler),
    ) as centra:
        await centra.returns_for_orders([1001])
        await centra.returns_by_external_id(["ret_1"])
        _ = [r async for r in centra.iter_returns(page_size=500)]
    assert [request_json(r)["variables"]["limit"] for r in seen] == [100, 100, 100]


async def test_accepted_mutation_with_an_unreadable_payload_is_in_doubt_not_a_failure() -> None:
    # No userErrors: Centra applied the change. A payload our model cannot read (schema drift)
    # must send the caller to read back, not let it conclude the write failed and resend it.
    drifted = {"changeStock": {"stockChange": {"id": 1}, "userErrors": [], "userWarnings": []}}
    handler, seen = scripted(gql(drifted))
    async with client_for(handler) as centra:
        with pytest.raises(CentraInDoubt, match="ChangeStock") as info:
            await centra.change_stock(
                description="returnbridge restock ret_1",
                deltas=[StockDelta(5, 50, 1)],
                into_warehouse_id=1,
            )
    assert len(seen) == 1
    assert info.value.request_summary["variables"]["input"]["description"].endswith("ret_1")


async def test_created_order_with_an_unexpected_body_is_in_doubt() -> None:
    handler, _ = scripted(httpx.Response(200, json={"status": "ok", "orders": [{"n": 1}]}))
    async with client_for(handler) as centra:
        with pytest.raises(CentraInDoubt, match="createOrder"):
            await centra.create_order(
                OrderCreateInput(order_number=900001, products=[OrderProduct("A", 1, Decimal("0"))])
            )
