"""The ledger under contention: threads with engines of their own, and processes sharing one
SQLite WAL file (or one PostgreSQL database), on a freshly created database."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from decimal import Decimal
from typing import TypeVar

import pytest
import sqlalchemy as sa
from ledger_support import drain_worker, many_refunds, refund, version_1_ledger

from returnbridge.core.codes import ReturnException
from returnbridge.ledger import SCHEMA_VERSION, Ledger

T = TypeVar("T")


@pytest.fixture
def ledgers(ledger_url: str) -> Iterator[list[Ledger]]:
    """Four ledgers on one database, each with its own engine (as separate workers have)."""
    with ExitStack() as stack:
        yield [stack.enter_context(Ledger(ledger_url)) for _ in range(4)]


def _all_at_once(workers: list[Callable[[], T]]) -> list[T]:
    """Run every worker in a thread of its own, released together."""
    barrier = threading.Barrier(len(workers))

    def run(work: Callable[[], T]) -> T:
        barrier.wait(timeout=10)
        return work()

    with ThreadPoolExecutor(len(workers)) as pool:
        return list(pool.map(run, workers))


def test_exactly_one_of_two_racing_workers_claims_an_action(ledgers: list[Ledger]) -> None:
    first, second = ledgers[:2]
    actions = many_refunds(15)
    first.plan(actions)
    for action in actions:
        won = _all_at_once(
            [
                lambda lg=lg, key=action.key: lg.claim(key, expected="pending")
                for lg in (first, second)
            ]
        )
        winners = [record for record in won if record is not None]
        assert len(winners) == 1, action.key
        assert winners[0].attempts == 1
    assert first.counts()["in_flight"] == 15


def test_racing_transitions_let_one_worker_settle_the_action(ledgers: list[Ledger]) -> None:
    ledgers[0].plan([refund("R1")])
    ledgers[0].claim("refund:R1:rf1", expected="pending")

    def settle(ledger: Ledger, state: str) -> Callable[[], str]:
        def work() -> str:
            try:
                ledger.transition("refund:R1:rf1", state, expected="in_flight")
            except ValueError:  # ActionStateError: the other worker moved it first
                return "lost"
            return state

        return work

    outcomes = _all_at_once([settle(ledgers[0], "done"), settle(ledgers[1], "in_doubt")])
    assert sorted(outcomes).count("lost") == 1
    record = ledgers[2].action("refund:R1:rf1")
    assert record is not None and record.state in outcomes


def test_a_webhook_delivered_many_times_at_once_is_kept_once(ledgers: list[Ledger]) -> None:
    added = _all_at_once(
        [
            lambda lg=lg: lg.inbox_add("reveni", "evt-1", '{"id": "evt-1"}', resource_id="R1")
            for lg in ledgers * 2
        ]
    )
    assert sorted(added) == [False] * 7 + [True]
    assert [e.event_id for e in ledgers[0].inbox_pending()] == ["evt-1"]


def test_one_exception_raised_by_many_workers_at_once_is_one_row(ledgers: list[Ledger]) -> None:
    found = ReturnException("refund_missing", "R1", 1001, amount=Decimal("10.00"), currency="EUR")
    records = _all_at_once([lambda lg=lg: lg.raise_exception(found) for lg in ledgers * 2])
    assert len({r.id for r in records}) == 1
    stored = ledgers[0].exceptions()
    assert len(stored) == 1 and stored[0].attempts == 7


def test_processes_opening_a_fresh_ledger_at_once_share_the_work(ledger_url: str) -> None:
    """Three processes open the same new database together (racing migrations), plan the same
    actions, and drain them: every action done exactly once, by exactly one of them."""
    count, workers = 60, 3
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers)  # released once every process is up
    results = context.Queue()
    processes = [
        context.Process(target=drain_worker, args=(ledger_url, count, start, results))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    errors = [detail for status, detail, _ in reports if status != "ok"]
    assert errors == []

    keys = [a.key for a in many_refunds(count)]
    inserted = Counter(key for _, planned, _ in reports for key in planned)
    finished = Counter(key for _, _, done in reports for key in done)
    assert inserted == Counter(keys)  # each key planned by exactly one process
    assert finished == Counter(keys)  # and finished by exactly one
    with Ledger(ledger_url) as ledger:
        records = ledger.actions()
        assert {(r.state, r.attempts) for r in records} == {("done", 1)}
        assert all(len(ledger.attempts(key)) == 1 for key in keys)


def test_runs_recording_unfinished_returns_at_once_keep_each_others_rows(
    ledgers: list[Ledger],
) -> None:
    """Eight runs at once, each over returns of its own and one they all share: every run's
    unfinished returns are kept (a JSON list read, changed and written back lost some)."""
    ledgers[0].record_unfinished(planned=["old"], unfinished=["old"])  # left by an earlier run

    def run(n: int, ledger: Ledger) -> Callable[[], None]:
        mine = [f"W{n}-{i}" for i in range(20)]
        shared = ["shared"] if n % 2 else []  # odd runs find it unfinished, even ones done

        def work() -> None:
            ledger.record_unfinished(planned=[*mine, "shared"], unfinished=mine[::2] + shared)

        return work

    _all_at_once([run(n, lg) for n, lg in enumerate(ledgers * 2)])
    kept = {u.reveni_return_id for u in ledgers[0].unfinished_returns()}
    expected = {"old"} | {f"W{n}-{i}" for n in range(8) for i in range(0, 20, 2)}
    assert kept - {"shared"} == expected  # "shared": whichever run came last decides


def test_workers_opening_a_version_1_ledger_at_once_migrate_it_once(ledger_url: str) -> None:
    version_1_ledger(ledger_url, '["ret_a", "ret_b"]')
    opened = _all_at_once([lambda: Ledger(ledger_url) for _ in range(4)])
    try:
        for ledger in opened:
            assert [u.reveni_return_id for u in ledger.unfinished_returns()] == ["ret_a", "ret_b"]
            assert ledger.cursor("reveni_returns:unfinished") is None
        with opened[0]._engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY 1"))
            assert list(versions.scalars()) == list(range(1, SCHEMA_VERSION + 1))
    finally:
        for ledger in opened:
            ledger.close()
