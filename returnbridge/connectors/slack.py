"""Posting digests to Slack: settings (`settings.slack`), the two error kinds, and the poster.

`DigestPoster.post` sends one message with `slack_sdk.WebClient.chat_postMessage` and answers the
message `ts`, or raises one of two errors; in both cases the caller keeps the digest for the next
run:

- `SlackUnavailable`: Slack could not be reached, answered 5xx, or kept answering 429 beyond
  `rate_limit_retries` or with a `Retry-After` above `max_retry_after_seconds`;
- `SlackRejected`: Slack answered `ok: false` with a permanent error (`channel_not_found`,
  `invalid_auth`, `not_in_channel`, ...): a person must fix the configuration.

slack_sdk's own retry handlers are switched off: the 429 loop is ours so that the sleep is
injectable and a long `Retry-After` is not waited in the middle of a flow run. The token is never
logged nor put in an error message.
"""

from __future__ import annotations

import http.client
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

log = logging.getLogger(__name__)

# `ok: false` errors that say Slack itself is in trouble, not that our request is wrong.
_TRANSIENT_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)
# Used when a 429 carries no readable Retry-After.
_DEFAULT_RETRY_AFTER = 1.0


def _default_channels() -> dict[str, str]:
    return {"finance": "#returns-finance", "ops": "#returns-ops", "cx": "#returns-cx"}


class SlackSettings(BaseModel):
    """Where each owner's digest goes and how to reach Slack (`settings.slack`)."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr | None = Field(
        None, description="Bot token (Bearer), `chat:write` scope; none: nothing is posted."
    )
    base_url: str = Field(
        "https://slack.com/api/", description="Web API base; methods are <base_url><method>."
    )
    channels: dict[str, str] = Field(
        default_factory=_default_channels, description="Owner (finance, ops, cx) → channel."
    )
    mentions: dict[str, str] = Field(
        default_factory=dict,
        description="Owner → Slack user-group id (e.g. S0FINANCE) mentioned in its digest.",
    )
    timeout_seconds: float = Field(10.0, gt=0, description="Per-request timeout.")
    rate_limit_retries: int = Field(
        3, ge=0, description="How many times a 429 is waited out before giving up for this run."
    )
    max_retry_after_seconds: float = Field(
        60.0,
        ge=0,
        description="A Retry-After above this is not waited: the digest is kept for the next run.",
    )
    enabled: bool = Field(True, description="Whether digests are posted at all.")

    @property
    def active(self) -> bool:
        """Whether digests are posted: enabled, with a token."""
        return self.enabled and self.token is not None

    def channel_for(self, owner: str) -> str:
        """The channel of `owner`'s digest; KeyError names the owner when none is configured."""
        try:
            return self.channels[str(owner)]
        except KeyError:
            raise KeyError(f"no Slack channel configured for owner {owner!r}") from None

    def mention_for(self, owner: str) -> str | None:
        """The user-group id mentioned in `owner`'s digest, if any."""
        return self.mentions.get(str(owner))


class SlackUnavailable(Exception):
    """Slack could not be reached, answered 5xx, or kept rate-limiting: keep the digest and send
    it next run."""


class SlackRejected(Exception):
    """Slack refused the message for good (`ok: false`, e.g. `channel_not_found`): keep the digest
    and report loudly; retrying will not help until the configuration is fixed."""

    def __init__(self, error: str, channel: str) -> None:
        super().__init__(f"Slack rejected the message to {channel}: {error}")
        self.error = error
        self.channel = channel


class DigestPoster:
    """Posts messages with `chat.postMessage`, waiting out short rate limits."""

    def __init__(
        self, settings: SlackSettings, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self.client = WebClient(
            token=_token(settings),
            base_url=settings.base_url,
            # slack_sdk types the timeout as whole seconds.
            timeout=max(1, math.ceil(settings.timeout_seconds)),
            retry_handlers=[],
        )

    def post(self, channel: str, text: str, blocks: Sequence[Mapping[str, Any]]) -> str:
        """Post one message to `channel` and return its `ts`.

        Raises SlackUnavailable (try again next run) or SlackRejected (a person must look)."""
        block_list = [dict(block) for block in blocks]
        waits = 0
        while True:
            try:
                response = self.client.chat_postMessage(
                    channel=channel,
                    text=text,
                    blocks=block_list,
                    unfurl_links=False,
                    unfurl_media=False,
                )
            except SlackApiError as exc:
                retry_after = self._retry_after(exc, channel, waits)
                waits += 1
                log.info("Slack rate-limited the post to %s; waiting %ss", channel, retry_after)
                self._sleep(retry_after)
                continue
            except SlackRequestError as exc:
                # Raised before anything is sent: the base URL is not http(s).
                raise SlackRejected(f"bad request ({exc})", channel) from None
            except (OSError, http.client.HTTPException) as exc:
                # URLError, refused or reset connections, timeouts, a truncated answer.
                raise SlackUnavailable(
                    f"could not reach Slack to post to {channel}: {type(exc).__name__}: {exc}"
                ) from None
            ts = response.get("ts")
            if not isinstance(ts, str) or not ts:
                raise SlackUnavailable(f"Slack answered ok without a message ts for {channel}")
            return ts

    def _retry_after(self, exc: SlackApiError, channel: str, waits: int) -> float:
        """How long to wait before posting again, or the error to raise instead."""
        response = exc.response
        status = int(response.status_code)
        data = response.data if isinstance(response.data, dict) else {}
        error = str(data.get("error") or f"HTTP {status}")
        if status == 429:
            retry_after = _parse_retry_after(response.headers)
            if retry_after > self.settings.max_retry_after_seconds:
                raise SlackUnavailable(
                    f"Slack rate-limited the post to {channel} for {retry_after:g}s, more than "
                    f"the {self.settings.max_retry_after_seconds:g}s we wait; try next run"
                ) from None
            if waits >= self.settings.rate_limit_retries:
                raise SlackUnavailable(
                    f"Slack still rate-limited the post to {channel} after "
                    f"{self.settings.rate_limit_retries} retries; try next run"
                ) from None
            return retry_after
        if status >= 500 or error in _TRANSIENT_ERRORS:
            raise SlackUnavailable(
                f"Slack is unavailable (HTTP {status}, {_short(error)}) for {channel}; try next run"
            ) from None
        raise SlackRejected(_short(error), channel) from None


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
