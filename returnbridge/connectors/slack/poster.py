"""`DigestPoster`: sends one message with `slack_sdk.WebClient.chat_postMessage` and answers the
message `ts`, or raises one of the errors of errors.py; in every case the caller keeps the digest
for the next run.

For the digest's buttons (receiver `POST /slack/actions`) it also updates a message in place
(`update`: chat.update), opens a modal (`open_view`: views.open), reads one message back
(`message`: conversations.history) and shows a person a message only they see
(`post_ephemeral`: chat.postEphemeral), with the same rate-limit loop and the same errors.

slack_sdk's own retry handlers are switched off: the 429 loop is ours so that the sleep is
injectable and a long `Retry-After` is not waited in the middle of a flow run. The token is never
logged nor put in an error message.

slack_sdk speaks HTTP through urllib, which has no pluggable transport. The `http_transport` hook
every connector client takes (docs/architecture.md) is therefore honoured one level up: given a
(sync) httpx transport, the WebClient sends its already built request through an `httpx.Client`
over that transport instead of `urlopen`, and hands slack_sdk the same `{status, headers, body}`
urllib would have. Without one, nothing changes: slack_sdk's urllib path is used as always.
"""

from __future__ import annotations

import http.client
import logging
import math
import random
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web import SlackResponse

from returnbridge.connectors.slack.errors import (
    AUTH_ERRORS,
    SlackAuthError,
    SlackRateLimited,
    SlackRejected,
    SlackUnavailable,
)
from returnbridge.connectors.slack.settings import SlackSettings

log = logging.getLogger(__name__)

# `ok: false` errors that say Slack itself is in trouble, not that our request is wrong.
_TRANSIENT_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)
# Used when a 429 carries no readable Retry-After.
_DEFAULT_RETRY_AFTER = 1.0
# The one slack_sdk method that touches urllib; `_TransportWebClient` replaces it.
_URLLIB_SEND = "_perform_urllib_http_request_internal"


class _TransportWebClient(WebClient):
    """A `WebClient` whose HTTP goes through an httpx client instead of `urllib.request.urlopen`
    (the `http_transport` hook). Everything above the wire (request building, JSON decoding,
    `SlackApiError` on `ok: false`) stays slack_sdk's."""

    def __init__(self, *, http: httpx.Client, **kwargs: Any) -> None:
        if not callable(getattr(WebClient, _URLLIB_SEND, None)):  # a slack_sdk that moved it
            raise RuntimeError(f"slack_sdk.WebClient has no {_URLLIB_SEND}: no http_transport")
        super().__init__(**kwargs)
        self._http = http

    def _perform_urllib_http_request_internal(
        self, url: str, req: urllib.request.Request
    ) -> dict[str, Any]:
        if not url.lower().startswith("http"):  # what slack_sdk refuses too
            raise SlackRequestError(f"Invalid URL detected: {url}")
        data = req.data if isinstance(req.data, bytes) else None
        response = self._http.request(
            req.get_method(), url, content=data, headers=dict(req.header_items())
        )
        return {"status": response.status_code, "headers": response.headers, "body": response.text}


class DigestPoster:
    """Posts messages with `chat.postMessage`, waiting out short rate limits.

    Build it with `settings.slack.client(...)` (`SlackSettings.client`); usable as a sync context
    manager (`with settings.slack.client() as poster:`), which closes the httpx client of an
    injected `http_transport` (urllib keeps no connection open, so there is nothing else to close).
    """

    def __init__(
        self,
        settings: SlackSettings,
        *,
        sleep: Callable[[float], None] | None = None,
        http_transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        self._sleep = sleep or time.sleep
        self.rng = rng  # accepted like every connector's; the poster draws no random numbers
        timeout = settings.timeout_seconds if timeout_seconds is None else timeout_seconds
        if timeout <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout}")
        options: dict[str, Any] = {
            "token": _token(settings),
            "base_url": settings.base_url,
            # slack_sdk types the timeout as whole seconds.
            "timeout": max(1, math.ceil(timeout)),
            "retry_handlers": [],
        }
        self._http: httpx.Client | None = None
        if http_transport is None:
            self.client = WebClient(**options)
        else:
            self._http = httpx.Client(transport=http_transport, timeout=timeout)
            self.client = _TransportWebClient(http=self._http, **options)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the httpx client of an injected `http_transport` (nothing else is kept open)."""
        if self._http is not None:
            self._http.close()

    def post(self, channel: str, text: str, blocks: Sequence[Mapping[str, Any]]) -> str:
        """Post one message to `channel` and return its `ts`.

        Raises SlackUnavailable (try again next run) or SlackRejected (a person must look)."""
        block_list = [dict(block) for block in blocks]
        response = self._call(
            _Doing("post", f"post to {channel}", channel),
            lambda: self.client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=block_list,
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        ts = response.get("ts")
        if not isinstance(ts, str) or not ts:
            raise SlackUnavailable(f"Slack answered ok without a message ts for {channel}")
        return ts

    def update(self, channel: str, ts: str, text: str, blocks: Sequence[Mapping[str, Any]]) -> str:
        """Replace message `ts` in `channel` (`chat.update`) with `text` and `blocks`; its `ts`.

        The same errors as `post` (`message_not_found`, `cant_update_message`: SlackRejected)."""
        block_list = [dict(block) for block in blocks]
        response = self._call(
            _Doing("update", f"update message {ts} in {channel}", channel),
            lambda: self.client.chat_update(channel=channel, ts=ts, text=text, blocks=block_list),
        )
        answered = response.get("ts")
        return answered if isinstance(answered, str) and answered else ts

    def open_view(self, trigger_id: str, view: Mapping[str, Any]) -> str:
        """Open modal `view` for the person whose click gave `trigger_id` (`views.open`, within
        3 seconds of the click); the view id. The same errors as `post` (`expired_trigger_id`:
        SlackRejected)."""
        response = self._call(
            _Doing("modal", "open a modal", "a modal"),
            lambda: self.client.views_open(trigger_id=trigger_id, view=dict(view)),
        )
        opened = response.get("view")
        view_id = opened.get("id") if isinstance(opened, dict) else None
        if not isinstance(view_id, str) or not view_id:
            raise SlackUnavailable("Slack answered ok without a view id to views.open")
        return view_id

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """Message `ts` of `channel` (text, blocks, ...) by `conversations.history` (latest=ts,
        inclusive, limit 1), or None when it is gone. The same errors as `post`."""
        response = self._call(
            _Doing("read", f"read message {ts} in {channel}", channel),
            lambda: self.client.conversations_history(
                channel=channel, latest=ts, inclusive=True, limit=1
            ),
        )
        messages = response.get("messages")
        for found in messages if isinstance(messages, list) else []:
            if isinstance(found, dict) and found.get("ts") == ts:
                return dict(found)
        return None

    def post_ephemeral(self, channel: str, user: str, text: str) -> str:
        """Show `text` to `user` only, in `channel` (`chat.postEphemeral`); its `message_ts`.
        The same errors as `post`."""
        response = self._call(
            _Doing("message", f"post to {user} in {channel}", channel),
            lambda: self.client.chat_postEphemeral(channel=channel, user=user, text=text),
        )
        ts = response.get("message_ts")
        return ts if isinstance(ts, str) else ""

    def _call(self, doing: _Doing, send: Callable[[], SlackResponse]) -> SlackResponse:
        """`send()`, waiting out short rate limits; the errors of errors.py otherwise."""
        waits = 0
        while True:
            try:
                return send()
            except SlackApiError as exc:
                retry_after = self._retry_after(exc, doing, waits)
                waits += 1
                log.info(
                    "Slack rate-limited the %s to %s; waiting %ss",
                    doing.noun,
                    doing.where,
                    retry_after,
                )
                self._sleep(retry_after)
                continue
            except SlackRequestError as exc:
                # Raised before anything is sent: the base URL is not http(s).
                raise SlackRejected(f"bad request ({exc})", doing.where) from None
            except (OSError, http.client.HTTPException, httpx.TransportError) as exc:
                # URLError, refused or reset connections, timeouts, a truncated answer (urllib or
                # an injected httpx transport).
                raise SlackUnavailable(
                    f"could not reach Slack to {doing.what}: {type(exc).__name__}: {exc}"
                ) from None

    def _retry_after(self, exc: SlackApiError, doing: _Doing, waits: int) -> float:
        """How long to wait before sending again, or the error to raise instead."""
        response = exc.response
        status = int(response.status_code)
        data = response.data if isinstance(response.data, dict) else {}
        error = str(data.get("error") or f"HTTP {status}")
        where = doing.where
        if status == 429:
            retry_after = _parse_retry_after(response.headers)
            if retry_after > self.settings.max_retry_after_seconds:
                raise SlackRateLimited(
                    f"Slack rate-limited the {doing.noun} to {where} for {retry_after:g}s, more "
                    f"than the {self.settings.max_retry_after_seconds:g}s we wait; try next run",
                    retry_after,
                ) from None
            if waits >= self.settings.rate_limit_retries:
                raise SlackRateLimited(
                    f"Slack still rate-limited the {doing.noun} to {where} after "
                    f"{self.settings.rate_limit_retries} retries; try next run",
                    retry_after,
                ) from None
            return retry_after
        if status in (401, 403) or error in AUTH_ERRORS:
            raise SlackAuthError(_short(error), where) from None
        if status >= 500 or error in _TRANSIENT_ERRORS:
            raise SlackUnavailable(
                f"Slack is unavailable (HTTP {status}, {_short(error)}) for {where}; try next run"
            ) from None
        raise SlackRejected(_short(error), where) from None


@dataclass(frozen=True)
class _Doing:
    """What a call does, for the log lines and error messages: "the {noun} to {where}",
    "could not reach Slack to {what}"."""

    noun: str
    what: str
    where: str


def _parse_retry_after(headers: Mapping[str, Any]) -> float:
    """The Retry-After header in seconds (slack_sdk hands headers as str or [str])."""
    for key, value in headers.items():
        if str(key).lower() != "retry-after":
            continue
        raw = value[0] if isinstance(value, list | tuple) and value else value
        try:
            seconds = float(str(raw).strip())
        except ValueError:
            return _DEFAULT_RETRY_AFTER
        return max(0.0, seconds) if not math.isnan(seconds) else _DEFAULT_RETRY_AFTER
    return _DEFAULT_RETRY_AFTER


def _short(error: str, limit: int = 200) -> str:
    return error if len(error) <= limit else error[: limit - 1] + "…"


def _token(settings: SlackSettings) -> str:
    if settings.token is None:
        raise ValueError("RETURNBRIDGE_SLACK__TOKEN is not set: no bot token to post digests with")
    return settings.token.get_secret_value()
