"""The ledger's one schema, for SQLite and PostgreSQL alike (docs/architecture.md#the-ledger), and
its migration.

Portable by construction: text keys, JSON as text, money as decimal strings, datetimes through
`UTCDateTime` (SQLite keeps naive UTC text, PostgreSQL `timestamptz`), every uniqueness as a
unique index over NOT NULL columns (NULLs in unique constraints behave differently per engine,
hence the computed `exceptions.identity`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect

# Bump when the schema changes (and add the step to `_UPGRADES`); `migrate` records every
# version it applied. 1: the first schema; 2: the `unfinished_returns` table, filled from the
# JSON list version 1 kept under the cursor `LEGACY_UNFINISHED_CURSOR`; 3: the `mail_outbox`
# table (the month-end report's e-mails), new and empty; 4: the `budget_calls` table (Centra's
# budget shared by every process), the `watch_incidents` table (the watchdog's alerts) and the
# `sync_runs` table (each sync run's outcome, for the watchdog), new and empty; 5: the queue's
# memory: `exceptions.assignee` and `exceptions.facts`, and the `exception_events` table, filled
# with what the exceptions already said (when each opened, and how closed ones were closed);
# and `inbox.outcome` (a webhook naming a return Reveni does not have is settled as such).
SCHEMA_VERSION: Final = 5
# The cursor under which schema version 1 kept the unfinished Reveni return ids, a JSON list.
LEGACY_UNFINISHED_CURSOR: Final = "reveni_returns:unfinished"
# Key of the PostgreSQL advisory lock that serialises concurrent migrations (b"rbled").
_MIGRATION_LOCK_KEY: Final = 0x7262_6C65_64

log = logging.getLogger(__name__)


def aware_utc(value: datetime, what: str = "datetime") -> datetime:
    """`value` in UTC; a naive datetime is refused (its zone would be a guess)."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{what} {value.isoformat()} is naive; pass a timezone-aware datetime")
    return value.astimezone(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite stores it naive (UTC), PostgreSQL as timestamptz."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = aware_utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class DecimalText(sa.TypeDecorator[Decimal]):
    """A Decimal kept as its exact string ("12.30" stays "12.30"); floats are refused."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money must be a Decimal, not {type(value).__name__} ({value!r})")
        if not value.is_finite():
            raise ValueError(f"money must be a finite Decimal, not {value}")
        return str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("reveni_return_id", sa.Text, nullable=False),
    sa.Column("order_number", sa.BigInteger, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("payload", sa.Text, nullable=False),  # JSON
    sa.Column("depends_on", sa.Text, nullable=False, default="[]"),  # JSON list of keys
    sa.Column("centra_ref", sa.Text),
    sa.Column("last_error", sa.Text),
    sa.Column("not_before", UTCDateTime),  # backoff, or the lease end while in_flight
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_actions_state_not_before", "state", "not_before"),
    sa.Index("ix_actions_reveni_return_id", "reveni_return_id"),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("action_key", sa.Text, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("request_summary", sa.Text, nullable=False),
    sa.Column("response", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Index("ix_attempts_action_key", "action_key", "id"),
)

exceptions = sa.Table(
    "exceptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # (code, reveni_return_id, order_number, sku) as JSON text: the NOT NULL unique identity.
    sa.Column("identity", sa.Text, nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("reveni_return_id", sa.Text),
    sa.Column("order_number", sa.BigInteger),
    sa.Column("sku", sa.Text),
    sa.Column("amount", DecimalText),
    sa.Column("currency", sa.Text),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("action_key", sa.Text),
    sa.Column("resolved_at", UTCDateTime),
    sa.Column("resolution_note", sa.Text),
    sa.Column("assignee", sa.Text),  # version 5
    sa.Column("facts", sa.Text),  # version 5: JSON object of core/codes.py FACTS, or NULL
    sa.Index("ux_exceptions_identity", "identity", unique=True),
    sa.Index("ix_exceptions_status_owner", "status", "owner"),
    sa.Index("ix_exceptions_reveni_return_id", "reveni_return_id"),
)

# Version 5: every exception's history, append-only (ledger/records.py `ExceptionEvent`).
exception_events = sa.Table(
    "exception_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("exception_id", sa.Integer, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("from_status", sa.Text),
    sa.Column("to_status", sa.Text),
    sa.Column("note", sa.Text),
    sa.Index("ix_exception_events_exception", "exception_id", "id"),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("resource_id", sa.Text),
    sa.Column("event_type", sa.Text),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("processed_at", UTCDateTime),
    # Version 5: how a processed event was settled: NULL (its return was worked on) or
    # "unknown_resource" (Reveni has no such return: a fake or mistaken webhook).
    sa.Column("outcome", sa.Text),
    sa.Index("ux_inbox_source_event", "source", "event_id", unique=True),
    sa.Index("ix_inbox_processed_received", "processed_at", "received_at"),
)

# Reveni returns a sync run left unfinished (docs/architecture.md#the-ledger): one row per return,
# kept until a later run plans the return and finds nothing left to do. `since`: when a run first
# left it unfinished (this time); `updated_at`: the last run that did.
unfinished_returns = sa.Table(
    "unfinished_returns",
    metadata,
    sa.Column("reveni_return_id", sa.Text, primary_key=True),
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# The outbox of e-mails (the month-end report, docs/architecture.md#the-month-end-report): each
# message is stored whole before it is sent, so a retried run sends the stored bytes (and
# Message-ID) again instead of e-mailing twice. `key` names what the message is for (e.g.
# "month-end:2026-10:<hash of the recipients>"); `sequence` 0 is its first message, 1, 2 ... each
# deliberate resend. `status`: pending -> sending (leased until `lease_until`) -> sent, or back
# to failed (with `last_error`) to be tried again. `recipients`: JSON list of the envelope
# recipients still owed the message; `body`: the whole RFC 5322 message (ASCII).
mail_outbox = sa.Table(
    "mail_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("sender", sa.Text, nullable=False),
    sa.Column("recipients", sa.Text, nullable=False),  # JSON list
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("lease_until", UTCDateTime),
    sa.Index("ux_mail_outbox_key_sequence", "key", "sequence", unique=True),
    sa.Index("ux_mail_outbox_message_id", "message_id", unique=True),
    sa.Index("ix_mail_outbox_status_created", "status", "created_at"),
)

# The watchdog's incidents (docs/operating-guide.md#watchdog-alerts, `ledger/incidents.py`): one
# row per opening of a condition, keyed by `(check_name, subject, sequence)`; `sequence` counts the
# openings of one check and subject, and only the highest may be open (`closed_at` NULL). Each
# row is also the outbox of its two Slack messages: the alert (`alert_*`, from the opening) and
# the recovery (`recovery_*`, NULL state until it closes). A message's state: pending ->
# sending (claimed by compare-and-set, leased until `*_lease_until`) -> sent (with Slack's `ts`),
# or failed (`*_error`) to be tried again by the next run.
watch_incidents = sa.Table(
    "watch_incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("check_name", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("figure", sa.Text, nullable=False),
    sa.Column("first_step", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("since", UTCDateTime, nullable=False),  # when the condition began, as far as known
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("alert_state", sa.Text, nullable=False),
    sa.Column("alert_attempts", sa.Integer, nullable=False, default=0),
    sa.Column("alert_error", sa.Text),
    sa.Column("alert_ts", sa.Text),
    sa.Column("alert_sent_at", UTCDateTime),
    sa.Column("alert_lease_until", UTCDateTime),
    sa.Column("recovery_state", sa.Text),
    sa.Column("recovery_attempts", sa.Integer, nullable=False, default=0),
    sa.Column("recovery_error", sa.Text),
    sa.Column("recovery_ts", sa.Text),
    sa.Column("recovery_sent_at", UTCDateTime),
    sa.Column("recovery_lease_until", UTCDateTime),
    sa.Index(
        "ux_watch_incidents_check_subject_seq", "check_name", "subject", "sequence", unique=True
    ),
    sa.Index("ix_watch_incidents_closed_opened", "closed_at", "opened_at"),
)

# The outcome of each sync run (`ledger/sync_runs.py`), for the watchdog's "the sync keeps
# failing" check: written by whoever runs the sync, newest kept, older ones pruned.
sync_runs = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Index("ix_sync_runs_finished", "finished_at", "id"),
)

# Centra's budget shared by every process on this ledger, `ledger/budget_windows.py`
# (docs/architecture.md#governed-access-to-centra): one row per grant of the cross-process gate,
# `units` calls of one `bucket` (e.g. "centra-mutations:<host>") granted at `at`. `at` is seconds
# on the gates' one clock: Unix time read from the PostgreSQL server (or the machine's clock on
# SQLite, one machine), a float rather than a datetime so that tests and benchmarks can run the
# windows on clocks of their own. Rows older than the longest window are pruned as grants are
# made.
budget_calls = sa.Table(
    "budget_calls",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("bucket", sa.Text, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("units", sa.Integer, nullable=False),
    sa.Index("ix_budget_calls_bucket_at", "bucket", "at"),
)


def exception_identity(key: tuple[Any, ...]) -> str:
    """The stored identity of an exception key `(code, reveni_return_id, order_number, sku)`."""
    return json.dumps(list(key), separators=(",", ":"))


def migrate(conn: Connection, now: datetime) -> int:
    """Create what is missing (tables, indexes), run the upgrade step of every version after
    the ledger's (`_UPGRADES`) and record each version applied; idempotent.

    Runs inside the caller's write transaction. PostgreSQL: an advisory lock makes concurrent
    openers wait for each other (a bare CREATE TABLE IF NOT EXISTS can still collide there);
    SQLite: the transaction is BEGIN IMMEDIATE, which already serialises writers. Returns the
    schema version now in place.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
    metadata.create_all(conn, checkfirst=True)
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        present = {ix["name"] for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in present:
                index.create(conn)
    current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    if current is not None and current > SCHEMA_VERSION:
        raise RuntimeError(
            f"ledger schema version {current} is newer than this returnbridge understands "
            f"({SCHEMA_VERSION}); upgrade returnbridge before opening this ledger"
        )
    if current is None:  # a new ledger: the tables above are already the current schema
        conn.execute(sa.insert(schema_version).values(version=SCHEMA_VERSION, applied_at=now))
        return SCHEMA_VERSION
    for version in range(current + 1, SCHEMA_VERSION + 1):
        _UPGRADES[version](conn)
        conn.execute(sa.insert(schema_version).values(version=version, applied_at=now))
    # A version-1 process that opened the ledger before the upgrade (a rolling deploy) may
    # still write its carry-over cursor: fold that in too, on every later open.
    _unfinished_into_table(conn)
    return SCHEMA_VERSION


def _unfinished_into_table(conn: Connection) -> None:
    """Version 2 (docs/architecture.md#the-ledger): move the unfinished return ids version 1 kept as
    a JSON list under the cursor `LEGACY_UNFINISHED_CURSOR` into `unfinished_returns`, then delete
    that cursor. The rows take the cursor's `updated_at` as `since` (when the list was last written:
    the best the old layout knows). Idempotent: ids already in the table stay.

    A value that is not a JSON list of ids is logged (with its text: return ids, no customer
    data) and dropped, never a reason to refuse the ledger: the list was only a hint (the
    next run still finds unsettled actions and self-healing exceptions in their own tables,
    and the nightly reconciliation finds what is missing in Centra), whereas a ledger that
    will not open stops every sync. Version 1 itself could not have run with such a value
    (its sync failed on reading it), so this is a hand-edited or damaged row."""
    cursor = conn.execute(
        sa.select(cursors.c.value, cursors.c.updated_at).where(
            cursors.c.name == LEGACY_UNFINISHED_CURSOR
        )
    ).one_or_none()
    if cursor is None:
        return
    ids = _legacy_unfinished_ids(cursor.value)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    at = cursor.updated_at
    for start in range(0, len(ids), 500):
        rows = [
            {"reveni_return_id": rid, "since": at, "updated_at": at}
            for rid in ids[start : start + 500]
        ]
        stmt = insert(unfinished_returns).values(rows)
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["reveni_return_id"]))
    conn.execute(sa.delete(cursors).where(cursors.c.name == LEGACY_UNFINISHED_CURSOR))
    log.info("ledger: moved %d unfinished return id(s) into unfinished_returns", len(ids))


def _legacy_unfinished_ids(value: str) -> list[str]:
    """The ids in a version 1 carry-over value, sorted; what is not an id is logged."""
    if not value.strip():
        return []  # version 1 read an empty value as no ids
    shown = value if len(value) <= 200 else value[:200] + "..."
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, list):
        log.warning(
            "ledger: dropped cursor %s, not a JSON list of return ids: %r",
            LEGACY_UNFINISHED_CURSOR,
            shown,
        )
        return []
    ids = sorted({item for item in parsed if isinstance(item, str) and item})
    dropped = [item for item in parsed if not isinstance(item, str) or not item]
    if dropped:
        log.warning(
            "ledger: dropped %d entr(y/ies) of cursor %s that are no return id: %r",
            len(dropped),
            LEGACY_UNFINISHED_CURSOR,
            dropped[:20],
        )
    return ids


def _nothing_to_move(conn: Connection) -> None:
    """Versions 3 and 4 add new tables only (3: `mail_outbox`; 4: `budget_calls`,
    `watch_incidents` and `sync_runs`), and `metadata.create_all` in `migrate` has already
    created them (with their indexes) before the upgrade steps run: there is no data to move,
    the step only records the version."""


def _exception_history(conn: Connection) -> None:
    """Version 5: the new columns `exceptions.assignee`, `exceptions.facts` and `inbox.outcome`
    (`metadata.create_all` does not add columns to a table that exists), and a history for
    every exception already there: when it opened (`first_seen`) and, for a closed one, how
    it was closed, with its note. Who did it is unknown before version 5: "returnbridge
    (before history)"."""
    for table, columns in (("exceptions", ("assignee", "facts")), ("inbox", ("outcome",))):
        present = {c["name"] for c in sa.inspect(conn).get_columns(table)}
        for column in columns:
            if column not in present:
                conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} TEXT"))
    if conn.execute(sa.select(exception_events.c.id).limit(1)).first() is not None:
        return
    t = exceptions
    actor = "returnbridge (before history)"
    rows = conn.execute(
        sa.select(t.c.id, t.c.status, t.c.first_seen, t.c.resolved_at, t.c.resolution_note)
    ).all()
    events: list[dict[str, Any]] = []
    for row in rows:
        events.append(
            {
                "exception_id": row.id,
                "at": row.first_seen,
                "actor": actor,
                "kind": "opened",
                "from_status": None,
                "to_status": "open",
                "note": None,
            }
        )
        if row.status in ("resolved", "ignored") and row.resolved_at is not None:
            events.append(
                {
                    "exception_id": row.id,
                    "at": row.resolved_at,
                    "actor": actor,
                    "kind": row.status,
                    "from_status": "open",
                    "to_status": row.status,
                    "note": row.resolution_note,
                }
            )
    for start in range(0, len(events), 500):
        conn.execute(sa.insert(exception_events), events[start : start + 500])


# The step that brings a ledger from the version before to the version it is keyed by; each
# runs in the migration's transaction, with that version's row.
_UPGRADES: Final[dict[int, Callable[[Connection], None]]] = {
    2: _unfinished_into_table,
    3: _nothing_to_move,
    4: _nothing_to_move,
    5: _exception_history,
}
