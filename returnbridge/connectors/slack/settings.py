"""Where each owner's digest goes and how to reach Slack: part of returnbridge's `Settings`
(`settings.slack`)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

if TYPE_CHECKING:
    from returnbridge.connectors.slack.poster import DigestPoster


# The owners of exceptions, each with a digest channel. `returnbridge.core.codes.Owner` is the
# source of truth, but connectors/ may not import core/ (docs/architecture.md#rooms-and-imports):
# tests/connectors/test_slack_channels_setting.py checks that these are its values.
OWNERS: Final = ("finance", "ops", "cx")
CHANNELS_VARIABLE: Final = "RETURNBRIDGE_SLACK__CHANNELS"
MENTIONS_VARIABLE: Final = "RETURNBRIDGE_SLACK__MENTIONS"
# A channel id as Slack gives it: C (public channel) or G (private channel, group), then
# upper-case letters and digits (9 characters in all for the oldest ids, 11 today).
_CHANNEL_ID: Final = re.compile(r"[CG][A-Z0-9]{8,}")
_CHANNEL_NAME: Final = re.compile(r"#\S+")


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
        default_factory=_default_channels,
        description="Owner (finance, ops, cx) → channel (`#name` or a channel id C…/G…); "
        "every owner must have one.",
    )
    mentions: dict[str, str] = Field(
        default_factory=dict,
        description="Owner (finance, ops, cx) → Slack user-group id (e.g. S0FINANCE) mentioned "
        "in its digest.",
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
    signing_secret: SecretStr | None = Field(
        None,
        description="The Slack app's signing secret: the receiver's `POST /slack/actions` "
        "(the digest's buttons) checks every request with it; none: interactivity is off and "
        "the endpoint refuses everything. Needs `token` too (modals, message updates) with the "
        "scopes `chat:write` and `channels:history` (`groups:history` for private channels).",
    )
    next_signing_secret: SecretStr | None = Field(
        None,
        description="While rotating the signing secret: the new one, accepted as well as "
        "`signing_secret` until it replaces it.",
    )

    @field_validator("channels")
    @classmethod
    def _every_owner_has_a_channel(cls, value: dict[str, str]) -> dict[str, str]:
        """Every owner has a channel (the reconciliation posts a digest to each, at the very end
        of its run), each a `#name` or a channel id; no key that is not an owner."""
        problems = [
            f"{owner!r} is not an owner (the owners are {', '.join(OWNERS)})"
            for owner in value
            if owner not in OWNERS
        ]
        missing = [owner for owner in OWNERS if owner not in value]
        if missing:
            problems.append(
                f"no channel for {', '.join(repr(o) for o in missing)} (give all of "
                f"{', '.join(OWNERS)}: the value replaces the whole map)"
            )
        for owner, channel in value.items():
            if owner not in OWNERS:
                continue
            if not channel.strip():
                problems.append(f"the channel of {owner!r} is empty")
            elif not (_CHANNEL_NAME.fullmatch(channel) or _CHANNEL_ID.fullmatch(channel)):
                problems.append(
                    f"the channel of {owner!r}, {channel!r}, is neither a #name nor a channel "
                    "id (C... or G...)"
                )
        if problems:
            raise ValueError(f"{CHANNELS_VARIABLE}: {'; '.join(problems)}")
        return value

    @field_validator("mentions")
    @classmethod
    def _mentions_name_owners(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = [owner for owner in value if owner not in OWNERS]
        if unknown:
            raise ValueError(
                f"{MENTIONS_VARIABLE}: {', '.join(repr(o) for o in unknown)} "
                f"{'is not an owner' if len(unknown) == 1 else 'are not owners'} "
                f"(the owners are {', '.join(OWNERS)})"
            )
        return value

    @field_validator("signing_secret", "next_signing_secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty (leave it unset for no secret)")
        return value

    @property
    def signing_secrets(self) -> tuple[str, ...]:
        """Every signing secret a Slack request may be signed with (current, then next)."""
        return tuple(
            secret.get_secret_value()
            for secret in (self.signing_secret, self.next_signing_secret)
            if secret is not None
        )

    @property
    def interactive(self) -> bool:
        """Whether the digest's buttons are served: a signing secret and a bot token."""
        return bool(self.signing_secrets) and self.token is not None

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

    def client(
        self,
        *,
        http_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        timeout_seconds: float | None = None,
    ) -> DigestPoster:
        """A `DigestPoster` for these settings (a sync context manager), built the way every
        connector's client is (docs/architecture.md):

        - `http_transport`: a (sync) httpx transport the poster sends through instead of
          slack_sdk's urllib (tests: `httpx.MockTransport`); the poster is synchronous, so this
          is `httpx.BaseTransport`, the sync twin of Centra's and Reveni's async transport;
        - `sleep`: the (sync) wait for a 429's Retry-After (default `time.sleep`);
        - `rng`: accepted for uniformity; the poster waits exactly Slack's Retry-After and draws
          no random numbers;
        - `timeout_seconds`: replaces `self.timeout_seconds`.

        Any other keyword is a TypeError naming it; no token is a ValueError.
        """
        from returnbridge.connectors.slack.poster import DigestPoster  # poster.py imports us

        return DigestPoster(
            self,
            http_transport=http_transport,
            sleep=sleep,
            rng=rng,
            timeout_seconds=timeout_seconds,
        )
