"""returnbridge's one settings object, resolved once at the start of a flow or command.

Values come from the environment (prefix `RETURNBRIDGE_`, nested with `__`, for example
`RETURNBRIDGE_CENTRA__TOKEN` or `RETURNBRIDGE_CENTRA__INFERRED__ORDERS_LIMIT_MAX`) or a `.env` file.
Secrets are `SecretStr`: they never reach a log line, an artifact, a digest or a report.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
