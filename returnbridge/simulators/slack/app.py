"""A Slack Web API stand-in: `chat.postMessage` and `auth.test` over real HTTP, and `/_sim`.

It answers like Slack for what the digest poster does: HTTP 200 with `{"ok": true, ...}` or
`{"ok": false, "error": ...}` (`not_authed`, `invalid_auth`, `channel_not_found`,
`invalid_blocks`, `no_text`, `invalid_json`, `invalid_form_data`), HTTP 429 with `Retry-After`
when rate-limited and HTTP 503 when down. Bodies are JSON or form-encoded, as slack_sdk sends
them; the token comes as `Authorization: Bearer <token>` (or a `token` body field).

Blocks are checked for shape (a list of objects with a `type`) and for the Block Kit limits a
digest could break (50 blocks, header text 150, section text 3000, 10 fields of 2000): a real
Slack answers `invalid_blocks` to those too.

`/_sim` (no auth, never faulted):

- `GET /_sim/messages`: every accepted message (channel, channel_id, text, blocks, ts, ...);
- `GET /_sim/calls`: every `chat.postMessage` call with the status and error it got;
- `GET/POST /_sim/faults`: `{"rate_limited": N, "retry_after": S}` makes the next N
  `chat.postMessage` calls answer 429 with `Retry-After: S`; `{"down": true}` answers 503;
- `POST /_sim/reset`: forget messages and calls, clear the faults.

`create_slack_app` is what tests, the demo and (later) `returnbridge sim slack` use; the state is
`app.state.slack`. `run` serves it with uvicorn in the foreground.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, Router

from returnbridge.simulators.control import ControlError, bad_requests_are_400, json_body

CONTROL_PREFIX = "/_sim"
DEFAULT_TOKEN = "xoxb-returnbridge-sim"
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
    """What the stand-in knows: the token, the channels, and everything posted."""

    token: str
    channels: dict[str, str]  # "#name" -> channel id
    faults: SlackFaults = field(default_factory=SlackFaults)
    messages: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _next_ts: int = _FIRST_TS_MICROS

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

    def reset(self) -> None:
        with self.lock:
            self.faults = SlackFaults()
            self.messages.clear()
            self.calls.clear()
            self._next_ts = _FIRST_TS_MICROS


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
            blocks = parse_blocks(params.get("blocks"))
            text = params.get("text")
            text = "" if text is None else str(text)
            if not text and not blocks:
                raise SlackError("no_text")
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

    return Router(
        routes=[
            Route("/chat.postMessage", post_message, methods=["POST", "GET"]),
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


def control_api(state: SlackState) -> Router:
    async def messages(request: Request) -> Response:
        with state.lock:
            return JSONResponse({"messages": list(state.messages)})

    async def calls(request: Request) -> Response:
        with state.lock:
            return JSONResponse({"calls": list(state.calls)})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            return JSONResponse(asdict(_update_faults(state, await json_body(request))))
        with state.lock:
            return JSONResponse(asdict(state.faults))

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    return Router(
        routes=[
            Route("/messages", bad_requests_are_400(messages), methods=["GET"]),
            Route("/calls", bad_requests_are_400(calls), methods=["GET"]),
            Route("/faults", bad_requests_are_400(faults), methods=["GET", "POST"]),
            Route("/reset", bad_requests_are_400(reset), methods=["POST"]),
        ]
    )


# --------------------------------------------------------------------------- the app


def create_slack_app(
    *, token: str = DEFAULT_TOKEN, channels: Iterable[str] = DEFAULT_CHANNELS
) -> Starlette:
    """A Starlette app standing in for Slack's Web API at `/api/` for one workspace in which the
    bot holding `token` is a member of `channels`."""
    if not token:
        raise ValueError("the stand-in needs a token")
    state = SlackState(token=token, channels=_normalise_channels(channels))
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
