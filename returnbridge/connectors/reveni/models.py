"""Reveni wire objects as pydantic models (docs/architecture.md#inferred-facts).

Lenient on what we do not use (unknown keys are ignored, so a field Reveni adds never breaks a
sync), strict on what we do: ids and SKUs are strings, quantities integers (a `"1"` is an
error), timestamps carry a timezone, money is `Decimal` (never float) and statuses are the
known vocabulary. A payload that breaks these rules fails validation with the field's path.

Money arrives in the format `ReveniInferred.money_format` names; validate with
`model_validate(data, context=wire_context(inferred))` so that a decimal string, a JSON number
(decoded as Decimal by the client) or integer minor units all become the same `Decimal`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    model_validator,
)

from returnbridge.connectors.reveni.inferred import DEFAULT_REVENI_INFERRED, ReveniInferred
from returnbridge.connectors.reveni.statuses import ReturnStatus

# ISO 4217 exponents that are not 2 (the rest of the world uses cents).
OTHER_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType(
    {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3}
)
DEFAULT_EXPONENT: Final = 2


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point of `currency`'s minor unit."""
    return OTHER_EXPONENTS.get(currency.upper(), DEFAULT_EXPONENT)


def wire_context(inferred: ReveniInferred = DEFAULT_REVENI_INFERRED) -> dict[str, Any]:
    """The validation context that tells the models how Reveni encodes values."""
    return {"money_format": inferred.money_format}


def _money_format(info: ValidationInfo) -> str:
    context = info.context or {}
    return str(context.get("money_format", "decimal_string"))


def _money(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, bool | float):
        raise ValueError("money must be a decimal string or an exact number, not a float")
    fmt = _money_format(info)
    if fmt == "decimal_string":
        if not isinstance(value, str):
            raise ValueError(f"money must be a decimal string like '49.95', got {value!r}")
        try:
            return Decimal(value)
        except ArithmeticError:
            raise ValueError(f"not a decimal amount: {value!r}") from None
    if fmt == "number":
        if not isinstance(value, int | Decimal):
            raise ValueError(f"money must be a JSON number, got {value!r}")
        return Decimal(value)
    return value  # minor units: converted by the owning model, which knows the currency


Money = Annotated[Decimal, BeforeValidator(_money)]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp needs a timezone")
    return value.astimezone(UTC)


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _WithMinorUnits(_Wire):
    """A model whose money fields may arrive as integer minor units; `_money_fields` pairs each
    money field with the field naming its currency."""

    _money_fields: ClassVar[tuple[tuple[str, str], ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _from_minor_units(cls, data: Any, info: ValidationInfo) -> Any:
        if _money_format(info) != "minor_units" or not isinstance(data, dict):
            return data
        out = dict(data)
        for name, currency_key in cls._money_fields:
            if out.get(name) is None:
                continue
            currency = out.get(currency_key)
            if not isinstance(currency, str):
                raise ValueError(f"{name}: minor units need `{currency_key}`")
            out[name] = _from_minor(name, out[name], currency)
        return out


def _from_minor(name: str, value: Any, currency: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: minor units must be an integer, got {value!r}")
    return str(Decimal(value).scaleb(-currency_exponent(currency)))


class OrderRef(_Wire):
    """The shop order behind a return. `name` is the order number the shopper typed [R-DOC S14];
    `external_id` the platform's id [R-OBS S4]; `id` Reveni's own order id [R-DOC S3]."""

    id: StrictStr | None = None
    external_id: StrictStr | None = None
    name: StrictStr

    @property
    def number(self) -> int | None:
        """The Centra order number, or None when `name` is not a number."""
        text = self.name.strip().lstrip("#")
        return int(text) if text.isdigit() else None


class Customer(_Wire):
    email: StrictStr | None = None
    first_name: StrictStr | None = None
    last_name: StrictStr | None = None


class ExchangeRequest(_Wire):
    """The replacement a shopper asked for [R-OBS S4: `exchange`]."""

    sku: StrictStr
    quantity: StrictInt = Field(1, ge=1)


class ReturnItem(_WithMinorUnits):
    _money_fields: ClassVar[tuple[tuple[str, str], ...]] = (("unit_price", "currency"),)

    item_id: StrictStr
    sku: StrictStr
    quantity: StrictInt = Field(ge=1)
    return_reason: StrictStr | None = None
    exchange: ExchangeRequest | None = None
    status: Literal["pending", "accepted", "rejected"] = "pending"
    accepted_quantity: StrictInt | None = Field(
        None, ge=0, description="[INFER] how many of `quantity` were accepted at validation."
    )
    reject_reason: StrictStr | None = None
    reject_reason_text: StrictStr | None = None
    restock: StrictBool | None = None
    unit_price: Money | None = None
    currency: Currency | None = None

    @property
    def accepted_units(self) -> int:
        """Units accepted at inspection (0 while pending or when rejected)."""
        if self.status != "accepted":
            return 0
        return self.quantity if self.accepted_quantity is None else self.accepted_quantity


class Refund(_WithMinorUnits):
    """One refund Reveni recorded. Its `id` is the reference returnbridge writes into Centra."""

    _money_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("amount", "currency"),
        ("bonus_amount", "currency"),
    )

    id: StrictStr
    method: Literal["original_payment_method", "bank_transfer", "store_credit"]
    amount: Money
    bonus_amount: Money = Decimal("0.00")
    currency: Currency
    status: Literal["pending", "paid", "failed"]
    paid_by: Literal["reveni", "merchant"]
    created_at: AwareDatetime


class ExchangeOrder(_Wire):
    external_id: StrictStr | None = None
    name: StrictStr | None = None


class Delivery(_Wire):
    carrier: StrictStr | None = None
    tracking_number: StrictStr | None = None
    label_url: StrictStr | None = None
    label_status: Literal["pending", "created", "failed"] | None = None


class Summary(_WithMinorUnits):
    """Financial summary [R-DOC S5: fees, bonuses, exchange rates]; field names [INFER].

    `refund_total` and `bonuses` are in the return's `currency`, `fees` in `fees_currency`
    (Reveni bills in its invoice currency)."""

    _money_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("refund_total", "currency"),
        ("bonuses", "currency"),
        ("fees", "fees_currency"),
    )

    currency: Currency | None = None
    refund_total: Money | None = None
    bonuses: Money | None = None
    fees: Money | None = None
    fees_currency: Currency | None = None
    exchange_rate: StrictStr | None = None


class Return(_Wire):
    """A Reveni return (request / transaction), as `GET returns/{id}` gives it."""

    id: StrictStr = Field(min_length=1)
    store_id: StrictStr | None = None
    type: Literal["refund", "exchange", "mixed"]
    instant: StrictBool
    status: ReturnStatus
    order: OrderRef
    customer: Customer | None = None
    return_items: list[ReturnItem] = Field(min_length=1)
    refunds: list[Refund] = Field(default_factory=list)
    exchange_order: ExchangeOrder | None = None
    delivery: Delivery | None = None
    summary: Summary | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class WebhookSubscription(_Wire):
    id: StrictStr
    url: StrictStr
    event_types: list[Literal["return.created", "return.updated"]]
    created_at: AwareDatetime | None = None


class WebhookData(_Wire):
    resource_id: StrictStr = Field(min_length=1)
    status: StrictStr | None = Field(
        None, description="Our status name once `parse_envelope` read it (either wire casing)."
    )


class WebhookEvent(_Wire):
    """The thin webhook envelope [R-OBS S4]: fetch `data.resource_id` back, trust nothing else."""

    id: StrictStr = Field(min_length=1)
    event: Literal["return.created", "return.updated"]
    created: StrictInt = Field(description="Unix epoch seconds.")
    data: WebhookData


class Merchant(_Wire):
    """[R-DOC S5] fields of Get Merchant Info."""

    store_id: StrictStr
    store_name: StrictStr | None = None
    merchant_name: StrictStr | None = None
    connector_type: StrictStr | None = None
    currency: Currency | None = None


InvoiceLineKind = Literal[
    "instant_transaction_fee", "transaction_fee", "reverse_logistics_fee", "disbursement",
    "plan", "minimum_fee_adjustment",
]  # fmt: skip


class InvoiceLine(_WithMinorUnits):
    """One invoice line [R-DOC S9 kinds]; a negative disbursement credits a covered refund."""

    _money_fields: ClassVar[tuple[tuple[str, str], ...]] = (("amount", "currency"),)

    kind: InvoiceLineKind
    return_id: StrictStr | None = None
    order_number: StrictStr | None = None
    amount: Money
    currency: Currency
    vat_rate: Decimal = Decimal("0")
    event_date: date | None = Field(None, description="When the fee or refund occurred.")


class Invoice(_Wire):
    """A billing-period invoice [R-DOC S9, S10]; the shape is [INFER]."""

    id: StrictStr
    period_start: date
    period_end: date
    currency: Currency
    status: StrictStr | None = Field(None, description="open (still growing) or issued [INFER].")
    lines: list[InvoiceLine]
    totals: dict[str, Money] = Field(default_factory=dict, description="Per currency, VAT incl.")
    collection: StrictStr = "sepa_direct_debit"

    @model_validator(mode="before")
    @classmethod
    def _totals_from_minor_units(cls, data: Any, info: ValidationInfo) -> Any:
        if _money_format(info) != "minor_units" or not isinstance(data, dict):
            return data
        totals = data.get("totals")
        if not isinstance(totals, dict):
            return data
        return {**data, "totals": {c: _from_minor(f"totals.{c}", v, c) for c, v in totals.items()}}
