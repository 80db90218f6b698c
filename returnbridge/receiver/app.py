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
  new `t`) or a re-batched re-send dedupes. An event whose texts the ledger cannot store is
  refused on its own: the others are committed and the answer is 200 `partial` naming it (400
  only when no event of the request can be stored; see `centra` below for why).
- `POST /slack/actions`: the Slack digest's buttons and modals (receiver/slack_actions.py), form
  `payload=<json>` signed with the Slack app's signing secret (`X-Slack-Signature`,
  `X-Slack-Request-Timestamp`); acts on the ledger's exceptions through `ledger/queue.py`. 404
  when interactivity is off (no `SlackSettings.signing_secret`, or no bot token).
- `GET /healthz`: 200 with the number of unprocessed inbox events, counted in SQL
  (`ledger.health.inbox_backlog`: no row is loaded, however long the backlog; 503 when the
  ledger is down).

Each webhook secret may come with a next one (`reveni_secret_next`, `centra_secret_next`, the
Slack `next_signing_secret`): while a secret is rotated, a request signed with either passes.

Order of the checks, cheapest first, every one before any ledger write: the per-source rate
limit, the content type, the size, the signature, the JSON, the texts (can the ledger store
them?), then the commit.

Refusals: 429 over the source's rate limit (with `Retry-After`), 413 body too large, 415 wrong
content type, 401 signature missing / wrong / replayed, 400 malformed (JSON nested too deep, a
number too long, an id with a character the ledger cannot store: NUL, a lone surrogate), 404
Centra route without a Centra secret (Slack route without interactivity), 503 ledger failure.
Each is logged as one line (source, status, reason; never a secret or a body) at WARNING (ledger
failures: ERROR; a run of 429s: its first and, once the source is accepted again, how many).
After the commit `on_event` is called once per newly stored event, after the response is sent;
its errors are logged and never change the answer.

Rate limit (`ReceiverSettings.rate_limit_per_minute`, `rate_limit_burst`): one token bucket per
source (reveni, centra, slack), taken before anything else is looked at, signed or not: Reveni
signing is off by default, so anyone who reaches the receiver can post envelopes, and a flood
(forged, replayed or badly signed) is refused for the price of a 429 instead of a body read, an
HMAC or a ledger write. The senders retry a 429; a sender kept out by a flood loses nothing,
since a webhook only wakes the sync and the scheduled sync reads the same changes.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import threading
import time
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
from returnbridge.ledger.health import inbox_backlog
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
# The longest id kept (UTF-8 bytes): PostgreSQL refuses an index entry over ~2,700 bytes, and the
# inbox's (source, event_id) is indexed; an id longer than this is no id.
MAX_ID_BYTES: Final = 1024
# What a ledger text column cannot hold: NUL (PostgreSQL's text refuses it) and lone surrogates
# (valid as JSON escapes, but they cannot be encoded to UTF-8 for the database).
_UNSTORABLE: Final = re.compile(r"[\x00\ud800-\udfff]")


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
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


class _TokenBucket:
    """One source's rate limit: `burst` requests at once, refilled at `per_minute`; thread-safe
    (the handlers run on the event loop, but nothing here should depend on that)."""

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float]) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0  # tokens per second
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._updated = clock()
        self._lock = threading.Lock()
        self.refused = 0  # refusals in the current run of 429s (0: the last request passed)

    def take(self) -> float:
        """0 when the request may pass (a token is taken), else the seconds until one can."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._updated = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self._rate


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
        # Compared as text when long: int() refuses over 4,300 digits with a ValueError.
        if len(declared.lstrip("0")) > 18 or int(declared) > limit:
            shown = declared if len(declared) <= 20 else f"{declared[:20]}..."
            raise _Refused(413, f"body of {shown} bytes is over the {limit}-byte limit")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _Refused(413, f"body is over the {limit}-byte limit")
    except ClientDisconnect:
        raise _Refused(400, "client disconnected before the body was complete") from None
    return bytes(body)


def _unstorable(name: str, text: str | None) -> str | None:
    """Why the ledger cannot keep `text` (the field `name`), or None when it can."""
    if text is None:
        return None
    found = _UNSTORABLE.search(text)
    if found is not None:
        return f"{name} contains a character that cannot be stored (\\u{ord(found.group()):04x})"
    return None


def _too_long(name: str, text: str | None) -> str | None:
    """Why `text` (the id `name`) is refused for its length, or None."""
    if text is None:
        return None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_ID_BYTES:
        return f"{name} is {size} bytes long, over the {MAX_ID_BYTES}-byte limit"
    return None


def _first_problem(*problems: str | None) -> str | None:
    return next((p for p in problems if p is not None), None)


def _reveni_problem(entry: _Entry) -> str | None:
    """Why the ledger cannot keep a Reveni event (every text it stores), or None."""
    return _first_problem(
        _unstorable("event id", entry.event_id),
        _unstorable("resource id (data.resource_id)", entry.resource_id),
        _unstorable("event type (event)", entry.event_type),
        _unstorable("body", entry.body),
        _too_long("event id", entry.event_id),
        _too_long("resource id (data.resource_id)", entry.resource_id),
    )


def _centra_problem(index: int, event: centra_webhooks.WebhookEvent, entry: _Entry) -> str | None:
    """Why the ledger cannot keep Centra's `events[index]`, or None. The event id is built from
    type, id, action and date, so the fields are named as Centra sent them."""
    where = f"events[{index}]"
    return _first_problem(
        *(
            _unstorable(f"{where}.{name}", value)
            for name, value in (
                ("type", event.type),
                ("action", event.action),
                ("id", event.id),
                ("date", event.date),
            )
        ),
        _unstorable(f"{where} body", entry.body),
        _too_long(f"{where}.id", entry.resource_id),
        _too_long(f"{where} event id (type:id:action:date)", entry.event_id),
    )


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
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The receiver as an ASGI app, committing to `ledger`'s inbox (see the module docstring).

    `on_event` (sync or async) is the sync trigger, e.g. `DebouncedTrigger.notify`; a sync one
    runs on the event loop and must not block. `slack` turns on `POST /slack/actions` when it
    has a signing secret and a bot token (or `slack_client`, what builds the Web API client,
    is given). `clock` (monotonic seconds) refills the rate limits' buckets."""
    reveni_secrets = settings.reveni_secrets
    reveni_required = settings.reveni_signature_required
    centra_secrets = settings.centra_secrets
    limit = settings.max_body_bytes
    slack_actions, slack_off = _slack_actions(ledger, slack, slack_client)
    buckets: dict[str, _TokenBucket] = {}
    if settings.rate_limit_per_minute:
        burst = settings.rate_limit_burst or settings.rate_limit_per_minute
        buckets = {
            source: _TokenBucket(settings.rate_limit_per_minute, burst, clock)
            for source in ("reveni", "centra", "slack")
        }

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "-"

    def refuse(request: Request, source: str, refused: _Refused) -> Response:
        status, reason = refused.status, refused.reason
        log.warning("refused %s webhook from %s: %d %s", source, client_of(request), status, reason)
        return JSONResponse({"error": reason}, status_code=status, headers=refused.headers)

    def rate_limit(request: Request, source: str) -> Response | None:
        """The 429 when `source` is over its rate limit (nothing else was looked at), else None.
        Only the first refusal of a run is logged, and how many there were once it ends."""
        bucket = buckets.get(source)
        if bucket is None:
            return None
        wait = bucket.take()
        if not wait:
            if bucket.refused:
                log.warning(
                    "%s requests accepted again; %d were refused over the rate limit",
                    source,
                    bucket.refused,
                )
                bucket.refused = 0
            return None
        retry_after = str(max(1, math.ceil(wait)))
        refused = _Refused(
            429,
            f"too many {source} requests: over {bucket.per_minute} a minute; "
            f"retry after {retry_after}s",
            headers={"Retry-After": retry_after},
        )
        bucket.refused += 1
        if bucket.refused == 1:
            return refuse(request, source, refused)
        return JSONResponse({"error": refused.reason}, status_code=429, headers=refused.headers)

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

    async def commit(
        request: Request,
        source: InboxSource,
        entries: Sequence[_Entry],
        refused: Sequence[tuple[int, str]] = (),
    ) -> Response:
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
                log.error(
                    "refused %s webhook from %s: 503 ledger unavailable (%s)",
                    source,
                    client_of(request),
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
        if refused:
            for index, reason in refused:
                log.warning(
                    "refused %s event %d of a batch from %s: 400 %s (the rest is committed)",
                    source,
                    index,
                    client_of(request),
                    reason,
                )
            content["status"] = "partial"
            content["refused"] = [{"index": index, "error": reason} for index, reason in refused]
        background = BackgroundTask(notify, accepted) if on_event and accepted else None
        return JSONResponse(content, background=background)

    async def reveni(request: Request) -> Response:
        limited = rate_limit(request, "reveni")
        if limited is not None:
            return limited
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
                # The body is kept as it came (decoded, never re-serialised): JSON escapes such
                # as \ud800 or \u0000 stay six ASCII characters, which every ledger can store.
                text = body.decode("utf-8")
            except reveni_webhooks.WebhookError as exc:
                raise _Refused(400, str(exc)) from None
            except UnicodeDecodeError:
                raise _Refused(400, "body is not UTF-8") from None
            entry = _Entry(event.id, text, event.data.resource_id, event.event)
            problem = _reveni_problem(entry)
            if problem is not None:
                raise _Refused(400, problem)
        except _Refused as refused:
            return refuse(request, "reveni", refused)
        return await commit(request, "reveni", [entry])

    async def centra(request: Request) -> Response:
        limited = rate_limit(request, "centra")
        if limited is not None:
            return limited
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
            # An event the ledger cannot store is refused on its own; the others are kept.
            # Answering the whole batch with a 4xx would lose them: Centra re-sends the whole
            # batch, the bad event is refused again every time, and when Centra gives up the
            # good events go with it. So the good ones are committed and the answer is 200
            # naming the refused ones (`status: partial`, `refused: [{index, error}]`, each
            # logged): Centra stops re-sending what is stored, and the refused event could
            # never be stored however often it came. Only when nothing in the request can be
            # stored is the answer a 400.
            entries: list[_Entry] = []
            refused_events: list[tuple[int, str]] = []
            for index, event in enumerate(events):
                # `to_json` escapes every non-ASCII character: the stored body is always ASCII.
                entry = _Entry(event.key, event.to_json(), event.id, event.event_type)
                problem = _centra_problem(index, event, entry)
                if problem is None:
                    entries.append(entry)
                else:
                    refused_events.append((index, problem))
            if not entries and refused_events:
                raise _Refused(400, "; ".join(reason for _, reason in refused_events))
        except _Refused as refused:
            return refuse(request, "centra", refused)
        return await commit(request, "centra", entries, refused_events)

    async def slack_route(request: Request) -> Response:
        limited = rate_limit(request, "slack")
        if limited is not None:
            return limited
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
        except _Refused as refused:
            return refuse(request, "slack", refused)
        except SlackRefused as refused:
            return refuse(request, "slack", _Refused(refused.status, refused.reason))

    async def healthz(request: Request) -> Response:
        try:
            # Counted in SQL: no row (and no body) is loaded, however long the backlog.
            backlog = await run_in_threadpool(inbox_backlog, ledger)
        except Exception as exc:
            log.error("health check: ledger unavailable (%s)", _describe(exc))
            return JSONResponse({"status": "ledger unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "inbox_pending": backlog.pending})

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
