"""How each action kind is sent to Centra: its one write, and what the answer proves.

Beside `readback.py` (how each kind is read back), one function per kind:

| kind             | call                                                                    |
|------------------|-------------------------------------------------------------------------|
| `create_return`  | `createReturn` on the shipment's lines, `externalId` = the Reveni return |
|                  | id, stock untouched (the restock action adds it)                         |
| `restock`        | `changeStock` into the returns warehouse, described by the restock key   |
| `refund`         | `PUT /returns/{id}` completed, refunded through the PSP or recorded as a |
|                  | manual refund (Reveni paid)                                              |
| `exchange_order` | `POST /order`: internal, unit price 0, linked to the return, shipped to  |
|                  | the origin order's address; the next candidate number when another       |
|                  | exchange holds one                                                       |

The answer is `Found` (Centra's id of the effect), `Refused` (Centra recorded the attempt and said
no), `InProgress` (a refund the PSP has not answered yet) or None (accepted, without saying what was
done: read back). Every read and write passes through a `Channel` (the executor's budget, and its
last check that the claim is still ours); Centra's errors propagate, for the outcome state machine
(`outcomes.py`) to judge. Centra's wire format is the connector's (`connectors/centra`): the calls
here pass typed inputs and read typed answers."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Final, Protocol, TypeVar

from returnbridge.connectors.centra.client import CentraClient
from returnbridge.connectors.centra.inputs import (
    CreatedFromOrigin,
    ManualRefund,
    OrderCreateInput,
    OrderProduct,
    ReturnLineInput,
    StockDelta,
)
from returnbridge.connectors.centra.models import (
    Address,
    Order,
    PaymentEntryStatus,
    ReturnUpdateResult,
)
from returnbridge.connectors.errors import RejectedError
from returnbridge.core.actions import Action, CreateReturn, ExchangeOrder, Refund, Restock
from returnbridge.sync.readback import Found, InProgress, Problem, Refused, amount_problems

log = logging.getLogger(__name__)

T = TypeVar("T")

# Order API error codes ([C] Centra's Order API reference, `POST /order`).
ORDER_NO_STOCK: Final = -2
ORDER_DUPLICATE_NUMBER: Final = -5


Sent = Found | Refused | InProgress | None
"""What an answer proves: the effect (`Found`), a refusal, a refund under way at the PSP, or
nothing (None: the write was accepted, read it back to know what it did)."""


class CannotSend(Exception):
    """The action cannot be sent as planned (found before sending anything)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class Channel(Protocol):
    """The executor's way to Centra for one action."""

    async def read(self) -> None:
        """Before each read: a budget slot."""
        ...

    async def write(self, call: Callable[[], Awaitable[T]], *, metered: bool = True) -> T:
        """Send one write: a budget slot (a GraphQL mutation's; for an Order API write,
        `metered=False`, a plain request's: Centra meters mutations on the GraphQL Integration
        API, and the Order API is a plugin of its own), the last check that the claim is still
        ours, and counting it unless it provably never left."""
        ...


class ExchangeOrigins:
    """The origin order and shipping address of the exchange orders one executor run sends,
    read together: the first exchange that needs its origin reads those of every exchange
    waiting (`waiting()`: their origin order numbers), one batched read each of orders and
    addresses (at most one request's batch, `orders_per_query`), paid by that exchange's
    channel. `orders`: orders the sync read this run (an origin found there is not read again:
    returnbridge's effects do not change an order's currency or market). An address is used once
    and forgotten, so a resend reads it again."""

    def __init__(
        self,
        centra: CentraClient,
        waiting: Callable[[], Iterable[int]],
        *,
        orders: Mapping[int, Order] | None = None,
    ) -> None:
        self.centra = centra
        self._waiting = waiting
        self._known = orders if orders is not None else {}
        self._orders: dict[int, Order | None] = {}
        self._addresses: dict[int, Address | None] = {}
        self._lock = asyncio.Lock()

    def _batch(self, number: int, missing: Callable[[int], bool]) -> list[int]:
        size = max(1, int(getattr(self.centra, "orders_per_query", 50)))
        batch = [number]
        for other in self._waiting():
            if len(batch) >= size:
                break
            if other not in batch and missing(other):
                batch.append(other)
        return batch

    async def origin(self, number: int, channel: Channel) -> Order | None:
        async with self._lock:
            known = self._known.get(number)
            if known is not None:
                return known
            if number not in self._orders:
                batch = self._batch(
                    number, lambda n: n not in self._orders and self._known.get(n) is None
                )
                await channel.read()
                found = await self.centra.orders_by_number(batch)
                for n in batch:
                    self._orders[n] = found.get(n)
            return self._orders.pop(number)

    async def address(self, number: int, channel: Channel) -> Address | None:
        async with self._lock:
            if number not in self._addresses:
                batch = self._batch(number, lambda n: n not in self._addresses)
                await channel.read()
                found = await self.centra.shipping_addresses(batch)
                for n in batch:
                    self._addresses[n] = found.get(n)
            return self._addresses.pop(number)


async def send(
    centra: CentraClient,
    action: Action,
    channel: Channel,
    origins: ExchangeOrigins | None = None,
) -> Sent:
    """Send `action`'s one write; Centra's id of the effect and a response summary. `origins`:
    an exchange's origin order and address, read together with the other exchanges' (else
    read alone)."""
    payload = action.payload
    if isinstance(payload, CreateReturn):
        return await _create_return(centra, payload, channel)
    if isinstance(payload, Restock):
        return await _restock(centra, payload, channel)
    if isinstance(payload, Refund):
        return await _refund(centra, payload, channel)
    assert isinstance(payload, ExchangeOrder)
    return await _exchange(centra, action, payload, channel, origins)


async def _create_return(centra: CentraClient, payload: CreateReturn, channel: Channel) -> Sent:
    created = await channel.write(
        lambda: centra.create_return(
            shipment_id=payload.shipment_id,
            lines=[ReturnLineInput(ln.shipment_line_id, ln.quantity) for ln in payload.lines],
            stock_policy="remove",  # no stock added here: the restock action does that
            external_id=payload.external_id,
            comment=payload.comment or None,
        ),
    )
    ret = created.value
    return Found(str(ret.id), f"return {ret.id} ({ret.status}){_warned(created.warnings)}")


async def _restock(centra: CentraClient, payload: Restock, channel: Channel) -> Sent:
    change = await channel.write(
        lambda: centra.change_stock(
            description=payload.description,
            deltas=[StockDelta(ln.variant_id, ln.size_id, ln.quantity) for ln in payload.lines],
            into_warehouse_id=payload.warehouse_id,
        ),
    )
    return Found(str(change.value.id), f"stock change {change.value.id}{_warned(change.warnings)}")


async def _refund(centra: CentraClient, payload: Refund, channel: Channel) -> Sent:
    answer = await channel.write(
        metered=False,  # the Order API: not in the GraphQL mutation budget
        call=lambda: centra.update_return(
            payload.centra_return_id,
            completed=True,
            refund_payment=payload.via_psp,
            manual_refund=(
                None if payload.via_psp else ManualRefund(payload.amount, payload.reference)
            ),
        ),
    )
    return refund_answer(payload, answer)


def refund_answer(payload: Refund, answer: ReturnUpdateResult) -> Sent:
    """What `PUT /returns/{id}`'s answer proves: the refund entry's status and amount, if given.

    A refund request the PSP has not answered yet (PENDING) is in progress. An answer that does
    not say what was refunded (the documented answer carries only the return) proves nothing
    about money: None, for the caller to read the refund back (never to send it again)."""
    ref = str(payload.centra_return_id)
    completed = answer.return_completed
    refund = answer.refund
    if refund is None:
        if payload.amount == 0 and completed:
            return Found(ref, f"returnCompleted={completed}; nothing to refund")
        return None
    summary = (
        f"returnCompleted={completed}; refund {refund.status} {refund.amount} {refund.currency}"
    )
    if refund.failed:
        return Refused("refund_failed_at_gateway", summary)
    if refund.status == PaymentEntryStatus.PENDING:
        return InProgress(ref, f"{summary}: the PSP has not answered yet")
    problems: tuple[Problem, ...] = ()
    if refund.amount is not None:
        problems = amount_problems(refund.amount, payload, refund.currency)
    return Found(ref, summary, problems)


async def _exchange(
    centra: CentraClient,
    action: Action,
    payload: ExchangeOrder,
    channel: Channel,
    origins: ExchangeOrigins | None = None,
) -> Found:
    """The zero-value exchange order, under the first candidate number not held by another
    exchange (a number already holding ours is left to the read-back)."""
    origin_number = payload.origin_order_number
    if origins is None:
        origins = ExchangeOrigins(centra, list)
    origin = await origins.origin(origin_number, channel)
    if origin is None:
        raise CannotSend("exchange_order_failed", f"origin order {origin_number} not found")
    address = await origins.address(origin_number, channel)
    if address is None or not address.email or not address.country:
        raise CannotSend(
            "exchange_order_failed",
            f"origin order {origin_number} has no shipping address with e-mail and country",
        )
    order = functools.partial(
        OrderCreateInput,
        products=[OrderProduct(ln.sku, ln.quantity, Decimal(0)) for ln in payload.lines],
        created_from_origin=CreatedFromOrigin("return", payload.origin_return_id),
        internal_order=True,
        comment=f"returnbridge exchange {action.reveni_return_id}",
        address=address,
        currency=origin.currency,
        market_id=None if origin.market is None else origin.market.id,
        internal_comment=payload.marker,
    )
    candidates = payload.candidates()
    for index, number in enumerate(candidates):
        try:
            numbers = await channel.write(  # the Order API: not in the mutation budget
                functools.partial(centra.create_order, order(order_number=number)), metered=False
            )
        except RejectedError as exc:
            if getattr(exc, "error_code", None) != ORDER_DUPLICATE_NUMBER:
                raise
            if payload.marker is None or index == len(candidates) - 1:
                raise  # settled by reading back (an earlier send, or every number taken)
            await channel.read()
            taken = (await centra.orders_by_number([number])).get(number)
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


def _warned(warnings: tuple[object, ...]) -> str:
    return f"; warnings: {'; '.join(str(w) for w in warnings)}" if warnings else ""
