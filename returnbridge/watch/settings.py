"""The watchdog's part of returnbridge's settings (`settings.watch`, env `RETURNBRIDGE_WATCH__*`):
its thresholds and the engineering channel its alerts go to
(docs/operating-guide.md#watchdog-alerts).

Durations are ISO 8601 (`PT2H`, `PT15M`) or seconds; every threshold must be above zero, and an
error names the environment variable to fix, because that is where an engineer will look.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

ENV_PREFIX: Final = "RETURNBRIDGE_WATCH__"
_NUMBER: Final = re.compile(r"[-+]?\d+(\.\d+)?")
_DURATION: Final = TypeAdapter(timedelta)
_COUNT: Final = TypeAdapter(int)
_SECONDS: Final = TypeAdapter(float)


def env_name(field: str) -> str:
    """The environment variable of a watchdog setting (`inbox_max_age` ->
    `RETURNBRIDGE_WATCH__INBOX_MAX_AGE`)."""
    return f"{ENV_PREFIX}{field.upper()}"


class WatchSettings(BaseModel):
    """The watchdog's thresholds and channel (`settings.watch`, env `RETURNBRIDGE_WATCH__*`)."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(
        "#returns-engineering",
        description="The engineering Slack channel every watchdog alert and recovery goes to "
        "(the bot of RETURNBRIDGE_SLACK__TOKEN must be in it).",
    )
    webhook_silence: timedelta = Field(
        timedelta(hours=2),
        description="No Reveni webhook for this long while Reveni's listing shows returns "
        "changed in that time: the webhooks are not arriving.",
    )
    inbox_max_age: timedelta = Field(
        timedelta(minutes=15),
        description="A webhook in the inbox not processed by a sync run after this long.",
    )
    inbox_max_pending: int = Field(
        500, description="More unprocessed webhooks in the inbox than this: the sync lags."
    )
    unknown_webhooks_max: int = Field(
        50,
        description="More webhooks than this in 24 hours naming returns Reveni does not have "
        "(fake, or another store's): alert.",
    )
    in_doubt_after: timedelta = Field(
        timedelta(minutes=30),
        description="An action in_doubt not read back for this long (refunds waiting for the "
        "payment provider excepted: refund_pending_too_long covers them).",
    )
    in_flight_after: timedelta = Field(
        timedelta(minutes=15),
        description="An action claimed (in_flight) for this long: its worker died or hangs. "
        "Keep it above RETURNBRIDGE_SYNC__LEASE_SECONDS.",
    )
    sync_failures: int = Field(
        3, description="This many sync runs failed in a row (the newest ones)."
    )
    probe_timeout_seconds: float = Field(
        10.0, description="Timeout of each request that probes Centra's and Reveni's credentials."
    )
    probe_retries: int = Field(
        1,
        description="Retries of a probe after a network error or 5xx before the API counts as "
        "unreachable (0 or more).",
    )
    lease_seconds: float = Field(
        120.0,
        description="How long a watchdog holds a message it is posting before another may post "
        "it (a watchdog that died while posting).",
    )

    @field_validator("channel")
    @classmethod
    def _a_channel(cls, value: str, info: ValidationInfo) -> str:
        name = value.strip()
        if not name:
            raise ValueError(f"{env_name(str(info.field_name))} must name a Slack channel")
        return name

    @field_validator(
        "webhook_silence", "inbox_max_age", "in_doubt_after", "in_flight_after", mode="before"
    )
    @classmethod
    def _read_duration(cls, value: object, info: ValidationInfo) -> object:
        """A duration as ISO 8601 or as seconds (also as text, as the environment has it),
        or an error naming the variable."""
        if isinstance(value, timedelta):
            return value
        text = str(value).strip()
        if _NUMBER.fullmatch(text):
            return timedelta(seconds=float(text))
        try:
            return _DURATION.validate_python(value)
        except ValidationError:
            raise ValueError(
                f"{env_name(str(info.field_name))} is not a duration: {value!r} (ISO 8601 such "
                "as PT15M or P1D, or seconds)"
            ) from None

    @field_validator(
        "inbox_max_pending", "unknown_webhooks_max", "sync_failures", "probe_retries", mode="before"
    )
    @classmethod
    def _read_count(cls, value: object, info: ValidationInfo) -> object:
        try:
            return _COUNT.validate_python(value)
        except ValidationError:
            raise ValueError(
                f"{env_name(str(info.field_name))} is not a whole number: {value!r}"
            ) from None

    @field_validator("probe_timeout_seconds", "lease_seconds", mode="before")
    @classmethod
    def _read_seconds(cls, value: object, info: ValidationInfo) -> object:
        try:
            return _SECONDS.validate_python(value)
        except ValidationError:
            raise ValueError(
                f"{env_name(str(info.field_name))} is not a number of seconds: {value!r}"
            ) from None

    @field_validator(
        "webhook_silence", "inbox_max_age", "in_doubt_after", "in_flight_after", mode="after"
    )
    @classmethod
    def _positive_duration(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(
                f"{env_name(str(info.field_name))} must be a duration above zero "
                f"(ISO 8601 such as PT15M, or seconds), got {value}"
            )
        return value

    @field_validator("inbox_max_pending", "sync_failures", mode="after")
    @classmethod
    def _positive_count(cls, value: int, info: ValidationInfo) -> int:
        if value < 1:
            raise ValueError(f"{env_name(str(info.field_name))} must be 1 or more, got {value}")
        return value

    @field_validator("probe_timeout_seconds", "lease_seconds", mode="after")
    @classmethod
    def _positive_seconds(cls, value: float, info: ValidationInfo) -> float:
        if not value > 0:
            raise ValueError(
                f"{env_name(str(info.field_name))} must be a number of seconds above zero, "
                f"got {value}"
            )
        return value

    @field_validator("probe_retries", mode="after")
    @classmethod
    def _no_negative_retries(cls, value: int, info: ValidationInfo) -> int:
        if value < 0:
            raise ValueError(f"{env_name(str(info.field_name))} must be 0 or more, got {value}")
        return value
