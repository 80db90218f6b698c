"""The Reveni simulator's control plane: invoices, effects, counters, faults, load and clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from reveni_sim_support import (
    ReveniSimHandle,
    decode,
    reveni_sim_scenario_data,
    running_reveni_sim,
)

from returnbridge.connectors.reveni.inferred import ReveniBilling, ReveniInferred
from returnbridge.connectors.reveni.models import Invoice, wire_context


@pytest.fixture(scope="module")
def server() -> Iterator[ReveniSimHandle]:
    with running_reveni_sim() as handle:
        yield handle


@pytest.fixture
def reveni(server: ReveniSimHandle) -> ReveniSimHandle:
    server.reset()
    return server


def _invoice(reveni: ReveniSimHandle, period: str) -> dict[str, Any]:
    response = reveni.control.get("/_sim/invoices", params={"period": period})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = decode(response)
    Invoice.model_validate(body, context=wire_context(reveni.inferred))
    return body


def _lines(invoice: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (ln["kind"], ln["return_id"], ln["amount"], ln["currency"], ln["event_date"])
        for ln in invoice["lines"]
    ]


# ---------------------------------------------------------------------------- invoices


def test_invoice_lines_per_billing_period(reveni: ReveniSimHandle) -> None:
    reveni.sim_post("walk")  # every change on 2026-10-15
    september = _invoice(reveni, "2026-09")
    assert (september["period_start"], september["period_end"]) == ("2026-09-01", "2026-09-30")
    assert september["status"] == "issued" and september["collection"] == "sepa_direct_debit"
    assert _lines(september) == [
        ("plan", None, "299.00", "EUR", "2026-09-01"),
        ("transaction_fee", "ret_partial", "0.90", "EUR", "2026-09-30"),
    ]
    assert september["totals"] == {"EUR": "362.88"}  # 299.00 + 0.90, each with 21 % VAT
    october = _invoice(reveni, "2026-10")
    assert october["status"] == "open" and october["period_end"] == "2026-10-31"
    lines = _lines(october)
    kinds = [line[0] for line in lines]
    assert kinds.count("transaction_fee") == 6 and kinds.count("instant_transaction_fee") == 2
    labels = {line[1] for line in lines if line[0] == "reverse_logistics_fee"}
    assert labels == {"ret_std", "ret_inst", "ret_exch", "ret_partial"}  # partial skipped shipped
    # Reveni paid ret_inst's bank transfer, then covered it when the parcel was rejected;
    # ret_nf's store credit is the shop's, never a disbursement.
    assert [line for line in lines if line[0] == "disbursement"] == [
        ("disbursement", "ret_inst", "89.00", "EUR", "2026-10-06"),
        ("disbursement", "ret_inst", "-89.00", "EUR", "2026-10-15"),
    ]
    fee_line = next(ln for ln in october["lines"] if ln["kind"] == "transaction_fee")
    assert (fee_line["vat_rate"], fee_line["order_number"]) == ("21", "1001")
    disbursement = next(ln for ln in october["lines"] if ln["kind"] == "disbursement")
    assert disbursement["vat_rate"] == "0"
    # 361.79 plan + 6 x 1.09 + 2 x 1.82 + 4 x 5.99; the disbursements net to zero.
    assert october["totals"] == {"EUR": "395.93"}


def test_disbursements_stay_in_the_refund_currency(reveni: ReveniSimHandle) -> None:
    reveni.sim_post("returns/ret_std/refunds", {"method": "bank_transfer", "amount": "100"})
    october = _invoice(reveni, "2026-10")
    assert ("disbursement", "ret_std", "100.00", "SEK", "2026-10-15") in _lines(october)
    assert october["totals"]["SEK"] == "100.00"


def test_period_boundaries_follow_the_billing_timezone() -> None:
    # ret_partial was created 2026-09-30 23:30 UTC: 1 October in Madrid.
    billing = ReveniBilling(timezone="Europe/Madrid", covered_refunds="not_charged")
    with running_reveni_sim(inferred=ReveniInferred(billing=billing)) as reveni:
        reveni.sim_post("walk")
        assert [ln[0] for ln in _lines(_invoice(reveni, "2026-09"))] == ["plan"]
        october = _lines(_invoice(reveni, "2026-10"))
        assert ("transaction_fee", "ret_partial", "0.90", "EUR", "2026-10-01") in october
        assert [ln for ln in october if ln[0] == "disbursement"] == []  # covered: not charged


def test_minimum_fee_adjustment_and_minor_units() -> None:
    billing = ReveniBilling(minimum_fee=Decimal("400"))
    inferred = ReveniInferred(billing=billing, money_format="minor_units")
    with running_reveni_sim(inferred=inferred) as reveni:
        september = _invoice(reveni, "2026-09")
        assert september["lines"][-1]["kind"] == "minimum_fee_adjustment"
        assert september["lines"][-1]["amount"] == 10010  # 400.00 - 299.00 - 0.90
        assert september["totals"] == {"EUR": 48400}  # 400.00 + 21 % VAT
        parsed = Invoice.model_validate(september, context=wire_context(inferred))
        assert parsed.totals == {"EUR": Decimal("484.00")}


def test_invoices_through_the_api(reveni: ReveniSimHandle) -> None:
    listed = decode(reveni.api.get("invoices"))
    assert [(i["period_start"], i["status"]) for i in listed] == [
        ("2026-09-01", "issued"),
        ("2026-10-01", "open"),
    ]
    for invoice in listed:
        Invoice.model_validate(invoice, context=wire_context())
    one = reveni.api.get(f"invoices/{listed[1]['id']}")
    assert one.status_code == 200 and decode(one) == listed[1]
    assert decode(reveni.api.get("invoices", params={"period": "2026-10"})) == [listed[1]]
    assert reveni.api.get("invoices", params={"period": "2026-11"}).json() == []
    assert reveni.api.get("invoices/nope").status_code == 404
    bad = reveni.api.get("invoices", params={"period": "2026-13"})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("period:")
    assert reveni.control.get("/_sim/invoices", params={"period": "2026-11"}).status_code == 400
    assert reveni.control.get("/_sim/invoices").json()["period_start"] == "2026-10-01"


# ---------------------------------------------------------------------------- effects


def test_effects_are_the_ground_truth(reveni: ReveniSimHandle) -> None:
    reveni.sim_post("walk")
    returns = {r["id"]: r for r in reveni.control.get("/_sim/effects").json()["returns"]}
    assert len(returns) == 7
    std = returns["ret_std"]
    assert {k: std[k] for k in ("order_number", "type", "instant", "status")} == {
        "order_number": 1001,
        "type": "refund",
        "instant": False,
        "status": "accepted",
    }
    assert std["items"] == [
        {
            "sku": "TEE-BLK-M",
            "quantity": 1,
            "status": "accepted",
            "accepted_quantity": 1,
            "restock": True,
            "exchange_sku": None,
        }
    ]
    [refund] = std["refunds"]
    assert {k: v for k, v in refund.items() if k != "id"} == {
        "method": "original_payment_method",
        "amount": "299.00",
        "currency": "SEK",
        "status": "pending",
        "paid_by": "merchant",
    }
    assert returns["ret_partial"]["status"] == "partially_accepted"
    assert [i["status"] for i in returns["ret_partial"]["items"]] == ["accepted", "rejected"]
    assert returns["ret_exch"]["items"][0]["exchange_sku"] == "TEE-BLK-M"


# ---------------------------------------------------------------------------- counters, faults


def test_counters_count_api_requests_by_endpoint(reveni: ReveniSimHandle) -> None:
    reveni.api.get("returns")
    reveni.api.get("returns", params={"page": 9})
    reveni.api.get("returns/ret_std")
    reveni.api.get("nothing/here")
    httpx.get(f"{reveni.api.base_url}merchant")  # no key: still a request
    reveni.control.get("/_sim/effects")  # never counted
    counters = reveni.control.get("/_sim/counters").json()
    assert counters == {
        "requests": 5,
        "by_endpoint": {
            "GET merchant": 1,
            "GET returns": 2,
            "GET returns/{return_id}": 1,
            "unmatched": 1,
        },
        "errors_5xx": 0,
        "rate_limited": 0,
    }
    reset = reveni.sim_post("counters/reset")
    assert reset["requests"] == 0 and reset["by_endpoint"] == {}


def test_server_errors_and_rate_limits_come_before_anything_is_done(
    reveni: ReveniSimHandle,
) -> None:
    item_id = reveni.get_return("ret_std")["return_items"][0]["item_id"]
    body = {"items": [{"item_id": item_id, "status": "accepted"}]}
    reveni.sim_post("faults", {"error_rate": 1.0})
    failed = reveni.api.post("returns/ret_std/partial_validate", json=body)
    assert (failed.status_code, failed.json()) == (500, {"detail": "A server error occurred."})
    assert reveni.control.get("/_sim/effects").status_code == 200  # /_sim is never faulted
    reveni.sim_post("faults", {"error_rate": 0.0, "rate_limit_rate": 1.0, "retry_after_seconds": 3})
    limited = reveni.api.post("returns/ret_std/partial_validate", json=body)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert "throttled" in limited.json()["detail"]
    reveni.sim_post("faults", {"rate_limit_rate": 0.0})
    assert reveni.get_return("ret_std")["status"] == "in_progress"  # nothing was validated
    counters = reveni.control.get("/_sim/counters").json()
    assert (counters["errors_5xx"], counters["rate_limited"]) == (1, 1)


def test_latency_delays_api_requests(reveni: ReveniSimHandle) -> None:
    reveni.sim_post("faults", {"latency_ms": 60})
    started = time.monotonic()
    assert reveni.api.get("merchant").status_code == 200
    assert time.monotonic() - started >= 0.06


def test_the_same_seed_gives_the_same_api_faults(reveni: ReveniSimHandle) -> None:
    runs = []
    for _ in range(2):
        reveni.sim_post("faults", {"seed": 3, "error_rate": 0.3, "rate_limit_rate": 0.3})
        runs.append([reveni.api.get("merchant").status_code for _ in range(20)])
    assert runs[0] == runs[1]
    assert {200, 429, 500} <= set(runs[0])


@pytest.mark.parametrize(
    "body",
    [{"error_rate": 2}, {"error_rate": "x"}, {"latency_ms": 1.5}, {"boom": 1}, {"seed": True}],
)
def test_bad_fault_settings_are_400(reveni: ReveniSimHandle, body: dict[str, Any]) -> None:
    response = reveni.control.post("/_sim/faults", json=body)
    assert response.status_code == 400 and response.json()["error"]


def test_faults_start_from_the_scenario() -> None:
    data = reveni_sim_scenario_data()
    data["faults"] = {"seed": 5, "reveni": {"error_rate": 0.25, "drop_webhook_rate": 0.5}}
    with running_reveni_sim() as reveni:
        reveni.sim_post("load", data)
        faults = reveni.control.get("/_sim/faults").json()
    assert faults == {
        "seed": 5,
        "error_rate": 0.25,
        "rate_limit_rate": 0.0,
        "latency_ms": 0,
        "retry_after_seconds": 1,
        "duplicate_webhook_rate": 0.0,
        "out_of_order_webhook_rate": 0.0,
        "drop_webhook_rate": 0.5,
        "webhook_delay_scale": 1.0,
    }


# ---------------------------------------------------------------------------- load and clock


def test_load_replaces_the_store_and_the_clock(reveni: ReveniSimHandle) -> None:
    data = reveni_sim_scenario_data()
    data["now"] = "2026-11-01T00:00:00Z"
    data["reveni"]["store_id"] = "store_9"
    data["reveni"]["returns"] = data["reveni"]["returns"][:2]
    loaded = reveni.sim_post("load", data)
    assert loaded == {"loaded": True, "returns": 2, "now": "2026-11-01T00:00:00+00:00"}
    moved = httpx.get(
        f"{reveni.url}/merchants/v0/stores/store_9/returns",
        headers={"Authorization": f"Bearer {reveni.api_key}"},
    )
    assert moved.status_code == 200 and moved.json()["count"] == 2
    assert reveni.api.get("returns").status_code == 403  # store_1 is not this key's any more
    bad = reveni_sim_scenario_data()
    bad["reveni"]["returns"][0]["order_number"] = "x"
    response = reveni.control.post("/_sim/load", json=bad)
    assert response.status_code == 400
    assert "reveni.returns[0].order_number" in response.json()["error"]
    assert reveni.control.post("/_sim/load", json=[1]).status_code == 400


def test_clock_can_be_read_set_and_advanced(reveni: ReveniSimHandle) -> None:
    assert reveni.control.get("/_sim/clock").json() == {"now": "2026-10-15T12:00:00+00:00"}
    advanced = reveni.sim_post("clock", {"advance_seconds": 90})
    assert advanced == {"now": "2026-10-15T12:01:30+00:00"}
    assert reveni.sim_post("clock", {"set": "2026-10-20T08:00:00Z"})["now"].startswith(
        "2026-10-20T08:00"
    )
    changed = reveni.sim_post("returns/ret_std/status", {"status": "shipped"})
    assert changed["updated_at"] == "2026-10-20T08:00:00Z"
    for bad in ({}, {"advance_seconds": "1"}, {"advance_seconds": -1}, {"set": "yesterday"}):
        assert reveni.control.post("/_sim/clock", json=bad).status_code == 400
    assert reveni.control.post("/_sim/clock", content=b"{nope").status_code == 400


def test_updated_at_never_goes_back_when_the_clock_does(reveni: ReveniSimHandle) -> None:
    first = reveni.sim_post("returns/ret_std/status", {"status": "shipped"})["updated_at"]
    reveni.sim_post("clock", {"set": "2026-01-01T00:00:00Z"})
    second = reveni.sim_post("returns/ret_inst/status", {"status": "shipped"})["updated_at"]
    assert second > first
