"""returnbridge's own webhook receiver (docs/architecture.md#the-webhook-inbox; Prefect OSS has
no webhook endpoint).

A webhook only *wakes* the sync; what it says is kept in the ledger's inbox and the sync fetches
the objects back. So the one promise the receiver makes is: **2xx means committed**. The event is
in the inbox (committed) before the answer is sent; a ledger failure answers 503 so the sender
retries, and nothing was acknowledged. A re-delivered event is answered 200 `duplicate` (Reveni
delivers at least once and would retry a 4xx; the inbox keeps each `(source, event_id)` once).

Routes (under `settings.path_prefix`):
- `POST /webhooks/reveni`: JSON thin envelope `{id, event, created, data{resource_id, status}}`;
  signature (inferred header, `ReveniInferred`) checked when a secret is configured.
- `POST /webhooks/centra`: the Webhook plugin in Integration API mode, form-encoded
  `payload=<json {"events": [...]}>`, `X-Centra-Signature: t=..,v1=..` checked with the timestamp
  tolerance; one inbox row per event, keyed by `(type, id, action, date)` so a retry (same body,
  new `t`) or a re-batched re-send dedupes.
- `POST /slack/actions`: the Slack digest's buttons and modals (receiver/slack_actions.py), form
  `payload=<json>` signed with the Slack app's signing secret (`X-Slack-Signature`,
  `X-Slack-Request-Timestamp`); acts on the ledger's exceptions through `ledger/queue.py`. 404
  when interactivity is off (no `SlackSettings.signing_secret`, or no bot token).
- `GET /healthz`: 200 with the number of unprocessed inbox events (503 when the ledger is down).

Each webhook secret may come with a next one (`reveni_secret_next`, `centra_secret_next`, the
Slack `next_signing_secret`): while a secret is rotated, a request signed with either passes.

Refusals: 413 body too large, 415 wrong content type, 401 signature missing / wrong / replayed,
400 malformed, 404 Centra route without a Centra secret (Slack route without interactivity), 503
ledger failure. Each is logged as
one line (source, status, reason; never a secret or a body) at WARNING (ledger failures: ERROR).
After the commit `on_event` is called once per newly stored event, after the response is sent;
its errors are logged and never change the answer.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from returnbridge.connectors.centra import webhooks as centra_webhooks
from returnbridge.connectors.reveni import webhooks as reveni_webhooks
from returnbridge.connectors.reveni.inferred import DEFAULT_REVENI_INFERRED, ReveniInferred
from returnbridge.connectors.slack.settings import SlackSettings
from returnbridge.ledger.records import InboxSource
from returnbridge.ledger.store import Ledger
from returnbridge.receiver.settings import ReceiverSettings
from returnbridge.receiver.slack_actions import (
    SLACK_ACTIONS_PATH,
    SlackActions,
    SlackClientFactory,
    SlackRefused,
)

log = logging.getLogger(__name__)

REVENI_PATH: Final = "/webhooks/reveni"
CENTRA_PATH: Final = "/webhooks/centra"
HEALTH_PATH: Final = "/healthz"
FORM_TYPE: Final = "application/x-www-form-urlencoded"
HEALTH_COUNT_LIMIT: Final = 10_000  # /healthz counts pending inbox events up to this many


@dataclass(frozen=True)
class AcceptedEvent:
    """An event the receiver has just committed to the inbox (what `on_event` is given)."""

    source: InboxSource
    event_id: str
    resource_id: str | None
    event_type: str | None


OnEvent = Callable[[AcceptedEvent], Awaitable[None] | None]


@dataclass(frozen=True)
class _Entry:
    event_id: str
    body: str
    resource_id: str | None
    event_type: str | None


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise _Refused(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise _Refused(413, f"body of {int(declared)} bytes is over the {limit}-byte limit")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _Refused(413, f"body is over the {limit}-byte limit")
    except ClientDisconnect:
        raise _Refused(400, "client disconnected before the body was complete") from None
    return bytes(body)


def _describe(exc: BaseException) -> str:
    """One line about a ledger failure without SQL parameters (they would carry the body)."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {text[:200]}" if text else type(cause).__name__


def create_receiver(
    ledger: Ledger,
    settings: ReceiverSettings,
    *,
    on_event: OnEvent | None = None,
    reveni_inferred: ReveniInferred = DEFAULT_REVENI_INFERRED,
    slack: SlackSettings | None = None,
    slack_client: SlackClientFactory | None = None,
) -> Starlette:
    """The receiver as an ASGI app, committing to `ledger`'s inbox (see the module docstring).

    `on_event` (sync or async) is the sync trigger, e.g. `DebouncedTrigger.notify`; a sync one
    runs on the event loop and must not block. `slack` turns on `POST /slack/actions` when it
    has a signing secret and a bot token (or `slack_client`, what builds the Web API client,
    is given)."""
    reveni_secrets = settings.reveni_secrets
    reveni_required = settings.reveni_signature_required
    centra_secrets = settings.centra_secrets
    limit = settings.max_body_bytes
    slack_actions, slack_off = _slack_actions(ledger, slack, slack_client)

    def refuse(request: Request, source: str, status: int, reason: str) -> Response:
        client = request.client.host if request.client else "-"
        log.warning("refused %s webhook from %s: %d %s", source, client, status, reason)
        return JSONResponse({"error": reason}, status_code=status)

    async def notify(accepted: Sequence[AcceptedEvent]) -> None:
        assert on_event is not None
        for event in accepted:
            try:
                result = on_event(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception(
                    "on_event failed for %s event %s (it is committed; the next sync takes it)",
                    event.source,
                    event.event_id,
                )

    async def commit(request: Request, source: InboxSource, entries: Sequence[_Entry]) -> Response:
        accepted: list[AcceptedEvent] = []
        duplicates = 0
        for entry in entries:
            try:
                added = await run_in_threadpool(
                    ledger.inbox_add,
                    source,
                    entry.event_id,
                    entry.body,
                    resource_id=entry.resource_id,
                    event_type=entry.event_type,
                )
            except Exception as exc:
                client = request.client.host if request.client else "-"
                log.error(
                    "refused %s webhook from %s: 503 ledger unavailable (%s)",
                    source,
                    client,
                    _describe(exc),
                )
                return JSONResponse(
                    {"error": "ledger unavailable; nothing was acknowledged, retry later"},
                    status_code=503,
                )
            if added:
                accepted.append(
                    AcceptedEvent(source, entry.event_id, entry.resource_id, entry.event_type)
                )
            else:
                duplicates += 1
        log.info(
            "%s webhook: %d event(s) accepted, %d duplicate(s)", source, len(accepted), duplicates
        )
        content: dict[str, Any] = {
            "status": "duplicate" if duplicates and not accepted else "accepted",
            "accepted": len(accepted),
            "duplicates": duplicates,
        }
        background = BackgroundTask(notify, accepted) if on_event and accepted else None
        return JSONResponse(content, background=background)

    async def reveni(request: Request) -> Response:
        try:
            media_type = _media_type(request)
            if not _is_json(media_type):
                raise _Refused(415, f"content type {media_type or '(none)'!r}; expected JSON")
            body = await _read_body(request, limit)
            header = request.headers.get(reveni_inferred.webhook_signature_header)
            if reveni_secrets and (header is not None or reveni_required):
                try:
                    reveni_webhooks.verify_signature(reveni_secrets, body, header, reveni_inferred)
                except reveni_webhooks.WebhookError as exc:
                    raise _Refused(401, str(exc)) from None
            try:
                event = reveni_webhooks.parse_envelope(body, reveni_inferred)
                text = body.decode("utf-8")
            except reveni_webhooks.WebhookError as exc:
                raise _Refused(400, str(exc)) from None
            except UnicodeDecodeError:
                raise _Refused(400, "body is not UTF-8") from None
        except _Refused as refused:
            return refuse(request, "reveni", refused.status, refused.reason)
        entry = _Entry(event.id, text, event.data.resource_id, event.event)
        return await commit(request, "reveni", [entry])

    async def centra(request: Request) -> Response:
        try:
            if not centra_secrets:
                raise _Refused(404, "Centra webhooks are not enabled (no centra_secret set)")
            media_type = _media_type(request)
            if media_type != FORM_TYPE:
                raise _Refused(
                    415, f"content type {media_type or '(none)'!r}; expected {FORM_TYPE}"
                )
            body = await _read_body(request, limit)
            try:
                centra_webhooks.verify_signature(
                    centra_secrets,
                    request.headers.get(centra_webhooks.SIGNATURE_HEADER),
                    body,
                    tolerance_seconds=settings.centra_tolerance_seconds,
                )
            except centra_webhooks.WebhookSignatureError as exc:
                raise _Refused(401, str(exc)) from None
            try:
                events = centra_webhooks.parse_events(centra_webhooks.decode_payload(body))
            except centra_webhooks.WebhookSignatureError as exc:
                raise _Refused(400, str(exc)) from None
        except _Refused as refused:
            return refuse(request, "centra", refused.status, refused.reason)
        entries = [_Entry(e.key, e.to_json(), e.id, e.event_type) for e in events]
        return await commit(request, "centra", entries)

    async def slack_route(request: Request) -> Response:
        try:
            if slack_actions is None:
                raise _Refused(404, slack_off)
            media_type = _media_type(request)
            if media_type != FORM_TYPE:
                raise _Refused(
                    415, f"content type {media_type or '(none)'!r}; expected {FORM_TYPE}"
                )
            body = await _read_body(request, limit)
            return await slack_actions.handle(request.headers, body)
        except (_Refused, SlackRefused) as refused:
            return refuse(request, "slack", refused.status, refused.reason)

    async def healthz(request: Request) -> Response:
        try:
            pending = await run_in_threadpool(ledger.inbox_pending, HEALTH_COUNT_LIMIT)
        except Exception as exc:
            log.error("health check: ledger unavailable (%s)", _describe(exc))
            return JSONResponse({"status": "ledger unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "inbox_pending": len(pending)})

    prefix = settings.path_prefix
    return Starlette(
        routes=[
            Route(prefix + REVENI_PATH, reveni, methods=["POST"]),
            Route(prefix + CENTRA_PATH, centra, methods=["POST"]),
            Route(prefix + SLACK_ACTIONS_PATH, slack_route, methods=["POST"]),
            Route(prefix + HEALTH_PATH, healthz, methods=["GET"]),
        ]
    )


def _slack_actions(
    ledger: Ledger, slack: SlackSettings | None, client: SlackClientFactory | None
) -> tuple[SlackActions | None, str]:
    """The Slack actions handler, or None and why interactivity is off."""
    if slack is None or not slack.signing_secrets:
        return None, (
            "Slack interactivity is off: no signing secret (RETURNBRIDGE_SLACK__SIGNING_SECRET)"
        )
    if client is None and slack.token is None:
        return None, (
            "Slack interactivity is off: it needs the bot token (RETURNBRIDGE_SLACK__TOKEN) to "
            "open modals and update messages"
        )
    return SlackActions(ledger, slack, client=client), ""


def run_receiver(
    settings: ReceiverSettings,
    ledger_url: str,
    on_event: OnEvent | None = None,
    *,
    reveni_inferred: ReveniInferred = DEFAULT_REVENI_INFERRED,
    slack: SlackSettings | None = None,
    log_level: str = "info",
) -> None:
    """Serve the receiver with uvicorn on `settings.host:port` until interrupted.

    `slack` (the digest's buttons, `POST /slack/actions`): None reads `settings.slack` from the
    environment (`RETURNBRIDGE_SLACK__SIGNING_SECRET`, `..._TOKEN`, ...)."""
    if slack is None:
        from returnbridge.settings import load_settings

        slack = load_settings().slack
    with Ledger(ledger_url) as ledger:
        app = create_receiver(
            ledger, settings, on_event=on_event, reveni_inferred=reveni_inferred, slack=slack
        )
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level)
