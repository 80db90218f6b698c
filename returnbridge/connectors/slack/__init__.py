"""Posting digests to Slack: settings (`settings.slack`), the errors, and the poster.

`settings.slack.client()` builds a `DigestPoster` with the hooks every connector client takes
(`http_transport`, `sleep`, `rng`, `timeout_seconds`; docs/architecture.md).
`DigestPoster.post` sends one message and answers the message `ts`, or raises one of the errors,
which subclass the shared kinds of `returnbridge.connectors.errors`; in every case the caller
keeps the digest for the next run:

- `SlackUnavailable` (transient): Slack could not be reached, answered 5xx, or kept answering 429
  beyond `rate_limit_retries` or with a `Retry-After` above `max_retry_after_seconds` (then the
  narrower `SlackRateLimited`, also rate-limited);
- `SlackRejected` (rejected): Slack answered `ok: false` with a permanent error
  (`channel_not_found`, `not_in_channel`, ...): a person must fix the configuration; the
  narrower `SlackAuthError` (also auth) when the token is refused (`invalid_auth`, ...).

The digest's buttons: `buttons.py` builds them; `interactions.py` verifies Slack's request
signing (`signing_secret`, `next_signing_secret` while rotating), reads the `block_actions` and
`view_submission` payloads, builds the note modal and the digest message updated in place; the
poster's `update`, `open_view`, `message` and `post_ephemeral` make the Web API calls (the
receiver's `POST /slack/actions` wires them to the ledger).
"""

from returnbridge.connectors.slack.errors import (
    SlackAuthError,
    SlackError,
    SlackRateLimited,
    SlackRejected,
    SlackUnavailable,
)
from returnbridge.connectors.slack.poster import DigestPoster
from returnbridge.connectors.slack.settings import SlackSettings

__all__ = [
    "DigestPoster",
    "SlackAuthError",
    "SlackError",
    "SlackRateLimited",
    "SlackRejected",
    "SlackSettings",
    "SlackUnavailable",
]
