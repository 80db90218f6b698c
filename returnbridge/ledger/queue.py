"""What a person does to an exception, one way for every door (docs/runbook.md#how-entries-close).

`exceptions retry|resolve|ignore|note|assign` on the command line and the buttons of a Slack
digest (receiver `POST /slack/actions`) both call `act`: the same checks, the same ledger calls,
the same history line with who did it, the same answer in words.

- A closed exception (resolved or ignored) is not retried, resolved, ignored or assigned again:
  `ExceptionClosed` says when it was closed. A note can still be added.
- A retry that can move money (a PSP refund sent again, a duplicate released) needs `confirmed`:
  without it `ConfirmationNeeded` carries the warning to show, with the amount.
- Ignoring needs a reason; resolving takes an optional note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

from returnbridge.core.codes import GAP_ONLY_CODES, title_of
from returnbridge.ledger.records import ExceptionRecord
from returnbridge.ledger.store import ExceptionClosed, Ledger

QueueAction = Literal["retry", "resolve", "ignore", "note", "assign", "unassign"]
QUEUE_ACTIONS: Final[tuple[str, ...]] = get_args(QueueAction)

# Codes whose retry can send money to a customer through Centra's PSP: the runbook warns that a
# second attempt could pay twice, so a person confirms, seeing the amount.
MONEY_RETRY_CODES: Final = frozenset(
    {
        "refund_failed_at_gateway",
        "duplicate_refund",
        "refund_post_failed",
        "refund_missing",
        "refund_pending_too_long",
    }
)


class ConfirmationNeeded(Exception):
    """A retry that can move money, asked for without confirming it."""

    def __init__(self, warning: str) -> None:
        self.warning = warning
        super().__init__(warning)


@dataclass(frozen=True)
class Outcome:
    """What `act` did: the exception as it is now and one line saying so."""

    record: ExceptionRecord
    message: str
    requeued: tuple[str, ...] = ()


def money(record: ExceptionRecord) -> str:
    """The exception's amount as a person reads it ("48.00 EUR"), or "an unknown amount"."""
    if record.amount is None:
        return "an unknown amount"
    return f"{record.amount} {record.currency or ''}".strip()


def retry_warning(record: ExceptionRecord) -> str | None:
    """What to confirm before retrying `record`, when the retry can move money; else None."""
    if record.code not in MONEY_RETRY_CODES:
        return None
    order = f"order {record.order_number}" if record.order_number is not None else "its order"
    base = f"Retrying #{record.id} ({title_of(record.code)}) can refund {money(record)} on {order}"
    if record.code == "refund_failed_at_gateway":
        return (
            f"{base} through the payment provider again. If the provider did pay the first "
            "time, the customer is paid twice: check the payment in the provider's dashboard "
            "first."
        )
    if record.code == "duplicate_refund":
        return (
            f"{base} through the payment provider although a refund made by hand in Centra "
            "looks like it: the customer may be paid twice."
        )
    return f"{base} in Centra."


def act(
    ledger: Ledger,
    exception_id: int,
    action: str,
    *,
    actor: str,
    note: str = "",
    assignee: str | None = None,
    confirmed: bool = False,
) -> Outcome:
    """Do `action` to exception `exception_id` as `actor`. KeyError: no such exception;
    ExceptionClosed: it is closed (for anything but a note); ConfirmationNeeded: a money-moving
    retry not confirmed; ValueError: a missing reason or note, or an unknown action."""
    if action not in QUEUE_ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {list(QUEUE_ACTIONS)}")
    record = ledger.exception(exception_id)
    if record is None:
        raise KeyError(f"no exception with id {exception_id} in the ledger")
    if action == "note":
        done = ledger.note_exception(exception_id, actor=actor, note=note)
        return Outcome(done, f"#{exception_id}: note added.")
    if record.closed:
        raise ExceptionClosed(record)
    if action == "retry":
        warning = retry_warning(record)
        if warning is not None and not confirmed:
            raise ConfirmationNeeded(warning)
        keys = ledger.retry_exception(exception_id, actor=actor, note=note)
        after = ledger.exception(exception_id) or record
        return Outcome(after, _retried(record, keys), tuple(keys))
    if action in ("resolve", "ignore"):
        if action == "ignore" and not note.strip():
            raise ValueError("ignoring needs a reason (kept in the exception's history)")
        status = "ignored" if action == "ignore" else "resolved"
        done = ledger.resolve_exception(
            exception_id, note=note or f"resolved by {actor}", status=status, actor=actor
        )
        return Outcome(done, f"#{exception_id} {title_of(done.code)}: {status} by {actor}.")
    who = None if action == "unassign" else (assignee or actor)
    done = ledger.assign_exception(exception_id, actor=actor, assignee=who)
    said = "unassigned" if who is None else f"assigned to {who}"
    return Outcome(done, f"#{exception_id}: {said}.")


def _retried(record: ExceptionRecord, keys: list[str]) -> str:
    """What happens next after a retry, in words."""
    if record.code == "duplicate_refund" and (record.action_key or "").startswith("refund:"):
        return (
            f"#{record.id}: released; the next sync run refunds {record.reveni_return_id} "
            "through the payment provider."
        )
    if keys:
        return f"#{record.id}: re-queued {', '.join(keys)}; the next sync run sends it."
    if record.code in GAP_ONLY_CODES:
        return (
            f"#{record.id}: marked retrying; {record.code} is found by the reconciliation, so "
            "the next reconciliation (or `returnbridge reconcile` now) re-checks and fixes it."
        )
    return (
        f"#{record.id}: marked retrying; no failed action behind it, so the next sync run "
        "re-checks the return."
    )
