"""`sync/calls.py` without a server: what each action kind hands the Centra client (the same
wire JSON the executor built itself before the connector owned it), what a `PUT /returns`
answer proves, and the one-line request summaries. The executor's public names stay importable
from `returnbridge.sync.executor`."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from returnbridge.connectors.centra import (
    Address,
    CentraRejected,
    ManualRefund,
    OrderCreateInput,
    PaymentEntryStatus,
    RefundResult,
    ReturnUpdateResult,
)
from returnbridge.core.actions import (
    Action,
    CreateReturn,
    ExchangeLine,
    ExchangeOrder,
    Refund,
    Restock,
    RestockLine,
    ReturnLinePlan,
)
from returnbridge.sync import calls, executor, outcomes, report, session
from returnbridge.sync.readback import Found, InProgress, Problem, Refused

T = TypeVar("T")

ADDRESS = Address(
    first_name="Anna",
    last_name="Svensson",
    address1="Storgatan 1",
    city="Stockholm",
    zip_code="111 22",
    country="SE",
    email="anna@example.com",
    phone_number="",
)


class Channel:
    """Counts the budget a call asks for."""

    def __init__(self) -> None:
        self.reads = 0
        self.writes = 0
        self.unmetered = 0  # writes to the Order API: a request, not a metered mutation

    async def read(self) -> None:
        self.reads += 1

    async def write(self, call: Callable[[], Awaitable[T]], *, metered: bool = True) -> T:
        self.writes += 1
        self.unmetered += not metered
        return await call()


class FakeCentra:
    """The client calls an exchange and a refund make; `taken`: order numbers that exist, with
    their internal comment."""

    def __init__(self, *, market: int | None = 3, taken: dict[int, str] | None = None) -> None:
        self.market = market
        self.taken = dict(taken or {})
        self.orders: list[dict[str, Any]] = []
        self.updates: list[tuple[int, dict[str, Any]]] = []
        self.answer: ReturnUpdateResult = ReturnUpdateResult.from_wire({"returnCompleted": True})

    async def orders_by_number(self, numbers: list[int]) -> dict[int, Any]:
        found: dict[int, Any] = {}
        for number in numbers:
            if number == 1001:
                market = None if self.market is None else SimpleNamespace(id=self.market)
                found[number] = SimpleNamespace(currency="SEK", market=market)
            elif number in self.taken:
                found[number] = SimpleNamespace(internal_comment=self.taken[number])
        return found

    async def shipping_addresses(self, numbers: list[int]) -> dict[int, Address]:
        return {n: ADDRESS for n in numbers if n == 1001}

    async def create_order(self, order: OrderCreateInput) -> list[int]:
        self.orders.append(order)
        if order.order_number in self.taken:
            raise CentraRejected("duplicate", operation="createOrder", error_code=-5)
        return [order.order_number]

    async def update_return(self, return_id: int, **kwargs: Any) -> ReturnUpdateResult:
        self.updates.append((return_id, kwargs))
        return self.answer


def exchange(*, marked: bool = True) -> Action:
    return Action(
        key="exchange:ret_1:1",
        kind="exchange_order",
        reveni_return_id="ret_1",
        order_number=1001,
        payload=ExchangeOrder(
            order_number=900001,
            origin_order_number=1001,
            origin_return_id=42,
            lines=(ExchangeLine("TEE-BLK-S", 1), ExchangeLine("TEE-BLK-M", 2)),
            marker="returnbridge exchange ret_1 #1" if marked else None,
            alternates=(900002,) if marked else (),
        ),
    )


def refund(*, via_psp: bool, amount: str = "299.00") -> Action:
    return Action(
        key="refund:ret_1:rf_1",
        kind="refund",
        reveni_return_id="ret_1",
        order_number=1001,
        payload=Refund(
            centra_return_id=7,
            via_psp=via_psp,
            amount=Decimal(amount),
            currency="SEK",
            reference="rf_1",
        ),
    )


# -- exchange orders ----------------------------------------------------------------------------


async def test_an_exchange_order_goes_out_as_the_body_the_executor_built_before() -> None:
    centra, channel = FakeCentra(), Channel()
    found = await calls.send(centra, exchange(), channel)  # type: ignore[arg-type]
    assert found == Found("900001", "orders [900001]")
    assert (channel.reads, channel.writes, channel.unmetered) == (
        2,
        1,
        1,
    )  # the origin order, its address; the order
    (sent,) = centra.orders
    assert sent.wire() == {
        "address": {
            "firstName": "Anna",
            "lastName": "Svensson",
            "address1": "Storgatan 1",
            "city": "Stockholm",
            "zipCode": "111 22",
            "country": "SE",
            "email": "anna@example.com",
        },
        "currency": "SEK",
        "marketId": 3,
        "internalComment": "returnbridge exchange ret_1 #1",
        "orderNumber": 900001,
        "products": [
            {"sku": "TEE-BLK-S", "qty": 1, "unitPrice": 0.0},
            {"sku": "TEE-BLK-M", "qty": 2, "unitPrice": 0.0},
        ],
        "internalOrder": True,
        "adjustStock": True,
        "shippingValue": 0.0,
        "createdFromOrigin": {"type": "return", "id": 42},
        "comment": "returnbridge exchange ret_1",
    }


async def test_an_unmarked_exchange_without_a_market_sends_neither() -> None:
    centra = FakeCentra(market=None)
    await calls.send(centra, exchange(marked=False), Channel())  # type: ignore[arg-type]
    body = centra.orders[0].wire()
    assert "marketId" not in body and "internalComment" not in body
    assert body["currency"] == "SEK" and body["address"]["country"] == "SE"


async def test_a_number_held_by_another_exchange_moves_to_the_next_candidate() -> None:
    centra, channel = FakeCentra(taken={900001: "returnbridge exchange ret_9 #1"}), Channel()
    found = await calls.send(centra, exchange(), channel)  # type: ignore[arg-type]
    assert found == Found("900002", "orders [900002]")
    assert [o.order_number for o in centra.orders] == [900001, 900002]
    assert (channel.reads, channel.writes) == (3, 2)
    assert centra.orders[0].wire() | {"orderNumber": 900002} == centra.orders[1].wire()


async def test_a_number_holding_our_order_is_left_to_the_read_back() -> None:
    centra = FakeCentra(taken={900001: "returnbridge exchange ret_1 #1"})
    with pytest.raises(CentraRejected):
        await calls.send(centra, exchange(), Channel())  # type: ignore[arg-type]
    assert len(centra.orders) == 1


async def test_an_origin_order_without_an_address_cannot_be_sent() -> None:
    centra = FakeCentra()

    async def nowhere(numbers: list[int]) -> dict[int, Address]:
        return {1001: Address(country="SE")}  # no e-mail

    centra.shipping_addresses = nowhere  # type: ignore[method-assign]
    with pytest.raises(calls.CannotSend, match="no shipping address") as info:
        await calls.send(centra, exchange(), Channel())  # type: ignore[arg-type]
    assert info.value.code == "exchange_order_failed" and centra.orders == []


# -- refunds ------------------------------------------------------------------------------------


async def test_a_refund_passes_the_psp_flag_or_a_typed_manual_refund() -> None:
    centra = FakeCentra()
    channel = Channel()
    await calls.send(centra, refund(via_psp=True), channel)  # type: ignore[arg-type]
    await calls.send(centra, refund(via_psp=False, amount="50.00"), channel)  # type: ignore[arg-type]
    assert (channel.writes, channel.unmetered) == (2, 2)  # the Order API: not a mutation
    assert centra.updates == [
        (7, {"completed": True, "refund_payment": True, "manual_refund": None}),
        (
            7,
            {
                "completed": True,
                "refund_payment": False,
                "manual_refund": ManualRefund(Decimal("50.00"), "rf_1"),
            },
        ),
    ]


def answer(body: dict[str, Any]) -> ReturnUpdateResult:
    return ReturnUpdateResult.from_wire(body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # accepted, but not saying what was refunded: read it back (None), never believed
        ({"status": "ok", "returnCompleted": True}, None),
        ({"status": "ok"}, None),
        ({"returnCompleted": True, "refund": "x"}, None),
        (
            {
                "returnCompleted": True,
                "refund": {"status": "SUCCESS", "amount": "299.00", "currency": "SEK"},
            },
            Found("7", "returnCompleted=True; refund SUCCESS 299.00 SEK"),
        ),
        (
            {"returnCompleted": False, "refund": {"status": "FAILED", "amount": "299.00"}},
            Refused("refund_failed_at_gateway", "returnCompleted=False; refund FAILED 299.00 None"),
        ),
        (
            {"returnCompleted": True, "refund": {"status": "PENDING"}},
            InProgress(
                "7", "returnCompleted=True; refund PENDING None None: the PSP has not answered yet"
            ),
        ),
        (
            {
                "returnCompleted": True,
                "refund": {"status": "SUCCESS", "amount": Decimal("199.00"), "currency": "SEK"},
            },
            Found(
                "7",
                "returnCompleted=True; refund SUCCESS 199.00 SEK",
                (Problem("refund_amount_mismatch",
                         "Centra credited 199.00 SEK, Reveni refunded 299.00"),),
            ),
        ),
    ],
)  # fmt: skip
def test_what_a_refund_answer_proves(body: dict[str, Any], expected: calls.Sent) -> None:
    payload = refund(via_psp=True).payload
    assert isinstance(payload, Refund)
    assert calls.refund_answer(payload, answer(body)) == expected


def test_a_completed_return_with_nothing_to_refund_needs_no_refund_answer() -> None:
    payload = dataclasses.replace(refund(via_psp=True).payload, amount=Decimal("0.00"))
    assert calls.refund_answer(payload, answer({"status": "ok", "returnCompleted": True})) == (
        Found("7", "returnCompleted=True; nothing to refund")
    )
    assert calls.refund_answer(payload, answer({"status": "ok", "returnCompleted": False})) is None


def test_a_refund_answer_reads_the_typed_fields() -> None:
    payload = refund(via_psp=True).payload
    assert isinstance(payload, Refund)
    typed = ReturnUpdateResult(
        return_completed=True,
        refund=RefundResult(PaymentEntryStatus.FAILED, Decimal("299.00"), "SEK"),
    )
    assert calls.refund_answer(payload, typed) == Refused(
        "refund_failed_at_gateway", "returnCompleted=True; refund FAILED 299.00 SEK"
    )


# -- request summaries ----------------------------------------------------------------------------


def test_request_summaries_name_ids_skus_and_money_only() -> None:
    create = Action(
        key="return:ret_1",
        kind="create_return",
        reveni_return_id="ret_1",
        order_number=1001,
        payload=CreateReturn(
            shipment_id=5,
            external_id="ret_1",
            lines=(ReturnLinePlan(shipment_line_id=11, sku="TEE-BLK-S", quantity=1),),
        ),
    )
    restock = Action(
        key="restock:ret_1",
        kind="restock",
        reveni_return_id="ret_1",
        order_number=1001,
        payload=Restock(
            warehouse_id=2,
            description="returnbridge restock ret_1",
            lines=(RestockLine(sku="TEE-BLK-S", variant_id=3, size_id=4, quantity=1),),
        ),
    )
    assert [calls.request_summary(a) for a in (create, restock, refund(via_psp=True))] == [
        "createReturn shipment 5 externalId ret_1 (stock untouched): line 11 TEE-BLK-S x1",
        "changeStock 'returnbridge restock ret_1' into warehouse 2: TEE-BLK-S +1",
        "PUT /returns/7 completed, refundPayment (PSP) 299.00 SEK",
    ]
    assert calls.request_summary(refund(via_psp=False)) == (
        "PUT /returns/7 completed, manualRefund 299.00 SEK reference rf_1"
    )
    assert calls.request_summary(exchange()) == (
        "POST /order 900001 (internal, unit price 0) for return 42 of order 1001: "
        "TEE-BLK-S x1, TEE-BLK-M x2"
    )


# -- the executor's public names ---------------------------------------------------------------


def test_the_executor_module_keeps_its_public_names() -> None:
    assert executor.Executor.__module__ == "returnbridge.sync.executor"
    assert executor.ExecutorConfig is report.ExecutorConfig
    assert executor.ExecutionReport is report.ExecutionReport
    assert executor.request_summary is calls.request_summary
    assert executor.FAILURE_CODE is outcomes.FAILURE_CODE
    assert executor.BudgetUnavailable is session.BudgetUnavailable
    assert set(outcomes.FAILURE_CODE) == {"create_return", "restock", "refund", "exchange_order"}
