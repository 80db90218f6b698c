"""The ledger: what returnbridge owes Centra, did, tried and could not do
(docs/architecture.md#the-ledger).

One `Ledger` per process (or per thread pool: it is thread-safe through its engine's pool); many
processes may share one SQLite file (WAL) or one PostgreSQL database. Every public operation is
one transaction. State moves are compare-and-set (`UPDATE ... WHERE key = ? AND state = ?`), so
two workers can never both win an action, and a loser learns it lost instead of overwriting.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, TypeAlias, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import DBAPIError

from returnbridge.clock import Now, utc_now
from returnbridge.core.actions import (
    ACTION_STATES,
    Action,
    ActionStateError,
    check_transition,
)
from returnbridge.core.codes import ReturnException
from returnbridge.ledger import schema
from returnbridge.ledger.engine import (
    WRITE_OPTION,
    LedgerMissing,
    check_exists,
    create_engine,
    resolve_url,
)
from returnbridge.ledger.records import (
    SYSTEM_ACTOR,
    ActionRecord,
    AttemptRecord,
    ExceptionChanges,
    ExceptionEvent,
    ExceptionRecord,
    InboxEvent,
    MailRecord,
    UnfinishedReturn,
)
from returnbridge.ledger.schema import aware_utc, exception_identity

T = TypeVar("T")
R = TypeVar("R", AttemptRecord, ExceptionEvent, InboxEvent, UnfinishedReturn)
AnyRow: TypeAlias = Row[*tuple[Any, ...]]

# Longest response / error / request summary text kept per attempt (and per last_error).
TEXT_LIMIT: Final = 4000
HEALED_NOTE: Final = "healed: no longer found"
# Why a done action is in doubt again: reconciliation found its effect missing in Centra.
REOPENED_NOTE: Final = "reopened by reconciliation: the effect is missing in Centra; reading back"
CLAIMABLE: Final = ("pending", "in_doubt")
_RETRYABLE: Final = ("failed", "blocked")
_LIVE_EXCEPTION: Final = ("open", "retrying")
_NOTE_LIMIT: Final = 2000  # a person's note is kept this long


class ExceptionClosed(ValueError):
    """A person asked to act on an exception that is already closed (resolved or ignored)."""

    def __init__(self, record: ExceptionRecord) -> None:
        self.record = record
        when = "" if record.resolved_at is None else f" on {record.resolved_at:%Y-%m-%d}"
        super().__init__(
            f"exception #{record.id} is already {record.status}{when}; nothing to do "
            "(it reopens by itself if returnbridge finds the problem again)"
        )


# What `adopt` may mark done: not in_flight (the executor holding it settles it) nor done.
_ADOPTABLE: Final = ("pending", "failed", "blocked", "in_doubt")
_KIND_OF_KEY: Final = {
    "return": "create_return",
    "restock": "restock",
    "refund": "refund",
    "exchange": "exchange_order",
}
# Outbox messages a sender may claim; a `sending` one too once its lease has passed.
_MAIL_CLAIMABLE: Final = ("pending", "failed")
_CHUNK: Final = 500  # keys per IN (...) list
_WRITE_TRIES: Final = 5  # a deadlock or a busy SQLite file is retried, the whole transaction


def clip(text: str | None, limit: int = TEXT_LIMIT) -> str | None:
    """`text` cut to at most `limit` characters, saying how much was cut."""
    if text is None or len(text) <= limit:
        return text
    marker = f"... [{len(text) - limit} more characters cut]"
    head = max(limit - len(marker), 0)
    marker = f"... [{len(text) - head} more characters cut]"
    return text[:head] + marker


class Ledger:
    """The ledger on SQLite (default `sqlite:///data/returnbridge.db`) or PostgreSQL by URL.

    Opening creates or migrates the schema. `clock` (aware datetimes) stands in for the wall
    clock wherever an operation's `now` is not given. `create=False` (readers such as
    `exceptions list` and `status`) opens only a ledger that exists: `LedgerMissing` when the
    SQLite file is not there (nothing is created, not even its directory) or the database has
    no ledger tables; an existing ledger of an older schema is migrated as always.
    """

    def __init__(
        self, url: str | None = None, *, clock: Now | None = None, create: bool = True
    ) -> None:
        self._url = resolve_url(url)
        self._clock = clock or utc_now
        if not create:
            check_exists(self._url)
        self._engine: Engine = create_engine(self._url)
        _ENGINES.add(self._engine)
        try:
            if not create and not self._read(
                lambda conn: sa.inspect(conn).has_table(schema.schema_version.name)
            ):
                raise LedgerMissing(self._url)
            self._write(lambda conn: schema.migrate(conn, self._now(None)))
        except BaseException:
            self._engine.dispose()
            raise

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return self._url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._engine.dialect.name

    def __repr__(self) -> str:
        return f"Ledger({self.url!r})"

    __str__ = __repr__

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ actions

    def plan(self, actions: Sequence[Action]) -> list[str]:
        """Insert each action whose key is new as `pending`; existing keys stay untouched
        (planning never resets a state or a payload). Returns the keys inserted."""
        now = self._now(None)
        rows: list[dict[str, Any]] = [
            {
                "key": a.key,
                "kind": a.kind,
                "reveni_return_id": a.reveni_return_id,
                "order_number": a.order_number,
                "state": "pending",
                "attempts": 0,
                "payload": _dump(a.payload_json()),
                "depends_on": _dump(list(a.depends_on)),
                "created_at": now,
                "updated_at": now,
            }
            for a in actions
        ]

        def run(conn: Connection) -> list[str]:
            inserted: list[str] = []
            for row in rows:
                stmt = _insert(conn, schema.actions).values(row)
                stmt = stmt.on_conflict_do_nothing(index_elements=["key"])
                if conn.execute(stmt.returning(schema.actions.c.key)).first() is not None:
                    inserted.append(row["key"])
            return inserted

        return self._write(run)

    def action(self, key: str) -> ActionRecord | None:
        stmt = sa.select(schema.actions).where(schema.actions.c.key == key)
        row = self._read(lambda conn: conn.execute(stmt).one_or_none())
        return None if row is None else _action_record(row)

    def actions(
        self,
        *,
        keys: Iterable[str] | None = None,
        reveni_return_ids: Iterable[str] | None = None,
        states: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[ActionRecord]:
        """Actions matching every filter given, by created_at then key."""
        t = schema.actions
        stmt = sa.select(t).order_by(t.c.created_at, t.c.key)
        for column, values in (
            (t.c.key, keys),
            (t.c.reveni_return_id, reveni_return_ids),
            (t.c.state, states),
            (t.c.kind, kinds),
        ):
            if values is not None:
                stmt = stmt.where(column.in_(list(values)))
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [_action_record(r) for r in rows]

    def due(
        self, *, now: datetime | None = None, limit: int = 100, priority: Sequence[str] = ()
    ) -> list[ActionRecord]:
        """Actions to run now: `pending` or `in_doubt`, not_before null or passed, every
        depends_on key `done`. Ordered by kind's position in `priority` (kinds not listed after
        the listed ones), then created_at, then return, then key: the actions of one return
        come together, so kinds that draw on different budgets (GraphQL mutations, Order API
        requests) are interleaved instead of one kind's backlog idling the other budget."""
        at = self._now(now)
        t = schema.actions
        rank: dict[str, int] = {}
        for kind in priority:
            rank.setdefault(kind, len(rank))
        order: list[Any] = []
        if rank:
            order.append(sa.case(rank, value=t.c.kind, else_=len(rank)))
        order += [t.c.created_at, t.c.reveni_return_id, t.c.key]
        stmt = (
            sa.select(t)
            .where(t.c.state.in_(CLAIMABLE))
            .where(sa.or_(t.c.not_before.is_(None), t.c.not_before <= at))
            .order_by(*order)
        )

        def run(conn: Connection) -> list[ActionRecord]:
            ready: list[ActionRecord] = []
            if limit <= 0:
                return ready
            known: dict[str, str] = {}
            for page in conn.execute(stmt).partitions(_CHUNK):
                records = [_action_record(r) for r in page]
                wanted = {d for r in records for d in r.depends_on if d not in known}
                known.update(_states_of(conn, wanted))
                for record in records:
                    if all(known.get(d) == "done" for d in record.depends_on):
                        ready.append(record)
                        if len(ready) >= limit:
                            return ready
            return ready

        return self._read(run)

    def claim(self, key: str, *, expected: str, lease_seconds: float = 120) -> ActionRecord | None:
        """Take `key` from `expected` (pending or in_doubt) to `in_flight` for a lease of
        `lease_seconds` (held in not_before), counting the attempt. None: another worker won
        (or the action is no longer in `expected`)."""
        if expected not in CLAIMABLE:
            raise ActionStateError(
                f"action {key}: only a pending or in_doubt action can be claimed, not {expected!r}"
            )
        now = self._now(None)
        t = schema.actions
        stmt = (
            sa.update(t)
            .where(t.c.key == key, t.c.state == expected)
            .values(
                state="in_flight",
                attempts=t.c.attempts + 1,
                not_before=now + timedelta(seconds=lease_seconds),
                updated_at=now,
            )
            .returning(*t.c)
        )
        row = self._write(lambda conn: conn.execute(stmt).one_or_none())
        return None if row is None else _action_record(row)

    def renew_lease(
        self, key: str, *, attempts: int, lease_seconds: float, now: datetime | None = None
    ) -> bool:
        """Extend the lease of a claim still held: `key` in_flight with the `attempts` count the
        claim gave it. False when the claim was lost (the lease expired and another worker took
        the action over), which the holder must treat as "stop, do not send"."""
        moment = self._now(now)
        t = schema.actions
        stmt = (
            sa.update(t)
            .where(t.c.key == key, t.c.state == "in_flight", t.c.attempts == attempts)
            .values(not_before=moment + timedelta(seconds=lease_seconds))
        )
        return bool(self._write(lambda conn: conn.execute(stmt).rowcount) == 1)

    def transition(
        self,
        key: str,
        new_state: str,
        *,
        expected: str,
        centra_ref: str | None = None,
        error: str | None = None,
        not_before: datetime | None = None,
    ) -> ActionRecord:
        """Move `key` from `expected` to `new_state` (compare-and-set). ActionStateError when
        the state machine forbids the move or the action is not in `expected` (another worker
        moved it); KeyError for an unknown key. not_before is set to the value given (None
        clears a lease or backoff); centra_ref and error are stored when given."""
        check_transition(expected, new_state)
        now = self._now(None)
        values: dict[str, Any] = {
            "state": new_state,
            "updated_at": now,
            "not_before": None if not_before is None else aware_utc(not_before, "not_before"),
        }
        if centra_ref is not None:
            values["centra_ref"] = centra_ref
        if error is not None:
            values["last_error"] = clip(error)
        t = schema.actions
        stmt = (
            sa.update(t).where(t.c.key == key, t.c.state == expected).values(values).returning(*t.c)
        )

        def run(conn: Connection) -> AnyRow:
            row = conn.execute(stmt).one_or_none()
            if row is not None:
                return row
            current = conn.execute(sa.select(t.c.state).where(t.c.key == key)).scalar()
            if current is None:
                raise KeyError(f"no action with key {key!r} in the ledger")
            raise ActionStateError(
                f"action {key}: cannot move {expected!r} -> {new_state!r}, it is {current!r}"
                " now (another worker moved it)"
            )

        return _action_record(self._write(run))

    def expire_leases(self, now: datetime | None = None) -> list[str]:
        """`in_flight` actions whose lease has passed (a crashed or stuck worker) become
        `in_doubt`: their outcome must be read back from Centra before any resend."""
        at = self._now(now)
        t = schema.actions
        stmt = (
            sa.update(t)
            .where(t.c.state == "in_flight", t.c.not_before.is_not(None), t.c.not_before <= at)
            .values(state="in_doubt", updated_at=at)
            .returning(t.c.key)
        )
        return sorted(self._write(lambda conn: list(conn.execute(stmt).scalars())))

    def hasten(
        self,
        order_numbers: Iterable[int],
        *,
        kind: str,
        error_prefix: str,
        now: datetime | None = None,
    ) -> list[str]:
        """`in_doubt` actions of `kind` on `order_numbers` whose last error starts with
        `error_prefix`, due at once (their state is unchanged): what they wait for may have
        happened, e.g. a refund waiting for its payment provider, after Centra's webhook about
        its order."""
        numbers = sorted(set(order_numbers))
        if not numbers:
            return []
        at = self._now(now)
        t = schema.actions
        stmt = (
            sa.update(t)
            .where(
                t.c.state == "in_doubt",
                t.c.kind == kind,
                t.c.order_number.in_(numbers),
                t.c.last_error.startswith(error_prefix, autoescape=True),
                t.c.not_before > at,
            )
            .values(not_before=at)
            .returning(t.c.key)
        )
        return sorted(self._write(lambda conn: list(conn.execute(stmt).scalars())))

    def retry(self, keys: Iterable[str]) -> list[str]:
        """`failed` / `blocked` actions among `keys` back to `pending`, due at once."""
        now = self._now(None)
        wanted = list(dict.fromkeys(keys))
        return self._write(lambda conn: _requeue(conn, wanted, now))

    def reopen(self, keys: Iterable[str]) -> list[str]:
        """`done` actions among `keys` back to `in_doubt`, due at once: reconciliation found
        their effect missing in Centra. The executor reads Centra back before anything is sent
        (docs/architecture.md#reading-centra-back), so an effect that is there after all is adopted,
        never doubled."""
        wanted = list(dict.fromkeys(keys))
        t = schema.actions

        def run(conn: Connection) -> list[str]:
            moved: list[str] = []
            for chunk in _chunks(wanted):
                stmt = (
                    sa.update(t)
                    .where(t.c.key.in_(chunk), t.c.state == "done")
                    # updated_at stays when it went done: the settle time after that write
                    # has long passed, so a read-back that finds nothing is believed
                    .values(state="in_doubt", not_before=None, last_error=REOPENED_NOTE)
                    .returning(t.c.key)
                )
                moved += conn.execute(stmt).scalars()
            return sorted(moved)

        return self._write(run)

    def adopt(
        self,
        key: str,
        *,
        reveni_return_id: str,
        order_number: int | None,
        centra_ref: str,
        now: datetime | None = None,
    ) -> bool:
        """Centra already shows the effect of `key` (e.g. a crash after Centra answered, before
        the ledger recorded it): record it `done` with Centra's reference so it is never sent.

        A key the ledger lacks is inserted as done (kind read from the key, no payload: it was
        never planned here); a pending, failed, blocked or in_doubt one becomes done (in_doubt:
        this is the read-back's answer). An in_flight one is left to its executor, whose own
        read-back finds the same. True when the ledger changed."""
        kind = _KIND_OF_KEY.get(key.partition(":")[0])
        if kind is None:
            raise ValueError(f"cannot adopt {key!r}: not an action key ({sorted(_KIND_OF_KEY)})")
        at = self._now(now)
        t = schema.actions
        row = {
            "key": key,
            "kind": kind,
            "reveni_return_id": reveni_return_id,
            "order_number": order_number,
            "state": "done",
            "attempts": 0,
            "payload": "{}",
            "depends_on": "[]",
            "centra_ref": centra_ref,
            "created_at": at,
            "updated_at": at,
        }

        def run(conn: Connection) -> bool:
            if order_number is None:
                if conn.execute(sa.select(t.c.key).where(t.c.key == key)).first() is None:
                    raise ValueError(f"cannot adopt {key!r}: new to the ledger, no order number")
            else:
                stmt = _insert(conn, t).values(row)
                stmt = stmt.on_conflict_do_nothing(index_elements=["key"])
                if conn.execute(stmt.returning(t.c.key)).first() is not None:
                    return True
            moved = conn.execute(
                sa.update(t)
                .where(t.c.key == key, t.c.state.in_(_ADOPTABLE))
                .values(state="done", centra_ref=centra_ref, not_before=None, updated_at=at)
                .returning(t.c.key)
            ).first()
            return moved is not None

        return self._write(run)

    def counts(self) -> dict[str, int]:
        """Number of actions per state (every state present, zero included)."""
        t = schema.actions
        stmt = sa.select(t.c.state, sa.func.count()).group_by(t.c.state)
        rows = self._read(lambda conn: conn.execute(stmt).all())
        counts = dict.fromkeys(ACTION_STATES, 0)
        counts.update({state: int(n) for state, n in rows})
        return counts

    # ------------------------------------------------------------------ attempts

    def record_attempt(
        self,
        key: str,
        *,
        started_at: datetime,
        finished_at: datetime | None,
        request_summary: str,
        response: str | None = None,
        error: str | None = None,
        outcome: str,
    ) -> int:
        """Record one try of `key` (texts clipped to TEXT_LIMIT); returns the attempt id."""
        stmt = (
            sa.insert(schema.attempts)
            .values(
                action_key=key,
                started_at=aware_utc(started_at, "started_at"),
                finished_at=None if finished_at is None else aware_utc(finished_at, "finished_at"),
                request_summary=clip(request_summary),
                response=clip(response),
                error=clip(error),
                outcome=outcome,
            )
            .returning(schema.attempts.c.id)
        )
        return int(self._write(lambda conn: conn.execute(stmt).scalar_one()))

    def attempts(self, key: str) -> list[AttemptRecord]:
        t = schema.attempts
        stmt = sa.select(t).where(t.c.action_key == key).order_by(t.c.id)
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [_columns_record(AttemptRecord, r) for r in rows]

    # ------------------------------------------------------------------ exceptions

    def raise_exception(
        self, exc: ReturnException, *, action_key: str | None = None, now: datetime | None = None
    ) -> ExceptionRecord:
        """Record `exc` by its identity (code, return, order, SKU): new → open; open/retrying
        seen again → last_seen, attempts + 1, detail and money updated; resolved → reopened;
        ignored stays ignored (last_seen updated) unless it is now about more money in the same
        currency than when it was ignored: then it reopens."""
        at = self._now(now)
        return self._write(lambda conn: _raise(conn, exc, action_key, at)[0])

    def observe_exceptions(
        self,
        found: Sequence[ReturnException],
        *,
        scope_return_ids: Iterable[str] | None,
        scope_codes: Iterable[str],
        action_keys: Mapping[tuple[Any, ...], str] | None = None,
        now: datetime | None = None,
    ) -> ExceptionChanges:
        """Raise every exception `found` by a check, and resolve ("healed") every open or
        retrying one of the checked returns and codes that the check no longer finds.

        `scope_return_ids` None: the check saw everything (reconciliation's full snapshot), so
        every live exception of `scope_codes` it no longer finds is healed, order-level ones
        (no return id) included. `action_keys` maps an exception's `key` to the action behind
        it. An exception raised again after it was resolved counts as new."""
        at = self._now(now)
        return_ids = None if scope_return_ids is None else list(dict.fromkeys(scope_return_ids))
        codes = list(dict.fromkeys(scope_codes))
        keyed = action_keys or {}

        def run(conn: Connection) -> ExceptionChanges:
            new: list[ExceptionRecord] = []
            seen: list[ExceptionRecord] = []
            for exc in found:
                record, fresh = _raise(conn, exc, keyed.get(exc.key), at)
                (new if fresh else seen).append(record)
            still = {exception_identity(exc.key) for exc in found}
            healed = _heal(conn, return_ids, codes, still, at) if return_ids != [] and codes else []
            return ExceptionChanges(new=new, seen=seen, healed=healed)

        return self._write(run)

    def retried(self, ids: Iterable[int], *, now: datetime | None = None) -> list[int]:
        """`retrying` exceptions among `ids` back to `open`: the re-check a person asked for
        found them again. The ids moved."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        at = self._now(now)
        t = schema.exceptions
        stmt = (
            sa.update(t)
            .where(t.c.id.in_(wanted), t.c.status == "retrying")
            .values(status="open", last_seen=at)
            .returning(t.c.id)
        )

        def run(conn: Connection) -> list[int]:
            moved = sorted(conn.execute(stmt).scalars())
            for moved_id in moved:
                _event(conn, moved_id, at, SYSTEM_ACTOR, "still_failing", "retrying", "open", None)
            return moved

        return self._write(run)

    def exceptions(
        self,
        *,
        owner: str | None = None,
        statuses: Iterable[str] | None = None,
        code: str | None = None,
        reveni_return_id: str | None = None,
        order_number: int | None = None,
        sku: str | None = None,
        assignee: str | None = None,
    ) -> list[ExceptionRecord]:
        """Exceptions matching every filter given, oldest first."""
        t = schema.exceptions
        stmt = sa.select(t).order_by(t.c.first_seen, t.c.id)
        if owner is not None:
            stmt = stmt.where(t.c.owner == str(owner))
        if statuses is not None:
            stmt = stmt.where(t.c.status.in_(list(statuses)))
        if code is not None:
            stmt = stmt.where(t.c.code == code)
        if reveni_return_id is not None:
            stmt = stmt.where(t.c.reveni_return_id == reveni_return_id)
        if order_number is not None:
            stmt = stmt.where(t.c.order_number == order_number)
        if sku is not None:
            stmt = stmt.where(t.c.sku == sku)
        if assignee is not None:
            stmt = stmt.where(t.c.assignee == assignee)
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [_exception_record(r) for r in rows]

    def exception(self, id: int) -> ExceptionRecord | None:
        row = self._read(lambda conn: _exception_row(conn, id))
        return None if row is None else _exception_record(row)

    def resolve_exception(
        self,
        id: int,
        *,
        note: str,
        status: str = "resolved",
        actor: str = SYSTEM_ACTOR,
        now: datetime | None = None,
    ) -> ExceptionRecord:
        """Close live exception `id` as `resolved` (fixed) or `ignored` (accepted as is), with
        a note saying why; the history keeps who and when. KeyError for an unknown id,
        `ExceptionClosed` when it is already resolved or ignored (an earlier note is never
        overwritten, an ignored one never turned into resolved). returnbridge closing one
        (`actor` SYSTEM_ACTOR, the action behind it done) records it as healed."""
        if status not in ("resolved", "ignored"):
            raise ValueError(f"an exception is closed as 'resolved' or 'ignored', not {status!r}")
        at = self._now(now)
        t = schema.exceptions
        text = clip(note.strip(), _NOTE_LIMIT) or None

        def run(conn: Connection) -> AnyRow:
            current = _live_or_raise(conn, id)
            row = conn.execute(
                sa.update(t)
                .where(t.c.id == id)
                .values(status=status, resolved_at=at, resolution_note=text)
                .returning(*t.c)
            ).one()
            kind = "healed" if actor == SYSTEM_ACTOR and status == "resolved" else status
            _event(conn, id, at, actor, kind, current.status, status, text)
            return row

        return _exception_record(self._write(run))

    def retry_exception(
        self, id: int, *, actor: str = SYSTEM_ACTOR, note: str = "", now: datetime | None = None
    ) -> list[str]:
        """Mark live exception `id` `retrying` and re-queue its action when failed or blocked.
        Returns the action keys re-queued. KeyError for an unknown id, `ExceptionClosed` for a
        resolved or ignored one. Whether a retry may move money is the caller's to confirm
        (ledger/queue.py `retry_warning`)."""
        at = self._now(now)
        t = schema.exceptions

        def run(conn: Connection) -> list[str]:
            current = _live_or_raise(conn, id)
            conn.execute(
                sa.update(t)
                .where(t.c.id == id)
                .values(status="retrying", resolved_at=None, resolution_note=None)
            )
            text = clip(note.strip(), _NOTE_LIMIT) or None
            _event(conn, id, at, actor, "retried", current.status, "retrying", text)
            return [] if current.action_key is None else _requeue(conn, [current.action_key], at)

        return self._write(run)

    def note_exception(
        self, id: int, *, actor: str, note: str, now: datetime | None = None
    ) -> ExceptionRecord:
        """Add `note` to exception `id`'s history without changing its status (open or
        closed: a note on a closed one explains it after the fact). KeyError for an unknown
        id; ValueError for an empty note."""
        text = clip(note.strip(), _NOTE_LIMIT)
        if not text:
            raise ValueError("a note needs some text")
        at = self._now(now)

        def run(conn: Connection) -> AnyRow:
            current = _exception_row(conn, id, lock=True)
            if current is None:
                raise KeyError(f"no exception with id {id} in the ledger")
            _event(conn, id, at, actor, "noted", current.status, current.status, text)
            return current

        return _exception_record(self._write(run))

    def assign_exception(
        self, id: int, *, actor: str, assignee: str | None, now: datetime | None = None
    ) -> ExceptionRecord:
        """Give exception `id` to `assignee` (None: to nobody); the history says who did.
        KeyError for an unknown id, `ExceptionClosed` for a resolved or ignored one."""
        who = None if assignee is None else clip(assignee.strip(), 200) or None
        at = self._now(now)
        t = schema.exceptions

        def run(conn: Connection) -> AnyRow:
            current = _live_or_raise(conn, id)
            row = conn.execute(
                sa.update(t).where(t.c.id == id).values(assignee=who).returning(*t.c)
            ).one()
            kind = "unassigned" if who is None else "assigned"
            note = f"was {current.assignee}" if who is None and current.assignee else who
            _event(conn, id, at, actor, kind, current.status, current.status, note)
            return row

        return _exception_record(self._write(run))

    def exception_history(self, id: int) -> list[ExceptionEvent]:
        """Everything that happened to exception `id`, oldest first (empty for an unknown
        id)."""
        e = schema.exception_events
        stmt = sa.select(e).where(e.c.exception_id == id).order_by(e.c.id)
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [_columns_record(ExceptionEvent, r) for r in rows]

    # ------------------------------------------------------------------ cursors

    def cursor(self, name: str) -> str | None:
        t = schema.cursors
        stmt = sa.select(t.c.value).where(t.c.name == name)
        return self._read(lambda conn: conn.execute(stmt).scalar())

    def set_cursor(self, name: str, value: str, *, now: datetime | None = None) -> None:
        at = self._now(now)
        self._write(lambda conn: _set_cursor(conn, name, value, at))

    # ------------------------------------------------------------------ unfinished returns

    def unfinished_returns(self) -> list[UnfinishedReturn]:
        """The Reveni returns sync runs left unfinished (docs/architecture.md#the-ledger), by id."""
        t = schema.unfinished_returns
        stmt = sa.select(t).order_by(t.c.reveni_return_id)
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [_columns_record(UnfinishedReturn, r) for r in rows]

    def record_unfinished(
        self,
        *,
        planned: Iterable[str],
        unfinished: Iterable[str],
        now: datetime | None = None,
    ) -> None:
        """What a sync run leaves for the next one (docs/architecture.md#the-ledger), in one
        transaction: of the returns it `planned`, those `unfinished` are kept (new ones from `now`,
        known ones with `updated_at` moved to `now`) and the others forgotten. Returns the run did
        not plan stay as they are, so runs working on different returns at once never undo each
        other's rows."""
        at = self._now(now)
        keep = sorted(set(unfinished))
        forget = sorted(set(planned) - set(keep))
        t = schema.unfinished_returns

        def run(conn: Connection) -> None:
            for chunk in _chunks(forget):
                conn.execute(sa.delete(t).where(t.c.reveni_return_id.in_(chunk)))
            for chunk in _chunks(keep):
                stmt = _insert(conn, t).values(
                    [{"reveni_return_id": rid, "since": at, "updated_at": at} for rid in chunk]
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["reveni_return_id"],
                        set_={"updated_at": stmt.excluded.updated_at},
                    )
                )

        self._write(run)

    # ------------------------------------------------------------------ inbox

    def inbox_add(
        self,
        source: str,
        event_id: str,
        body: str,
        *,
        resource_id: str | None = None,
        event_type: str | None = None,
        received_at: datetime | None = None,
    ) -> bool:
        """Keep a received webhook. False (never an error) when (source, event_id) is already
        there, however many receivers insert it at once."""
        at = self._now(received_at)
        row = {
            "source": source,
            "event_id": event_id,
            "resource_id": resource_id,
            "event_type": event_type,
            "body": body,
            "received_at": at,
        }

        def run(conn: Connection) -> bool:
            stmt = _insert(conn, schema.inbox).values(row)
            stmt = stmt.on_conflict_do_nothing(index_elements=["source", "event_id"])
            return conn.execute(stmt.returning(schema.inbox.c.id)).first() is not None

        return self._write(run)

    def inbox_pending(self, limit: int = 1000, source: str | None = None) -> list[InboxEvent]:
        """Events not yet processed, oldest first."""
        t = schema.inbox
        stmt = (
            sa.select(t)
            .where(t.c.processed_at.is_(None))
            .order_by(t.c.received_at, t.c.id)
            .limit(limit)
        )
        if source is not None:
            stmt = stmt.where(t.c.source == source)
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [_columns_record(InboxEvent, r) for r in rows]

    def inbox_resources(
        self, source: str, *, since: datetime, event_prefix: str | None = None
    ) -> list[str]:
        """The distinct resource ids of `source`'s events received at or after `since`
        (processed or not), optionally only events whose type starts with `event_prefix`."""
        t = schema.inbox
        stmt = (
            sa.select(t.c.resource_id)
            .where(t.c.source == source, t.c.received_at >= since, t.c.resource_id.is_not(None))
            .distinct()
        )
        if event_prefix is not None:
            stmt = stmt.where(t.c.event_type.startswith(event_prefix, autoescape=True))
        return sorted(self._read(lambda conn: list(conn.execute(stmt).scalars())))

    def inbox_processed(self, ids: Iterable[int], *, now: datetime | None = None) -> None:
        at = self._now(now)
        wanted = list(dict.fromkeys(ids))
        self._write(lambda conn: self._mark_inbox_processed(conn, wanted, at))

    def commit_sync(
        self,
        *,
        cursor_name: str,
        cursor_value: str | None,
        inbox_ids: Sequence[int],
        now: datetime | None = None,
    ) -> None:
        """In one transaction: advance the cursor (unless `cursor_value` is None) and mark the
        inbox events processed. The sync advances its cursor only through this, so a crash can
        never leave a cursor ahead of the events it covers."""
        at = self._now(now)
        wanted = list(dict.fromkeys(inbox_ids))

        def run(conn: Connection) -> None:
            if cursor_value is not None:
                _set_cursor(conn, cursor_name, cursor_value, at)
            self._mark_inbox_processed(conn, wanted, at)

        self._write(run)

    def settle_inbox(self, ids: Iterable[int], *, outcome: str, now: datetime | None = None) -> int:
        """Mark inbox events `ids` processed at once with `outcome` (e.g. "unknown_resource":
        the return they name does not exist), in their own transaction: junk is settled as it
        is found, never held until the run commits. The number of events settled."""
        at = self._now(now)
        wanted = list(dict.fromkeys(ids))
        return self._write(lambda conn: self._mark_inbox_processed(conn, wanted, at, outcome))

    def inbox_settled(self, *, outcome: str, since: datetime) -> int:
        """How many inbox events were settled with `outcome` since `since` (counted in SQL)."""
        t = schema.inbox
        stmt = sa.select(sa.func.count()).where(
            t.c.outcome == outcome, t.c.processed_at >= aware_utc(since, "since")
        )
        return int(self._read(lambda conn: conn.execute(stmt).scalar_one()))

    @staticmethod
    def _mark_inbox_processed(
        conn: Connection, ids: list[int], at: datetime, outcome: str | None = None
    ) -> int:
        t = schema.inbox
        settled = 0
        for chunk in _chunks(ids):
            result = conn.execute(
                sa.update(t)
                .where(t.c.id.in_(chunk), t.c.processed_at.is_(None))
                .values(processed_at=at, outcome=outcome)
            )
            settled += result.rowcount
        return settled

    # ------------------------------------------------------------------ mail outbox

    def mail_latest(self, key: str) -> MailRecord | None:
        """The outbox message of `key` with the highest sequence (the last one queued)."""
        t = schema.mail_outbox
        stmt = sa.select(t).where(t.c.key == key).order_by(t.c.sequence.desc()).limit(1)
        row = self._read(lambda conn: conn.execute(stmt).one_or_none())
        return None if row is None else _mail_record(row)

    def mail_get(self, id: int) -> MailRecord | None:
        """The outbox message `id`, as it is now."""
        t = schema.mail_outbox
        row = self._read(lambda conn: conn.execute(sa.select(t).where(t.c.id == id)).one_or_none())
        return None if row is None else _mail_record(row)

    def mail_put(
        self,
        key: str,
        *,
        sequence: int,
        message_id: str,
        subject: str,
        sender: str,
        recipients: Sequence[str],
        body: str,
    ) -> MailRecord:
        """Queue message `sequence` of `key` as `pending`. When it is there already: not sent
        yet, it is replaced by this render (message id, subject, sender, recipients, body) and
        pending again; sent, or being sent under a live lease, it is returned unchanged (what
        went out, or is going out, stays what the ledger holds). Any number of processes may
        call this at once: they end with one row."""
        if sequence < 0:
            raise ValueError(f"sequence must be >= 0, got {sequence}")
        wanted = list(recipients)
        if not wanted:
            raise ValueError(f"outbox message {key!r}: no recipients")
        now = self._now(None)
        t = schema.mail_outbox
        render = {
            "message_id": message_id,
            "subject": subject,
            "sender": sender,
            "recipients": json.dumps(wanted),
            "body": body,
        }
        row = {
            "key": key,
            "sequence": sequence,
            **render,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }

        def run(conn: Connection) -> AnyRow:
            # No conflict target: two writers racing on PostgreSQL can meet on either unique
            # index (key+sequence or message_id), and naming one as the arbiter lets the
            # other raise a UniqueViolation instead of doing nothing.
            stmt = _insert(conn, t).values(row).on_conflict_do_nothing()
            inserted = conn.execute(stmt.returning(*t.c)).one_or_none()
            if inserted is not None:
                return inserted
            # Already there: lock it (PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the file).
            current = conn.execute(
                sa.select(t).where(t.c.key == key, t.c.sequence == sequence).with_for_update()
            ).one_or_none()
            if current is None:
                raise ValueError(
                    f"outbox message {key!r} #{sequence}: Message-ID {message_id} is already"
                    " used by another message"
                )
            held = current.status == "sending" and (
                current.lease_until is None or current.lease_until > now
            )
            if current.status == "sent" or held:
                return current
            # The recipients stay as stored: the key names the list, and a partly delivered
            # message holds only those still owed it (`mail_failed`); a re-render must not
            # send it again to the ones who have it.
            kept = {name: value for name, value in render.items() if name != "recipients"}
            return conn.execute(
                sa.update(t)
                .where(t.c.id == current.id)
                .values(**kept, status="pending", lease_until=None, updated_at=now)
                .returning(*t.c)
            ).one()

        return _mail_record(self._write(run))

    def mail_supersede(self, id: int, reason: str) -> MailRecord | None:
        """Take outbox message `id` out of the queue unsent (status `superseded`, `reason` as
        its last error): a newer message replaces it. Only a pending or failed one, or one
        whose sender's lease has passed; None otherwise (sent, or being sent)."""
        now = self._now(None)
        t = schema.mail_outbox
        expired = sa.and_(
            t.c.status == "sending", sa.or_(t.c.lease_until.is_(None), t.c.lease_until <= now)
        )

        def run(conn: Connection) -> AnyRow | None:
            return conn.execute(
                sa.update(t)
                .where(t.c.id == id, sa.or_(t.c.status.in_(_MAIL_CLAIMABLE), expired))
                .values(status="superseded", last_error=reason, lease_until=None, updated_at=now)
                .returning(*t.c)
            ).one_or_none()

        found = self._write(run)
        return None if found is None else _mail_record(found)

    def mail_claim(self, id: int, *, lease_seconds: float = 300) -> MailRecord | None:
        """Take outbox message `id` to `sending` for `lease_seconds`, counting the attempt:
        from pending or failed, or from sending once its lease has passed (a sender that
        crashed). None: another sender holds it, it is sent, or there is no such message."""
        now = self._now(None)
        t = schema.mail_outbox
        expired = sa.and_(
            t.c.status == "sending",
            sa.or_(t.c.lease_until.is_(None), t.c.lease_until <= now),
        )
        stmt = (
            sa.update(t)
            .where(t.c.id == id, sa.or_(t.c.status.in_(_MAIL_CLAIMABLE), expired))
            .values(
                status="sending",
                attempts=t.c.attempts + 1,
                lease_until=now + timedelta(seconds=lease_seconds),
                updated_at=now,
            )
            .returning(*t.c)
        )
        row = self._write(lambda conn: conn.execute(stmt).one_or_none())
        return None if row is None else _mail_record(row)

    def mail_sent(self, id: int) -> MailRecord:
        """Record that the server accepted outbox message `id`: `sent`, now. A message already
        sent stays as it was (sent_at is the first acceptance). KeyError for an unknown id."""
        now = self._now(None)
        t = schema.mail_outbox
        stmt = (
            sa.update(t)
            .where(t.c.id == id, t.c.status != "sent")
            .values(status="sent", sent_at=now, lease_until=None, updated_at=now)
            .returning(*t.c)
        )
        return _mail_record(self._write(lambda conn: _mail_row_after(conn, stmt, id)))

    def mail_failed(
        self, id: int, error: str, *, recipients: Sequence[str] | None = None
    ) -> MailRecord:
        """Record that sending outbox message `id` failed: `failed`, with `error` (clipped to
        TEXT_LIMIT), to be tried again. `recipients`, when given, narrows who is still owed the
        message (a server that accepted some recipients and refused the others: a retry must
        not send it twice to the ones it reached). A sent message stays sent. KeyError for an
        unknown id."""
        now = self._now(None)
        values: dict[str, Any] = {
            "status": "failed",
            "last_error": clip(error),
            "lease_until": None,
            "updated_at": now,
        }
        if recipients is not None:
            if not recipients:
                raise ValueError(f"outbox message {id}: narrowed to no recipients")
            values["recipients"] = json.dumps(list(recipients))
        t = schema.mail_outbox
        stmt = sa.update(t).where(t.c.id == id, t.c.status != "sent").values(values).returning(*t.c)
        return _mail_record(self._write(lambda conn: _mail_row_after(conn, stmt, id)))

    def mail_unsent(self, limit: int = 100, key_prefix: str | None = None) -> list[MailRecord]:
        """Outbox messages still to send, oldest first: pending, failed, and sending ones whose
        lease has passed (their sender crashed or hung). Only keys starting with `key_prefix`
        when given."""
        now = self._now(None)
        t = schema.mail_outbox
        expired = sa.and_(
            t.c.status == "sending",
            sa.or_(t.c.lease_until.is_(None), t.c.lease_until <= now),
        )
        stmt = (
            sa.select(t)
            .where(sa.or_(t.c.status.in_(_MAIL_CLAIMABLE), expired))
            .order_by(t.c.created_at, t.c.id)
            .limit(limit)
        )
        if key_prefix is not None:
            stmt = stmt.where(t.c.key.startswith(key_prefix, autoescape=True))
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [_mail_record(r) for r in rows]

    def mail_records(self, key_prefix: str | None = None) -> list[MailRecord]:
        """Every outbox message (or those whose key starts with `key_prefix`), oldest first."""
        t = schema.mail_outbox
        stmt = sa.select(t).order_by(t.c.created_at, t.c.id)
        if key_prefix is not None:
            stmt = stmt.where(t.c.key.startswith(key_prefix, autoescape=True))
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [_mail_record(r) for r in rows]

    # ------------------------------------------------------------------ transactions

    def _now(self, now: datetime | None) -> datetime:
        return aware_utc(self._clock() if now is None else now, "now")

    def _read(self, work: Callable[[Connection], T]) -> T:
        with self._engine.connect() as conn, conn.begin():
            return work(conn)

    def _write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one writing transaction, retried whole on a deadlock, serialisation
        failure or busy SQLite file (another process held the write lock too long)."""
        for attempt in itertools.count(1):
            try:
                with self._engine.connect() as conn:
                    conn.execution_options(**{WRITE_OPTION: True})
                    with conn.begin():
                        return work(conn)
            except DBAPIError as exc:
                if attempt >= _WRITE_TRIES or not _is_transient(exc):
                    raise
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")


# ---------------------------------------------------------------------- helpers


def _is_transient(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01"):  # serialization_failure, deadlock_detected
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message


def _insert(conn: Connection, table: sa.Table) -> Any:
    """The dialect's INSERT that knows ON CONFLICT (SQLite and PostgreSQL spell it alike)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _states_of(conn: Connection, keys: Iterable[str]) -> dict[str, str]:
    t = schema.actions
    states: dict[str, str] = {}
    for chunk in _chunks(sorted(keys)):
        rows = conn.execute(sa.select(t.c.key, t.c.state).where(t.c.key.in_(chunk)))
        states.update({k: s for k, s in rows})
    return states


def _requeue(conn: Connection, keys: Sequence[str], now: datetime) -> list[str]:
    t = schema.actions
    moved: list[str] = []
    for chunk in _chunks(keys):
        stmt = (
            sa.update(t)
            .where(t.c.key.in_(chunk), t.c.state.in_(_RETRYABLE))
            .values(state="pending", not_before=None, updated_at=now)
            .returning(t.c.key)
        )
        moved += conn.execute(stmt).scalars()
    return sorted(moved)


def _set_cursor(conn: Connection, name: str, value: str, at: datetime) -> None:
    stmt = _insert(conn, schema.cursors).values(name=name, value=value, updated_at=at)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
    )


def _exception_row(conn: Connection, id: int, *, lock: bool = False) -> AnyRow | None:
    """Exception `id`'s row; `lock`: for update (PostgreSQL; SQLite's BEGIN IMMEDIATE already
    holds the file)."""
    t = schema.exceptions
    stmt = sa.select(t).where(t.c.id == id)
    return conn.execute(stmt.with_for_update() if lock else stmt).one_or_none()


def _live_or_raise(conn: Connection, id: int) -> AnyRow:
    """Exception `id`'s row, locked, when it is open or retrying; KeyError when there is no
    such exception, `ExceptionClosed` when it is resolved or ignored."""
    row = _exception_row(conn, id, lock=True)
    if row is None:
        raise KeyError(f"no exception with id {id} in the ledger")
    if row.status not in _LIVE_EXCEPTION:
        raise ExceptionClosed(_exception_record(row))
    return row


def _event(
    conn: Connection,
    exception_id: int,
    at: datetime,
    actor: str,
    kind: str,
    from_status: str | None,
    to_status: str | None,
    note: str | None,
) -> None:
    """Append one line to an exception's history (in the caller's transaction)."""
    conn.execute(
        sa.insert(schema.exception_events).values(
            exception_id=exception_id,
            at=at,
            actor=clip(actor, 200),
            kind=kind,
            from_status=from_status,
            to_status=to_status,
            note=note,
        )
    )


def _facts(exc: ReturnException) -> str | None:
    return json.dumps(dict(exc.facts), sort_keys=True) if exc.facts else None


def _raise(
    conn: Connection, exc: ReturnException, action_key: str | None, at: datetime
) -> tuple[ExceptionRecord, bool]:
    """Upsert `exc`; True when it is newly open (first raised, or reopened)."""
    if exc.amount is not None and not isinstance(exc.amount, Decimal):
        raise TypeError(f"{exc.code}: money must be a Decimal, not {exc.amount!r}")
    t = schema.exceptions
    identity = exception_identity(exc.key)
    inserted = conn.execute(
        _insert(conn, t)
        .values(
            identity=identity,
            code=exc.code,
            owner=exc.owner.value,
            reveni_return_id=exc.reveni_return_id,
            order_number=exc.order_number,
            sku=exc.sku,
            amount=exc.amount,
            currency=exc.currency,
            detail=exc.detail,
            facts=_facts(exc),
            status="open",
            first_seen=at,
            last_seen=at,
            attempts=0,
            action_key=action_key,
        )
        .on_conflict_do_nothing(index_elements=["identity"])
        .returning(*t.c)
    ).one_or_none()
    if inserted is not None:
        _event(conn, int(inserted.id), at, SYSTEM_ACTOR, "opened", None, "open", exc.detail or None)
        return _exception_record(inserted), True
    # Already there: lock it (PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the file).
    current = conn.execute(
        sa.select(t.c.id, t.c.status, t.c.amount, t.c.currency)
        .where(t.c.identity == identity)
        .with_for_update()
    ).one()
    values: dict[str, Any] = {"last_seen": at}
    grown = current.status == "ignored" and _grown(exc, current.amount, current.currency)
    if current.status != "ignored" or grown:
        values.update(
            attempts=t.c.attempts + 1,
            detail=exc.detail,
            amount=exc.amount,
            currency=exc.currency,
            facts=_facts(exc),
        )
        if action_key is not None:
            values["action_key"] = action_key
    reopened = current.status == "resolved" or grown
    if reopened:
        values.update(status="open", resolved_at=None, resolution_note=None)
    row = conn.execute(
        sa.update(t).where(t.c.id == current.id).values(values).returning(*t.c)
    ).one()
    if reopened:
        why = "about more money than when it was ignored" if grown else "found again"
        note = f"{why}: {exc.detail}" if exc.detail else why
        _event(conn, int(current.id), at, SYSTEM_ACTOR, "reopened", current.status, "open", note)
    return _exception_record(row), reopened


def _grown(exc: ReturnException, amount: Any, currency: str | None) -> bool:
    """Whether `exc` is about more money, in the same currency, than the ignored exception of
    its identity was when someone accepted it (a second refund made by hand on an order whose
    first was accepted, say): then what was accepted no longer covers it, and it opens again."""
    if exc.amount is None or amount is None or exc.currency != currency:
        return False
    return bool(exc.amount > Decimal(amount))


def _heal(
    conn: Connection,
    return_ids: Sequence[str] | None,
    codes: Sequence[str],
    still_found: set[str],
    at: datetime,
) -> list[ExceptionRecord]:
    t = schema.exceptions
    live = sa.select(t.c.id, t.c.identity).where(
        t.c.status.in_(_LIVE_EXCEPTION), t.c.code.in_(codes)
    )
    scopes = (
        [live]
        if return_ids is None
        else [live.where(t.c.reveni_return_id.in_(chunk)) for chunk in _chunks(return_ids)]
    )
    stale: list[int] = []
    for stmt in scopes:
        stale += [r.id for r in conn.execute(stmt) if r.identity not in still_found]
    healed: list[ExceptionRecord] = []
    for chunk_ids in _chunks(sorted(stale)):
        statuses = conn.execute(sa.select(t.c.id, t.c.status).where(t.c.id.in_(chunk_ids)))
        before = {int(r.id): str(r.status) for r in statuses}
        rows = conn.execute(
            sa.update(t)
            .where(t.c.id.in_(chunk_ids), t.c.status.in_(_LIVE_EXCEPTION))
            .values(status="resolved", resolved_at=at, resolution_note=HEALED_NOTE)
            .returning(*t.c)
        ).all()
        for r in rows:
            was = before.get(r.id)
            _event(conn, int(r.id), at, SYSTEM_ACTOR, "healed", was, "resolved", HEALED_NOTE)
        healed += [_exception_record(r) for r in rows]
    return sorted(healed, key=lambda r: r.id)


def _mail_row_after(conn: Connection, stmt: Any, id: int) -> AnyRow:
    """The row `stmt` (an UPDATE ... RETURNING of outbox message `id`) changed, or the row as it
    is when the update did not apply; KeyError when there is no such message."""
    row = conn.execute(stmt).one_or_none()
    if row is None:
        t = schema.mail_outbox
        row = conn.execute(sa.select(t).where(t.c.id == id)).one_or_none()
    if row is None:
        raise KeyError(f"no outbox message with id {id} in the ledger")
    return row


def _mail_record(row: AnyRow) -> MailRecord:
    return MailRecord(
        id=int(row.id),
        key=row.key,
        sequence=int(row.sequence),
        message_id=row.message_id,
        subject=row.subject,
        sender=row.sender,
        recipients=tuple(json.loads(row.recipients)),
        body=row.body,
        status=row.status,
        attempts=int(row.attempts),
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        sent_at=row.sent_at,
        lease_until=row.lease_until,
    )


def _columns_record(cls: type[R], row: AnyRow) -> R:
    """A record whose fields are the row's columns of the same names, as stored."""
    return cls(**{f.name: getattr(row, f.name) for f in dataclasses.fields(cls)})


def _action_record(row: AnyRow) -> ActionRecord:
    return ActionRecord(
        key=row.key,
        kind=row.kind,
        reveni_return_id=row.reveni_return_id,
        order_number=int(row.order_number),
        state=row.state,
        attempts=int(row.attempts),
        payload=json.loads(row.payload),
        depends_on=tuple(json.loads(row.depends_on)),
        centra_ref=row.centra_ref,
        last_error=row.last_error,
        not_before=row.not_before,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _exception_record(row: AnyRow) -> ExceptionRecord:
    return ExceptionRecord(
        id=int(row.id),
        code=row.code,
        owner=row.owner,
        reveni_return_id=row.reveni_return_id,
        order_number=None if row.order_number is None else int(row.order_number),
        sku=row.sku,
        amount=row.amount,
        currency=row.currency,
        detail=row.detail,
        status=row.status,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        attempts=int(row.attempts),
        action_key=row.action_key,
        resolved_at=row.resolved_at,
        resolution_note=row.resolution_note,
        assignee=row.assignee,
        facts=json.loads(row.facts) if row.facts else {},
    )


# A forked child must not reuse its parent's pooled connections (SQLAlchemy's advice: drop them
# without closing, the parent still owns them).
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _dispose_after_fork() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_dispose_after_fork)
