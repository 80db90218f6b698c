"""What the ledger hands back: plain, immutable records (docs/architecture.md#the-ledger)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal, get_args

from returnbridge.core.actions import Action

ExceptionStatus = Literal["open", "retrying", "resolved", "ignored"]
EXCEPTION_STATUSES: Final[tuple[str, ...]] = get_args(ExceptionStatus)
InboxSource = Literal["reveni", "centra"]
MailStatus = Literal["pending", "sending", "sent", "failed"]
MAIL_STATUSES: Final[tuple[str, ...]] = get_args(MailStatus)


@dataclass(frozen=True)
class ActionRecord:
    """One action row: the planned effect, where it is in the state machine, and its outcome."""

    key: str
    kind: str
    reveni_return_id: str
    order_number: int
    state: str
    attempts: int
    payload: dict[str, Any]
    depends_on: tuple[str, ...]
    centra_ref: str | None  # Centra's id of the effect once done (return id, stock change id...)
    last_error: str | None
    not_before: datetime | None  # backoff: not to be tried before this time
    created_at: datetime
    updated_at: datetime

    def action(self) -> Action:
        """The planned action this row holds."""
        return Action.from_stored(
            key=self.key,
            kind=self.kind,
            reveni_return_id=self.reveni_return_id,
            order_number=self.order_number,
            payload=self.payload,
            depends_on=self.depends_on,
        )


@dataclass(frozen=True)
class AttemptRecord:
    """One try of an action: what was sent, what came back (or the error), and when."""

    id: int
    action_key: str
    started_at: datetime
    finished_at: datetime | None
    request_summary: str
    response: str | None
    error: str | None
    outcome: str  # the action state the attempt led to


@dataclass(frozen=True)
class ExceptionRecord:
    """One exception (docs/architecture.md#exception-codes-and-owners): code, owner, keys, money,
    when seen, status, and why."""

    id: int
    code: str
    owner: str
    reveni_return_id: str | None
    order_number: int | None
    sku: str | None
    amount: Decimal | None
    currency: str | None
    detail: str
    status: str
    first_seen: datetime
    last_seen: datetime
    attempts: int  # retries of the action behind it (or times the check failed again)
    action_key: str | None  # the action behind it, whose attempts explain it
    resolved_at: datetime | None
    resolution_note: str | None

    def as_summary(self) -> dict[str, object]:
        """The run summary's `exceptions[]` entry
        (docs/architecture.md#the-cli-and-the-run-summary)."""
        return {
            "code": self.code,
            "owner": self.owner,
            "order_number": self.order_number,
            "reveni_return_id": self.reveni_return_id,
            "sku": self.sku,
            "amount": None if self.amount is None else str(self.amount),
            "currency": self.currency,
            "status": self.status,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class InboxEvent:
    """One webhook as received, committed before the receiver answered 2xx."""

    id: int
    source: str
    event_id: str
    resource_id: str | None
    event_type: str | None
    body: str
    received_at: datetime
    processed_at: datetime | None


@dataclass(frozen=True)
class UnfinishedReturn:
    """A Reveni return a sync run left unfinished (docs/architecture.md#the-ledger): the next run
    works on it again whether or not Reveni changed it. `since`: when a run first left it unfinished
    (this time); `updated_at`: the last run that did."""

    reveni_return_id: str
    since: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ExceptionChanges:
    """What one `observe_exceptions` pass changed: exceptions first raised (or raised again after
    being resolved), ones still found, and ones no longer found and so resolved ("healed")."""

    new: list[ExceptionRecord]
    seen: list[ExceptionRecord]
    healed: list[ExceptionRecord]


@dataclass(frozen=True)
class MailRecord:
    """One message of the e-mail outbox (docs/architecture.md#the-month-end-report), stored whole
    before it is sent so that a retry sends the same bytes and Message-ID.

    `key` names what it is for ("month-end:2026-10:<hash of the recipients>"); `sequence` 0 is its
    first message, 1, 2 ... each deliberate resend. `status`: pending, sending (held by a sender
    until `lease_until`), sent, or failed (`last_error`, tried again later). `recipients`: the
    envelope recipients still owed the message; `body`: the whole RFC 5322 message (ASCII)."""

    id: int
    key: str
    sequence: int
    message_id: str
    subject: str
    sender: str
    recipients: tuple[str, ...]
    body: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    lease_until: datetime | None

    @property
    def message(self) -> bytes:
        """The message as it is sent."""
        return self.body.encode("utf-8")  # ASCII as built; UTF-8 should one ever not be
