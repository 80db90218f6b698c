"""Every detail of Centra's APIs that is *inferred*, not confirmed, in one configurable place.

Each fact about Centra is tagged [C] (confirmed), [C-ex] (seen in an official example), [3P]
(third-party code) or [INF] (inferred): docs/architecture.md#inferred-facts. Confirmed facts are
hard-coded where they are used; everything below is a guess that must be checked against a real
Centra QA instance, and can be overridden without touching code (environment variables
`RETURNBRIDGE_CENTRA__INFERRED__<FIELD>`, or a `CentraInferred(...)` passed to the client /
simulator).

Both the client and the simulator read these values, so the two can never silently disagree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CentraInferred(BaseModel):
    """Inferred Centra behaviour. Each field's description says where the guess comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    return_status_pending: str = Field(
        "PENDING", description="[INF] Return.returnStatus enum value of a new return."
    )
    return_status_completed: str = Field(
        "COMPLETED", description="[INF] Return.returnStatus enum value after completion."
    )
    order_status_archived: str = Field(
        "ARCHIVED", description="[INF] GraphQL OrderStatus name for Archived (code 5)."
    )
    payment_entry_type_refund: str = Field(
        "REFUND",
        description=(
            "PaymentHistoryEntryType value of a refund ([C] the value exists; [INF] that a "
            "synchronous PSP refund and an asynchronous one's settlement write it)."
        ),
    )
    payment_entry_type_refund_request: str = Field(
        "REFUND_REQUEST",
        description=(
            "PaymentHistoryEntryType value of a refund asked of an asynchronous PSP, PENDING "
            "until the PSP answers ([C] the value and the request-then-webhook pattern; [INF] "
            "that the settlement carries the request's externalReference)."
        ),
    )
    payment_entry_type_refund_failed: str = Field(
        "REFUND_FAILED",
        description=(
            "PaymentHistoryEntryType value of a refund the PSP refused ([C] the value exists; "
            "[INF] that it settles a pending request)."
        ),
    )
    returns_allowed_on_archived_orders: bool = Field(
        True,
        description="[INF] Undocumented; allowed, behind this switch.",
    )
    retry_after_format: Literal["unix_timestamp", "seconds", "http_date"] = Field(
        "unix_timestamp",
        description=(
            "[C] says Retry-After is 'a timestamp at which to resume'; its encoding is [INF]. "
            "The client accepts all three; the simulator emits this one."
        ),
    )
    orders_limit_max: int = Field(
        200, description="[INF] max `limit` of the `orders` list (documented for Warehouse.stock)."
    )
    orders_limit_default: int = Field(20, description="[INF] default `limit` of list queries.")
    returns_limit_max: int = Field(200, description="[INF] max `limit` of `returns`.")
    order_api_base_path: str = Field(
        "/api/order",
        description=(
            "[INF] path of the REST Order API plugin on the Centra host; the real base is "
            "configured per plugin instance."
        ),
    )
    stock_change_description_readable: bool = Field(
        True,
        description=(
            "[INF] StockChange.description readable back from the Integration API "
            "(the 3P client reads `stockChange{ comment }`); the restock read-back relies on it."
        ),
    )
    size_changes_is_list: bool = Field(
        True,
        description="[INF] changeStock `sizeChanges` accepts a list (list coercion).",
    )
    order_api_manual_refund: bool = Field(
        True,
        description=(
            "[INF] Centra documents no way to record a refund paid outside its PSP (Reveni's "
            "instant bank transfer, store credit). returnbridge assumes the Order API's "
            "`PUT /returns/{id}` accepts `manualRefund: {amount, reference}`, writing a non-PSP "
            "refund entry on the order. Turn off where the plugin rejects it."
        ),
    )
    order_api_autoconfirm: bool = Field(
        False,
        description=(
            "[INF] Orders created through `POST /order` start PENDING, or CONFIRMED when the "
            "store's 'Autoconfirm orders' setting is on ([C] that the setting exists)."
        ),
    )
    app_version: str = Field("v0.34.6", description="[C-ex] sample `extensions.appVersion`.")
    merchant_timezone: str = Field(
        "Europe/Stockholm",
        description=(
            "[INF] zone of the offsets Centra prints (`2023-01-16T10:31:34+01:00` [C-ex]) and of "
            "naive input dates; really the merchant's configured zone."
        ),
    )
    order_api_error_http_status: int = Field(
        400,
        description=(
            '[INF] HTTP status of an Order API business error (`{status: "no", errorCode, msg}`); '
            "the codes -1..-7 are [C], the HTTP status is not documented."
        ),
    )
    complexity_default_page_size: int = Field(
        20,
        ge=1,
        description=(
            "[INF] QUERY_COMPLEXITY formula (Centra's is unpublished): every field costs 1 and a "
            "list multiplies its selection by its page size; this is the size of a paginated "
            "list given no limit/first/last."
        ),
    )
    complexity_nested_list_size: int = Field(
        10,
        ge=1,
        description="[INF] complexity multiplier of an unpaginated nested list such as `lines`.",
    )


DEFAULT_INFERRED = CentraInferred()
