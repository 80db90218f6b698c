"""The REST Order API's documented shapes as the client reads them, and connection cursors that
outlive their row, against the Centra simulator and on literal bodies."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle

from returnbridge.connectors.centra import (
    CentraClient,
    Governor,
    PaymentEntryStatus,
    RefundResult,
    ReturnLineInput,
    ReturnUpdateResult,
    StockLevel,
)

# A `PUT /returns/{id}` answer in the documented shape ([C] field names; values our own).
DOCUMENTED = {
    "status": "ok",
    "return": {
        "returnId": 7,
        "completed": True,
        "shipment": "1001-1",
        "shipmentId": 3,
        "orderId": 1001,
        "selectionId": "0123456789abcdef0123456789abcdef",
        "customerId": 12,
        "date": "2026-10-05 09:00:00",
        "taxValue": 59.8,
        "taxDeduction": 0,
        "currency": "SEK",
        "products": [{"returnLineId": 1, "sku": "TEE-BLK-M", "quantity": 1}],
    },
}


@pytest.fixture
async def centra(centra_sim: CentraSimHandle) -> AsyncIterator[CentraClient]:
    async with CentraClient(
        base_url=centra_sim.url,
        token=centra_sim.token,
        order_api_secret=centra_sim.order_api_secret,
        plan="unlimited",
        backoff_seconds=0.01,
        governor=Governor("unlimited", 1.0),
    ) as client:
        yield client


# -- the answer of PUT /returns/{id} -----------------------------------------------------------


def test_the_documented_answer_is_read_from_its_return_object() -> None:
    result = ReturnUpdateResult.from_wire(DOCUMENTED)
    assert (result.return_completed, result.refund) == (True, None)
    assert result == DOCUMENTED and result["return"]["returnId"] == 7


@pytest.mark.parametrize(
    ("body", "completed"),
    [
        ({"status": "ok", "return": {"returnId": 7, "completed": False}}, False),
        # `return.completed` wins over a top-level `returnCompleted`
        ({"return": {"completed": True}, "returnCompleted": False}, True),
        # fall back to `returnCompleted` (POST /return's name) when `return.completed` is absent
        ({"return": {"returnId": 7}, "returnCompleted": True}, True),
        ({"return": 7, "returnCompleted": False}, False),  # POST /return's `return` is an id
        ({"return": {"completed": "yes"}, "returnCompleted": True}, True),
        ({"return": {"completed": "yes"}}, None),
        ({"return": None}, None),
    ],
)
def test_completed_comes_from_the_return_then_from_return_completed(
    body: dict[str, Any], completed: bool | None
) -> None:
    assert ReturnUpdateResult.from_wire(body).return_completed is completed


def test_the_refund_extension_is_read_beside_the_return_with_any_status() -> None:
    body = {**DOCUMENTED, "refund": {"status": "PENDING", "amount": "299.00", "currency": "SEK"}}
    result = ReturnUpdateResult.from_wire(body)
    assert result.refund == RefundResult(PaymentEntryStatus.PENDING, Decimal("299.00"), "SEK")
    assert result.return_completed is True and not result.refund.failed


async def test_the_client_reads_the_simulators_answer_and_rows(centra: CentraClient) -> None:
    order = (await centra.orders_by_number([1001]))[1001]
    shipment = next(s for s in order.shipments if s.is_shipped)
    created = await centra.create_return(
        shipment_id=shipment.id, lines=[ReturnLineInput(shipment.lines[0].id, 1)]
    )
    rid = created.value.id
    answer = await centra.update_return(rid, completed=True, refund_payment=True)
    assert answer.return_completed is True and "returnCompleted" not in answer
    assert answer["return"]["returnId"] == rid and answer["return"]["products"][0]["quantity"] == 1
    assert answer.refund is not None and answer.refund.status == PaymentEntryStatus.SUCCESS
    (row,) = await centra.list_returns_rest(return_id=rid)
    assert (row.return_id, row.completed, row.shipment_id) == (rid, True, shipment.id)
    assert row.shipment == shipment.number and row.customer_id is not None
    assert row.selection_id == order.id
    assert row.products[0]["sku"] == answer["return"]["products"][0]["sku"]


# -- cursors -----------------------------------------------------------------------------------


def cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_stock_changes_after_a_cursor_of_another_warehouse(centra: CentraClient) -> None:
    size = (await centra.product_sizes_by_sku(["JEANS-32"]))["JEANS-32"]
    level = [StockLevel(size.variant_id, size.id, 4)]
    first = (await centra.set_stock(warehouse_id=1, levels=level, description="a")).value
    level = [StockLevel(size.variant_id, size.id, 5)]
    second = (await centra.set_stock(warehouse_id=2, levels=level, description="b")).value
    # A cursor kept for warehouse 1 names no row of warehouse 2's list: it is a position there.
    changes, end = await centra.stock_changes_after([2], cursor(f"id:{first[-1].id}"))
    assert [c.id for c in changes] == [c.id for c in second]
    assert end == cursor(f"id:{second[-1].id}")
    again, same = await centra.stock_changes_after([2], end)
    assert (again, same) == ([], end)


async def test_the_order_walk_follows_keyset_cursors(centra: CentraClient) -> None:
    page = await centra.order_connection_page(first=2, after=cursor("number:166"))
    assert [o.number for o in page.items] == [1001, 1002] and page.has_next_page
    walked = [o.number async for o in centra.iter_order_connection(page_size=2)]
    assert walked == sorted(walked) and len(walked) == page.total_count
