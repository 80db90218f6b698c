"""Centra Webhook plugin signatures ([C] [WH]).

Header: `X-Centra-Signature: t=<unix seconds>,v1=<hex>`, where
`v1 = HMAC-SHA256(key=endpoint secret, msg="<t>.<raw request body>")`, lowercase hex. The raw
body is the url-encoded form string (`payload=<urlencoded JSON>`), not the decoded JSON. The
receiver picks the timestamp tolerance; a request outside it is treated as a replay.

In Integration API mode the payload is `{"events": [{type, action, date, id}, ...]}` (up to 100
per call); `parse_events` reads it. Retries re-send the same body under a new `t`, so the
signature is not a delivery id: `WebhookEvent.key` (type, id, action, date) is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from returnbridge.connectors import wire_json

SIGNATURE_HEADER = "X-Centra-Signature"


class WebhookSignatureError(ValueError):
    """The request is not a valid, fresh, signed Centra webhook; the message says why."""


class WebhookReplayError(WebhookSignatureError):
    """The signature's timestamp is outside the tolerance: a replay, or a badly skewed clock."""


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed with `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Centra-Signature` header value for `body` sent at `timestamp`."""
    return f"t={timestamp},v1={compute_signature(secret, timestamp, body)}"


def encode_payload(payload: dict[str, Any]) -> bytes:
    """The form body Centra sends: a single field `payload` holding url-encoded JSON."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def _parse_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookSignatureError(f"malformed {SIGNATURE_HEADER} element {part.strip()!r}")
        if key == "t":
            # ASCII digits only (str.isdigit also takes other scripts' digits), and few enough
            # that int() cannot refuse them with a plain ValueError.
            if not (value.isascii() and value.isdigit() and len(value) <= 12):
                raise WebhookSignatureError(
                    f"{SIGNATURE_HEADER} timestamp {value!r} is not an integer"
                )
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None:
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} has no t= timestamp")
    if not signatures:
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} has no v1= signature")
    return timestamp, signatures


def verify_signature(
    secret: str | Sequence[str],
    header: str | None,
    body: bytes,
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> int:
    """Check a webhook's signature and freshness; return its timestamp.

    `secret` may be several secrets (the current and the next one while rotating): a signature
    made with any of them passes.

    Raises WebhookSignatureError when the header is missing or malformed or no signature matches,
    and its subclass WebhookReplayError when the timestamp is outside `tolerance_seconds` of `now`
    (a replay or a badly skewed clock).
    Signatures are compared in constant time.
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("no secret to verify the Centra webhook signature with")
    if not header:
        raise WebhookSignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp, signatures = _parse_header(header)
    current = time.time() if now is None else now
    if current - timestamp > tolerance_seconds:
        raise WebhookReplayError(
            f"timestamp {timestamp} is too old: {current - timestamp:.0f}s before now, "
            f"tolerance is {tolerance_seconds}s (replayed or clock skew)"
        )
    if timestamp - current > tolerance_seconds:
        raise WebhookReplayError(
            f"timestamp {timestamp} is {timestamp - current:.0f}s in the future, "
            f"tolerance is {tolerance_seconds}s (clock skew)"
        )
    expected = [compute_signature(key, timestamp, body) for key in secrets]
    # compare_digest raises TypeError on non-ASCII text; such a candidate cannot match a hex digest.
    if not any(c.isascii() and hmac.compare_digest(e, c) for e in expected for c in signatures):
        raise WebhookSignatureError("signature does not match the body")
    return timestamp


def decode_payload(body: bytes) -> dict[str, Any]:
    """The JSON object in a form body `payload=<urlencoded JSON>`; WebhookSignatureError if not."""
    try:
        return wire_json.form_payload(body)
    except wire_json.UnreadableJson as exc:
        raise WebhookSignatureError(str(exc)) from None


@dataclass(frozen=True)
class WebhookEvent:
    """One Integration-API-mode event: `{type, action, date, id}`; for an order, `id` is the
    order number ([C] [ERP]). `date` is local time without a zone ([C-ex])."""

    type: str
    action: str
    id: str
    date: str | None

    @property
    def key(self) -> str:
        """Stable across re-deliveries of the event (retries re-sign the same body with a new
        `t`, so the signature is not): `<type>:<id>:<action>:<date>`."""
        return f"{self.type}:{self.id}:{self.action}:{self.date or ''}"

    @property
    def event_type(self) -> str:
        """`<type>.<action>`, e.g. `order.update`."""
        return f"{self.type}.{self.action}"

    def to_json(self) -> str:
        """The event as compact JSON (what the inbox keeps of it)."""
        fields = {"type": self.type, "action": self.action, "date": self.date, "id": self.id}
        return json.dumps(fields, separators=(",", ":"))


def parse_events(payload: dict[str, Any]) -> list[WebhookEvent]:
    """The events of an Integration-API-mode payload; WebhookSignatureError naming what is wrong
    (for example a Checkout-API-mode payload, or `events[2].id` missing)."""
    events = payload.get("events")
    if events is None:
        if "products" in payload or "categories" in payload:
            raise WebhookSignatureError(
                "Checkout-API-mode payload (products/categories): set the Webhook plugin to "
                "Integration API mode"
            )
        raise WebhookSignatureError("`payload` has no `events` list")
    if not isinstance(events, list):
        raise WebhookSignatureError("`events` must be a list")
    parsed: list[WebhookEvent] = []
    for i, event in enumerate(events):
        where = f"events[{i}]"
        if not isinstance(event, dict):
            raise WebhookSignatureError(f"{where} must be an object")
        for name in ("type", "action"):
            value = event.get(name)
            if not isinstance(value, str) or not value:
                raise WebhookSignatureError(f"{where}.{name} must be a non-empty string")
        object_id = event.get("id")
        if isinstance(object_id, bool) or not isinstance(object_id, int | str) or object_id == "":
            raise WebhookSignatureError(f"{where}.id must be an integer or a non-empty string")
        date = event.get("date")
        if date is not None and not isinstance(date, str):
            raise WebhookSignatureError(f"{where}.date must be a string")
        parsed.append(WebhookEvent(event["type"], event["action"], str(object_id), date))
    return parsed
