"""The ledger (design.md §3-§5): actions, attempts, exceptions, cursors and the webhook inbox,
on SQLite (default) or PostgreSQL, through SQLAlchemy Core."""

from returnbridge.ledger.engine import DEFAULT_URL
from returnbridge.ledger.records import (
    EXCEPTION_STATUSES,
    ActionRecord,
    AttemptRecord,
    ExceptionChanges,
    ExceptionRecord,
    ExceptionStatus,
    InboxEvent,
    InboxSource,
)
from returnbridge.ledger.schema import SCHEMA_VERSION
from returnbridge.ledger.store import HEALED_NOTE, TEXT_LIMIT, Ledger

__all__ = [
    "DEFAULT_URL",
    "EXCEPTION_STATUSES",
    "HEALED_NOTE",
    "SCHEMA_VERSION",
    "TEXT_LIMIT",
    "ActionRecord",
    "AttemptRecord",
    "ExceptionChanges",
    "ExceptionRecord",
    "ExceptionStatus",
    "InboxEvent",
    "InboxSource",
    "Ledger",
]
