"""The planner under random histories, replays and crashes (the invariants of
docs/architecture.md#effects-and-idempotency-keys).

A Hypothesis state machine drives Reveni returns on one Centra order through the status graph
(`statuses.allowed_moves`), accepts some of their items, lets refunds appear, and after any step
plans from what it observes: the latest snapshots, older ones, duplicates, in any order. A small
simulated Centra plus ledger applies the planned actions like the executor would, and sometimes
crashes after Centra's effect but before the ledger's commit (or before sending), loses such a
ledger row, or reads the outcome back later. Someone may also refund on the order by hand.

Returns may be refunds, exchanges or mixed (some items refunded, some exchanged, the same SKU
possibly in both roles); a mixed return's exchanged and refunded items go into separate Centra
returns ("parts"), told apart by their comment.

Invariants, after every step:
- per ledger key at most one Centra effect;
- no return gets both a PSP refund and a non-PSP credit, nor a PSP refund when Reveni paid;
- a PSP refund only where Centra's computed credit of the refund parts equals Reveni's amount,
  and never more PSP credit than Reveni's amount;
- the exchange part of a mixed return is never credited;
- credits on the order never exceed what was captured; no shipment line is returned twice;
- no exchange order takes stock that is not there;
- no PSP refund is sent for a return whose refund a refund made by hand in Centra stands for
  (`planner.refunds_made_in_centra`, on what the run saw), even one an earlier run left pending:
  held keys are blocked, as the sync blocks them;
- the planner emits only keys it may (not done, not the executor's) whose prerequisites are
  done, the same plan whatever the order of the observations.
And once settled (every effect applied, no crash), every decided return's plan is complete or
has an open exception, and an accepted return without exceptions has all of its effects: each
role's accepted units in parts of that role, the refund parts credited with exactly Reveni's
amount, an exchange order per accepted exchange item.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from builders import T0, ledger_row, own_return, priced_order, refund_entry, reveni_return_of
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from returnbridge.connectors.centra.models import PaymentEntry
from returnbridge.connectors.centra.models import Return as CentraReturn
from returnbridge.connectors.reveni.models import Return as ReveniReturn
from returnbridge.connectors.reveni.statuses import allowed_moves
from returnbridge.core.actions import (
    Action,
    CreateReturn,
    ExchangeOrder,
    Refund,
    Restock,
    exchange_order_number,
    is_exchange_part,
)
from returnbridge.core.planner import (
    ACCEPTING,
    DECIDED,
    PlannerConfig,
    ReturnPlan,
    latest_snapshots,
    plan_returns,
    refunds_made_in_centra,
)
from returnbridge.core.shipment_mapping import is_mixed
from returnbridge.core.validation import OrderHistory
from returnbridge.ledger.records import ActionRecord

NUMBER = 5
# A x3 at 10.00 and A x1 at 15.00 (the same SKU at two prices), B x3 at 20.00, C x2 at 30.00;
# shipment 51 (created second, lower id) and 52 (created first) share them; a third shipment is
# not shipped (nothing may be returned from it).
ORDER = priced_order(
    NUMBER,
    [("A", 4, "10.00"), ("A", 1, "15.00"), ("B", 3, "20.00"), ("C", 2, "30.00")],
    [
        (True, [(1, 1), (3, 2), (4, 1)]),
        (True, [(1, 2), (2, 1), (3, 1), (4, 1)]),
        (False, [(1, 1)]),
    ],
    shipment_minutes=[60, 0, 30],
)
CAPTURED = ORDER.grand_total.value
SHIPPED = {sl.id: sl.quantity for s in ORDER.shipments if s.is_shipped for sl in s.lines}
PRICES = {"A": ("10.00", "15.00"), "B": ("20.00",), "C": ("30.00",)}
REPLACEMENTS = ("X", "Y")
CONFIG = PlannerConfig(returns_warehouse_id=2)
NOW = T0 + timedelta(days=5)
PSP_METHOD = "dummy-psp"
REFUND_KINDS = (
    ("original_payment_method", "merchant", "pending"),
    ("bank_transfer", "reveni", "paid"),
    ("store_credit", "merchant", "paid"),
)


@dataclass
class ReveniState:
    """One Reveni return as the machine evolves it, and every snapshot the sync could see."""

    rid: str
    created: int
    instant: bool
    items: list[dict[str, Any]]
    status: str = "in_progress"
    held_from: str | None = None
    refunds: list[dict[str, Any]] = field(default_factory=list)
    updated: int = 0
    snapshots: list[ReveniReturn] = field(default_factory=list)

    def type_(self) -> str:
        exchanges = [i["exchange"] is not None for i in self.items]
        return "exchange" if all(exchanges) else "mixed" if any(exchanges) else "refund"

    def snap(self, minute: int) -> None:
        self.updated = minute
        self.snapshots.append(
            reveni_return_of(
                self.rid,
                NUMBER,
                self.items,
                status=self.status,
                instant=self.instant,
                type_=self.type_(),
                refunds=self.refunds,
                minutes=self.created,
                updated_minutes=minute,
            )
        )

    @property
    def latest(self) -> ReveniReturn:
        return self.snapshots[-1]


@dataclass
class CentraSim:
    """The Centra state the machine's executor writes and the planner reads."""

    returns: list[dict[str, Any]] = field(default_factory=list)
    stock_changes: dict[str, int] = field(default_factory=dict)  # description -> units
    exchange_orders: dict[int, int] = field(default_factory=dict)  # number -> units
    stock: dict[str, int] = field(default_factory=dict)
    effects: Counter[str] = field(default_factory=Counter)
    gateway_fails: bool = False
    next_id: int = 1000
    by_hand: list[dict[str, Any]] = field(default_factory=list)  # refunds made on the order

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def models(self) -> list[CentraReturn]:
        return [
            own_return(
                ORDER, r["external_id"], r["lines"], rid=r["id"], refunds=r["entries"]
            ).model_copy(update={"comment": r["comment"]})
            for r in self.returns
        ]

    def parts(self, rid: str, *, exchange: bool) -> list[dict[str, Any]]:
        """The Centra returns of `rid` of one role (exchange parts: by their comment)."""
        return [
            r
            for r in self.returns
            if r["external_id"] == rid and is_exchange_part(rid, r["comment"]) == exchange
        ]

    def histories(self) -> dict[int, OrderHistory]:
        made = [PaymentEntry.model_validate(entry) for entry in self.by_hand]
        order = ORDER.model_copy(update={"payment_history": [*ORDER.payment_history, *made]})
        orders = {NUMBER: OrderHistory(order, tuple(self.models()))}
        for number in self.exchange_orders:
            orders[number] = OrderHistory(priced_order(number, [("X", 1, "0.00")]))
        return orders

    def find_return(self, return_id: int) -> dict[str, Any]:
        return next(r for r in self.returns if r["id"] == return_id)

    def apply(self, key: str, action: Action) -> tuple[str, str | None]:
        """Send one action; the new ledger state and Centra's ref."""
        payload = action.payload
        if isinstance(payload, CreateReturn):
            self.effects[key] += 1
            return_id = self.new_id()
            self.returns.append(
                {
                    "id": return_id,
                    "external_id": payload.external_id,
                    "shipment_id": payload.shipment_id,
                    "comment": payload.comment,
                    "lines": [(ln.shipment_line_id, ln.quantity) for ln in payload.lines],
                    "entries": [],
                }
            )
            return "done", str(return_id)
        if isinstance(payload, Restock):
            self.effects[key] += 1
            self.stock_changes[payload.description] = sum(ln.quantity for ln in payload.lines)
            return "done", payload.description
        if isinstance(payload, Refund):
            self.effects[key] += 1
            ret = self.find_return(payload.centra_return_id)
            entry_id = self.new_id()
            if payload.via_psp:
                # Centra refunds what it computes for the return, whatever the caller believes.
                amount = own_return(ORDER, None, ret["lines"]).grand_total.value
                status = "FAILED" if self.gateway_fails else "SUCCESS"
                ret["entries"].append(refund_entry(entry_id, amount, status=status))
                return ("failed" if status == "FAILED" else "done"), str(entry_id)
            ret["entries"].append(
                refund_entry(
                    entry_id, payload.amount, payment_method="manual", reference=payload.reference
                )
            )
            return "done", str(entry_id)
        assert isinstance(payload, ExchangeOrder)
        if payload.order_number in self.exchange_orders:
            return "done", str(payload.order_number)  # Centra answers -5: it already exists
        self.effects[key] += 1
        units = sum(ln.quantity for ln in payload.lines)
        self.exchange_orders[payload.order_number] = units
        for line in payload.lines:
            self.stock[line.sku] = self.stock.get(line.sku, 0) - line.quantity
        return "done", str(payload.order_number)

    def read_back(self, record: ActionRecord) -> tuple[str, str | None]:
        """The executor's read-back of an unresolved action: what Centra shows."""
        payload = record.action().payload
        if isinstance(payload, CreateReturn):
            # As readback.py: externalId, shipment, and the role (a mixed return can have a
            # refund part and an exchange part on one shipment).
            exchange = is_exchange_part(payload.external_id, payload.comment)
            found = [
                r
                for r in self.parts(payload.external_id, exchange=exchange)
                if r["shipment_id"] == payload.shipment_id
            ]
            return ("done", str(found[0]["id"])) if found else ("pending", None)
        if isinstance(payload, Restock):
            shown = payload.description in self.stock_changes
            return ("done", payload.description) if shown else ("pending", None)
        if isinstance(payload, Refund):
            entries = self.find_return(payload.centra_return_id)["entries"]
            if any(e["status"] == "SUCCESS" for e in entries):
                return "done", str(entries[-1]["id"])
            return ("failed", None) if entries else ("pending", None)
        assert isinstance(payload, ExchangeOrder)
        shown = payload.order_number in self.exchange_orders
        return ("done", str(payload.order_number)) if shown else ("pending", None)


def _with_state(record: ActionRecord, state: str, ref: str | None) -> ActionRecord:
    return ledger_row(record.action(), state, ref)


class PlannerMachine(RuleBasedStateMachine):
    """Random return histories against a simulated Centra and ledger."""

    def __init__(self) -> None:
        super().__init__()
        self.reveni: dict[str, ReveniState] = {}
        self.centra = CentraSim()
        self.ledger: dict[str, ActionRecord] = {}
        self.minute = 0

    def tick(self) -> int:
        self.minute += 1
        return self.minute

    # ------------------------------------------------------------------ Reveni side

    @initialize(
        stock=st.fixed_dictionaries({"X": st.integers(0, 2), "Y": st.integers(0, 2)}),
        data=st.data(),
    )
    def start(self, stock: dict[str, int], data: st.DataObject) -> None:
        self.centra.stock = dict(stock)
        for _ in range(data.draw(st.integers(1, 3), label="returns")):
            self.new_return(data)

    @precondition(lambda self: len(self.reveni) < 3)
    @rule(data=st.data())
    def another_return(self, data: st.DataObject) -> None:
        self.new_return(data)

    def new_return(self, data: st.DataObject) -> None:
        # Refund, exchange and mixed returns alike; a mixed one has a refunded and an exchanged
        # item at least (in any order, maybe of one SKU) and maybe a third of either role.
        kind = data.draw(st.sampled_from(("refund", "exchange", "mixed")), label="kind")
        replacement = st.sampled_from(REPLACEMENTS)
        roles: list[str | None]
        if kind == "mixed":
            roles = [None, data.draw(replacement, label="replacement")]
            if data.draw(st.booleans(), label="third item"):
                roles.append(data.draw(st.sampled_from((None, *REPLACEMENTS)), label="role"))
            roles = data.draw(st.permutations(roles), label="item order")
        else:
            n_items = data.draw(st.integers(1, 2), label="items")
            roles = [None if kind == "refund" else data.draw(replacement) for _ in range(n_items)]
        items = []
        for exchange in roles:
            sku = data.draw(st.sampled_from(sorted(PRICES)), label="sku")
            spec = {
                "sku": sku,
                "quantity": data.draw(st.sampled_from((1, 1, 2)), label="quantity"),
                "status": "pending",
                "accepted_quantity": None,
                "restock": None,
                "exchange": None if exchange is None else {"sku": exchange, "quantity": 1},
                "unit_price": data.draw(st.sampled_from(PRICES[sku]), label="price"),
                "currency": "EUR",
            }
            items.append(spec)
        state = ReveniState(
            rid=f"r{len(self.reveni) + 1}",
            created=self.tick(),
            instant=data.draw(st.booleans(), label="instant"),
            items=items,
        )
        if state.instant and state.type_() != "exchange":
            # Reveni pays an instant refund at once, for what was asked.
            self._add_refund(state, REFUND_KINDS[1], self._asked_value(state), "paid")
        event(f"new {state.type_()} return" + (" (instant)" if state.instant else ""))
        state.snap(self.minute)
        self.reveni[state.rid] = state
        for _ in range(data.draw(st.integers(0, 3), label="moves before the first sync")):
            self.move_return(state, data)

    @precondition(lambda self: bool(self.reveni))
    @rule(data=st.data())
    def move(self, data: st.DataObject) -> None:
        state = data.draw(st.sampled_from(sorted(self.reveni.values(), key=lambda s: s.rid)))
        self.move_return(state, data)

    def move_return(self, state: ReveniState, data: st.DataObject) -> None:
        moves = sorted(allowed_moves(state.status, state.held_from))
        if not moves:
            return
        # Decisions are what bring effects: make them likelier than wandering.
        weighted = [m for m in moves for _ in range(3 if m in ACCEPTING else 1)]
        target = data.draw(st.sampled_from(weighted), label="status")
        if target in ("accepted", "partially_accepted") and state.status != "on_hold":
            self._decide(state, target, data)  # back from on_hold: the decision stands
        elif target == "rejected":
            for spec in state.items:
                spec.update(status="rejected", accepted_quantity=0, restock=False)
        state.held_from = state.status if target == "on_hold" else None
        state.status = target
        state.snap(self.tick())

    def _decide(self, state: ReveniState, target: str, data: st.DataObject) -> None:
        for spec in state.items:
            quantity = spec["quantity"]
            accepted = quantity
            if target == "partially_accepted":
                accepted = data.draw(st.integers(0, quantity), label="accepted")
            spec.update(
                status="accepted" if accepted else "rejected",
                accepted_quantity=accepted,
                restock=bool(accepted) and data.draw(st.booleans(), label="restock"),
            )
        if not any(spec["accepted_quantity"] for spec in state.items):
            first = state.items[0]  # partially accepted: at least one unit was accepted
            first.update(status="accepted", accepted_quantity=1, restock=True)
        if not state.instant and data.draw(st.booleans(), label="refund at acceptance"):
            self.add_refund(state, data)  # Reveni refunds a standard return when it accepts it

    @precondition(lambda self: any(s.status in ACCEPTING for s in self.reveni.values()))
    @rule(data=st.data())
    def refund_appears(self, data: st.DataObject) -> None:
        candidates = sorted(
            (s for s in self.reveni.values() if s.status in ACCEPTING), key=lambda s: s.rid
        )
        state = data.draw(st.sampled_from(candidates))
        if self.add_refund(state, data):
            state.snap(self.tick())

    def add_refund(self, state: ReveniState, data: st.DataObject) -> bool:
        """A refund Reveni records for an accepted return (at most two per return)."""
        live = [r for r in state.refunds if r["status"] != "failed"]
        if len(state.refunds) >= 2:
            return False
        kind = data.draw(st.sampled_from(REFUND_KINDS), label="refund kind")
        if live and (live[0]["method"], live[0]["paid_by"]) != kind[:2]:
            return False  # Reveni does not pay one return in two forms (that is not ours)
        basis = data.draw(st.sampled_from(("items", "centra", "off")), label="amount")
        amount = self._accepted_value(state, refund_items_only=basis != "centra")
        if basis == "off":
            amount += Decimal("1.00")
        status = data.draw(st.sampled_from((kind[2], kind[2], "failed")), label="refund status")
        if amount <= 0:
            return False
        self._add_refund(state, kind, amount, status)
        return True

    def _add_refund(
        self, state: ReveniState, kind: tuple[str, str, str], amount: Decimal, status: str
    ) -> None:
        state.refunds.append(
            {
                "id": f"{state.rid}-f{len(state.refunds)}",
                "method": kind[0],
                "amount": str(amount),
                "currency": "EUR",
                "status": status,
                "paid_by": kind[1],
                "created_at": (T0 + timedelta(minutes=self.minute)).isoformat(),
            }
        )

    @staticmethod
    def _asked_value(state: ReveniState) -> Decimal:
        return sum(
            (
                Decimal(s["unit_price"]) * s["quantity"]
                for s in state.items
                if s["exchange"] is None
            ),
            Decimal("0.00"),
        )

    @staticmethod
    def _accepted_value(state: ReveniState, *, refund_items_only: bool) -> Decimal:
        return sum(
            (
                Decimal(s["unit_price"]) * (s["accepted_quantity"] or 0)
                for s in state.items
                if s["status"] == "accepted" and not (refund_items_only and s["exchange"])
            ),
            Decimal("0.00"),
        )

    # ------------------------------------------------------------------ Centra side

    @rule(sku=st.sampled_from(REPLACEMENTS), units=st.integers(1, 2))
    def stock_returns(self, sku: str, units: int) -> None:
        self.centra.stock[sku] = self.centra.stock.get(sku, 0) + units

    @precondition(lambda self: len(self.centra.by_hand) < 2)
    @rule(data=st.data())
    def refund_by_hand(self, data: st.DataObject) -> None:
        """Someone refunds on the order directly in Centra: mostly the amount of a refund
        Reveni has (CX refunding the shopper themselves), sometimes something else."""
        amounts = sorted({r["amount"] for s in self.reveni.values() for r in s.refunds})
        self._by_hand(data.draw(st.sampled_from([*amounts, *amounts, "5.00"]), label="by hand"))

    @precondition(lambda self: len(self.centra.by_hand) < 2 and any(self._pending_psp_refunds()))
    @rule(data=st.data())
    def refund_by_hand_before_the_send(self, data: st.DataObject) -> None:
        """The race: a PSP refund is planned and not sent yet (the run ended) when someone
        refunds the shopper by hand for the same amount."""
        amounts = sorted(self._pending_psp_refunds())
        self._by_hand(data.draw(st.sampled_from(amounts), label="by hand, before the send"))
        event("by hand, a refund pending")

    def _pending_psp_refunds(self) -> list[str]:
        return [
            str(payload.amount)
            for row in self.ledger.values()
            if row.kind == "refund" and row.state == "pending"
            if isinstance(payload := row.action().payload, Refund) and payload.via_psp
        ]

    def _by_hand(self, amount: str) -> None:
        entry = refund_entry(self.centra.new_id(), amount, payment_method=PSP_METHOD)
        entry["createdAt"] = (T0 + timedelta(minutes=self.tick())).isoformat()
        self.centra.by_hand.append(entry)

    @rule()
    def toggle_gateway(self) -> None:
        self.centra.gateway_fails = not self.centra.gateway_fails

    # ------------------------------------------------------------------ sync + executor

    @precondition(lambda self: bool(self.reveni))
    @rule(data=st.data())
    def sync(self, data: st.DataObject) -> None:
        """One sync run over what was observed (maybe stale, duplicated, reordered)."""
        observed: list[ReveniReturn] = []
        for rid in sorted(self.reveni):
            snapshots = self.reveni[rid].snapshots
            newest_first = st.sampled_from(snapshots[::-1])  # mostly fresh, sometimes stale
            picks = data.draw(st.lists(newest_first, min_size=1, max_size=2), label=f"{rid} seen")
            observed.extend(picks)
        observed = data.draw(st.permutations(observed), label="order")
        known = data.draw(st.sets(st.sampled_from(REPLACEMENTS)), label="stock read")
        stock = {sku: self.centra.stock.get(sku, 0) for sku in known}
        self.run(observed, stock, data)

    def run(
        self, observed: list[ReveniReturn], stock: dict[str, int], data: st.DataObject | None
    ) -> dict[str, ReturnPlan]:
        rids = {r.id for r in observed}
        ledger = {k: v for k, v in self.ledger.items() if v.reveni_return_id in rids}
        plans = plan_returns(
            observed, self.centra.histories(), ledger, stock=stock, config=CONFIG, now=NOW
        )
        assert plans == plan_returns(
            list(reversed(observed)),
            self.centra.histories(),
            ledger,
            stock=stock,
            config=CONFIG,
            now=NOW,
        ), "the plan depends on the order of observations"
        emitted: set[str] = set()
        for plan in plans.values():
            for exc in plan.exceptions:
                event(f"exception {exc.code}" + (" (mapping)" if "fit on no" in exc.detail else ""))
            if plan.adopted:
                event("adopted " + ",".join(sorted({k.split(":")[0] for k in plan.adopted})))
            for action in plan.actions:
                event(f"action {action.kind}")
            for key, ref in plan.adopted.items():
                assert self.ledger.get(key) is None or self.ledger[key].state != "done"
                self.ledger[key] = _adopted_row(self.ledger.get(key), key, ref, plan)
            if plan.held:
                event("held " + ",".join(sorted({self._state_of(k) for k in plan.held})))
            for key in plan.held:  # as the sync does: a held key left pending is blocked
                assert key not in {a.key for a in plan.actions}, f"{key} held and emitted"
                row = self.ledger.get(key)
                if row is not None and row.state == "pending":
                    self.ledger[key] = _with_state(row, "blocked", None)
            for action in plan.actions:
                assert action.key not in emitted, f"{action.key} planned twice"
                emitted.add(action.key)
                row = self.ledger.get(action.key)
                assert row is None or row.state == "pending", f"{action.key} is {row.state}"
                for dep in action.depends_on:
                    assert self._done(dep), f"{action.key} emitted before {dep} is done"
                self.ledger.setdefault(action.key, ledger_row(action, "pending"))
        covered = refunds_made_in_centra(
            latest_snapshots(observed), self.centra.histories(), CONFIG
        )
        self.execute(data, covered)
        return plans

    def _state_of(self, key: str) -> str:
        row = self.ledger.get(key)
        return "unplanned" if row is None else row.state

    def _done(self, key: str) -> bool:
        row = self.ledger.get(key)
        return row is not None and row.state == "done"

    def execute(
        self, data: st.DataObject | None, covered: Mapping[str, object] | None = None
    ) -> None:
        """The executor: every pending row whose prerequisites are done, once. `covered`:
        the returns whose refund a refund made by hand stands for, as this run saw them."""
        for key in sorted(self.ledger):
            row = self.ledger[key]
            if row.state != "pending" or not all(self._done(d) for d in row.depends_on):
                continue
            payload = row.action().payload
            if isinstance(payload, Refund) and payload.via_psp:
                assert row.reveni_return_id not in (covered or {}), (
                    f"{key}: PSP refund sent although a refund made by hand stands for it"
                )
            crash = "none"
            if data is not None:
                crash = data.draw(
                    st.sampled_from(("after", "none", "none", "before", "later")), label=key
                )
            if crash == "later":
                continue  # the executor's budget is spent: it stays pending for a later run
            self.ledger[key] = _with_state(row, "in_flight", None)
            event(f"crash {crash}")
            if crash == "before":
                continue  # died before sending: nothing reached Centra
            state, ref = self.centra.apply(key, row.action())
            if crash == "none":
                self.ledger[key] = _with_state(row, state, ref)

    @precondition(lambda self: any(r.state == "in_flight" for r in self.ledger.values()))
    @rule()
    def read_back(self) -> None:
        """The executor resolves what a crash left in flight by reading Centra back."""
        for key, row in list(self.ledger.items()):
            if row.state == "in_flight":
                state, ref = self.centra.read_back(row)
                self.ledger[key] = _with_state(row, state, ref)

    @precondition(
        lambda self: any(
            r.state == "in_flight" and r.kind != "restock" for r in self.ledger.values()
        )
    )
    @rule(data=st.data())
    def lose_ledger_row(self, data: st.DataObject) -> None:
        """A crash loses a row in flight (the planner must find its effect in Centra)."""
        lost = sorted(
            k for k, r in self.ledger.items() if r.state == "in_flight" and r.kind != "restock"
        )
        del self.ledger[data.draw(st.sampled_from(lost), label="lost")]

    @precondition(lambda self: bool(self.reveni))
    @rule()
    def settle(self) -> None:
        """Everything observed fresh, every crash read back, run until nothing is left to do."""
        if any(r.state == "in_flight" for r in self.ledger.values()):
            self.read_back()
        latest = [s.latest for s in self.reveni.values()]
        for _ in range(8):
            plans = self.run(latest, dict(self.centra.stock), None)
            if not any(p.actions or p.adopted for p in plans.values()):
                break
        else:
            raise AssertionError("the plan does not converge")
        for rid, plan in plans.items():
            self.check_settled(self.reveni[rid].latest, plan)

    def check_settled(self, ret: ReveniReturn, plan: ReturnPlan) -> None:
        if ret.status in DECIDED:
            assert plan.complete or plan.exceptions, (ret.id, plan)
        if ret.status not in ACCEPTING:
            return
        restock_units = sum(i.accepted_units for i in ret.return_items if i.restock)
        restocked = self.centra.stock_changes.get(f"returnbridge restock {ret.id}")
        # every accepted restock item is restocked, or an open exception says why not
        assert not restock_units or restocked == restock_units or plan.exceptions
        if plan.exceptions:
            return
        assert plan.complete
        mixed = is_mixed(ret)
        for exchange in (False, True):
            # each role's accepted units, exactly, in the parts of that role
            returned: Counter[str] = Counter()
            for r in self.centra.parts(ret.id, exchange=exchange):
                for sku, qty in _skus(r["lines"]):
                    returned[sku] += qty
            accepted: Counter[str] = Counter()
            for item in ret.return_items:
                if (mixed and item.exchange is not None) == exchange:
                    accepted[item.sku] += item.accepted_units
            assert returned == +accepted, (ret.id, exchange, returned, accepted)
        if mixed:
            event("settled: mixed return")
        refund_parts = self.centra.parts(ret.id, exchange=False)
        live = sorted(
            (r for r in ret.refunds if r.status != "failed"), key=lambda r: (r.created_at, r.id)
        )
        if live and refund_parts:
            assert all(any(e["status"] == "SUCCESS" for e in r["entries"]) for r in refund_parts), (
                "a confirmed refund is not credited"
            )
            credited = sum(
                (
                    Decimal(e["value"]["value"])
                    for r in refund_parts
                    for e in r["entries"]
                    if e["status"] == "SUCCESS"
                ),
                Decimal(0),
            )
            assert credited == live[0].amount, (ret.id, credited, live[0].amount)
            if mixed:
                event("settled: mixed return credited on its refund parts")
        exchanges = [i for i in ret.return_items if i.exchange is not None]
        for n, item in enumerate(exchanges):
            if item.accepted_units:
                number = exchange_order_number(ret.id, n, CONFIG.exchange_order_base)
                assert number in self.centra.exchange_orders

    # ------------------------------------------------------------------ invariants

    @invariant()
    def one_centra_effect_per_key(self) -> None:
        assert all(count <= 1 for count in self.centra.effects.values()), self.centra.effects

    @invariant()
    def never_psp_and_non_psp_credit_on_one_return(self) -> None:
        for rid, state in self.reveni.items():
            entries = [
                e
                for r in self.centra.returns
                if r["external_id"] == rid
                for e in r["entries"]
                if e["status"] == "SUCCESS"
            ]
            psp = any(e["paymentMethod"] == PSP_METHOD for e in entries)
            manual = any(e["paymentMethod"] == "manual" for e in entries)
            assert not (psp and manual), f"{rid} credited by PSP and outside it"
            reveni_paid = any(
                r["paid_by"] == "reveni" and r["status"] != "failed" for r in state.refunds
            )
            assert not (psp and reveni_paid), f"{rid}: PSP refund although Reveni paid"

    @invariant()
    def psp_refunds_only_when_centra_computes_revenis_amount(self) -> None:
        for rid, state in self.reveni.items():
            mine = self.centra.parts(rid, exchange=False)  # an exchange part is never credited
            if not any(e["paymentMethod"] == PSP_METHOD for r in mine for e in r["entries"]):
                continue
            live = [r for r in state.refunds if r["status"] != "failed"]
            computed = sum(
                (own_return(ORDER, None, r["lines"]).grand_total.value for r in mine), Decimal(0)
            )
            assert live and Decimal(live[0]["amount"]) == computed, (rid, live, computed)
            psp_credited = sum(
                (
                    Decimal(e["value"]["value"])
                    for r in mine
                    for e in r["entries"]
                    if e["paymentMethod"] == PSP_METHOD and e["status"] == "SUCCESS"
                ),
                Decimal(0),
            )
            assert psp_credited <= Decimal(live[0]["amount"]), (rid, psp_credited, live)

    @invariant()
    def exchange_parts_are_never_credited(self) -> None:
        for rid in self.reveni:
            for r in self.centra.parts(rid, exchange=True):
                assert not r["entries"], f"{rid}: exchange part {r['id']} credited"

    @invariant()
    def a_mixed_return_credits_its_refunded_units_only(self) -> None:
        """Whatever the parts: the credited Centra returns of a mixed return hold no more units
        per SKU than its accepted refunded items (an exchanged unit is never credited)."""
        for rid, state in self.reveni.items():
            if state.type_() != "mixed":
                continue
            refunded: Counter[str] = Counter()
            for spec in state.items:
                if spec["exchange"] is None:
                    refunded[spec["sku"]] += spec["accepted_quantity"] or 0
            credited: Counter[str] = Counter()
            for r in self.centra.returns:
                if r["external_id"] == rid and any(e["status"] == "SUCCESS" for e in r["entries"]):
                    for sku, qty in _skus(r["lines"]):
                        credited[sku] += qty
            assert all(credited[sku] <= refunded[sku] for sku in credited), (rid, credited)

    @invariant()
    def a_mixed_returns_parts_hold_one_role_each(self) -> None:
        """No Centra return mixes a mixed return's refunded and exchanged SKUs (a SKU in both
        roles is checked once settled, by units)."""
        for rid, state in self.reveni.items():
            if state.type_() != "mixed":
                continue
            skus = {
                exchange: {i["sku"] for i in state.items if (i["exchange"] is not None) == exchange}
                for exchange in (False, True)
            }
            for exchange in (False, True):
                for r in self.centra.parts(rid, exchange=exchange):
                    for sku, _ in _skus(r["lines"]):
                        assert sku in skus[exchange], (rid, r, skus)

    @invariant()
    def credits_never_exceed_what_was_captured(self) -> None:
        credited = sum(
            (
                Decimal(e["value"]["value"])
                for r in self.centra.returns
                for e in r["entries"]
                if e["status"] == "SUCCESS"
            ),
            Decimal(0),
        )
        assert credited <= CAPTURED, credited

    @invariant()
    def exchange_orders_only_with_stock(self) -> None:
        assert all(units >= 0 for units in self.centra.stock.values()), self.centra.stock

    @invariant()
    def no_shipment_line_returned_twice(self) -> None:
        returned: Counter[int] = Counter()
        for r in self.centra.returns:
            for sline, qty in r["lines"]:
                returned[sline] += qty
        assert all(returned[s] <= SHIPPED[s] for s in returned), returned


_SKU_OF_SHIPMENT_LINE = {
    sl.id: line.sku
    for s in ORDER.shipments
    for sl in s.lines
    if (line := ORDER.line(sl.order_line_id)) is not None
}


def _skus(lines: list[tuple[int, int]]) -> list[tuple[str, int]]:
    """(SKU, units) of a simulated Centra return's (shipment line, units)."""
    return [(_SKU_OF_SHIPMENT_LINE[sline], qty) for sline, qty in lines]


KIND_OF_PREFIX = {
    "return": "create_return",
    "restock": "restock",
    "refund": "refund",
    "exchange": "exchange_order",
}


def _adopted_row(row: ActionRecord | None, key: str, ref: str, plan: ReturnPlan) -> ActionRecord:
    """The ledger row of an adopted effect (the sync records it as done without sending); a
    key the ledger never had gets a row without payload, as the sync has no action for it."""
    if row is not None:
        return _with_state(row, "done", ref)
    return ActionRecord(
        key=key,
        kind=KIND_OF_PREFIX[key.split(":", 1)[0]],
        reveni_return_id=plan.reveni_return_id,
        order_number=NUMBER,
        state="done",
        attempts=0,
        payload={},
        depends_on=(),
        centra_ref=ref,
        last_error=None,
        not_before=None,
        created_at=T0,
        updated_at=T0,
    )


TestPlanner = PlannerMachine.TestCase
TestPlanner.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
