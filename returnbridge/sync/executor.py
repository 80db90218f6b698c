"""The executor: sends each planned action to Centra exactly once (design.md §3, §6).

The ledger holds what is owed; the executor takes what is due, claims it (compare-and-set, so two
executors never both send it), calls Centra, and records the outcome:

- success: `done`, with Centra's id of the effect;
- nothing changed (`TransientError`, `RateLimitedError`): back to `pending` after a backoff (or
  Centra's `Retry-After`), `failed` plus the kind's exception after `max_attempts`;
- Centra said no (`RejectedError`): `failed` plus the kind's exception, except where the refusal
  means "it already happened" (`POST /order` -5, a return already refunded), which is read back;
- a credentials or query error (`AuthError`, `QueryError`): `failed`, named as such (a person
  must fix configuration or code; retrying cannot help);
- an unknown outcome (`InDoubtError`, a crashed worker's expired lease, anything unexpected after
  the call began): `in_doubt`, then read back at once, never resent blindly. Proven: `done`.
  Proven absent: `pending` (safe to send). Inconclusive: stays `in_doubt` with a backoff, and an
  `action_in_doubt` exception (ops) after `read_back_attempts`, while later runs keep reading.

A read-back that finds nothing right after the uncertain call is not yet proof: Centra may still
be executing a request our side gave up on. `in_doubt_settle_seconds` after the uncertain call,
"absent" is believed.

Budget: the client's governor holds our share of Centra's limits in this process; the optional
`BudgetGate` (core/budget.py) holds it across processes: a `mutation` slot before every write, a
`request` slot before every read the executor makes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import sys
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar

from returnbridge.clock import Clock, Now, as_clock
from returnbridge.connectors.centra.client import CentraClient
from returnbridge.connectors.centra.inputs import (
    CreatedFromOrigin,
    OrderProduct,
    ReturnLineInput,
    StockDelta,
)
from returnbridge.connectors.centra.models import Address
from returnbridge.connectors.errors import (
    AuthError,
    InDoubtError,
    QueryError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from returnbridge.core.actions import (
    ACTION_KINDS,
    Action,
    ActionStateError,
    CreateReturn,
    ExchangeOrder,
    Refund,
    Restock,
)
from returnbridge.core.codes import ReturnException
from returnbridge.ledger import ActionRecord, Ledger
from returnbridge.sync.budget import BudgetGate, BudgetKind, NoGate
from returnbridge.sync.readback import (
    Absent,
    Found,
    Problem,
    ReadBack,
    Refused,
    amount_problems,
    read_back,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The exception an action of each kind raises when it cannot be done.
FAILURE_CODE: Final[Mapping[str, str]] = {
    "create_return": "return_create_failed",
    "restock": "restock_failed",
    "refund": "refund_post_failed",
    "exchange_order": "exchange_order_failed",
}
# Codes about an action's own failure: healed (resolved) once the action is done after all.
_HEALED_ON_DONE: Final = frozenset(
    {*FAILURE_CODE.values(), "action_in_doubt", "refund_failed_at_gateway", "exchange_out_of_stock"}
)
# Order API error codes ([C] reference/centra.md §5).
ORDER_NO_STOCK: Final = -2
ORDER_DUPLICATE_NUMBER: Final = -5
# Request summary of a read-back attempt (how inconclusive read-backs in a row are counted).
READ_BACK: Final = "read back"
# last_error of an action read back too soon after its uncertain call: its next read-back,
# due at the end of the settle time, believes "absent".
_TOO_SOON: Final = "read back too soon"
_LIVE: Final = ("open", "retrying")


@dataclass(frozen=True)
class ExecutorConfig:
    """How the executor spends its budget and how patient it is.

    `priority`: kinds run first, in this order; by default no kind goes first (design.md §6),
    the oldest action is. `concurrency`: actions in flight at once in this process.
    `max_attempts`: sends of one action before a retryable failure becomes `failed` (read-backs
    do not count). Backoff is exponential with jitter from `backoff_seconds`, capped at
    `backoff_max_seconds`. `lease_seconds`: how long a claim is held before another worker may
    treat it as crashed (keep it above the client's timeout plus the longest governor wait).
    `read_back_attempts`: inconclusive read-backs in a row before `action_in_doubt` is raised.
    `in_doubt_settle_seconds`: how long after an uncertain call a read-back that finds nothing
    is believed.
    """

    priority: tuple[str, ...] = ()
    concurrency: int = 4
    max_attempts: int = 5
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    lease_seconds: float = 120.0
    read_back_attempts: int = 3
    in_doubt_settle_seconds: float = 30.0

    def __post_init__(self) -> None:
        unknown = [k for k in self.priority if k not in ACTION_KINDS]
        if unknown:
            raise ValueError(f"priority names unknown kinds {unknown}; known: {ACTION_KINDS}")
        if self.concurrency < 1 or self.max_attempts < 1 or self.read_back_attempts < 1:
            raise ValueError("concurrency, max_attempts and read_back_attempts must be >= 1")
        if min(self.backoff_seconds, self.backoff_max_seconds, self.in_doubt_settle_seconds) < 0:
            raise ValueError("backoff and settle times may not be negative")
        if self.lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")


@dataclass
class ExecutionReport:
    """What one `run` did. `outcomes`: the state each action it touched was left in."""

    outcomes: dict[str, str] = field(default_factory=dict)
    return_ids: dict[str, str] = field(default_factory=dict)  # action key -> Reveni return id
    retried: int = 0  # sent back to pending: transient, 429, read back as absent
    read_backs: int = 0
    mutations_sent: int = 0  # writes that may have reached Centra
    expired_leases: list[str] = field(default_factory=list)
    exceptions: list[ReturnException] = field(default_factory=list)
    deadline_reached: bool = False
    budget_unavailable: str | None = None  # the gate failed: the run stopped starting work

    def _count(self, state: str) -> int:
        return sum(1 for s in self.outcomes.values() if s == state)

    @property
    def done(self) -> int:
        return self._count("done")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def in_doubt(self) -> int:
        return self._count("in_doubt")

    @property
    def blocked(self) -> int:
        return self._count("blocked")

    @property
    def pending(self) -> int:
        return self._count("pending")

    @property
    def done_returns(self) -> list[str]:
        """Reveni return ids with an action done in this run (their next steps may be due)."""
        return sorted({self.return_ids[k] for k, s in self.outcomes.items() if s == "done"})

    def as_summary(self) -> dict[str, Any]:
        """Counts for the run summary and logs."""
        return {
            "done": self.done,
            "retried": self.retried,
            "failed": self.failed,
            "in_doubt": self.in_doubt,
            "blocked": self.blocked,
            "pending": self.pending,
            "read_backs": self.read_backs,
            "mutations_sent": self.mutations_sent,
            "expired_leases": len(self.expired_leases),
            "exceptions": [e.as_summary() for e in self.exceptions],
            "deadline_reached": self.deadline_reached,
            "budget_unavailable": self.budget_unavailable,
        }


class BudgetUnavailable(TransientError):
    """The cross-process budget gate could not be passed (nothing was sent)."""


class _LostClaim(Exception):
    """The claim's lease was taken over by another worker before the write: do not send."""


class _CannotSend(Exception):
    """The action cannot be sent as planned (found before sending anything)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass
class _Run:
    """State of one `run`: its report, the keys it is limited to, and what it stopped reading."""

    report: ExecutionReport
    wanted: frozenset[str] | None
    parked: set[str] = field(default_factory=set)  # in doubt, read-backs exhausted this run
    # Budget slots taken before claiming an action (so that waiting for the budget never eats
    # into the claim's lease), by action key; spent by its first call of that kind.
    prepaid: dict[str, set[str]] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)  # keys this run holds a claim on now
    claim_attempts: dict[str, int] = field(default_factory=dict)  # the claims' attempt counts
    scheduled: set[str] = field(default_factory=set)  # keys this run gave a backoff
    stopped: bool = False  # the budget gate failed: start nothing new


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

    # ------------------------------------------------------------------ scheduling

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
        run = _Run(ExecutionReport(), None if keys is None else frozenset(keys))
        start = self.clock.now()
        deadline = None if deadline_seconds is None else start + timedelta(seconds=deadline_seconds)
        run.report.expired_leases = self.ledger.expire_leases(start)
        running: dict[asyncio.Task[None], str] = {}
        try:
            while True:
                now = self.clock.now()
                if deadline is not None and now >= deadline:
                    run.report.deadline_reached = True
                    break
                if not run.stopped:
                    self._start_due(now, run, running)
                if running:
                    free = len(running) < self.config.concurrency
                    wake = self._next_wake(now, run, deadline) if free else None
                    if deadline is not None:
                        wake = deadline if wake is None else min(wake, deadline)
                    timeout = None if wake is None else max(0.0, (wake - now).total_seconds())
                    await self._collect(running, asyncio.FIRST_COMPLETED, timeout)
                    continue
                if not until_idle or run.stopped:
                    break
                wake = self._next_wake(now, run, deadline)
                if wake is None or (deadline is not None and wake > deadline):
                    break
                await self.clock.sleep(max(0.0, (wake - now).total_seconds()))
        finally:
            await self._drain(run, running)
        return run.report

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
    async def _drain(run: _Run, running: dict[asyncio.Task[None], str]) -> None:
        """Drop what still waits for the budget (nothing claimed, nothing sent); let what is
        in flight with Centra finish, so that its outcome is recorded, not left to a lease."""
        if not running:
            return
        for task, key in running.items():
            if key not in run.claimed:
                task.cancel()
        results = await asyncio.gather(*running, return_exceptions=True)
        running.clear()
        for result in results:
            if isinstance(result, Exception):
                log.error("executor task failed while stopping: %r", result)

    def _start_due(self, now: datetime, run: _Run, running: dict[asyncio.Task[None], str]) -> None:
        free = self.config.concurrency - len(running)
        if free <= 0:
            return
        busy = set(running.values())
        # The ledger filters by state, time and dependencies; restricting to `keys` happens here,
        # so a keyed run reads every due row (fine for the targeted runs it is for).
        limit = sys.maxsize if run.wanted is not None else free + len(run.parked) + len(busy)
        for record in self.ledger.due(now=now, limit=limit, priority=self.config.priority):
            if free <= 0:
                break
            key = record.key
            if key in busy or key in run.parked:
                continue
            if run.wanted is not None and key not in run.wanted:
                continue
            task = asyncio.create_task(self._take(record, run), name=key)
            running[task] = key
            busy.add(key)
            free -= 1

    def _next_wake(self, now: datetime, run: _Run, deadline: datetime | None) -> datetime | None:
        """The earliest future not_before worth waiting for: of the backoffs this run set, or
        (with a deadline) of any unsettled action; None if there is none."""
        records = self.ledger.actions(keys=run.wanted, states=("pending", "in_doubt"))
        times = [
            r.not_before
            for r in records
            if r.key not in run.parked
            and r.not_before is not None
            and r.not_before > now
            and (r.key in run.scheduled or deadline is not None)
        ]
        return min(times, default=None)

    async def _take(self, record: ActionRecord, run: _Run) -> None:
        """Pass the budget for the action's first call, then claim it and run it."""
        kind: BudgetKind = "request" if record.state == "in_doubt" else "mutation"
        try:
            await self._acquire(kind)
        except BudgetUnavailable as exc:
            log.error("budget gate unavailable, the run stops starting work: %s", exc)
            run.report.budget_unavailable = str(exc)
            run.stopped = True
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
        run.prepaid[record.key] = {kind}
        run.claimed.add(record.key)
        run.claim_attempts[record.key] = claimed.attempts
        heartbeat = asyncio.create_task(self._hold_lease(claimed))
        try:
            await self._process(claimed, current, run)
        finally:
            heartbeat.cancel()
            run.claim_attempts.pop(record.key, None)
            run.prepaid.pop(record.key, None)
            run.claimed.discard(record.key)

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

    async def _pay(self, run: _Run, key: str, kind: BudgetKind) -> None:
        """A budget slot for one call of `key`: the prepaid one, or a new one."""
        prepaid = run.prepaid.get(key)
        if prepaid is not None and kind in prepaid:
            prepaid.discard(kind)
            return
        await self._acquire(kind)

    async def _process(self, claimed: ActionRecord, before: ActionRecord, run: _Run) -> None:
        try:
            action = claimed.action()
        except (KeyError, TypeError, ValueError) as exc:
            code = FAILURE_CODE.get(claimed.kind, "action_in_doubt")
            detail = f"its stored payload cannot be read: {exc}"
            self._finish(run, claimed, "blocked", code, detail, self.clock.now(), "(not sent)")
            return
        if before.state == "in_doubt":
            if (before.last_error or "").startswith(_TOO_SOON):
                believe_after = None  # the settle time it waited for has passed
            else:  # a crashed worker (lease expired) or an inconclusive read-back
                believe_after = before.updated_at + self._settle_time
            await self._settle(run, action, claimed, believe_absent_after=believe_after)
        else:
            await self._send(run, action, claimed)

    # ------------------------------------------------------------------ sending

    async def _send(self, run: _Run, action: Action, rec: ActionRecord) -> None:
        started = self.clock.now()
        summary = request_summary(action)
        try:
            found = await self._apply(run, action)
        except _LostClaim:
            log.warning("action %s: claim lost before sending; left to its new holder", rec.key)
        except InDoubtError as exc:
            await self._in_doubt(run, action, rec, started, summary, str(exc))
        except RateLimitedError as exc:
            self._retry(run, rec, started, summary, f"rate limited: {exc}", exc.retry_after)
        except TransientError as exc:
            self._retry(run, rec, started, summary, f"{type(exc).__name__}: {exc}", None)
        except RejectedError as exc:
            await self._rejected(run, action, rec, started, summary, exc)
        except (AuthError, QueryError) as exc:
            kind = "credentials refused" if isinstance(exc, AuthError) else "query error"
            detail = (
                f"{type(exc).__name__} ({kind}: fix the configuration or the code; not retried):"
                f" {exc}"
            )
            self._finish(run, rec, "failed", FAILURE_CODE[action.kind], detail, started, summary)
        except _CannotSend as exc:
            self._finish(run, rec, "failed", exc.code, str(exc), started, summary)
        except ValueError as exc:  # refused locally before sending: a planning or config bug
            detail = f"not sent: {exc}"
            self._finish(run, rec, "blocked", FAILURE_CODE[action.kind], detail, started, summary)
        except Exception as exc:
            # Something unexpected after the call began: it may have reached Centra.
            log.exception("action %s: unexpected error; reading back before any resend", rec.key)
            await self._in_doubt(run, action, rec, started, summary, f"{type(exc).__name__}: {exc}")
        else:
            if isinstance(found, Refused):
                self._finish(run, rec, "failed", found.code, found.summary, started, summary)
            else:
                self._done(run, rec, found, started, summary)

    async def _apply(self, run: _Run, action: Action) -> Found | Refused:
        """Send `action`'s one write; Centra's id of the effect and a response summary."""
        payload = action.payload
        centra = self.centra
        if isinstance(payload, CreateReturn):
            created = await self._write(
                run,
                action.key,
                lambda: centra.create_return(
                    shipment_id=payload.shipment_id,
                    lines=[
                        ReturnLineInput(ln.shipment_line_id, ln.quantity) for ln in payload.lines
                    ],
                    stock_policy="remove",  # no stock added here: the restock action does that
                    external_id=payload.external_id,
                    comment=payload.comment or None,
                ),
            )
            ret = created.value
            return Found(str(ret.id), f"return {ret.id} ({ret.status}){_warned(created.warnings)}")
        if isinstance(payload, Restock):
            change = await self._write(
                run,
                action.key,
                lambda: centra.change_stock(
                    description=payload.description,
                    deltas=[
                        StockDelta(ln.variant_id, ln.size_id, ln.quantity) for ln in payload.lines
                    ],
                    into_warehouse_id=payload.warehouse_id,
                ),
            )
            return Found(
                str(change.value.id), f"stock change {change.value.id}{_warned(change.warnings)}"
            )
        if isinstance(payload, Refund):
            body = await self._write(
                run,
                action.key,
                lambda: centra.update_return(
                    payload.centra_return_id,
                    completed=True,
                    refund_payment=payload.via_psp,
                    manual_refund=None if payload.via_psp else (payload.amount, payload.reference),
                ),
            )
            return _refund_answer(payload, body)
        assert isinstance(payload, ExchangeOrder)
        return await self._exchange(run, action, payload)

    async def _exchange(self, run: _Run, action: Action, payload: ExchangeOrder) -> Found:
        origin_number = payload.origin_order_number
        await self._pay(run, action.key, "request")
        origin = (await self.centra.orders_by_number([origin_number])).get(origin_number)
        if origin is None:
            raise _CannotSend("exchange_order_failed", f"origin order {origin_number} not found")
        await self._pay(run, action.key, "request")
        address = (await self.centra.shipping_addresses([origin_number])).get(origin_number)
        if address is None or not address.email or not address.country:
            raise _CannotSend(
                "exchange_order_failed",
                f"origin order {origin_number} has no shipping address with e-mail and country",
            )
        extra: dict[str, Any] = {"address": _address_body(address), "currency": origin.currency}
        if origin.market is not None:
            extra["marketId"] = origin.market.id
        if payload.marker is not None:
            extra["internalComment"] = payload.marker
        candidates = payload.candidates()
        for index, number in enumerate(candidates):
            try:
                numbers = await self._write(
                    run,
                    action.key,
                    functools.partial(
                        self.centra.create_order,
                        order_number=number,
                        products=[
                            OrderProduct(ln.sku, ln.quantity, Decimal(0)) for ln in payload.lines
                        ],
                        created_from_origin=CreatedFromOrigin("return", payload.origin_return_id),
                        internal_order=True,
                        comment=f"returnbridge exchange {action.reveni_return_id}",
                        extra=extra,
                    ),
                )
            except RejectedError as exc:
                if getattr(exc, "error_code", None) != ORDER_DUPLICATE_NUMBER:
                    raise
                if payload.marker is None or index == len(candidates) - 1:
                    raise  # settled by reading back (an earlier send, or every number taken)
                await self._pay(run, action.key, "request")
                taken = (await self.centra.orders_by_number([number])).get(number)
                if taken is None or payload.is_ours(taken.internal_comment):
                    raise  # ours after all (or not readable yet): the read-back settles it
                log.warning(
                    "exchange %s: order number %s belongs to another exchange (%r); trying %s",
                    action.key,
                    number,
                    taken.internal_comment,
                    candidates[index + 1],
                )
                continue
            return Found(",".join(str(n) for n in numbers), f"orders {numbers}")
        raise AssertionError("unreachable: the last candidate returns or raises")

    async def _write(self, run: _Run, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """One write, after a mutation slot; counted unless it provably never left."""
        await self._pay(run, key, "mutation")
        attempts = run.claim_attempts.get(key)
        if attempts is not None and not await asyncio.to_thread(
            self.ledger.renew_lease,
            key,
            attempts=attempts,
            lease_seconds=self.config.lease_seconds,
            now=self.clock.now(),
        ):
            raise _LostClaim(key)  # the last check before sending: the claim is still ours
        try:
            result = await call()
        except (TransientError, ValueError):
            raise  # not sent
        except BaseException:
            run.report.mutations_sent += 1
            raise
        run.report.mutations_sent += 1
        return result

    async def _acquire(self, kind: BudgetKind) -> None:
        try:
            await self.budget.acquire(kind)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise BudgetUnavailable(f"budget gate ({kind}): {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ outcomes

    async def _in_doubt(
        self,
        run: _Run,
        action: Action,
        rec: ActionRecord,
        started: datetime,
        summary: str,
        error: str,
    ) -> None:
        """The write may have happened: in_doubt, then read back at once (if still ours)."""
        if not self._move(run, rec, "in_doubt", error=error):
            return
        finished = self.clock.now()
        self._attempt(rec.key, started, summary, None, error, "in_doubt", finished)
        again = self.ledger.claim(
            rec.key, expected="in_doubt", lease_seconds=self.config.lease_seconds
        )
        if again is not None:
            await self._settle(
                run, action, again, believe_absent_after=finished + self._settle_time
            )

    async def _rejected(
        self,
        run: _Run,
        action: Action,
        rec: ActionRecord,
        started: datetime,
        summary: str,
        exc: RejectedError,
    ) -> None:
        code = getattr(exc, "error_code", None)
        detail = f"Centra refused: {exc}"
        failure = FAILURE_CODE[action.kind]
        if action.kind == "exchange_order" and code == ORDER_DUPLICATE_NUMBER:
            # The order number exists: the order was created before (a lost answer, a crash).
            self._attempt(rec.key, started, summary, None, detail, "in_flight")
            await self._settle(
                run, action, rec, believe_absent_after=None, on_absent=(failure, detail)
            )
        elif action.kind == "refund":
            # "Already refunded" (done before) and a gateway refusal (a FAILED entry) both come
            # back as a refusal; the return's refund entries tell them apart.
            self._attempt(rec.key, started, summary, None, detail, "in_flight")
            await self._settle(
                run, action, rec, believe_absent_after=None, on_absent=(failure, detail)
            )
        elif action.kind == "exchange_order" and code == ORDER_NO_STOCK:
            self._finish(run, rec, "failed", "exchange_out_of_stock", detail, started, summary)
        else:
            self._finish(run, rec, "failed", failure, detail, started, summary)

    async def _settle(
        self,
        run: _Run,
        action: Action,
        rec: ActionRecord,
        *,
        believe_absent_after: datetime | None,
        on_absent: tuple[str, str] | None = None,
    ) -> None:
        """Read `action` back while holding its claim and settle it by what Centra shows.

        `believe_absent_after`: finding nothing before then is not yet proof (the uncertain call
        may still be executing). `on_absent`: fail with this (code, detail) when nothing is
        found, instead of sending again.
        """
        started = self.clock.now()
        summary = f"{READ_BACK} {action.kind} {action.key}"
        run.report.read_backs += 1
        try:
            await self._pay(run, rec.key, "request")
            proof: ReadBack = await read_back(self.centra, action)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._inconclusive(run, action, rec, started, summary, f"{type(exc).__name__}: {exc}")
            return
        if isinstance(proof, Found):
            self._done(run, rec, proof, started, summary)
        elif isinstance(proof, Refused):
            self._finish(run, rec, "failed", proof.code, proof.summary, started, summary)
        elif on_absent is not None:
            code, detail = on_absent
            self._finish(run, rec, "failed", code, f"{detail}; {proof.summary}", started, summary)
        else:
            self._absent(run, rec, proof, believe_absent_after, started, summary)

    def _absent(
        self,
        run: _Run,
        rec: ActionRecord,
        proof: Absent,
        believe_after: datetime | None,
        started: datetime,
        summary: str,
    ) -> None:
        if believe_after is not None and self.clock.now() < believe_after:
            # Too soon to believe: Centra may still be executing the call we gave up on.
            error = f"{_TOO_SOON}: {proof.summary}"
            if self._move(run, rec, "in_doubt", error=error, not_before=believe_after):
                run.scheduled.add(rec.key)
                response = f"{proof.summary}; not yet settled"
                self._attempt(rec.key, started, summary, response, None, "in_doubt")
            return
        sends = self._sends(rec.key)
        if sends >= self.config.max_attempts:
            detail = f"gave up after {sends} attempts; read back: {proof.summary}"
            self._finish(run, rec, "failed", FAILURE_CODE[rec.kind], detail, started, summary)
            return
        if self._move(run, rec, "pending", error=f"read back: {proof.summary}"):
            run.report.retried += 1
            response = f"{proof.summary}; safe to send"
            self._attempt(rec.key, started, summary, response, None, "pending")

    def _inconclusive(
        self,
        run: _Run,
        action: Action,
        rec: ActionRecord,
        started: datetime,
        summary: str,
        error: str,
    ) -> None:
        failures = self._inconclusive_in_a_row(rec.key) + 1
        limit = self.config.read_back_attempts
        delay = self._backoff(failures)
        not_before = self.clock.now() + timedelta(seconds=delay)
        message = f"read-back inconclusive ({failures}/{limit}): {error}"
        if not self._move(run, rec, "in_doubt", error=message, not_before=not_before):
            return
        run.scheduled.add(rec.key)
        self._attempt(rec.key, started, summary, None, message, "in_doubt")
        if failures >= limit:
            detail = (
                f"outcome unknown after {failures} read-backs; still read back on later runs; "
                f"last error: {error}"
            )
            self._raise(run, rec, "action_in_doubt", detail)
            run.parked.add(rec.key)

    def _sends(self, key: str) -> int:
        """Recorded attempts to send `key` (read-backs are not sends; the ledger's `attempts`
        counts every claim, read-backs included)."""
        return sum(
            1 for a in self.ledger.attempts(key) if not a.request_summary.startswith(READ_BACK)
        )

    def _inconclusive_in_a_row(self, key: str) -> int:
        count = 0
        for attempt in reversed(self.ledger.attempts(key)):
            is_read_back = attempt.request_summary.startswith(READ_BACK)
            if not (is_read_back and attempt.error is not None and attempt.outcome == "in_doubt"):
                break
            count += 1
        return count

    def _retry(
        self,
        run: _Run,
        rec: ActionRecord,
        started: datetime,
        summary: str,
        error: str,
        retry_after: float | None,
    ) -> None:
        """Nothing changed in Centra: pending again after a backoff, or failed when exhausted."""
        sends = self._sends(rec.key) + 1  # this one is not recorded yet
        if sends >= self.config.max_attempts:
            detail = f"gave up after {sends} attempts: {error}"
            self._finish(run, rec, "failed", FAILURE_CODE[rec.kind], detail, started, summary)
            return
        delay = retry_after if retry_after is not None else self._backoff(sends)
        not_before = self.clock.now() + timedelta(seconds=max(0.0, delay))
        if self._move(run, rec, "pending", error=error, not_before=not_before):
            run.scheduled.add(rec.key)
            run.report.retried += 1
            self._attempt(rec.key, started, summary, None, error, "pending")

    def _done(
        self, run: _Run, rec: ActionRecord, found: Found, started: datetime, summary: str
    ) -> None:
        if not self._move(run, rec, "done", centra_ref=found.ref):
            return
        self._attempt(rec.key, started, summary, found.summary, None, "done")
        self._heal(rec, f"done: Centra {found.ref}")
        for problem in found.problems:
            self._raise(run, rec, problem.code, problem.detail)

    def _finish(
        self,
        run: _Run,
        rec: ActionRecord,
        state: str,
        code: str,
        detail: str,
        started: datetime,
        summary: str,
    ) -> None:
        """`failed` or `blocked`, with the exception a person acts on."""
        if not self._move(run, rec, state, error=f"{code}: {detail}"):
            return
        self._attempt(rec.key, started, summary, None, detail, state)
        self._raise(run, rec, code, detail)

    # ------------------------------------------------------------------ ledger helpers

    def _move(
        self,
        run: _Run,
        rec: ActionRecord,
        state: str,
        *,
        centra_ref: str | None = None,
        error: str | None = None,
        not_before: datetime | None = None,
    ) -> bool:
        """in_flight -> `state`; False when the claim was lost (a lease taken over)."""
        try:
            self.ledger.transition(
                rec.key,
                state,
                expected="in_flight",
                centra_ref=centra_ref,
                error=error,
                not_before=not_before,
            )
        except ActionStateError as exc:
            log.warning("action %s: lost its claim before settling as %s (%s)", rec.key, state, exc)
            return False
        run.report.outcomes[rec.key] = state
        run.report.return_ids[rec.key] = rec.reveni_return_id
        return True

    def _attempt(
        self,
        key: str,
        started: datetime,
        summary: str,
        response: str | None,
        error: str | None,
        outcome: str,
        finished: datetime | None = None,
    ) -> None:
        self.ledger.record_attempt(
            key,
            started_at=started,
            finished_at=finished or self.clock.now(),
            request_summary=summary,
            response=response,
            error=error,
            outcome=outcome,
        )

    def _raise(self, run: _Run, rec: ActionRecord, code: str, detail: str) -> None:
        exc = ReturnException(
            code=code,
            reveni_return_id=rec.reveni_return_id,
            order_number=rec.order_number,
            amount=_money(rec.payload.get("amount")) if rec.kind == "refund" else None,
            currency=rec.payload.get("currency") if rec.kind == "refund" else None,
            detail=f"{rec.key}: {detail}",
        )
        self.ledger.raise_exception(exc, action_key=rec.key, now=self.clock.now())
        run.report.exceptions.append(exc)

    def _heal(self, rec: ActionRecord, note: str) -> None:
        """Resolve the open exceptions this action raised about its own failure."""
        for exc in self.ledger.exceptions(statuses=_LIVE, reveni_return_id=rec.reveni_return_id):
            if exc.action_key == rec.key and exc.code in _HEALED_ON_DONE:
                self.ledger.resolve_exception(exc.id, note=note, now=self.clock.now())

    @property
    def _settle_time(self) -> timedelta:
        return timedelta(seconds=self.config.in_doubt_settle_seconds)

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random, capped."""
        ceiling = min(
            self.config.backoff_max_seconds,
            self.config.backoff_seconds * 2 ** max(0, failures - 1),
        )
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


# ---------------------------------------------------------------------- summaries


def request_summary(action: Action) -> str:
    """What an action sends, in one line: ids, SKUs, quantities, money; no personal data."""
    p = action.payload
    if isinstance(p, CreateReturn):
        lines = ", ".join(f"line {ln.shipment_line_id} {ln.sku} x{ln.quantity}" for ln in p.lines)
        return (
            f"createReturn shipment {p.shipment_id} externalId {p.external_id} "
            f"(stock untouched): {lines}"
        )
    if isinstance(p, Restock):
        lines = ", ".join(f"{ln.sku} +{ln.quantity}" for ln in p.lines)
        return f"changeStock {p.description!r} into warehouse {p.warehouse_id}: {lines}"
    if isinstance(p, Refund):
        how = (
            f"refundPayment (PSP) {p.amount} {p.currency}"
            if p.via_psp
            else f"manualRefund {p.amount} {p.currency} reference {p.reference}"
        )
        return f"PUT /returns/{p.centra_return_id} completed, {how}"
    assert isinstance(p, ExchangeOrder)
    lines = ", ".join(f"{ln.sku} x{ln.quantity}" for ln in p.lines)
    return (
        f"POST /order {p.order_number} (internal, unit price 0) for return {p.origin_return_id} "
        f"of order {p.origin_order_number}: {lines}"
    )


def _due(record: ActionRecord, now: datetime) -> bool:
    return record.not_before is None or record.not_before <= now


def _warned(warnings: tuple[object, ...]) -> str:
    return f"; warnings: {'; '.join(str(w) for w in warnings)}" if warnings else ""


def _refund_answer(payload: Refund, body: Mapping[str, Any]) -> Found | Refused:
    """Read `PUT /returns/{id}`'s answer: the refund entry's status and amount, if given."""
    refund = body.get("refund")
    completed = body.get("returnCompleted")
    ref = str(payload.centra_return_id)
    if not isinstance(refund, Mapping):
        return Found(ref, f"returnCompleted={completed}")
    status = refund.get("status")
    summary = (
        f"returnCompleted={completed}; refund {status} {refund.get('amount')} "
        f"{refund.get('currency')}"
    )
    if status == "FAILED":
        return Refused("refund_failed_at_gateway", summary)
    amount = _money(refund.get("amount"))
    problems: tuple[Problem, ...] = ()
    if amount is not None:
        problems = amount_problems(amount, payload)
    return Found(ref, summary, problems)


def _money(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _address_body(address: Address) -> dict[str, str]:
    """The Order API `address` of an exchange order, copied from the origin order ([C] email and
    country required; the other field names are [INF], as in the GraphQL Address)."""
    fields = {
        "firstName": address.first_name,
        "lastName": address.last_name,
        "address1": address.address1,
        "address2": address.address2,
        "city": address.city,
        "zipCode": address.zip_code,
        "state": address.state_or_province,
        "country": address.country,
        "email": address.email,
        "phoneNumber": address.phone_number,
    }
    return {k: v for k, v in fields.items() if v}
