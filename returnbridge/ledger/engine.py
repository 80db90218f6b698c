"""Which database a ledger URL names, and an engine that behaves the same on both
(docs/architecture.md#the-ledger).

SQLite (the default, one machine): WAL so readers never block the writer and several processes
share one file; a busy timeout so writers queue instead of failing; transactions begun by us
(`BEGIN`, or `BEGIN IMMEDIATE` when the transaction writes) because the sqlite3 module's own
implicit transactions neither cover DDL nor take the write lock up front, and a deferred
transaction that reads and then writes can fail at once under WAL (SQLITE_BUSY_SNAPSHOT).
PostgreSQL (several workers): psycopg 3, pre-pinged pooled connections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_URL: Final = "sqlite:///data/returnbridge.db"
BUSY_TIMEOUT_MS: Final = 30_000
# Connection execution option that marks a transaction as writing (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION: Final = "returnbridge_ledger_write"

_POSTGRES_SCHEMES: Final = {"postgresql", "postgres", "postgresql+psycopg"}
_SQLITE_SCHEMES: Final = {"sqlite", "sqlite+pysqlite"}


def resolve_url(url: str | None) -> URL:
    """The SQLAlchemy URL of a ledger URL, or ValueError naming what is wrong with it."""
    text = DEFAULT_URL if url is None else url.strip()
    try:
        parsed = make_url(text)
    except ArgumentError as exc:
        raise ValueError(f"ledger URL {text!r} is not a database URL: {exc}") from None
    scheme = parsed.drivername
    if scheme in _POSTGRES_SCHEMES:
        return parsed.set(drivername="postgresql+psycopg")
    if scheme in _SQLITE_SCHEMES:
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ValueError(
                f"ledger URL {parsed.render_as_string(hide_password=True)!r}: an in-memory or URI"
                " SQLite database cannot be shared between processes; name a file, e.g."
                f" {DEFAULT_URL}"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    raise ValueError(
        f"ledger URL scheme {scheme!r} is not supported; use sqlite:///path/to/ledger.db or"
        " postgresql://user:password@host/dbname (driver psycopg 3, i.e. postgresql+psycopg)"
    )


class LedgerMissing(LookupError):
    """Opening a ledger that must exist already (`Ledger(url, create=False)`) found none: no
    SQLite file at `path`, or a database without returnbridge's tables."""

    def __init__(self, url: URL) -> None:
        self.url = url.render_as_string(hide_password=True)
        self.path = sqlite_path(url)
        where = f"at {self.path}" if self.path is not None else f"in {self.url}"
        super().__init__(f"no ledger {where}")


def sqlite_path(url: URL) -> Path | None:
    """The absolute path of a SQLite ledger URL's file (relative ones are relative to the
    current directory); None for PostgreSQL."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database).expanduser().resolve()


def check_exists(url: URL) -> None:
    """LedgerMissing when `url` names a SQLite file that is not there (nothing is created: no
    file, no directory). A PostgreSQL database is checked for its tables once connected."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise LedgerMissing(url)


def create_engine(url: URL) -> Engine:
    """An engine for a URL from `resolve_url`, SQLite's file directory created if missing."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_engine(url: URL) -> Engine:
    assert url.database is not None
    Path(url.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        pool_size=5,
        max_overflow=10,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: `_on_begin` issues BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        writes = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine
