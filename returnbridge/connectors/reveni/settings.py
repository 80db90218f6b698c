"""How to reach one Reveni store: part of returnbridge's `Settings` (`settings.reveni`)."""

from __future__ import annotations

import random

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from returnbridge.connectors.reveni.client import ReveniClient
from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.connectors.reveni.transport import Sleep


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

    def client(
        self,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        timeout_seconds: float | None = None,
    ) -> ReveniClient:
        """A `ReveniClient` for this store (an async context manager), built the way every
        connector's client is (docs/architecture.md):

        - `http_transport`: the httpx transport under the client (tests: `httpx.MockTransport`);
        - `sleep`: the async wait between retries (default `asyncio.sleep`);
        - `rng`: the jitter of the retry backoff;
        - `timeout_seconds`: replaces `self.timeout_seconds`.

        Any other keyword is a TypeError naming it.
        """
        return ReveniClient(
            self.base_url,
            self.api_key,
            self.store_id,
            inferred=self.inferred,
            timeout_seconds=self.timeout_seconds if timeout_seconds is None else timeout_seconds,
            read_retries=self.read_retries,
            page_size=self.page_size,
            http_transport=http_transport,
            sleep=sleep,
            rng=rng,
        )
