"""The planner: what Centra still owes each Reveni return
(docs/architecture.md#the-life-of-a-return).

A pure function with no I/O. Given the Reveni returns, the Centra history of their orders and the
ledger rows of their keys, it computes the desired end state of every return and answers, per
return: the actions that can run now, the exceptions that stop it, the effects Centra already
shows that the ledger does not know as done (`adopted`), and what waits for a prerequisite.

It is level-triggered: it never asks *what changed*, only *what is missing*, so planning the same
snapshot twice, an older snapshot, or the returns in another order yields no second effect. The
ledger makes emitting idempotent (it ignores keys it knows); the planner additionally never emits
a key the executor already owns (in flight, in doubt, failed, blocked) or that is done, and it
adopts, never re-sends, an effect Centra already shows. Nothing here deletes or reverses an
effect.

Per return, in this order (each step only once the previous one is done):

1. validation (`validation.validate_returns`): an invalid return gets its exceptions, nothing else;
2. not inspected yet: nothing; an instant return close to Reveni's 30-day window is flagged;
3. rejected, cancelled, expired: nothing (see `plan_returns` about a stray Centra return);
4. accepted: the Centra return(s) (`shipment_mapping`), then the restock, the refund and the
   exchange orders, each once the return parts they need are done.

A mixed return (some items refunded, some exchanged) keeps its refunded and exchanged items in
separate Centra returns (`shipment_mapping.is_mixed`): Reveni's refund is posted on, and compared
with Centra's computed credit of, the refund part(s) only; the exchange part(s) are created and
restocked like any part, and are where the exchange orders come from, but are never credited.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Final

from returnbridge.connectors.centra.models import Order, OrderLine, PaymentEntry
from returnbridge.connectors.centra.models import Return as CentraReturn
from returnbridge.connectors.centra.refunds import (
    DEFAULT_REFUND_TYPES,
    RefundAttempt,
    RefundState,
    RefundTypes,
    refund_attempts,
)
from returnbridge.connectors.reveni.models import Refund as ReveniRefund
from returnbridge.connectors.reveni.models import Return as ReveniReturn
from returnbridge.connectors.reveni.models import currency_exponent
from returnbridge.connectors.reveni.statuses import ACCEPTED, AWAITING_INSPECTION, WITHDRAWN
from returnbridge.connectors.reveni.wire import INSTANT_VALIDATION_DAYS
from returnbridge.core import validation
from returnbridge.core.actions import (
    RESTOCK_DESCRIPTION,
    UNSETTLED,
    Action,
    CreateReturn,
    ExchangeLine,
    ExchangeOrder,
    Refund,
    Restock,
    RestockLine,
    exchange_key,
    exchange_marker,
    exchange_order_number,
    exchange_order_numbers,
    refund_key,
    restock_key,
    return_comment,
)
from returnbridge.core.codes import ReturnException
from returnbridge.core.shipment_mapping import (
    ReturnPart,
    ShipmentMapping,
    map_to_shipment_lines,
    own_centra_returns,
)
from returnbridge.core.validation import OrderHistory
from returnbridge.ledger.records import ActionRecord

# Inspection done with units accepted: Centra effects are due (`completed` follows acceptance).
ACCEPTING = ACCEPTED | {"completed"}
# Reveni has decided; nothing more will be asked of Centra than what the decision implies.
DECIDED = ACCEPTING | {"rejected"} | WITHDRAWN
# Ledger states the executor owns: the planner neither emits nor re-plans them.
EXECUTOR_OWNED = frozenset({"in_flight", "in_doubt", "failed", "blocked"})


@dataclass(frozen=True)
class PlannerConfig:
    """What the planner needs to know about this brand's setup and tolerances."""

    returns_warehouse_id: int
    refund_tolerance: Decimal = Decimal("0.00")
    instant_deadline_warn_days: int = 3
    instant_window_days: int = INSTANT_VALIDATION_DAYS
    exchange_order_base: int = 900_000_000
    not_returnable: frozenset[str] = validation.NOT_RETURNABLE
    refund_types: RefundTypes = DEFAULT_REFUND_TYPES
    # [INF] `paymentMethod` of the non-PSP refund entry the Order API writes for `manualRefund`
    # (what the Centra simulator writes); an entry whose external reference is the Reveni refund
    # id is also taken as non-PSP, since that is the reference returnbridge writes.
    manual_refund_payment_method: str = "manual"


@dataclass(frozen=True)
class ReturnPlan:
    """What one Reveni return still needs from Centra, and why not more."""

    reveni_return_id: str
    order_number: int | None
    actions: tuple[Action, ...]  # only actions whose prerequisites are done now
    exceptions: tuple[ReturnException, ...]
    adopted: Mapping[str, str]  # ledger key -> Centra ref of an effect Centra already shows
    waiting: tuple[str, ...]  # keys desired but not plannable yet (prerequisite not done)
    complete: bool  # every desired effect done or adopted; Reveni has decided; no exception
    # Keys that must not be sent although they may be pending in the ledger from an earlier
    # plan (a PSP refund someone has since made by hand): the sync blocks them.
    held: tuple[str, ...] = ()


def plan_returns(
    returns: Sequence[ReveniReturn],
    orders: Mapping[int, OrderHistory],
    ledger: Mapping[str, ActionRecord],
    *,
    stock: Mapping[str, int],
    config: PlannerConfig,
    now: datetime,
    released: Collection[str] = (),
) -> dict[str, ReturnPlan]:
    """The plan of every return, keyed by Reveni return id, in (created_at, id) order.

    `orders`: the Centra history of every order number Centra has (an exchange order number
    found here counts as that exchange order existing). `ledger`: the rows of these returns'
    keys. `stock`: available units per replacement SKU; a SKU missing from it was not read, and
    its exchange waits. Pass every Reveni return of a touched order, not only the touched one:
    validation and shipment-line placement share the order's quantities between its returns.

    `released`: the returns whose PSP refund Finance chose to send although a refund made by
    hand in Centra looks like it (`plan_refunds`).

    A rejected, cancelled or expired return that nevertheless has a Centra return is left alone:
    nothing is deleted, and no exception code fits it (reconciliation's gap rules
    are the place to surface it).
    """
    latest = latest_snapshots(returns)
    problems = validation.validate_returns(latest, orders, not_returnable=config.not_returnable)
    mappings = _map_all(latest, orders, ledger, problems)
    stock_left = stock_after_unsettled_exchanges(stock, ledger)
    covered = refunds_made_in_centra(latest, orders, config)
    known_orders = set(orders)
    plans: dict[str, ReturnPlan] = {}
    for ret in latest:
        draft = _Draft(ret, ledger)
        history = orders.get(ret.order.number) if ret.order.number is not None else None
        if problems[ret.id]:
            draft.exceptions.extend(problems[ret.id])
        elif awaiting_inspection(ret):
            draft.flag_all(check_instant_deadline(ret, config, now))
        elif ret.status in ACCEPTING and history is not None:
            plan_accepted(
                draft,
                ret,
                history,
                mappings[ret.id],
                known_orders,
                stock_left,
                config,
                covered.get(ret.id),
                released=ret.id in released,
            )
        plans[ret.id] = draft.finish(decided=ret.status in DECIDED and not problems[ret.id])
    return plans


def refunds_made_in_centra(
    returns: Sequence[ReveniReturn], orders: Mapping[int, OrderHistory], config: PlannerConfig
) -> dict[str, PaymentEntry]:
    """Reveni return id -> the refund someone made directly in Centra for its Reveni refund.

    On each order, the refunds on no Centra return of a Reveni return (made by hand, on the
    order), settled or still pending at the PSP, are paired one to one with the first live Reveni
    refunds that have no credit in Centra yet (none settled or pending): same amount and
    currency, oldest with oldest. The reconciliation's
    gap rules pair them the same way (`reconcile.rules.Inputs.unlinked`), so the sync and the
    reconciliation agree on which refund a hand-made one stands for."""
    by_order = _by_order(returns, orders)
    covered: dict[str, PaymentEntry] = {}
    for number, order_returns in by_order.items():
        history = orders[number]
        linked = {
            entry.id
            for centra_return in history.returns
            if centra_return.external_id is not None
            for entry in centra_return.refund_payment_history
        }
        loose: dict[tuple[Decimal, str], list[PaymentEntry]] = defaultdict(list)
        unlinked = (e for e in history.order.payment_history if e.id not in linked)
        for attempt in refund_attempts(unlinked, config.refund_types):
            if attempt.state in _UNDER_WAY:
                loose[attempt.amount, attempt.currency].append(attempt.entry)
        if not loose:
            continue
        due: dict[tuple[Decimal, str], list[tuple[datetime, str, str]]] = defaultdict(list)
        for ret in order_returns:
            live = sorted(
                (r for r in ret.refunds if r.status != "failed"),
                key=lambda r: (r.created_at, r.id),
            )
            if ret.status not in ACCEPTING or not live:
                continue
            own = own_centra_returns(history.returns, ret.id)
            if any(_refunds(r, config).keys() & set(_UNDER_WAY) for r in own):
                continue  # credited: a hand-made refund of its amount repeats it, not covers it
            due[live[0].amount, live[0].currency].append((live[0].created_at, live[0].id, ret.id))
        for money, refunds in due.items():
            for (_, _, rid), entry in zip(sorted(refunds), loose.get(money, []), strict=False):
                covered[rid] = entry
    return covered


def _by_order(
    returns: Sequence[ReveniReturn], orders: Mapping[int, OrderHistory]
) -> dict[int, list[ReveniReturn]]:
    """The returns of each order Centra has, in the order given."""
    by_order: dict[int, list[ReveniReturn]] = defaultdict(list)
    for ret in returns:
        if ret.order.number is not None and ret.order.number in orders:
            by_order[ret.order.number].append(ret)
    return by_order


def stock_after_unsettled_exchanges(
    stock: Mapping[str, int], ledger: Mapping[str, ActionRecord]
) -> dict[str, int]:
    """Available units per replacement SKU, less those of exchange orders planned but not known
    to be done (pending, in flight, in doubt: they will or may take stock).

    Exchanges planned in this run then take from what is left, so two exchanges can never be
    promised one unit. An order in flight that Centra already counted is subtracted twice: the
    cost is an `exchange_out_of_stock` that heals once the executor resolves it."""
    left = dict(stock)
    for record in ledger.values():
        if record.kind != "exchange_order" or record.state not in UNSETTLED:
            continue
        try:
            payload = record.action().payload
        except (KeyError, TypeError, ValueError):
            continue  # a row without a payload (adopted): Centra already has that order
        assert isinstance(payload, ExchangeOrder)
        for line in payload.lines:
            if line.sku in left:
                left[line.sku] -= line.quantity
    return left


def latest_snapshots(returns: Sequence[ReveniReturn]) -> list[ReveniReturn]:
    """One snapshot per return (the latest `updated_at`; a tie broken by content, so input order
    never matters), in (created_at, id) order."""
    by_id: dict[str, ReveniReturn] = {}
    for ret in returns:
        seen = by_id.get(ret.id)
        if seen is None or (ret.updated_at, ret.model_dump_json()) > (
            seen.updated_at,
            seen.model_dump_json(),
        ):
            by_id[ret.id] = ret
    return sorted(by_id.values(), key=lambda r: (r.created_at, r.id))


def awaiting_inspection(ret: ReveniReturn) -> bool:
    """Not inspected yet: on the way in, or on hold before any item was decided."""
    if ret.status in AWAITING_INSPECTION:
        return True
    return ret.status == "on_hold" and all(item.status == "pending" for item in ret.return_items)


def check_instant_deadline(
    ret: ReveniReturn, config: PlannerConfig, now: datetime
) -> list[ReturnException]:
    """`instant_deadline_near` for an uninspected instant return with few days left.

    Reveni must accept or reject an instant return within its window; after that the merchant
    carries the refund it already paid. Also raised once the window has passed."""
    if not ret.instant or not awaiting_inspection(ret):
        return []
    deadline = ret.created_at + timedelta(days=config.instant_window_days)
    left = deadline - now
    if left > timedelta(days=config.instant_deadline_warn_days):
        return []
    days = left.total_seconds() / 86400
    return [
        ReturnException(
            "instant_deadline_near",
            ret.id,
            ret.order.number,
            detail=(
                f"instant return not inspected; Reveni's {config.instant_window_days}-day window "
                f"ends {deadline.isoformat()} ({days:.1f} days left)"
            ),
            facts=(("deadline", deadline.astimezone(UTC).isoformat()),),
        )
    ]


@dataclass
class _Draft:
    """The plan of one return while it is being built."""

    ret: ReveniReturn
    ledger: Mapping[str, ActionRecord]
    actions: list[Action] = field(default_factory=list)
    exceptions: list[ReturnException] = field(default_factory=list)
    adopted: dict[str, str] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)
    owned: list[str] = field(default_factory=list)  # desired keys the executor holds
    held: list[str] = field(default_factory=list)  # keys that must not be sent (ReturnPlan)

    def state(self, key: str) -> str | None:
        record = self.ledger.get(key)
        return None if record is None else record.state

    def is_done(self, key: str) -> bool:
        return self.state(key) == "done" or key in self.adopted

    def adopt(self, key: str, ref: str) -> None:
        """Centra shows the effect of `key`: record it as done, never send it again."""
        if self.state(key) != "done":
            self.adopted[key] = ref

    def taken(self, key: str) -> bool:
        """True when `key` needs nothing from the planner: done, or the executor's to finish."""
        state = self.state(key)
        if state in EXECUTOR_OWNED:
            self.owned.append(key)
        return state == "done" or state in EXECUTOR_OWNED

    def emit(self, action: Action) -> None:
        self.actions.append(action)

    def wait(self, key: str) -> None:
        self.waiting.append(key)

    def flag(
        self,
        code: str,
        *,
        sku: str | None = None,
        amount: Decimal | None = None,
        currency: str | None = None,
        detail: str = "",
        facts: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Raise `code` about this return (once: the same problem twice is one exception)."""
        exc = ReturnException(
            code, self.ret.id, self.ret.order.number, sku, amount, currency, detail, facts
        )
        if exc.key not in {e.key for e in self.exceptions}:
            self.exceptions.append(exc)

    def flag_all(self, excs: list[ReturnException]) -> None:
        self.exceptions.extend(excs)

    def finish(self, *, decided: bool) -> ReturnPlan:
        nothing_left = not (self.actions or self.waiting or self.exceptions or self.owned)
        return ReturnPlan(
            reveni_return_id=self.ret.id,
            order_number=self.ret.order.number,
            actions=tuple(self.actions),
            exceptions=tuple(self.exceptions),
            adopted=dict(self.adopted),
            waiting=tuple(self.waiting),
            complete=decided and nothing_left,
            held=tuple(self.held),
        )


def _map_all(
    returns: list[ReveniReturn],
    orders: Mapping[int, OrderHistory],
    ledger: Mapping[str, ActionRecord],
    problems: Mapping[str, list[ReturnException]],
) -> dict[str, ShipmentMapping]:
    """Shipment-line mapping of every return, order by order (returns share an order's room)."""
    by_order = _by_order(returns, orders)
    mappings: dict[str, ShipmentMapping] = {ret.id: ShipmentMapping() for ret in returns}
    for number, order_returns in by_order.items():
        placing = frozenset(
            r.id for r in order_returns if r.status in ACCEPTING and not problems[r.id]
        )
        history = orders[number]
        mappings.update(
            map_to_shipment_lines(history.order, history.returns, order_returns, ledger, placing)
        )
    return mappings


def plan_accepted(
    draft: _Draft,
    ret: ReveniReturn,
    history: OrderHistory,
    mapping: ShipmentMapping,
    known_orders: set[int],
    stock_left: dict[str, int],
    config: PlannerConfig,
    made_in_centra: PaymentEntry | None = None,
    *,
    released: bool = False,
) -> None:
    """Step 4: the Centra return parts, then restock, refund and exchanges as they become due.
    `made_in_centra`: a refund made directly in Centra for this return's refund
    (`refunds_made_in_centra`); `released`: Finance sends it all the same."""
    if mapping.unplaced:
        for sku, units in mapping.unplaced.items():
            draft.flag(
                "quantity_exceeds_shipped",
                sku=sku,
                detail=(
                    f"{units} accepted x {sku} fit on no shipped line of order "
                    f"{history.order.number} (returned already, or not shipped)"
                ),
            )
        return
    if mapping.unresolved:  # a part known to the ledger by key only: wait until Centra shows it
        for key in mapping.unresolved:
            draft.wait(key)
        return
    plan_return_parts(draft, ret, history.order, mapping.parts)
    plan_restock(draft, ret, history.order, mapping.parts, config)
    plan_refunds(
        draft, ret, history.order, mapping.parts, config, made_in_centra, released=released
    )
    plan_exchanges(draft, ret, mapping, known_orders, stock_left, config)


def plan_return_parts(
    draft: _Draft, ret: ReveniReturn, order: Order, parts: Sequence[ReturnPart]
) -> None:
    """One `createReturn` per part; a part Centra already shows is adopted, never created
    again (a crash after Centra's answer, before the ledger's commit, ends here)."""
    for part in parts:
        if part.centra_return is not None:
            draft.adopt(part.key, str(part.centra_return.id))
        elif not draft.taken(part.key):
            draft.emit(
                Action(
                    key=part.key,
                    kind="create_return",
                    reveni_return_id=ret.id,
                    order_number=order.number,
                    payload=CreateReturn(
                        shipment_id=part.shipment_id,
                        lines=part.lines,
                        external_id=ret.id,
                        comment=return_comment(ret.id, exchange=part.exchange),
                    ),
                )
            )


def plan_restock(
    draft: _Draft,
    ret: ReveniReturn,
    order: Order,
    parts: Sequence[ReturnPart],
    config: PlannerConfig,
) -> None:
    """One stock change for every accepted unit marked restock, once every part is done.

    Centra's return was created without touching stock (`removeItemsFromStock`), so this is the
    only place a returned unit becomes saleable again: after Reveni accepted it, into the
    returns warehouse, under a description that proves it happened."""
    quantities: Counter[str] = Counter()
    for item in ret.return_items:
        if item.restock and item.accepted_units:
            quantities[item.sku] += item.accepted_units
    if not quantities:
        return
    key = restock_key(ret.id)
    if draft.taken(key):
        return
    if not all(draft.is_done(part.key) for part in parts):
        draft.wait(key)
        return
    lines = []
    for sku in sorted(quantities):
        line = _order_line_of(sku, parts, order)
        if line is None or line.size.id is None:
            draft.flag("restock_failed", sku=sku, detail=f"order line of {sku} has no size id")
            return
        lines.append(RestockLine(sku, line.product_variant_id, line.size.id, quantities[sku]))
    draft.emit(
        Action(
            key=key,
            kind="restock",
            reveni_return_id=ret.id,
            order_number=order.number,
            payload=Restock(
                description=RESTOCK_DESCRIPTION.format(rid=ret.id),
                warehouse_id=config.returns_warehouse_id,
                lines=tuple(lines),
            ),
            depends_on=tuple(part.key for part in parts),
        )
    )


def _order_line_of(sku: str, parts: Sequence[ReturnPart], order: Order) -> OrderLine | None:
    """The order line a returned SKU came from (variant and size ids for the stock change)."""
    sku_lines = [line for line in order.lines if line.sku == sku]
    by_shipment_line = {
        sline.id: sline.order_line_id for shipment in order.shipments for sline in shipment.lines
    }
    for part in parts:
        for pline in part.lines:
            if pline.sku == sku and pline.shipment_line_id in by_shipment_line:
                found = order.line(by_shipment_line[pline.shipment_line_id])
                if found is not None:
                    return found
    return sku_lines[0] if sku_lines else None


def plan_refunds(
    draft: _Draft,
    ret: ReveniReturn,
    order: Order,
    parts: Sequence[ReturnPart],
    config: PlannerConfig,
    made_in_centra: PaymentEntry | None = None,
    *,
    released: bool = False,
) -> None:
    """Post Reveni's refund on the Centra return part(s), in the form Reveni paid it.

    Only refund parts are credited: the exchange parts of a mixed return never are, and Reveni's
    amount (which covers the refunded items only) is compared with the refund parts' credit.

    - Original payment method paid by the merchant: Centra refunds through its PSP, one refund
      per part of that part's grand total, only when their sum equals Reveni's amount.
    - Anything Reveni paid (instant bank transfer), or store credit: never the PSP, or the
      customer is paid twice; the parts are completed with a non-PSP credit of Reveni's amount,
      split over the parts by their grand totals.

    Centra holds one credit per return, so only the first live (not failed) Reveni refund is
    posted; a second live one is `duplicate_refund`. Needs every part visible in Centra (its id
    and grand total); a credit Centra already shows is adopted; a FAILED PSP entry is
    `refund_failed_at_gateway` and never retried here.

    A PSP refund that someone already made directly in Centra for this refund
    (`made_in_centra`) would be paid a second time: it is held (not emitted, and listed in
    `held` so that an action an earlier plan left pending is blocked, never sent), and
    `duplicate_refund` asks Finance to decide: ignore the exception if the hand-made refund was
    this one; retry it to send the refund all the same (`released`: the exception stays until
    the credit is in Centra). When Reveni paid, the non-PSP credit that records Reveni's payment
    is posted all the same; the reconciliation reports the hand-made refund that repeats it
    (`duplicate_refund`)."""
    live = sorted(
        (r for r in ret.refunds if r.status != "failed"), key=lambda r: (r.created_at, r.id)
    )
    parts = [part for part in parts if not part.exchange]
    if not live or not parts:
        return  # a mixed return whose refunded items were all rejected: nothing to credit here
    refund, *later = live
    for extra in later:
        draft.flag(
            "duplicate_refund",
            amount=extra.amount,
            currency=extra.currency,
            detail=(
                f"Reveni has refunds {refund.id} and {extra.id} on one return; Centra holds one "
                f"credit per return, so {extra.id} is not posted"
            ),
        )
    psp = refund.method == "original_payment_method" and refund.paid_by == "merchant"
    several = len(parts) > 1
    keys = {
        p.shipment_id: refund_key(ret.id, refund.id, p.shipment_id if several else None)
        for p in parts
    }
    visible = [p.centra_return for p in parts if p.centra_return is not None]
    if len(visible) < len(parts):
        for part in parts:
            if not draft.taken(keys[part.shipment_id]):
                draft.wait(keys[part.shipment_id])
        return
    credits = {p.shipment_id: _centra_return(p).grand_total.value for p in parts}
    duplicate = _duplicate_credit(visible, refund, psp, ret, config)
    if duplicate:
        draft.flag(
            "duplicate_refund", amount=refund.amount, currency=refund.currency, detail=duplicate
        )
    todo: list[ReturnPart] = []
    for part in parts:
        key, centra_return = keys[part.shipment_id], _centra_return(part)
        asked = _refunds(centra_return, config)
        posted = asked.get(RefundState.SETTLED)
        if posted:
            if psp or not _via_psp(posted[0].entry, ret, config):
                draft.adopt(key, str(posted[0].id))
            continue  # a PSP credit on a Reveni-paid refund: duplicate_refund above
        if draft.state(key) == "done":
            continue
        pending = RefundState.PENDING in asked
        refused = psp and RefundState.FAILED in asked
        if (pending or refused) and draft.state(key) == "pending":
            # A refund of ours still to send (an earlier plan's) while Centra shows one asked:
            # held, never sent; adopted when the PSP pays, left to Finance when it refuses.
            draft.held.append(key)
        if pending:
            # A refund asked of the PSP, not yet answered: in progress, never a second one.
            if not draft.taken(key):
                draft.wait(key)
            continue
        if refused:
            draft.flag(
                "refund_failed_at_gateway",
                amount=centra_return.grand_total.value,
                currency=centra_return.grand_total.currency,
                detail=(
                    f"Centra's PSP refused the refund of return {centra_return.id} "
                    f"(Reveni refund {refund.id}); not retried automatically"
                ),
            )
            continue
        if not draft.taken(key):
            todo.append(part)
    if not todo:
        return
    if made_in_centra is not None and psp:
        draft.flag(
            "duplicate_refund",
            amount=refund.amount,
            currency=refund.currency,
            detail=_made_in_centra(made_in_centra, refund, order, released=released),
        )
        if not released:
            draft.held.extend(keys[part.shipment_id] for part in todo)
            return
    credit = sum(credits.values(), Decimal(0))
    problem = _amount_problem(refund, psp, credit, order, config)
    if problem:
        draft.flag(
            "refund_amount_mismatch",
            amount=refund.amount,
            currency=refund.currency,
            detail=problem,
            facts=centra_side(credit, order.currency),
        )
        return
    amounts = credits if psp else _split(refund.amount, credits, refund.currency)
    for part in todo:
        centra_return = _centra_return(part)
        draft.emit(
            Action(
                key=keys[part.shipment_id],
                kind="refund",
                reveni_return_id=ret.id,
                order_number=order.number,
                payload=Refund(
                    centra_return_id=centra_return.id,
                    via_psp=psp,
                    amount=amounts[part.shipment_id],
                    currency=centra_return.grand_total.currency if psp else refund.currency,
                    reference=refund.id,
                ),
                depends_on=(part.key,),
            )
        )


def _centra_return(part: ReturnPart) -> CentraReturn:
    assert part.centra_return is not None  # callers checked every part is visible
    return part.centra_return


_UNDER_WAY: Final = (RefundState.SETTLED, RefundState.PENDING)


def _refunds(
    centra_return: CentraReturn, config: PlannerConfig
) -> dict[RefundState, list[RefundAttempt]]:
    """The refunds asked of Centra on `centra_return`, by where they stand (states with none
    are absent)."""
    by_state: dict[RefundState, list[RefundAttempt]] = defaultdict(list)
    for attempt in refund_attempts(centra_return.refund_payment_history, config.refund_types):
        by_state[attempt.state].append(attempt)
    return dict(by_state)


def _via_psp(entry: PaymentEntry, ret: ReveniReturn, config: PlannerConfig) -> bool:
    """Whether a Centra refund entry went through the PSP (not returnbridge's non-PSP credit)."""
    if entry.payment_method == config.manual_refund_payment_method:
        return False
    return entry.external_reference not in {r.id for r in ret.refunds}


def _duplicate_credit(
    visible: Sequence[CentraReturn],
    refund: ReveniRefund,
    psp: bool,
    ret: ReveniReturn,
    config: PlannerConfig,
) -> str | None:
    """Why this return is credited twice, if it is: two successful refunds on one Centra
    return, or a PSP refund on a return Reveni already paid the customer for."""
    for centra_return in visible:
        posted = _refunds(centra_return, config).get(RefundState.SETTLED, [])
        if len(posted) > 1:
            return f"Centra return {centra_return.id} has {len(posted)} successful refunds"
        if not psp and any(_via_psp(a.entry, ret, config) for a in posted):
            return (
                f"Reveni refund {refund.id} ({refund.method}, paid by {refund.paid_by}) and a PSP "
                f"refund on Centra return {centra_return.id}: the customer was paid twice"
            )
    return None


def _made_in_centra(
    entry: PaymentEntry, refund: ReveniRefund, order: Order, *, released: bool
) -> str:
    """The `duplicate_refund` detail for a PSP refund already made by hand in Centra."""
    made = (
        f"a refund of {_money(entry.value.value, entry.value.currency)} was made directly in "
        f"Centra on order {order.number} (payment entry {entry.id}, {entry.created_at.date()}, "
        f"on no return); Reveni refund {refund.id} is for the same amount"
    )
    if released:
        return f"{made}; released by Finance: refunding it through the PSP all the same"
    return (
        f"{made}, so returnbridge did not refund it again through the PSP. If that refund was "
        "this one, ignore this exception; if it was for something else, retry it to send the "
        "refund all the same"
    )


def _amount_problem(
    refund: ReveniRefund, psp: bool, credit: Decimal, order: Order, config: PlannerConfig
) -> str | None:
    """Why Reveni's refund cannot be posted as it is, if it cannot.

    PSP: Centra refunds what it computes, so it must equal Reveni's amount. Non-PSP: the credit
    recorded is Reveni's own amount, but never more than Centra's value of the returned items,
    so credits on an order cannot exceed what was captured."""
    currency = order.currency
    reveni = _money(refund.amount, refund.currency)
    if refund.currency != currency:
        return f"Reveni refunds {reveni}; order is in {currency}"
    gap = refund.amount - credit
    if psp and abs(gap) > config.refund_tolerance:
        return f"Reveni refunds {reveni}; Centra computes {_money(credit, currency)}"
    if not psp and gap > config.refund_tolerance:
        return (
            f"Reveni paid {reveni}; more than Centra's {_money(credit, currency)} "
            "for the returned items"
        )
    return None


def centra_side(amount: Decimal, currency: str) -> tuple[tuple[str, str], ...]:
    """The facts naming Centra's side of a money mismatch (core/codes.py `FACTS`): `amount` in
    `currency`, with its minor-unit digits."""
    quantum = Decimal(1).scaleb(-currency_exponent(currency))
    return (("centra_amount", str(amount.quantize(quantum))), ("centra_currency", currency))


def _money(amount: Decimal, currency: str) -> str:
    """`amount` with its currency's minor-unit digits ("398.00 SEK", never "398.0 SEK")."""
    quantum = Decimal(1).scaleb(-currency_exponent(currency))
    return f"{amount.quantize(quantum)} {currency}"


def _split(amount: Decimal, weights: Mapping[int, Decimal], currency: str) -> dict[int, Decimal]:
    """`amount` over the parts in proportion to `weights` (equally when they are all zero),
    rounded down to the currency's minor unit, the remainder on the last part: the shares sum
    to `amount` exactly and none is negative."""
    quantum = Decimal(1).scaleb(-currency_exponent(currency))
    ids = sorted(weights)
    total = sum(weights.values(), Decimal(0))
    share_of = dict(weights) if total > 0 else {i: Decimal(1) for i in ids}
    total = total if total > 0 else Decimal(len(ids))
    shares: dict[int, Decimal] = {}
    for i in ids[:-1]:
        shares[i] = (amount * share_of[i] / total).quantize(quantum, rounding=ROUND_DOWN)
    shares[ids[-1]] = amount - sum(shares.values(), Decimal(0))
    return shares


def plan_exchanges(
    draft: _Draft,
    ret: ReveniReturn,
    mapping: ShipmentMapping,
    known_orders: set[int],
    stock_left: dict[str, int],
    config: PlannerConfig,
) -> None:
    """A zero-value Centra order per accepted exchange item, once its return part is done.

    `n` is the item's index among the return's exchange items (accepted or not), so the key and
    the deterministic order number never shift. One replacement unit per accepted unit, at most
    what the shopper asked for. An order number Centra already has is adopted."""
    order_number = draft.ret.order.number
    assert order_number is not None  # accepted returns passed validation
    parts = {part.key: part for part in mapping.parts}
    exchanges = [(i, item) for i, item in enumerate(ret.return_items) if item.exchange is not None]
    for n, (index, item) in enumerate(exchanges):
        assert item.exchange is not None
        if not item.accepted_units:
            continue
        key = exchange_key(ret.id, n)
        number = exchange_order_number(ret.id, n, config.exchange_order_base)
        if draft.state(key) == "done":
            continue
        if number in known_orders:
            draft.adopt(key, str(number))
            continue
        if draft.taken(key):
            continue
        part = parts.get(mapping.holding.get(index, ""))
        centra_id = _centra_return_id(draft, part) if part is not None else None
        if part is None or centra_id is None or not draft.is_done(part.key):
            draft.wait(key)
            continue
        sku, quantity = item.exchange.sku, min(item.exchange.quantity, item.accepted_units)
        if draft.state(key) != "pending":  # a pending row already holds its units
            available = stock_left.get(sku)
            if available is None:
                draft.wait(key)  # stock not read: nothing to decide on yet
                continue
            if available < quantity:
                draft.flag(
                    "exchange_out_of_stock",
                    sku=sku,
                    detail=f"{quantity} x {sku} wanted for return {ret.id}, {available} available",
                )
                continue
            stock_left[sku] = available - quantity
        draft.emit(
            Action(
                key=key,
                kind="exchange_order",
                reveni_return_id=ret.id,
                order_number=order_number,
                payload=ExchangeOrder(
                    order_number=number,
                    origin_order_number=order_number,
                    origin_return_id=centra_id,
                    lines=(ExchangeLine(sku=sku, quantity=quantity),),
                    marker=exchange_marker(ret.id, n),
                    alternates=exchange_order_numbers(ret.id, n, config.exchange_order_base)[1:],
                ),
                depends_on=(part.key,),
            )
        )


def _centra_return_id(draft: _Draft, part: ReturnPart) -> int | None:
    """The Centra id of a part: from Centra when it shows the part, else the ledger's ref."""
    if part.centra_return is not None:
        return part.centra_return.id
    record = draft.ledger.get(part.key)
    if record is None or record.state != "done" or not record.centra_ref:
        return None
    return int(record.centra_ref) if record.centra_ref.isdigit() else None
