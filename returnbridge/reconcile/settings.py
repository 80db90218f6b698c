"""Reconciliation's part of returnbridge's settings (`settings.reconcile`, env
`RETURNBRIDGE_RECONCILE__*`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class ReconcileSettings(BaseModel):
    """How the daily reconciliation loads, compares, fixes and reports."""

    model_config = ConfigDict(extra="forbid")

    warehouse_path: Path = Field(
        Path("data/warehouse.duckdb"),
        description="The DuckDB warehouse (written by the reconciliation only).",
    )
    timezone: str = Field(
        "Europe/Stockholm",
        description="The brand's timezone: run dates, the daily schedule and digest dates.",
    )
    first_load_since: timedelta = Field(
        timedelta(days=400), description="How far back the very first load reads Reveni."
    )
    look_back: timedelta = Field(
        timedelta(days=2),
        description="Each load re-reads this much before the last watermark (late writes).",
    )
    recheck_days: int = Field(
        14,
        ge=0,
        description="Orders with a Reveni return changed in these days are re-read from Centra "
        "every run (a refund made directly in Centra changes no Reveni return).",
    )
    grace: timedelta = Field(
        timedelta(hours=1),
        description="A missing effect counts only once Reveni's change is this old.",
    )
    refund_pending_max: timedelta = Field(
        timedelta(hours=48),
        description="A refund asked of an asynchronous PSP (Adyen, Klarna) and not answered for "
        "this long is raised to Finance as refund_pending_too_long.",
    )
    full_recompute: bool = Field(
        False,
        description="Recompute every gap each run instead of only those of what changed since "
        "the last run (the result is the same; for when in doubt).",
    )
    full_recompute_after: timedelta = Field(
        timedelta(days=7),
        description="Recompute every gap when the last computation is further than this "
        "from the run's time (either way: a run for a date long past too).",
    )
    fix: bool = Field(True, description="Re-enqueue fixable gaps through the ledger.")
    fix_limit: int = Field(
        500, ge=0, description="Most returns re-enqueued per run (the rest wait a day)."
    )
    digest_top: int = Field(10, ge=0, le=10, description="Items listed in each digest.")
    prefect_ui_url: str | None = Field(
        None,
        description="Prefect UI base URL for the digest's flow-run link, e.g. "
        "http://prefect.example.com (default: Prefect's PREFECT_UI_URL).",
    )
    duckdb_threads: int | None = Field(None, ge=1, description="DuckDB threads (default: all).")
    duckdb_memory_limit: str | None = Field(
        None, description="DuckDB memory limit, e.g. '2GB' (default: DuckDB's 80% of RAM)."
    )

    @field_validator(
        "first_load_since", "look_back", "grace", "refund_pending_max", "full_recompute_after"
    )
    @classmethod
    def _not_negative(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if value < timedelta(0):
            raise ValueError(
                f"RETURNBRIDGE_RECONCILE__{str(info.field_name).upper()} must not be negative, "
                f"got {value} (a duration such as P2D or PT1H)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (an IANA name like Europe/Stockholm)"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
