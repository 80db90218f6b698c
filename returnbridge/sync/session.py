"""One executor run's working state: its claims and its budget.

A `Session` is what `Executor.run` keeps between the scheduler (`executor.py`), the outcome state
machine (`outcomes.py`) and the calls (`calls.py`): the report being filled, the keys the run is
limited to, the claims it holds, the budget slots it took before claiming, the backoffs it set and
the actions it stopped reading back.

Budget: the client's governor holds our share of Centra's limits in this process; the optional
`BudgetGate` (sync/budget.py) holds it across processes: a `mutation` slot before every write, a
`request` slot before every read the executor makes. The slot for an action's first call is taken
*before* claiming it (waiting for the budget never eats into the claim's lease) and spent by that
call (`pay`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from returnbridge.clock import Clock
from returnbridge.connectors.centra.models import Order
from returnbridge.connectors.errors import TransientError
from returnbridge.ledger import Ledger
from returnbridge.sync.budget import BudgetGate, BudgetKind
from returnbridge.sync.calls import ExchangeOrigins
from returnbridge.sync.report import ExecutionReport

T = TypeVar("T")


class BudgetUnavailable(TransientError):
    """The cross-process budget gate could not be passed (nothing was sent)."""


class LostClaim(Exception):
    """The claim's lease was taken over by another worker before the write: do not send."""


@dataclass
class Feed:
    """Between a sync that plans while the executor runs and that executor run.

    The planner side records actions in the ledger and calls `wake`; `close` once it plans no
    more (`abort`: stop starting work, as a deadline does). The executor side notes each action
    it settled (`done_returns`: returns with an action done, not yet taken by the planner),
    `hungry` (nothing due that it is not already working on, or an action stalled waiting for
    the budget: `executor.STALL_SECONDS`) and `idle` (nothing running,
    nothing due, no backoff of its own to wait for), and sets `progress` on each change.
    `orders`: orders the sync has read this run (an exchange's origin order is taken from here
    instead of being read again). `held`: returns the sync has yet to plan this run: their
    actions wait (an earlier run's pending action goes only once planning has seen what Centra
    shows now: a refund made by hand blocks it)."""

    orders: Mapping[int, Order] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    open: bool = True
    aborted: bool = False
    hungry: bool = False
    idle: bool = False
    done_returns: set[str] = field(default_factory=set)
    report: ExecutionReport | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        """New actions may be due: look again."""
        self.idle = False
        self.hungry = False
        self.changed.set()

    def close(self) -> None:
        """Nothing more will be planned: finish what is due, then return."""
        self.open = False
        self.changed.set()

    def abort(self) -> None:
        """Start nothing more; let what is in flight finish."""
        self.aborted = True
        self.close()

    def settled(self, key: str, state: str | None, return_id: str | None) -> None:
        if state == "done" and return_id is not None:
            self.done_returns.add(return_id)
        self.progress.set()

    def take_done(self) -> set[str]:
        taken, self.done_returns = self.done_returns, set()
        return taken

    def state(self, *, hungry: bool, idle: bool) -> None:
        if (hungry, idle) != (self.hungry, self.idle):
            self.hungry, self.idle = hungry, idle
            self.progress.set()


@dataclass
class Session:
    """State of one `Executor.run`: its report, the keys it is limited to, its claims and budget
    slots, and what it stopped reading. `ledger`, `clock` and `lease_seconds` serve the last
    check before a write (the claim is still ours)."""

    report: ExecutionReport
    wanted: frozenset[str] | None
    gate: BudgetGate
    ledger: Ledger
    clock: Clock
    lease_seconds: float
    parked: set[str] = field(default_factory=set)  # in doubt, read-backs exhausted this run
    # Budget slots taken before claiming an action (so that waiting for the budget never eats
    # into the claim's lease), by action key; spent by its first call of that kind.
    prepaid: dict[str, set[str]] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)  # keys this run holds a claim on now
    claim_attempts: dict[str, int] = field(default_factory=dict)  # the claims' attempt counts
    scheduled: set[str] = field(default_factory=set)  # keys this run gave a backoff
    stopped: bool = False  # the budget gate failed: start nothing new
    feed: Feed | None = None  # the sync planning alongside this run, if any
    pools: dict[str, BudgetKind] = field(default_factory=dict)  # running key -> its pool
    budget_waits: dict[str, datetime] = field(default_factory=dict)  # key -> waiting since
    none_due: dict[str, datetime] = field(default_factory=dict)  # pool -> found none due at
    origins: ExchangeOrigins | None = None  # exchanges' origin orders, read together

    async def acquire(self, kind: BudgetKind) -> None:
        """A new slot of the cross-process budget (BudgetUnavailable when the gate fails)."""
        try:
            await self.gate.acquire(kind)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise BudgetUnavailable(f"budget gate ({kind}): {type(exc).__name__}: {exc}") from exc

    async def pay(self, key: str, kind: BudgetKind) -> None:
        """A budget slot for one call of `key`: the prepaid one, or a new one."""
        prepaid = self.prepaid.get(key)
        if prepaid is not None and kind in prepaid:
            prepaid.discard(kind)
            return
        await self.acquire(kind)

    async def write(self, key: str, call: Callable[[], Awaitable[T]], *, metered: bool = True) -> T:
        """One write of `key`, after a mutation slot when `metered` (a GraphQL mutation), a
        request slot when not (an Order API write: governed as a plain request, as the client's
        governor does); counted unless it provably never left."""
        await self.pay(key, "mutation" if metered else "request")
        attempts = self.claim_attempts.get(key)
        if attempts is not None and not await asyncio.to_thread(
            self.ledger.renew_lease,
            key,
            attempts=attempts,
            lease_seconds=self.lease_seconds,
            now=self.clock.now(),
        ):
            raise LostClaim(key)  # the last check before sending: the claim is still ours
        try:
            result = await call()
        except (TransientError, ValueError):
            raise  # not sent
        except BaseException:
            self.report.mutations_sent += 1
            raise
        self.report.mutations_sent += 1
        return result

    def channel(self, key: str) -> KeyChannel:
        """The calls' way to Centra for action `key` (see `calls.Channel`)."""
        return KeyChannel(self, key)


@dataclass(frozen=True)
class KeyChannel:
    """`calls.Channel` of one action: its reads and writes pass the session's budget."""

    session: Session
    key: str

    async def read(self) -> None:
        await self.session.pay(self.key, "request")

    async def write(self, call: Callable[[], Awaitable[T]], *, metered: bool = True) -> T:
        return await self.session.write(self.key, call, metered=metered)
