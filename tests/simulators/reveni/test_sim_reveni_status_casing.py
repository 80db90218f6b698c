"""The simulated Reveni reads a status in either casing (`IN_PROGRESS`, as Reveni's only public
status list spells it, or `in_progress`) unless `status_case_strict` asks for its own spelling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from reveni_sim_support import ReveniSimHandle, running_reveni_sim

from returnbridge.connectors.reveni import ReveniInferred


@pytest.fixture(scope="module")
def server() -> Iterator[ReveniSimHandle]:
    with running_reveni_sim() as handle:
        yield handle


@pytest.fixture
def reveni(server: ReveniSimHandle) -> ReveniSimHandle:
    server.reset()
    return server


def _listed(reveni: ReveniSimHandle, status: str) -> Any:
    return reveni.api.get("returns", params={"status": status, "page_size": 100})


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["results"]]


def test_the_status_filter_takes_the_upper_case_of_the_public_list(
    reveni: ReveniSimHandle,
) -> None:
    lower = _ids(_listed(reveni, "in_progress,pending"))
    assert lower and _ids(_listed(reveni, "IN_PROGRESS,PENDING")) == lower
    assert _ids(_listed(reveni, "In_Progress,pending")) == lower


def test_a_strict_lower_case_store_refuses_the_upper_case() -> None:
    with running_reveni_sim(inferred=ReveniInferred(status_case_strict=True)) as reveni:
        assert _ids(_listed(reveni, "in_progress"))
        refused = _listed(reveni, "IN_PROGRESS")
        assert refused.status_code == 400
        detail = refused.json()["detail"]
        assert detail.startswith("status: unknown status(es) ['IN_PROGRESS']")
        assert "status_case_strict" in detail


def test_a_strict_upper_case_store_refuses_the_lower_case() -> None:
    inferred = ReveniInferred(status_case="upper", status_case_strict=True)
    with running_reveni_sim(inferred=inferred) as reveni:
        assert _ids(_listed(reveni, "IN_PROGRESS"))
        assert _listed(reveni, "in_progress").status_code == 400


def test_partial_validate_takes_an_item_status_in_either_casing(reveni: ReveniSimHandle) -> None:
    item = reveni.get_return("ret_mixed")["return_items"][1]["item_id"]
    body = {"items": [{"item_id": item, "quantity": 1, "status": "ACCEPTED"}]}
    response = reveni.api.post("returns/ret_mixed/partial_validate", json=body)
    assert response.status_code == 200, response.text
    assert [i["status"] for i in response.json()["return_items"]] == ["pending", "accepted"]


def test_partial_validate_under_strict_casing_needs_the_seen_spelling() -> None:
    with running_reveni_sim(inferred=ReveniInferred(status_case_strict=True)) as reveni:
        item = reveni.get_return("ret_mixed")["return_items"][1]["item_id"]
        body = {"items": [{"item_id": item, "status": "ACCEPTED"}]}
        response = reveni.api.post("returns/ret_mixed/partial_validate", json=body)
        assert response.status_code == 400
        assert response.json()["detail"].startswith("items[0].status")


def test_the_control_plane_takes_a_status_in_either_casing(reveni: ReveniSimHandle) -> None:
    before = reveni.get_return("ret_mixed")["status"]
    moved = reveni.control.post("/_sim/returns/ret_mixed/status", json={"status": "ON_HOLD"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == "on_hold" != before
