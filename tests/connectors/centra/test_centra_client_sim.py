"""The Centra client against the Centra simulator over real HTTP.

Reads are batched and paginated, writes surface Centra's refusals as CentraRejected, an unknown
outcome is CentraInDoubt and is settled by reading back, and a governed client never earns a 429.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle, running_centra_sim

from returnbridge.connectors.centra import (
    CentraAuthError,
    CentraClient,
    CentraInDoubt,
    CentraQueryError,
    CentraRejected,
    CreatedFromOrigin,
    Governor,
    Order,
    OrderCreateInput,
    OrderProduct,
    ReturnLineInput,
    StockDelta,
    StockLevel,
)
from returnbridge.scenario import Scenario

ADDRESS = {"address": {"email": "anna@example.com", "country": "SE"}}


def client_for(sim: CentraSimHandle, **kwargs: Any) -> CentraClient:
    options: dict[str, Any] = {
        "base_url": sim.url,
        "token": sim.token,
        "order_api_secret": sim.order_api_secret,
        "plan": "unlimited",
        "backoff_seconds": 0.01,
    }
    options.update(kwargs)
    return CentraClient(**options)


@pytest.fixture
async def centra(centra_sim: CentraSimHandle) -> AsyncIterator[CentraClient]:
    async with client_for(centra_sim, governor=Governor("unlimited", 1.0)) as client:
        yield client


def counters(sim: CentraSimHandle) -> dict[str, Any]:
    body: dict[str, Any] = sim.client.get("/_sim/counters").json()
    return body


def set_faults(sim: CentraSimHandle, **faults: Any) -> None:
    response = sim.client.post("/_sim/faults", json=faults)
    assert response.status_code == 200, response.text


async def shipped_line(centra: CentraClient, number: int) -> tuple[Order, int, int]:
    """An order, its first shipped shipment id and that shipment's first line id."""
    order = (await centra.orders_by_number([number]))[number]
    shipment = next(s for s in order.shipments if s.is_shipped)
    return order, shipment.id, shipment.lines[0].id


# -- reads ------------------------------------------------------------------------------------


async def test_orders_by_number_reads_a_batch_in_one_request(
    centra: CentraClient, centra_sim: CentraSimHandle
) -> None:
    found = await centra.orders_by_number([1001, 1003, 1004, 424242])
    assert sorted(found) == [1001, 1003, 1004]  # an unknown number is simply absent
    assert centra.requests_sent == 1
    assert counters(centra_sim)["requests"] == 1
    order = found[1001]
    assert (order.status, order.currency) == ("SHIPPED", "SEK")
    assert [(line.sku, line.quantity) for line in order.lines] == [("TEE-BLK-M", 2)]
    assert order.lines[0].unit_price.value == Decimal("299.00")
    shipment = order.shipments[0]
    assert shipment.is_shipped and shipment.lines[0].order_line_id == order.lines[0].id
    assert {e.entry_type for e in order.payment_history} >= {"AUTH", "CAPTURE"}
    assert order.customer is not None and order.customer.email == "anna@example.com"
    partly = found[1003]
    assert [s.is_shipped for s in partly.shipments] == [True, False]


async def test_large_lookups_are_split_into_batches(centra_sim: CentraSimHandle) -> None:
    async with client_for(centra_sim, orders_per_query=2, governor=Governor("unlimited", 1)) as c:
        found = await c.orders_by_number([1001, 1002, 1003, 1004, 1005, 1001])
        assert sorted(found) == [1001, 1002, 1003, 1004, 1005]
        assert c.requests_sent == 3


async def test_limit_page_and_connection_iterators_see_every_order_once(
    centra: CentraClient,
) -> None:
    paged = [o.number async for o in centra.iter_orders(page_size=2, sort=["number_ASC"])]
    assert paged == [1001, 1002, 1003, 1004, 1005]
    assert centra.requests_sent == 3
    linked = [o.number async for o in centra.iter_order_connection(page_size=2)]
    assert linked == [1001, 1002, 1003, 1004, 1005]
    first = await centra.order_connection_page(first=2)
    assert first.total_count == 5 and first.has_next_page and first.end_cursor
    shipped = [o.number async for o in centra.iter_orders({"status": ["SHIPPED"]}, page_size=50)]
    assert shipped == [1001, 1004]


async def test_order_by_id_round_trips_and_unknown_id_is_none(centra: CentraClient) -> None:
    order = (await centra.orders_by_number([1004]))[1004]
    again = await centra.order_by_id(order.id)
    assert again is not None and again.number == 1004
    assert await centra.order_by_id("0" * 32) is None


async def test_stock_reads(centra: CentraClient) -> None:
    sizes = await centra.product_sizes_by_sku(["TEE-BLK-M", "JEANS-32", "NO-SUCH-SKU"])
    assert sorted(sizes) == ["JEANS-32", "TEE-BLK-M"]
    assert sizes["TEE-BLK-M"].stock_totals.physical_quantity == 5
    assert sizes["JEANS-32"].stock_totals.available_quantity == 0
    assert [(w.id, w.name) for w in await centra.warehouses()] == [(1, "Main"), (2, "Returns")]
    rows = await centra.rate_limits()
    assert len(rows) == 6


# -- writes and their read-backs ---------------------------------------------------------------


async def test_create_return_reads_back_by_external_id_and_completes_once(
    centra: CentraClient, centra_sim: CentraSimHandle
) -> None:
    _, shipment_id, line_id = await shipped_line(centra, 1001)
    created = await centra.create_return(
        shipment_id=shipment_id,
        lines=[ReturnLineInput(line_id, 1)],
        external_id="ret_0001",
        comment="returnbridge ret_0001",
    )
    ret = created.value
    assert (ret.order_number, ret.external_id, ret.status) == (1001, "ret_0001", "PENDING")
    assert ret.lines[0].sku == "TEE-BLK-M" and ret.lines[0].quantity == 1
    assert centra.mutations_sent == 1

    by_external = await centra.returns_by_external_id(["ret_0001", "ret_unknown"])
    assert [r.id for r in by_external["ret_0001"]] == [ret.id] and by_external["ret_unknown"] == []
    assert [r.id for r in await centra.returns_for_order(1001)] == [ret.id]
    assert (await centra.returns_for_orders([1003]))[1003] == []

    done = await centra.complete_return(ret.id)
    assert done.value.status == "COMPLETED"
    with pytest.raises(CentraRejected, match="complete") as info:
        await centra.complete_return(ret.id)
    assert info.value.operation == "CompleteReturn" and info.value.user_errors


async def test_returning_more_than_shipped_is_rejected_and_changes_nothing(
    centra: CentraClient, centra_sim: CentraSimHandle
) -> None:
    before = centra_sim.client.get("/_sim/effects").json()
    _, shipment_id, line_id = await shipped_line(centra, 1001)
    with pytest.raises(CentraRejected) as info:
        await centra.create_return(shipment_id=shipment_id, lines=[ReturnLineInput(line_id, 3)])
    assert info.value.user_errors and all(e.message for e in info.value.user_errors)
    assert centra_sim.client.get("/_sim/effects").json() == before
    assert await centra.returns_for_order(1001) == []


async def test_unknown_shipment_is_rejected(centra: CentraClient) -> None:
    with pytest.raises(CentraRejected):
        await centra.create_return(shipment_id=987654, lines=[ReturnLineInput(1, 1)])


async def test_restock_is_one_stock_change_read_back_by_description(
    centra: CentraClient,
) -> None:
    size = (await centra.product_sizes_by_sku(["TEE-BLK-M"]))["TEE-BLK-M"]
    description = "returnbridge restock ret_0001"
    assert await centra.stock_changes_by_description(description) == []
    change = await centra.change_stock(
        description=description,
        deltas=[StockDelta(size.variant_id, size.id, 1)],
        into_warehouse_id=2,
    )
    assert change.value.warehouse_id == 2 and change.value.lines[0].delivered_quantity == 1
    found = await centra.stock_changes_by_description(description)
    assert [c.id for c in found] == [change.value.id]
    after = (await centra.product_sizes_by_sku(["TEE-BLK-M"]))["TEE-BLK-M"]
    assert after.stock_totals.physical_quantity == size.stock_totals.physical_quantity + 1


async def test_removing_more_than_free_to_allocate_is_rejected(centra: CentraClient) -> None:
    size = (await centra.product_sizes_by_sku(["TEE-BLK-L"]))["TEE-BLK-L"]
    with pytest.raises(CentraRejected):
        await centra.change_stock(
            description="too much",
            deltas=[StockDelta(size.variant_id, size.id, 50)],
            out_from_warehouse_id=1,
        )


async def test_set_stock_sets_an_absolute_level(centra: CentraClient) -> None:
    size = (await centra.product_sizes_by_sku(["JEANS-32"]))["JEANS-32"]
    applied = await centra.set_stock(
        warehouse_id=1, levels=[StockLevel(size.variant_id, size.id, 4)], description="count"
    )
    assert applied.value
    after = (await centra.product_sizes_by_sku(["JEANS-32"]))["JEANS-32"]
    assert after.stock_totals.physical_quantity == 4


async def test_refund_through_the_order_api_completes_the_return(centra: CentraClient) -> None:
    _, shipment_id, line_id = await shipped_line(centra, 1001)
    ret = await centra.create_return(shipment_id=shipment_id, lines=[ReturnLineInput(line_id, 1)])
    body = await centra.update_return(ret.value.id, completed=True, refund_payment=True)
    assert body.return_completed is True and body["return"]["returnId"] == ret.value.id
    rows = await centra.list_returns_rest(order=1001)
    assert [(r.return_id, r.completed) for r in rows] == [(ret.value.id, True)]
    order = (await centra.orders_by_number([1001]))[1001]
    assert any(e.entry_type == "REFUND" for e in order.payment_history)
    assert centra.rest_requests_sent == 2


async def test_zero_value_exchange_order_is_idempotent_by_number(centra: CentraClient) -> None:
    products = [OrderProduct("TEE-BLK-L", 1, Decimal("0.00"))]
    numbers = await centra.create_order(
        OrderCreateInput(
            order_number=900001,
            products=products,
            created_from_origin=CreatedFromOrigin("return", 1),
            extra=ADDRESS,
        )
    )
    assert numbers == [900001]
    created = (await centra.orders_by_number([900001]))[900001]
    assert created.grand_total.value == 0 and created.is_internal
    with pytest.raises(CentraRejected) as duplicate:
        await centra.create_order(
            OrderCreateInput(order_number=900001, products=products, extra=ADDRESS)
        )
    assert duplicate.value.error_code == -5
    with pytest.raises(CentraRejected) as no_stock:
        await centra.create_order(
            OrderCreateInput(
                order_number=900002,
                products=[OrderProduct("JEANS-32", 1, Decimal(0))],
                extra=ADDRESS,
            )
        )
    assert no_stock.value.error_code == -2


# -- bad inputs --------------------------------------------------------------------------------


async def test_wrong_token_is_an_auth_error(centra_sim: CentraSimHandle) -> None:
    async with client_for(centra_sim, token="wrong", governor=Governor("unlimited", 1)) as c:
        with pytest.raises(CentraAuthError, match="403"):
            await c.orders_by_number([1001])
        assert c.requests_sent == 1  # not retried


async def test_wrong_order_api_secret_is_an_auth_error(centra_sim: CentraSimHandle) -> None:
    async with client_for(
        centra_sim, order_api_secret="wrong", governor=Governor("unlimited", 1)
    ) as c:
        with pytest.raises(CentraAuthError, match="401"):
            await c.update_return(1, completed=True, refund_payment=False)


async def test_missing_permission_is_an_auth_error(centra_sim: CentraSimHandle) -> None:
    grant = {"token": "read-stock-only", "permissions": ["Warehouse:read"]}
    assert centra_sim.client.post("/_sim/tokens", json=grant).status_code == 200
    async with client_for(
        centra_sim, token="read-stock-only", governor=Governor("unlimited", 1)
    ) as c:
        assert await c.warehouses()
        with pytest.raises(CentraAuthError, match="Order:read"):
            await c.orders_by_number([1001])


async def test_out_of_range_arguments_are_query_errors(centra: CentraClient) -> None:
    with pytest.raises(CentraQueryError, match="limit"):
        await centra.orders_page(limit=500)
    with pytest.raises(CentraQueryError, match="page"):
        await centra.orders_page(page=0)
    with pytest.raises(ValueError, match="at least 1"):
        await centra.create_return(shipment_id=1, lines=[ReturnLineInput(1, 0)])
    assert centra.mutations_sent == 0  # refused locally, no request spent


# -- faults ------------------------------------------------------------------------------------


async def test_reads_ride_out_transient_server_errors(
    centra: CentraClient, centra_sim: CentraSimHandle
) -> None:
    set_faults(centra_sim, seed=3, error_rate=0.4)
    found = await centra.orders_by_number([1001, 1002])
    assert sorted(found) == [1001, 1002]
    assert [o.number async for o in centra.iter_orders(page_size=1)] == [
        1001, 1002, 1003, 1004, 1005
    ]  # fmt: skip
    assert centra._transport.retries > 0
    assert counters(centra_sim)["errors_5xx"] == centra._transport.retries


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_timeout_after_commit_is_in_doubt_and_read_back_finds_the_effect(
    seed: int, centra_scenario: Scenario
) -> None:
    with running_centra_sim(centra_scenario, stall_seconds=1.0) as sim:
        async with client_for(sim, timeout_seconds=0.3, governor=Governor("unlimited", 1)) as c:
            _, shipment_id, line_id = await shipped_line(c, 1001)
            set_faults(sim, seed=seed, timeout_after_commit_rate=1.0)
            with pytest.raises(CentraInDoubt) as info:
                await c.create_return(
                    shipment_id=shipment_id,
                    lines=[ReturnLineInput(line_id, 1)],
                    external_id=f"ret_{seed}",
                )
            assert info.value.operation == "CreateReturn"
            assert info.value.request_summary["variables"]["input"]["externalId"] == f"ret_{seed}"
            assert c.mutations_sent == 1  # never resent
            set_faults(sim, timeout_after_commit_rate=0.0)
            found = await c.returns_by_external_id([f"ret_{seed}"])
            assert len(found[f"ret_{seed}"]) == 1  # it happened, exactly once
            assert counters(sim)["timeouts_after_commit"] == 1


async def test_refund_in_doubt_is_settled_by_reading_the_return(
    centra_sim: CentraSimHandle,
) -> None:
    async with client_for(centra_sim, timeout_seconds=0.3, governor=Governor("unlimited", 1)) as c:
        _, shipment_id, line_id = await shipped_line(c, 1001)
        ret = await c.create_return(shipment_id=shipment_id, lines=[ReturnLineInput(line_id, 1)])
        set_faults(centra_sim, seed=1, timeout_after_commit_rate=1.0, stall_seconds=1.0)
        with pytest.raises(CentraInDoubt, match="updateReturn"):
            await c.update_return(ret.value.id, completed=True, refund_payment=True)
        set_faults(centra_sim, timeout_after_commit_rate=0.0)
        (row,) = await c.list_returns_rest(return_id=ret.value.id)
        assert row.completed


async def test_spurious_429_on_a_read_waits_retry_after_and_succeeds(
    centra: CentraClient, centra_sim: CentraSimHandle
) -> None:
    set_faults(centra_sim, seed=10, rate_limit_rate=0.5)  # seed 10: first read is refused
    found = await centra.orders_by_number([1001])
    assert 1001 in found
    assert centra.rate_limited >= 1
    assert centra.rate_limited == counters(centra_sim)["rate_limited"]


# -- governed load -----------------------------------------------------------------------------


def _shared_budget_clients(sim: CentraSimHandle, count: int, plan: str) -> list[CentraClient]:
    governor = Governor(plan, 1.0)  # one environment, one budget, shared by every client
    return [client_for(sim, plan=plan, governor=governor) for _ in range(count)]


async def test_concurrent_clients_at_the_simulators_plan_never_get_429(
    centra_scenario: Scenario,
) -> None:
    """Growth allows 60 requests per 10 s. Three clients fire 75 reads at once: the shared
    governor lets exactly 60 through and holds the rest (they would wait for the window), and
    Centra never answers 429. The held ones are cancelled to keep the test fast."""
    with running_centra_sim(centra_scenario, plan="growth") as sim:
        clients = _shared_budget_clients(sim, 3, "growth")
        tasks = [
            asyncio.create_task(
                clients[i % 3].warehouses() if i % 2 else clients[i % 3].rate_limits()
            )
            for i in range(75)
        ]
        done, pending = await asyncio.wait(tasks, timeout=2.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        assert all(task.exception() is None for task in done)
        assert (len(done), len(pending)) == (60, 15)
        assert counters(sim)["rate_limited"] == 0
        assert sum(c.requests_sent for c in clients) == 60
        for client in clients:
            await client.aclose()


async def test_batched_reads_are_held_by_the_complexity_budget_not_refused(
    centra_scenario: Scenario,
) -> None:
    """Query complexity binds first for big reads: a 5-order batch costs about 4,800 points and
    growth allows 250,000 per 10 s, so 50 such reads fit and the rest wait, never 429."""
    with running_centra_sim(centra_scenario, plan="growth") as sim:
        governor = Governor("growth", 1.0)
        async with client_for(sim, plan="growth", governor=governor) as client:
            numbers = [1001, 1002, 1003, 1004, 1005]
            tasks = [asyncio.create_task(client.orders_by_number(numbers)) for _ in range(55)]
            done, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            assert all(len(task.result()) == 5 for task in done)
            assert 40 <= len(done) < 55 and pending
            assert counters(sim)["rate_limited"] == 0
            assert governor.granted_complexity <= 250_000


@pytest.mark.slow
async def test_sustained_mixed_load_over_a_full_window_gets_no_429(
    centra_scenario: Scenario,
) -> None:
    """Twice the 10 s request quota with mutations mixed in: everything completes after the
    window rolls over, and Centra never answers 429 (about 11 s)."""
    with running_centra_sim(centra_scenario, plan="growth") as sim:
        clients = _shared_budget_clients(sim, 3, "growth")
        size = (await clients[0].product_sizes_by_sku(["TEE-BLK-S"]))["TEE-BLK-S"]

        async def write(i: int) -> object:
            return await clients[i % 3].change_stock(
                description=f"load {i}",
                deltas=[StockDelta(size.variant_id, size.id, 1)],
                into_warehouse_id=1,
            )

        jobs = [write(i) if i % 4 == 0 else clients[i % 3].warehouses() for i in range(119)]
        results = await asyncio.gather(*jobs)
        assert len(results) == 119
        assert counters(sim)["rate_limited"] == 0
        for client in clients:
            await client.aclose()
