"""The ledger (docs/architecture.md#the-ledger): actions, attempts, exceptions, cursors, unfinished
returns and the webhook inbox, on SQLite (default) or PostgreSQL, through SQLAlchemy Core."""

from __future__ import annotations

from typing import TYPE_CHECKING

from returnbridge.lazy import lazy_exports
from returnbridge.ledger.records import (
    EXCEPTION_STATUSES,
    SYSTEM_ACTOR,
    ActionRecord,
    AttemptRecord,
    ExceptionChanges,
    ExceptionEvent,
    ExceptionRecord,
    ExceptionStatus,
    InboxEvent,
    InboxSource,
    UnfinishedReturn,
)

if TYPE_CHECKING:
    from returnbridge.ledger.engine import DEFAULT_URL
    from returnbridge.ledger.schema import SCHEMA_VERSION
    from returnbridge.ledger.store import (
        HEALED_NOTE,
        TEXT_LIMIT,
        ExceptionClosed,
        Ledger,
    )

# Imported on first use (PEP 562): these modules do I/O (HTTP, databases) and importing a
# pure module of this package (models, inputs, records ...) must not load them, so that
# `core/` stays free of I/O at run time too (docs/architecture.md#rooms-and-imports).
_LAZY: dict[str, str] = {
    "DEFAULT_URL": "returnbridge.ledger.engine",
    "SCHEMA_VERSION": "returnbridge.ledger.schema",
    "HEALED_NOTE": "returnbridge.ledger.store",
    "ExceptionClosed": "returnbridge.ledger.store",
    "TEXT_LIMIT": "returnbridge.ledger.store",
    "Ledger": "returnbridge.ledger.store",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "DEFAULT_URL",
    "EXCEPTION_STATUSES",
    "HEALED_NOTE",
    "SCHEMA_VERSION",
    "SYSTEM_ACTOR",
    "TEXT_LIMIT",
    "ActionRecord",
    "AttemptRecord",
    "ExceptionChanges",
    "ExceptionClosed",
    "ExceptionEvent",
    "ExceptionRecord",
    "ExceptionStatus",
    "InboxEvent",
    "InboxSource",
    "Ledger",
    "UnfinishedReturn",
]
