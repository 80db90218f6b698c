"""Centra client pieces that need no server: Retry-After, documents, inputs, models, pagination."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path

import pytest

from returnbridge.connectors.centra import documents
from returnbridge.connectors.centra.errors import CentraQueryError, UserError, parse_retry_after
from returnbridge.connectors.centra.inputs import (
    FROM_SHIPMENT,
    CreatedFromOrigin,
    OrderCreateInput,
    OrderProduct,
    ReturnLineInput,
    SendToWarehouse,
    StockDelta,
    StockLevel,
    return_create_input,
    set_stock_input,
    stock_change_input,
)
from returnbridge.connectors.centra.models import Money, Order, Page, Return
from returnbridge.connectors.centra.pagination import chunked, iter_connection, iter_limit_pages

NOW = 1_800_000_000.0
SDL = (
    Path(__file__).resolve().parents[3] / "returnbridge/connectors/centra/schema.graphql"
).read_text()


# -- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("1800000012", 12.0),  # unix timestamp: the documented "timestamp at which to resume"
        ("1800000012.5", 12.5),
        ("7", 7.0),  # delta seconds
        ("0.25", 0.25),
        (format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True), 30.0),  # HTTP-date
        ("1799999990", 0.0),  # a moment in the past means now
        ("-3", 0.0),
    ],
)
def test_retry_after_accepts_timestamp_delta_and_http_date(header: str, expected: float) -> None:
    assert parse_retry_after(header, now=NOW) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("header", [None, "", "  ", "soon", "nan", "inf", "Mon, 99 Foo 2020"])
def test_retry_after_unreadable_is_none(header: str | None) -> None:
    assert parse_retry_after(header, now=NOW) is None


def test_user_error_reads_wire_shape_and_prints_path() -> None:
    error = UserError.from_wire({"message": "too many", "path": ["input", "lines", 0]})
    assert error.path == ("input", "lines", "0")
    assert str(error) == "input.lines.0: too many"
    assert str(UserError.from_wire({"message": "no path", "path": None})) == "no path"


# -- documents --------------------------------------------------------------------------------


def test_every_document_validates_against_the_sdl() -> None:
    errors = documents.validation_errors(SDL)
    assert errors, "no operations were loaded"
    assert {name: [e.message for e in errs] for name, errs in errors.items() if errs} == {}


def test_documents_cover_every_operation_the_client_sends() -> None:
    assert set(documents.operations()) == {
        "OrdersByNumbers",
        "OrdersPage",
        "OrderConnectionPage",
        "OrderById",
        "OrderShippingAddresses",
        "ReturnsPage",
        "ProductSizesBySku",
        "Warehouses",
        "StockChangesByDescription",
        "StockChangesAfter",
        "RateLimits",
        "CreateReturn",
        "CompleteReturn",
        "ChangeStock",
        "SetStock",
    }
    mutations = {name for name, op in documents.operations().items() if op.is_mutation}
    assert mutations == {"CreateReturn", "CompleteReturn", "ChangeStock", "SetStock"}


def test_document_carries_only_the_fragments_it_uses() -> None:
    text = documents.operation("RateLimits").text
    assert "fragment" not in text
    create = documents.operation("CreateReturn").text
    assert "fragment ReturnFields" in create and "fragment Money" in create
    assert "fragment OrderFields" not in create


def test_unknown_operation_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="OrdersByNumbers"):
        documents.operation("Nope")


def test_a_document_naming_an_undocumented_field_fails_validation() -> None:
    from graphql import build_schema, parse, validate

    errors = validate(build_schema(SDL), parse("query X { orders { number refundTotal } }"))
    assert errors and "refundTotal" in errors[0].message


# -- inputs -----------------------------------------------------------------------------------


def test_return_create_input_wire_shape() -> None:
    wire = return_create_input(
        shipment_id=7,
        lines=[ReturnLineInput(11, 1), ReturnLineInput(12, 2)],
        stock_policy="remove",
        external_id="ret_1",
        comment="returnbridge ret_1",
        shipping_cost=FROM_SHIPMENT,
        handling_cost=Decimal("10.50"),
        currency="SEK",
    )
    assert wire == {
        "shipment": {"id": 7},
        "lines": [
            {"shipmentLine": {"id": 11}, "quantity": 1},
            {"shipmentLine": {"id": 12}, "quantity": 2},
        ],
        "returnStockActionPolicy": {"removeItemsFromStock": True},
        "externalId": "ret_1",
        "comment": "returnbridge ret_1",
        "shippingCost": {"fromShipment": True},
        "handlingCost": {"value": {"value": 10.5, "currencyIsoCode": "SEK"}},
    }
    other = return_create_input(
        shipment_id=1, lines=[ReturnLineInput(1, 1)], stock_policy=SendToWarehouse(2)
    )
    assert other["returnStockActionPolicy"] == {"sendItemsToDifferentWarehouse": {"id": 2}}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "at least one line"),
        ([ReturnLineInput(1, 0)], "at least 1"),
        ([ReturnLineInput(1, 1), ReturnLineInput(1, 2)], "once per return"),
    ],
)
def test_return_create_input_rejects_bad_lines(lines: list[ReturnLineInput], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        return_create_input(shipment_id=1, lines=lines, stock_policy="remove")


def test_stock_change_input_groups_sizes_by_variant() -> None:
    wire = stock_change_input(
        description="returnbridge restock ret_1",
        deltas=[StockDelta(5, 50, 1), StockDelta(5, 51, 2), StockDelta(6, 60, 1)],
        into_warehouse_id=2,
    )
    assert wire["intoWarehouse"] == {"id": 2} and "outFromWarehouse" not in wire
    assert wire["productVariants"] == [
        {
            "productVariant": {"id": 5},
            "sizeChanges": [
                {"size": {"id": 50}, "deliveredQuantity": 1},
                {"size": {"id": 51}, "deliveredQuantity": 2},
            ],
        },
        {
            "productVariant": {"id": 6},
            "sizeChanges": [{"size": {"id": 60}, "deliveredQuantity": 1}],
        },
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deltas": [StockDelta(1, 1, 1)]}, "into_warehouse_id"),
        ({"deltas": [], "into_warehouse_id": 1}, "at least one delta"),
        ({"deltas": [StockDelta(1, 1, 0)], "into_warehouse_id": 1}, "of 0"),
        ({"deltas": [StockDelta(1, 1, 1)], "into_warehouse_id": 1, "description": " "}, "descr"),
    ],
)
def test_stock_change_input_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"description": "x"} | kwargs
    with pytest.raises(ValueError, match=message):
        stock_change_input(**arguments)  # type: ignore[arg-type]


def test_set_stock_input_and_its_validation() -> None:
    wire = set_stock_input(warehouse_id=1, levels=[StockLevel(5, 50, 3)], description="count")
    assert wire == {
        "warehouse": {"id": 1},
        "stockQuantityType": "PHYSICAL",
        "description": "count",
        "productVariants": [
            {"productVariant": {"id": 5}, "sizeStockLevels": [{"size": {"id": 50}, "quantity": 3}]}
        ],
    }
    with pytest.raises(ValueError, match="negative"):
        set_stock_input(warehouse_id=1, levels=[StockLevel(5, 50, -1)])


def test_zero_value_exchange_order_body() -> None:
    body = OrderCreateInput(
        order_number=900001,
        products=[OrderProduct("TEE-BLK-L", 1, Decimal("0.00"))],
        created_from_origin=CreatedFromOrigin("return", 42),
        extra={"address": {"email": "a@example.com", "country": "SE"}},
    ).wire()
    assert body == {
        "address": {"email": "a@example.com", "country": "SE"},
        "orderNumber": 900001,
        "products": [{"sku": "TEE-BLK-L", "qty": 1, "unitPrice": 0.0}],
        "internalOrder": True,
        "adjustStock": True,
        "shippingValue": 0.0,
        "createdFromOrigin": {"type": "return", "id": 42},
    }
    with pytest.raises(ValueError, match="at least one product"):
        OrderCreateInput(order_number=1, products=[]).wire()


# -- models -----------------------------------------------------------------------------------


def _money(value: str, code: str = "SEK") -> dict[str, object]:
    return {"value": Decimal(value), "currency": {"code": code}, "conversionRate": Decimal(1)}


def _order_wire() -> dict[str, object]:
    return {
        "id": "a" * 32,
        "number": 1001,
        "status": "SHIPPED",
        "isOnHold": False,
        "isInternal": False,
        "createdAt": "2026-10-01T12:00:00+02:00",
        "orderDate": "2026-10-01T12:00:00+02:00",
        "store": {"id": 1, "type": "DIRECT_TO_CONSUMER"},
        "market": {"id": 1, "name": "SE"},
        "grandTotal": _money("647.00"),
        "totals": {
            k: _money("0")
            for k in ("shipping", "handling", "taxIncluded", "taxDeducted", "taxAdded")
        }
        | {"quantity": 2},
        "customer": {"id": 3, "email": "anna@example.com", "firstName": None, "lastName": None},
        "lines": [
            {
                "id": 10,
                "quantity": 2,
                "cancelledQuantity": 0,
                "shippedQuantity": 2,
                "returnedQuantity": 0,
                "unitPrice": _money("299.00"),
                "unitOriginalPrice": _money("299.00"),
                "discountPercent": Decimal(0),
                "taxPercent": Decimal(25),
                "lineValue": _money("598.00"),
                "productName": "Tee",
                "productVariantName": "Black",
                "productVariant": {"id": 5},
                "productSize": {"id": 50, "SKU": "TEE-BLK-M", "EAN": None, "description": "M"},
                "someFutureField": 1,
            }
        ],
        "shipments": [
            {
                "id": 7,
                "number": "1001-1",
                "createdAt": "2026-10-02T10:00:00+02:00",
                "shippedAt": "2026-10-02T12:00:00+02:00",
                "isGoodToGo": True,
                "isPaid": True,
                "isShipped": True,
                "isCaptured": True,
                "lines": [{"id": 70, "quantity": 2, "orderLine": {"id": 10}}],
            }
        ],
        "paymentHistory": [],
    }


def test_order_model_reads_wire_shape_with_decimal_money_and_aware_times() -> None:
    order = Order.model_validate(_order_wire())
    assert order.currency == "SEK"
    assert order.grand_total == Money(value=Decimal("647.00"), currency="SEK")
    line = order.lines[0]
    assert (line.sku, line.product_variant_id, line.size.id) == ("TEE-BLK-M", 5, 50)
    assert order.shipments[0].lines[0].order_line_id == 10
    assert order.created_at.utcoffset() is not None
    assert order.line(10) is line and order.line(99) is None


def test_order_model_is_strict_on_fields_we_use() -> None:
    wire = _order_wire()
    del wire["number"]
    with pytest.raises(ValueError, match="number"):
        Order.model_validate(wire)
    naive = _order_wire() | {"createdAt": "2026-10-01T12:00:00"}
    with pytest.raises(ValueError, match="timezone"):
        Order.model_validate(naive)


def test_return_model_flattens_references() -> None:
    ret = Return.model_validate(
        {
            "id": 3,
            "status": "ACTIVE",  # Centra's generic status: not what Return.status means
            "returnStatus": "PENDING",
            "createdAt": "2026-10-05T09:00:00+02:00",
            "comment": None,
            "externalId": "ret_1",
            "returnedToStock": False,
            "shipment": {"id": 7},
            "order": {"id": "a" * 32, "number": 1001},
            "lines": [
                {
                    "id": 1,
                    "quantity": 1,
                    "shipmentLine": {"id": 70},
                    "orderLine": {"id": 10, "productSize": {"SKU": "TEE-BLK-M"}},
                }
            ],
            "totals": {
                k: _money("0") for k in ("shipping", "handling", "voucherValue", "returnCost")
            },
            "grandTotal": _money("299.00"),
            "refundPaymentHistory": [],
        }
    )
    assert (ret.shipment_id, ret.order_number, ret.external_id) == (7, 1001, "ret_1")
    assert ret.status == "PENDING"  # read from returnStatus
    assert ret.lines[0].shipment_line_id == 70 and ret.lines[0].sku == "TEE-BLK-M"


# -- pagination -------------------------------------------------------------------------------


def test_chunked_batches() -> None:
    assert list(chunked(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(chunked([], 3)) == []
    with pytest.raises(ValueError):
        list(chunked([1], 0))


async def test_limit_pages_stop_at_first_short_page() -> None:
    calls: list[tuple[int, int]] = []

    async def fetch(limit: int, page: int) -> list[int]:
        calls.append((limit, page))
        return list(range(10))[(page - 1) * limit : page * limit]

    assert [x async for x in iter_limit_pages(fetch, 4)] == list(range(10))
    assert calls == [(4, 1), (4, 2), (4, 3)]


async def test_exact_multiple_costs_one_empty_page() -> None:
    async def fetch(limit: int, page: int) -> list[int]:
        return list(range(4))[(page - 1) * limit : page * limit]

    assert [x async for x in iter_limit_pages(fetch, 2)] == [0, 1, 2, 3]


async def test_connection_follows_cursors_and_refuses_to_loop() -> None:
    async def fetch(first: int, after: str | None) -> Page[int]:
        start = 0 if after is None else int(after)
        items = list(range(start, min(start + first, 5)))
        return Page(items, 5, start + first < 5, str(start + first))

    assert [x async for x in iter_connection(fetch, 2)] == [0, 1, 2, 3, 4]

    async def stuck(first: int, after: str | None) -> Page[int]:
        return Page([1], 9, True, "same")

    with pytest.raises(CentraQueryError, match="did not advance"):
        _ = [x async for x in iter_connection(stuck, 1)]


async def test_limit_pages_refuse_a_server_that_ignores_page() -> None:
    async def same_page(limit: int, page: int) -> list[int]:
        return list(range(limit))

    seen: list[int] = []
    with pytest.raises(CentraQueryError, match="repeated"):
        async for x in iter_limit_pages(same_page, 3):
            seen.append(x)
    assert seen == [0, 1, 2]


async def test_connection_refuses_a_cursor_that_comes_round_again() -> None:
    cursors = {None: "a", "a": "b", "b": "a"}

    async def cycling(first: int, after: str | None) -> Page[int]:
        return Page([1], 9, True, cursors[after])

    with pytest.raises(CentraQueryError, match="did not advance"):
        _ = [x async for x in iter_connection(cycling, 1)]
