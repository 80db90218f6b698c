"""The ground truth of the simulated Reveni (`GET /_sim/effects`): every return as it is now,
with its items' decisions and its refunds, in creation order."""

from __future__ import annotations

from typing import Any

from returnbridge.simulators.reveni.state import ReveniState


def effects(state: ReveniState) -> dict[str, Any]:
    """Hold the simulator's lock."""
    return {
        "returns": [
            {
                "id": rec.id,
                "order_number": rec.order_number,
                "type": rec.type,
                "instant": rec.instant,
                "status": rec.status,
                "items": [
                    {
                        "sku": item.sku,
                        "quantity": item.quantity,
                        "status": item.status,
                        "accepted_quantity": item.accepted_quantity,
                        "restock": item.restock,
                        "exchange_sku": item.exchange_sku,
                    }
                    for item in rec.items
                ],
                "refunds": [
                    {
                        "id": refund.id,
                        "method": refund.method,
                        "amount": f"{refund.amount}",
                        "currency": refund.currency,
                        "status": refund.status,
                        "paid_by": refund.paid_by,
                    }
                    for refund in rec.refunds
                ],
            }
            for rec in state.returns.values()
        ]
    }
