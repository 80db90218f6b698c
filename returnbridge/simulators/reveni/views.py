"""The simulator's Reveni objects as JSON: the shapes of `connectors/reveni/models.py`.

Values are encoded by `wireformat` (money, statuses, timestamps, all per `ReveniInferred`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from returnbridge.connectors.reveni.encoding import status_to_wire
from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.scenario import Scenario
from returnbridge.simulators.reveni.invoices import return_fees
from returnbridge.simulators.reveni.records import RefundRec, ReturnRec, hex_id
from returnbridge.simulators.reveni.wireformat import money, timestamp

LABEL_HOST = "https://labels.reveni.sim"  # [INFER] label URLs are not documented
CARRIER = "sim-carrier"  # [INFER]


def refund_view(refund: RefundRec, inferred: ReveniInferred) -> dict[str, Any]:
    return {
        "id": refund.id,
        "method": refund.method,
        "amount": money(refund.amount, refund.currency, inferred),
        "bonus_amount": money(refund.bonus_amount, refund.currency, inferred),
        "currency": refund.currency,
        "status": refund.status,
        "paid_by": refund.paid_by,
        "created_at": timestamp(refund.created_at),
    }


def return_view(rec: ReturnRec, store_id: str, inferred: ReveniInferred) -> dict[str, Any]:
    """The Return object of `GET returns/{id}` (and of each list row)."""
    email = rec.customer_email
    local = email.split("@", 1)[0] if email else None
    refund_total = sum((r.amount for r in rec.refunds if r.currency == rec.currency), Decimal(0))
    billing = inferred.billing
    return {
        "id": rec.id,
        "store_id": store_id,
        "type": rec.type,
        "instant": rec.instant,
        "status": status_to_wire(rec.status, inferred),
        "order": {
            "id": hex_id("order", store_id, rec.order_number),
            "external_id": rec.order_external_id,
            "name": str(rec.order_number),
        },
        "customer": {
            "email": email,
            "first_name": local.split(".")[0].capitalize() if local else None,
            "last_name": None,
        },
        "return_items": [
            {
                "item_id": item.item_id,
                "sku": item.sku,
                "quantity": item.quantity,
                "return_reason": item.reason,
                "exchange": (
                    {"sku": item.exchange_sku, "quantity": item.quantity}
                    if item.exchange_sku
                    else None
                ),
                "status": item.status,
                "accepted_quantity": item.accepted_quantity,
                "reject_reason": item.reject_reason,
                "reject_reason_text": item.reject_reason_text,
                "restock": item.restock,
                "unit_price": (
                    money(item.unit_price, item.currency, inferred)
                    if item.unit_price is not None
                    else None
                ),
                "currency": item.currency,
            }
            for item in rec.items
        ],
        "refunds": [refund_view(r, inferred) for r in rec.refunds],
        "exchange_order": None,  # returnbridge creates exchange orders in Centra
        "delivery": {
            "carrier": CARRIER,
            "tracking_number": rec.tracking_number,
            "label_url": f"{LABEL_HOST}/{rec.id}.pdf",
            "label_status": "created",
        },
        "summary": {
            "currency": rec.currency,
            "refund_total": money(refund_total, rec.currency, inferred),
            "fees": money(return_fees(rec, inferred), billing.currency, inferred),
            "fees_currency": billing.currency,
            "bonuses": money(
                sum((r.bonus_amount for r in rec.refunds), Decimal(0)), rec.currency, inferred
            ),
            "exchange_rate": "1.0" if rec.currency == billing.currency else None,
        },
        "created_at": timestamp(rec.created_at),
        "updated_at": timestamp(rec.updated_at),
    }


def merchant_view(scenario: Scenario, inferred: ReveniInferred) -> dict[str, Any]:
    """`GET merchant` ([R-DOC S5] fields; merchant_name = store_name [INFER])."""
    section = scenario.reveni
    return {
        "store_id": section.store_id,
        "store_name": section.store_name,
        "merchant_name": section.store_name,
        "connector_type": inferred.connector_type,
        "currency": section.currency,
    }
