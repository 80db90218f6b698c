"""Every detail of Reveni's API that is *inferred*, not confirmed, in one configurable place.

Each fact about Reveni is tagged [R-DOC] (Reveni's own material), [R-OBS] (third-party code
that calls the real API), [PEER] or [INFER]: docs/architecture.md#inferred-facts. Confirmed facts
are constants in `wire.py` and used where they are needed; everything below is a guess to be
checked with Reveni (each field is a question to ask), overridable without touching code
(environment variables `RETURNBRIDGE_REVENI__INFERRED__<FIELD>`, or a `ReveniInferred(...)`
passed to the client and the simulator).

The client and the simulator both read these values, so the two can never silently disagree.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ReveniBilling(BaseModel):
    """[INFER] What the simulator puts on a billing-period invoice.

    The invoice *line kinds* are Reveni's (S9); amounts, VAT, period and netting are guesses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: str = Field("EUR", description="[INFER] Currency of fees and of the invoice total.")
    instant_transaction_fee: Decimal = Field(Decimal("1.50"), ge=0, description="[INFER]")
    transaction_fee: Decimal = Field(Decimal("0.90"), ge=0, description="[INFER]")
    reverse_logistics_fee: Decimal = Field(Decimal("4.95"), ge=0, description="[INFER]")
    plan_fee: Decimal = Field(Decimal("299.00"), ge=0, description="[INFER] Premium plan.")
    minimum_fee: Decimal = Field(
        Decimal("0.00"), ge=0, description="[INFER] Contractual minimum; 0 = no adjustment line."
    )
    vat_rate: Decimal = Field(
        Decimal("21"), ge=0, description="[INFER] VAT % on fees (Spanish VAT); disbursements: none."
    )
    period: Literal["month"] = Field("month", description="[INFER] 'billing period' = month.")
    timezone: str = Field("UTC", description="[INFER] Period boundaries' timezone.")
    covered_refunds: Literal["not_charged", "charged_then_credited"] = Field(
        "charged_then_credited",
        description=(
            "[INFER] How an instant refund later rejected (Reveni covers it) shows: never "
            "disbursed, or disbursed and then credited with a negative disbursement line."
        ),
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # as reconcile/settings.py checks the brand's zone (connectors/ may not import it)
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (an IANA name like UTC or Europe/Madrid)"
            ) from None
        return value


class ReveniInferred(BaseModel):
    """Inferred Reveni behaviour. Each field's description says where the guess comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # ---------------------------------------------------------------- paths (under the store)
    returns_list_path: str = Field(
        "returns", description="[INFER] List path; `GET returns/{id}` itself is [R-OBS]."
    )
    merchant_path: str = Field("merchant", description="[INFER] Merchant info (fields [R-DOC S5]).")
    invoices_path: str = Field("invoices", description="[INFER] No invoice API is documented.")

    # ---------------------------------------------------------------- list query parameters
    # The filters' *meaning* is [R-DOC S5] (MCP server); their wire names are [INFER].
    param_status: str = "status"
    param_transaction_type: str = "transaction_type"
    param_updated_from: str = "updated_from"
    param_updated_to: str = "updated_to"
    param_created_from: str = "created_from"
    param_created_to: str = "created_to"
    param_search: str = "search"
    param_page: str = "page"
    param_page_size: str = "page_size"
    param_invoice_period: str = Field(
        "period", description="[INFER] `GET invoices?period=YYYY-MM`; no invoice API is documented."
    )
    transaction_type_case: Literal["upper", "lower"] = Field(
        "upper", description="[R-DOC S5] shows REFUND / EXCHANGE on the MCP tools; REST [INFER]."
    )
    date_filter_precision: Literal["date", "datetime"] = Field(
        "date",
        description=(
            "[R-DOC S5] documents date filters as YYYY-MM-DD; whether REST accepts a full "
            "ISO-8601 time is [INFER]. With `date`, a filter covers whole days."
        ),
    )
    date_filter_timezone: str = Field("UTC", description="[INFER] The day a date filter means.")
    page_size_default: int = Field(20, ge=1, description="[INFER]")
    page_size_max: int = Field(100, ge=1, description="[INFER]")
    list_order: Literal["updated_at"] = Field(
        "updated_at",
        description="[INFER] Lists are sorted by updated_at ascending, then id.",
    )

    wrong_store_status: Literal[403, 404] = Field(
        403, description="[INFER] A valid key used on another store's path."
    )
    error_detail_key: str = Field(
        "detail", description="[INFER] Error bodies look like {'detail': '...'} (DRF style)."
    )
    connector_type: str = Field("centra", description="[INFER] Merchant info's connector_type.")

    # ---------------------------------------------------------------- list envelope
    # [INFER] Django-REST-Framework style page: {count, next, previous, results}.
    envelope_items_key: str = "results"
    envelope_count_key: str = "count"
    envelope_next_key: str = "next"
    envelope_previous_key: str = "previous"

    # ---------------------------------------------------------------- values on the wire
    status_case: Literal["lower", "upper"] = Field(
        "lower", description="[INFER] Webhooks say `in_progress` [R-OBS S4]; REST assumed alike."
    )
    status_case_strict: bool = Field(
        False,
        description=(
            "[INFER] Reveni's only public status list (its MCP filter enum [R-DOC S5]) spells "
            "statuses upper case (`IN_PROGRESS`), webhooks lower case [R-OBS S4]: by default a "
            "status is read in either casing (list filters, API and webhook payloads). True "
            "accepts only the `status_case` spelling and refuses the other. Statuses are written "
            "in `status_case` either way."
        ),
    )
    partially_accepted_status: str = Field(
        "partially_accepted",
        description="[INFER] Wire name of the dashboard's 'Partly Accepted' (not in the MCP enum).",
    )
    money_format: Literal["decimal_string", "number", "minor_units"] = Field(
        "decimal_string", description="[INFER] The wire format of money is undocumented."
    )

    # ---------------------------------------------------------------- webhooks
    webhook_signature_header: str = Field(
        "X-Reveni-Signature", description="[INFER] No Reveni source mentions signing."
    )
    webhook_signature_algorithm: Literal["sha256", "sha512"] = Field(
        "sha256", description="[INFER] HMAC digest, modelled on peers [PEER]."
    )
    webhook_signature_encoding: Literal["hex", "base64"] = Field("hex", description="[INFER]")
    webhook_retry_delays_seconds: tuple[float, ...] = Field(
        (1.0, 2.0, 4.0, 8.0, 16.0),
        description="[INFER] Re-delivery after a non-2xx or timeout: exponential, 5 retries.",
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="[INFER]")

    # ---------------------------------------------------------------- refunds
    refund_status_on_merchant_refund: Literal["pending", "paid"] = Field(
        "pending",
        description=(
            "[INFER] A standard refund to the original payment method is executed by the shop "
            "platform (Centra's PSP), so Reveni shows it `pending`, paid_by `merchant`."
        ),
    )

    billing: ReveniBilling = Field(default_factory=ReveniBilling)


DEFAULT_REVENI_INFERRED = ReveniInferred()
