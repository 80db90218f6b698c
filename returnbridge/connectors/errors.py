"""The error kinds every connector raises, one per decision its caller has to make.

Each connector (Centra, Reveni) has its own subclasses so a message says which system failed, but
the executor and the flows decide on these kinds only:

- `TransientError`: nothing changed on the other side; try again later;
- `RateLimitedError`: refused for load (HTTP 429), nothing executed; wait `retry_after` seconds;
- `RejectedError`: the other side said no and changed nothing; a person must look;
- `AuthError`: the credentials were refused; retrying will not help;
- `QueryError`: we sent something the API cannot execute or it answered something we cannot
  read (our bug or a schema drift); not retried;
- `InDoubtError`: a write may have happened; resolve it by reading back, never by resending.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

# Retry-After values at or above this are unix timestamps, below it delta seconds: no sane delay
# is 31 years long, and no API timestamp is from before 2001.
_EPOCH_THRESHOLD = 1_000_000_000


class ApiError(Exception):
    """Base of every error a connector raises."""


class TransientError(ApiError):
    """A failure that changed nothing and may pass: safe to retry later."""


class RateLimitedError(ApiError):
    """HTTP 429: nothing was executed; resume after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RejectedError(ApiError):
    """The other system refused the request and changed nothing."""


class AuthError(ApiError):
    """The credentials were refused or lack a permission."""


class QueryError(ApiError):
    """What we sent could not be executed, or what came back could not be read."""


class InDoubtError(ApiError):
    """A write may have reached the other system and its outcome is unknown."""

    system = "the other system"  # named in the message; each connector sets its own

    def __init__(
        self, operation: str, request_summary: Mapping[str, Any] | None = None, cause: str = ""
    ) -> None:
        super().__init__(
            f"{operation}: outcome unknown ({cause}); read {self.system} back before resending"
        )
        self.operation = operation
        self.request_summary = dict(request_summary or {})
        self.cause = cause


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to a `Retry-After` header, or None when absent or unreadable.

    RFC 9110 allows delta seconds or an HTTP-date; Centra documents the value as "a timestamp at
    which to resume" without giving its encoding, and Reveni documents nothing, so all three forms
    are accepted: a unix timestamp, delta seconds, an HTTP-date. A moment in the past means "now"
    (0).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    current = time.time() if now is None else now
    try:
        number = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # RFC 9110 dates are GMT
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, moment.timestamp() - current)
    if number != number or number in (float("inf"), float("-inf")):  # NaN / inf
        return None
    if number >= _EPOCH_THRESHOLD:
        return max(0.0, number - current)
    return max(0.0, number)
