"""The few errors the Centra client raises, one per decision its caller has to make.

The executor must tell apart "try again later" (transient, rate-limited), "Centra said no"
(rejected), "fix the credentials" (auth), "fix our code" (query error) and "we do not know whether
it happened" (in doubt): the last one is resolved by reading Centra back, never by resending,
because Centra has no idempotency keys (docs/architecture.md#effects-and-idempotency-keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from returnbridge.connectors.errors import (
    ApiError,
    AuthError,
    InDoubtError,
    QueryError,
    RateLimitedError,
    RejectedError,
    TransientError,
    parse_retry_after,
)

__all__ = [
    "CentraAuthError",
    "CentraError",
    "CentraInDoubt",
    "CentraQueryError",
    "CentraRateLimited",
    "CentraRejected",
    "CentraTransient",
    "UserError",
    "parse_retry_after",  # shared by every connector; re-exported for Centra's callers
]


@dataclass(frozen=True)
class UserError:
    """One `userErrors[]` entry of a mutation payload, or one REST Order API error. [C] [ERR]"""

    message: str
    path: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> UserError:
        """Read one `{message, path}` entry."""
        path = raw.get("path") or ()
        return cls(message=str(raw.get("message", "")), path=tuple(str(p) for p in path))

    def __str__(self) -> str:
        return f"{'.'.join(self.path)}: {self.message}" if self.path else self.message


class CentraError(ApiError):
    """Base of every error the Centra client raises."""


class CentraTransient(CentraError, TransientError):
    """A failure that did not change anything in Centra and may pass: 5xx on a read, a refused
    connection, a read timeout on a read. Safe to retry later."""


class CentraRateLimited(CentraError, RateLimitedError):
    """HTTP 429: Centra refused the request (nothing was executed); resume after `retry_after`
    seconds. The client has already paused its governor, so every caller waits together."""


class CentraRejected(CentraError, RejectedError):
    """Centra refused the request and changed nothing: a mutation's non-empty `userErrors`
    ([C] [ERR]: "nothing was modified"), or a REST Order API error with its `error_code`
    (for example -2 out of stock, -5 duplicate order number)."""

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        user_errors: Sequence[UserError] = (),
        error_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.user_errors = list(user_errors)
        self.error_code = error_code


class CentraAuthError(CentraError, AuthError):
    """The credentials were refused (GraphQL 403, REST 401) or the token lacks a permission
    (GraphQL error with `extensions.category: "authorization"`). Retrying will not help."""


class CentraQueryError(CentraError, QueryError):
    """Centra could not execute what we sent (HTTP 400, GraphQL `errors[]`, an unexpected
    response shape). That is a bug on our side or a schema drift: not retried."""

    def __init__(self, message: str, *, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors = [dict(e) for e in errors]


class CentraInDoubt(CentraError, InDoubtError):
    """A mutation may have reached Centra and its outcome is unknown (timeout after sending, the
    connection dropped before the response, 5xx after sending, a GraphQL error raised while the
    mutation executed). Resolve it by reading back."""

    system = "Centra"
