"""How the webhook receiver listens and what it accepts: `settings.receiver`.

Environment variables `RETURNBRIDGE_RECEIVER__<FIELD>` (for example `RETURNBRIDGE_RECEIVER__PORT`,
`RETURNBRIDGE_RECEIVER__REVENI_SECRET`), the same names whether the model is read on its own or as
part of returnbridge's `Settings`. Secrets are `SecretStr`: they never reach a log line.

Rotating a webhook secret loses nothing: set the new one as
`RETURNBRIDGE_RECEIVER__REVENI_SECRET_NEXT` (`..._CENTRA_SECRET_NEXT`), switch the sender to it,
then make it the current one and unset the next. In between, a webhook signed with either passes.

Each source (reveni, centra, slack) has its own rate limit:
`RETURNBRIDGE_RECEIVER__RATE_LIMIT_PER_MINUTE` (default 3000, 0: off), with
`RETURNBRIDGE_RECEIVER__RATE_LIMIT_BURST` requests at once (default: a minute's worth).
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReceiverSettings(BaseSettings):
    """returnbridge's own webhook receiver (Prefect OSS has no webhook endpoint)."""

    model_config = SettingsConfigDict(env_prefix="RETURNBRIDGE_RECEIVER__", extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8090, ge=1, le=65535, description="TCP port to listen on.")
    path_prefix: str = Field(
        "",
        description="Prefix of every route, e.g. `/returnbridge` serves "
        "`/returnbridge/webhooks/reveni`; empty: routes at the root.",
    )
    reveni_secret: SecretStr | None = Field(
        None,
        description="Secret of the (inferred) Reveni webhook signature; None: Reveni webhooks "
        "are accepted unsigned (they are notifications only: the sync fetches the return back).",
    )
    reveni_secret_next: SecretStr | None = Field(
        None,
        description="While rotating the Reveni webhook secret: the new one. A webhook signed "
        "with either `reveni_secret` or this passes, so nothing is lost while the sender "
        "switches.",
    )
    require_reveni_signature: bool | None = Field(
        None,
        description="Refuse unsigned Reveni webhooks; None: required exactly when a secret is "
        "set. False with a secret: a signature that is present is checked, a missing one passes.",
    )
    centra_secret: SecretStr | None = Field(
        None,
        description="Centra Webhook plugin endpoint secret (X-Centra-Signature); None: Centra "
        "webhooks are refused.",
    )
    centra_secret_next: SecretStr | None = Field(
        None,
        description="While rotating the Centra webhook secret: the new one. A webhook signed "
        "with either `centra_secret` or this passes (Centra webhooks are enabled when either is "
        "set).",
    )
    centra_tolerance_seconds: int = Field(
        300, ge=1, description="Max age (or lead) of a Centra signature timestamp: older = replay."
    )
    max_body_bytes: int = Field(256 * 1024, ge=1, description="Larger request bodies get 413.")
    rate_limit_per_minute: int = Field(
        3000,
        ge=0,
        description="Requests a minute each source (reveni, centra, slack) may send, signed or "
        "not; over it: 429 with Retry-After, nothing stored. 0: no limit.",
    )
    rate_limit_burst: int | None = Field(
        None,
        ge=1,
        description="Requests a source may send at once before the per-minute rate applies; "
        "None: as many as `rate_limit_per_minute` (a minute's worth).",
    )

    @field_validator("path_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if value and (not value.startswith("/") or value.endswith("/")):
            raise ValueError("path_prefix must be empty or start with '/' and not end with '/'")
        return value

    @field_validator("reveni_secret", "reveni_secret_next", "centra_secret", "centra_secret_next")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty (leave it unset for no secret)")
        return value

    @model_validator(mode="after")
    def _required_needs_a_secret(self) -> ReceiverSettings:
        if self.require_reveni_signature and not self.reveni_secrets:
            raise ValueError("require_reveni_signature needs reveni_secret")
        return self

    @property
    def reveni_secrets(self) -> tuple[str, ...]:
        """The secrets a Reveni webhook may be signed with (current, then next); empty: none."""
        return _values(self.reveni_secret, self.reveni_secret_next)

    @property
    def centra_secrets(self) -> tuple[str, ...]:
        """The secrets a Centra webhook may be signed with (current, then next); empty: Centra
        webhooks are refused."""
        return _values(self.centra_secret, self.centra_secret_next)

    @property
    def reveni_signature_required(self) -> bool:
        """Whether an unsigned Reveni webhook is refused."""
        if self.require_reveni_signature is None:
            return bool(self.reveni_secrets)
        return self.require_reveni_signature


def _values(*secrets: SecretStr | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.get_secret_value() for s in secrets if s is not None))
