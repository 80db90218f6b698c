"""The sync's part of returnbridge's settings (`settings.sync`, env `RETURNBRIDGE_SYNC__*`)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SyncSettings(BaseModel):
    """The sync's part of returnbridge's settings (`settings.sync`, env `RETURNBRIDGE_SYNC__*`)."""

    model_config = ConfigDict(extra="forbid")

    ledger_url: str = Field(
        "sqlite:///data/returnbridge.db",
        description="The ledger: SQLite file (one machine) or postgresql+psycopg://... URL.",
    )
    returns_warehouse_id: int = Field(2, ge=1, description="Centra warehouse restocks go into.")
    priority: list[str] = Field(
        default_factory=list,
        description="Action kinds first in this order when the budget is short "
        "(create_return, refund, restock, exchange_order); default: oldest first.",
    )
    concurrency: int = Field(
        4,
        ge=1,
        description="Centra writes in flight at once for each budget (GraphQL mutations; "
        "Order API writes and read-backs): up to twice this in all.",
    )
    shared_budget: bool = Field(
        True,
        description="Hold Centra's budget share across processes in the ledger database (every "
        "process on this ledger and Centra environment draws from one share); off: each "
        "process holds the whole share on its own (one process only).",
    )
    max_attempts: int = Field(5, ge=1, description="Tries of a transient failure before failed.")
    backoff_seconds: float = Field(2.0, gt=0, description="First retry delay (doubles).")
    backoff_max_seconds: float = Field(300.0, gt=0, description="Longest retry delay.")
    lease_seconds: float = Field(
        120.0,
        gt=0,
        description="A claimed action not finished in this time is treated as crashed and read "
        "back (keep it above the Centra timeout plus the longest rate-limit wait).",
    )
    read_back_attempts: int = Field(
        3, ge=1, description="Inconclusive read-backs in a row before action_in_doubt is raised."
    )
    in_doubt_settle_seconds: float = Field(
        30.0,
        ge=0,
        description="After an uncertain write, how long before a read-back that finds nothing "
        "is believed (Centra may still be applying the write).",
    )
    psp_recheck_seconds: float = Field(
        60.0,
        ge=0,
        description="How often a refund waiting for an asynchronous PSP's answer (a pending "
        "refund request in Centra) is read back; it is never sent again meanwhile.",
    )
    exchange_order_base: int = Field(
        900_000_000, ge=1, description="Exchange order numbers start here (keep clear of yours)."
    )
    instant_deadline_warn_days: int = Field(3, ge=0)
    initial_look_back: timedelta = Field(
        timedelta(days=60), description="How far back the very first run reads Reveni."
    )
    max_rounds: int = Field(4, ge=1, description="Plan/execute rounds per run.")

    @field_validator("initial_look_back")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError(
                "RETURNBRIDGE_SYNC__INITIAL_LOOK_BACK must not be negative, got "
                f"{value} (a duration such as P60D)"
            )
        return value
