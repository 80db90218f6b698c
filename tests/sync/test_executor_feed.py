"""The executor beside a sync that plans while it runs (`Feed`), its pools per budget kind, and
the exchanges' origin reads taken together (`calls.ExchangeOrigins`).

Harness, fixtures and action builders are `test_executor.py`'s (the Centra simulator over real
HTTP, a real ledger on SQLite, a fake clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, TypeVar

from test_executor import (  # the harness and its fixtures
    FAST,
    Harness,
    created_return,
    exchange_action,
    h,  # noqa: F401 (the fixture)
    refund_action,
    restock_action,
    sim,  # noqa: F401 (the fixture)
    state_of,
)

from returnbridge.sync.budget import BudgetKind
from returnbridge.sync.calls import ExchangeOrigins
from returnbridge.sync.executor import Executor
from returnbridge.sync.session import Feed

T = TypeVar("T")


async def until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    """Wait (real time) until `check()` holds."""
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting")


class MutationsShut:
    """A budget gate whose mutation slots wait until `open` is set (an hourly window spent)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.acquired: list[BudgetKind] = []

    async def acquire(self, kind: BudgetKind, n: int = 1) -> None:
        if kind == "mutation":
            await self.open.wait()
        self.acquired.extend([kind] * n)


async def test_order_api_writes_go_while_mutations_wait_for_the_budget(h: Harness) -> None:  # noqa: F811
    ret_id = await created_return(h, "ret_pool")
    restocks = [await restock_action(h.centra, f"ret_pool_{i}") for i in range(2)]
    refund = refund_action("ret_pool", ret_id, via_psp=False, amount="10.00")
    h.ledger.plan([*restocks, refund])  # the restocks are older: they come first
    gate = MutationsShut()
    executor = Executor(
        h.centra, h.ledger, replace(FAST, concurrency=1), budget=gate, clock=h.clock
    )
    run = asyncio.create_task(executor.run())
    # the mutation pool is full of a restock waiting for the budget; the refund goes meanwhile
    await until(lambda: state_of(h, refund.key) == "done")
    assert {state_of(h, a.key) for a in restocks} == {"pending"}
    gate.open.set()
    report = await run
    assert report.outcomes == {a.key: "done" for a in [*restocks, refund]}


async def test_a_fed_run_sends_what_is_planned_while_it_runs_and_ends_when_closed(
    h: Harness,  # noqa: F811
) -> None:
    feed = Feed(held={"ret_feed_b"})
    executor = Executor(h.centra, h.ledger, FAST, clock=h.clock)
    run = asyncio.create_task(executor.run(feed=feed))
    await until(lambda: feed.idle)  # nothing planned yet: it waits, it does not end
    assert not run.done()
    a = await restock_action(h.centra, "ret_feed_a")
    b = await restock_action(h.centra, "ret_feed_b")
    h.ledger.plan([a, b])
    feed.wake()
    await until(lambda: state_of(h, a.key) == "done" and feed.idle)
    assert feed.take_done() == {"ret_feed_a"}
    assert state_of(h, b.key) == "pending"  # its return is not planned by this run yet
    feed.held.clear()
    feed.wake()
    await until(lambda: state_of(h, b.key) == "done")
    feed.close()
    report = await asyncio.wait_for(run, 20)
    assert report.outcomes == {a.key: "done", b.key: "done"}
    assert [c["description"] for c in h.effects()["stock_changes"]] == [
        "returnbridge restock ret_feed_a",
        "returnbridge restock ret_feed_b",
    ]


async def test_an_aborted_feed_stops_starting_work(h: Harness) -> None:  # noqa: F811
    feed = Feed()
    run = asyncio.create_task(Executor(h.centra, h.ledger, FAST, clock=h.clock).run(feed=feed))
    feed.abort()
    report = await asyncio.wait_for(run, 20)
    assert report.outcomes == {}


async def test_the_exchanges_of_a_run_read_their_origins_together(h: Harness) -> None:  # noqa: F811
    first = await created_return(h, "ret_ex_a")
    second = await created_return(h, "ret_ex_b")
    exchanges = [exchange_action("ret_ex_a", first), exchange_action("ret_ex_b", second)]
    h.ledger.plan(exchanges)
    report = await Executor(h.centra, h.ledger, FAST, clock=h.clock).run()
    assert report.outcomes == {a.key: "done" for a in exchanges}
    assert len(h.effects()["orders_created"]) == 2


# -- ExchangeOrigins without a server ------------------------------------------------------------


class Channel:
    def __init__(self) -> None:
        self.reads = 0

    async def read(self) -> None:
        self.reads += 1

    async def write(self, call: Callable[[], Awaitable[T]], *, metered: bool = True) -> T:
        return await call()


class Origins:
    """The two reads an exchange makes, counted."""

    orders_per_query = 2

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[int]]] = []

    async def orders_by_number(self, numbers: list[int]) -> dict[int, Any]:
        self.calls.append(("orders", list(numbers)))
        return {n: SimpleNamespace(number=n) for n in numbers if n != 404}

    async def shipping_addresses(self, numbers: list[int]) -> dict[int, Any]:
        self.calls.append(("addresses", list(numbers)))
        return {n: f"address of {n}" for n in numbers}


async def test_origins_are_read_for_every_waiting_exchange_at_once() -> None:
    centra, channel = Origins(), Channel()
    origins = ExchangeOrigins(centra, lambda: [1001, 1002, 1003], orders={1003: "known"})  # type: ignore[arg-type, dict-item]
    for number in (1002, 1001):
        assert (await origins.origin(number, channel)).number == number  # type: ignore[union-attr]
        assert await origins.address(number, channel) == f"address of {number}"
    assert await origins.origin(1003, channel) == "known"  # read by the sync: not again
    # one read of each for both (at most a request's batch: `orders_per_query` = 2)
    assert centra.calls == [("orders", [1002, 1001]), ("addresses", [1002, 1001])]
    assert channel.reads == 2
    # an address is used once: a resend reads it again
    assert await origins.address(1001, channel) == "address of 1001"
    assert channel.reads == 3


async def test_an_origin_centra_does_not_have_is_none() -> None:
    origins = ExchangeOrigins(Origins(), list)  # type: ignore[arg-type]
    assert await origins.origin(404, Channel()) is None
