"""The errors the Reveni client raises, one per decision its caller has to make.

They subclass the shared kinds of `returnbridge.connectors.errors` exactly as Centra's do, so the
executor decides on the kind and the message says that Reveni failed. Reveni documents neither
its error body nor idempotency keys, so a write whose outcome is
unknown is `ReveniInDoubt`, resolved by reading Reveni back, never by resending.
"""

from __future__ import annotations

from returnbridge.connectors.errors import (
    ApiError,
    AuthError,
    InDoubtError,
    QueryError,
    RateLimitedError,
    RejectedError,
    TransientError,
)


class ReveniError(ApiError):
    """Base of every error the Reveni client raises."""


class ReveniTransient(ReveniError, TransientError):
    """A failure that changed nothing in Reveni and may pass: a 5xx or timeout on a read, a
    refused connection. Safe to retry later (the client already retried reads)."""


class ReveniRateLimited(ReveniError, RateLimitedError):
    """HTTP 429: Reveni executed nothing; resume after `retry_after` seconds."""


class ReveniRejected(ReveniError, RejectedError):
    """Reveni answered a 4xx other than 401/403/404/429 (400, 409, 422, ...) and changed nothing:
    for example a `partial_validate` the status machine does not allow now, or a filter value it
    refuses. `detail` is Reveni's explanation (`inferred.error_detail_key` of the body)."""

    def __init__(self, message: str, *, operation: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.operation = operation
        self.status = status
        self.detail = detail


class ReveniAuthError(ReveniError, AuthError):
    """The API key was refused (401) or is not valid for this store (403). Retrying will not
    help."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ReveniNotFound(ReveniError):
    """HTTP 404: no such return, webhook or invoice (or a page past the end of a list). Reads may
    lag a webhook, so right after one a 404 can be transient (`ReveniClient.fetch_for_event`)."""

    def __init__(self, message: str, *, operation: str, detail: str = "") -> None:
        super().__init__(message)
        self.operation = operation
        self.detail = detail


class ReveniQueryError(ReveniError, QueryError):
    """Reveni answered something we cannot read: not JSON, an unexpected status, or a body that
    does not match the wire models (a schema drift). `path` names the offending field, for example
    `results.3.return_items.0.quantity`; input values are never included (customer data)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class ReveniInDoubt(ReveniError, InDoubtError):
    """A write (`partial_validate`, webhook create/delete) may have reached Reveni and its outcome
    is unknown: a timeout or dropped connection after sending, a 5xx, an unreadable success.
    Resolve it by reading back (`get_return`, `list_webhooks`), never by resending blindly."""

    system = "Reveni"
