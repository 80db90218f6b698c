"""What the client writes and reads on Reveni's wire, and that every inferred detail follows
`ReveniInferred`: model strictness with field paths, money formats, status and transaction-type
casing, date-filter precision and timezone, envelope and parameter names, settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from reveni_client_support import (
    BASE,
    PREFIX,
    STORE,
    T0,
    client_for,
    envelope,
    return_payload,
    scripted,
)

from returnbridge.connectors.reveni import (
    DEFAULT_REVENI_INFERRED,
    ReveniInferred,
    ReveniQueryError,
    format_filter_value,
    normalise_return,
    parse_filter_value,
    status_from_wire,
    status_to_wire,
    transaction_type_to_wire,
)
from returnbridge.settings import ReveniSettings, Settings

RID = "a3a7640d671c4cde8adff13560e25f7b"


def page_response(
    *returns: dict[str, Any], inferred: ReveniInferred = DEFAULT_REVENI_INFERRED
) -> httpx.Response:
    return httpx.Response(200, json=envelope(list(returns), inferred=inferred))


async def list_one(raw: dict[str, Any], inferred: ReveniInferred = DEFAULT_REVENI_INFERRED) -> Any:
    handler, _ = scripted(page_response(raw, inferred=inferred))
    async with client_for(handler, inferred=inferred) as reveni:
        page = await reveni.list_returns()
    if page.rejected:  # the row did not read as a return: surface why, as get_return would
        raise ReveniQueryError(page.rejected[0].error, path=page.rejected[0].field)
    return page.items[0]


# --------------------------------------------------------------------------- strictness


async def test_unknown_keys_are_ignored() -> None:
    raw = return_payload(RID, brand_new_field={"x": 1})
    raw["return_items"][0]["colour"] = "black"
    ret = await list_one(raw)
    assert ret.id == RID and ret.return_items[0].sku == "TEE-BLK-M"


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda r: r["return_items"][0].update(quantity="1"), "results.0.return_items.0.quantity"),
        (
            lambda r: r["return_items"][0].update(unit_price=299.0),
            "results.0.return_items.0.unit_price",
        ),
        (lambda r: r.update(updated_at="2026-10-15T12:00:00"), "results.0.updated_at"),
        (lambda r: r.update(status="lost_in_space"), "results.0.status"),
        (lambda r: r.update(id=123), "results.0.id"),
        (lambda r: r.pop("order"), "results.0.order"),
    ],
)
async def test_what_we_use_is_strict_and_errors_name_the_field(mutate: Any, path: str) -> None:
    raw = return_payload(RID)
    mutate(raw)
    handler, _ = scripted(httpx.Response(200, json=raw))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniQueryError) as info:
            await reveni.get_return(RID)
    assert info.value.path == path.replace("results.0", "return")
    assert "anna@example.com" not in str(info.value)  # never the input (customer data)
    # In a list page the bad row is skipped and reported, naming the field; the page survives.
    handler, _ = scripted(page_response(raw, return_payload("other-return")))
    async with client_for(handler) as reveni:
        page = await reveni.list_returns()
    assert [r.id for r in page.items] == ["other-return"]
    (row,) = page.rejected
    assert row.path == "results.0" and row.field == path and path in row.error
    assert row.return_id == (RID if isinstance(raw.get("id"), str) else None)
    assert "anna@example.com" not in row.error


async def test_get_return_errors_name_the_field_from_the_return() -> None:
    raw = return_payload(RID)
    raw["refunds"] = [{"id": "r1", "method": "cheque"}]
    handler, _ = scripted(httpx.Response(200, json=raw))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniQueryError) as info:
            await reveni.get_return(RID)
    assert info.value.path == "return.refunds.0.method"


# --------------------------------------------------------------------------- money


@pytest.mark.parametrize(
    ("money_format", "price", "refund", "currency", "expected"),
    [
        ("decimal_string", "299.00", "49.95", "SEK", (Decimal("299.00"), Decimal("49.95"))),
        ("number", 299, 49.95, "SEK", (Decimal("299"), Decimal("49.95"))),
        ("minor_units", 29900, 4995, "SEK", (Decimal("299.00"), Decimal("49.95"))),
        ("minor_units", 2990, 500, "JPY", (Decimal("2990"), Decimal("500"))),
    ],
)
async def test_money_formats_all_become_the_same_decimal(
    money_format: str, price: Any, refund: Any, currency: str, expected: tuple[Decimal, Decimal]
) -> None:
    inferred = ReveniInferred.model_validate({"money_format": money_format})
    raw = return_payload(RID, summary=None)
    raw["return_items"][0].update(unit_price=price, currency=currency)
    raw["refunds"] = [
        {
            "id": "ref_1",
            "method": "bank_transfer",
            "amount": refund,
            "currency": currency,
            "status": "paid",
            "paid_by": "reveni",
            "created_at": "2026-10-15T12:00:00Z",
        }
    ]
    ret = await list_one(raw, inferred)
    assert (ret.return_items[0].unit_price, ret.refunds[0].amount) == expected
    assert all(isinstance(v, Decimal) for v in expected)


async def test_money_in_the_wrong_format_is_refused() -> None:
    raw = return_payload(RID)  # decimal strings
    with pytest.raises(ReveniQueryError, match="unit_price"):
        await list_one(raw, ReveniInferred(money_format="minor_units"))


# --------------------------------------------------------------------------- casing


UPPER = ReveniInferred(status_case="upper", partially_accepted_status="partly_accepted")


def test_status_round_trip_in_both_casings() -> None:
    for inferred in (DEFAULT_REVENI_INFERRED, UPPER):
        for status in ("in_progress", "partially_accepted", "on_hold"):
            assert status_from_wire(status_to_wire(status, inferred), inferred) == status
    assert status_to_wire("partially_accepted", UPPER) == "PARTLY_ACCEPTED"
    assert status_to_wire("for_review", UPPER) == "FOR_REVIEW"
    assert status_to_wire("partially_accepted", DEFAULT_REVENI_INFERRED) == "partially_accepted"
    with pytest.raises(ValueError):
        status_to_wire("lost", UPPER)


async def test_upper_case_statuses_are_lowered_before_validation() -> None:
    raw = return_payload(RID, status="PARTLY_ACCEPTED")
    raw["return_items"][0]["status"] = "ACCEPTED"
    raw["delivery"]["label_status"] = "CREATED"
    raw["refunds"] = [
        {
            "id": "ref_1",
            "method": "original_payment_method",
            "amount": "299.00",
            "currency": "SEK",
            "status": "PENDING",
            "paid_by": "merchant",
            "created_at": "2026-10-15T12:00:00Z",
        }
    ]
    ret = await list_one(raw, UPPER)
    assert ret.status == "partially_accepted"
    assert ret.return_items[0].status == "accepted"
    assert ret.refunds[0].status == "pending"
    assert ret.delivery is not None and ret.delivery.label_status == "created"


async def test_a_strict_lower_case_wire_does_not_accept_upper_case_statuses() -> None:
    assert (await list_one(return_payload(RID, status="IN_PROGRESS"))).status == "in_progress"
    strict = ReveniInferred(status_case_strict=True)
    with pytest.raises(ReveniQueryError) as info:
        await list_one(return_payload(RID, status="IN_PROGRESS"), strict)
    assert info.value.path == "results.0.status"


def test_normalise_return_maps_a_renamed_partly_accepted_in_lower_case_too() -> None:
    inferred = ReveniInferred(partially_accepted_status="partly_accepted")
    assert normalise_return({"status": "partly_accepted"}, inferred) == {
        "status": "partially_accepted"
    }
    assert normalise_return(["not", "a", "dict"], inferred) == ["not", "a", "dict"]


async def test_list_filters_are_cased_per_the_knobs() -> None:
    lower_types = ReveniInferred(
        status_case="upper", partially_accepted_status="partly_accepted",
        transaction_type_case="lower",
    )  # fmt: skip
    for inferred, statuses, kind in (
        (DEFAULT_REVENI_INFERRED, "in_progress,partially_accepted", "EXCHANGE"),
        (lower_types, "IN_PROGRESS,PARTLY_ACCEPTED", "exchange"),
    ):
        handler, seen = scripted(page_response(inferred=inferred))
        async with client_for(handler, inferred=inferred) as reveni:
            await reveni.list_returns(
                status=["in_progress", "partially_accepted"], transaction_type="exchange"
            )
        params = seen[0].url.params
        assert params["status"] == statuses and params["transaction_type"] == kind
    assert transaction_type_to_wire("Refund", DEFAULT_REVENI_INFERRED) == "REFUND"
    with pytest.raises(ValueError):
        transaction_type_to_wire("mixed", DEFAULT_REVENI_INFERRED)


# --------------------------------------------------------------------------- date filters


def test_date_precision_formats_the_day_in_the_filter_timezone() -> None:
    madrid = ReveniInferred(date_filter_timezone="Europe/Madrid")
    late = datetime(2026, 10, 15, 23, 30, tzinfo=UTC)  # 01:30 on the 16th in Madrid
    assert format_filter_value(late, DEFAULT_REVENI_INFERRED) == "2026-10-15"
    assert format_filter_value(late, madrid) == "2026-10-16"
    assert format_filter_value(date(2026, 10, 1), madrid) == "2026-10-01"
    assert parse_filter_value("2026-10-16", madrid) == datetime(2026, 10, 15, 22, tzinfo=UTC)
    assert parse_filter_value("2026-10-16", madrid, bound="to") == datetime(
        2026, 10, 16, 21, 59, 59, 999999, tzinfo=UTC
    )
    with pytest.raises(ValueError):
        parse_filter_value("2026-10-16T00:00:00Z", madrid)


def test_datetime_precision_is_exact_utc_and_never_rounds_up() -> None:
    exact = ReveniInferred(date_filter_precision="datetime")
    cet = timezone(timedelta(hours=2))
    moment = datetime(2026, 10, 15, 14, 0, 5, 123456, tzinfo=cet)
    text = format_filter_value(moment, exact)
    assert text == "2026-10-15T12:00:05.123456Z"
    assert parse_filter_value(text, exact) == moment
    assert format_filter_value(T0, exact) == "2026-10-15T12:00:00Z"
    assert format_filter_value(date(2026, 10, 15), exact) == "2026-10-15T00:00:00Z"
    assert format_filter_value(date(2026, 10, 15), exact, bound="to") == (
        "2026-10-15T23:59:59.999999Z"
    )
    with pytest.raises(ValueError, match="timezone"):
        format_filter_value(datetime(2026, 10, 15, 12), exact)
    with pytest.raises(ValueError, match="timezone"):
        parse_filter_value("2026-10-15T12:00:00", exact)


async def test_list_sends_every_filter_under_its_inferred_name() -> None:
    renamed = ReveniInferred(
        returns_list_path="requests",
        param_status="state",
        param_transaction_type="kind",
        param_updated_from="modified_after",
        param_updated_to="modified_before",
        param_created_from="created_after",
        param_created_to="created_before",
        param_search="q",
        param_page="p",
        param_page_size="per_page",
        date_filter_precision="datetime",
    )
    handler, seen = scripted(page_response(inferred=renamed))
    async with client_for(handler, inferred=renamed) as reveni:
        await reveni.list_returns(
            status="shipped",
            transaction_type="refund",
            updated_from=T0,
            updated_to=date(2026, 10, 16),
            created_from=date(2026, 10, 1),
            created_to=T0,
            search="anna@",
            page=3,
            page_size=50,
        )
    url = seen[0].url
    assert str(url).startswith(f"{PREFIX}/requests?")
    assert dict(url.params) == {
        "state": "shipped",
        "kind": "REFUND",
        "modified_after": "2026-10-15T12:00:00Z",
        "modified_before": "2026-10-16T23:59:59.999999Z",
        "created_after": "2026-10-01T00:00:00Z",
        "created_before": "2026-10-15T12:00:00Z",
        "q": "anna@",
        "p": "3",
        "per_page": "50",
    }


async def test_list_leaves_out_filters_not_given() -> None:
    handler, seen = scripted(page_response())
    async with client_for(handler) as reveni:
        await reveni.list_returns(updated_from=T0)
    assert dict(seen[0].url.params) == {"updated_from": "2026-10-15", "page": "1"}


# --------------------------------------------------------------------------- envelope


async def test_client_follows_renamed_envelope_keys() -> None:
    renamed = ReveniInferred(
        envelope_items_key="data",
        envelope_count_key="total",
        envelope_next_key="next_page",
        envelope_previous_key="prev_page",
    )
    body = {
        "total": 41,
        "next_page": f"{PREFIX}/returns?page=2",
        "prev_page": None,
        "data": [return_payload(RID)],
    }
    handler, _ = scripted(httpx.Response(200, json=body))
    async with client_for(handler, inferred=renamed) as reveni:
        page = await reveni.list_returns()
    assert page.count == 41 and page.next == f"{PREFIX}/returns?page=2" and page.previous is None
    assert [r.id for r in page.items] == [RID]
    # the default client cannot read that envelope, and says which key is missing
    handler, _ = scripted(httpx.Response(200, json=body))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniQueryError) as info:
            await reveni.list_returns()
    assert info.value.path == "results"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"count": 1, "next": None, "results": {}}, "results"),
        ({"count": "1", "next": None, "results": []}, "count"),
        ({"count": True, "next": None, "results": []}, "count"),
        ({"count": 1, "results": []}, "next"),
        ({"count": 1, "next": 2, "results": []}, "next"),
    ],
)
async def test_malformed_envelopes_name_the_key(body: dict[str, Any], path: str) -> None:
    handler, _ = scripted(httpx.Response(200, json=body))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniQueryError) as info:
            await reveni.list_returns()
    assert info.value.path == path


async def test_list_envelope_that_is_not_an_object_is_a_query_error() -> None:
    handler, _ = scripted(httpx.Response(200, json=[return_payload(RID)]))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniQueryError, match="envelope"):
            await reveni.list_returns()


# --------------------------------------------------------------------------- iter_returns


async def test_iter_returns_walks_pages_until_next_is_null() -> None:
    ids = [f"{i:032x}" for i in range(5)]
    pages = [
        envelope([return_payload(i) for i in ids[:2]], count=5, next_url="p2"),
        envelope([return_payload(i) for i in ids[2:4]], count=5, next_url="p3"),
        envelope([return_payload(ids[4])], count=5),
    ]
    handler, seen = scripted(*(httpx.Response(200, json=p) for p in pages))
    async with client_for(handler) as reveni:
        got = [r.id async for r in reveni.iter_returns(status="shipped", page_size=2)]
    assert got == ids
    assert [r.url.params["page"] for r in seen] == ["1", "2", "3"]
    assert {r.url.params["status"] for r in seen} == {"shipped"}


async def test_iter_returns_stops_at_a_vanished_page_and_detects_an_ignored_page() -> None:
    first = envelope([return_payload("a" * 32)], count=3, next_url="p2")
    handler, _ = scripted(
        httpx.Response(200, json=first), httpx.Response(404, json={"detail": "Invalid page."})
    )
    async with client_for(handler) as reveni:
        assert [r.id async for r in reveni.iter_returns(page_size=1)] == ["a" * 32]
    handler, _ = scripted(httpx.Response(200, json=first))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniQueryError, match="repeated"):
            _ = [r async for r in reveni.iter_returns(page_size=1)]


# --------------------------------------------------------------------------- merchant, invoices


INVOICE = {
    "id": "inv_1",
    "period_start": "2026-10-01",
    "period_end": "2026-10-31",
    "currency": "EUR",
    "lines": [
        {"kind": "plan", "amount": "299.00", "currency": "EUR", "vat_rate": "21"},
        {
            "kind": "disbursement",
            "return_id": RID,
            "order_number": "1001",
            "amount": "49.95",
            "currency": "SEK",
            "event_date": "2026-10-05",
        },
    ],
    "totals": {"EUR": "361.79", "SEK": "49.95"},
    "status": "open",
}


async def test_merchant_and_invoices() -> None:
    merchant = {
        "store_id": STORE,
        "store_name": "Shop",
        "merchant_name": "Shop AB",
        "connector_type": "centra",
        "currency": "EUR",
    }
    handler, seen = scripted(
        httpx.Response(200, json=merchant),
        httpx.Response(200, json=[INVOICE]),
        httpx.Response(200, json=envelope([INVOICE])),
        httpx.Response(200, json=INVOICE),
    )
    async with client_for(handler) as reveni:
        info = await reveni.merchant()
        listed = await reveni.invoices("2026-10")
        enveloped = await reveni.invoices("2026-10")
        one = await reveni.invoice("inv_1")
    assert info.store_id == STORE and info.connector_type == "centra"
    assert listed == enveloped == [one]
    assert one.lines[1].amount == Decimal("49.95") and one.totals["EUR"] == Decimal("361.79")
    assert [str(r.url) for r in seen] == [
        f"{PREFIX}/merchant",
        f"{PREFIX}/invoices?period=2026-10",
        f"{PREFIX}/invoices?period=2026-10",
        f"{PREFIX}/invoices/inv_1",
    ]


async def test_invoice_errors_name_the_line() -> None:
    bad = {**INVOICE, "lines": [{"kind": "surprise", "amount": "1.00", "currency": "EUR"}]}
    handler, _ = scripted(httpx.Response(200, json=[bad]))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniQueryError) as info:
            await reveni.invoices("2026-10")
    assert info.value.path == "invoices.0.lines.0.kind"


# --------------------------------------------------------------------------- settings


def test_reveni_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = ReveniSettings()
    assert defaults.base_url == "http://127.0.0.1:8082" and defaults.store_id == "store_1"
    assert defaults.api_key.get_secret_value() == "reveni-sim-key"
    assert "reveni-sim-key" not in repr(defaults)
    monkeypatch.setenv("RETURNBRIDGE_REVENI__STORE_ID", "store_9")
    monkeypatch.setenv("RETURNBRIDGE_REVENI__INFERRED__STATUS_CASE", "upper")
    monkeypatch.setenv("RETURNBRIDGE_REVENI__WEBHOOK_SECRET", "s3cret")
    settings = Settings().reveni
    assert settings.store_id == "store_9" and settings.inferred.status_case == "upper"
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == "s3cret"


async def test_settings_build_a_client_for_the_store() -> None:
    handler, seen = scripted(httpx.Response(200, json=return_payload(RID)))
    settings = ReveniSettings(
        base_url=BASE, api_key="k-2", store_id="store_7", page_size=25, read_retries=0
    )
    async with settings.client(http_transport=httpx.MockTransport(handler)) as reveni:
        await reveni.get_return(RID)
        assert reveni.page_size == 25 and reveni.inferred is settings.inferred
    assert str(seen[0].url) == f"{BASE}/merchants/v0/stores/store_7/returns/{RID}"
    assert seen[0].headers["Authorization"] == "Bearer k-2"


def test_summary_minor_units_use_the_currency_each_figure_is_in() -> None:
    from returnbridge.connectors.reveni.models import Summary, wire_context

    context = wire_context(ReveniInferred(money_format="minor_units"))
    summary = Summary.model_validate(
        {"currency": "SEK", "refund_total": 29900, "bonuses": 0, "fees": 585,
         "fees_currency": "EUR"},
        context=context,
    )  # fmt: skip
    assert (summary.refund_total, summary.fees) == (Decimal("299.00"), Decimal("5.85"))
    with pytest.raises(ValueError, match="fees: minor units need `fees_currency`"):
        Summary.model_validate({"fees": 585}, context=context)
