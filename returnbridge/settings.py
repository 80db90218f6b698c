"""returnbridge's one settings object, resolved once at the start of a flow or command.

Values come from the environment (prefix `RETURNBRIDGE_`, nested with `__`, for example
`RETURNBRIDGE_CENTRA__TOKEN` or `RETURNBRIDGE_CENTRA__INFERRED__ORDERS_LIMIT_MAX`) or a `.env` file.
Secrets are `SecretStr`: they never reach a log line, an artifact, a digest or a report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.connectors.email.settings import MailSettings
from returnbridge.connectors.reveni.settings import ReveniSettings
from returnbridge.connectors.slack.settings import SlackSettings
from returnbridge.core.settings import LinkSettings
from returnbridge.monthend.settings import MonthEndSettings
from returnbridge.receiver.settings import ReceiverSettings
from returnbridge.reconcile.settings import ReconcileSettings
from returnbridge.sync.settings import SyncSettings
from returnbridge.watch.settings import WatchSettings

__all__ = [
    "CentraSettings",
    "LinkSettings",
    "MailSettings",
    "MonthEndSettings",
    "ReceiverSettings",
    "ReconcileSettings",
    "ReveniSettings",
    "Settings",
    "SlackSettings",
    "SyncSettings",
    "WatchSettings",
    "describe_settings_error",
    "load_settings",
]


class Settings(BaseSettings):
    """All of returnbridge's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="RETURNBRIDGE_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    centra: CentraSettings = Field(default_factory=CentraSettings)
    reveni: ReveniSettings = Field(default_factory=ReveniSettings)
    receiver: ReceiverSettings = Field(default_factory=ReceiverSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    monthend: MonthEndSettings = Field(default_factory=MonthEndSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    links: LinkSettings = Field(default_factory=LinkSettings)

    @model_validator(mode="after")
    def _receiver_uses_the_connectors_webhook_settings(self) -> Settings:
        """The webhook secrets (and Centra's tolerance) set on a connector serve the receiver
        too, unless the receiver section sets its own: one secret, configured once."""
        receiver = self.receiver
        updates: dict[str, object] = {}
        if receiver.reveni_secret is None and self.reveni.webhook_secret is not None:
            updates["reveni_secret"] = self.reveni.webhook_secret
        if receiver.centra_secret is None and self.centra.webhook_secret is not None:
            updates["centra_secret"] = self.centra.webhook_secret
        if "centra_tolerance_seconds" not in receiver.model_fields_set:
            updates["centra_tolerance_seconds"] = self.centra.webhook_tolerance_seconds
        if updates:
            self.receiver = ReceiverSettings.model_validate(
                {**receiver.model_dump(exclude_unset=True), **updates}
            )
        return self


def load_settings() -> Settings:
    """Resolve settings from the environment (and `.env`)."""
    return Settings()


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable of a settings error's location: ("reconcile", "grace") →
    RETURNBRIDGE_RECONCILE__GRACE (a list or dict inside a value: the variable holding it)."""
    names = [str(part) for part in loc if isinstance(part, str)]
    if len(names) > 2:  # a key inside a JSON value (channels.finance): the variable is its holder
        names = names[:2]
    return "RETURNBRIDGE_" + "__".join(n.upper() for n in names)


def describe_settings_error(exc: Exception, environ: Mapping[str, str] | None = None) -> str:
    """A settings error as a person fixes it: one line per problem, each naming the variable
    (`RETURNBRIDGE_SYNC__CONCURRENCY: must be >= 1, got -2`), never a value of a secret."""
    if isinstance(exc, ValidationError):
        lines = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
            message = str(err["msg"]).removeprefix("Value error, ")
            name = env_name(loc)
            if message.startswith(name):
                lines.append(message)
                continue
            shown = "" if _secret(loc) else _shown_input(err.get("input"))
            if shown and shown.removeprefix(", got ") in message:
                shown = ""  # the message quotes the value already
            lines.append(f"{name}: {message}{shown}")
        return "\n".join(lines)
    if isinstance(exc, SettingsError):
        # pydantic-settings names the section, not the variable: find the value that is not
        # the JSON the section's lists and mappings are written in.
        env = os.environ if environ is None else environ
        for key, value in sorted(env.items()):
            if not key.startswith("RETURNBRIDGE_") or not value.lstrip().startswith(("[", "{")):
                continue
            try:
                json.loads(value)
            except ValueError as bad:
                return f"{key}: not valid JSON ({bad})"
        return f"settings: {exc}"
    return f"settings: {exc}"


def _secret(loc: tuple[int | str, ...]) -> bool:
    text = " ".join(str(p) for p in loc).lower()
    return any(word in text for word in ("secret", "token", "password", "api_key"))


def _shown_input(value: object) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    text = repr(value)
    return f", got {text if len(text) <= 80 else text[:77] + '...'}"
