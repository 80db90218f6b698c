"""The simulator's in-memory Reveni objects: plain dataclasses plus deterministic ids.

Reveni's ids are 32-char lowercase hex ([R-DOC S3]); the simulator makes them with md5 of a
stable string, so the same scenario always gives the same ids. A scenario may name its returns
(`ret_0001`); those names are used as they are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from returnbridge.connectors.reveni.models import currency_exponent


def hex_id(*parts: object) -> str:
    """A deterministic 32-hex id made of `parts` (e.g. `hex_id("item", return_id, 0)`)."""
    return hashlib.md5(":".join(["reveni-sim", *map(str, parts)]).encode()).hexdigest()


def quantize(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded (half up) to the minor unit of `currency`."""
    return amount.quantize(Decimal(1).scaleb(-currency_exponent(currency)), ROUND_HALF_UP)


@dataclass
class ItemRec:
    item_id: str
    sku: str
    quantity: int
    reason: str | None
    exchange_sku: str | None
    unit_price: Decimal | None
    currency: str
    restock_intent: bool = True  # the scenario's flag: used when the item is accepted
    accepted_intent: bool = True  # the scenario's inspection outcome
    status: str = "pending"  # pending | accepted | rejected
    accepted_quantity: int | None = None
    reject_reason: str | None = None
    reject_reason_text: str | None = None
    restock: bool | None = None

    @property
    def accepted_units(self) -> int:
        if self.status != "accepted":
            return 0
        return self.quantity if self.accepted_quantity is None else self.accepted_quantity

    @property
    def is_refund_item(self) -> bool:
        return self.exchange_sku is None


@dataclass
class RefundRec:
    id: str
    method: str
    amount: Decimal
    currency: str
    status: str  # pending | paid | failed
    paid_by: str  # reveni | merchant
    created_at: datetime
    bonus_amount: Decimal = Decimal("0")


@dataclass
class StatusChange:
    status: str
    at: datetime


@dataclass
class ReturnRec:
    id: str
    order_number: int
    order_external_id: str | None
    type: str  # refund | exchange | mixed
    instant: bool
    status: str
    currency: str
    customer_email: str | None
    created_at: datetime
    updated_at: datetime
    items: list[ItemRec]
    tracking_number: str
    refunds: list[RefundRec] = field(default_factory=list)
    held_from: str | None = None  # the status before on_hold
    changes: list[StatusChange] = field(default_factory=list)  # every status entered, in order
    scenario_refund: tuple[str, Decimal, str] | None = None  # (method, amount, currency)
    remaining_history: list[str] = field(default_factory=list)  # for /_sim/walk
    covered_at: datetime | None = None  # instant refund Reveni covers: rejected at this time

    def entered(self, statuses: frozenset[str]) -> datetime | None:
        """When the return first entered one of `statuses`, or None."""
        return next((c.at for c in self.changes if c.status in statuses), None)
