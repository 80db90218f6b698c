"""The Reveni simulator's merchant API: paths, auth, the Return object, filters and pages."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from reveni_sim_support import ReveniSimHandle, reveni_sim_scenario_data, running_reveni_sim

from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.connectors.reveni.models import Merchant
from returnbridge.simulators.centra.records import order_hash_id

ALL_IDS = {"ret_std", "ret_inst", "ret_exch", "ret_mixed", "ret_partial", "ret_nf"}


@pytest.fixture(scope="module")
def reveni() -> Iterator[ReveniSimHandle]:
    """One simulator for the read-only tests of this module (nothing here changes it)."""
    with running_reveni_sim() as handle:
        yield handle


@pytest.fixture
def fresh(reveni: ReveniSimHandle) -> Iterator[ReveniSimHandle]:
    """The module's simulator, for a test that changes it: reset before and after."""
    reveni.reset()
    yield reveni
    reveni.reset()


# ---------------------------------------------------------------------------- auth and paths


def test_requests_without_a_valid_key_are_401(reveni: ReveniSimHandle) -> None:
    url = f"{reveni.url}/merchants/v0/stores/store_1/returns"
    missing = httpx.get(url)
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
    basic = httpx.get(url, headers={"Authorization": f"Basic {reveni.api_key}"})
    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {"detail": "Authentication credentials were not provided."}
    assert wrong.json() == basic.json() == {"detail": "Invalid token."}


def test_a_valid_key_on_another_store_is_refused(reveni: ReveniSimHandle) -> None:
    response = httpx.get(
        f"{reveni.url}/merchants/v0/stores/store_2/returns/ret_std",
        headers={"Authorization": f"Bearer {reveni.api_key}"},
    )
    assert response.status_code == 403
    assert "permission" in response.json()["detail"]


def test_the_wrong_store_status_is_configurable() -> None:
    with running_reveni_sim(inferred=ReveniInferred(wrong_store_status=404)) as reveni:
        response = httpx.get(
            f"{reveni.url}/merchants/v0/stores/store_2/merchant",
            headers={"Authorization": f"Bearer {reveni.api_key}"},
        )
    assert (response.status_code, response.json()) == (404, {"detail": "Not found."})


def test_unknown_returns_paths_and_methods_answer_json_errors(reveni: ReveniSimHandle) -> None:
    assert reveni.api.get("returns/nope").status_code == 404
    assert reveni.api.get("returns/nope").json() == {"detail": "Not found."}
    assert reveni.api.get("refunds").json() == {"detail": "Not found."}
    deleted = reveni.api.delete("returns/ret_std")
    assert deleted.status_code == 405
    assert deleted.json() == {"detail": 'Method "DELETE" not allowed.'}
    bad_body = reveni.api.post("returns/ret_std/partial_validate", content=b"{nope")
    assert bad_body.status_code == 400 and "JSON" in bad_body.json()["detail"]


def test_merchant_info(reveni: ReveniSimHandle) -> None:
    body = reveni.api.get("merchant").json()
    assert body == {
        "store_id": "store_1",
        "store_name": "Test Store",
        "merchant_name": "Test Store",
        "connector_type": "centra",
        "currency": "EUR",
    }
    Merchant.model_validate(body)


# ---------------------------------------------------------------------------- the Return object


def test_a_return_carries_order_customer_items_delivery_and_money(
    reveni: ReveniSimHandle,
) -> None:
    body = reveni.get_return("ret_std")
    assert body["store_id"] == "store_1"
    assert (body["type"], body["instant"], body["status"]) == ("refund", False, "in_progress")
    assert body["order"]["external_id"] == order_hash_id(1001)  # the Centra simulator's id
    assert body["order"]["name"] == "1001" and len(body["order"]["id"]) == 32
    assert body["customer"]["email"] == "anna@example.com"
    [item] = body["return_items"]
    assert len(item["item_id"]) == 32
    assert (item["sku"], item["quantity"], item["return_reason"]) == ("TEE-BLK-M", 1, "too_small")
    assert (item["status"], item["restock"], item["exchange"]) == ("pending", None, None)
    assert (item["unit_price"], item["currency"]) == ("299.00", "SEK")
    assert body["refunds"] == [] and body["exchange_order"] is None
    assert body["delivery"]["tracking_number"].startswith("RV")
    assert body["summary"]["refund_total"] == "0.00"
    assert body["created_at"] == body["updated_at"] == "2026-10-05T09:00:00Z"
    parsed = reveni.model(body)
    assert parsed.order.number == 1001


def test_a_return_on_an_order_centra_lacks_has_no_external_id(reveni: ReveniSimHandle) -> None:
    body = reveni.get_return("ret_nf")
    assert body["order"] == {**body["order"], "external_id": None, "name": "9999"}
    # No priced order line: the scenario's refund spread over the refunded units.
    assert body["return_items"][0]["unit_price"] == "25.00"


def test_exchange_items_carry_their_request_and_prices_follow_order_lines(
    reveni: ReveniSimHandle,
) -> None:
    exch = reveni.get_return("ret_exch")["return_items"][0]
    assert exch["exchange"] == {"sku": "TEE-BLK-M", "quantity": 1}
    mixed = reveni.get_return("ret_mixed")["return_items"]
    # The same SKU on two order lines: the first item takes line 1, the second line 2.
    assert [(i["unit_price"], i["exchange"] is None) for i in mixed] == [
        ("29.00", False),
        ("19.00", True),
    ]


def test_generated_return_ids_are_deterministic_32_hex() -> None:
    ids = []
    for _ in range(2):
        with running_reveni_sim() as reveni:
            ids.append(set(reveni.ids()) - ALL_IDS)
    assert ids[0] == ids[1]
    [generated] = ids[0]
    assert len(generated) == 32 and int(generated, 16) >= 0


# ---------------------------------------------------------------------------- list and pages


def test_list_envelope_and_pages(reveni: ReveniSimHandle) -> None:
    first = reveni.listing(page_size=3)
    assert first["count"] == 7 and len(first["results"]) == 3
    assert first["previous"] is None
    assert first["next"] == f"{reveni.api.base_url}returns?page_size=3&page=2"
    second = httpx.get(first["next"], headers=reveni.api.headers).json()
    assert second["previous"] == f"{reveni.api.base_url}returns?page_size=3"
    third = httpx.get(second["next"], headers=reveni.api.headers).json()
    assert third["next"] is None and len(third["results"]) == 1
    assert third["previous"].endswith("returns?page_size=3&page=2")
    pages = [row["id"] for page in (first, second, third) for row in page["results"]]
    assert pages == reveni.ids()


def test_pages_that_do_not_exist_are_404(reveni: ReveniSimHandle) -> None:
    for page in ("4", "0", "x"):
        response = reveni.api.get("returns", params={"page_size": 3, "page": page})
        assert (response.status_code, response.json()) == (404, {"detail": "Invalid page."})
    empty = reveni.listing(status="expired")
    assert (empty["count"], empty["results"], empty["next"]) == (0, [], None)


def test_page_size_defaults_is_capped_and_checked() -> None:
    inferred = ReveniInferred(page_size_default=2, page_size_max=4)
    with running_reveni_sim(inferred=inferred) as reveni:
        assert len(reveni.listing()["results"]) == 2
        assert len(reveni.listing(page_size=50)["results"]) == 4
        for bad in ("0", "-1", "many"):
            response = reveni.api.get("returns", params={"page_size": bad})
            assert response.status_code == 400
            assert response.json()["detail"].startswith("page_size:")


def test_list_is_sorted_by_updated_at_then_id(reveni: ReveniSimHandle) -> None:
    rows = reveni.listing(page_size=100)["results"]
    keys = [(row["updated_at"], row["id"]) for row in rows]
    assert keys == sorted(keys)
    assert rows[0]["id"] == "ret_partial"  # created 2026-09-30


def test_a_return_that_changes_moves_to_the_end_with_a_later_updated_at(
    fresh: ReveniSimHandle,
) -> None:
    before = fresh.ids()
    assert before[0] == "ret_partial"
    changed = fresh.sim_post("returns/ret_partial/status", {"status": "shipped"})
    assert changed["updated_at"] == "2026-10-15T12:00:00Z"  # the scenario's now
    assert fresh.control.get("/_sim/clock").json()["now"] == "2026-10-15T12:00:01+00:00"
    after = fresh.ids()
    assert after == [*before[1:], "ret_partial"]


# ---------------------------------------------------------------------------- filters


def test_status_filter_takes_a_comma_list_in_either_casing(reveni: ReveniSimHandle) -> None:
    assert set(reveni.ids(status="pending")) == set(reveni.ids()) - ALL_IDS
    assert len(reveni.ids(status="in_progress,pending")) == 7
    assert reveni.ids(status="IN_PROGRESS,PENDING") == reveni.ids(status="in_progress,pending")
    for bad in ("in_progress,lost", ","):
        response = reveni.api.get("returns", params={"status": bad})
        assert response.status_code == 400
        assert response.json()["detail"].startswith("status:")


def test_transaction_type_filter_matches_mixed_returns_both_ways(
    reveni: ReveniSimHandle,
) -> None:
    exchanges = set(reveni.ids(transaction_type="EXCHANGE"))
    refunds = set(reveni.ids(transaction_type="REFUND"))
    assert exchanges == {"ret_exch", "ret_mixed"}
    assert "ret_mixed" in refunds and "ret_exch" not in refunds and len(refunds) == 6
    assert len(reveni.ids(transaction_type="REFUND,EXCHANGE")) == 7
    response = reveni.api.get("returns", params={"transaction_type": "refund"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("transaction_type:")


def test_created_date_filters_cover_whole_days(reveni: ReveniSimHandle) -> None:
    assert reveni.ids(created_from="2026-10-06", created_to="2026-10-07") == [
        "ret_inst",
        "ret_exch",
    ]
    assert reveni.ids(created_to="2026-09-30") == ["ret_partial"]
    assert "ret_partial" not in reveni.ids(created_from="2026-10-01")
    for bad in ("2026-10-06T10:00:00Z", "20261006", "2026-13-01"):
        response = reveni.api.get("returns", params={"created_from": bad})
        assert response.status_code == 400
        assert response.json()["detail"].startswith("created_from:")


def test_updated_date_filters_see_changes(fresh: ReveniSimHandle) -> None:
    fresh.sim_post("walk", {"steps": 2})  # ret_std and ret_inst move at 2026-10-15 12:00
    assert fresh.ids(updated_from="2026-10-15") == ["ret_std", "ret_inst"]
    assert "ret_std" not in fresh.ids(updated_to="2026-10-14")
    assert fresh.ids(updated_from="2026-10-16") == []


def test_date_filters_use_the_inferred_timezone() -> None:
    # ret_partial was created 2026-09-30 23:30 UTC, which is 1 October in Madrid.
    inferred = ReveniInferred(date_filter_timezone="Europe/Madrid")
    with running_reveni_sim(inferred=inferred) as reveni:
        assert "ret_partial" in reveni.ids(created_from="2026-10-01")
        assert reveni.ids(created_to="2026-09-30") == []


def test_datetime_precision_filters_are_inclusive_instants() -> None:
    inferred = ReveniInferred(date_filter_precision="datetime")
    with running_reveni_sim(inferred=inferred) as reveni:
        assert reveni.ids(
            created_from="2026-10-06T10:00:00+00:00", created_to="2026-10-07T10:00:00+02:00"
        ) == ["ret_inst", "ret_exch"]
        assert (
            reveni.ids(created_from="2026-10-06T10:00:01Z", created_to="2026-10-07T07:59:59Z") == []
        )
        for bad in ("2026-10-06", "2026-10-06T10:00:00"):
            response = reveni.api.get("returns", params={"updated_to": bad})
            assert response.status_code == 400
            assert response.json()["detail"].startswith("updated_to:")


def test_search_covers_order_name_email_and_tracking_number(reveni: ReveniSimHandle) -> None:
    assert reveni.ids(search="9999") == ["ret_nf"]
    assert reveni.ids(search="zed.unknown@example") == ["ret_nf"]
    assert set(reveni.ids(search="ANNA@")) == {"ret_std"} | (set(reveni.ids()) - ALL_IDS)
    tracking = reveni.get_return("ret_exch")["delivery"]["tracking_number"]
    assert reveni.ids(search=tracking[2:9].lower()) == ["ret_exch"]
    assert reveni.ids(search="nobody") == []


def test_filters_combine(reveni: ReveniSimHandle) -> None:
    assert reveni.ids(transaction_type="EXCHANGE", search="1004", status="in_progress") == [
        "ret_mixed"
    ]


def test_scenario_without_returns_lists_nothing(fresh: ReveniSimHandle) -> None:
    data = reveni_sim_scenario_data()
    data["reveni"]["returns"] = []
    fresh.sim_post("load", data)
    assert fresh.listing() == {"count": 0, "next": None, "previous": None, "results": []}
