"""The month-end report's part of returnbridge's settings (`settings.monthend`, env
`RETURNBRIDGE_MONTHEND__*`). How the e-mail is sent is `settings.mail`
(`connectors/email/settings.py`); who receives this report is here."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from returnbridge.connectors.email.settings import check_address, split_addresses


class MonthEndSettings(BaseModel):
    """What the month-end report reads, where it keeps the HTML, and who receives it."""

    model_config = ConfigDict(extra="forbid")

    invoice_source: Literal["api", "off"] = Field(
        "api",
        description="[INFER] Where Reveni's invoice comes from when no --invoice file is given: "
        "'api' reads it through the Reveni client's invoices call (Reveni documents no invoice "
        "API: the path and shape are inferred, RETURNBRIDGE_REVENI__INFERRED__INVOICES_PATH), "
        "'off' never calls it (then only a CSV export gives the report an invoice).",
    )
    recipients: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Who receives the month-end e-mail: a JSON list or addresses separated by "
        "commas (name@example.com). Empty: the report is saved, not e-mailed.",
    )
    report_dir: Path = Field(
        Path("data/reports"),
        description="Where each month's HTML is saved (month-end-YYYY-MM.html).",
    )
    line_limit: int = Field(
        50,
        ge=1,
        description="Settlement lines listed per group in the report (the rest are counted).",
    )
    warehouse_wait: timedelta = Field(
        timedelta(minutes=10),
        description="How long to wait for a running reconciliation to release the warehouse.",
    )

    @field_validator("recipients", mode="before")
    @classmethod
    def _recipients_from_a_string(cls, value: Any) -> Any:
        return split_addresses(value)

    @field_validator("recipients")
    @classmethod
    def _recipients_are_addresses(cls, value: list[str]) -> list[str]:
        # Each address once (case-insensitively), in the order given: nobody gets it twice.
        seen: dict[str, str] = {}
        for item in value:
            address = check_address(item, "recipient")
            seen.setdefault(address.lower(), address)
        return list(seen.values())

    @field_validator("warehouse_wait")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError(f"must not be negative, got {value}")
        return value
