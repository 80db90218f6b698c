"""The errors the Slack poster raises, as subclasses of the shared kinds.

They subclass the kinds of `returnbridge.connectors.errors` the way Centra's and Reveni's do
(docs/architecture.md), so a caller may decide on the kind while the message says that Slack
failed. Digests are never resent blindly by the poster: in every case the caller
keeps the digest for the next run.

- `SlackUnavailable` (`TransientError`): Slack could not be reached, answered 5xx or a transient
  `ok: false` error; `SlackRateLimited` (also `RateLimitedError`) when it kept answering 429;
- `SlackRejected` (`RejectedError`): Slack refused the message for good (`channel_not_found`,
  `not_in_channel`, `invalid_blocks`, ...); `SlackAuthError` (also `AuthError`) when it refused
  the token (HTTP 401/403, `invalid_auth`, `not_authed`, `token_revoked`, ...). A
  `SlackAuthError` is still a `SlackRejected`, as it always was.
"""

from __future__ import annotations

from returnbridge.connectors.errors import (
    ApiError,
    AuthError,
    RateLimitedError,
    RejectedError,
    TransientError,
)

# `ok: false` errors that say the token is refused or lacks a permission.
AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "ekm_access_denied",
        "team_access_not_granted",
    }
)


class SlackError(ApiError):
    """Base of every error the Slack poster raises."""


class SlackUnavailable(SlackError, TransientError):
    """Slack could not be reached, answered 5xx, or kept rate-limiting: keep the digest and send
    it next run."""


class SlackRateLimited(SlackUnavailable, RateLimitedError):
    """Slack kept answering 429 beyond `rate_limit_retries`, or with a `Retry-After` above
    `max_retry_after_seconds`: keep the digest; `retry_after` is Slack's last answer."""


class SlackRejected(SlackError, RejectedError):
    """Slack refused the message for good (`ok: false`, e.g. `channel_not_found`): keep the digest
    and report loudly; retrying will not help until the configuration is fixed."""

    def __init__(self, error: str, channel: str) -> None:
        super().__init__(f"Slack rejected the message to {channel}: {error}")
        self.error = error
        self.channel = channel


class SlackAuthError(SlackRejected, AuthError):
    """Slack refused the token (HTTP 401/403, `invalid_auth`, `token_revoked`, `missing_scope`,
    ...): fix the bot token or its scopes; retrying will not help."""
