"""How to reach the SMTP server and who gets the month-end report: part of returnbridge's
`Settings` (`settings.mail`, env `RETURNBRIDGE_MAIL__HOST`, `RETURNBRIDGE_MAIL__RECIPIENTS`, ...).

Addresses are bare ASCII addr-specs (`finance@example.com`): they serve both as the SMTP envelope
and as the From/To headers, and an envelope address needs no display name but does need ASCII
(we do not ask servers for SMTPUTF8). An internationalised domain is written in its `xn--` form.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# A bare addr-spec: something@domain, no spaces, brackets, quotes or list separators. Loose on
# purpose: the SMTP server is the authority on what it accepts; this only catches the typos a
# person can fix before the first month-end (a missing @, a name in angle brackets, "a;b").
_ADDRESS: Final = re.compile(r"[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
# Separators of a recipient list written as one string (an env var).
_LIST_SEPARATORS: Final = re.compile(r"[,;\s]+")

MailSecurity = Literal["starttls", "ssl", "none"]


def check_address(value: str, what: str = "address") -> str:
    """`value` stripped, or ValueError saying why it is not a bare ASCII e-mail address."""
    address = value.strip()
    if not address.isascii():
        raise ValueError(
            f"{what} {address!r} is not ASCII; write the domain in its xn-- form (SMTPUTF8 is not"
            " used)"
        )
    if _ADDRESS.fullmatch(address) is None or ".." in address:
        raise ValueError(
            f"{what} {address!r} does not look like an e-mail address (name@example.com, without"
            " a display name or angle brackets)"
        )
    return address


def split_addresses(value: Any) -> Any:
    """A recipient list as written in an env var: a JSON list, or addresses separated by commas,
    semicolons or spaces; anything else is left to the field's own validation."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError(f"recipients {text!r} is not a JSON list of addresses") from None
    return [part for part in _LIST_SEPARATORS.split(text) if part]


class MailSettings(BaseModel):
    """The SMTP server returnbridge's e-mail (the month-end report) is sent through
    (`settings.mail`); the recipients are each report's own setting. No `host`: e-mail is off,
    the report is only written to disk."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(
        None, description="SMTP server host name; none: no e-mail is sent (e-mail is off)."
    )
    port: int = Field(
        587,
        ge=1,
        le=65535,
        description="SMTP port: 587 for STARTTLS (submission), 465 for SSL, 25 for plain relay.",
    )
    security: MailSecurity = Field(
        "starttls",
        description="starttls: upgrade a plain connection (refused if the server does not offer"
        " it); ssl: TLS from the first byte (port 465); none: no encryption (a local relay only).",
    )
    user: str | None = Field(
        None, description="SMTP AUTH user; none: no login (a relay that trusts our address)."
    )
    password: SecretStr | None = Field(
        None, description="SMTP AUTH password; set together with `user`, never logged."
    )
    sender: str = Field(
        "returnbridge@localhost",
        description="The From address and SMTP envelope sender (name@example.com); its domain"
        " also ends every Message-ID.",
    )
    timeout_seconds: float = Field(
        30.0, gt=0, description="Timeout of the connection and of each SMTP command."
    )
    subject_prefix: str = Field(
        "[returnbridge]", description="Put before every subject, so mail rules can sort them."
    )

    @field_validator("host")
    @classmethod
    def _blank_host_is_none(cls, value: str | None) -> str | None:
        # An env var set to "" means "not configured", like an absent one.
        if value is None or not value.strip():
            return None
        return value.strip()

    @field_validator("sender")
    @classmethod
    def _sender_is_an_address(cls, value: str) -> str:
        return check_address(value, "sender")

    @field_validator("user")
    @classmethod
    def _blank_user_is_none(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else value.strip()

    @field_validator("password")
    @classmethod
    def _blank_password_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None or not value.get_secret_value() else value

    @model_validator(mode="after")
    def _user_and_password_together(self) -> MailSettings:
        # Half a login would fail at the first month-end; say so when the settings are read.
        if self.user is not None and self.password is None:
            raise ValueError(
                "an SMTP user is set without a password: set RETURNBRIDGE_MAIL__PASSWORD too"
                " (or unset RETURNBRIDGE_MAIL__USER to send without logging in)"
            )
        if self.password is not None and self.user is None:
            raise ValueError(
                "an SMTP password is set without a user: set RETURNBRIDGE_MAIL__USER too"
            )
        return self

    @property
    def active(self) -> bool:
        """Whether e-mail is on: an SMTP host is set (who receives what is each report's own
        setting, e.g. `RETURNBRIDGE_MONTHEND__RECIPIENTS`)."""
        return self.host is not None

    @property
    def address(self) -> str:
        """`host:port` for messages (`-` when e-mail is off)."""
        return f"{self.host or '-'}:{self.port}"
