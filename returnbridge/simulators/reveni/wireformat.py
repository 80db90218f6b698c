"""How the simulated Reveni encodes values on the wire.

Every encoding that is a guess comes from `ReveniInferred`: money (`money_format`); statuses,
transaction types and date filters through `connectors/reveni/encoding.py`, the functions the
client writes with, so the two sides cannot disagree. Timestamps are ISO 8601 in UTC with a `Z`
([INFER]); the webhook envelope's `created` is Unix seconds ([R-OBS S4]).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from returnbridge.connectors.reveni.encoding import status_name
from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.connectors.reveni.models import currency_exponent
from returnbridge.simulators.reveni.records import quantize


def timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def money(amount: Decimal, currency: str, inferred: ReveniInferred) -> Any:
    """`amount` in `inferred.money_format`: "49.95", 49.95 or 4995."""
    amount = quantize(amount, currency)
    if inferred.money_format == "decimal_string":
        return str(amount)
    if inferred.money_format == "minor_units":
        return int(amount.scaleb(currency_exponent(currency)))
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def status_named(text: str, inferred: ReveniInferred) -> str | None:
    """The status `text` spells, in either casing (`IN_PROGRESS`, `in_progress`), or None: not
    a status, or the other casing under `status_case_strict` (the client reads with the same
    `encoding.status_name`)."""
    return status_name(text, inferred)
