"""Reveni webhooks: the thin envelope and the optional signature.

The envelope `{id, event, created, data{resource_id, status}}` is [R-OBS S4]. It is a
notification, not data: the receiver rule is to fetch `data.resource_id` back with the API key
and trust nothing else in the payload (that also neutralises a spoofed, unsigned request).

No Reveni source mentions signing. Signing is therefore off by default; when a
secret is configured, the header name, digest and encoding come from `ReveniInferred` ([INFER],
modelled on peers: HMAC of the raw body). Both the simulator (to sign) and the receiver (to
verify) use this module, so they cannot disagree.

`data.status` is read as our status name in either casing (`encoding.status_name`); with
`status_case_strict` the other casing of a status is refused. A word that is no status is kept
as given: the envelope only notifies, the return fetched back is what counts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from returnbridge.connectors import wire_json
from returnbridge.connectors.reveni.encoding import status_name, status_to_wire
from returnbridge.connectors.reveni.inferred import DEFAULT_REVENI_INFERRED, ReveniInferred
from returnbridge.connectors.reveni.models import WebhookEvent


class WebhookError(ValueError):
    """A webhook request that must be refused (4xx); the message says what is wrong."""


def sign_body(secret: str, body: bytes, inferred: ReveniInferred = DEFAULT_REVENI_INFERRED) -> str:
    """The signature header value for `body` under `secret`."""
    digest = hmac.new(
        secret.encode(), body, getattr(hashlib, inferred.webhook_signature_algorithm)
    ).digest()
    if inferred.webhook_signature_encoding == "base64":
        return base64.b64encode(digest).decode()
    return digest.hex()


def verify_signature(
    secret: str | Sequence[str],
    body: bytes,
    header_value: str | None,
    inferred: ReveniInferred = DEFAULT_REVENI_INFERRED,
) -> None:
    """Raise WebhookError unless `header_value` is the signature of `body` (constant time).

    `secret` may be several secrets (the current and the next one while rotating): a signature
    made with any of them passes."""
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("no secret to verify the Reveni webhook signature with")
    if not header_value:
        raise WebhookError(f"missing {inferred.webhook_signature_header} header")
    given = header_value.strip().encode()
    if not any(
        hmac.compare_digest(sign_body(key, body, inferred).encode(), given) for key in secrets
    ):
        raise WebhookError(f"{inferred.webhook_signature_header} does not match the body")


def parse_envelope(
    body: bytes | str | dict[str, Any], inferred: ReveniInferred = DEFAULT_REVENI_INFERRED
) -> WebhookEvent:
    """Read one webhook envelope, `data.status` as our status name; raise WebhookError naming
    the problem."""
    if isinstance(body, bytes | str):
        try:
            body = wire_json.loads(body)
        except wire_json.UnreadableJson as exc:
            raise WebhookError(str(exc)) from None
    if not isinstance(body, dict):
        raise WebhookError("body must be a JSON object")
    try:
        event = WebhookEvent.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise WebhookError(f"{where}: {err['msg']}") from None
    status = event.data.status
    if status is None:
        return event
    name = status_name(status, inferred)
    if name is None:
        relaxed = inferred.model_copy(update={"status_case_strict": False})
        other = status_name(status, relaxed)
        if other is not None:
            raise WebhookError(
                f"data.status: {status!r} is not spelt {status_to_wire(other, inferred)!r} "
                "(status_case_strict)"
            )
        return event  # not a status we know: kept as given
    if name == status:
        return event
    return event.model_copy(update={"data": event.data.model_copy(update={"status": name})})
