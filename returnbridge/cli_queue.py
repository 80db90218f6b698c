"""`returnbridge exceptions ...`: the exception queue on the command line
(docs/runbook.md#how-entries-close).

Reading: `list` (filters, a table, `--json` or `--csv`) and `show N` (the facts, links, the
action's attempts and the whole history). Acting: `retry`, `resolve`, `ignore`, `note`,
`assign`, `unassign`, each through `ledger/queue.py` `act`, the same calls as the buttons of a
Slack digest, so every door checks the same things and leaves the same history line.

Who acts: `--as NAME`, else the environment's RETURNBRIDGE_ACTOR, else `cli:<login>`.
Times are shown in the brand's timezone (RETURNBRIDGE_RECONCILE__TIMEZONE); `--json` and
`--csv` keep ISO 8601 UTC.

None of these commands creates a ledger: one that is not there is exit 2, saying where it was
looked for. Exit status: 0 done; 2 bad input (an unknown id, a closed exception, a money-moving
retry not confirmed, a missing reason), named on stderr; 1 unexpected.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import sys
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, Any, Final, NoReturn

import typer

from returnbridge.cli_ops import _fail_input, _ledger, _settings, _table
from returnbridge.clock import utc_now
from returnbridge.ledger.records import ExceptionEvent, ExceptionRecord

ACTOR_ENV: Final = "RETURNBRIDGE_ACTOR"

exceptions_app = typer.Typer(
    help="The exception queue: list, show, retry, resolve, ignore, note, assign "
    "(owners: finance, ops, cx).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (times in UTC).")]
IdArgument = Annotated[int, typer.Argument(help="The exception's id.", show_default=False)]
AsOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        help=f"Who acts, kept in the history (default: ${ACTOR_ENV}, else cli:<login>).",
        show_default=False,
    ),
]


# -- who and when ---------------------------------------------------------------------------


def actor_of(given: str | None) -> str:
    """Who acts: `--as`, else RETURNBRIDGE_ACTOR, else `cli:<login>` (`cli:unknown` when the
    login cannot be told)."""
    if given is not None:
        if not given.strip():
            _fail_input("--as: give a name")
        return given.strip()
    from_env = os.environ.get(ACTOR_ENV, "").strip()
    if from_env:
        return from_env
    try:
        login = getpass.getuser().strip()
    except Exception:  # no USER/LOGNAME and no passwd entry (a bare container)
        login = ""
    return f"cli:{login or 'unknown'}"


def local_time(moment: datetime, zone: tzinfo) -> str:
    """`moment` in the brand's timezone to the minute: `2026-12-05 09:14 CET`."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def clock_time(moment: datetime, zone: tzinfo, now: datetime) -> str:
    """`moment` in the brand's timezone: `10:41 CET` when it is today there, else with date."""
    local = moment.astimezone(zone)
    if local.date() == now.astimezone(zone).date():
        return local.strftime("%H:%M %Z")
    return local.strftime("%Y-%m-%d %H:%M %Z")


def duration(delta: timedelta) -> str:
    """A duration as people say it: `40 s`, `12 min`, `5 h`, `1 day`, `12 days`."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    days = seconds // 86400
    return f"{days} day" if days == 1 else f"{days} days"


def ago(moment: datetime, now: datetime) -> str:
    """`3 min ago` (`just now` under a minute; `in 5 min` for a moment ahead of the clock)."""
    delta = now - moment
    if delta < timedelta(0):
        return f"in {duration(-delta)}"
    if delta < timedelta(minutes=1):
        return "just now"
    return f"{duration(delta)} ago"


def open_for(record: ExceptionRecord, now: datetime) -> timedelta:
    """How long `record` is open (a closed one: how long it was, until it was closed)."""
    end = record.resolved_at if record.closed and record.resolved_at is not None else now
    return max(end - record.first_seen, timedelta(0))


def age_days(record: ExceptionRecord, now: datetime) -> int:
    """Whole days `record` is (was) open."""
    return open_for(record, now).days


# -- rows -----------------------------------------------------------------------------------


def _row(record: ExceptionRecord, now: datetime) -> dict[str, Any]:
    """One exception as `list --json` prints it: the run summary's fields, ISO UTC times."""
    from returnbridge.core.codes import title_of

    row: dict[str, Any] = {"id": record.id, "title": title_of(record.code)}
    row.update(record.as_summary())
    row.update(
        first_seen=record.first_seen.isoformat(),
        last_seen=record.last_seen.isoformat(),
        attempts=record.attempts,
        action_key=record.action_key,
        assignee=record.assignee,
        facts=dict(record.facts),
        age_days=age_days(record, now),
    )
    return row


CSV_COLUMNS: Final = (
    "id", "title", "code", "owner", "status", "order_number", "reveni_return_id", "sku",
    "amount", "currency", "detail", "facts", "first_seen", "first_seen_local", "last_seen",
    "last_seen_local", "age_days", "attempts", "action_key", "assignee", "resolved_at",
    "resolved_at_local", "resolution_note",
)  # fmt: skip


def _csv_row(record: ExceptionRecord, now: datetime, zone: tzinfo) -> list[str]:
    row = _row(record, now)
    row["facts"] = json.dumps(row["facts"], sort_keys=True) if row["facts"] else ""
    row["first_seen_local"] = local_time(record.first_seen, zone)
    row["last_seen_local"] = local_time(record.last_seen, zone)
    resolved = record.resolved_at
    row["resolved_at"] = None if resolved is None else resolved.isoformat()
    row["resolved_at_local"] = None if resolved is None else local_time(resolved, zone)
    row["resolution_note"] = record.resolution_note
    return ["" if row[c] is None else str(row[c]) for c in CSV_COLUMNS]


def _money(amount: Any, currency: str | None) -> str | None:
    if amount is None:
        return None
    return f"{amount} {currency or ''}".strip()


def _table_row(record: ExceptionRecord, now: datetime, zone: tzinfo) -> dict[str, Any]:
    from returnbridge.core.codes import title_of

    return {
        "id": record.id,
        "title": title_of(record.code),
        "code": record.code,
        "owner": record.owner,
        "status": record.status,
        "order": record.order_number,
        "return": record.reveni_return_id,
        "SKU": record.sku,
        "amount": _money(record.amount, record.currency),
        "age": f"open {duration(open_for(record, now))}",
        "assignee": record.assignee,
        "last seen": local_time(record.last_seen, zone),
    }


# -- list -----------------------------------------------------------------------------------


@exceptions_app.command("list")
def exceptions_list(
    owner: Annotated[
        str | None, typer.Option("--owner", help="finance, ops or cx (any case).")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="open, retrying, resolved, ignored, or all (repeatable; default open+retrying).",
        ),
    ] = None,
    code: Annotated[str | None, typer.Option("--code", help="One exception code.")] = None,
    order: Annotated[int | None, typer.Option("--order", help="A Centra order number.")] = None,
    return_id: Annotated[str | None, typer.Option("--return", help="A Reveni return id.")] = None,
    sku: Annotated[str | None, typer.Option("--sku", help="A SKU.")] = None,
    assignee: Annotated[
        str | None, typer.Option("--assignee", help="Only those assigned to NAME.")
    ] = None,
    mine: Annotated[
        bool, typer.Option("--mine", help="Only those assigned to me (--as, or the default).")
    ] = False,
    as_: AsOption = None,
    as_json: JsonOption = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print CSV (RFC 4180), every field, UTC and local times.")
    ] = False,
) -> None:
    """Exceptions, oldest first: open and retrying ones unless --status says otherwise."""
    from returnbridge.core.codes import CODES, Owner
    from returnbridge.ledger.records import EXCEPTION_STATUSES

    owners = sorted(o.value for o in Owner)
    if owner is not None:
        owner = owner.strip().lower()
        if owner not in owners:
            _fail_input(f"--owner: {owner!r} is not one of {owners}")
    if code is not None and code not in CODES:
        _fail_input(f"--code: unknown code {code!r}; see docs/runbook.md")
    statuses: list[str] | None = [s.strip().lower() for s in status or ["open", "retrying"]]
    for s in statuses or []:
        if s != "all" and s not in EXCEPTION_STATUSES:
            _fail_input(f"--status: {s!r} is not one of {[*EXCEPTION_STATUSES, 'all']}")
    if statuses is not None and "all" in statuses:
        statuses = None
    if mine and assignee is not None:
        _fail_input("give --assignee NAME or --mine, not both")
    if mine:
        assignee = actor_of(as_)
    if as_json and as_csv:
        _fail_input("give --json or --csv, not both")
    zone = _settings().reconcile.zone
    now = utc_now()
    with _ledger(create=False, announce=True) as ledger:
        records = ledger.exceptions(
            owner=owner,
            statuses=statuses,
            code=code,
            reveni_return_id=return_id,
            order_number=order,
            sku=sku,
            assignee=assignee,
        )
    if as_json:
        typer.echo(json.dumps([_row(r, now) for r in records], indent=2))
    elif as_csv:
        out = io.StringIO()
        writer = csv.writer(out)  # RFC 4180: quoted as needed, CRLF line ends
        writer.writerow(CSV_COLUMNS)
        writer.writerows(_csv_row(r, now, zone) for r in records)
        typer.echo(out.getvalue(), nl=False)
    elif not records:
        typer.echo("No exceptions.")
    else:
        rows = [_table_row(r, now, zone) for r in records]
        typer.echo(_table(rows, list(rows[0])))


# -- show -----------------------------------------------------------------------------------


def _exception_or_exit(ledger: Any, exception_id: int) -> ExceptionRecord:
    found: ExceptionRecord | None = ledger.exception(exception_id)
    if found is None:
        _fail_input(f"no exception with id {exception_id}")
    return found


def _history(event: ExceptionEvent) -> dict[str, Any]:
    return {
        "at": event.at.isoformat(),
        "actor": event.actor,
        "kind": event.kind,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "note": event.note,
    }


def _fact_lines(record: ExceptionRecord, now: datetime, zone: tzinfo) -> list[str]:
    """The facts as people read them: both sides of a money mismatch, a deadline with the days
    left, anything else by name."""
    facts = dict(record.facts)
    lines: list[str] = []
    amount = _money(record.amount, record.currency)
    centra = facts.pop("centra_amount", None)
    centra_currency = facts.pop("centra_currency", None) or record.currency
    if centra is not None:
        lines.append(f"amount: {amount or 'unknown'} in Reveni, {_money(centra, centra_currency)}"
                     " in Centra")  # fmt: skip
    elif amount is not None:
        lines.append(f"amount: {amount}")
    deadline = facts.pop("deadline", None)
    if deadline is not None:
        lines.append(f"deadline: {_deadline(deadline, now, zone)}")
    lines += [f"{name}: {value}" for name, value in sorted(facts.items())]
    return lines


def _deadline(text: str, now: datetime, zone: tzinfo) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    day = moment.astimezone(zone).date()
    days = (day - now.astimezone(zone).date()).days
    if days > 1:
        due = f"due in {days} days"
    elif days == 1:
        due = "due tomorrow"
    elif days == 0:
        due = "due today"
    else:
        due = f"overdue by {-days} day{'s' if days < -1 else ''}"
    return f"{day.isoformat()} ({local_time(moment, zone)}), {due}"


@exceptions_app.command("show")
def exceptions_show(exception_id: IdArgument, as_json: JsonOption = False) -> None:
    """One exception: what, the facts, links, the action's attempts and its whole history."""
    settings = _settings()
    zone = settings.reconcile.zone
    now = utc_now()
    with _ledger(create=False, announce=True) as ledger:
        record = _exception_or_exit(ledger, exception_id)
        attempts = ledger.attempts(record.action_key) if record.action_key else []
        action = ledger.action(record.action_key) if record.action_key else None
        history = ledger.exception_history(exception_id)
    links = settings.links.links_for(record)
    document = _row(record, now)
    document["resolved_at"] = None if record.resolved_at is None else record.resolved_at.isoformat()
    document["resolution_note"] = record.resolution_note
    document["links"] = links
    document["action"] = None if action is None else {
        "key": action.key, "kind": action.kind, "state": action.state,
        "attempts": action.attempts, "centra_ref": action.centra_ref,
        "last_error": action.last_error,
    }  # fmt: skip
    document["attempts_log"] = [
        {
            "started_at": a.started_at.isoformat(),
            "request": a.request_summary,
            "response": a.response,
            "error": a.error,
            "outcome": a.outcome,
        }
        for a in attempts
    ]
    document["history"] = [_history(e) for e in history]
    if as_json:
        typer.echo(json.dumps(document, indent=2))
        return
    from returnbridge.core.codes import CODES

    who = f"assigned to {record.assignee}" if record.assignee else "unassigned"
    echo = typer.echo
    echo(f"#{record.id} {document['title']}")
    echo(f"  {record.code} ({record.owner}) - {record.status}, {who}")
    if record.code in CODES:
        echo(f"  {CODES[record.code].raised_when}")
    for label, value in (
        ("order", record.order_number),
        ("return", record.reveni_return_id),
        ("SKU", record.sku),
    ):
        if value is not None:
            echo(f"  {label}: {value}")
    for line in _fact_lines(record, now, zone):
        echo(f"  {line}")
    if record.detail:
        echo(f"  detail: {record.detail}")
    echo(f"  first seen: {local_time(record.first_seen, zone)} ({ago(record.first_seen, now)});"
         f" open {duration(open_for(record, now))}")  # fmt: skip
    echo(f"  last seen: {local_time(record.last_seen, zone)} ({ago(record.last_seen, now)})")
    if record.resolved_at is not None and record.closed:
        note = f": {record.resolution_note}" if record.resolution_note else ""
        echo(f"  {record.status}: {local_time(record.resolved_at, zone)}{note}")
    if record.attempts:
        echo(f"  seen again / retried: {record.attempts} time(s)")
    for name, url in links.items():
        echo(f"  {name}: {url}")
    if action is not None:
        error = f" ({action.last_error})" if action.last_error else ""
        echo(f"  action {action.key}: {action.state} after {action.attempts} attempt(s){error}")
    for attempt in attempts:
        echo(
            f"    {local_time(attempt.started_at, zone)} {attempt.outcome}: "
            f"{attempt.request_summary} -> {attempt.error or attempt.response}"
        )
    echo("  history:")
    for event in history:
        move = "" if event.from_status == event.to_status else (
            f" ({event.from_status or 'new'} -> {event.to_status})"
        )  # fmt: skip
        note = f": {event.note}" if event.note else ""
        echo(f"    {local_time(event.at, zone)}  {event.actor}  {event.kind}{move}{note}")
    if not history:
        echo("    (none recorded)")
    if "runbook" not in links:
        echo("  See docs/runbook.md for who acts and how.")


# -- acting ---------------------------------------------------------------------------------


def _refused(exc: BaseException) -> NoReturn:
    _fail_input(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))


def _act(action: str, exception_id: int, *, actor: str, **options: Any) -> None:
    """Do `action` through the queue's one door (`ledger/queue.py` `act`) and say what
    happened; a refusal is exit 2 with its reason."""
    from returnbridge.ledger.queue import ConfirmationNeeded, act

    with _ledger(create=False) as ledger:
        try:
            outcome = act(ledger, exception_id, action, actor=actor, **options)
        except ConfirmationNeeded as need:
            if action != "retry" or not _interactive():
                _fail_input(
                    f"{need.warning} Nothing was changed: run it again with --confirm to retry."
                )
            typer.echo(need.warning, err=True)
            if not typer.confirm("Retry anyway?", default=False, err=True):
                _fail_input("not retried; nothing was changed")
            try:
                outcome = act(
                    ledger, exception_id, action, actor=actor, **{**options, "confirmed": True}
                )
            except (KeyError, ValueError) as exc:
                _refused(exc)
        except (KeyError, ValueError) as exc:  # ExceptionClosed is a ValueError
            _refused(exc)
    typer.echo(outcome.message)


def _interactive() -> bool:
    """Whether a person can answer a question here (never block a script or a cron job)."""
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


NoteOption = Annotated[str, typer.Option("--note", help="Why, kept in the history.")]


@exceptions_app.command("retry")
def exceptions_retry(
    exception_id: IdArgument,
    confirm: Annotated[
        bool,
        typer.Option(
            "--confirm",
            help="Confirm a retry that can move money (a refund through the payment provider).",
        ),
    ] = False,
    note: NoteOption = "",
    as_: AsOption = None,
) -> None:
    """Queue the action behind an exception again (same ledger key: never a second effect).
    A retry that can refund money again needs --confirm (or a yes at the prompt)."""
    _act("retry", exception_id, actor=actor_of(as_), note=note, confirmed=confirm)


@exceptions_app.command("resolve")
def exceptions_resolve(
    exception_id: IdArgument,
    note: Annotated[str, typer.Option("--note", help="What was done (kept with it).")] = "",
    ignore: Annotated[
        bool,
        typer.Option("--ignore", help="Same as `exceptions ignore N --reason NOTE`."),
    ] = False,
    as_: AsOption = None,
) -> None:
    """Close an exception after acting on it (it reopens if the problem is found again)."""
    actor = actor_of(as_)
    if ignore:
        if not note.strip():
            _fail_input("--ignore needs --note: the reason it is accepted as is")
        _act("ignore", exception_id, actor=actor, note=note)
    else:
        _act("resolve", exception_id, actor=actor, note=note)


@exceptions_app.command("ignore")
def exceptions_ignore(
    exception_id: IdArgument,
    reason: Annotated[
        str,
        typer.Option("--reason", help="Why it is accepted as is (required; kept in the history)."),
    ],
    as_: AsOption = None,
) -> None:
    """Accept an exception as is (it stays closed if seen again, unless about more money)."""
    _act("ignore", exception_id, actor=actor_of(as_), note=reason)


@exceptions_app.command("note")
def exceptions_note(
    exception_id: IdArgument,
    text: Annotated[str, typer.Argument(help="The note.", show_default=False)],
    as_: AsOption = None,
) -> None:
    """Add a note to an exception's history (a closed one too); its status stays."""
    _act("note", exception_id, actor=actor_of(as_), note=text)


@exceptions_app.command("assign")
def exceptions_assign(
    exception_id: IdArgument,
    to: Annotated[str | None, typer.Option("--to", help="Give it to NAME.")] = None,
    me: Annotated[bool, typer.Option("--me", help="Take it (as --as, or the default).")] = False,
    as_: AsOption = None,
) -> None:
    """Give an exception to someone, or take it."""
    if (to is not None) == me:
        _fail_input("give exactly one of --to NAME or --me")
    actor = actor_of(as_)
    if to is not None and not to.strip():
        _fail_input("--to: give a name")
    _act("assign", exception_id, actor=actor, assignee=actor if me else to)


@exceptions_app.command("unassign")
def exceptions_unassign(exception_id: IdArgument, as_: AsOption = None) -> None:
    """Give an exception back to its owner team (nobody in particular)."""
    _act("unassign", exception_id, actor=actor_of(as_))


def register(app: typer.Typer) -> None:
    """Add `exceptions ...` to the `returnbridge` command."""
    app.add_typer(exceptions_app, name="exceptions")
