"""`changed_since` neither misses nor repeats a return while returns change between its page
requests: against a fake list endpoint that moves already-read returns to the end (by bumping
their updated_at) and appends new ones at chosen moments, in both date-filter precisions, and
over random interleavings (Hypothesis, seeded and bounded)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reveni_client_support import (
    T0,
    ChangingList,
    client_for,
    envelope,
    return_payload,
    scripted,
)

from returnbridge.connectors.reveni import (
    ChangedReturns,
    ReveniError,
    ReveniInferred,
    ReveniQueryError,
)

DATE = ReveniInferred(date_filter_precision="date")
EXACT = ReveniInferred(date_filter_precision="datetime")
DAY = 86400.0


def rid(n: int) -> str:
    return f"{n:032x}"


def one_day(n: int, start: datetime = T0) -> dict[str, datetime]:
    """`n` returns updated one minute apart on one day."""
    return {rid(i): start + timedelta(minutes=i) for i in range(n)}


async def run(
    listing: ChangingList, since: datetime, *, page_size: int, max_passes: int = 4
) -> ChangedReturns:
    async with client_for(listing.handler, inferred=listing.inferred) as reveni:
        return await reveni.changed_since(since, page_size=page_size, max_passes=max_passes)


def assert_once_sorted_latest(result: ChangedReturns, listing: ChangingList) -> None:
    ids = [r.id for r in result.returns]
    assert len(ids) == len(set(ids)), "a return was repeated"
    keys = [(r.updated_at, r.id) for r in result.returns]
    assert keys == sorted(keys)
    for ret in result.returns:
        assert ret.updated_at == listing.served[ret.id], f"{ret.id}: not the latest version seen"


# --------------------------------------------------------------------------- the problem


async def test_naive_paging_skips_a_return_that_shifts_left() -> None:
    """Why changed_since exists: a change on a page already read hides the next page's head."""
    rows = one_day(6)
    listing = ChangingList(DATE, rows, now=T0 + timedelta(hours=1))
    listing.schedule[1] = lambda lst: lst.change(rid(0))  # after page 1 was read
    async with client_for(listing.handler, inferred=DATE) as reveni:
        naive = [r.id async for r in reveni.iter_returns(updated_from=T0, page_size=2)]
    assert rid(2) not in naive  # slid onto page 1 after it was read
    assert naive.count(rid(0)) == 2  # and the changed one shows twice


@pytest.mark.parametrize("inferred", [DATE, EXACT], ids=["date", "datetime"])
async def test_changed_since_keeps_the_return_that_shifts_left(inferred: ReveniInferred) -> None:
    rows = one_day(6) if inferred is DATE else dict.fromkeys(map(rid, range(6)), T0)
    listing = ChangingList(inferred, dict(rows), now=T0 + timedelta(hours=1))
    listing.schedule[1] = lambda lst: lst.change(rid(0))
    result = await run(listing, T0, page_size=2)
    assert set(rows) <= {r.id for r in result.returns}
    assert_once_sorted_latest(result, listing)
    changed = next(r for r in result.returns if r.id == rid(0))
    assert changed.updated_at == listing.rows[rid(0)] > T0  # the new version, once
    assert result.passes == 2  # the move was seen, and the pass repeated from its old position
    assert result.high_water == listing.rows[rid(0)]


@pytest.mark.parametrize("inferred", [DATE, EXACT], ids=["date", "datetime"])
async def test_a_changed_return_that_is_itself_shifted_keeps_its_new_version(
    inferred: ReveniInferred,
) -> None:
    """The victim of a shift is a return that changed a moment before: its id was already seen
    (old version), so only the move detection, not the count, saves the new version."""
    rows = dict.fromkeys(map(rid, range(6)), T0)  # one instant: page numbers in both precisions

    def two_changes(lst: ChangingList) -> None:
        lst.change(rid(5))  # unread: moves to the end (last position)
        lst.change(rid(0))  # read: moves behind it, so rid(5)'s new version shifts left

    listing = ChangingList(inferred, rows, now=T0 + timedelta(hours=1))
    listing.schedule[3] = two_changes  # before page 3 (positions 4-5)
    result = await run(listing, T0, page_size=2)
    latest = {r.id: r.updated_at for r in result.returns}
    assert latest == listing.rows
    assert_once_sorted_latest(result, listing)


# --------------------------------------------------------------------------- restarts


async def test_datetime_precision_restarts_at_the_last_updated_at_after_each_page() -> None:
    rows = {rid(i): T0 + timedelta(seconds=i) for i in range(5)}
    listing = ChangingList(EXACT, rows, now=T0 + timedelta(hours=1))
    result = await run(listing, T0, page_size=2)
    assert [r.id for r in result.returns] == [rid(i) for i in range(5)]
    assert [(f, p) for f, p, _, _ in listing.log] == [
        ("2026-10-15T12:00:00Z", 1),
        ("2026-10-15T12:00:01Z", 1),
        ("2026-10-15T12:00:02Z", 1),
        ("2026-10-15T12:00:03Z", 1),  # :03 and :04, no next page
        ("2026-10-15T12:00:00Z", 1),  # the count of the original filter, read last
    ]
    assert listing.log[-1][2] == 1  # with page_size=1
    assert result.requests == 5 and result.passes == 1


async def test_date_precision_pages_within_a_day_and_restarts_at_day_boundaries() -> None:
    rows = {rid(i): T0 + timedelta(hours=4 * i) for i in range(6)}  # 12:00 .. next day 08:00
    listing = ChangingList(DATE, rows, now=T0 + timedelta(days=3))
    result = await run(listing, T0, page_size=2)
    assert [r.id for r in result.returns] == [rid(i) for i in range(6)]
    assert [(f, p) for f, p, _, _ in listing.log] == [
        ("2026-10-15", 1),  # 12:00, 16:00
        ("2026-10-15", 2),  # 20:00, 00:00 (16th): the day moved on
        ("2026-10-16", 1),  # 00:00, 04:00
        ("2026-10-16", 2),  # 08:00, end
        ("2026-10-15", 1),  # the original filter's count
    ]


async def test_no_count_request_when_the_walk_ends_on_the_original_filter() -> None:
    listing = ChangingList(DATE, one_day(5), now=T0 + timedelta(hours=1))
    result = await run(listing, T0, page_size=2)
    assert len(result.returns) == 5 and result.requests == 3 == listing.requests


async def test_since_is_exact_even_when_the_filter_covers_the_whole_day() -> None:
    rows = one_day(5)
    listing = ChangingList(DATE, rows, now=T0 + timedelta(hours=1))
    since = T0 + timedelta(minutes=2)
    result = await run(listing, since, page_size=10)
    assert [r.id for r in result.returns] == [rid(2), rid(3), rid(4)]
    assert listing.log[0][0] == "2026-10-15"


async def test_new_returns_during_the_walk_are_included() -> None:
    listing = ChangingList(DATE, one_day(4), now=T0 + timedelta(hours=1))
    listing.schedule[1] = lambda lst: lst.add("new" + "0" * 29)
    result = await run(listing, T0, page_size=2)
    assert [r.id for r in result.returns][-1] == "new" + "0" * 29
    assert len(result.returns) == 5 and result.passes == 1


async def test_high_water_round_trip_rereads_its_instant_and_nothing_older() -> None:
    rows = {rid(0): T0, rid(1): T0 + timedelta(seconds=5), rid(2): T0 + timedelta(seconds=5)}
    listing = ChangingList(EXACT, rows, now=T0 + timedelta(hours=1))
    first = await run(listing, T0, page_size=10)
    assert first.high_water == T0 + timedelta(seconds=5)
    again = await run(listing, first.high_water, page_size=10)
    assert [r.id for r in again.returns] == [rid(1), rid(2)]  # inclusive: re-read, not lost


async def test_nothing_changed_gives_no_high_water() -> None:
    listing = ChangingList(EXACT, {}, now=T0)
    result = await run(listing, T0, page_size=10)
    assert result.returns == [] and result.high_water is None and result.passes == 1


# --------------------------------------------------------------------------- failures


class AddBeforeEveryRequest(dict[int, Callable[[ChangingList], None]]):
    """A schedule that creates a new return before every request, forever."""

    def __init__(self) -> None:
        super().__init__()
        self.counter = iter(range(100_000))

    def get(self, key: int, default: object = None) -> Callable[[ChangingList], None]:
        return lambda lst: lst.add(f"new{next(self.counter):029d}")


async def test_a_list_that_never_stabilises_gives_a_partial_answer_with_a_safe_cursor() -> None:
    listing = ChangingList(EXACT, one_day(3), now=T0 + timedelta(hours=1))
    listing.schedule = AddBeforeEveryRequest()
    result = await run(listing, T0, page_size=3, max_passes=3)
    # pass 1: two pages and the count, which finds one more; passes 2, 3: the tail and the count
    assert listing.requests == 7
    assert not result.complete and result.passes == 3
    assert_once_sorted_latest(result, listing)
    assert set(one_day(3)) <= {r.id for r in result.returns}
    # whatever was not returned sorts at or after the cursor, so the next call picks it up
    returned = {r.id for r in result.returns}
    assert result.high_water is not None
    assert all(at >= result.high_water for i, at in listing.rows.items() if i not in returned)


async def test_a_busy_day_under_constant_change_never_blocks_the_cursor_wrongly() -> None:
    """Day precision, more than a page of returns on one day, one of them changing before every
    page: no pass is ever clean. The answer is partial, with the cursor held at the earliest
    position a version may have slid past, and a later call once the churn stops completes it."""
    rows = one_day(8)
    listing = ChangingList(DATE, dict(rows), now=T0 + timedelta(hours=1))
    churn = iter(range(100_000))
    listing.schedule = {n: (lambda lst: lst.change(rid(next(churn) % 8))) for n in range(2, 200)}
    first = await run(listing, T0, page_size=3, max_passes=2)
    assert not first.complete
    assert_once_sorted_latest(first, listing)
    returned = {r.id: r.updated_at for r in first.returns}
    assert first.high_water is not None
    for i, at in listing.rows.items():
        if returned.get(i) != at:
            assert at >= first.high_water, i
    listing.schedule = {}
    second = await run(listing, first.high_water, page_size=3)
    assert second.complete
    returned.update({r.id: r.updated_at for r in second.returns})
    assert returned == listing.rows


async def test_a_walk_that_never_reaches_the_end_gives_up_after_max_requests() -> None:
    # pages of two, restarting at the last one read: one new return per page, one added per page
    listing = ChangingList(EXACT, one_day(3), now=T0 + timedelta(hours=1))
    listing.schedule = AddBeforeEveryRequest()
    async with client_for(listing.handler, inferred=EXACT) as reveni:
        with pytest.raises(ReveniError, match="gave up after 50 list requests"):
            await reveni.changed_since(T0, page_size=2, max_requests=50)


async def test_a_server_that_ignores_the_filter_is_a_query_error() -> None:
    old = return_payload(rid(1), T0 - timedelta(days=3))
    handler, _ = scripted(httpx.Response(200, json=envelope([old])))
    async with client_for(handler, inferred=EXACT) as reveni:
        with pytest.raises(ReveniQueryError, match="filter is not applied") as info:
            await reveni.changed_since(T0)
    assert info.value.path == "results.0.updated_at"


async def test_a_server_that_sorts_otherwise_is_a_query_error() -> None:
    rows = [return_payload(rid(1), T0 + timedelta(hours=2)), return_payload(rid(2), T0)]
    handler, _ = scripted(httpx.Response(200, json=envelope(rows)))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniQueryError, match="not sorted"):
            await reveni.changed_since(T0)


async def test_a_server_that_ignores_page_is_a_query_error() -> None:
    page = envelope([return_payload(rid(i), T0) for i in range(2)], count=9, next_url="more")
    handler, _ = scripted(httpx.Response(200, json=page))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniQueryError, match="repeated"):
            await reveni.changed_since(T0, page_size=2)


async def test_naive_since_is_refused() -> None:
    handler, seen = scripted(httpx.Response(200, json=envelope([])))
    async with client_for(handler) as reveni:
        with pytest.raises(ValueError, match="timezone"):
            await reveni.changed_since(datetime(2026, 10, 15))
    assert seen == []


# --------------------------------------------------------------------------- random interleavings

STEPS = (1.0, 600.0, 5 * 3600.0, DAY)  # a second, ten minutes, hours, a day: crosses days


@st.composite
def interleavings(draw: st.DrawFn) -> tuple[ReveniInferred, dict[str, datetime], int, int, list]:
    inferred = draw(st.sampled_from([DATE, EXACT]))
    # quarter-hour slots over three days: ties, same-day runs and day boundaries all occur
    spread = draw(st.sampled_from([4, 96, 3 * 96]))  # an hour, a day, three days
    slots = draw(st.lists(st.integers(0, spread), max_size=14))
    rows = {rid(i): T0 + timedelta(minutes=15 * slot) for i, slot in enumerate(slots)}
    page_size = draw(st.integers(1, 4))
    since_slot = draw(st.integers(-8, spread))
    events = draw(
        st.lists(
            st.tuples(
                st.integers(0, 12),  # before which request
                st.sampled_from(["change_read", "change", "add"]),
                st.integers(0, 1000),  # which return changes
                st.sampled_from(STEPS),  # how far the clock moves
            ),
            max_size=8,
        )
    )
    return inferred, rows, page_size, since_slot, events


def schedule_of(events: list) -> dict[int, Callable[[ChangingList], None]]:
    by_request: dict[int, list[tuple[str, int, float]]] = {}
    for at, kind, pick, step in events:
        by_request.setdefault(at, []).append((kind, pick, step))
    added = iter(range(1000))

    def actions(todo: list[tuple[str, int, float]]) -> Callable[[ChangingList], None]:
        def apply(lst: ChangingList) -> None:
            for kind, pick, step in todo:
                # "change_read": one the client has already read (the harmful case)
                ids = sorted(lst.served if kind == "change_read" else lst.rows)
                if kind.startswith("change") and ids:
                    lst.change(ids[pick % len(ids)], step)
                else:
                    lst.add(f"new{next(added):029d}", step)

        return apply

    return {at: actions(todo) for at, todo in by_request.items()}


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(interleavings())
def test_changed_since_never_misses_or_repeats_under_random_interleavings(case: tuple) -> None:
    inferred, rows, page_size, since_slot, events = case
    since = T0 + timedelta(minutes=15 * since_slot)
    start_now = max([T0, *rows.values()]) + timedelta(seconds=1)
    listing = ChangingList(inferred, dict(rows), now=start_now, schedule=schedule_of(events))
    at_start = {i for i, at in rows.items() if at >= since}

    first = asyncio.run(run(listing, since, page_size=page_size, max_passes=len(events) + 2))

    # once each, sorted, each in the newest version the server ever showed us
    assert_once_sorted_latest(first, listing)
    got = {r.id: r.updated_at for r in first.returns}
    assert all(at >= since for at in got.values())
    # nothing that was there when we started is missing
    assert at_start <= set(got)
    # nothing is lost for the next call: every version we did not return is at or after the
    # high-water mark, so the caller's next call (since=high_water) picks it up
    listing.schedule = {}
    final = dict(listing.rows)
    for return_id, at in final.items():
        if at >= since and got.get(return_id) != at:
            assert first.high_water is not None and at >= first.high_water, return_id
    if first.high_water is not None:
        second = asyncio.run(run(listing, first.high_water, page_size=page_size))
        got.update({r.id: r.updated_at for r in second.returns})
    else:
        second = asyncio.run(run(listing, since, page_size=page_size))
        got.update({r.id: r.updated_at for r in second.returns})
    assert got == {i: at for i, at in final.items() if at >= since}
    assert first.passes <= len(events) + 2


def test_the_changing_list_refuses_a_clock_behind_its_data() -> None:
    with pytest.raises(ValueError):
        ChangingList(DATE, {rid(0): T0}, now=T0)


@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(interleavings())
def test_a_single_pass_answer_is_partial_at_worst_never_lossy(case: tuple) -> None:
    """With one pass allowed, a walk disturbed by moves may be partial; its cursor must still
    sit at or before every version it did not return."""
    inferred, rows, page_size, since_slot, events = case
    since = T0 + timedelta(minutes=15 * since_slot)
    start_now = max([T0, *rows.values()]) + timedelta(seconds=1)
    listing = ChangingList(inferred, dict(rows), now=start_now, schedule=schedule_of(events))
    first = asyncio.run(run(listing, since, page_size=page_size, max_passes=1))
    assert_once_sorted_latest(first, listing)
    listing.schedule = {}
    got = {r.id: r.updated_at for r in first.returns}
    final = {i: at for i, at in listing.rows.items() if at >= since}
    cursor = first.high_water or since
    for return_id, at in final.items():
        if got.get(return_id) != at:
            assert at >= cursor, return_id
    second = asyncio.run(run(listing, cursor, page_size=page_size))
    assert second.complete
    got.update({r.id: r.updated_at for r in second.returns})
    assert got == final


# --------------------------------------------------------------------------- malformed rows


@pytest.mark.parametrize("readable_time", [True, False])
async def test_a_malformed_row_is_skipped_reported_and_holds_the_cursor(
    readable_time: bool,
) -> None:
    """One bad row does not hide the rest of the list, and the cursor never passes it."""
    good = [return_payload(rid(i), updated_at=T0 + timedelta(minutes=i)) for i in (0, 2)]
    bad = return_payload(rid(1), updated_at=T0 + timedelta(minutes=1))
    bad["status"] = "lost_in_space"
    if not readable_time:
        bad["updated_at"] = "yesterday"
    handler, _ = scripted(httpx.Response(200, json=envelope([good[0], bad, good[1]])))
    async with client_for(handler, inferred=EXACT) as reveni:
        result = await reveni.changed_since(T0, page_size=10)
    assert [r.id for r in result.returns] == [rid(0), rid(2)]
    (row,) = result.rejected
    assert row.return_id == rid(1) and "status" in (row.field or "")
    # the next call starts at the bad row (or where this one started if its time is unreadable)
    assert result.high_water == (T0 + timedelta(minutes=1) if readable_time else T0)


def test_a_return_that_moves_onto_the_next_page_is_not_a_repeated_page() -> None:
    """Found by Hypothesis on a clean machine: with one return per page, a return read on page 1
    that changes moves to the end and shows up again on page 2 in a newer version. That is the
    list moving, not a server that ignores `page`, and must not stop the walk."""
    rows = {rid(0): T0 + timedelta(minutes=15), rid(1): T0}
    events = [(0, "change_read", 0, 1.0), (4, "change_read", 0, 1.0), (4, "change_read", 1, 1.0)]
    start_now = max(rows.values()) + timedelta(seconds=1)
    listing = ChangingList(EXACT, dict(rows), now=start_now, schedule=schedule_of(events))
    since = T0 - timedelta(minutes=15)
    result = asyncio.run(run(listing, since, page_size=1, max_passes=len(events) + 2))
    assert_once_sorted_latest(result, listing)
    assert set(rows) <= {r.id for r in result.returns}
