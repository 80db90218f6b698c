"""The one vocabulary of exceptions and their owners (design.md §4).

The ledger, the digests, the reports and the runbook all use these codes; nothing else invents
one. Each code has exactly one owning team, who acts on it, and an auto-retry policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Owner(StrEnum):
    FINANCE = "finance"
    OPS = "ops"
    CX = "cx"


class Retry(StrEnum):
    """Whether returnbridge retries the cause of an exception by itself."""

    NO = "no"  # a person must act
    YES = "yes"  # re-enqueued through the same ledger key
    TRANSIENT = "transient"  # only when the failure was transient
    READ_BACK = "read_back"  # resolved by reading the other system back
    WHEN_STOCK_RETURNS = "when_stock_returns"


@dataclass(frozen=True)
class Code:
    code: str
    owner: Owner
    retry: Retry
    raised_when: str


_F, _O, _C = Owner.FINANCE, Owner.OPS, Owner.CX
_CODES = (
    Code("order_not_found", _C, Retry.NO, "the return names an order number Centra does not have"),
    Code("order_not_returnable", _F, Retry.NO, "the order is ARCHIVED or CANCELLED"),
    Code("sku_not_in_order", _O, Retry.NO, "a returned SKU is not on the order"),
    Code(
        "quantity_exceeds_shipped",
        _C,
        Retry.NO,
        "more returned than shipped minus already returned",
    ),
    Code("return_create_failed", _O, Retry.TRANSIENT, "createReturn rejected or retries exhausted"),
    Code("return_missing", _O, Retry.YES, "accepted in Reveni, no Centra return"),
    Code(
        "refund_amount_mismatch",
        _F,
        Retry.NO,
        "Reveni's refund differs from Centra's computed credit",
    ),
    Code("refund_post_failed", _F, Retry.TRANSIENT, "the credit could not be posted"),
    Code("refund_missing", _F, Retry.YES, "refund confirmed in Reveni, no Centra credit"),
    Code(
        "unmatched_centra_refund", _F, Retry.NO, "a Centra refund with no Reveni refund behind it"
    ),
    Code("refund_failed_at_gateway", _F, Retry.NO, "Centra's PSP refund entry is FAILED"),
    Code("duplicate_refund", _F, Retry.NO, "one return credited twice, in any form"),
    Code("restock_failed", _O, Retry.YES, "the stock change failed"),
    Code("restock_missing", _O, Retry.YES, "an accepted item was never restocked"),
    Code("restock_duplicated", _O, Retry.NO, "two stock changes for one returned item"),
    Code(
        "exchange_out_of_stock",
        _C,
        Retry.WHEN_STOCK_RETURNS,
        "the replacement SKU has no available stock",
    ),
    Code("exchange_order_failed", _C, Retry.TRANSIENT, "the exchange order could not be created"),
    Code("exchange_order_missing", _C, Retry.YES, "an approved exchange has no Centra order"),
    Code("exchange_not_zero_value", _F, Retry.NO, "the exchange order's total is not 0"),
    Code(
        "settlement_unmatched",
        _F,
        Retry.NO,
        "an invoice disbursement and Centra credits do not match",
    ),
    Code(
        "instant_deadline_near",
        _O,
        Retry.NO,
        "instant return not inspected, at most 3 days of Reveni's 30 left",
    ),
    Code("action_in_doubt", _O, Retry.READ_BACK, "outcome unknown and read-back inconclusive"),
)

CODES: dict[str, Code] = {c.code: c for c in _CODES}


def owner_of(code: str) -> Owner:
    """The team that owns `code`; KeyError names an unknown code."""
    try:
        return CODES[code].owner
    except KeyError:
        raise KeyError(f"unknown exception code {code!r}; known: {sorted(CODES)}") from None


@dataclass(frozen=True)
class ReturnException:
    """One exception raised about a return: what is wrong, whose it is, and its keys."""

    code: str
    reveni_return_id: str | None
    order_number: int | None
    sku: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        owner_of(self.code)  # an unknown code is a bug, caught where it is made

    @property
    def owner(self) -> Owner:
        return owner_of(self.code)

    @property
    def key(self) -> tuple[str, str | None, int | None, str | None]:
        """Identity: the same problem seen again is the same exception, not a new one."""
        return (self.code, self.reveni_return_id, self.order_number, self.sku)

    def as_summary(self, status: str = "open") -> dict[str, object]:
        """The run summary's `exceptions[]` entry (contract.md §4)."""
        return {
            "code": self.code,
            "owner": self.owner.value,
            "order_number": self.order_number,
            "reveni_return_id": self.reveni_return_id,
            "sku": self.sku,
            "amount": None if self.amount is None else str(self.amount),
            "currency": self.currency,
            "status": status,
            "detail": self.detail,
        }
