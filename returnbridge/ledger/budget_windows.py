"""Centra's budget shared by every process on one ledger: exact sliding windows kept in the
ledger's database (docs/architecture.md#governed-access-to-centra).

Every sync (a Prefect flow run, a CLI run, a worker) is a process of its own, with its own
in-process `Governor`. What they may spend *together* is held here, in the ledger they already
share (a SQLite file or PostgreSQL), table `budget_calls`. A *bucket* (one per Centra limit and
environment, e.g. "centra-mutations:<host>") has sliding windows, at most `capacity` units
granted in any window of `seconds` (Centra's 10 s and one hour), held exactly as the governor
holds them in process: a grant is a row `(bucket, at, units)` and counts in a window of length L
until `at + L`. Unlike a token bucket, this admits the full 10-second burst and the exact hourly
total at once.

Check-and-take is one write transaction:

- *lock*: on SQLite the ledger engine's `BEGIN IMMEDIATE` (one writer per file at a time); on
  PostgreSQL a transaction-level advisory lock per bucket, taken in bucket-name order so that two
  gates drawing on the same buckets cannot deadlock. Two processes cannot both take a bucket's
  last slot, and a draw on several buckets (a mutation is also a request) is taken whole or not
  at all;
- *time*: read once the lock is held, so grants are stamped in the order they are made;
- *count*: the units of each window; if every draw fits every window of its bucket, one row per
  bucket is inserted and the bucket's rows older than its longest window are pruned; otherwise
  nothing is taken and the answer says how long until the draw could fit (when the oldest rows
  that must leave have left).

*Clock.* Every process on one ledger must read the same clock. By default that is the database
server's `clock_timestamp()` on PostgreSQL (processes on several machines with skewed clocks
still agree; read under the lock, unlike `now()`, which is the transaction's start) and the
machine's `time.time()` on SQLite (a SQLite ledger is one machine's file). Both are wall clocks,
chosen over a monotonic one because the rows outlive a process and a reboot. When the clock steps
back, rows stamped "in the future" are restamped to now: they count a little longer, never more
than the share. When it steps forward, windows drain early by the step: the in-process governor
and Centra's `429 Retry-After` still hold. An injected `MonotonicClock` (tests, the benchmark's
faster clock) replaces both, and its `sleep` waits; every process on the ledger must then share
it.

*Waiting.* `acquire` sleeps until the computed moment, then tries again (another process may have
taken the slot meanwhile; nobody queues in the database). The database work runs in a thread
(`asyncio.to_thread`), one transaction at a time per `BudgetWindows` (a thread lock, so that a
process's own tasks do not contend for SQLite's write lock). A grant is stamped when the gate
lets the call go, not when Centra meters it a moment later: the budget share must leave headroom
for that (half of Centra's limits, by default).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from returnbridge.clock import MonotonicClock
from returnbridge.ledger import schema
from returnbridge.ledger.engine import WRITE_OPTION
from returnbridge.ledger.store import _is_transient

if TYPE_CHECKING:
    from returnbridge.ledger.store import Ledger

# First key of the PostgreSQL advisory locks of the buckets (b"rbbg"); the second key is a hash
# of the bucket's name. The two-key form never collides with the migration's one-key lock.
_LOCK_CLASS: Final = 0x7262_6267
_WRITE_TRIES: Final = 5  # a deadlock or a busy SQLite file is retried, the whole transaction
# The shortest sleep between tries: a wait computed as a hair above zero (float rounding, a
# clock read early) must not turn into a burst of transactions.
_MIN_SLEEP: Final = 0.001


def _machine_time() -> float:
    """The machine's wall clock, the windows' clock on SQLite (its own function so that tests
    can tell it from the database server's)."""
    return time.time()


@dataclass(frozen=True)
class Window:
    """At most `capacity` units in any window of `seconds`."""

    capacity: int
    seconds: float

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"a budget window holds at least 1 unit, got capacity {self.capacity}")
        if not self.seconds > 0:
            raise ValueError(f"a budget window lasts more than 0 s, got {self.seconds}")


@dataclass(frozen=True)
class Draw:
    """`units` calls taken from `bucket`, whose sliding windows are `windows` (none: the bucket
    is not limited, and drawing on it needs no database)."""

    bucket: str
    windows: tuple[Window, ...]
    units: int = 1

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("a budget bucket needs a name")
        if self.units < 0:
            raise ValueError(f"cannot draw {self.units} units from bucket {self.bucket!r}")
        for window in self.windows:
            if self.units > window.capacity:
                raise ValueError(
                    f"{self.units} calls can never fit budget bucket {self.bucket!r}: its "
                    f"{window.seconds:g}-second window holds {window.capacity}"
                )


@dataclass(frozen=True)
class Taken:
    """The draws were granted at `at` (on the windows' clock); None: nothing was limited."""

    at: float | None


@dataclass(frozen=True)
class Blocked:
    """Nothing was taken: `bucket`'s `window` holds `used` units, too many for the draw until
    `wait` seconds after `now` (the longest wait of every window that is too full)."""

    now: float
    wait: float
    bucket: str
    window: Window
    used: int
    units: int


class BudgetWindows:
    """Sliding windows of Centra buckets in the ledger database `engine` (see the module
    docstring); thread-safe, one per process and ledger is enough.

    `clock`: None reads the database's clock (PostgreSQL) or the machine's (SQLite) and waits in
    real time; a `MonotonicClock` replaces both (every process on the ledger must share it)."""

    def __init__(self, engine: Engine, *, clock: MonotonicClock | None = None) -> None:
        self._engine = engine
        self.clock = clock
        self._lock = threading.Lock()

    @classmethod
    def of_ledger(cls, ledger: Ledger, *, clock: MonotonicClock | None = None) -> BudgetWindows:
        """The windows in `ledger`'s database, through its engine (its schema, migrated on
        opening, has the `budget_calls` table)."""
        return cls(ledger._engine, clock=clock)

    # ------------------------------------------------------------------ taking

    async def acquire(
        self, draws: Sequence[Draw], *, timeout_seconds: float | None = None
    ) -> float | None:
        """Wait until every draw fits every window of its bucket, take them all at once and
        return when they were taken (None: nothing was limited, the database was not asked).

        With `timeout_seconds`, raises TimeoutError naming the full bucket as soon as the next
        chance to fit is known to come later than that (measured from the first try on the
        windows' clock). Cancelled while a try runs, the try may still take its slots: an
        unused slot errs on the safe side."""
        limited = _merged(draws)
        if not limited:
            return None
        deadline: float | None = None
        while True:
            decision = await asyncio.to_thread(self._take, limited)
            if isinstance(decision, Taken):
                return decision.at
            if timeout_seconds is not None:
                if deadline is None:
                    deadline = decision.now + timeout_seconds
                if decision.now + decision.wait > deadline:
                    raise TimeoutError(_timeout_message(decision, timeout_seconds))
            await self._sleep(max(decision.wait, _MIN_SLEEP))

    def try_take(self, draws: Sequence[Draw]) -> Taken | Blocked:
        """One try: take every draw now, or nothing and say how long until they could fit."""
        limited = _merged(draws)
        if not limited:
            return Taken(None)
        return self._take(limited)

    def used(self, bucket: str, seconds: float) -> int:
        """Units granted from `bucket` in the last `seconds` on the windows' clock (for logs and
        tests; a reading, stale as soon as it is made)."""
        t = schema.budget_calls
        with self._engine.connect() as conn, conn.begin():
            now = self._now(conn)
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(t.c.units), 0)).where(
                    t.c.bucket == bucket, t.c.at > now - seconds
                )
            ).scalar_one()
        return int(total)

    # ------------------------------------------------------------------ one transaction

    def _take(self, draws: list[Draw]) -> Taken | Blocked:
        with self._lock:
            for attempt in itertools.count(1):
                try:
                    with self._engine.connect() as conn:
                        conn.execution_options(**{WRITE_OPTION: True})
                        with conn.begin():
                            return self._take_in(conn, draws)
                except DBAPIError as exc:
                    if attempt >= _WRITE_TRIES or not _is_transient(exc):
                        raise
                    time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _take_in(self, conn: Connection, draws: list[Draw]) -> Taken | Blocked:
        if conn.dialect.name == "postgresql":
            for draw in draws:  # sorted by bucket: every gate locks in the same order
                conn.execute(
                    sa.select(
                        sa.func.pg_advisory_xact_lock(
                            sa.cast(_LOCK_CLASS, sa.Integer),
                            sa.cast(_lock_key(draw.bucket), sa.Integer),
                        )
                    )
                )
        now = self._now(conn)
        blocked: Blocked | None = None
        for draw in draws:
            for window, used in zip(draw.windows, self._used(conn, draw, now), strict=True):
                if used + draw.units <= window.capacity:
                    continue
                wait = _wait(conn, draw.bucket, window, used + draw.units - window.capacity, now)
                if blocked is None or wait > blocked.wait:
                    blocked = Blocked(now, wait, draw.bucket, window, used, draw.units)
        if blocked is not None:
            return blocked
        t = schema.budget_calls
        conn.execute(
            sa.insert(t), [{"bucket": d.bucket, "at": now, "units": d.units} for d in draws]
        )
        for draw in draws:
            longest = max(w.seconds for w in draw.windows)
            conn.execute(sa.delete(t).where(t.c.bucket == draw.bucket, t.c.at <= now - longest))
        return Taken(now)

    def _used(self, conn: Connection, draw: Draw, now: float) -> list[int]:
        """Units in each of `draw`'s windows as of `now`, after restamping to `now` the rows a
        clock that stepped back left in the future (they are in every window either way)."""
        t = schema.budget_calls
        longest = max(w.seconds for w in draw.windows)
        sums = [
            sa.func.coalesce(
                sa.func.sum(sa.case((t.c.at > now - w.seconds, t.c.units), else_=0)), 0
            )
            for w in draw.windows
        ]
        row = conn.execute(
            sa.select(*sums, sa.func.max(t.c.at)).where(
                t.c.bucket == draw.bucket, t.c.at > now - longest
            )
        ).one()
        latest = row[-1]
        if latest is not None and latest > now:
            conn.execute(sa.update(t).where(t.c.bucket == draw.bucket, t.c.at > now).values(at=now))
        return [int(value) for value in row[:-1]]

    def _now(self, conn: Connection) -> float:
        if self.clock is not None:
            return self.clock.monotonic()
        if conn.dialect.name == "postgresql":
            epoch = sa.extract("epoch", sa.func.clock_timestamp())
            return float(conn.execute(sa.select(epoch)).scalar_one())
        return _machine_time()

    async def _sleep(self, seconds: float) -> None:
        if self.clock is not None:
            await self.clock.sleep(seconds)
        else:
            await asyncio.sleep(seconds)


def _wait(conn: Connection, bucket: str, window: Window, must_leave: int, now: float) -> float:
    """Seconds from `now` until the oldest `must_leave` units of `bucket` have left `window`."""
    t = schema.budget_calls
    rows = conn.execute(
        sa.select(t.c.at, t.c.units)
        .where(t.c.bucket == bucket, t.c.at > now - window.seconds)
        .order_by(t.c.at, t.c.id)
        .limit(must_leave)  # every row holds at least one unit
    ).all()
    left = 0
    for at, units in rows:
        left += units
        if left >= must_leave:
            return float(at) + window.seconds - now
    return window.seconds  # unreachable: the window's rows add up to what was counted


def _merged(draws: Sequence[Draw]) -> list[Draw]:
    """The limited draws with units, one per bucket, in bucket order (the lock order)."""
    by_bucket: dict[str, Draw] = {}
    for draw in draws:
        if not draw.windows or draw.units == 0:
            continue
        seen = by_bucket.get(draw.bucket)
        if seen is None:
            by_bucket[draw.bucket] = draw
        elif seen.windows != draw.windows:
            raise ValueError(
                f"budget bucket {draw.bucket!r} drawn with two sets of windows: "
                f"{seen.windows} and {draw.windows}"
            )
        else:
            by_bucket[draw.bucket] = Draw(draw.bucket, draw.windows, seen.units + draw.units)
    return [by_bucket[bucket] for bucket in sorted(by_bucket)]


def _lock_key(bucket: str) -> int:
    """A signed 32-bit key for `bucket`'s advisory lock (a collision only serialises more)."""
    digest = hashlib.blake2b(bucket.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _timeout_message(blocked: Blocked, timeout_seconds: float) -> str:
    window = blocked.window
    return (
        f"Centra budget: no room for {blocked.units} call(s) in bucket {blocked.bucket!r} within "
        f"{timeout_seconds:g} s: its {window.seconds:g}-second window holds {window.capacity} "
        f"and {blocked.used} are taken; the next room comes in {blocked.wait:.1f} s"
    )


__all__ = ["Blocked", "BudgetWindows", "Draw", "Taken", "Window"]
