"""Connection cursors are keyset positions: a well-formed `number:N` / `id:N` cursor naming a row
that is not in the list places the page where N would sit; a malformed one is an error."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle

from returnbridge.simulators.centra.paging import keyset_position

PAGE = """query($first: Int, $after: String, $last: Int, $before: String, $where: OrderFilter,
                $sort: [OrderSort!]) {
  orderConnection(first: $first, after: $after, last: $last, before: $before, where: $where,
                  sort: $sort) {
    pageInfo { hasNextPage hasPreviousPage endCursor }
    edges { node { number } }
  }
}"""


def cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def page(sim: CentraSimHandle, **variables: Any) -> tuple[list[int], dict[str, Any]]:
    conn = sim.data(PAGE, variables)["orderConnection"]
    return [e["node"]["number"] for e in conn["edges"]], conn["pageInfo"]


def test_the_documented_example_cursor_is_a_position_before_every_order(
    centra_sim: CentraSimHandle,
) -> None:
    assert cursor("number:166") == "bnVtYmVyOjE2Ng=="
    found, info = page(centra_sim, first=2, after="bnVtYmVyOjE2Ng==")
    assert found == [1001, 1002]
    assert info["hasNextPage"] is True and info["hasPreviousPage"] is False
    assert page(centra_sim, last=2, before="bnVtYmVyOjE2Ng==")[0] == []


def test_a_cursor_whose_row_left_the_list_continues_after_it(
    centra_sim: CentraSimHandle,
) -> None:
    where = {"number": [1001, 1003, 1004, 1005]}  # 1002 filtered out
    found, info = page(centra_sim, first=2, after=cursor("number:1002"), where=where)
    assert found == [1003, 1004] and info["hasPreviousPage"] is True
    assert page(centra_sim, last=2, before=cursor("number:1002"), where=where)[0] == [1001]
    beyond, info = page(centra_sim, first=2, after=cursor("number:999999"))
    assert beyond == [] and info["hasNextPage"] is False


def test_a_descending_list_places_the_cursor_in_its_own_order(
    centra_sim: CentraSimHandle,
) -> None:
    where = {"number": [1001, 1002, 1004, 1005]}  # 1003 filtered out
    sort = ["number_DESC"]
    after, _ = page(centra_sim, first=5, after=cursor("number:1003"), where=where, sort=sort)
    before, _ = page(centra_sim, last=5, before=cursor("number:1003"), where=where, sort=sort)
    assert (after, before) == ([1002, 1001], [1005, 1004])


def test_a_walk_goes_on_when_the_row_of_its_cursor_disappears(
    centra_sim: CentraSimHandle,
) -> None:
    first, info = page(centra_sim, first=2)
    assert first == [1001, 1002]
    # The next page is read with a filter that no longer holds the cursor's row.
    rest, _ = page(
        centra_sim, first=5, after=info["endCursor"], where={"number": [1001, 1003, 1004, 1005]}
    )
    assert rest == [1003, 1004, 1005]


@pytest.mark.parametrize(
    "bad",
    [
        "!!",  # not base64
        cursor("number:abc"),
        cursor("number:-5"),
        cursor("number: 5"),
        cursor("number:"),
        cursor("id:1003"),  # another list's key
        cursor("1003"),
        base64.b64encode(b"number:\xff").decode(),  # not UTF-8
    ],
)
def test_a_malformed_cursor_stays_an_error(centra_sim: CentraSimHandle, bad: str) -> None:
    body = centra_sim.graphql(PAGE, {"first": 1, "after": bad}).json()
    assert body["data"] is None
    assert "Invalid cursor" in body["errors"][0]["message"]


def test_keyset_position_needs_the_list_in_the_keys_order() -> None:
    assert keyset_position([1, 3, 5], 4, after=True) == 2
    assert keyset_position([1, 3, 5], 4, after=False) == 2
    assert keyset_position([1, 3, 5], 3, after=True) == 2
    assert keyset_position([5, 3, 1], 4, after=True, descending=True) == 1
    assert keyset_position([5, 3, 1], 4, after=False, descending=True) == 1
    assert keyset_position([], 4, after=True) == 0
    assert keyset_position([3, 1, 5], 4, after=True) is None
    assert keyset_position([1, 3, 5], 4, after=True, descending=True) is None
