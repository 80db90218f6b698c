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
