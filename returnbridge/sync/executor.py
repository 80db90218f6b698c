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
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import Collection
from datetime import datetime, timedelta

from returnbridge.clock import Clock, Now, as_clock
from returnbridge.connectors.centra.client import CentraClient
from returnbridge.core.codes import FAILURE_CODE
from returnbridge.ledger import ActionRecord, Ledger
from returnbridge.sync.budget import BudgetGate, BudgetKind, NoGate
from returnbridge.sync.calls import request_summary
from returnbridge.sync.outcomes import Outcomes
from returnbridge.sync.report import ExecutionReport, ExecutorConfig
from returnbridge.sync.session import BudgetUnavailable, Session

# Actions whose one write goes to the REST Order API (a refund, an exchange order): Centra meters
# mutations on the GraphQL Integration API, so these draw a plain request from the budget (as
# the client's governor governs them), never one of the mutations.
ORDER_API_WRITES = frozenset({"refund", "exchange_order"})

__all__ = [
    "FAILURE_CODE",
    "BudgetUnavailable",
    "ExecutionReport",
    "Executor",
    "ExecutorConfig",
    "request_summary",
]

log = logging.getLogger(__name__)


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
    ) -> ExecutionReport:
        """Run what is due (only `keys`, when given) until nothing is, or the deadline.

        First turns expired leases (a crashed worker's in_flight) into in_doubt. With
        `until_idle`, waits for the backoffs this run set (bounded by `max_attempts` and
        `read_back_attempts`), and for other actions' not_before within the deadline, but never
        past the deadline; otherwise returns once nothing is due now. Actions in flight with
        Centra at the deadline finish; those still waiting for the budget are dropped.
        """
        session = Session(
            report=ExecutionReport(),
            wanted=None if keys is None else frozenset(keys),
            gate=self.budget,
            ledger=self.ledger,
            clock=self.clock,
            lease_seconds=self.config.lease_seconds,
        )
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
                if not session.stopped:
                    self._start_due(now, session, outcomes, running)
                if running:
                    free = len(running) < self.config.concurrency
                    wake = self._next_wake(now, session, deadline) if free else None
                    if deadline is not None:
                        wake = deadline if wake is None else min(wake, deadline)
                    timeout = None if wake is None else max(0.0, (wake - now).total_seconds())
                    await self._collect(running, asyncio.FIRST_COMPLETED, timeout)
                    continue
                if not until_idle or session.stopped:
                    break
                wake = self._next_wake(now, session, deadline)
                if wake is None or (deadline is not None and wake > deadline):
                    break
                await self.clock.sleep(max(0.0, (wake - now).total_seconds()))
        finally:
            await self._drain(session, running)
        return session.report

    @staticmethod
    async def _collect(
        running: dict[asyncio.Task[None], str], when: str, wait_seconds: float | None
    ) -> None:
        finished, _ = await asyncio.wait(running, timeout=wait_seconds, return_when=when)
        for task in finished:
            del running[task]
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
    ) -> None:
        free = self.config.concurrency - len(running)
        if free <= 0:
            return
        busy = set(running.values())
        # The ledger filters by state, time and dependencies; restricting to `keys` happens here,
        # so a keyed run reads every due row (fine for the targeted runs it is for).
        wanted = session.wanted
        limit = sys.maxsize if wanted is not None else free + len(session.parked) + len(busy)
        for record in self.ledger.due(now=now, limit=limit, priority=self.config.priority):
            if free <= 0:
                break
            key = record.key
            if key in busy or key in session.parked:
                continue
            if wanted is not None and key not in wanted:
                continue
            task = asyncio.create_task(self._take(record, session, outcomes), name=key)
            running[task] = key
            busy.add(key)
            free -= 1

    def _next_wake(
        self, now: datetime, session: Session, deadline: datetime | None
    ) -> datetime | None:
        """The earliest future not_before worth waiting for: of the backoffs this run set, or
        (with a deadline) of any unsettled action; None if there is none."""
        records = self.ledger.actions(keys=session.wanted, states=("pending", "in_doubt"))
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
        # The first call: a read-back (in doubt) or an Order API write, a request; else a
        # GraphQL mutation.
        in_doubt = record.state == "in_doubt"
        kind: BudgetKind = "request" if in_doubt or record.kind in ORDER_API_WRITES else "mutation"
        try:
            await session.acquire(kind)
        except BudgetUnavailable as exc:
            log.error("budget gate unavailable, the run stops starting work: %s", exc)
            session.report.budget_unavailable = str(exc)
            session.stopped = True
            return
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
