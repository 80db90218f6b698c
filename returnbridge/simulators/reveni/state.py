"""The simulated Reveni store: its returns, built from a scenario, and every change to them.

Each write validates completely before it touches anything, so a refused change (a
`StateError`, answered 400) leaves the state as it was. The simulator holds one lock around
every request, so changes never interleave.

Rules (docs/reveni-simulator.md; the graph is `connectors/reveni/statuses.py`):
- Every change stamps `updated_at` with the simulated clock, then advances the clock one second,
  so `updated_at` strictly increases across changes (a clock set backwards cannot break that).
- An instant return gets its refund at creation, paid; a standard one when it is accepted or
  partially accepted, for the accepted refund items only.
- A scenario return starts in `history[0]`; `walk` plays the rest of its history later.

Modelling choices, all [INFER]:
- An item's unit price is the Centra order's price for its SKU (averaged over the order lines
  its units come from, in line order); without a priced line and with a scenario refund, the
  refund amount spread over the refunded units.
- A decision taken from the scenario's item flags refunds the scenario's amount; one taken
  through the API (`partial_validate`, or `/_sim` with explicit `items`) refunds Σ unit price x
  accepted units.
- `bank_transfer` is paid by Reveni (status `paid`, a disbursement on the invoice);
  `store_credit` is issued at once by the shop (`paid`, paid by the merchant);
  `original_payment_method` waits for Centra's PSP (`inferred.refund_status_on_merchant_refund`).
- Restock is null until an item is decided: the scenario's flag (or the validation's `restock`)
  when accepted, false when rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.connectors.reveni.statuses import (
    ACCEPTED,
    DECISIONS,
    StatusMoveError,
    allowed_moves,
    check_move,
)
from returnbridge.connectors.reveni.wire import EVENT_RETURN_CREATED, EVENT_RETURN_UPDATED
from returnbridge.scenario import OrderLine, ReveniReturn, Scenario
from returnbridge.simulators.centra.records import order_hash_id
from returnbridge.simulators.clock import SimClock
from returnbridge.simulators.reveni.records import (
    ItemRec,
    RefundRec,
    ReturnRec,
    StatusChange,
    hex_id,
    quantize,
)

EventSink = Callable[[str, ReturnRec], None]
"""Receives (event type, return) after every change; called with the simulator's lock held."""

ZERO = Decimal("0")


class StateError(ValueError):
    """A change the simulated Reveni refuses; the message says why (answered 400)."""


class UnknownReturn(LookupError):
    """No return with that id (answered 404)."""


@dataclass(frozen=True)
class Decision:
    """One item's validation outcome."""

    accepted: bool
    quantity: int | None = None  # accepted units; None = all
    reject_reason: str | None = None
    reject_reason_text: str | None = None
    restock: bool | None = None  # None = the scenario's flag


class ReveniState:
    """Everything one simulated Reveni store holds. Build with `from_scenario`."""

    def __init__(self, scenario: Scenario, inferred: ReveniInferred, clock: SimClock) -> None:
        self.scenario = scenario
        self.inferred = inferred
        self.clock = clock
        self.store_id = scenario.reveni.store_id
        self.returns: dict[str, ReturnRec] = {}  # creation order
        self._sinks: list[EventSink] = []
        self._last_stamp: datetime | None = None
        self._fixed_stamps: Iterator[datetime] | None = None  # history played before start
        self._created = 0

    @classmethod
    def from_scenario(
        cls, scenario: Scenario, inferred: ReveniInferred, clock: SimClock
    ) -> ReveniState:
        """The store as the scenario describes it: every return in its first status, no events."""
        state = cls(scenario, inferred, clock)
        for ret in scenario.reveni.returns:
            rec = state.create(ret, initial=True)
            if ret.before_start:
                state._play_before_start(rec)
        return state

    def _play_before_start(self, rec: ReturnRec) -> None:
        """Play `rec`'s whole history now, stamped an hour a step after its creation (no one
        is subscribed yet: no webhooks)."""
        steps = iter(rec.created_at + timedelta(hours=h + 1) for h in range(10_000))
        self._fixed_stamps = steps
        try:
            while rec.remaining_history:
                self.set_status(rec.id, rec.remaining_history.pop(0))
        finally:
            self._fixed_stamps = None

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    # ------------------------------------------------------------------ reads

    def get(self, return_id: str) -> ReturnRec:
        try:
            return self.returns[return_id]
        except KeyError:
            raise UnknownReturn(return_id) from None

    def by_update(self) -> list[ReturnRec]:
        """Every return sorted by (updated_at, id), the list order ([INFER])."""
        return sorted(self.returns.values(), key=lambda r: (r.updated_at, r.id))

    # ------------------------------------------------------------------ creation

    def create(self, ret: ReveniReturn, *, initial: bool = False) -> ReturnRec:
        """Create a return from a scenario return. `initial`: part of the scenario's starting
        data (updated_at = created_at, no webhook); otherwise a shopper creating it now."""
        if ret.id is not None and ret.id in self.returns:
            raise StateError(f"id: a return {ret.id!r} already exists")
        skus = {p.sku for p in self.scenario.centra.products}
        for i, item in enumerate(ret.items):
            for key, sku in (("sku", item.sku), ("exchange_sku", item.exchange_sku)):
                if sku is not None and sku not in skus:
                    raise StateError(
                        f"items[{i}].{key}: unknown SKU {sku!r} (not in centra.products)"
                    )
        self._created += 1
        return_id = ret.id or self._new_id()
        order = self.scenario.centra.order(ret.order_number)
        currency = (
            order.currency
            if order is not None
            else (ret.refund.currency if ret.refund and ret.refund.currency else None)
            or self.scenario.reveni.currency
        )
        if initial:
            stamp = ret.created_at or self._stamp()
            created_at = stamp
        else:
            stamp = self._stamp()
            created_at = ret.created_at or stamp
        items = self._items(return_id, ret, currency)
        rec = ReturnRec(
            id=return_id,
            order_number=ret.order_number,
            order_external_id=_order_external_id(self.scenario, ret.order_number),
            type=ret.type,
            instant=ret.instant,
            status=ret.history[0],
            currency=currency,
            customer_email=ret.customer_email or (order.customer_email if order else None),
            created_at=created_at,
            updated_at=stamp,
            items=items,
            tracking_number="RV" + hex_id("tracking", return_id)[:12].upper(),
            changes=[StatusChange(ret.history[0], created_at)],
            remaining_history=list(ret.history[1:]),
            scenario_refund=(
                (ret.refund.method, ret.refund.amount, ret.refund.currency or currency)
                if ret.refund
                else None
            ),
        )
        if rec.instant and rec.type != "exchange":
            self._instant_refund(rec)
        self.returns[return_id] = rec
        if not initial:
            self._emit(EVENT_RETURN_CREATED, rec)
        return rec

    def _new_id(self) -> str:
        seq = self._created
        while (candidate := hex_id("return", self.store_id, seq)) in self.returns:
            seq += 1
        return candidate

    def _items(self, return_id: str, ret: ReveniReturn, currency: str) -> list[ItemRec]:
        order = self.scenario.centra.order(ret.order_number)
        taken: dict[str, int] = {}  # units of each SKU priced so far, for the next item
        prices: list[Decimal | None] = []
        for item in ret.items:
            skip = taken.get(item.sku, 0)
            taken[item.sku] = skip + item.quantity
            prices.append(
                _unit_price(order.lines, item.sku, skip, item.quantity, currency) if order else None
            )
        refund_units = sum(i.quantity for i in ret.items if i.exchange_sku is None)
        if (
            ret.refund
            and refund_units
            and all(
                p is None for p, i in zip(prices, ret.items, strict=True) if i.exchange_sku is None
            )
        ):
            spread = quantize(ret.refund.amount / refund_units, currency)
            prices = [
                spread if i.exchange_sku is None else p
                for p, i in zip(prices, ret.items, strict=True)
            ]
        return [
            ItemRec(
                item_id=hex_id("item", return_id, index),
                sku=item.sku,
                quantity=item.quantity,
                reason=item.reason,
                exchange_sku=item.exchange_sku,
                unit_price=price,
                currency=currency,
                restock_intent=item.restock,
                accepted_intent=item.accepted,
            )
            for index, (item, price) in enumerate(zip(ret.items, prices, strict=True))
        ]

    # ------------------------------------------------------------------ status changes

    def set_status(
        self, return_id: str, status: str, decisions: dict[str, Decision] | None = None
    ) -> ReturnRec:
        """One step of the status machine. A decision status decides every pending item: from
        `decisions` (item id -> Decision) when given, else from the scenario's item flags."""
        rec = self.get(return_id)
        try:
            check_move(rec.status, status, rec.held_from)
        except StatusMoveError as exc:
            raise StateError(str(exc)) from None
        if decisions is not None and status not in DECISIONS:
            raise StateError(f"items: only a decision ({sorted(DECISIONS)}) decides items")
        outcome: dict[str, Decision] = {}
        if status in DECISIONS:
            outcome = self._decide_for(rec, status, decisions)
        self._apply_decisions(rec, outcome)
        self._move(rec, status, scenario_amounts=decisions is None)
        return rec

    def _decide_for(
        self, rec: ReturnRec, status: str, decisions: dict[str, Decision] | None
    ) -> dict[str, Decision]:
        pending = [i for i in rec.items if i.status == "pending"]
        if decisions is not None:
            for item_id in decisions:
                item = next((i for i in rec.items if i.item_id == item_id), None)
                if item is None:
                    raise StateError(f"items: return {rec.id} has no item {item_id!r}")
                if item.status != "pending":
                    raise StateError(f"items: item {item_id} is already {item.status}")
        outcome: dict[str, Decision] = {}
        for item in pending:
            if decisions is not None and item.item_id in decisions:
                outcome[item.item_id] = decisions[item.item_id]
            elif status == "rejected":
                outcome[item.item_id] = Decision(accepted=False)
            else:
                outcome[item.item_id] = Decision(accepted=item.accepted_intent)
        accepted = [
            (outcome[i.item_id].accepted if i.item_id in outcome else i.status == "accepted")
            for i in rec.items
        ]
        if status == "accepted" and not all(accepted):
            raise StateError("accepted: every item must be accepted (use partially_accepted)")
        if status == "rejected" and any(accepted):
            raise StateError("rejected: no item may be accepted (use partially_accepted)")
        if status == "partially_accepted" and (all(accepted) or not any(accepted)):
            raise StateError("partially_accepted: needs an accepted and a rejected item")
        return outcome

    def partial_validate(self, return_id: str, decisions: list[tuple[str, Decision]]) -> ReturnRec:
        """`POST returns/{id}/partial_validate`: decide items; a full decision moves the return
        to accepted / partially_accepted / rejected, a partial one to for_review."""
        rec = self.get(return_id)
        if not DECISIONS & allowed_moves(rec.status, rec.held_from):
            raise StateError(f"a return in {rec.status!r} cannot be validated")
        if not decisions:
            raise StateError("items: give at least one item")
        seen: set[str] = set()
        for item_id, decision in decisions:
            item = next((i for i in rec.items if i.item_id == item_id), None)
            if item is None:
                raise StateError(f"items: unknown item_id {item_id!r}")
            if item_id in seen:
                raise StateError(f"items: item_id {item_id!r} is decided twice")
            seen.add(item_id)
            if item.status != "pending":
                raise StateError(f"items: item_id {item_id!r} is already {item.status}")
            quantity = item.quantity if decision.quantity is None else decision.quantity
            if decision.accepted and not 1 <= quantity <= item.quantity:
                raise StateError(
                    f"items: quantity {decision.quantity} of item_id {item_id!r} is out of "
                    f"range 1..{item.quantity}"
                )
        outcome = dict(decisions)
        undecided = [i for i in rec.items if i.status == "pending" and i.item_id not in outcome]
        if undecided:
            target = "for_review"
        else:
            units = [_units_after(i, outcome.get(i.item_id)) for i in rec.items]
            full = all(u == i.quantity for u, i in zip(units, rec.items, strict=True))
            target = "accepted" if full else "partially_accepted" if any(units) else "rejected"
        if target != rec.status:
            try:
                check_move(rec.status, target, rec.held_from)
            except StatusMoveError as exc:
                raise StateError(str(exc)) from None
        self._apply_decisions(rec, outcome)
        self._move(rec, target, scenario_amounts=False)
        return rec

    def _apply_decisions(self, rec: ReturnRec, outcome: dict[str, Decision]) -> None:
        for item in rec.items:
            decision = outcome.get(item.item_id)
            if decision is None:
                continue
            if decision.accepted:
                item.status = "accepted"
                item.accepted_quantity = (
                    item.quantity if decision.quantity is None else decision.quantity
                )
                item.restock = item.restock_intent if decision.restock is None else decision.restock
            else:
                item.status = "rejected"
                item.accepted_quantity = 0
                item.restock = False
                item.reject_reason = decision.reject_reason
                item.reject_reason_text = decision.reject_reason_text

    def _move(self, rec: ReturnRec, status: str, *, scenario_amounts: bool) -> None:
        """Record the move (or a validation that stays in for_review) and its consequences."""
        stamp = self._stamp()
        if status == "on_hold" and rec.status != "on_hold":
            rec.held_from = rec.status
        elif rec.status == "on_hold":
            rec.held_from = None
        if status != rec.status:
            rec.changes.append(StatusChange(status, stamp))
        rec.status = status
        rec.updated_at = stamp
        if status in ACCEPTED and not rec.instant and rec.type != "exchange":
            self._standard_refund(rec, stamp, scenario_amounts=scenario_amounts)
        if status == "rejected" and rec.instant and any(r.paid_by == "reveni" for r in rec.refunds):
            rec.covered_at = stamp
        self._emit(EVENT_RETURN_UPDATED, rec)

    def walk(self, steps: int | None = None) -> list[dict[str, Any]]:
        """Play the scenario histories: one step per return per round, in creation order, at
        most `steps` steps. A step the machine no longer allows (the return was moved through
        the API meanwhile) is skipped with its return's remaining history."""
        done: list[dict[str, Any]] = []
        while steps is None or len(done) < steps:
            due = [r for r in self.returns.values() if r.remaining_history]
            if not due:
                break
            for rec in due:
                if steps is not None and len(done) >= steps:
                    break
                status = rec.remaining_history.pop(0)
                try:
                    self.set_status(rec.id, status)
                except StateError as exc:
                    rec.remaining_history.clear()
                    done.append({"return_id": rec.id, "status": status, "skipped": str(exc)})
                    continue
                done.append({"return_id": rec.id, "status": status})
        return done

    def remaining_steps(self) -> int:
        return sum(len(r.remaining_history) for r in self.returns.values())

    # ------------------------------------------------------------------ refunds

    def add_refund(
        self,
        return_id: str,
        method: str,
        amount: Decimal,
        currency: str | None = None,
        status: str | None = None,
        paid_by: str | None = None,
    ) -> ReturnRec:
        """A refund added from `/_sim` (a change: updated_at moves, `return.updated` fires)."""
        rec = self.get(return_id)
        stamp = self._stamp()
        refund = self._refund(rec, method, amount, currency or rec.currency, stamp)
        if status is not None:
            refund.status = status
        if paid_by is not None:
            refund.paid_by = paid_by
        rec.refunds.append(refund)
        rec.updated_at = stamp
        self._emit(EVENT_RETURN_UPDATED, rec)
        return rec

    def _refund(
        self, rec: ReturnRec, method: str, amount: Decimal, currency: str, at: datetime
    ) -> RefundRec:
        if method == "bank_transfer":
            status, paid_by = "paid", "reveni"
        elif method == "store_credit":
            status, paid_by = "paid", "merchant"
        else:
            status, paid_by = self.inferred.refund_status_on_merchant_refund, "merchant"
        return RefundRec(
            id=hex_id("refund", rec.id, len(rec.refunds)),
            method=method,
            amount=quantize(amount, currency),
            currency=currency,
            status=status,
            paid_by=paid_by,
            created_at=at,
        )

    def _instant_refund(self, rec: ReturnRec) -> None:
        if rec.scenario_refund is not None:
            method, amount, currency = rec.scenario_refund
        else:
            method, currency = "bank_transfer", rec.currency
            amount = _priced_units(rec, accepted_only=False)
        if amount > 0:
            rec.refunds.append(self._refund(rec, method, amount, currency, rec.created_at))

    def _standard_refund(self, rec: ReturnRec, at: datetime, *, scenario_amounts: bool) -> None:
        if rec.refunds:
            return  # refunded once, at the first acceptance
        if scenario_amounts and rec.scenario_refund is not None:
            method, amount, currency = rec.scenario_refund
        else:
            method, currency = (
                (rec.scenario_refund[0], rec.scenario_refund[2])
                if rec.scenario_refund
                else ("original_payment_method", rec.currency)
            )
            amount = _priced_units(rec, accepted_only=True)
        if amount > 0:
            rec.refunds.append(self._refund(rec, method, amount, currency, at))

    # ------------------------------------------------------------------ plumbing

    def _stamp(self) -> datetime:
        """The time of a change: the clock (never at or before the previous change's time);
        the clock then moves one second on."""
        if self._fixed_stamps is not None:
            return next(self._fixed_stamps)
        now = self.clock.now()
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + timedelta(seconds=1)
        self._last_stamp = now
        self.clock.set(now + timedelta(seconds=1))
        return now

    def _emit(self, event: str, rec: ReturnRec) -> None:
        for sink in self._sinks:
            sink(event, rec)


def _units_after(item: ItemRec, decision: Decision | None) -> int:
    """Accepted units of `item` once `decision` (if any) is applied."""
    if decision is None:
        return item.accepted_units
    if not decision.accepted:
        return 0
    return item.quantity if decision.quantity is None else decision.quantity


def _order_external_id(scenario: Scenario, number: int) -> str | None:
    """The Centra simulator's id of the order, when Centra has it."""
    return order_hash_id(number) if scenario.centra.order(number) is not None else None


def _unit_price(
    lines: list[OrderLine], sku: str, skip: int, quantity: int, currency: str
) -> Decimal | None:
    """Average price of `quantity` units of `sku` taken from the order lines in line order,
    after the first `skip` units (earlier items of the same return)."""
    units = [line.unit_price for line in lines if line.sku == sku for _ in range(line.quantity)]
    if not units:
        return None
    units += [units[-1]] * max(0, skip + quantity - len(units))  # more than ordered: last price
    return quantize(sum(units[skip : skip + quantity], ZERO) / quantity, currency)


def _priced_units(rec: ReturnRec, *, accepted_only: bool) -> Decimal:
    """Σ unit price x units over the refund items (accepted units, or all units)."""
    total = ZERO
    for item in rec.items:
        if not item.is_refund_item or item.unit_price is None:
            continue
        total += item.unit_price * (item.accepted_units if accepted_only else item.quantity)
    return quantize(total, rec.currency)
