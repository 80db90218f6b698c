"""How a simulated write says no: GraphQL `userErrors` or an Order API error code.

Both are raised *before* anything is changed, so a rejection never leaves partial state ([C]
[ERR]: "A non-empty userErrors means the mutation failed and nothing was modified").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True)
class UserError:
    message: str
    path: list[str]


class MutationRejected(Exception):
    """A GraphQL mutation failed validation; `errors` become the payload's `userErrors`."""

    def __init__(self, errors: list[UserError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


@dataclass
class ErrorCollector:
    """Collects every validation problem of one mutation, so the caller sees them all at once."""

    errors: list[UserError] = field(default_factory=list)

    def add(self, message: str, *path: str | int) -> None:
        self.errors.append(UserError(message, [str(p) for p in path]))

    def raise_if_any(self) -> None:
        if self.errors:
            raise MutationRejected(self.errors)


class OrderApiError(Exception):
    """An Order API (REST) business error: `{status: "no", errorCode, msg}`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Order API error codes ([C] [OA-*]).
NOT_SELLABLE, NO_STOCK, EMPTY_ORDER, MISSING_FIELD, DUPLICATE_NUMBER = -1, -2, -3, -4, -5
CUSTOMER_REGISTRATION, GENERAL = -6, -7


def decimal_from_input(value: Any) -> Decimal:
    """A money amount from JSON / GraphQL input (float, int or string); ValueError if not one."""
    if isinstance(value, bool):
        raise ValueError("not a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not amount.is_finite():
        raise ValueError("not a finite number")
    return amount
