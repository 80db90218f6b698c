"""The near-real-time sync (docs/architecture.md#the-sync-pipeline): one run, step by step,
with no Prefect in it.

    collect   Reveni returns changed since the cursor, plus those the webhook inbox names, plus
              those the ledger says are not finished (carried over)
    read      batch-read the Centra orders, their returns, and stock of exchange SKUs
    plan      the pure planner: missing effects and exceptions per return
    record    the ledger: new actions as pending, effects Centra already shows as done,
              exceptions raised or healed
    execute   one executor run alongside the planning sends what is due, exactly once per
              ledger key, for every return planned so far
    (repeat read/plan/record for returns whose waiting effects the executor unlocked: a
     created Centra return unlocks its restock, refund and exchange)
    commit    advance the cursor and mark the inbox processed, in one ledger transaction,
              only after everything above is in the ledger

The planner is level-triggered: a lost, doubled or reordered webhook changes nothing, because the
next run recomputes the same plan from what Reveni, Centra and the ledger say. A crash anywhere
before `commit` leaves the cursor where it was, so the next run reads the same returns again.

`flows/sync_returns.py` wraps the steps as Prefect tasks; `returnbridge sync` / `replay` and the
demo call `ReturnSync.run` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from returnbridge.clock import Now, utc_now
from returnbridge.connectors.centra import CentraClient
from returnbridge.connectors.centra.models import Order
from returnbridge.connectors.reveni import ReveniClient
from returnbridge.connectors.reveni.errors import ReveniNotFound
from returnbridge.connectors.reveni.models import Return as ReveniReturn
from returnbridge.connectors.reveni.pagination import RejectedRow
from returnbridge.connectors.reveni.statuses import ACCEPTED
from returnbridge.connectors.reveni.webhooks import WebhookError, parse_envelope
from returnbridge.core.actions import Action, ActionStateError
from returnbridge.core.codes import PLANNER_CODES
from returnbridge.core.planner import PlannerConfig, ReturnPlan, plan_returns
from returnbridge.core.validation import OrderHistory
from returnbridge.ledger import Ledger
from returnbridge.ledger.records import UNKNOWN_RESOURCE
from returnbridge.sync.executor import (
    ExecutionReport,
    Executor,
    ExecutorConfig,
    Feed,
    request_summary,
)
from returnbridge.sync.outcomes import PSP_PENDING
from returnbridge.sync.settings import SyncSettings

__all__ = ["CredentialsRefused", "ReturnSync", "SyncConfig", "SyncReport", "SyncSettings"]

log = logging.getLogger(__name__)

# Reveni reads of webhook-named returns in flight at once (each is one GET).
INBOX_READS_AT_ONCE = 8

# The error of a refund action blocked because a refund made by hand looks like it.
HELD_REFUND = "held: a refund made by hand in Centra looks like this one"

CURSOR = "reveni_returns"

# The first round reads and plans a batch of orders first (`orders_per_query`), then this many
# times more each time: writes start after the first batch, and few reads are added.
CHUNK_GROWTH = 3


@dataclass(frozen=True)
class SyncConfig:
    """How the sync runs (the planner's and executor's own settings inside)."""

    planner: PlannerConfig
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    cursor_name: str = CURSOR
    # Where the very first run starts reading Reveni (no cursor yet).
    initial_look_back: timedelta = timedelta(days=60)
    # Rounds of read/plan/execute per run (a return needs 2: create, then what it unlocks).
    max_rounds: int = 4


@dataclass
class Collected:
    """What one run works on, and what it may commit afterwards."""

    returns: dict[str, ReveniReturn]
    high_water: datetime | None
    complete: bool
    inbox_ids: list[int]
    rejected: list[RejectedRow]
    carried_over: int = 0
    from_inbox: int = 0
    inbox_unknown: int = 0  # events naming a return Reveni does not have, settled at once


class CredentialsRefused(RuntimeError):
    """Centra refused returnbridge's credentials during a run: a configuration fault of the
    run. The actions stay pending; the message names the setting to fix."""


@dataclass
class SyncReport:
    """What one run did (the flow's artifact, the CLI's output, the demo's summary)."""

    returns_seen: int = 0
    carried_over: int = 0
    from_inbox: int = 0  # returns only the webhook inbox named (not in Reveni's changed list)
    inbox_events: int = 0
    inbox_unknown: int = 0  # webhooks naming a return Reveni does not have (fake or mistaken)
    rounds: int = 0
    actions_planned: int = 0
    adopted: int = 0
    executed: list[ExecutionReport] = field(default_factory=list)
    exceptions_new: int = 0
    exceptions_healed: int = 0
    unfinished: list[str] = field(default_factory=list)
    rejected_rows: list[str] = field(default_factory=list)
    cursor_before: str | None = None
    cursor_after: str | None = None
    credentials_refused: str | None = None  # the run stopped: Centra refused our credentials
    planned_calls: list[str] = field(default_factory=list)  # dry runs: what would be sent
    dry_run: bool = False

    @property
    def actions_done(self) -> int:
        return sum(r.done for r in self.executed)

    @property
    def actions_failed(self) -> int:
        return sum(r.failed for r in self.executed)

    @property
    def actions_in_doubt(self) -> int:
        return sum(r.in_doubt for r in self.executed)

    @property
    def actions_blocked(self) -> int:
        return sum(r.blocked for r in self.executed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "returns_seen": self.returns_seen,
            "carried_over": self.carried_over,
            "from_inbox": self.from_inbox,
            "inbox_events": self.inbox_events,
            "inbox_unknown": self.inbox_unknown,
            "rounds": self.rounds,
            "actions_planned": self.actions_planned,
            "adopted": self.adopted,
            "actions_done": self.actions_done,
            "actions_failed": self.actions_failed,
            "actions_in_doubt": self.actions_in_doubt,
            "actions_blocked": self.actions_blocked,
            "exceptions_new": self.exceptions_new,
            "exceptions_healed": self.exceptions_healed,
            "unfinished": len(self.unfinished),
            "rejected_rows": self.rejected_rows,
            "cursor_before": self.cursor_before,
            "cursor_after": self.cursor_after,
            "dry_run": self.dry_run,
            "planned_calls": self.planned_calls,
        }


def describe_call(action: Action) -> str:
    """One line saying which Centra call an action makes (dry runs); no customer data."""
    return f"{action.key}: {request_summary(action)}"


class ReturnSync:
    """One integration (one Reveni store, one Centra environment, one ledger)."""

    def __init__(
        self,
        *,
        reveni: ReveniClient,
        centra: CentraClient,
        ledger: Ledger,
        config: SyncConfig,
        executor: Executor | None = None,
        clock: Now = utc_now,
    ) -> None:
        self.reveni = reveni
        self.centra = centra
        self.ledger = ledger
        self.config = config
        self.clock = clock
        self.executor = executor or Executor(centra, ledger, config.executor, clock=clock)

    # -- collect ------------------------------------------------------------------------------

    def cursor(self) -> datetime:
        stored = self.ledger.cursor(self.config.cursor_name)
        if stored is None:
            return self.clock() - self.config.initial_look_back
        return datetime.fromisoformat(stored)

    async def collect(
        self,
        *,
        since: datetime | None = None,
        return_ids: Collection[str] | None = None,
        use_inbox: bool = True,
        carry_over: bool = True,
    ) -> Collected:
        """The returns this run works on. With `return_ids`, exactly those (a replay)."""
        if return_ids is not None:
            found = {rid: ret for rid in return_ids if (ret := await self._get(rid)) is not None}
            return Collected(found, None, True, [], [])
        changed = await self.reveni.changed_since(since or self.cursor())
        returns = {r.id: r for r in changed.returns}
        collected = Collected(
            returns, changed.high_water, changed.complete, [], list(changed.rejected)
        )
        if use_inbox:
            await self._add_inbox(collected)
        if carry_over:
            for rid in sorted(self.unfinished_ids() - returns.keys()):
                ret = await self._get(rid)
                if ret is not None:
                    returns[rid] = ret
                    collected.carried_over += 1
        return collected

    async def _add_inbox(self, collected: Collected) -> None:
        """The returns the webhook inbox names. Each named return is read once, a few at a
        time (`INBOX_READS_AT_ONCE`); an event whose return Reveni does not have (a fake or
        mistaken webhook: anyone who reaches the receiver can post one while Reveni signing is
        off) is settled at once as "unknown_resource", in its own transaction, so junk costs
        one read and is never held until the run commits. No retry of the 404 here: a return
        whose read lags its webhook appears in the next run's changed-since poll."""
        orders: set[int] = set()
        named: dict[str, list[int]] = {}  # return id -> the inbox events naming it
        envelopes: dict[str, Any] = {}
        for event in self.ledger.inbox_pending():
            collected.inbox_ids.append(event.id)
            if event.source != "reveni":
                # Centra events wake the sync (the carried-over work re-reads Centra); one about
                # an order may carry a payment provider's answer to a refund waiting for it.
                if (event.event_type or "").startswith("order.") and event.resource_id:
                    with contextlib.suppress(ValueError):
                        orders.add(int(event.resource_id))
                continue
            try:
                envelope = parse_envelope(event.body, self.reveni.inferred)
            except WebhookError as exc:  # the receiver checked it; a stored one is still data
                log.warning("inbox event %s is not a Reveni envelope: %s", event.event_id, exc)
                continue
            rid = envelope.data.resource_id
            if rid in collected.returns:
                continue
            named.setdefault(rid, []).append(event.id)
            envelopes.setdefault(rid, envelope)
        gate = asyncio.Semaphore(INBOX_READS_AT_ONCE)

        async def read(rid: str) -> ReveniReturn | None:
            async with gate:
                return await self.reveni.fetch_for_event(envelopes[rid], not_found_retries=0)

        found = await asyncio.gather(*(read(rid) for rid in named))
        unknown: list[int] = []
        for rid, fetched in zip(named, found, strict=True):
            if fetched is None:
                unknown.extend(named[rid])
            else:
                collected.returns[rid] = fetched
                collected.from_inbox += 1
        if unknown:
            settled = self.ledger.settle_inbox(unknown, outcome=UNKNOWN_RESOURCE, now=self.clock())
            collected.inbox_unknown += settled
            gone = set(unknown)
            collected.inbox_ids = [i for i in collected.inbox_ids if i not in gone]
            log.warning(
                "inbox: %d webhook(s) named %d return(s) Reveni does not have; settled as %s",
                len(unknown),
                sum(1 for f in found if f is None),
                UNKNOWN_RESOURCE,
            )
        hastened = self.ledger.hasten(
            orders, kind="refund", error_prefix=PSP_PENDING, now=self.clock()
        )
        if hastened:
            log.info("Centra order webhooks: reading %d waiting refund(s) now", len(hastened))

    async def _get(self, rid: str) -> ReveniReturn | None:
        try:
            return await self.reveni.get_return(rid)
        except ReveniNotFound:
            log.warning("Reveni has no return %s (any more)", rid)
            return None

    def unfinished_ids(self) -> set[str]:
        """Returns a previous run left unfinished: unsettled or retryable actions, exceptions
        that heal by themselves (stock coming back, a read-back) or that a person is retrying,
        plans still waiting."""
        ids = {u.reveni_return_id for u in self.ledger.unfinished_returns()}
        for record in self.ledger.actions(states=["pending", "in_flight", "in_doubt"]):
            ids.add(record.reveni_return_id)
        for exc in self.ledger.exceptions(statuses=["open", "retrying"]):
            if not exc.reveni_return_id:
                continue
            # a person's retry of what planning finds asks for a re-check (a released refund,
            # say); the reconciliation re-checks its own gaps, the executor its actions
            retried = exc.status == "retrying" and exc.code in PLANNER_CODES
            if retried or exc.code in {"exchange_out_of_stock", "action_in_doubt"}:
                ids.add(exc.reveni_return_id)
        return ids

    # -- read, plan, record ------------------------------------------------------------------

    async def read_centra(
        self, returns: Iterable[ReveniReturn], *, orders: dict[int, Order] | None = None
    ) -> tuple[dict[int, OrderHistory], dict[str, int]]:
        """Batch-read the orders the returns name, their Centra returns, and the available
        stock of every replacement SKU of an inspected exchange. Orders already in `orders` (a
        cache for this run: returnbridge's effects do not change them) are not read again."""
        returns = list(returns)
        numbers = {n for r in returns if (n := r.order.number) is not None}
        cache = {} if orders is None else orders
        missing = numbers - cache.keys()
        if missing:
            cache.update(await self.centra.orders_by_number(missing))
        found = {n: cache[n] for n in numbers if n in cache}
        existing = await self.centra.returns_for_orders(found) if found else {}
        histories = {n: OrderHistory(o, existing.get(n, [])) for n, o in found.items()}
        skus = {
            item.exchange.sku
            for r in returns
            if r.status in ACCEPTED or r.status == "completed"
            for item in r.return_items
            if item.exchange is not None and item.accepted_units
        }
        sizes = await self.centra.product_sizes_by_sku(skus) if skus else {}
        stock = {sku: size.stock_totals.available_quantity for sku, size in sizes.items()}
        for sku in skus - stock.keys():
            stock[sku] = 0  # Centra does not sell it: nothing to send
        return histories, stock

    def plan(
        self,
        returns: Mapping[str, ReveniReturn],
        histories: Mapping[int, OrderHistory],
        stock: Mapping[str, int],
    ) -> dict[str, ReturnPlan]:
        known = {r.key: r for r in self.ledger.actions(reveni_return_ids=list(returns))}
        return plan_returns(
            list(returns.values()),
            histories,
            known,
            stock=stock,
            config=self.config.planner,
            now=self.clock(),
            released=self.released(),
        )

    def released(self) -> set[str]:
        """Returns whose held PSP refund Finance chose to send all the same: their
        `duplicate_refund` is being retried (`returnbridge exceptions retry`)."""
        retrying = self.ledger.exceptions(statuses=["retrying"], code="duplicate_refund")
        return {e.reveni_return_id for e in retrying if e.reveni_return_id is not None}

    def record(self, plans: Mapping[str, ReturnPlan], report: SyncReport) -> list[str]:
        """Write the plans to the ledger; the keys planned (new or not) are returned."""
        actions = [a for plan in plans.values() for a in plan.actions]
        report.actions_planned += len(self.ledger.plan(actions))
        for plan in plans.values():
            for key, ref in plan.adopted.items():
                if self.ledger.adopt(
                    key,
                    reveni_return_id=plan.reveni_return_id,
                    order_number=plan.order_number,
                    centra_ref=ref,
                ):
                    report.adopted += 1
        self._block_held(plans)
        changes = self.ledger.observe_exceptions(
            [e for plan in plans.values() for e in plan.exceptions],
            scope_return_ids=list(plans),
            scope_codes=PLANNER_CODES,
            action_keys={
                e.key: plan.held[0]
                for plan in plans.values()
                if plan.held
                for e in plan.exceptions
                if e.code == "duplicate_refund"
            },
            now=self.clock(),
        )
        report.exceptions_new += len(changes.new)
        report.exceptions_healed += len(changes.healed)
        # A person's retry asked for this re-check; what it still finds is open again. A
        # released refund's `duplicate_refund` stays retrying: that is how the release lasts.
        self.ledger.retried(
            (e.id for e in changes.seen if e.status == "retrying" and e.code != "duplicate_refund"),
            now=self.clock(),
        )
        return [a.key for a in actions]

    def _block_held(self, plans: Mapping[str, ReturnPlan]) -> None:
        """Block the held actions an earlier plan left pending, so the executor never sends
        them; put back every one of a return Finance released (a retry of its exception
        re-queues one key, a refund over several shipments has one per part)."""
        held = [key for plan in plans.values() for key in plan.held]
        for record in self.ledger.actions(keys=held, states=["pending"]) if held else []:
            try:
                self.ledger.transition(record.key, "blocked", expected="pending", error=HELD_REFUND)
            except ActionStateError:
                continue  # a worker claimed it meanwhile: its send is the executor's business
        released = sorted(self.released() & plans.keys())
        if released:
            blocked = self.ledger.actions(
                reveni_return_ids=released, kinds=["refund"], states=["blocked"]
            )
            self.ledger.retry(r.key for r in blocked if r.last_error == HELD_REFUND)

    # -- the run ------------------------------------------------------------------------------

    async def run(
        self,
        *,
        since: datetime | None = None,
        return_ids: Collection[str] | None = None,
        dry_run: bool = False,
    ) -> SyncReport:
        """One sync run. `since`: read from there instead of the cursor and leave the cursor
        alone (a replay); `return_ids`: exactly these returns; `dry_run`: plan and describe the
        Centra calls, write nothing anywhere."""
        replay = since is not None or return_ids is not None
        report = SyncReport(dry_run=dry_run)
        collected = await self.collect(
            since=since,
            return_ids=return_ids,
            use_inbox=not replay and not dry_run,
            carry_over=not replay,
        )
        self.describe_collected(collected, report)
        if dry_run:
            await self.dry_run(collected, report)
            return report
        plans = await self.process(collected, report)
        if not replay:
            self.commit(collected, plans, report)
        if report.credentials_refused:
            # What was planned is in the ledger (the actions pending), so committing first
            # loses nothing; the run itself failed: say so, once, and stop.
            raise CredentialsRefused(report.credentials_refused)
        return report

    def describe_collected(self, collected: Collected, report: SyncReport) -> None:
        report.cursor_before = self.ledger.cursor(self.config.cursor_name)
        report.cursor_after = report.cursor_before
        report.returns_seen = len(collected.returns)
        report.carried_over = collected.carried_over
        report.from_inbox = collected.from_inbox
        report.inbox_events = len(collected.inbox_ids) + collected.inbox_unknown
        report.inbox_unknown = collected.inbox_unknown
        report.rejected_rows = [
            f"{row.return_id or row.path}: {row.error}" for row in collected.rejected
        ]
        log.info(
            "sync%s: read %d returns (%d from Reveni, %d from the inbox, %d carried over), "
            "%d rejected; %d inbox events%s",
            " (dry run)" if report.dry_run else "",
            report.returns_seen,
            report.returns_seen - report.from_inbox - report.carried_over,
            report.from_inbox,
            report.carried_over,
            len(report.rejected_rows),
            report.inbox_events,
            "" if collected.complete else "; Reveni's changes read in part (the next run reads on)",
        )

    async def dry_run(self, collected: Collected, report: SyncReport) -> None:
        """What a run would send to Centra now, written nowhere."""
        histories, stock = await self.read_centra(collected.returns.values())
        plans = self.plan(collected.returns, histories, stock)
        report.planned_calls = [describe_call(a) for plan in plans.values() for a in plan.actions]
        report.unfinished = sorted(rid for rid, plan in plans.items() if unfinished(plan))
        log.info(
            "sync (dry run): %d Centra calls planned for %d returns, nothing sent",
            len(report.planned_calls),
            len(plans),
        )

    async def process(self, collected: Collected, report: SyncReport) -> dict[str, ReturnPlan]:
        """Rounds of read, plan and record, alongside one executor run that sends what is due
        meanwhile: a created Centra return unlocks the restock, refund and exchange that wait
        for it, planned again while the executor goes on with the rest.

        The first round reads and plans the returns a few orders at a time (a first batch of
        orders, then `CHUNK_GROWTH` times more each time), so writes start once the first batch
        is planned. Returns waiting for something one of their actions did are planned again
        (their next round), together, as soon as the executor has nothing due left to start
        (what it has in hand may be waiting for the budget: an hourly window spent): what those
        stragglers do not block is planned and sent meanwhile, and the reads stay batched."""
        plans: dict[str, ReturnPlan] = {}
        rounds: dict[str, int] = {}  # return id -> rounds it was planned in
        orders: dict[int, Order] = {}
        feed = Feed(orders=orders, held=set(collected.returns))
        execution = asyncio.create_task(self.executor.run(feed=feed))
        try:
            await self._plan_alongside(
                collected.returns, plans, rounds, orders, feed, execution, report
            )
        except BaseException:
            feed.abort()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await execution
            raise
        feed.close()
        result = await execution
        report.executed.append(result)
        report.rounds = max(rounds.values(), default=0)
        if result.credentials_refused:
            report.credentials_refused = result.credentials_refused
        settled: dict[str, str] = dict(result.outcomes)  # action key -> state after execution
        report.unfinished = sorted(rid for rid, plan in plans.items() if unfinished(plan, settled))
        log.info(
            "sync: %d actions planned (%d found done in Centra), %d done, %d failed, "
            "%d in doubt, %d blocked; %d exceptions opened, %d healed, %d raised by Centra "
            "calls; %d rounds, %d returns unfinished",
            report.actions_planned,
            report.adopted,
            report.actions_done,
            report.actions_failed,
            report.actions_in_doubt,
            report.actions_blocked,
            report.exceptions_new,
            report.exceptions_healed,
            sum(len(r.exceptions) for r in report.executed),
            report.rounds,
            len(report.unfinished),
        )
        return plans

    async def _plan_alongside(
        self,
        returns: Mapping[str, ReveniReturn],
        plans: dict[str, ReturnPlan],
        rounds: dict[str, int],
        orders: dict[int, Order],
        feed: Feed,
        execution: asyncio.Task[ExecutionReport],
        report: SyncReport,
    ) -> None:
        """The planning side of `process`: record plans while `execution` runs."""

        async def plan_round(todo: dict[str, ReveniReturn]) -> None:
            histories, stock = await self.read_centra(todo.values(), orders=orders)
            round_plans = self.plan(todo, histories, stock)
            plans.update(round_plans)
            self.record(round_plans, report)
            for rid in round_plans:
                rounds[rid] = rounds.get(rid, 0) + 1
            feed.held -= todo.keys()
            feed.wake()

        def stopping() -> bool:
            return execution.done() or (
                feed.report is not None and feed.report.credentials_refused is not None
            )

        for chunk in self._first_round(returns):
            if stopping():
                return
            await plan_round(chunk)
        while not stopping():
            feed.progress.clear()
            ready = {
                rid
                for rid in feed.done_returns
                if rid in plans
                and plans[rid].waiting
                and rounds.get(rid, 0) < self.config.max_rounds
            }
            feed.done_returns &= ready  # the others have nothing waiting: forget them
            if ready and feed.hungry:
                feed.take_done()
                await plan_round({rid: returns[rid] for rid in sorted(ready)})
                continue
            if feed.idle and not ready:
                return
            waiter = asyncio.ensure_future(feed.progress.wait())
            try:
                await asyncio.wait({waiter, execution}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    def _first_round(self, returns: Mapping[str, ReveniReturn]) -> list[dict[str, ReveniReturn]]:
        """The returns of the first round in chunks of whole orders (the planner shares an
        order's quantities between its returns): a batch of orders first, then `CHUNK_GROWTH`
        times as many each time."""
        by_order: dict[int | None, dict[str, ReveniReturn]] = {}
        for rid, ret in returns.items():
            by_order.setdefault(ret.order.number, {})[rid] = ret
        size = max(1, int(getattr(self.centra, "orders_per_query", 50)))
        chunks: list[dict[str, ReveniReturn]] = []
        current: dict[str, ReveniReturn] = {}
        count = 0
        for group in by_order.values():
            current.update(group)
            count += 1
            if count >= size:
                chunks.append(current)
                current, count = {}, 0
                size *= CHUNK_GROWTH
        if current:
            chunks.append(current)
        return chunks

    def commit(
        self, collected: Collected, plans: Mapping[str, ReturnPlan], report: SyncReport
    ) -> None:
        """Advance the cursor and mark the inbox processed: only after the ledger holds it all."""
        self._remember_unfinished(plans, report)
        self.ledger.commit_sync(
            cursor_name=self.config.cursor_name,
            cursor_value=(
                None if collected.high_water is None else collected.high_water.isoformat()
            ),
            inbox_ids=collected.inbox_ids,
        )
        report.cursor_after = self.ledger.cursor(self.config.cursor_name)
        moved = (
            f"moved from {report.cursor_before or 'none'} to {report.cursor_after}"
            if report.cursor_after != report.cursor_before
            else f"stays at {report.cursor_after or 'none'}"
        )
        log.info("sync: %d inbox events settled; cursor %s", len(collected.inbox_ids), moved)

    def _remember_unfinished(self, plans: Mapping[str, ReturnPlan], report: SyncReport) -> None:
        """Of the returns this run planned, keep the unfinished ones for the next run and
        forget the others (the ledger's `unfinished_returns`,
        docs/architecture.md#the-ledger)."""
        self.ledger.record_unfinished(planned=plans.keys(), unfinished=report.unfinished)


def unfinished(plan: ReturnPlan, settled: Mapping[str, str] | None = None) -> bool:
    """Work is left that a later run can do by itself: actions not yet done, or effects waiting
    for a prerequisite. (What waits for a person is an open exception, not unfinished work.)
    `settled`: the states actions were left in by this run's execution."""
    states = settled or {}
    # failed / blocked wait for a person (an open exception); `exceptions retry` re-queues
    # the action, and the unsettled-actions scan of the next run brings the return back.
    nothing_to_do_now = {"done", "failed", "blocked"}
    return bool(plan.waiting) or any(
        states.get(a.key) not in nothing_to_do_now for a in plan.actions
    )


def key_return(key: str) -> str:
    """The Reveni return id inside a ledger key (`kind:{rid}[:...]`)."""
    return key.split(":", 2)[1]
