"""returnbridge's one settings object, resolved once at the start of a flow or command.

Values come from the environment (prefix `RETURNBRIDGE_`, nested with `__`, for example
`RETURNBRIDGE_CENTRA__TOKEN` or `RETURNBRIDGE_CENTRA__INFERRED__ORDERS_LIMIT_MAX`) or a `.env` file.
Secrets are `SecretStr`: they never reach a log line, an artifact, a digest or a report.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.connectors.reveni.settings import ReveniSettings

__all__ = ["CentraSettings", "ReveniSettings", "Settings", "load_settings"]


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


def load_settings() -> Settings:
    """Resolve settings from the environment (and `.env`)."""
    return Settings()
