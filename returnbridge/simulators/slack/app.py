"""A Slack Web API stand-in: `chat.postMessage`, `auth.test` and what the digest's buttons need
(`chat.update`, `views.open`, `conversations.history`, `chat.postEphemeral`) over real HTTP, and
`/_sim`, which can also click a button or submit a modal the way Slack does (signed).

It answers like Slack for what the digest poster does: HTTP 200 with `{"ok": true, ...}` or
`{"ok": false, "error": ...}` (`not_authed`, `invalid_auth`, `channel_not_found`,
`invalid_blocks`, `no_text`, `invalid_json`, `invalid_form_data`), HTTP 429 with `Retry-After`
when rate-limited and HTTP 503 when down. Bodies are JSON or form-encoded, as slack_sdk sends
them; the token comes as `Authorization: Bearer <token>` (or a `token` body field).

Blocks are checked for shape (a list of objects with a `type`) and for the Block Kit limits a
digest could break (50 blocks, header text 150, section text 3000, 10 fields of 2000): a real
Slack answers `invalid_blocks` to those too.

Interactivity, as Slack does it: `chat.update` replaces a posted message's text and blocks
(`message_not_found` for an unknown ts); `conversations.history` answers a channel's messages
newest first (`latest`, `oldest`, `inclusive`, `limit`); `chat.postEphemeral` records a message
only `user` would see; `views.open` opens a modal for a `trigger_id` this stand-in issued with a
click, once, within `trigger_ttl_seconds` (3 s, as Slack): `invalid_trigger_id`,
`exchanged_trigger_id`, `expired_trigger_id`; a modal needs `type: modal`, a title of at most 24
characters and a `submit` when it has input blocks (`invalid_arguments`).

`/_sim` (no auth, never faulted):

- `GET /_sim/messages`: every accepted message (channel, channel_id, text, blocks, ts, ...), as
  it is now (`chat.update` changes it in place);
- `GET /_sim/calls`: every Web API call (method) with the status and error it got;
- `GET /_sim/updates`, `/_sim/views`, `/_sim/ephemerals`: the `chat.update`s made, the modals
  opened (id, view, user, state `open` / `submitted`, errors shown), the ephemeral messages;
- `GET /_sim/interactions`: every signed request `/_sim/interact` and `/_sim/submit_view` sent,
  with the app's answer;
- `GET/POST /_sim/faults`: `{"rate_limited": N, "retry_after": S}` makes the next N
  `chat.postMessage` calls answer 429 with `Retry-After: S`; `{"down": true}` answers 503 to
  every Web API method;
- `POST /_sim/reset`: forget messages, calls, views, triggers and interactions, clear the faults;
- `POST /_sim/interact` `{"url"?, "user": {"id", "username"}, "channel", "ts", "action_id",
  "block_id"?, "value"?, "confirm"?: true, "age_seconds"?: 0, "wait_seconds"?: 0}`: a person
  clicks the button `action_id` (narrowed by `block_id` / `value` when several match) of message
  `ts` in `channel`: a `block_actions` payload built from the stored message, with a fresh
  `trigger_id`, signed with the signing secret (`age_seconds` back-dates it) and POSTed
  form-encoded to `url` (default: the app's `interactivity_url`). A button that is not in the
  message is refused (400). A button with a confirm dialog is sent only when `confirm` is true
  (the person pressed the confirm button); false answers `{"sent": false, "confirm": ...}`.
  Answers `{"sent": true, "status", "answer", "trigger_id", "payload", "follow_ups"}`: the app's
  HTTP status and body, and the `chat.update` / `views.open` / `chat.postEphemeral` calls made
  after it within `wait_seconds` (waits for the first, then briefly for more);
- `POST /_sim/submit_view` `{"view_id", "values": {block_id: value | {action_id: value}},
  "user"?, "url"?, "age_seconds"?, "wait_seconds"?}`: the person submits open modal `view_id`
  (a `view_submission`, signed, to the URL of the click that opened it). Like Slack, a required
  input left empty is not submitted (400). The view is `submitted` unless the app answered
  `response_action: errors` (kept open, with the errors). Answers as `/_sim/interact` does, with
  `view_id` and `view_state`.

`create_slack_app` is what tests, the demo and `returnbridge sim slack` use; the state is
`app.state.slack`. `run` serves it with uvicorn in the foreground.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, Router

from returnbridge.connectors.slack.interactions import encode_payload, signed_headers
from returnbridge.simulators.control import ControlError, bad_requests_are_400, json_body

CONTROL_PREFIX = "/_sim"
DEFAULT_TOKEN = "xoxb-returnbridge-sim"
DEFAULT_SIGNING_SECRET = "returnbridge-sim-signing-secret"
TEAM_ID = "T0RETURNBRIDGE"
APP_ID = "A0RETURNBRIDGE"
BOT_ID = "B0RETURNBRIDGE"
BOT_USER_ID = "U0RETURNBRIDGE"
TRIGGER_TTL_SECONDS = 3.0  # Slack: a trigger_id opens a modal within 3 seconds of the click
MAX_MODAL_TITLE = 24
_FOLLOW_UP_GRACE_SECONDS = 0.2  # after the first follow-up call, how long to wait for more
_EFFECT_METHODS = ("chat.update", "views.open", "chat.postEphemeral")
DEFAULT_CHANNELS = ("#returns-finance", "#returns-ops", "#returns-cx", "#returns-engineering")

# The first message's ts; each next one is 100 µs later (Slack's ts is "<seconds>.<micros>").
_FIRST_TS_MICROS = 1_700_000_000_000_100
_TS_STEP_MICROS = 100

# Block Kit limits (api.slack.com/reference/block-kit) the stand-in enforces.
MAX_BLOCKS = 50
MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000


class SlackError(Exception):
    """An `ok: false` answer with this error code (HTTP 200, as Slack does)."""

    def __init__(self, error: str, details: list[str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.details = details or []


@dataclass
class SlackFaults:
    """Scripted answers: the next `rate_limited` posts get 429; everything 503 while `down`."""

    rate_limited: int = 0
    retry_after: float = 1.0
    down: bool = False


@dataclass
class SlackState:
    """What the stand-in knows: the token, the channels, and everything posted, updated, opened
    and clicked."""

    token: str
    channels: dict[str, str]  # "#name" -> channel id
    signing_secret: str = DEFAULT_SIGNING_SECRET
    interactivity_url: str | None = None
    trigger_ttl_seconds: float = TRIGGER_TTL_SECONDS
    faults: SlackFaults = field(default_factory=SlackFaults)
    messages: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    # chat.update / views.open / chat.postEphemeral done, in order, each with its `method`
    effects: list[dict[str, Any]] = field(default_factory=list)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)  # view id -> the modal
    triggers: dict[str, dict[str, Any]] = field(default_factory=dict)  # trigger_id -> the click
    interactions: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _next_ts: int = _FIRST_TS_MICROS
    _next_view: int = 1

    def resolve_channel(self, channel: str) -> tuple[str, str]:
        """(`#name`, id) for a channel given as `#name`, `name` or its id."""
        wanted = channel.strip()
        for name, channel_id in self.channels.items():
            if wanted in (name, name.lstrip("#"), channel_id):
                return name, channel_id
        raise SlackError("channel_not_found")

    def next_ts(self) -> str:
        with self.lock:
            micros = self._next_ts
            self._next_ts += _TS_STEP_MICROS
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def next_view_id(self) -> str:
        with self.lock:
            number = self._next_view
            self._next_view += 1
        return f"V0{number:08X}"

    def message(self, channel_id: str, ts: str) -> dict[str, Any]:
        """The stored message `ts` of channel `channel_id`; SlackError `message_not_found`."""
        with self.lock:
            for record in self.messages:
                if record["channel_id"] == channel_id and record["ts"] == ts:
                    return record
        raise SlackError("message_not_found")

    def record_call(self, method: str, status: int, error: str | None) -> None:
        with self.lock:
            self.calls.append({"method": method, "status": status, "error": error})

    def effects_of(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.effects if e["method"] == method]

    def reset(self) -> None:
        with self.lock:
            self.faults = SlackFaults()
            self.messages.clear()
            self.calls.clear()
            self.effects.clear()
            self.views.clear()
            self.triggers.clear()
            self.interactions.clear()
            self._next_ts = _FIRST_TS_MICROS
            self._next_view = 1


def channel_id(name: str) -> str:
    """A stable Slack-looking channel id for a channel name."""
    digest = hashlib.sha1(name.lstrip("#").encode("utf-8")).hexdigest()[:8].upper()
    return f"C0{digest}"


def _normalise_channels(channels: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in channels:
        name = raw.strip()
        if not name:
            raise ValueError("a channel name cannot be empty")
        name = name if name.startswith("#") else f"#{name}"
        out[name] = channel_id(name)
    return out


# --------------------------------------------------------------------------- request parsing


async def _params(request: Request) -> dict[str, Any]:
    """The call's parameters from a JSON or form-encoded body (and the query string)."""
    params: dict[str, Any] = dict(request.query_params)
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not raw:
        return params
    if content_type == "application/json":
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SlackError("invalid_json") from None
        if not isinstance(body, dict):
            raise SlackError("invalid_json")
        params.update(body)
    elif content_type in ("application/x-www-form-urlencoded", ""):
        try:
            params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise SlackError("invalid_form_data") from None
    else:  # multipart (file uploads) and anything else: not needed by the digests
        raise SlackError("invalid_form_data")
    return params


def _check_auth(state: SlackState, request: Request, params: dict[str, Any]) -> None:
    header = request.headers.get("authorization", "")
    token = header[len("bearer ") :].strip() if header.lower().startswith("bearer ") else ""
    token = token or str(params.get("token") or "")
    if not token:
        raise SlackError("not_authed")
    if token != state.token:
        raise SlackError("invalid_auth")


def _text_of(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def parse_blocks(raw: Any) -> list[dict[str, Any]]:
    """The `blocks` parameter as a list of block objects; SlackError(`invalid_blocks`) if it is
    not one, or breaks a Block Kit limit a digest could reach."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise SlackError("invalid_blocks", ["blocks is not valid JSON"]) from None
    if not isinstance(raw, list):
        raise SlackError("invalid_blocks", ["blocks must be an array"])
    problems: list[str] = []
    if len(raw) > MAX_BLOCKS:
        problems.append(f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]")
    for i, block in enumerate(raw):
        where = f"[json-pointer:/blocks/{i}]"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            problems.append(f"must be an object with a type {where}")
            continue
        kind = block["type"]
        text = _text_of(block.get("text"))
        if kind == "header" and not 0 < len(text) <= MAX_HEADER_TEXT:
            problems.append(f"header text must be 1..{MAX_HEADER_TEXT} characters {where}")
        if kind == "section":
            fields = block.get("fields") or []
            if not text and not fields:
                problems.append(f"a section needs text or fields {where}")
            if len(text) > MAX_SECTION_TEXT:
                problems.append(f"section text over {MAX_SECTION_TEXT} characters {where}")
            if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
                problems.append(f"no more than {MAX_FIELDS} fields allowed {where}")
            elif any(len(_text_of(f)) > MAX_FIELD_TEXT for f in fields):
                problems.append(f"a field is over {MAX_FIELD_TEXT} characters {where}")
    if problems:
        raise SlackError("invalid_blocks", problems)
    return raw


def _content(params: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """A message's text and blocks from a call's parameters; SlackError `no_text` when it has
    neither (chat.postMessage, chat.update and chat.postEphemeral refuse that alike)."""
    blocks = parse_blocks(params.get("blocks"))
    text = params.get("text")
    text = "" if text is None else str(text)
    if not text and not blocks:
        raise SlackError("no_text")
    return text, blocks


def _flag(value: Any) -> bool | None:
    """A boolean parameter as JSON (`false`) or form (`"0"`, `"false"`) sends it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true")


# --------------------------------------------------------------------------- the Web API


def _ok(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"ok": True, **body})


def _not_ok(exc: SlackError) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error": exc.error}
    if exc.details:
        body["errors"] = exc.details
        body["response_metadata"] = {"messages": [f"[ERROR] {d}" for d in exc.details]}
    return JSONResponse(body)


def _unavailable() -> Response:
    return PlainTextResponse("Service Unavailable", status_code=503)


def _message_object(record: dict[str, Any]) -> dict[str, Any]:
    """A stored message as Slack's API shows it (`conversations.history`, payloads)."""
    return {
        "type": "message",
        "subtype": "bot_message",
        "bot_id": BOT_ID,
        "user": BOT_USER_ID,
        "text": record["text"],
        "blocks": record["blocks"],
        "ts": record["ts"],
    }


def _ts_value(raw: Any, name: str) -> Decimal | None:
    """A ts parameter (`"1700000000.000100"`) as a number; SlackError `invalid_ts_<name>`."""
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise SlackError(f"invalid_ts_{name}") from None
    if not value.is_finite():
        raise SlackError(f"invalid_ts_{name}")
    return value


def _json_param(raw: Any, error: str) -> Any:
    """A parameter slack_sdk may send as JSON text (form) or as a JSON value."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise SlackError(error, [f"{error}: not valid JSON"]) from None
    return raw


def parse_view(raw: Any) -> dict[str, Any]:
    """The `view` parameter of `views.open` as a modal; SlackError `invalid_arguments` naming
    what a real Slack would refuse."""
    view = _json_param(raw, "invalid_arguments")
    if not isinstance(view, dict):
        raise SlackError("invalid_arguments", ["view must be an object [json-pointer:/view]"])
    problems: list[str] = []
    if view.get("type") != "modal":
        problems.append("view.type must be modal [json-pointer:/view/type]")
    title = _text_of(view.get("title"))
    if not 0 < len(title) <= MAX_MODAL_TITLE:
        problems.append(
            f"title must be 1..{MAX_MODAL_TITLE} characters [json-pointer:/view/title/text]"
        )
    try:
        blocks = parse_blocks(view.get("blocks"))
    except SlackError as exc:
        problems += exc.details
        blocks = []
    inputs = [b for b in blocks if b.get("type") == "input"]
    for block in inputs:
        element = block.get("element")
        if not isinstance(element, dict) or not isinstance(element.get("type"), str):
            problems.append("an input block needs an element [json-pointer:/view/blocks]")
        if not _text_of(block.get("label")):
            problems.append("an input block needs a label [json-pointer:/view/blocks]")
    if inputs and not _text_of(view.get("submit")):
        problems.append("submit is required when a view has input blocks [json-pointer:/view]")
    if len(str(view.get("private_metadata") or "")) > 3000:
        problems.append("private_metadata is over 3000 characters [json-pointer:/view]")
    if problems:
        raise SlackError("invalid_arguments", problems)
    return view


def web_api(state: SlackState) -> Router:
    async def post_message(request: Request) -> Response:
        with state.lock:
            faults = state.faults
            if faults.down:
                state.calls.append({"method": "chat.postMessage", "status": 503, "error": "down"})
                return _unavailable()
            if faults.rate_limited > 0:
                faults.rate_limited -= 1
                state.calls.append(
                    {"method": "chat.postMessage", "status": 429, "error": "ratelimited"}
                )
                return JSONResponse(
                    {"ok": False, "error": "ratelimited"},
                    status_code=429,
                    headers={"Retry-After": f"{faults.retry_after:g}"},
                )
        try:
            params = await _params(request)
            _check_auth(state, request, params)
            name, cid = state.resolve_channel(str(params.get("channel") or ""))
            text, blocks = _content(params)
        except SlackError as exc:
            with state.lock:
                state.calls.append(
                    {"method": "chat.postMessage", "status": 200, "error": exc.error}
                )
            return _not_ok(exc)
        ts = state.next_ts()
        message = {
            "type": "message",
            "subtype": "bot_message",
            "bot_id": "B0RETURNBRIDGE",
            "text": text,
            "blocks": blocks,
            "ts": ts,
        }
        record = {
            "channel": name,
            "channel_id": cid,
            "text": text,
            "blocks": blocks,
            "ts": ts,
            "unfurl_links": _flag(params.get("unfurl_links")),
            "unfurl_media": _flag(params.get("unfurl_media")),
        }
        with state.lock:
            state.messages.append(record)
            state.calls.append({"method": "chat.postMessage", "status": 200, "error": None})
        return _ok({"channel": cid, "ts": ts, "message": message})

    async def auth_test(request: Request) -> Response:
        if state.faults.down:
            return _unavailable()
        try:
            _check_auth(state, request, await _params(request))
        except SlackError as exc:
            return _not_ok(exc)
        return _ok(
            {
                "url": "https://returnbridge-sim.slack.com/",
                "team": "returnbridge sim",
                "user": "returnbridge",
                "team_id": "T0RETURNBRIDGE",
                "user_id": "U0RETURNBRIDGE",
                "bot_id": "B0RETURNBRIDGE",
            }
        )

    async def unknown_method(request: Request) -> Response:
        return JSONResponse({"ok": False, "error": "unknown_method"}, status_code=404)

    async def down_or_params(request: Request, method: str) -> dict[str, Any] | Response:
        """The call's parameters, checked token included; or the answer to give instead."""
        if state.faults.down:
            state.record_call(method, 503, "down")
            return _unavailable()
        try:
            params = await _params(request)
            _check_auth(state, request, params)
        except SlackError as exc:
            state.record_call(method, 200, exc.error)
            return _not_ok(exc)
        return params

    def refused(method: str, exc: SlackError) -> Response:
        state.record_call(method, 200, exc.error)
        return _not_ok(exc)

    async def chat_update(request: Request) -> Response:
        method = "chat.update"
        params = await down_or_params(request, method)
        if isinstance(params, Response):
            return params
        try:
            name, cid = state.resolve_channel(str(params.get("channel") or ""))
            ts = str(params.get("ts") or "")
            if not ts:
                raise SlackError("message_not_found")
            record = state.message(cid, ts)
            text, blocks = _content(params)
        except SlackError as exc:
            return refused(method, exc)
        with state.lock:
            record["text"] = text
            record["blocks"] = blocks
            record["edited"] = True
            state.effects.append(
                {
                    "method": method,
                    "channel": name,
                    "channel_id": cid,
                    "ts": ts,
                    "text": text,
                    "blocks": blocks,
                }
            )
            state.record_call(method, 200, None)
            message = _message_object(record)
        return _ok({"channel": cid, "ts": ts, "text": text, "message": message})

    async def history(request: Request) -> Response:
        method = "conversations.history"
        params = await down_or_params(request, method)
        if isinstance(params, Response):
            return params
        try:
            _, cid = state.resolve_channel(str(params.get("channel") or ""))
            latest = _ts_value(params.get("latest"), "latest")
            oldest = _ts_value(params.get("oldest"), "oldest")
            inclusive = bool(_flag(params.get("inclusive")))
            try:
                limit = int(str(params.get("limit") or 100))
            except ValueError:
                raise SlackError("invalid_limit") from None
        except SlackError as exc:
            return refused(method, exc)
        limit = min(max(limit, 1), 999)

        def within(ts: Decimal) -> bool:
            if latest is not None and (ts > latest or (ts == latest and not inclusive)):
                return False
            return not (oldest is not None and (ts < oldest or (ts == oldest and not inclusive)))

        with state.lock:
            found = [
                _message_object(r)
                for r in state.messages
                if r["channel_id"] == cid and within(Decimal(r["ts"]))
            ]
            state.record_call(method, 200, None)
        found.sort(key=lambda m: Decimal(m["ts"]), reverse=True)
        return _ok(
            {
                "messages": found[:limit],
                "has_more": len(found) > limit,
                "pin_count": 0,
                "response_metadata": {"next_cursor": ""},
            }
        )

    async def post_ephemeral(request: Request) -> Response:
        method = "chat.postEphemeral"
        params = await down_or_params(request, method)
        if isinstance(params, Response):
            return params
        try:
            name, cid = state.resolve_channel(str(params.get("channel") or ""))
            user = str(params.get("user") or "")
            if not user:
                raise SlackError("user_not_found")
            text, blocks = _content(params)
        except SlackError as exc:
            return refused(method, exc)
        ts = state.next_ts()
        with state.lock:
            state.effects.append(
                {
                    "method": method,
                    "channel": name,
                    "channel_id": cid,
                    "user": user,
                    "text": text,
                    "blocks": blocks,
                    "message_ts": ts,
                }
            )
            state.record_call(method, 200, None)
        return _ok({"message_ts": ts})

    async def views_open(request: Request) -> Response:
        method = "views.open"
        params = await down_or_params(request, method)
        if isinstance(params, Response):
            return params
        try:
            trigger_id = str(params.get("trigger_id") or "")
            with state.lock:
                trigger = state.triggers.get(trigger_id)
                if trigger is None:
                    raise SlackError("invalid_trigger_id")
                if trigger["used"]:
                    raise SlackError("exchanged_trigger_id")
                if time.monotonic() - trigger["issued"] > state.trigger_ttl_seconds:
                    raise SlackError("expired_trigger_id")
                view = parse_view(params.get("view"))
                trigger["used"] = True
        except SlackError as exc:
            return refused(method, exc)
        view_id = state.next_view_id()
        shown = {
            **view,
            "id": view_id,
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "state": {"values": {}},
            "hash": uuid.uuid4().hex[:16],
            "root_view_id": view_id,
            "previous_view_id": None,
        }
        record = {
            "id": view_id,
            "view": shown,
            "trigger_id": trigger_id,
            "user": trigger["user"],
            "url": trigger["url"],
            "state": "open",
            "errors": None,
        }
        with state.lock:
            state.views[view_id] = record
            state.effects.append({"method": method, **record})
            state.record_call(method, 200, None)
        return _ok({"view": shown})

    return Router(
        routes=[
            Route("/chat.postMessage", post_message, methods=["POST", "GET"]),
            Route("/chat.update", chat_update, methods=["POST"]),
            Route("/chat.postEphemeral", post_ephemeral, methods=["POST"]),
            Route("/conversations.history", history, methods=["POST", "GET"]),
            Route("/views.open", views_open, methods=["POST"]),
            Route("/auth.test", auth_test, methods=["POST", "GET"]),
            Route("/{method:str}", unknown_method, methods=["POST", "GET"]),
        ]
    )


# --------------------------------------------------------------------------- /_sim


def _update_faults(state: SlackState, body: dict[str, Any]) -> SlackFaults:
    known = {"rate_limited", "retry_after", "down"}
    if set(body) - known:
        raise ControlError(f"unknown key(s): {sorted(set(body) - known)}; expected {sorted(known)}")
    changes: dict[str, Any] = {}
    if "rate_limited" in body:
        value = body["rate_limited"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ControlError("rate_limited must be a non-negative integer")
        changes["rate_limited"] = value
    if "retry_after" in body:
        value = body["retry_after"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ControlError("retry_after must be a non-negative number of seconds")
        changes["retry_after"] = float(value)
    if "down" in body:
        if not isinstance(body["down"], bool):
            raise ControlError("down must be true or false")
        changes["down"] = body["down"]
    with state.lock:
        for key, value in changes.items():
            setattr(state.faults, key, value)
        return SlackFaults(**asdict(state.faults))


# What a person does in Slack, made by `/_sim/interact` and `/_sim/submit_view`.

_INTERACT_KEYS = frozenset(
    {
        "url",
        "user",
        "channel",
        "ts",
        "action_id",
        "block_id",
        "value",
        "confirm",
        "age_seconds",
        "wait_seconds",
    }
)
_SUBMIT_KEYS = frozenset({"view_id", "values", "user", "url", "age_seconds", "wait_seconds"})


def _known_keys(body: dict[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise ControlError(f"unknown key(s): {unknown}; expected {sorted(known)}")


def _required_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ControlError(f"{key} must be a non-empty string")
    return value


def _seconds(body: dict[str, Any], key: str, limit: float) -> float:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= limit:
        raise ControlError(f"{key} must be a number of seconds from 0 to {limit:g}")
    return float(value)


def _person(raw: Any) -> dict[str, Any]:
    """`user` of a control request as Slack's payloads carry it."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
        raise ControlError('user must be an object with an "id" (and a "username")')
    username = raw.get("username") or raw.get("name") or raw["id"]
    if not isinstance(username, str):
        raise ControlError("user.username must be a string")
    return {"id": raw["id"], "username": username, "name": username, "team_id": TEAM_ID}


def _url(state: SlackState, body: dict[str, Any]) -> str:
    url = body.get("url") or state.interactivity_url
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ControlError(
            "url must be the app's interactivity URL (http...): give it, or start the "
            "stand-in with interactivity_url"
        )
    return url


def _find_button(
    record: dict[str, Any], action_id: str, block_id: str | None, value: str | None
) -> tuple[str, dict[str, Any]]:
    """(block id, button) of the one button of `record` that matches; ControlError when none or
    several do (a person can only click what the message shows)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for block in record["blocks"]:
        if block.get("type") != "actions" or (block_id and block.get("block_id") != block_id):
            continue
        for element in block.get("elements") or []:
            if not isinstance(element, dict) or element.get("type") != "button":
                continue
            if element.get("action_id") != action_id:
                continue
            if value is not None and element.get("value") != value:
                continue
            found.append((str(block.get("block_id") or ""), element))
    where = f"message {record['ts']} in {record['channel']}"
    narrowed = "".join(
        f" {k}={v!r}" for k, v in (("block_id", block_id), ("value", value)) if v is not None
    )
    if not found:
        raise ControlError(f"no button {action_id!r}{narrowed} in {where}: nothing to click")
    if len(found) > 1:
        raise ControlError(
            f"{len(found)} buttons {action_id!r}{narrowed} in {where}: give block_id or value"
        )
    return found[0]


def _new_trigger(state: SlackState, user: dict[str, Any], url: str) -> str:
    trigger_id = f"{int(time.time())}.{TEAM_ID}.{uuid.uuid4().hex}"
    with state.lock:
        state.triggers[trigger_id] = {
            "user": user,
            "url": url,
            "issued": time.monotonic(),
            "used": False,
        }
    return trigger_id


def _answer_of(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


async def _send(
    state: SlackState, url: str, payload: dict[str, Any], age_seconds: float
) -> tuple[int, Any]:
    """POST `payload` to `url` as Slack does (form-encoded, signed); the app's status and body."""
    body = encode_payload(payload)
    headers = signed_headers(state.signing_secret, body, int(time.time() - age_seconds))
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise _Unreachable(f"could not reach {url}: {type(exc).__name__}: {exc}") from None
    answer = _answer_of(response)
    with state.lock:
        state.interactions.append(
            {"type": payload["type"], "url": url, "status": response.status_code, "answer": answer}
        )
    return response.status_code, answer


class _Unreachable(Exception):
    """The app's interactivity URL could not be reached (502)."""


async def _follow_ups(state: SlackState, since: int, wait_seconds: float) -> list[dict[str, Any]]:
    """The effects recorded after the first `since` within `wait_seconds`: waits for the first,
    then a short grace for more."""
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        with state.lock:
            if len(state.effects) > since:
                break
        await asyncio.sleep(0.02)
    else:
        with state.lock:
            return list(state.effects[since:])
    await asyncio.sleep(min(_FOLLOW_UP_GRACE_SECONDS, max(0.0, deadline - time.monotonic())))
    with state.lock:
        return list(state.effects[since:])


def _input_values(view: dict[str, Any], values: Any) -> dict[str, dict[str, Any]]:
    """`view.state.values` for a submission of `values` ({block_id: value | {action_id: value}});
    ControlError for an unknown block, or a required input left empty (Slack does not submit)."""
    if not isinstance(values, dict):
        raise ControlError("values must be an object {block_id: value}")
    inputs = {
        str(b.get("block_id")): b
        for b in view.get("blocks") or []
        if isinstance(b, dict) and b.get("type") == "input"
    }
    unknown = sorted(set(values) - set(inputs))
    if unknown:
        raise ControlError(f"no input block(s) {unknown} in the view; it has {sorted(inputs)}")
    state_values: dict[str, dict[str, Any]] = {}
    for block_id, block in inputs.items():
        element = block.get("element") or {}
        action_id = str(element.get("action_id") or "")
        given = values.get(block_id)
        if isinstance(given, dict):
            unknown_actions = sorted(set(given) - {action_id})
            if unknown_actions:
                raise ControlError(f"block {block_id!r} has no element(s) {unknown_actions}")
            given = given.get(action_id)
        if given is not None and not isinstance(given, str):
            raise ControlError(f"the value of {block_id!r} must be a string")
        if not given and not block.get("optional", False):
            label = _text_of(block.get("label")) or block_id
            raise ControlError(f"Slack does not submit the view: {label!r} is required")
        state_values[block_id] = {
            action_id: {"type": element.get("type"), "value": given if given else None}
        }
    return state_values


def control_api(state: SlackState) -> Router:
    async def messages(request: Request) -> Response:
        with state.lock:
            return JSONResponse({"messages": list(state.messages)})

    async def calls(request: Request) -> Response:
        with state.lock:
            return JSONResponse({"calls": list(state.calls)})

    async def updates(request: Request) -> Response:
        return JSONResponse({"updates": state.effects_of("chat.update")})

    async def ephemerals(request: Request) -> Response:
        return JSONResponse({"ephemerals": state.effects_of("chat.postEphemeral")})

    async def views(request: Request) -> Response:
        with state.lock:
            return JSONResponse({"views": list(state.views.values())})

    async def interactions(request: Request) -> Response:
        with state.lock:
            return JSONResponse({"interactions": list(state.interactions)})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            return JSONResponse(asdict(_update_faults(state, await json_body(request))))
        with state.lock:
            return JSONResponse(asdict(state.faults))

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    async def interact(request: Request) -> Response:
        body = await json_body(request)
        _known_keys(body, _INTERACT_KEYS)
        user = _person(body.get("user"))
        url = _url(state, body)
        action_id = _required_str(body, "action_id")
        ts = _required_str(body, "ts")
        block_id, value = body.get("block_id"), body.get("value")
        if block_id is not None and not isinstance(block_id, str):
            raise ControlError("block_id must be a string")
        if value is not None and not isinstance(value, str):
            raise ControlError("value must be a string (a button's value)")
        confirm = body.get("confirm", True)
        if not isinstance(confirm, bool):
            raise ControlError("confirm must be true or false")
        age = _seconds(body, "age_seconds", 10 * 365 * 86400)
        wait = _seconds(body, "wait_seconds", 60)
        try:
            name, cid = state.resolve_channel(_required_str(body, "channel"))
            record = state.message(cid, ts)
        except SlackError as exc:
            raise ControlError(f"no message {ts} in channel {body.get('channel')!r}") from exc
        with state.lock:
            found_block, button = _find_button(record, action_id, block_id, value)
            message = json.loads(json.dumps(_message_object(record)))
        if button.get("confirm") and not confirm:
            return JSONResponse(
                {"sent": False, "confirm": button["confirm"], "reason": "the person cancelled"}
            )
        trigger_id = _new_trigger(state, user, url)
        action: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "block_id": found_block,
            "text": button.get("text"),
            "action_ts": f"{time.time():.6f}",
        }
        for key in ("value", "style", "confirm"):
            if key in button:
                action[key] = button[key]
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": user,
            "api_app_id": APP_ID,
            "token": "deprecated-verification-token",
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": cid,
                "is_ephemeral": False,
            },
            "trigger_id": trigger_id,
            "team": {"id": TEAM_ID, "domain": "returnbridge-sim"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": cid, "name": name.lstrip("#")},
            "message": message,
            "state": {"values": {}},
            "actions": [action],
        }
        with state.lock:
            since = len(state.effects)
        try:
            status, answer = await _send(state, url, payload, age)
        except _Unreachable as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        return JSONResponse(
            {
                "sent": True,
                "status": status,
                "answer": answer,
                "trigger_id": trigger_id,
                "payload": payload,
                "follow_ups": await _follow_ups(state, since, wait),
            }
        )

    async def submit_view(request: Request) -> Response:
        body = await json_body(request)
        _known_keys(body, _SUBMIT_KEYS)
        view_id = _required_str(body, "view_id")
        age = _seconds(body, "age_seconds", 10 * 365 * 86400)
        wait = _seconds(body, "wait_seconds", 60)
        with state.lock:
            record = state.views.get(view_id)
            if record is None:
                raise ControlError(f"no view {view_id!r} was opened")
            if record["state"] != "open":
                raise ControlError(f"view {view_id} is {record['state']}, not open")
            view = json.loads(json.dumps(record["view"]))
            opener = record["user"]
            opened_from = record["url"]
        user = _person(body["user"]) if "user" in body else opener
        url = _url(state, {"url": body.get("url") or opened_from})
        view["state"] = {"values": _input_values(view, body.get("values") or {})}
        payload: dict[str, Any] = {
            "type": "view_submission",
            "team": {"id": TEAM_ID, "domain": "returnbridge-sim"},
            "user": user,
            "api_app_id": APP_ID,
            "token": "deprecated-verification-token",
            "trigger_id": _new_trigger(state, user, url),
            "view": view,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        with state.lock:
            since = len(state.effects)
        try:
            status, answer = await _send(state, url, payload, age)
        except _Unreachable as exc:
            return JSONResponse({"error": str(exc)}, status_code=502)
        errors = (
            answer.get("errors")
            if isinstance(answer, dict) and answer.get("response_action") == "errors"
            else None
        )
        with state.lock:
            if status == 200 and errors is None:
                record["state"] = "submitted"
                record["errors"] = None
            elif errors is not None:
                record["errors"] = errors
            view_state = record["state"]
        return JSONResponse(
            {
                "sent": True,
                "status": status,
                "answer": answer,
                "view_id": view_id,
                "view_state": view_state,
                "payload": payload,
                "follow_ups": await _follow_ups(state, since, wait),
            }
        )

    return Router(
        routes=[
            Route("/messages", bad_requests_are_400(messages), methods=["GET"]),
            Route("/calls", bad_requests_are_400(calls), methods=["GET"]),
            Route("/updates", bad_requests_are_400(updates), methods=["GET"]),
            Route("/ephemerals", bad_requests_are_400(ephemerals), methods=["GET"]),
            Route("/views", bad_requests_are_400(views), methods=["GET"]),
            Route("/interactions", bad_requests_are_400(interactions), methods=["GET"]),
            Route("/faults", bad_requests_are_400(faults), methods=["GET", "POST"]),
            Route("/reset", bad_requests_are_400(reset), methods=["POST"]),
            Route("/interact", bad_requests_are_400(interact), methods=["POST"]),
            Route("/submit_view", bad_requests_are_400(submit_view), methods=["POST"]),
        ]
    )


# --------------------------------------------------------------------------- the app


def create_slack_app(
    *,
    token: str = DEFAULT_TOKEN,
    channels: Iterable[str] = DEFAULT_CHANNELS,
    signing_secret: str = DEFAULT_SIGNING_SECRET,
    interactivity_url: str | None = None,
    trigger_ttl_seconds: float = TRIGGER_TTL_SECONDS,
) -> Starlette:
    """A Starlette app standing in for Slack's Web API at `/api/` for one workspace in which the
    bot holding `token` is a member of `channels`. Interactions (`/_sim/interact`,
    `/_sim/submit_view`) are signed with `signing_secret` and sent to `interactivity_url` unless
    a request names its own URL; a click's `trigger_id` opens a modal within
    `trigger_ttl_seconds`."""
    if not token:
        raise ValueError("the stand-in needs a token")
    if not signing_secret:
        raise ValueError("the stand-in needs a signing secret")
    if trigger_ttl_seconds <= 0:
        raise ValueError("trigger_ttl_seconds must be > 0")
    state = SlackState(
        token=token,
        channels=_normalise_channels(channels),
        signing_secret=signing_secret,
        interactivity_url=interactivity_url,
        trigger_ttl_seconds=trigger_ttl_seconds,
    )
    app = Starlette(
        routes=[
            Mount("/api", app=web_api(state)),
            Mount(CONTROL_PREFIX, app=control_api(state)),
        ]
    )
    app.state.slack = state
    return app


def run(host: str = "127.0.0.1", port: int = 8083, **options: Any) -> None:
    """Serve the stand-in in the foreground until interrupted (for `returnbridge sim slack`).

    `options` are `create_slack_app`'s keyword arguments."""
    uvicorn.run(create_slack_app(**options), host=host, port=port, log_level="info")
