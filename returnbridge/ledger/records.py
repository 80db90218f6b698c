"""What the ledger hands back: plain, immutable records (docs/architecture.md#the-ledger)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal, get_args

from returnbridge.core.actions import Action

ExceptionStatus = Literal["open", "retrying", "resolved", "ignored"]
EXCEPTION_STATUSES: Final[tuple[str, ...]] = get_args(ExceptionStatus)
LIVE_STATUSES: Final[tuple[str, ...]] = ("open", "retrying")
CLOSED_STATUSES: Final[tuple[str, ...]] = ("resolved", "ignored")
# What happened to an exception, one history row each (`ExceptionEvent.kind`).
EventKind = Literal[
    "opened",  # first found
    "reopened",  # found again after it was resolved, or about more money than when ignored
    "healed",  # returnbridge no longer finds it, or the action behind it is done after all
    "resolved",  # a person closed it as fixed
    "ignored",  # a person accepted it as is
    "retried",  # a person asked returnbridge to try again
    "still_failing",  # the re-check after a retry found it again
    "noted",  # a person added a note
    "assigned",  # a person took it, or gave it to someone
    "unassigned",
]
EVENT_KINDS: Final[tuple[str, ...]] = get_args(EventKind)
# The actor of what returnbridge does by itself.
SYSTEM_ACTOR: Final = "returnbridge"
InboxSource = Literal["reveni", "centra"]
# How an inbox event naming a return Reveni does not have is settled (`inbox.outcome`).
UNKNOWN_RESOURCE: Final = "unknown_resource"
# superseded: taken out of the queue unsent, a newer message replaces it (`mail_supersede`)
MailStatus = Literal["pending", "sending", "sent", "failed", "superseded"]
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
    resolution_note: str | None  # the note it was last closed with (every note: its history)
    assignee: str | None = None  # who took it ("Assign to me", `exceptions assign`)
    # What its owner needs beyond `amount` (core/codes.py `FACTS`): the other side of a
    # mismatch, a deadline.
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def closed(self) -> bool:
        """Resolved or ignored: nothing left to do (until it is found again)."""
        return self.status in CLOSED_STATUSES

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
class ExceptionEvent:
    """One line of an exception's history (append-only): who did what, when, and why."""

    id: int
    exception_id: int
    at: datetime
    actor: str  # "returnbridge", "cli:alice", "slack:U024BE7LH (alice)"
    kind: str  # EVENT_KINDS
    from_status: str | None
    to_status: str | None
    note: str | None


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
