"""Reading Centra back: did an action's effect happen? (docs/architecture.md#reading-centra-back)

Centra has no idempotency keys, so an action whose outcome is unknown (a timeout after sending,
a crashed worker, an answer that could not be read) is settled by looking for its effect, never
by sending it again blindly. Each kind has one proof:

| kind             | proof                                                                   |
|------------------|-------------------------------------------------------------------------|
| `create_return`  | a return with `externalId` = the Reveni return id, on the payload's shipment |
|                  | and of its role (a mixed return's exchange part or not: the comment)      |
| `restock`        | a stock change whose description is exactly the payload's                 |
| `refund`         | the Centra return's settled refund (ours, for a manual refund); or the   |
|                  | return completed when there was nothing to refund                        |
| `exchange_order` | the order number exists                                                  |

The answer is `Found` (with Centra's id of the effect), `Absent` (safe to send), `Refused`
(Centra recorded the attempt and said no: a PSP refund the gateway refused) or `InProgress` (a
refund asked of an asynchronous PSP that has not answered yet: neither done nor absent, so it is
read again later and never sent twice; docs/architecture.md#refunds-at-the-psp). A read that fails
raises the client's error: the caller treats that as inconclusive. How each kind is sent is
`calls.py`, beside this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from returnbridge.connectors.centra.client import CentraClient
from returnbridge.connectors.centra.models import Return
from returnbridge.connectors.centra.refunds import (
    RefundAttempt,
    RefundState,
    RefundTypes,
    in_state,
    refund_attempts,
)
from returnbridge.core.actions import (
    Action,
    CreateReturn,
    ExchangeOrder,
    Refund,
    Restock,
    is_exchange_part,
)


@dataclass(frozen=True)
class Problem:
    """Something wrong found next to an effect that did happen: raised as an exception."""

    code: str
    detail: str
    # What the owner needs to act (core/codes.py `FACTS`), carried onto the exception: not part
    # of what the problem is, as `ReturnException.facts` is not part of its identity.
    facts: tuple[tuple[str, str], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Found:
    """The effect is in Centra; `ref` is Centra's id of it."""

    ref: str
    summary: str
    problems: tuple[Problem, ...] = field(default=())


@dataclass(frozen=True)
class Absent:
    """No trace of the effect: sending it (again) creates it once."""

    summary: str


@dataclass(frozen=True)
class Refused:
    """Centra recorded the attempt and refused it; sending again is not for us to decide."""

    code: str
    summary: str


@dataclass(frozen=True)
class InProgress:
    """The effect is under way and not yet settled: a PSP refund request still pending."""

    ref: str
    summary: str


ReadBack = Found | Absent | Refused | InProgress


async def read_back(centra: CentraClient, action: Action) -> ReadBack:
    """Look for `action`'s effect in Centra (raises the client's error when it cannot tell)."""
    payload = action.payload
    if isinstance(payload, CreateReturn):
        return await _created_return(centra, payload)
    if isinstance(payload, Restock):
        return await _restock(centra, payload)
    if isinstance(payload, Refund):
        return await _refund(centra, payload)
    assert isinstance(payload, ExchangeOrder)
    return await _exchange(centra, payload)


async def _created_return(centra: CentraClient, payload: CreateReturn) -> ReadBack:
    found = await centra.returns_by_external_id([payload.external_id])
    # A return split over shipments has one Centra return per shipment, all with the same
    # external id: only the one on this payload's shipment proves this action. A mixed return
    # can have two on one shipment, its refund part and its exchange part: the comment tells
    # them apart (actions.is_exchange_part).
    rid = payload.external_id
    exchange = is_exchange_part(rid, payload.comment)
    mine = sorted(
        (
            r
            for r in found.get(rid, [])
            if r.shipment_id == payload.shipment_id and is_exchange_part(rid, r.comment) == exchange
        ),
        key=lambda r: r.id,
    )
    if not mine:
        role = " (exchange part)" if exchange else ""
        where = f"externalId {rid}{role} on shipment {payload.shipment_id}"
        return Absent(f"no return with {where}")
    summary = f"return {mine[0].id} ({mine[0].status})"
    if len(mine) > 1:
        # No exception code covers a duplicated Centra return; the summary keeps it visible.
        summary += f"; DUPLICATED: returns {[r.id for r in mine]} carry this externalId"
    return Found(str(mine[0].id), summary)


async def _restock(centra: CentraClient, payload: Restock) -> ReadBack:
    changes = sorted(
        await centra.stock_changes_by_description(payload.description), key=lambda c: c.id
    )
    if not changes:
        return Absent(f"no stock change described {payload.description!r}")
    problems: tuple[Problem, ...] = ()
    if len(changes) > 1:
        ids = [c.id for c in changes]
        problems = (Problem("restock_duplicated", f"stock changes {ids} for one restock"),)
    return Found(str(changes[0].id), f"stock change {changes[0].id}", problems)


async def _refund(centra: CentraClient, payload: Refund) -> ReadBack:
    rows = await centra.returns({"id": [payload.centra_return_id]}, limit=1)
    ret = next((r for r in rows if r.id == payload.centra_return_id), None)
    if ret is None:
        return Absent(f"Centra return {payload.centra_return_id} not found")
    attempts = refund_attempts(ret.refund_payment_history, RefundTypes.of(centra.inferred))
    settled = in_state(attempts, RefundState.SETTLED)
    pending = in_state(attempts, RefundState.PENDING)
    if payload.via_psp:
        if settled:
            return _refund_found(settled[0], payload, ret)
        if pending:
            return _refund_pending(pending[0], ret)
        if attempts:
            return Refused(
                "refund_failed_at_gateway",
                f"return {ret.id}: PSP refunds {[a.id for a in attempts]} failed",
            )
    else:
        ours = [a for a in settled if a.external_reference == payload.reference]
        if ours:
            return _refund_found(ours[0], payload, ret)
        if settled:
            # Reveni paid the customer and Centra credited the return by other means.
            return Refused(
                "duplicate_refund",
                f"return {ret.id} already credited by entries {[a.id for a in settled]}, "
                f"not {payload.reference}",
            )
        if pending:
            # A PSP refund asked on a return Reveni paid: wait for the PSP's answer.
            return _refund_pending(pending[0], ret)
    if payload.amount == 0 and ret.status == centra.inferred.return_status_completed:
        return Found(str(ret.id), f"return {ret.id} completed, nothing to refund")
    return Absent(f"return {ret.id} ({ret.status}) has no refund entry")


def _refund_found(refund: RefundAttempt, payload: Refund, ret: Return) -> Found:
    summary = (
        f"return {ret.id} ({ret.status}): refund entry {refund.id} settled "
        f"{refund.amount} {refund.currency}"
    )
    return Found(str(refund.id), summary, amount_problems(refund.amount, payload, refund.currency))


def _refund_pending(refund: RefundAttempt, ret: Return) -> InProgress:
    summary = (
        f"return {ret.id} ({ret.status}): refund request {refund.entry.id} "
        f"{refund.amount} {refund.currency} pending at the PSP since "
        f"{refund.created_at.isoformat()}"
    )
    return InProgress(str(refund.entry.id), summary)


def amount_problems(
    amount: Decimal, payload: Refund, currency: str | None = None
) -> tuple[Problem, ...]:
    """A refund Centra made for another amount than Reveni's: `refund_amount_mismatch`, with
    Centra's side (`amount`, in `currency` when Centra said, else the refund's) as its facts."""
    if amount == payload.amount:
        return ()
    return (
        Problem(
            "refund_amount_mismatch",
            f"Centra credited {amount} {payload.currency}, Reveni refunded {payload.amount}",
            facts=(
                ("centra_amount", str(amount)),
                ("centra_currency", currency or payload.currency),
            ),
        ),
    )


async def _exchange(centra: CentraClient, payload: ExchangeOrder) -> ReadBack:
    """The exchange's order: the first candidate number whose order is marked as this
    exchange's. Candidates are tried in order when sending, so the first free one ends the
    search: nothing after it can be ours."""
    candidates = payload.candidates()
    orders = await centra.orders_by_number(candidates)
    order = None
    for number in candidates:
        order = orders.get(number)
        if order is None:
            return Absent(f"no order {number} (candidates {list(candidates)})")
        if payload.is_ours(order.internal_comment):
            break
    else:
        return Absent(f"orders {list(candidates)} all belong to other exchanges")
    assert order is not None
    problems: tuple[Problem, ...] = ()
    if order.grand_total.value != 0:
        problems = (
            Problem(
                "exchange_not_zero_value",
                f"exchange order {order.number} totals {order.grand_total.value} "
                f"{order.grand_total.currency}",
            ),
        )
    return Found(str(order.number), f"order {order.number} ({order.status})", problems)
