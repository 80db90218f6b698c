"""E-mailing the month-end report exactly once per month and recipient list, over the ledger's
outbox (docs/architecture.md#the-month-end-report).

The message is rendered, stored whole in the outbox (`queue_mail`), then sent from there
(`deliver`); a run that is retried, or runs twice, finds the message sent and sends nothing.
A failed send leaves the message `failed` with its error, and the next run (`deliver_unsent`)
sends the stored bytes again with the same Message-ID. `resend=True` queues a new message on
purpose, with a new Message-ID.

Outbox keys: `recipients_key("month-end", "2026-10", recipients)`, so a changed recipient list is
a new key (the new list gets the report) and the same list in another order is the same key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Final, Literal

from returnbridge.connectors.email.errors import MailError, MailRefused
from returnbridge.connectors.email.message import message_bytes, message_id_for
from returnbridge.connectors.email.smtp import SmtpSender
from returnbridge.ledger.records import MailRecord
from returnbridge.ledger.store import Ledger

log = logging.getLogger(__name__)

# How long a sender holds a message it is sending: far beyond one SMTP transaction (the
# settings' timeout applies to each command), short enough that a crashed run's message is
# picked up by the next one.
LEASE_SECONDS: Final = 300.0

DeliveryStatus = Literal["sent", "already_sent", "busy", "failed"]


@dataclass(frozen=True)
class MailDelivery:
    """What one `deliver` did with one outbox message.

    `status`: `sent` (the server accepted it just now), `already_sent` (it had been sent before:
    nothing was sent), `busy` (another run is sending it right now: nothing was sent), `failed`
    (`error` says why; the message stays in the outbox and the next run tries again)."""

    id: int
    key: str
    message_id: str
    recipients: tuple[str, ...]
    status: DeliveryStatus
    error: str | None = None
    sent_at: datetime | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        """Whether the message is out: sent now or before."""
        return self.status in ("sent", "already_sent")


def recipients_key(kind: str, period: str, recipients: Iterable[str]) -> str:
    """The outbox key of report `kind` for `period` to `recipients`, e.g.
    `month-end:2026-10:3f2a9c1b`: the first 8 hex digits of the SHA-256 of the recipients,
    lower-cased, deduplicated and sorted, so that their order and case do not matter."""
    normalised = sorted({r.strip().lower() for r in recipients if r.strip()})
    if not normalised:
        raise ValueError(f"{kind} {period}: no recipients to key the message by")
    digest = hashlib.sha256("\n".join(normalised).encode("utf-8")).hexdigest()[:8]
    return f"{kind}:{period}:{digest}"


def queue_mail(
    ledger: Ledger,
    *,
    key: str,
    subject: str,
    sender: str,
    recipients: Sequence[str],
    build: Callable[[str], EmailMessage],
    domain: str,
    resend: bool = False,
) -> MailRecord:
    """Put the message of `key` in the outbox, rendered by `build(message_id)`, and return its
    record. Which message:

    - none yet: the first (sequence 0);
    - the last one is not sent yet: that one again, re-rendered (it replaces the stored one and
      keeps its Message-ID);
    - the last one is sent: with `resend`, a new one (sequence + 1, a new Message-ID); without,
      nothing is built or stored and the sent record is returned (status `sent`, `sent_at`):
      the caller reports "already sent".

    `build` must return a message whose Message-ID is the one it is given (it is set when the
    message has none)."""
    latest = ledger.mail_latest(key)
    if latest is None:
        sequence = 0
    elif latest.status != "sent":
        sequence = latest.sequence
    elif not resend:
        return latest
    else:
        sequence = latest.sequence + 1
    message_id = message_id_for(key, sequence, domain)
    msg = build(message_id)
    stamped = msg["Message-ID"]
    if stamped is None:
        msg["Message-ID"] = message_id
    elif str(stamped).strip() != message_id:
        raise ValueError(
            f"the message built for {key!r} has Message-ID {stamped!s}, not the {message_id}"
            " it was given: a retried run would not be recognised as the same message"
        )
    body = message_bytes(msg).decode("ascii")
    return ledger.mail_put(
        key,
        sequence=sequence,
        message_id=message_id,
        subject=subject,
        sender=sender,
        recipients=list(recipients),
        body=body,
    )


def deliver(ledger: Ledger, sender: SmtpSender, record: MailRecord) -> MailDelivery:
    """Send outbox message `record` unless it is sent or another run is sending it: claim it,
    send the stored bytes, record `sent` or `failed`. A MailError never escapes (it is the
    delivery's `error`, kept in the outbox as `last_error`); anything else marks the message
    failed and is raised."""
    claimed = ledger.mail_claim(record.id, lease_seconds=LEASE_SECONDS)
    if claimed is None:
        return _not_claimed(ledger, record)
    try:
        sender.send(claimed.message, sender=claimed.sender, recipients=claimed.recipients)
    except MailError as exc:
        error = str(exc)
        remaining = None
        if isinstance(exc, MailRefused) and exc.partial:
            remaining = [r for r in claimed.recipients if r not in exc.accepted]
        failed = ledger.mail_failed(claimed.id, error, recipients=remaining or None)
        log.warning("e-mail %s (%s) not sent: %s", claimed.key, claimed.message_id, error)
        return _delivery(failed, "failed", error)
    except BaseException as exc:
        # Not a verdict of the server (a bug, an interrupt): keep the message for the next run
        # instead of leaving it leased, and let the error through.
        try:
            ledger.mail_failed(claimed.id, f"{type(exc).__name__}: {exc}")
        except Exception:
            log.exception("could not record the failure of e-mail %s", claimed.key)
        raise
    sent = ledger.mail_sent(claimed.id)
    log.info("e-mail %s (%s) sent to %s", sent.key, sent.message_id, ", ".join(claimed.recipients))
    return _delivery(sent, "sent", None, recipients=claimed.recipients)


def deliver_unsent(
    ledger: Ledger, sender: SmtpSender, key_prefix: str | None = None, *, limit: int = 100
) -> list[MailDelivery]:
    """Send every outbox message still unsent (pending, failed, or abandoned mid-send), oldest
    first; only keys starting with `key_prefix` when given."""
    return [deliver(ledger, sender, r) for r in ledger.mail_unsent(limit, key_prefix=key_prefix)]


def _not_claimed(ledger: Ledger, record: MailRecord) -> MailDelivery:
    """Why `record` could not be claimed: sent already, or held by another sender."""
    current = ledger.mail_get(record.id)
    if current is None:
        raise KeyError(f"no outbox message with id {record.id} in the ledger")
    if current.status == "sent":
        return _delivery(current, "already_sent", None)
    return _delivery(
        current,
        "busy",
        f"another run is sending it (leased until {current.lease_until})",
    )


def _delivery(
    record: MailRecord,
    status: DeliveryStatus,
    error: str | None,
    *,
    recipients: Sequence[str] | None = None,
) -> MailDelivery:
    return MailDelivery(
        id=record.id,
        key=record.key,
        message_id=record.message_id,
        recipients=tuple(record.recipients if recipients is None else recipients),
        status=status,
        error=error,
        sent_at=record.sent_at,
        attempts=record.attempts,
    )
