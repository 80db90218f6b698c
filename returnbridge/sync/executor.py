"""The executor: sends each planned action to Centra exactly once
(docs/architecture.md#the-executor).

The ledger holds what is owed; the executor takes what is due, claims it (compare-and-set, so two
executors never both send it), calls Centra, and records the outcome. Its parts, one job each:

- `executor.py` (here): the `Executor` and its scheduler: which due actions start, how many at
  once, the budget slot of an action's first call taken before claiming it, the claim's lease
  held while it is worked on, the run's deadline;
- `session.py`: one run's working state (its claims, budget slots, backoffs, report);
- `calls.py`: how each action kind is sent (beside `readback.py`: how each is read back);
- `outcomes.py`: the outcome state machine (done / retried / failed / blocked / in doubt and read
  back), with the exception each failure raises;
- `report.py`: `ExecutorConfig` and `ExecutionReport`.

Budget: the client's governor holds our share of Centra's limits in this process; the optional
`BudgetGate` (sync/budget.py) holds it across processes: a `mutation` slot before every write, a
`request` slot before every read the executor makes.

Pools: `concurrency` actions at once *per budget kind* of their first call (GraphQL mutations;
plain requests: Order API writes and read-backs), so that actions waiting for the mutation budget
(an hourly window spent) never keep the Order API writes, which the request budget pays, from
going meanwhile.

Feed: the sync plans alongside execution (`sync/run.py`): `run(feed=...)` keeps going while the
feed is open (new actions are recorded while it runs and wake it), tells the feed what settled and
when it has nothing due left to start, and ends once the feed is closed and nothing is due.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from returnbridge.clock import Clock, Now, as_clock
from returnbridge.connectors.centra.client import CentraClient
from returnbridge.core.codes import FAILURE_CODE
from returnbridge.ledger import ActionRecord, Ledger
from returnbridge.sync.budget import BudgetGate, BudgetKind, NoGate
from returnbridge.sync.calls import ExchangeOrigins, request_summary
from returnbridge.sync.outcomes import Outcomes
from returnbridge.sync.report import ExecutionReport, ExecutorConfig
from returnbridge.sync.session import BudgetUnavailable, Feed, Session

# Actions whose one write goes to the REST Order API (a refund, an exchange order): Centra meters
# mutations on the GraphQL Integration API, so these draw a plain request from the budget (as
# the client's governor governs them), never one of the mutations.
ORDER_API_WRITES = frozenset({"refund", "exchange_order"})
# The executor's pools: one per budget kind of an action's first call.
POOLS: tuple[BudgetKind, ...] = ("mutation", "request")
# The kinds whose first call draws from each pool (read-backs, of any kind, are requests).
POOL_KINDS: dict[BudgetKind, tuple[str, ...]] = {
    "mutation": ("create_return", "restock"),
    "request": tuple(sorted(ORDER_API_WRITES)),
}
# How long a look that found nothing due for a pool with room holds (unless the feed records
# more, or an action settles otherwise than done).
RECHECK_SECONDS = 5.0
# A wait for the budget this long is a stall (an hourly window spent: the 10 s window never
# holds an action this long): a feed is told, so that the sync plans what the stalled actions do
# not block.
STALL_SECONDS = 30.0

__all__ = [
    "FAILURE_CODE",
    "BudgetUnavailable",
    "ExecutionReport",
    "Executor",
    "ExecutorConfig",
    "Feed",
    "request_summary",
]

log = logging.getLogger(__name__)


def first_call(record: ActionRecord) -> BudgetKind:
    """The budget kind of an action's first call: a read-back (in doubt) or an Order API write
    is a request; else a GraphQL mutation."""
    if record.state == "in_doubt" or record.kind in ORDER_API_WRITES:
        return "request"
    return "mutation"


class Executor:
    """Runs due ledger actions against Centra (see the module docstring)."""

    def __init__(
        self,
        centra: CentraClient,
        ledger: Ledger,
        config: ExecutorConfig | None = None,
        *,
        budget: BudgetGate | None = None,
        clock: Clock | Now | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.centra = centra
        self.ledger = ledger
        self.config = config or ExecutorConfig()
        self.budget: BudgetGate = budget or NoGate()
        self.clock: Clock = as_clock(clock)
        self._rng = rng or random.Random()

    async def run(
        self,
        *,
        keys: Collection[str] | None = None,
        until_idle: bool = True,
        deadline_seconds: float | None = None,
        feed: Feed | None = None,
    ) -> ExecutionReport:
        """Run what is due (only `keys`, when given) until nothing is, or the deadline.

        First turns expired leases (a crashed worker's in_flight) into in_doubt. With
        `until_idle`, waits for the backoffs this run set (bounded by `max_attempts` and
        `read_back_attempts`), and for other actions' not_before within the deadline, but never
        past the deadline; otherwise returns once nothing is due now. Actions in flight with
        Centra at the deadline finish; those still waiting for the budget are dropped. With a
        `feed` (see `Feed`), also waits for what the feed records until it is closed.
        """
        session = Session(
            report=ExecutionReport(),
            wanted=None if keys is None else frozenset(keys),
            gate=self.budget,
            ledger=self.ledger,
            clock=self.clock,
            lease_seconds=self.config.lease_seconds,
            feed=feed,
        )
        session.origins = ExchangeOrigins(
            self.centra,
            lambda: self._exchange_origins(session),
            orders=None if feed is None else feed.orders,
        )
        if feed is not None:
            feed.report = session.report
        outcomes = Outcomes(self.centra, self.ledger, self.config, self.clock, self._rng)
        start = self.clock.now()
        deadline = None if deadline_seconds is None else start + timedelta(seconds=deadline_seconds)
        session.report.expired_leases = self.ledger.expire_leases(start)
        running: dict[asyncio.Task[None], str] = {}
        try:
            while True:
                now = self.clock.now()
                if deadline is not None and now >= deadline:
                    session.report.deadline_reached = True
                    break
                if feed is not None:
                    if feed.aborted:
                        break
                    if feed.changed.is_set():
                        session.none_due.clear()  # the feed recorded more
                    feed.changed.clear()
                fresh = False
                if not session.stopped:
                    fresh = self._start_due(now, session, outcomes, running)
                if running:
                    free = self._free(session, running)
                    wake = self._next_wake(now, session, deadline) if free else None
                    if feed is not None:
                        stalled, stall_at = self._stall(now, session)
                        feed.state(hungry=not fresh or stalled, idle=False)
                        if stall_at is not None:  # look again when the wait becomes a stall
                            wake = stall_at if wake is None else min(wake, stall_at)
                    if deadline is not None:
                        wake = deadline if wake is None else min(wake, deadline)
                    timeout = None if wake is None else max(0.0, (wake - now).total_seconds())
                    await self._collect(running, timeout, feed)
                    continue
                if session.stopped or (not until_idle and (feed is None or not feed.open)):
                    break
                wake = self._next_wake(now, session, deadline)
                if feed is not None and feed.open:
                    # Nothing in hand: wait for what the feed plans (or this run's backoffs).
                    feed.state(hungry=True, idle=wake is None)
                    if deadline is not None:
                        wake = deadline if wake is None else min(wake, deadline)
                    timeout = None if wake is None else max(0.0, (wake - now).total_seconds())
                    await self._collect(running, timeout, feed)
                    continue
                if wake is None or (deadline is not None and wake > deadline):
                    break
                await self.clock.sleep(max(0.0, (wake - now).total_seconds()))
        finally:
            await self._drain(session, running)
            if feed is not None:
                feed.state(hungry=True, idle=True)
        return session.report

    def _exchange_origins(self, session: Session) -> list[int]:
        """The origin order numbers of the exchange orders waiting to be sent (this run's keys
        only, in a keyed run): read together, when the first of them is sent."""
        numbers: list[int] = []
        for record in self.ledger.actions(kinds=["exchange_order"], states=["pending"]):
            if session.wanted is not None and record.key not in session.wanted:
                continue
            try:
                payload = record.action().payload
            except (KeyError, TypeError, ValueError):
                continue  # blocked when it is taken, not read for
            number = getattr(payload, "origin_order_number", None)
            if isinstance(number, int):
                numbers.append(number)
        return numbers

    @staticmethod
    def _stall(now: datetime, session: Session) -> tuple[bool, datetime | None]:
        """Whether an action has waited for the budget for `STALL_SECONDS` (an hourly window
        spent, not the 10 s window), and else when the longest wait would count so."""
        if not session.budget_waits:
            return False, None
        at = min(session.budget_waits.values()) + timedelta(seconds=STALL_SECONDS)
        return (True, None) if at <= now else (False, at)

    def _free(self, session: Session, running: dict[asyncio.Task[None], str]) -> bool:
        """Whether a pool has room for another action."""
        taken = [session.pools.get(key) for key in running.values()]
        return any(taken.count(kind) < self.config.concurrency for kind in POOLS)

    @staticmethod
    async def _collect(
        running: dict[asyncio.Task[None], str], wait_seconds: float | None, feed: Feed | None
    ) -> None:
        """Wait until a running action finishes (or the feed records more, or the timeout)."""
        waiting: set[asyncio.Future[Any]] = set(running)
        changed: asyncio.Task[Any] | None = None
        if feed is not None and feed.open:
            changed = asyncio.ensure_future(feed.changed.wait())
            waiting.add(changed)
        try:
            finished, _ = await asyncio.wait(
                waiting, timeout=wait_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if changed is not None and not changed.done():
                changed.cancel()
        for task in finished:
            if task is changed:
                continue
            del running[task]  # type: ignore[arg-type]
            if not task.cancelled():
                task.result()  # a ledger failure is not the action's: let it surface

    @staticmethod
    async def _drain(session: Session, running: dict[asyncio.Task[None], str]) -> None:
        """Drop what still waits for the budget (nothing claimed, nothing sent); let what is
        in flight with Centra finish, so that its outcome is recorded, not left to a lease."""
        if not running:
            return
        for task, key in running.items():
            if key not in session.claimed:
                task.cancel()
        results = await asyncio.gather(*running, return_exceptions=True)
        running.clear()
        for result in results:
            if isinstance(result, Exception):
                log.error("executor task failed while stopping: %r", result)

    def _start_due(
        self,
        now: datetime,
        session: Session,
        outcomes: Outcomes,
        running: dict[asyncio.Task[None], str],
    ) -> bool:
        """Start due actions while their pool has room; whether any due action was not in hand
        already (started now, or left waiting for room)."""
        busy = set(running.values())
        free = {kind: self.config.concurrency for kind in POOLS}
        for key in busy:
            kind = session.pools.get(key)
            if kind is not None:
                free[kind] -= 1
        # The ledger filters by state, time and dependencies; restricting to `keys` happens here,
        # so a keyed run reads every due row (fine for the targeted runs it is for).
        wanted = session.wanted
        held = session.feed.held if session.feed is not None else None
        fresh = False
        seen: set[str] = set()
        limit = sys.maxsize if wanted is not None else 2 * self.config.concurrency
        limit += len(session.parked) + len(busy)

        def look(priority: tuple[str, ...]) -> list[ActionRecord]:
            nonlocal fresh
            records = self.ledger.due(now=now, limit=limit, priority=priority)
            for record in records:
                key = record.key
                if key in seen or key in busy or key in session.parked:
                    continue
                seen.add(key)
                if wanted is not None and key not in wanted:
                    continue
                if held and record.reveni_return_id in held:
                    continue  # the sync has yet to plan its return this run
                fresh = True
                kind = first_call(record)
                if free[kind] <= 0:
                    continue
                task = asyncio.create_task(self._take(record, session, outcomes), name=key)
                running[task] = key
                session.pools[key] = kind
                busy.add(key)
                free[kind] -= 1
            return records

        records = look(self.config.priority)
        if len(records) < limit:
            return fresh  # every due action was seen
        # A pool with room, while the first due actions wait for the other one (a backlog of
        # restocks waiting for the hourly window, say): look again with its kinds first. A look
        # that finds none of them holds for `RECHECK_SECONDS`, or until the feed records more
        # or an action settles otherwise than done.
        for kind in POOLS:
            if free[kind] <= 0:
                continue
            checked = session.none_due.get(kind)
            if checked is not None and now - checked < timedelta(seconds=RECHECK_SECONDS):
                continue
            kinds = POOL_KINDS[kind]
            found = [r for r in look(kinds) if r.kind in kinds and r.key not in session.parked]
            if found:
                session.none_due.pop(kind, None)
            else:
                session.none_due[kind] = now
        return fresh

    def _next_wake(
        self, now: datetime, session: Session, deadline: datetime | None
    ) -> datetime | None:
        """The earliest future not_before worth waiting for: of the backoffs this run set, or
        (with a deadline) of any unsettled action; None if there is none."""
        keys: Collection[str] | None = session.wanted
        if deadline is None:
            # Only this run's backoffs count: read just those (not every unsettled action).
            wanted = session.wanted
            keys = set(session.scheduled) if wanted is None else session.scheduled & wanted
            if not keys:
                return None
        records = self.ledger.actions(keys=keys, states=("pending", "in_doubt"))
        times = [
            r.not_before
            for r in records
            if r.key not in session.parked
            and r.not_before is not None
            and r.not_before > now
            and (r.key in session.scheduled or deadline is not None)
        ]
        return min(times, default=None)

    async def _take(self, record: ActionRecord, session: Session, outcomes: Outcomes) -> None:
        """Pass the budget for the action's first call, then claim it and run it."""
        kind = first_call(record)
        session.budget_waits[record.key] = self.clock.now()
        try:
            await session.acquire(kind)
        except BudgetUnavailable as exc:
            log.error("budget gate unavailable, the run stops starting work: %s", exc)
            session.report.budget_unavailable = str(exc)
            session.stopped = True
            return
        finally:
            session.budget_waits.pop(record.key, None)
        # Waiting for the budget took time: take the action as it is now, if still due.
        current = self.ledger.action(record.key)
        if current is None or current.state != record.state or not _due(current, self.clock.now()):
            return  # another worker moved it (the slot is spent: the budget errs on the safe side)
        claimed = self.ledger.claim(
            record.key, expected=current.state, lease_seconds=self.config.lease_seconds
        )
        if claimed is None:
            return  # another worker won it
        session.prepaid[record.key] = {kind}
        session.claimed.add(record.key)
        session.claim_attempts[record.key] = claimed.attempts
        heartbeat = asyncio.create_task(self._hold_lease(claimed))
        try:
            await outcomes.handle(session, claimed, current)
        finally:
            heartbeat.cancel()
            session.claim_attempts.pop(record.key, None)
            session.prepaid.pop(record.key, None)
            session.claimed.discard(record.key)
            session.pools.pop(record.key, None)
            if session.report.outcomes.get(record.key) != "done":
                session.none_due.clear()  # a retry or a read-back may be due soon
            if session.feed is not None:
                report = session.report
                session.feed.settled(
                    record.key, report.outcomes.get(record.key), report.return_ids.get(record.key)
                )

    async def _hold_lease(self, claimed: ActionRecord) -> None:
        """Renew the claim's lease while the action is being worked on (waits for the client's
        governor can outlast a lease: an hourly quota spent). Real time, not the injected clock:
        the lease guards against a process that stopped, and only real time tells."""
        interval = max(self.config.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            held = await asyncio.to_thread(
                self.ledger.renew_lease,
                claimed.key,
                attempts=claimed.attempts,
                lease_seconds=self.config.lease_seconds,
                now=self.clock.now(),
            )
            if not held:
                log.error(
                    "action %s: its lease was taken over by another worker while this one "
                    "still works on it; the other worker reads Centra back before sending",
                    claimed.key,
                )
                return


def _due(record: ActionRecord, now: datetime) -> bool:
    return record.not_before is None or record.not_before <= now
