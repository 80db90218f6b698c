"""The ledger's one schema, for SQLite and PostgreSQL alike (design.md §5), and its migration.

Portable by construction: text keys, JSON as text, money as decimal strings, datetimes through
`UTCDateTime` (SQLite keeps naive UTC text, PostgreSQL `timestamptz`), every uniqueness as a
unique index over NOT NULL columns (NULLs in unique constraints behave differently per engine,
hence the computed `exceptions.identity`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

# Bump when the schema changes; `migrate` records every version it applied.
SCHEMA_VERSION: Final = 1
# Key of the PostgreSQL advisory lock that serialises concurrent migrations (b"rbled").
_MIGRATION_LOCK_KEY: Final = 0x7262_6C65_64


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
    sa.Index("ux_exceptions_identity", "identity", unique=True),
    sa.Index("ix_exceptions_status_owner", "status", "owner"),
    sa.Index("ix_exceptions_reveni_return_id", "reveni_return_id"),
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
    sa.Index("ux_inbox_source_event", "source", "event_id", unique=True),
    sa.Index("ix_inbox_processed_received", "processed_at", "received_at"),
)


def exception_identity(key: tuple[Any, ...]) -> str:
    """The stored identity of an exception key `(code, reveni_return_id, order_number, sku)`."""
    return json.dumps(list(key), separators=(",", ":"))


def migrate(conn: Connection, now: datetime) -> int:
    """Create what is missing (tables, indexes) and record the schema version; idempotent.

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
    if current != SCHEMA_VERSION:
        conn.execute(sa.insert(schema_version).values(version=SCHEMA_VERSION, applied_at=now))
    return SCHEMA_VERSION
