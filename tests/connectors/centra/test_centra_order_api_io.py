"""The Order API's typed inputs and answers: `OrderCreateInput` and `ReturnUpdateInput` serialise
to the exact JSON returnbridge sends, `ReturnUpdateResult` reads `PUT /returns/{id}`'s answer
(odd and missing fields included), and the payment entry enums name the schema's values."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from centra_fakes import FakeClock

import returnbridge.connectors.centra as centra_package
from returnbridge.connectors.centra import (
    Address,
    CentraClient,
    CreatedFromOrigin,
    Governor,
    ManualRefund,
    OrderCreateInput,
    OrderProduct,
    PaymentEntryStatus,
    PaymentEntryType,
    RefundResult,
    ReturnUpdateInput,
    ReturnUpdateResult,
)
from returnbridge.connectors.centra.inputs import address_wire

ADDRESS = Address(
    first_name="Anna",
    last_name="Svensson",
    address1="Storgatan 1",
    address2="",
    city="Stockholm",
    zip_code="111 22",
    state_or_province=None,
    country="SE",
    email="anna@example.com",
    phone_number="+46 70 000 00 00",
)
ADDRESS_WIRE = {
    "firstName": "Anna",
    "lastName": "Svensson",
    "address1": "Storgatan 1",
    "city": "Stockholm",
    "zipCode": "111 22",
    "country": "SE",
    "email": "anna@example.com",
    "phoneNumber": "+46 70 000 00 00",
}


def exchange_order(**changes: Any) -> OrderCreateInput:
    fields: dict[str, Any] = {
        "order_number": 900001,
        "products": [OrderProduct("TEE-BLK-S", 1, Decimal(0))],
        "created_from_origin": CreatedFromOrigin("return", 42),
        "internal_order": True,
        "comment": "returnbridge exchange ret_1",
        "address": ADDRESS,
        "currency": "SEK",
        "market_id": 3,
        "internal_comment": "returnbridge exchange ret_1 #1",
    }
    return OrderCreateInput(**(fields | changes))


# -- POST /order ---------------------------------------------------------------------------------


def test_an_exchange_order_is_the_body_the_executor_sent_before() -> None:
    body = exchange_order().wire()
    # The executor built `extra={"address", "currency", "marketId", "internalComment"}` and the
    # client added the rest: same keys, same values, same order.
    assert body == {
        "address": ADDRESS_WIRE,
        "currency": "SEK",
        "marketId": 3,
        "internalComment": "returnbridge exchange ret_1 #1",
        "orderNumber": 900001,
        "products": [{"sku": "TEE-BLK-S", "qty": 1, "unitPrice": 0.0}],
        "internalOrder": True,
        "adjustStock": True,
        "shippingValue": 0.0,
        "createdFromOrigin": {"type": "return", "id": 42},
        "comment": "returnbridge exchange ret_1",
    }
    assert list(body) == [
        "address",
        "currency",
        "marketId",
        "internalComment",
        "orderNumber",
        "products",
        "internalOrder",
        "adjustStock",
        "shippingValue",
        "createdFromOrigin",
        "comment",
    ]
    assert json.loads(json.dumps(body)) == body  # plain JSON, nothing left to encode


def test_optional_order_fields_are_left_out_when_not_given() -> None:
    body = exchange_order(market_id=None, internal_comment=None, currency=None).wire()
    assert "marketId" not in body and "internalComment" not in body and "currency" not in body
    assert body["address"] == ADDRESS_WIRE
    bare = exchange_order(address=None, comment=None, created_from_origin=None).wire()
    assert not {"address", "comment", "createdFromOrigin"} & set(bare)


def test_the_address_leaves_out_empty_fields_and_keeps_the_wire_names() -> None:
    assert address_wire(ADDRESS) == ADDRESS_WIRE
    assert address_wire(Address(country="DE", email="b@example.com", state_or_province="BE")) == {
        "state": "BE",
        "country": "DE",
        "email": "b@example.com",
    }
    # read from GraphQL (country{code}), sent to the Order API (country: code)
    parsed = Address.model_validate({"country": {"code": "SE"}, "zipCode": "111 22"})
    assert address_wire(parsed) == {"zipCode": "111 22", "country": "SE"}


def test_extra_fields_pass_unchanged_and_the_typed_ones_win() -> None:
    body = exchange_order(extra={"pricelistId": 7, "currency": "EUR", "orderNumber": 1}).wire()
    assert body["pricelistId"] == 7
    assert body["currency"] == "SEK" and body["orderNumber"] == 900001
    assert OrderCreateInput(
        order_number=5, products=[OrderProduct("A", 2, Decimal("1.50"))], market_id=9
    ).wire() == {
        "marketId": 9,
        "orderNumber": 5,
        "products": [{"sku": "A", "qty": 2, "unitPrice": 1.5}],
        "internalOrder": True,
        "adjustStock": True,
        "shippingValue": 0.0,
    }


@pytest.mark.parametrize(
    ("products", "match"),
    [
        ([], "at least one product"),
        ([OrderProduct("A", 0, Decimal(0))], "quantity must be at least 1"),
        ([OrderProduct("A", 1, Decimal("-0.01"))], "unit price cannot be negative"),
    ],
)
def test_an_obviously_bad_order_is_refused_before_sending(
    products: list[OrderProduct], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        exchange_order(products=products).wire()


# -- PUT /returns/{id} ---------------------------------------------------------------------------


def test_a_return_update_body() -> None:
    psp = ReturnUpdateInput(completed=True, refund_payment=True)
    assert psp.wire(manual_refund_accepted=True) == {
        "completed": True,
        "refundPayment": True,
        "sendEmail": False,
    }
    manual = ReturnUpdateInput(
        completed=True,
        refund_payment=False,
        manual_refund=ManualRefund(Decimal("123.450"), "reveni-refund-ret_1"),
    )
    assert manual.wire(manual_refund_accepted=True) == {
        "completed": True,
        "refundPayment": False,
        "sendEmail": False,
        "manualRefund": {"amount": "123.450", "reference": "reveni-refund-ret_1"},
    }
    # an exact decimal string, never a float's rounding or an exponent
    tiny = ReturnUpdateInput(True, False, manual_refund=ManualRefund(Decimal("1E-2"), "r"))
    assert tiny.wire(manual_refund_accepted=True)["manualRefund"]["amount"] == "0.01"


@pytest.mark.parametrize(
    ("update", "accepted", "match"),
    [
        (ReturnUpdateInput(True, False, manual_refund=ManualRefund(Decimal(1), "r")), False,
         "order_api_manual_refund"),
        (ReturnUpdateInput(True, True, manual_refund=ManualRefund(Decimal(1), "r")), True,
         "not both"),
        (ReturnUpdateInput(True, False, manual_refund=ManualRefund(Decimal(-1), "r")), True,
         "finite Decimal >= 0"),
        (ReturnUpdateInput(True, False, manual_refund=ManualRefund(Decimal("Inf"), "r")), True,
         "finite Decimal >= 0"),
        (ReturnUpdateInput(True, False, manual_refund=ManualRefund(1.5, "r")), True,  # type: ignore[arg-type]
         "finite Decimal >= 0"),
        (ReturnUpdateInput(True, False, manual_refund=ManualRefund(Decimal(1), " ")), True,
         "reference"),
    ],
)  # fmt: skip
def test_a_bad_manual_refund_is_refused_before_sending(
    update: ReturnUpdateInput, accepted: bool, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        update.wire(manual_refund_accepted=accepted)


def test_a_return_update_answer_is_parsed() -> None:
    body = {
        "status": "ok",
        "returnCompleted": True,
        "refund": {"status": "SUCCESS", "amount": "299.00", "currency": "SEK"},
    }
    result = ReturnUpdateResult.from_wire(body)
    assert result.return_completed is True
    assert result.refund == RefundResult(PaymentEntryStatus.SUCCESS, Decimal("299.00"), "SEK")
    assert result.refund is not None and not result.refund.failed
    # still readable as the wire body it was parsed from
    assert result == body and result["refund"]["amount"] == "299.00" and len(result) == 3
    assert dict(result) == body


def test_a_return_update_answer_without_a_refund() -> None:
    result = ReturnUpdateResult.from_wire({"status": "ok", "returnCompleted": False})
    assert (result.return_completed, result.refund) == (False, None)


@pytest.mark.parametrize(
    ("body", "completed", "refund"),
    [
        ({"status": "ok"}, None, None),  # returnCompleted missing
        ({"returnCompleted": "yes"}, None, None),  # not a boolean
        ({"returnCompleted": 1}, None, None),
        ({"returnCompleted": True, "refund": None}, True, None),
        ({"returnCompleted": True, "refund": "SUCCESS"}, True, None),  # not an object
        ({"returnCompleted": True, "refund": [1]}, True, None),
        ({"returnCompleted": True, "refund": {}}, True, RefundResult(None, None, None)),
        (
            {"refund": {"status": "FAILED", "amount": Decimal("29.9"), "currency": "EUR"}},
            None,
            RefundResult(PaymentEntryStatus.FAILED, Decimal("29.9"), "EUR"),
        ),
        (
            {"refund": {"status": "REFUSED", "amount": 12, "currency": 752}},
            None,
            RefundResult("REFUSED", Decimal(12), "752"),  # unknown status kept as given
        ),
        ({"refund": {"amount": "n/a"}}, None, RefundResult(None, None, None)),
        ({"refund": {"amount": True}}, None, RefundResult(None, None, None)),
        ({"refund": {"amount": "Infinity"}}, None, RefundResult(None, None, None)),
        ({"refund": {"amount": "NaN"}}, None, RefundResult(None, None, None)),
    ],
)
def test_odd_or_missing_answer_fields_read_as_unknown(
    body: dict[str, Any], completed: bool | None, refund: RefundResult | None
) -> None:
    result = ReturnUpdateResult.from_wire(body)
    assert (result.return_completed, result.refund) == (completed, refund)
    assert result == body


def test_only_a_failed_refund_entry_is_failed() -> None:
    assert RefundResult.from_wire({"status": "FAILED"}).failed
    for status in ("SUCCESS", "PENDING", "failed", None, "REFUSED"):
        assert not RefundResult.from_wire({"status": status}).failed


# -- the client ------------------------------------------------------------------------------------


def _client(answers: list[httpx.Response], seen: list[httpx.Request]) -> CentraClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return CentraClient(
        base_url="http://centra.test",
        token="tok",
        order_api_secret="sec",
        governor=Governor("unlimited", 1.0, clock=FakeClock()),
        http_transport=httpx.MockTransport(handler),
    )


async def test_the_client_sends_the_typed_bodies_and_parses_the_answer() -> None:
    seen: list[httpx.Request] = []
    answers = [
        httpx.Response(
            200,
            json={
                "status": "ok",
                "returnCompleted": True,
                "refund": {"status": "SUCCESS", "amount": "10.00", "currency": "SEK"},
            },
        ),
        httpx.Response(200, json={"status": "ok", "returnCompleted": True}),
        httpx.Response(200, json={"status": "ok", "orders": [900001]}),
    ]
    async with _client(answers, seen) as centra:
        manual = await centra.update_return(
            7, completed=True, refund_payment=False, manual_refund=ManualRefund(Decimal(10), "r1")
        )
        second = await centra.update_return(
            8,
            completed=True,
            refund_payment=False,
            manual_refund=ManualRefund(Decimal("2.5"), "r2"),
        )
        numbers = await centra.create_order(
            OrderCreateInput(
                order_number=900001,
                products=[OrderProduct("TEE-BLK-S", 1, Decimal(0))],
                created_from_origin=CreatedFromOrigin("return", 42),
                comment="returnbridge exchange ret_1",
                address=ADDRESS,
                currency="SEK",
                market_id=3,
                internal_comment="returnbridge exchange ret_1 #1",
            )
        )
    assert isinstance(manual, ReturnUpdateResult) and manual.return_completed is True
    assert manual.refund == RefundResult(PaymentEntryStatus.SUCCESS, Decimal("10.00"), "SEK")
    assert second.refund is None and numbers == [900001]
    assert [(r.method, r.url.path) for r in seen] == [
        ("PUT", "/api/order/returns/7"),
        ("PUT", "/api/order/returns/8"),
        ("POST", "/api/order/order"),
    ]
    bodies = [json.loads(r.content) for r in seen]
    assert bodies[0]["manualRefund"] == {"amount": "10", "reference": "r1"}
    assert bodies[1]["manualRefund"] == {"amount": "2.5", "reference": "r2"}
    assert bodies[2] == exchange_order().wire()


# -- payment entry enums ---------------------------------------------------------------------------


def _schema_enum(name: str) -> list[str]:
    schema = Path(centra_package.__file__).with_name("schema.graphql").read_text()
    found = re.search(rf"enum {name} \{{(.*?)\}}", schema, re.S)
    assert found is not None
    return [
        line.split("#")[0].strip() for line in found[1].splitlines() if line.split("#")[0].strip()
    ]


def test_the_payment_entry_enums_name_the_schemas_values() -> None:
    entry_types = _schema_enum("PaymentHistoryEntryType")
    assert {t.value for t in PaymentEntryType} <= set(entry_types)  # the ones returnbridge reads
    assert len(entry_types) == 21 and {"REFUND_FAILED", "CAPTURE_PENDING"} <= set(entry_types)
    assert [s.value for s in PaymentEntryStatus] == _schema_enum("PaymentHistoryEntryStatus")


def test_the_enum_members_are_the_wire_strings() -> None:
    assert PaymentEntryStatus.SUCCESS == "SUCCESS" and f"{PaymentEntryStatus.FAILED}" == "FAILED"
    assert PaymentEntryType.REFUND == "REFUND" and str(PaymentEntryType.CAPTURE) == "CAPTURE"
    assert json.dumps({"s": PaymentEntryStatus.PENDING}) == '{"s": "PENDING"}'
