"""Centra's refunds as attempts: what a return's (or an order's) refund entries add up to
(docs/architecture.md#refunds-at-the-psp).

A PSP refund in Centra is one of two shapes ([C] for the pattern, [INF] for the exact entries):
- synchronous: one `REFUND` entry, SUCCESS or FAILED;
- asynchronous (Adyen, Klarna and the like: request, then the PSP's webhook): a
  `REFUND_REQUEST` entry left PENDING, later settled by a `REFUND` (SUCCESS) or `REFUND_FAILED`
  entry carrying the same PSP reference (`externalReference`). Whether Centra also flips the
  request's own status is not documented, so both are read: a request's outcome is its
  settlement entry's when one carries its reference, else the request's own status.

`refund_attempts` folds the entries into one `RefundAttempt` per refund asked of Centra, each
`SETTLED` (money went out), `PENDING` (asked, the PSP has not answered: a refund in progress,
never "absent") or `FAILED`. The planner, the read-back and the reconciliation's gap rules
(in Polars, `reconcile/rules.py`, held to this function by tests) all read refunds this way.
The wire values of the three entry types are configurable (`CentraInferred`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from returnbridge.connectors.centra.inferred import DEFAULT_INFERRED, CentraInferred
from returnbridge.connectors.centra.models import Money, PaymentEntry, PaymentEntryStatus


@dataclass(frozen=True)
class RefundTypes:
    """The `PaymentHistoryEntryType` values of refunds: the refund itself, the request an
    asynchronous PSP leaves pending, and the PSP's refusal of one."""

    refund: str = DEFAULT_INFERRED.payment_entry_type_refund
    request: str = DEFAULT_INFERRED.payment_entry_type_refund_request
    failed: str = DEFAULT_INFERRED.payment_entry_type_refund_failed

    @classmethod
    def of(cls, inferred: CentraInferred) -> RefundTypes:
        return cls(
            refund=inferred.payment_entry_type_refund,
            request=inferred.payment_entry_type_refund_request,
            failed=inferred.payment_entry_type_refund_failed,
        )

    @property
    def all(self) -> frozenset[str]:
        return frozenset({self.refund, self.request, self.failed})


DEFAULT_REFUND_TYPES = RefundTypes()


class RefundState(StrEnum):
    """Where one refund asked of Centra stands."""

    SETTLED = "settled"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True)
class RefundAttempt:
    """One refund asked of Centra: `entry` is the entry that records it (the request of an
    asynchronous refund, else the refund entry), `settled_by` the entry that settled a request
    (None for a synchronous refund or a request still pending)."""

    entry: PaymentEntry
    state: RefundState
    settled_by: PaymentEntry | None = None

    @property
    def id(self) -> int:
        """The id of the entry that proves the outcome (the settlement when there is one)."""
        return (self.settled_by or self.entry).id

    @property
    def value(self) -> Money:
        return (self.settled_by or self.entry).value

    @property
    def amount(self) -> Decimal:
        return self.value.value

    @property
    def currency(self) -> str:
        return self.value.currency

    @property
    def created_at(self) -> datetime:
        """When the refund was asked for (the request's time)."""
        return self.entry.created_at

    @property
    def external_reference(self) -> str | None:
        return self.entry.external_reference

    @property
    def payment_method(self) -> str | None:
        return self.entry.payment_method


def entry_state(entry: PaymentEntry, types: RefundTypes) -> RefundState:
    """The state one entry tells by itself: a `REFUND_FAILED` entry is a failure whatever its
    status; otherwise SUCCESS settled, PENDING pending, anything else failed."""
    if entry.entry_type == types.failed:
        return RefundState.FAILED
    if entry.status == PaymentEntryStatus.SUCCESS:
        return RefundState.SETTLED
    if entry.status == PaymentEntryStatus.PENDING:
        return RefundState.PENDING
    return RefundState.FAILED


def refund_attempts(
    entries: Iterable[PaymentEntry], types: RefundTypes | None = None
) -> list[RefundAttempt]:
    """The refunds `entries` record, oldest first (entries of other types are ignored).

    A request is settled by the oldest settlement entry (`REFUND` or `REFUND_FAILED`) with its
    reference; a settlement entry no request claims is a refund of its own. `types`: the
    default wire values unless given."""
    types = types or DEFAULT_REFUND_TYPES
    mine = sorted((e for e in entries if e.entry_type in types.all), key=_order)
    settlements = [e for e in mine if e.entry_type != types.request]
    claimed: set[int] = set()
    attempts: list[RefundAttempt] = []
    for entry in mine:
        if entry.entry_type != types.request:
            continue
        match = next(
            (
                s
                for s in settlements
                if s.id not in claimed
                and entry.external_reference is not None
                and s.external_reference == entry.external_reference
            ),
            None,
        )
        if match is None:
            attempts.append(RefundAttempt(entry, entry_state(entry, types)))
        else:
            claimed.add(match.id)
            attempts.append(RefundAttempt(entry, entry_state(match, types), match))
    attempts.extend(
        RefundAttempt(s, entry_state(s, types)) for s in settlements if s.id not in claimed
    )
    return sorted(attempts, key=lambda a: _order(a.entry))


def _order(entry: PaymentEntry) -> tuple[datetime, int]:
    return entry.created_at, entry.id


def in_state(attempts: Iterable[RefundAttempt], state: RefundState) -> list[RefundAttempt]:
    """The attempts in `state`, in their order."""
    return [a for a in attempts if a.state == state]
