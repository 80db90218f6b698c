"""How to reach one Centra environment: part of returnbridge's `Settings` (`settings.centra`)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from returnbridge.connectors.centra.inferred import CentraInferred
from returnbridge.connectors.centra.plans import PLANS

if TYPE_CHECKING:
    from returnbridge.connectors.centra.client import CentraClient
    from returnbridge.connectors.centra.governor import Governor


class CentraSettings(BaseModel):
    """How to reach one Centra environment and how much of its API budget we may use."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        "http://127.0.0.1:8081", description="Centra host; GraphQL is served at <base_url>/graphql."
    )
    token: SecretStr = Field(
        SecretStr("centra-sim-token"), description="Integration API token (Bearer)."
    )
    order_api_secret: SecretStr = Field(
        SecretStr("centra-sim-secret"), description="REST Order API shared secret."
    )
    plan: str = Field("growth", description="Centra rate-limit tier of the environment.")
    budget_share: float = Field(
        0.5, gt=0.0, le=1.0, description="Share of the plan's limits returnbridge may use."
    )
    timeout_seconds: float = Field(10.0, gt=0, description="Per-request timeout.")
    read_retries: int = Field(4, ge=0, description="Retries of a read after a transient error.")
    orders_per_query: int = Field(
        50, ge=1, le=200, description="Orders fetched per batched `orders(where:{number:[...]})`."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Centra Webhook plugin endpoint secret (X-Centra-Signature)."
    )
    webhook_tolerance_seconds: int = Field(
        300, ge=1, description="Max age of a signed webhook before it is rejected as a replay."
    )
    inferred: CentraInferred = Field(default_factory=CentraInferred)

    @field_validator("plan")
    @classmethod
    def _known_plan(cls, value: str) -> str:
        if value not in PLANS:
            raise ValueError(f"unknown Centra plan {value!r}; expected one of {sorted(PLANS)}")
        return value

    def client(
        self,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
        timeout_seconds: float | None = None,
        governor: Governor | None = None,
        orders_per_query: int | None = None,
    ) -> CentraClient:
        """A `CentraClient` of this environment (an async context manager), built the way every
        connector's client is (docs/architecture.md):

        - `http_transport`: the httpx transport under the client (tests: `httpx.MockTransport`);
        - `sleep`: the async wait between read retries (default: the governor's clock);
        - `rng`: the jitter of the retry backoff;
        - `timeout_seconds`: replaces `self.timeout_seconds`.

        Centra's own: `governor` (default: the process-wide one of this environment, so every
        client shares one budget) and `orders_per_query` (default: `self.orders_per_query`, shrunk
        to what the budget allows). Any other keyword is a TypeError naming it.
        """
        from returnbridge.connectors.centra.client import CentraClient  # client.py imports us

        return CentraClient(
            self,
            timeout_seconds=timeout_seconds,
            orders_per_query=orders_per_query,
            governor=governor,
            rng=rng,
            http_transport=http_transport,
            sleep=sleep,
        )
