"""Validate Reveni returns against Centra order history (step 1 of
docs/architecture.md#the-life-of-a-return).

A pure function: given the Reveni returns, the Centra orders they name and the Centra returns
already on those orders, say which returns are invalid and why, *before* anything is written to
Centra. The four checks, in order, each with its owner (codes.py):

1. `order_not_found` — the order number does not exist in Centra (or is not a number at all);
2. `order_not_returnable` — the order is ARCHIVED or CANCELLED;
3. `sku_not_in_order` — a returned SKU is on no line of the order;
4. `quantity_exceeds_shipped` — a SKU's quantity is above what was shipped minus what is already
   returned.

"Already returned" counts, per order and SKU: Centra returns that no Reveni return of this run
accounts for (made directly in Centra, or by another tool), plus the claims of the order's
*earlier* Reveni returns (by creation time, then id). A return claims its accepted units once
inspected and its requested units before that; rejected, cancelled and expired returns claim
nothing and are not validated (nothing will be written for them). A Centra return carrying a
Reveni return id as `externalId` is that return's own and is not counted twice (unless that
return no longer claims anything: then the Centra return's units are simply returned). An
earlier return that itself asked too much only consumes what was left, so one bad return does
not cascade.

Shipped quantities are derived from shipments marked shipped and their lines (confirmed
fields), not from the order line's `shippedQuantity` (a third-party field, [3P]).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from returnbridge.connectors.centra.models import Order
from returnbridge.connectors.centra.models import Return as CentraReturn
from returnbridge.connectors.reveni.models import Return as ReveniReturn
from returnbridge.connectors.reveni.statuses import ACCEPTED, WITHDRAWN
from returnbridge.core.codes import ReturnException

NOT_RETURNABLE = frozenset({"ARCHIVED", "CANCELLED"})


@dataclass(frozen=True)
class OrderHistory:
    """What Centra knows about one order: the order (lines, shipments) and its returns."""

    order: Order
    returns: Sequence[CentraReturn] = field(default_factory=tuple)

    def shipped_by_sku(self) -> Counter[str]:
        """Units shipped per SKU, over every shipment marked shipped."""
        sku_of_line = {line.id: line.sku for line in self.order.lines}
        shipped: Counter[str] = Counter()
        for shipment in self.order.shipments:
            if shipment.is_shipped:
                for sline in shipment.lines:
                    shipped[sku_of_line[sline.order_line_id]] += sline.quantity
        return shipped


def _is_validated(ret: ReveniReturn) -> bool:
    return not (ret.status in WITHDRAWN or ret.status == "rejected")


def claimed_units(ret: ReveniReturn) -> Counter[str]:
    """Units per SKU this return takes from the order: accepted once inspected, requested before;
    nothing when rejected, cancelled or expired."""
    claims: Counter[str] = Counter()
    if not _is_validated(ret):
        return claims
    decided = ret.status in ACCEPTED or ret.status == "completed"
    for item in ret.return_items:
        claims[item.sku] += item.accepted_units if decided else item.quantity
    return +claims


def validate_returns(
    returns: Iterable[ReveniReturn],
    orders: Mapping[int, OrderHistory],
    *,
    not_returnable: frozenset[str] = NOT_RETURNABLE,
) -> dict[str, list[ReturnException]]:
    """The validation exceptions of every return, keyed by Reveni return id (empty list: valid).

    `orders` holds the Centra history of every order number the returns name that Centra has;
    a number missing from it is `order_not_found`."""
    result: dict[str, list[ReturnException]] = {}
    by_order: dict[int, list[ReveniReturn]] = defaultdict(list)
    for ret in returns:
        result[ret.id] = []
        if not _is_validated(ret):
            continue
        number = ret.order.number
        if number is None or number not in orders:
            result[ret.id].append(
                ReturnException(
                    "order_not_found",
                    ret.id,
                    number,
                    detail=f"Centra has no order {ret.order.name!r}",
                )
            )
            continue
        history = orders[number]
        if history.order.status in not_returnable:
            result[ret.id].append(
                ReturnException(
                    "order_not_returnable",
                    ret.id,
                    number,
                    detail=f"order {number} is {history.order.status}",
                )
            )
            continue
        by_order[number].append(ret)
    claiming = {ret.id for rets in by_order.values() for ret in rets}
    for number, order_returns in by_order.items():
        _check_quantities(orders[number], order_returns, claiming, result)
    return result


def _check_quantities(
    history: OrderHistory,
    order_returns: list[ReveniReturn],
    claiming: set[str],
    result: dict[str, list[ReturnException]],
) -> None:
    number = history.order.number
    on_order = {line.sku for line in history.order.lines}
    shipped = history.shipped_by_sku()
    remaining = shipped.copy()
    for centra_return in history.returns:
        if centra_return.external_id in claiming:
            continue  # that Reveni return's own: counted as its claim
        for line in centra_return.lines:
            remaining[line.sku] -= line.quantity
    for ret in sorted(order_returns, key=lambda r: (r.created_at, r.id)):
        problems = result[ret.id]
        requested: Counter[str] = Counter()
        for item in ret.return_items:
            requested[item.sku] += item.quantity
        for sku in requested:
            if sku not in on_order:
                problems.append(
                    ReturnException(
                        "sku_not_in_order",
                        ret.id,
                        number,
                        sku=sku,
                        detail=f"{sku} is not on order {number}",
                    )
                )
        for sku, units in claimed_units(ret).items():
            if sku not in on_order:
                continue
            left = max(remaining[sku], 0)
            if units > left:
                problems.append(
                    ReturnException(
                        "quantity_exceeds_shipped",
                        ret.id,
                        number,
                        sku=sku,
                        detail=(
                            f"{units} x {sku} returned; order {number} shipped {shipped[sku]}, "
                            f"{shipped[sku] - left} already returned or claimed, {left} left"
                        ),
                    )
                )
            remaining[sku] -= min(units, left)
