"""The watchdog's incidents in the ledger (table `watch_incidents`;
docs/operating-guide.md#watchdog-alerts).

An incident is one opening of a condition a watchdog check found, keyed by `(check, subject)`
(`("credentials", "reveni")`, `("inbox_backlog", "inbox")`, ...). While the condition holds, every
watchdog run sees the same open incident again (`observe`); once it clears, the incident closes
(`close`), and the next time it holds a new incident opens (the next `sequence`). So an alert is
about an incident, never about a run: however often the watchdog runs, each opening gets one
alert and each closing one recovery message.

Each row is also the outbox of those two messages, because Slack may be down when the incident
opens or closes: a message is `pending` until a sender claims it (`claim`, compare-and-set to
`sending` under a lease, so two watchdog processes never post the same message), then `sent`
(with Slack's `ts`) or `failed` (with the error), and a failed or pending one is sent by the next
run (`undelivered`). A recovery waits for its alert: a person never reads "recovered" about an
alert they did not get. A sender that dies between Slack's answer and `delivered` leaves the
message `sending`; once the lease has passed the next run sends it again (at least once in that
one case, as the mail outbox does).

Every function is one ledger transaction (`Ledger._read` / `Ledger._write`: retried whole on a
busy SQLite file or a PostgreSQL deadlock).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeAlias, get_args

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from returnbridge.ledger import schema
from returnbridge.ledger.store import Ledger, clip

MessageKind = Literal["alert", "recovery"]
MESSAGE_KINDS: Final[tuple[str, ...]] = get_args(MessageKind)
DeliveryState = Literal["pending", "sending", "sent", "failed"]
DELIVERY_STATES: Final[tuple[str, ...]] = get_args(DeliveryState)
# What a sender may claim; a `sending` message too once its lease has passed (its sender died).
_CLAIMABLE: Final = ("pending", "failed")
_LONGEST_TEXT: Final = 2000  # title, figure, first step and detail are kept this short

AnyRow: TypeAlias = Row[Any]


@dataclass(frozen=True)
class Incident:
    """One opening of a watchdog condition, with the delivery state of its two messages."""

    id: int
    check: str
    subject: str
    sequence: int
    title: str  # what, in a few words ("Reveni credentials failing")
    figure: str  # the number that shows it, as last seen ("HTTP 401 on GET returns")
    first_step: str  # what to do first, one line
    detail: str
    since: datetime  # when the condition began, as far as the check knows
    opened_at: datetime
    last_seen_at: datetime
    closed_at: datetime | None
    alert_state: str
    alert_attempts: int
    alert_error: str | None
    alert_ts: str | None
    alert_sent_at: datetime | None
    recovery_state: str | None  # None while the incident is open
    recovery_attempts: int
    recovery_error: str | None
    recovery_ts: str | None
    recovery_sent_at: datetime | None

    @property
    def key(self) -> str:
        """`check:subject`, how people and logs name it."""
        return f"{self.check}:{self.subject}"

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def as_dict(self) -> dict[str, Any]:
        """The incident as JSON-ready values (the CLI's `--json`, the flow's figures)."""
        return {
            "id": self.id,
            "check": self.check,
            "subject": self.subject,
            "open": self.is_open,
            "title": self.title,
            "figure": self.figure,
            "first_step": self.first_step,
            "detail": self.detail,
            "since": self.since.isoformat(),
            "opened_at": self.opened_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "closed_at": None if self.closed_at is None else self.closed_at.isoformat(),
            "alert": self.alert_state,
            "alert_error": self.alert_error,
            "recovery": self.recovery_state,
            "recovery_error": self.recovery_error,
        }


@dataclass(frozen=True)
class Observed:
    """What `observe` did: the incident as it is now, and whether this call opened it."""

    incident: Incident
    opened: bool


class Incidents:
    """The watchdog's incidents in `ledger` (the ledger stays open and owned by the caller)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # ------------------------------------------------------------------ conditions

    def observe(
        self,
        check: str,
        subject: str,
        *,
        title: str,
        figure: str,
        first_step: str,
        detail: str = "",
        since: datetime | None = None,
        now: datetime | None = None,
    ) -> Observed:
        """The condition `(check, subject)` holds now: its open incident is seen again (figure,
        detail and `last_seen_at` updated; title, first step and `since` stay those of the
        opening), or a new incident opens with its alert `pending`. Any number of watchdogs may
        call this at once: they end with one open incident."""
        _check_name(check, subject)
        at = self.ledger._now(now)
        began = min(at, since) if since is not None else at
        texts = {
            "title": _short(title),
            "figure": _short(figure),
            "first_step": _short(first_step),
            "detail": _short(detail),
        }
        t = schema.watch_incidents

        def run(conn: Connection) -> Observed:
            while True:  # at most twice: an insert lost to a concurrent opening, then seen
                latest = _latest(conn, check, subject)
                if latest is not None and latest.closed_at is None:
                    seen = conn.execute(
                        sa.update(t)
                        .where(t.c.id == latest.id, t.c.closed_at.is_(None))
                        .values(
                            figure=texts["figure"],
                            detail=texts["detail"],
                            last_seen_at=at,
                        )
                        .returning(*t.c)
                    ).one_or_none()
                    if seen is not None:
                        return Observed(_incident(seen), opened=False)
                    continue  # closed meanwhile by another watchdog: open the next one
                sequence = 1 if latest is None else latest.sequence + 1
                row = {
                    "check_name": check,
                    "subject": subject,
                    "sequence": sequence,
                    **texts,
                    "since": began,
                    "opened_at": at,
                    "last_seen_at": at,
                    "alert_state": "pending",
                    "alert_attempts": 0,
                    "recovery_attempts": 0,
                }
                stmt = _insert(conn).values(row)
                stmt = stmt.on_conflict_do_nothing(
                    index_elements=["check_name", "subject", "sequence"]
                )
                inserted = conn.execute(stmt.returning(*t.c)).one_or_none()
                if inserted is not None:
                    return Observed(_incident(inserted), opened=True)

        return self.ledger._write(run)

    def close(self, check: str, subject: str, *, now: datetime | None = None) -> Incident | None:
        """The condition `(check, subject)` no longer holds: its open incident closes now and
        its recovery message becomes `pending`. Compare-and-set: of several watchdogs closing
        it at once one closes it (and gets it back), the others get None, as does a call when
        nothing is open."""
        _check_name(check, subject)
        at = self.ledger._now(now)
        t = schema.watch_incidents

        def run(conn: Connection) -> Incident | None:
            latest = _latest(conn, check, subject)
            if latest is None or latest.closed_at is not None:
                return None
            closed = conn.execute(
                sa.update(t)
                .where(t.c.id == latest.id, t.c.closed_at.is_(None))
                .values(closed_at=at, recovery_state="pending")
                .returning(*t.c)
            ).one_or_none()
            return None if closed is None else _incident(closed)

        return self.ledger._write(run)

    # ------------------------------------------------------------------ reading

    def get(self, id: int) -> Incident | None:
        t = schema.watch_incidents
        stmt = sa.select(t).where(t.c.id == id)
        row = self.ledger._read(lambda conn: conn.execute(stmt).one_or_none())
        return None if row is None else _incident(row)

    def open_incidents(self) -> list[Incident]:
        """Every open incident, oldest opening first."""
        t = schema.watch_incidents
        stmt = sa.select(t).where(t.c.closed_at.is_(None)).order_by(t.c.opened_at, t.c.id)
        return [_incident(r) for r in self.ledger._read(lambda conn: conn.execute(stmt).all())]

    def incidents(self, *, check: str | None = None, subject: str | None = None) -> list[Incident]:
        """Every incident (open and closed), oldest opening first, optionally of one check or
        subject."""
        t = schema.watch_incidents
        stmt = sa.select(t).order_by(t.c.opened_at, t.c.id)
        if check is not None:
            stmt = stmt.where(t.c.check_name == check)
        if subject is not None:
            stmt = stmt.where(t.c.subject == subject)
        return [_incident(r) for r in self.ledger._read(lambda conn: conn.execute(stmt).all())]

    # ------------------------------------------------------------------ the outbox

    def undelivered(self, *, now: datetime | None = None, limit: int = 100) -> list[Message]:
        """The messages still owed to Slack, in the order to send them: each incident's alert
        before its recovery, oldest incident first. Pending and failed ones, and those left
        `sending` past their lease; a recovery only once its alert is sent."""
        at = self.ledger._now(now)
        t = schema.watch_incidents

        def owed(kind: MessageKind) -> Any:
            state = t.c[f"{kind}_state"]
            lease = t.c[f"{kind}_lease_until"]
            expired = sa.and_(state == "sending", sa.or_(lease.is_(None), lease <= at))
            return sa.or_(state.in_(_CLAIMABLE), expired)

        stmt = (
            sa.select(t)
            .where(sa.or_(owed("alert"), sa.and_(t.c.alert_state == "sent", owed("recovery"))))
            .order_by(t.c.opened_at, t.c.id)
            .limit(limit)
        )
        rows = self.ledger._read(lambda conn: conn.execute(stmt).all())
        messages: list[Message] = []
        for row in rows:
            incident = _incident(row)
            if _owed(incident.alert_state, row.alert_lease_until, at):
                messages.append(Message(incident, "alert"))
            elif incident.alert_state == "sent" and _owed(
                incident.recovery_state, row.recovery_lease_until, at
            ):
                messages.append(Message(incident, "recovery"))
        return messages

    def claim(
        self,
        id: int,
        kind: MessageKind,
        *,
        lease_seconds: float = 120,
        now: datetime | None = None,
    ) -> Incident | None:
        """Take incident `id`'s `kind` message to `sending` for `lease_seconds`, counting the
        attempt: from pending or failed, or from sending once its lease has passed. A recovery
        only once the alert is sent. None: another watchdog holds it, it is sent, or it is not
        owed (no such incident, or a recovery of an open incident)."""
        _kind(kind)
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        at = self.ledger._now(now)
        t = schema.watch_incidents
        state = t.c[f"{kind}_state"]
        lease = t.c[f"{kind}_lease_until"]
        expired = sa.and_(state == "sending", sa.or_(lease.is_(None), lease <= at))
        where = [t.c.id == id, sa.or_(state.in_(_CLAIMABLE), expired)]
        if kind == "recovery":
            where.append(t.c.alert_state == "sent")
        stmt = (
            sa.update(t)
            .where(*where)
            .values(
                {
                    f"{kind}_state": "sending",
                    f"{kind}_attempts": t.c[f"{kind}_attempts"] + 1,
                    f"{kind}_lease_until": at + timedelta(seconds=lease_seconds),
                }
            )
            .returning(*t.c)
        )
        row = self.ledger._write(lambda conn: conn.execute(stmt).one_or_none())
        return None if row is None else _incident(row)

    def delivered(
        self, id: int, kind: MessageKind, ts: str, *, now: datetime | None = None
    ) -> Incident:
        """Slack took incident `id`'s `kind` message (its `ts`): `sent`. A message already sent
        stays as it was. KeyError for an unknown id."""
        _kind(kind)
        at = self.ledger._now(now)
        t = schema.watch_incidents
        state = t.c[f"{kind}_state"]
        stmt = (
            sa.update(t)
            .where(t.c.id == id, sa.or_(state.is_(None), state != "sent"))
            .values(
                {
                    f"{kind}_state": "sent",
                    f"{kind}_ts": ts,
                    f"{kind}_sent_at": at,
                    f"{kind}_error": None,
                    f"{kind}_lease_until": None,
                }
            )
            .returning(*t.c)
        )
        return self.ledger._write(lambda conn: _after(conn, stmt, id))

    def failed(self, id: int, kind: MessageKind, error: str) -> Incident:
        """Slack did not take incident `id`'s `kind` message: `failed`, with `error`, for the
        next run to send. A sent message stays sent. KeyError for an unknown id."""
        _kind(kind)
        t = schema.watch_incidents
        state = t.c[f"{kind}_state"]
        stmt = (
            sa.update(t)
            .where(t.c.id == id, state.is_not(None), state != "sent")
            .values(
                {
                    f"{kind}_state": "failed",
                    f"{kind}_error": clip(error, _LONGEST_TEXT),
                    f"{kind}_lease_until": None,
                }
            )
            .returning(*t.c)
        )
        return self.ledger._write(lambda conn: _after(conn, stmt, id))


@dataclass(frozen=True)
class Message:
    """One message owed to Slack: an incident's alert or its recovery."""

    incident: Incident
    kind: MessageKind


# ---------------------------------------------------------------------- helpers


def _check_name(check: str, subject: str) -> None:
    if not check or not check.strip():
        raise ValueError("an incident needs a check name")
    if not subject or not subject.strip():
        raise ValueError(f"incident {check!r} needs a subject")


def _kind(kind: str) -> None:
    if kind not in MESSAGE_KINDS:
        raise ValueError(f"message kind must be one of {list(MESSAGE_KINDS)}, not {kind!r}")


def _short(text: str) -> str:
    return clip(text, _LONGEST_TEXT) or ""


def _owed(state: str | None, lease_until: datetime | None, at: datetime) -> bool:
    if state in _CLAIMABLE:
        return True
    return state == "sending" and (lease_until is None or lease_until <= at)


def _insert(conn: Connection) -> Any:
    """The dialect's INSERT that knows ON CONFLICT (SQLite and PostgreSQL spell it alike)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(schema.watch_incidents)


def _latest(conn: Connection, check: str, subject: str) -> AnyRow | None:
    """The highest opening of `(check, subject)`: the only one that may be open."""
    t = schema.watch_incidents
    return conn.execute(
        sa.select(t)
        .where(t.c.check_name == check, t.c.subject == subject)
        .order_by(t.c.sequence.desc())
        .limit(1)
    ).one_or_none()


def _after(conn: Connection, stmt: Any, id: int) -> Incident:
    """The row `stmt` updated, or as it is when the update did not apply; KeyError if none."""
    row = conn.execute(stmt).one_or_none()
    if row is None:
        t = schema.watch_incidents
        row = conn.execute(sa.select(t).where(t.c.id == id)).one_or_none()
    if row is None:
        raise KeyError(f"no watchdog incident with id {id} in the ledger")
    return _incident(row)


def _incident(row: AnyRow) -> Incident:
    return Incident(
        id=row.id,
        check=row.check_name,
        subject=row.subject,
        sequence=row.sequence,
        title=row.title,
        figure=row.figure,
        first_step=row.first_step,
        detail=row.detail,
        since=row.since,
        opened_at=row.opened_at,
        last_seen_at=row.last_seen_at,
        closed_at=row.closed_at,
        alert_state=row.alert_state,
        alert_attempts=row.alert_attempts,
        alert_error=row.alert_error,
        alert_ts=row.alert_ts,
        alert_sent_at=row.alert_sent_at,
        recovery_state=row.recovery_state,
        recovery_attempts=row.recovery_attempts,
        recovery_error=row.recovery_error,
        recovery_ts=row.recovery_ts,
        recovery_sent_at=row.recovery_sent_at,
    )
