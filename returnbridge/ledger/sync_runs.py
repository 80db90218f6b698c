"""The outcome of each sync run (table `sync_runs`), so that the watchdog can tell "the sync has
failed N times in a row" (docs/operating-guide.md#watchdog-alerts).

Nothing else in the ledger records a run that failed: a failed run leaves the cursor where it
was and may write nothing at all (Reveni unreachable while collecting). So whoever runs the sync
(the `sync-returns` flow, `returnbridge sync`) records each run here, ok or failed, with
`record_sync_run` or the `recorded_sync_run` context manager; the watchdog reads the newest
with `recent_sync_runs`. Only the newest `KEEP` rows are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from returnbridge.ledger import schema
from returnbridge.ledger.store import Ledger, clip

KEEP: Final = 1000  # newest runs kept; older rows are deleted as new ones are recorded
_DETAIL_LIMIT: Final = 1000


@dataclass(frozen=True)
class SyncRun:
    """One sync run's outcome: when it started and finished, ok or not, and why not."""

    id: int
    started_at: datetime
    finished_at: datetime
    ok: bool
    detail: str


def record_sync_run(
    ledger: Ledger,
    *,
    ok: bool,
    started_at: datetime,
    finished_at: datetime | None = None,
    detail: str = "",
) -> SyncRun:
    """Record one sync run's outcome (`detail`: the error of a failed run, clipped) and prune
    the rows beyond the newest `KEEP`."""
    finished = ledger._now(finished_at)
    started = ledger._now(started_at)
    if finished < started:
        raise ValueError(
            f"a sync run cannot finish ({finished.isoformat()}) before it started "
            f"({started.isoformat()})"
        )
    t = schema.sync_runs
    row = {
        "started_at": started,
        "finished_at": finished,
        "ok": ok,
        "detail": clip(detail, _DETAIL_LIMIT) or "",
    }

    def run(conn: Connection) -> SyncRun:
        stored = conn.execute(sa.insert(t).values(row).returning(*t.c)).one()
        conn.execute(sa.delete(t).where(t.c.id <= stored.id - KEEP))
        return _sync_run(stored)

    return ledger._write(run)


@contextmanager
def recorded_sync_run(ledger: Ledger) -> Iterator[None]:
    """Record the run inside the block: ok when it ends normally, failed (with the error) when
    it raises, and the error raised on. Wrap the whole run (collect to commit) in it."""
    started = ledger._now(None)
    try:
        yield
    except BaseException as exc:
        record_sync_run(ledger, ok=False, started_at=started, detail=f"{type(exc).__name__}: {exc}")
        raise
    record_sync_run(ledger, ok=True, started_at=started)


def recent_sync_runs(ledger: Ledger, limit: int = 20) -> list[SyncRun]:
    """The newest `limit` sync runs, newest first."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    t = schema.sync_runs
    stmt = sa.select(t).order_by(t.c.finished_at.desc(), t.c.id.desc()).limit(limit)
    return [_sync_run(r) for r in ledger._read(lambda conn: conn.execute(stmt).all())]


def _sync_run(row: Any) -> SyncRun:
    return SyncRun(
        id=int(row.id),
        started_at=row.started_at,
        finished_at=row.finished_at,
        ok=bool(row.ok),
        detail=row.detail,
    )
