"""How to reach one Centra environment: part of returnbridge's `Settings` (`settings.centra`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from returnbridge.connectors.centra.inferred import CentraInferred
from returnbridge.connectors.centra.plans import PLANS


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
