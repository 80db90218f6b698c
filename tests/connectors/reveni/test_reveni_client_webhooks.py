"""Reveni webhooks on the receiving side: the envelope, the optional signature, the fetch-back
rule (`fetch_for_event`, which waits out a read that lags the webhook) and idempotent
subscription (`ensure_webhook`)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from reveni_client_support import PREFIX, RecordingSleep, client_for, return_payload, scripted

from returnbridge.connectors.reveni import (
    ReveniAuthError,
    ReveniInDoubt,
    ReveniInferred,
    WebhookError,
    parse_envelope,
    sign_body,
    verify_signature,
)

RID = "a3a7640d671c4cde8adff13560e25f7b"
EVENT = {"id": "evt_1", "event": "return.updated", "created": 1760529600, "data": {
    "resource_id": RID, "status": "shipped"}}  # fmt: skip
HOOK = "https://bridge.example/webhooks/reveni"


def subscription(sub_id: str, url: str = HOOK, types: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": sub_id,
        "url": url,
        "event_types": types or ["return.created", "return.updated"],
        "created_at": "2026-10-15T12:00:00Z",
    }


# --------------------------------------------------------------------------- envelope, signature


def test_parse_envelope_reads_the_thin_payload_from_bytes_str_or_dict() -> None:
    for body in (json.dumps(EVENT).encode(), json.dumps(EVENT), EVENT):
        event = parse_envelope(body)
        assert event.id == "evt_1" and event.event == "return.updated"
        assert event.data.resource_id == RID and event.created == 1760529600


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({**EVENT, "event": "refund.created"}), "event"),
        (json.dumps({**EVENT, "data": {}}), "data.resource_id"),
        (json.dumps({**EVENT, "created": "yesterday"}), "created"),
    ],
)
def test_parse_envelope_refuses_malformed_bodies_naming_the_problem(
    body: bytes | str, message: str
) -> None:
    with pytest.raises(WebhookError, match=message):
        parse_envelope(body)


@pytest.mark.parametrize(
    "inferred",
    [
        ReveniInferred(),
        ReveniInferred(webhook_signature_algorithm="sha512", webhook_signature_encoding="base64"),
    ],
)
def test_signature_round_trip_and_tampering(inferred: ReveniInferred) -> None:
    body = json.dumps(EVENT).encode()
    signature = sign_body("s3cret", body, inferred)
    verify_signature("s3cret", body, signature, inferred)
    verify_signature("s3cret", body, f"  {signature}\n", inferred)
    with pytest.raises(WebhookError, match="does not match"):
        verify_signature("s3cret", body.replace(b"shipped", b"accepted"), signature, inferred)
    with pytest.raises(WebhookError, match="does not match"):
        verify_signature("other", body, signature, inferred)
    with pytest.raises(WebhookError, match=inferred.webhook_signature_header):
        verify_signature("s3cret", body, None, inferred)


# --------------------------------------------------------------------------- fetch-back


async def test_fetch_for_event_fetches_the_resource_and_trusts_nothing_else() -> None:
    handler, seen = scripted(httpx.Response(200, json=return_payload(RID, status="received")))
    async with client_for(handler) as reveni:
        ret = await reveni.fetch_for_event(parse_envelope(EVENT))
    assert ret is not None and ret.status == "received"  # the API's truth, not the payload's
    assert [str(r.url) for r in seen] == [f"{PREFIX}/returns/{RID}"]


async def test_fetch_for_event_waits_out_a_lagging_read() -> None:
    sleep = RecordingSleep()
    not_found = httpx.Response(404, json={"detail": "Not found."})
    handler, seen = scripted(not_found, not_found, httpx.Response(200, json=return_payload(RID)))
    async with client_for(handler, sleep=sleep, not_found_delay_seconds=0.2) as reveni:
        ret = await reveni.fetch_for_event(parse_envelope(EVENT))
    assert ret is not None and ret.id == RID
    assert len(seen) == 3 and sleep.waits == [0.2, 0.4]


async def test_fetch_for_event_gives_none_when_the_return_never_appears() -> None:
    sleep = RecordingSleep()
    handler, seen = scripted(httpx.Response(404, json={"detail": "Not found."}))
    async with client_for(handler, sleep=sleep, not_found_retries=2) as reveni:
        assert await reveni.fetch_for_event(parse_envelope(EVENT)) is None
    assert len(seen) == 3 and len(sleep.waits) == 2


async def test_fetch_for_event_does_not_swallow_other_errors() -> None:
    handler, _ = scripted(httpx.Response(401, json={"detail": "Invalid token."}))
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniAuthError):
            await reveni.fetch_for_event(parse_envelope(EVENT))


# --------------------------------------------------------------------------- subscriptions


class Subscriptions:
    """`GET/POST webhooks` over an in-memory list; `fail_create` makes a create time out after
    it was stored (the in-doubt case)."""

    def __init__(self, *existing: dict[str, Any], fail_create: bool = False) -> None:
        self.items = list(existing)
        self.fail_create = fail_create
        self.creates = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=self.items)
        body = json.loads(request.content)
        self.creates += 1
        sub = subscription(f"wh_{len(self.items) + 1}", body["url"], body["event_types"])
        self.items.append(sub)
        if self.fail_create:
            raise httpx.ReadTimeout("stored, but the answer was lost")
        return httpx.Response(201, json=sub)


async def test_ensure_webhook_creates_once_then_reuses() -> None:
    subs = Subscriptions(subscription("wh_other", url="https://someone.else/hook"))
    async with client_for(subs.handler) as reveni:
        first = await reveni.ensure_webhook(HOOK, ["return.created", "return.updated"])
        again = await reveni.ensure_webhook(HOOK, ["return.updated", "return.created"])
        listed = await reveni.list_webhooks()
    assert subs.creates == 1 and first == again
    assert first.url == HOOK and set(first.event_types) == {"return.created", "return.updated"}
    assert [s.id for s in listed] == ["wh_other", first.id]


async def test_ensure_webhook_subscribes_again_for_different_event_types() -> None:
    subs = Subscriptions(subscription("wh_1", types=["return.updated"]))
    async with client_for(subs.handler) as reveni:
        sub = await reveni.ensure_webhook(HOOK, ["return.created", "return.updated"])
    assert subs.creates == 1 and sub.id == "wh_2"


async def test_ensure_webhook_resolves_an_in_doubt_create_by_listing() -> None:
    subs = Subscriptions(fail_create=True)
    async with client_for(subs.handler) as reveni:
        sub = await reveni.ensure_webhook(HOOK, ["return.updated"])
    assert subs.creates == 1 and sub.id == "wh_1" and sub.event_types == ["return.updated"]


async def test_ensure_webhook_reraises_in_doubt_when_nothing_was_stored() -> None:
    handler, seen = scripted(
        httpx.Response(200, json=[]), httpx.Response(503), httpx.Response(200, json=[])
    )
    async with client_for(handler) as reveni:
        with pytest.raises(ReveniInDoubt, match="create_webhook"):
            await reveni.ensure_webhook(HOOK, ["return.updated"])
    assert [r.method for r in seen] == ["GET", "POST", "GET"]


async def test_create_webhook_sends_the_confirmed_body() -> None:
    handler, seen = scripted(httpx.Response(201, json=subscription("wh_1")))
    async with client_for(handler) as reveni:
        sub = await reveni.create_webhook(HOOK, ["return.created", "return.updated"])
    assert sub.id == "wh_1"
    assert json.loads(seen[0].content) == {
        "event_types": ["return.created", "return.updated"],
        "url": HOOK,
    }
