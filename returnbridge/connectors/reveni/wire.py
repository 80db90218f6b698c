"""Confirmed facts of Reveni's merchant API (docs/architecture.md#inferred-facts), as constants.

Everything here is tagged [R-DOC] or [R-OBS] in the reference; guesses live in `inferred.py`.
"""

from __future__ import annotations

from typing import Final

# [R-OBS S4] every merchant resource is nested under the store: base + store_id + "/" + endpoint.
API_PREFIX: Final = "/merchants/v0/stores/{store_id}"
PRODUCTION_BASE_URL: Final = "https://api.reveni.io"
SANDBOX_BASE_URL: Final = "https://api.sandbox.reveni.io"

# [R-OBS S4] endpoints relative to the store prefix.
RETURN_PATH: Final = "returns/{return_id}"
PARTIAL_VALIDATE_PATH: Final = "returns/{return_id}/partial_validate"
WEBHOOKS_PATH: Final = "webhooks"
WEBHOOK_PATH: Final = "webhooks/{webhook_id}"

# [R-OBS S4] the only two event types, and the thin envelope's keys.
EVENT_RETURN_CREATED: Final = "return.created"
EVENT_RETURN_UPDATED: Final = "return.updated"
EVENT_TYPES: Final = (EVENT_RETURN_CREATED, EVENT_RETURN_UPDATED)

# [R-OBS S4] only 200 and 201 are success.
SUCCESS_STATUSES: Final = frozenset({200, 201})

# [R-DOC S8] instant transactions must be accepted or rejected within 30 days of the request.
INSTANT_VALIDATION_DAYS: Final = 30

# [R-DOC S11, S12] the three refund methods a merchant can offer.
REFUND_METHODS: Final = ("original_payment_method", "bank_transfer", "store_credit")
# [R-DOC S6] transaction types (the dashboard's Refund / Exchange / Mixed).
RETURN_TYPES: Final = ("refund", "exchange", "mixed")
