"""`returnbridge status`: the on-call health page in one place
(docs/operating-guide.md#watchdog-alerts).

One line per figure, each OK, STALE (should have happened by now and has not) or FAILING
(happening and going wrong), with local times in the brand's timezone and ages:

- sync (ledger `sync_runs`): FAILING when the newest RETURNBRIDGE_WATCH__SYNC_FAILURES runs
  failed; STALE when none finished for `--max-sync-age`, or none ever;
- cursor (the sync's Reveni cursor `reveni_returns`): STALE when Reveni was read only up to more
  than `--max-cursor-lag` ago, or there is no cursor;
- inbox (webhooks not processed): STALE past RETURNBRIDGE_WATCH__INBOX_MAX_AGE or
  __INBOX_MAX_PENDING;
- actions (counts per state): FAILING when an action is in_doubt, not read back, for
  RETURNBRIDGE_WATCH__IN_DOUBT_AFTER (refunds waiting for the payment provider excepted) or
  in_flight for __IN_FLIGHT_AFTER: the watchdog's thresholds;
- exceptions (open per owner, the oldest's age): always OK, the owners' queue, not the
  system's health;
- reconciliation (the warehouse's gap computations): STALE when none for
  `--max-reconcile-age`, or never;
- digests (the warehouse's digest outbox): FAILING when Slack did not take one; STALE when none
  reached Slack for `--max-digest-age` (OK when Slack is off);
- incidents (the watchdog's, in the ledger): FAILING while any is open.

It only reads: the ledger must exist (it is never created), the warehouse is opened read-only
(a missing one: "never ran"). Exit status: 0 all OK; 1 anything STALE or FAILING (for a
monitor); 2 bad input, bad settings or no ledger.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from returnbridge.cli_ops import _fail_input, _ledger, _settings, _where
from returnbridge.cli_queue import ago, clock_time, duration
from returnbridge.clock import utc_now

OK: Final = "OK"
STALE: Final = "STALE"
FAILING: Final = "FAILING"
_RANK: Final = {OK: 0, STALE: 1, FAILING: 2}
_RUNS_READ: Final = 50  # newest sync runs read to count a failing streak

_UNIT: Final = re.compile(r"(?i)(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?")
_SECONDS: Final = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


@dataclass
class Figure:
    """One line of the page: its name, state, the line a person reads, and the figures."""

    name: str
    state: str
    line: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "line": self.line, **self.data}


def parse_duration(text: str, option: str) -> timedelta:
    """`90` (seconds), `15m`, `2h`, `1d`, or ISO 8601 (`PT15M`); exit 2 naming `option`."""
    value = text.strip()
    match = _UNIT.fullmatch(value)
    if match is not None:
        unit = match.group(2).lower() if match.group(2) else None
        found = timedelta(seconds=float(match.group(1)) * _SECONDS[unit])
    else:
        from pydantic import TypeAdapter, ValidationError

        try:
            found = TypeAdapter(timedelta).validate_python(value)
        except ValidationError:
            _fail_input(
                f"{option}: {text!r} is not a duration (seconds, 15m, 2h, 1d, or ISO 8601 "
                "such as PT15M)"
            )
    if found <= timedelta(0):
        _fail_input(f"{option}: must be above zero, got {text!r}")
    return found


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# -- the ledger's figures --------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The thresholds of one `status` run (settings where they exist, else the options)."""

    max_sync_age: timedelta
    max_cursor_lag: timedelta
    max_reconcile_age: timedelta
    max_digest_age: timedelta
    sync_failures: int
    inbox_max_age: timedelta
    inbox_max_pending: int
    unknown_webhooks_max: int
    in_doubt_after: timedelta
    in_flight_after: timedelta

    def as_dict(self) -> dict[str, Any]:
        return {
            name: value.total_seconds() if isinstance(value, timedelta) else value
            for name, value in self.__dict__.items()
        }


def sync_figure(ledger: Any, limits: Limits, now: datetime, zone: tzinfo) -> Figure:
    from returnbridge.ledger.sync_runs import recent_sync_runs

    runs = recent_sync_runs(ledger, limit=max(limits.sync_failures + 1, _RUNS_READ))
    if not runs:
        return Figure("sync", STALE, "last sync never ran (no sync run recorded)", {"last": None})
    newest = runs[0]
    streak = 0
    for run in runs:
        if run.ok:
            break
        streak += 1
    age = now - newest.finished_at
    data = {
        "last": _iso(newest.finished_at),
        "ok": newest.ok,
        "age_seconds": int(age.total_seconds()),
        "failed_in_a_row": streak,
        "detail": newest.detail,
    }
    said = f"last sync {ago(newest.finished_at, now)}, {clock_time(newest.finished_at, zone, now)}"
    if newest.ok:
        said += ", ok"
    else:
        more = "" if streak < len(runs) else " or more"
        said += f", failed ({streak}{more} in a row): {newest.detail}"
    if streak >= limits.sync_failures:
        return Figure("sync", FAILING, said, data)
    if age > limits.max_sync_age:
        return Figure("sync", STALE, f"{said}; none for over {duration(limits.max_sync_age)}", data)
    return Figure("sync", OK, said, data)


def cursor_figure(ledger: Any, limits: Limits, now: datetime, zone: tzinfo) -> Figure:
    from returnbridge.sync.run import CURSOR

    stored = ledger.cursor(CURSOR)
    if stored is None:
        return Figure(
            "cursor",
            STALE,
            "cursor lag unknown: no Reveni cursor yet (no sync run has read Reveni to the end)",
            {"cursor": None},
        )
    try:
        moment = datetime.fromisoformat(stored)
    except ValueError:
        return Figure("cursor", FAILING, f"cursor {CURSOR} unreadable: {stored!r}", {})
    lag = now - moment
    data = {"cursor": moment.isoformat(), "lag_seconds": int(lag.total_seconds())}
    said = f"cursor lag {duration(lag)}: Reveni read up to {clock_time(moment, zone, now)}"
    if lag > limits.max_cursor_lag:
        return Figure("cursor", STALE, f"{said}; over {duration(limits.max_cursor_lag)}", data)
    return Figure("cursor", OK, said, data)


def inbox_figure(ledger: Any, limits: Limits, now: datetime, zone: tzinfo) -> Figure:
    from returnbridge.ledger.health import inbox_backlog
    from returnbridge.ledger.records import UNKNOWN_RESOURCE

    backlog = inbox_backlog(ledger)
    oldest = backlog.oldest_received_at
    unknown = ledger.inbox_settled(outcome=UNKNOWN_RESOURCE, since=now - timedelta(hours=24))
    data = {"pending": backlog.pending, "oldest": _iso(oldest), "unknown_24h": unknown}
    said = f"inbox {backlog.pending} webhook(s) waiting"
    if oldest is not None:
        said += f", the oldest since {clock_time(oldest, zone, now)} ({ago(oldest, now)})"
    if unknown:
        said += f"; {unknown} in 24 h named returns Reveni does not have"
    if unknown > limits.unknown_webhooks_max:
        return Figure(
            "inbox",
            FAILING,
            f"{said} (over {limits.unknown_webhooks_max}: fake webhooks? turn on Reveni signing)",
            data,
        )
    too_old = oldest is not None and now - oldest > limits.inbox_max_age
    too_many = backlog.pending > limits.inbox_max_pending
    if too_old or too_many:
        why = []
        if too_old:
            why.append(f"over {duration(limits.inbox_max_age)} old")
        if too_many:
            why.append(f"over {limits.inbox_max_pending}")
        return Figure("inbox", STALE, f"{said}; {' and '.join(why)}", data)
    return Figure("inbox", OK, said, data)


ACTION_STATES_SHOWN: Final = ("pending", "in_flight", "in_doubt", "failed", "blocked")


def actions_figure(ledger: Any, limits: Limits, now: datetime, zone: tzinfo) -> Figure:
    from returnbridge.ledger.health import held_actions
    from returnbridge.watch.checks import PSP_PENDING_PREFIX

    counts = ledger.counts()
    in_doubt, _ = held_actions(
        ledger,
        "in_doubt",
        not_touched_since=now - limits.in_doubt_after,
        except_error_prefix=PSP_PENDING_PREFIX,
    )
    in_flight, _ = held_actions(ledger, "in_flight", not_touched_since=now - limits.in_flight_after)
    data: dict[str, Any] = {state: counts.get(state, 0) for state in ACTION_STATES_SHOWN}
    data.update(in_doubt_overdue=in_doubt, in_flight_overdue=in_flight)
    said = "actions " + ", ".join(f"{data[s]} {s}" for s in ACTION_STATES_SHOWN)
    stuck = []
    if in_doubt:
        stuck.append(f"{in_doubt} in_doubt not read back for {duration(limits.in_doubt_after)}")
    if in_flight:
        stuck.append(f"{in_flight} in_flight for over {duration(limits.in_flight_after)}")
    if stuck:
        return Figure("actions", FAILING, f"{said}; {'; '.join(stuck)}", data)
    return Figure("actions", OK, said, data)


def exceptions_figure(ledger: Any, limits: Limits, now: datetime, zone: tzinfo) -> Figure:
    from returnbridge.core.codes import Owner
    from returnbridge.ledger.health import live_exceptions_by_owner

    queues = live_exceptions_by_owner(ledger)
    data: dict[str, Any] = {}
    parts = []
    for owner in (o.value for o in Owner):
        queue = queues.get(owner)
        count = 0 if queue is None else queue.live
        oldest = None if queue is None else queue.oldest_first_seen
        data[owner] = {"open": count, "oldest_first_seen": _iso(oldest)}
        parts.append(
            f"{owner} {count}" + ("" if oldest is None else f" (oldest {duration(now - oldest)})")
        )
    return Figure("exceptions", OK, "open exceptions " + ", ".join(parts), data)


def incidents_figure(ledger: Any, limits: Limits, now: datetime, zone: tzinfo) -> Figure:
    from returnbridge.ledger.incidents import Incidents

    found = Incidents(ledger).open_incidents()
    data = {"open": [i.as_dict() for i in found]}
    if not found:
        return Figure("incidents", OK, "watchdog incidents: none open", data)
    named = "; ".join(
        f"{i.title} since {clock_time(i.since, zone, now)} ({i.figure})" for i in found[:5]
    )
    more = f"; and {len(found) - 5} more" if len(found) > 5 else ""
    return Figure(
        "incidents", FAILING, f"watchdog incidents: {len(found)} open: {named}{more}", data
    )


LEDGER_FIGURES: Final[tuple[Callable[[Any, Limits, datetime, tzinfo], Figure], ...]] = (
    sync_figure,
    cursor_figure,
    inbox_figure,
    actions_figure,
    exceptions_figure,
)


# -- the warehouse's figures -----------------------------------------------------------------


def warehouse_figures(settings: Any, limits: Limits, now: datetime, zone: tzinfo) -> list[Figure]:
    """The last reconciliation and the last digest delivery, from the warehouse (read-only)."""
    import duckdb

    from returnbridge.reconcile.warehouse import Warehouse

    path = Path(settings.reconcile.warehouse_path).expanduser().resolve()
    slack = settings.slack
    if not path.exists():
        never = f"never ran (no warehouse at {path})"
        return [
            Figure("reconciliation", STALE, f"last reconciliation {never}", {"last": None}),
            _no_digests(slack, f"no digest sent: the reconciliation {never}")
            or Figure("digests", STALE, f"no digest sent: the reconciliation {never}", {}),
        ]
    try:
        warehouse = Warehouse(path, read_only=True)
    except duckdb.IOException as exc:  # the reconciliation holds it: it is running
        said = f"warehouse {path} in use (a reconciliation running?), not read: {exc}"
        return [
            Figure("reconciliation", OK, f"last reconciliation unknown: {said}", {"busy": True}),
            Figure("digests", OK, "last digest unknown: the warehouse is in use", {"busy": True}),
        ]
    except (RuntimeError, duckdb.Error) as exc:
        said = f"warehouse {path} unreadable: {exc}"
        return [
            Figure("reconciliation", FAILING, f"last reconciliation unknown: {said}", {}),
            Figure("digests", FAILING, f"last digest unknown: {said}", {}),
        ]
    with warehouse:
        return [
            _reconciliation(warehouse, limits, now, zone),
            _digests(warehouse, slack, limits, now, zone),
        ]


def _reconciliation(warehouse: Any, limits: Limits, now: datetime, zone: tzinfo) -> Figure:
    import duckdb

    last: datetime | None = None
    try:
        runs = warehouse.gap_runs()
        if runs.height:
            last = runs["computed_at"].max()
    except duckdb.CatalogException:  # a version-1 warehouse keeps no gap computations
        last = None
    if last is None:
        last = warehouse.last_loaded_at()
    gaps = warehouse.gaps()
    run_date = None if gaps.height == 0 else gaps["run_date"][0]
    data = {
        "last": _iso(last),
        "run_date": None if run_date is None else run_date.isoformat(),
        "gaps": gaps.height,
    }
    if last is None:
        return Figure("reconciliation", STALE, "last reconciliation never completed", data)
    age = now - last
    data["age_seconds"] = int(age.total_seconds())
    said = f"last reconciliation {ago(last, now)}, {clock_time(last, zone, now)}"
    if run_date is not None:
        said += f", {gaps.height} gap(s) on {run_date.isoformat()}"
    if age > limits.max_reconcile_age:
        return Figure(
            "reconciliation", STALE, f"{said}; none for over {duration(limits.max_reconcile_age)}",
            data,
        )  # fmt: skip
    return Figure("reconciliation", OK, said, data)


def _no_digests(slack: Any, why: str) -> Figure | None:
    """The digest figure when Slack is off: nothing is owed, nothing is stale."""
    if slack.active:
        return None
    off = "RETURNBRIDGE_SLACK__ENABLED is false" if not slack.enabled else "no Slack token"
    return Figure("digests", OK, f"digests off ({off}); {why}", {"slack": False})


def _digests(warehouse: Any, slack: Any, limits: Limits, now: datetime, zone: tzinfo) -> Figure:
    from returnbridge.core.codes import Owner

    sent = {o.value: warehouse.last_digest_at(o.value) for o in Owner}
    times = [t for t in sent.values() if t is not None]
    last = max(times) if times else None
    pending = warehouse.pending_digests()
    failed = [d for d in pending if d["attempts"]]
    data: dict[str, Any] = {
        "last": _iso(last),
        "by_owner": {owner: _iso(moment) for owner, moment in sorted(sent.items())},
        "pending": len(pending),
        "failed": len(failed),
        "slack": bool(slack.active),
    }
    if last is None:
        said = "no digest sent yet"
    else:
        owners = ", ".join(o for o, t in sorted(sent.items()) if t == last)
        said = f"last digest {ago(last, now)}, {clock_time(last, zone, now)} ({owners})"
    if failed:
        error = failed[-1]["last_error"] or "no error recorded"
        return Figure("digests", FAILING, f"{said}; {len(failed)} not delivered: {error}", data)
    off = _no_digests(slack, said)
    if off is not None:
        off.data.update(data)
        return off
    if last is None:
        return Figure("digests", STALE, said, data)
    if now - last > limits.max_digest_age:
        return Figure(
            "digests", STALE, f"{said}; none for over {duration(limits.max_digest_age)}", data
        )
    return Figure("digests", OK, said, data)


# -- the command -----------------------------------------------------------------------------


def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (times in UTC).")
    ] = False,
    max_sync_age: Annotated[
        str,
        typer.Option("--max-sync-age", help="STALE when no sync run finished for this long."),
    ] = "15m",  # the sync-returns deployment runs every 60 s
    max_cursor_lag: Annotated[
        str,
        typer.Option(
            "--max-cursor-lag",
            help="STALE when the Reveni cursor is this far behind now (it moves only when "
            "returns change: raise it for a quiet shop).",
        ),
    ] = "24h",
    max_reconcile_age: Annotated[
        str,
        typer.Option(
            "--max-reconcile-age", help="STALE when no reconciliation completed for this long."
        ),
    ] = "26h",  # daily at 02:15 (prefect.yaml), plus its run time
    max_digest_age: Annotated[
        str,
        typer.Option("--max-digest-age", help="STALE when no digest reached Slack for this long."),
    ] = "26h",
) -> None:
    """The on-call health page: last sync, cursor lag, inbox, actions, open exceptions, last
    reconciliation and digest, open watchdog incidents. Exit 0 healthy, 1 stale or failing."""
    settings = _settings()
    watch = settings.watch
    limits = Limits(
        max_sync_age=parse_duration(max_sync_age, "--max-sync-age"),
        max_cursor_lag=parse_duration(max_cursor_lag, "--max-cursor-lag"),
        max_reconcile_age=parse_duration(max_reconcile_age, "--max-reconcile-age"),
        max_digest_age=parse_duration(max_digest_age, "--max-digest-age"),
        sync_failures=watch.sync_failures,
        inbox_max_age=watch.inbox_max_age,
        inbox_max_pending=watch.inbox_max_pending,
        unknown_webhooks_max=watch.unknown_webhooks_max,
        in_doubt_after=watch.in_doubt_after,
        in_flight_after=watch.in_flight_after,
    )
    zone = settings.reconcile.zone
    now = utc_now()
    with _ledger(create=False, announce=True) as ledger:
        figures = [figure(ledger, limits, now, zone) for figure in LEDGER_FIGURES]
        incidents = incidents_figure(ledger, limits, now, zone)
    figures += warehouse_figures(settings, limits, now, zone)
    figures.append(incidents)
    worst = max((f.state for f in figures), key=_RANK.__getitem__)
    if as_json:
        document = {
            "state": worst,
            "healthy": worst == OK,
            "checked_at": now.isoformat(),
            "timezone": settings.reconcile.timezone,
            "ledger": _where(settings.sync.ledger_url),
            "figures": {f.name: f.as_dict() for f in figures},
            "thresholds": limits.as_dict(),
        }
        typer.echo(json.dumps(document, indent=2, default=str))
    else:
        for figure in figures:
            typer.echo(f"{figure.state:<8}{figure.line}")
    if worst != OK:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `status` to the `returnbridge` command."""
    app.command("status")(status)
