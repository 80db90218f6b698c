"""The ground truth of what happened in the simulated Centra (`GET /_sim/effects`).

Shape: the run summary's `centra` section. The scenario's initial data is not an
effect, except its `manual_refunds` (refunds made in Centra by someone else, `return_id: null`),
which reconciliation must see next to returnbridge's own.

`refunds[]` has one entry per refund asked of Centra with its current status: a synchronous
refund's REFUND entry (SUCCESS or FAILED), an asynchronous PSP's REFUND_REQUEST (PENDING until
the PSP answers, then SUCCESS or FAILED, `asynchronous: true`), with `requested_at` and
`answered_at` (null while pending) on the simulator clock; `entry_id` and `answered_by` (a
request's settlement entry, null while pending) order them even when the clock stands still
(entry ids only grow). The settlement entries are not listed again.
"""

from __future__ import annotations

from typing import Any

from returnbridge.simulators.centra.records import PaymentEntryRec, ReturnRec
from returnbridge.simulators.centra.state import CentraState


def effects(state: CentraState) -> dict[str, list[dict[str, Any]]]:
    """Returns, stock changes, refunds and orders created, in order. Hold the simulator's lock."""
    refunded = state.inferred.payment_entry_type_refund
    requested = state.inferred.payment_entry_type_refund_request
    return {
        "returns": [_return(state, r) for r in state.returns.values()],
        "stock_changes": [
            {
                "sku": state.sizes[line.size_id].sku,
                "warehouse_id": line.warehouse_id,
                "delta": line.delta,
                "description": change.description,
            }
            for change in state.stock_changes.values()
            for line in change.lines
        ],
        "refunds": [
            {
                "order_number": entry.order_number,
                "return_id": entry.return_id,
                "amount": f"{entry.value:.2f}",
                "currency": state.orders[entry.order_number].currency,
                "via_psp": entry.via_psp,
                "status": entry.status,
                "asynchronous": entry.entry_type == requested,
                "entry_id": entry.id,
                "answered_by": entry.settled_by,  # the settlement entry of a request
                "requested_at": entry.created_at.isoformat(),
                "answered_at": _answered_at(state, entry),
            }
            for entry in sorted(state.all_payments(), key=lambda p: p.id)
            if entry.entry_type in (refunded, requested) and entry.settles is None
        ],
        "orders_created": [
            {
                "order_number": order.number,
                "origin_return_id": order.origin_id if order.origin_type == "return" else None,
                "total": f"{order.grand_total():.2f}",
                "lines": [
                    {"sku": state.sizes[line.size_id].sku, "quantity": line.quantity}
                    for line in order.lines
                ],
            }
            for order in state.orders.values()
            if order.created_via_api
        ],
    }


def _answered_at(state: CentraState, entry: PaymentEntryRec) -> str | None:
    """When the PSP answered a refund: at once when synchronous; a request's settlement time,
    None while it is pending."""
    if entry.entry_type != state.inferred.payment_entry_type_refund_request:
        return entry.created_at.isoformat()
    if entry.settled_by is None:
        return None
    order = state.orders[entry.order_number]
    settlement = next(p for p in order.payments if p.id == entry.settled_by)
    return settlement.created_at.isoformat()


def _return(state: CentraState, ret: ReturnRec) -> dict[str, Any]:
    return {
        "id": ret.id,
        "external_id": ret.external_id,
        "order_number": ret.order_number,
        "lines": [
            {
                "sku": state.sizes[state.order_lines[line.order_line_id].size_id].sku,
                "quantity": line.quantity,
            }
            for line in ret.lines
        ],
        "completed": ret.completed,
    }
