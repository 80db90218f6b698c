"""Read-only figures of the ledger that tell whether the integration is healthy, for the
watchdog (docs/operating-guide.md#watchdog-alerts): the webhook inbox's backlog, when Reveni's
last webhook arrived, and the actions that are in doubt or held under a lease.

Narrow queries (counts, a minimum, the few rows a check names) rather than `Ledger.actions()` or
`Ledger.inbox_pending()`, which load whole rows and stop at a limit: a backlog of 50,000 events
must be counted as 50,000, in one cheap read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlalchemy as sa

from returnbridge.ledger import schema
from returnbridge.ledger.records import LIVE_STATUSES
from returnbridge.ledger.store import Ledger

# Actions a check names at most (the figure counts them all).
_NAMED: Final = 20


@dataclass(frozen=True)
class InboxBacklog:
    """The webhook events no sync run has processed yet: how many, and the oldest's arrival."""

    pending: int
    oldest_received_at: datetime | None


@dataclass(frozen=True)
class HeldAction:
    """An action in a state the watchdog watches (`in_doubt`, `in_flight`): its key, since when
    it is in that state (`updated_at`: the claim, or the last read-back) and its last error."""

    key: str
    state: str
    updated_at: datetime
    last_error: str | None


def inbox_backlog(ledger: Ledger) -> InboxBacklog:
    """How many inbox events are unprocessed, and when the oldest of them arrived."""
    t = schema.inbox
    stmt = sa.select(sa.func.count(), sa.func.min(t.c.received_at)).where(
        t.c.processed_at.is_(None)
    )
    row = ledger._read(lambda conn: conn.execute(stmt).one())
    return InboxBacklog(pending=int(row[0]), oldest_received_at=row[1])


@dataclass(frozen=True)
class OwnerQueue:
    """One owner's live (open or retrying) exceptions: how many, and since when the oldest."""

    owner: str
    live: int
    oldest_first_seen: datetime | None


def live_exceptions_by_owner(ledger: Ledger) -> dict[str, OwnerQueue]:
    """Per owner with any: how many exceptions are open or retrying, and the oldest's first
    sighting (one grouped count, however long the queue)."""
    t = schema.exceptions
    stmt = (
        sa.select(t.c.owner, sa.func.count(), sa.func.min(t.c.first_seen))
        .where(t.c.status.in_(LIVE_STATUSES))
        .group_by(t.c.owner)
        .order_by(t.c.owner)
    )
    rows = ledger._read(lambda conn: conn.execute(stmt).all())
    return {str(r[0]): OwnerQueue(str(r[0]), int(r[1]), r[2]) for r in rows}


def last_webhook_at(ledger: Ledger, source: str) -> datetime | None:
    """When the newest webhook of `source` (`reveni`, `centra`) was received; None: never."""
    t = schema.inbox
    stmt = (
        sa.select(t.c.received_at)
        .where(t.c.source == source)
        .order_by(t.c.received_at.desc())
        .limit(1)
    )
    moment: datetime | None = ledger._read(lambda conn: conn.execute(stmt).scalar())
    return moment


def held_actions(
    ledger: Ledger,
    state: str,
    *,
    not_touched_since: datetime,
    except_error_prefix: str | None = None,
) -> tuple[int, list[HeldAction]]:
    """The actions in `state` whose row has not changed since `not_touched_since` (and whose
    last error does not start with `except_error_prefix`): how many, and the oldest `_NAMED`."""
    t = schema.actions
    where = [t.c.state == state, t.c.updated_at <= not_touched_since]
    if except_error_prefix is not None:
        where.append(
            sa.or_(
                t.c.last_error.is_(None),
                sa.not_(t.c.last_error.startswith(except_error_prefix, autoescape=True)),
            )
        )
    count_stmt = sa.select(sa.func.count()).select_from(t).where(*where)
    rows_stmt = (
        sa.select(t.c.key, t.c.state, t.c.updated_at, t.c.last_error)
        .where(*where)
        .order_by(t.c.updated_at, t.c.key)
        .limit(_NAMED)
    )

    def run(conn: sa.Connection) -> tuple[int, list[HeldAction]]:
        count = int(conn.execute(count_stmt).scalar() or 0)
        rows = conn.execute(rows_stmt).all()
        return count, [HeldAction(r.key, r.state, r.updated_at, r.last_error) for r in rows]

    return ledger._read(run)
