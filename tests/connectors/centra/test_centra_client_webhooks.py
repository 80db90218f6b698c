"""Centra webhook signatures: the docs' test vector, freshness, and malformed requests."""

from __future__ import annotations

import hmac

import pytest

from returnbridge.connectors.centra import webhooks
from returnbridge.connectors.centra.webhooks import (
    WebhookSignatureError,
    compute_signature,
    decode_payload,
    encode_payload,
    signature_header,
    verify_signature,
)

SECRET = "test123"
TIMESTAMP = 12345678
BODY = b"payload=%7B%22x%22%3A%22test%22%7D"
DOCS_SIGNATURE = "0b9cd84f5d583e5e1aadfb9f160aa8080b51d5b85ff85808d6b75bdac356c549"


def test_docs_test_vector() -> None:
    assert compute_signature(SECRET, TIMESTAMP, BODY) == DOCS_SIGNATURE
    header = f"t={TIMESTAMP},v1={DOCS_SIGNATURE}"
    assert signature_header(SECRET, TIMESTAMP, BODY) == header
    assert verify_signature(SECRET, header, BODY, now=TIMESTAMP) == TIMESTAMP
    assert decode_payload(BODY) == {"x": "test"}


def test_payload_round_trips_through_the_form_encoding() -> None:
    payload = {"events": [{"type": "order", "action": "update", "id": 1001}]}
    body = encode_payload(payload)
    assert body.startswith(b"payload=")
    assert decode_payload(body) == payload


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamps_inside_tolerance_are_accepted(skew: int) -> None:
    header = signature_header(SECRET, TIMESTAMP, BODY)
    assert verify_signature(SECRET, header, BODY, now=TIMESTAMP + skew, tolerance_seconds=300)


@pytest.mark.parametrize("skew", [-301, 301, 86_400])
def test_stale_or_future_timestamps_are_replays(skew: int) -> None:
    header = signature_header(SECRET, TIMESTAMP, BODY)
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        verify_signature(SECRET, header, BODY, now=TIMESTAMP + skew, tolerance_seconds=300)


def test_replayed_signature_with_a_fresh_timestamp_fails() -> None:
    # An attacker who re-sends an old signature under a new `t` cannot forge the HMAC.
    header = f"t={TIMESTAMP + 1000},v1={DOCS_SIGNATURE}"
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_signature(SECRET, header, BODY, now=TIMESTAMP + 1000)


@pytest.mark.parametrize(
    ("secret", "body"),
    [("wrong", BODY), (SECRET, BODY + b"x"), (SECRET, b"payload=%7B%7D")],
)
def test_wrong_secret_or_tampered_body_is_rejected(secret: str, body: bytes) -> None:
    header = f"t={TIMESTAMP},v1={DOCS_SIGNATURE}"
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_signature(secret, header, body, now=TIMESTAMP)


def test_any_matching_v1_is_accepted_during_secret_rotation() -> None:
    header = f"t={TIMESTAMP},v1={'0' * 64},v1={DOCS_SIGNATURE}"
    assert verify_signature(SECRET, header, BODY, now=TIMESTAMP) == TIMESTAMP


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        (f"v1={DOCS_SIGNATURE}", "no t="),
        (f"t={TIMESTAMP}", "no v1="),
        (f"t=abc,v1={DOCS_SIGNATURE}", "not an integer"),
        (f"t=-5,v1={DOCS_SIGNATURE}", "not an integer"),
    ],
)
def test_malformed_headers_are_rejected(header: str | None, message: str) -> None:
    with pytest.raises(WebhookSignatureError, match=message):
        verify_signature(SECRET, header, BODY, now=TIMESTAMP)


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)
    verify_signature(SECRET, f"t={TIMESTAMP},v1={DOCS_SIGNATURE}", BODY, now=TIMESTAMP)
    assert calls == [(DOCS_SIGNATURE, DOCS_SIGNATURE)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "url-encoded"),
        (b"other=1", "exactly one"),
        (b"payload=1&payload=2", "exactly one"),
        (b"payload=not-json", "not JSON"),
        (b"payload=%5B1%5D", "JSON object"),
    ],
)
def test_bad_bodies_are_rejected(body: bytes, message: str) -> None:
    with pytest.raises(WebhookSignatureError, match=message):
        decode_payload(body)


@pytest.mark.parametrize(
    "header",
    [
        f"t={TIMESTAMP},v1=\u00e9{DOCS_SIGNATURE[1:]}",
        "t=\u0661\u0662,v1=00",
        f"t={'9' * 5000},v1=00",
    ],
    ids=["non-ascii-signature", "non-ascii-digits", "huge-timestamp"],
)
def test_hostile_headers_are_signature_errors_not_crashes(header: str) -> None:
    with pytest.raises(WebhookSignatureError):
        verify_signature(SECRET, header, BODY, now=TIMESTAMP)
