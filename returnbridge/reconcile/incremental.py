"""The warehouse's gaps now, recomputed only where something changed since the last computation.

`current_gaps` is what the daily reconciliation runs (`Reconciliation.find_gaps`) and what the
scale benchmark measures (`bench/reconcile_scale.py`). The warehouse keeps the latest
computation (`Warehouse.gap_state`): every gap it found, before any was left out as explained
by an open ledger exception (an exception resolved since must not hide a gap), its time
(`as_of`), the last load it saw and the version of the rules. Then:

    since = min(state.as_of, now) - config.grace
    scope = warehouse.changed_scope(state.load_id, updated_after=since)
    fresh = compute_gaps(
        warehouse.snapshot(scope=scope, reads=rule_reads(config)), config=config, now=now
    )
    gaps = scope.carry(state.gaps, fresh, now=now)

Either way the snapshot holds only what the rules read (`rules.rule_reads`: their columns, and
the rows that can matter to one, filtered in DuckDB), never the whole tables.

`changed_scope` holds what the loads since changed, closed over what the rules read together,
and what the clock changes. The rules read the clock in three places only: an instant return
awaiting inspection nears its deadline (all of those are always in scope), a refund request
still pending at the PSP waits too long (the orders with one are always in scope), and a missing
effect counts once Reveni's change is `grace` old (`updated_at <= now - grace`): a return
updated before both cutoffs, the last computation's and now's, was due then and is due now, so
the returns updated since the earlier of them are in scope (one inside the grace period at the
last run may be due now; going back to an earlier `--date`, one due then may not be yet).
Everything else has the gaps it had, their age counted again to now.

Everything is recomputed instead (`mode` full, with the reason) when there is no computation
yet, when the rules or their settings changed since (`rules_version`), when the last one is
more than `max_age` away from now (either way), or when asked
(`RETURNBRIDGE_RECONCILE__FULL_RECOMPUTE`). Either way the result is kept as the new state.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import polars as pl

from returnbridge.core.codes import CODES
from returnbridge.reconcile import rules as rules_module
from returnbridge.reconcile.rules import RULES, GapConfig, compute_gaps, rule_reads
from returnbridge.reconcile.tables import GAPS, SNAPSHOT_TABLES
from returnbridge.reconcile.warehouse import GapState, Warehouse

DEFAULT_MAX_AGE: Final = timedelta(days=7)


@dataclass(frozen=True)
class GapComputation:
    """What `current_gaps` found and how."""

    gaps: pl.DataFrame  # every gap (tables.GAPS), none left out as explained
    mode: str  # full | incremental
    reason: str  # why full; what the incremental one started from
    load_id: int  # the last load it saw
    scope_returns: int | None = None  # incremental: returns and orders recomputed
    scope_orders: int | None = None
    rows_read: int = 0  # snapshot rows read from the warehouse
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "load_id": self.load_id,
            "gaps": self.gaps.height,
            "scope_returns": self.scope_returns,
            "scope_orders": self.scope_orders,
            "rows_read": self.rows_read,
            "seconds": round(sum(self.timings.values()), 3),
        }


def rules_version(config: GapConfig) -> str:
    """A fingerprint of what the gaps depend on besides the data: the rules' code, their
    settings, the gap codes' owners and the tables' schemas. Gaps computed under another one
    are not carried over."""
    try:
        source = Path(rules_module.__file__).read_bytes()
    except OSError:  # no source to read: still the rest
        source = b""
    described = json.dumps(
        {
            "config": {f.name: _plain(getattr(config, f.name)) for f in fields(config)},
            "owners": {code: CODES[code].owner.value for code in sorted(RULES)},
            "gaps": {name: str(dtype) for name, dtype in GAPS.items()},
            "tables": {
                table: {name: str(dtype) for name, dtype in schema.items()}
                for table, schema in SNAPSHOT_TABLES.items()
            },
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(source + b"\0" + described.encode()).hexdigest()
    return digest[:16]


def _plain(value: object) -> object:
    """A JSON value for a `GapConfig` field, the same in every process (sets sorted)."""
    if isinstance(value, frozenset | set):
        return sorted(str(v) for v in value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal | datetime):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


def full_reason(
    state: GapState | None,
    *,
    now: datetime,
    rules: str,
    last_load: int,
    max_age: timedelta,
) -> str | None:
    """Why the gaps at `now` cannot be computed from `state` incrementally (None: they can)."""
    if state is None:
        return "no earlier computation"
    if state.rules != rules:
        return "the rules or their settings changed"
    if abs(now - state.as_of) > max_age:
        return f"the last computation ({state.as_of.isoformat()}) is more than {max_age} away"
    if state.load_id > last_load:
        return f"the last computation saw load {state.load_id}, the warehouse ends at {last_load}"
    return None


def current_gaps(
    warehouse: Warehouse,
    *,
    config: GapConfig,
    now: datetime,
    full: bool = False,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> GapComputation:
    """Every gap of the warehouse at `now` (none left out as explained: `rules.
    without_explained` does that), incrementally from the last computation when it can be,
    else all of them (`full`: always); kept as the warehouse's gap state."""
    timings: dict[str, float] = {}
    clock = _Stopwatch(timings)
    rules = rules_version(config)
    last_load = warehouse.last_load_id()
    state = None if full else warehouse.gap_state()
    reason = (
        "asked for"
        if full
        else full_reason(state, now=now, rules=rules, last_load=last_load, max_age=max_age)
    )
    reads = rule_reads(config)
    clock.lap("state_s")
    if reason is not None or state is None:
        snapshot = warehouse.snapshot(reads=reads)
        clock.lap("snapshot_s")
        gaps = compute_gaps(snapshot, config=config, now=now)
        clock.lap("gaps_s")
        computation = GapComputation(
            gaps=gaps,
            mode="full",
            reason=reason or "no earlier computation",
            load_id=last_load,
            rows_read=sum(snapshot.rows().values()),
            timings=timings,
        )
    else:
        since = min(state.as_of, now) - config.grace
        types = config.refund_types
        scope = warehouse.changed_scope(
            state.load_id, updated_after=since, pending_entry_types=(types.request, types.refund)
        )
        clock.lap("scope_s")
        snapshot = warehouse.snapshot(scope=scope, reads=reads)
        clock.lap("snapshot_s")
        fresh = compute_gaps(snapshot, config=config, now=now)
        clock.lap("gaps_s")
        gaps = scope.carry(state.gaps, fresh, now=now)
        clock.lap("carry_s")
        computation = GapComputation(
            gaps=gaps,
            mode="incremental",
            reason=f"loads after {state.load_id} since {state.as_of.isoformat()}",
            load_id=last_load,
            scope_returns=scope.reveni_return_ids.len(),
            scope_orders=scope.order_numbers.len(),
            rows_read=sum(snapshot.rows().values()),
            timings=timings,
        )
    warehouse.record_gap_state(
        computation.gaps,
        as_of=now,
        load_id=last_load,
        rules=rules,
        mode=computation.mode,
        reason=computation.reason,
    )
    clock.lap("save_s")
    return computation


class _Stopwatch:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.last
        self.last = now
