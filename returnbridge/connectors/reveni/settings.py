"""How to reach one Reveni store: part of returnbridge's `Settings` (`settings.reveni`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from returnbridge.connectors.reveni.client import ReveniClient
from returnbridge.connectors.reveni.inferred import ReveniInferred


class ReveniSettings(BaseModel):
    """How to reach one Reveni store (credentials are merchant-scoped: API key + store id)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        "http://127.0.0.1:8082",
        description="Reveni API host (production https://api.reveni.io, sandbox "
        "https://api.sandbox.reveni.io); resources live under /merchants/v0/stores/<store_id>/.",
    )
    api_key: SecretStr = Field(SecretStr("reveni-sim-key"), description="API key (Bearer).")
    store_id: str = Field("store_1", min_length=1, description="The store the key belongs to.")
    timeout_seconds: float = Field(10.0, gt=0, description="Per-request timeout.")
    read_retries: int = Field(4, ge=0, description="Retries of a read after a transient error.")
    page_size: int | None = Field(
        None, ge=1, description="Returns per list page; default: inferred.page_size_max."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Secret of the (inferred) webhook signature; None: unsigned webhooks."
    )
    inferred: ReveniInferred = Field(default_factory=ReveniInferred)

    def client(self, **overrides: Any) -> ReveniClient:
        """A `ReveniClient` for this store; keyword arguments go to the client (tests pass
        `transport=` or `sleep=`)."""
        return ReveniClient(
            self.base_url,
            self.api_key,
            self.store_id,
            inferred=self.inferred,
            timeout=self.timeout_seconds,
            read_retries=self.read_retries,
            page_size=self.page_size,
            **overrides,
        )
