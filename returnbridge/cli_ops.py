"""Operating commands of `returnbridge`: `sync`, `replay`, `reconcile`, `exceptions ...`,
`receiver`.

They read the settings from the environment (README: configuration), like the flows do.
Exit status as for every command: 0 ran, 2 bad input (named), 1 unexpected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from returnbridge.ledger.records import ExceptionRecord

log = logging.getLogger(__name__)

exceptions_app = typer.Typer(
    help="The exception queue: list, show, resolve, retry (owners: finance, ops, cx).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _fail_input(message: str) -> NoReturn:
    typer.echo(f"returnbridge: {message}", err=True)
    raise typer.Exit(2)


def _fail(message: str) -> NoReturn:
    typer.echo(f"returnbridge: {message}", err=True)
    raise typer.Exit(1)


def _settings() -> Any:
    from pydantic import ValidationError

    from returnbridge.settings import load_settings

    try:
        return load_settings()
    except ValidationError as exc:
        _fail_input(f"configuration (RETURNBRIDGE_* environment / .env): {exc}")


def _ledger() -> Any:
    from returnbridge.ledger import Ledger

    try:
        return Ledger(_settings().sync.ledger_url)
    except ValueError as exc:
        _fail_input(f"RETURNBRIDGE_SYNC__LEDGER_URL: {exc}")


def _logging() -> None:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    # one "HTTP Request" line per call drowns what returnbridge says; its failures still show
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _print_report(report: Any, as_json: bool) -> None:
    figures = report.as_dict()
    if as_json:
        typer.echo(json.dumps(figures, indent=2, default=str))
        return
    for key, value in figures.items():
        if key == "planned_calls":
            continue
        typer.echo(f"{key:>18}: {value}")
    if report.dry_run:
        typer.echo("")
        typer.echo(f"Planned Centra calls ({len(report.planned_calls)}), nothing was sent:")
        for line in report.planned_calls:
            typer.echo(f"  {line}")


async def _run_sync() -> Any:
    """One sync run, its outcome recorded for the watchdog's "sync failing" check."""
    from returnbridge.ledger.sync_runs import recorded_sync_run
    from returnbridge.sync.runtime import open_sync

    async with open_sync(_settings()) as sync:
        with recorded_sync_run(sync.ledger):
            return await sync.run()


def sync(
    every: Annotated[
        float | None,
        typer.Option("--every", help="Run again every N seconds until interrupted."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the sync once (or every N seconds): Reveni changes -> Centra effects, exactly once."""
    _logging()
    while True:
        try:
            report = asyncio.run(_run_sync())
        except Exception as exc:
            log.debug("sync failed", exc_info=True)
            _fail(f"sync failed: {type(exc).__name__}: {exc}")
        _print_report(report, as_json)
        if every is None:
            return
        time.sleep(every)


def replay(
    return_id: Annotated[
        list[str] | None, typer.Option("--return", help="Reveni return id (repeatable).")
    ] = None,
    order: Annotated[
        int | None, typer.Option("--order", help="Every return of this Centra order number.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Every return changed since DATE (YYYY-MM-DD or ISO time)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the Centra calls it would make; write nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the sync again for some returns; the cursor stays where it is. Safe to repeat: the
    ledger keys make every effect happen once."""
    chosen = [x is not None and x != [] for x in (return_id, order, since)]
    if sum(chosen) != 1:
        _fail_input("give exactly one of --return, --order, --since")
    _logging()
    moment: datetime | None = None
    if since is not None:
        try:
            parsed = datetime.fromisoformat(since) if "T" in since else date.fromisoformat(since)
        except ValueError:
            _fail_input(f"--since: {since!r} is not a date (YYYY-MM-DD) or an ISO time")
        if isinstance(parsed, datetime):
            moment = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        else:
            moment = datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
    try:
        report = asyncio.run(_replay(return_id, order, moment, dry_run))
    except Exception as exc:
        log.debug("replay failed", exc_info=True)
        _fail(f"replay failed: {type(exc).__name__}: {exc}")
    _print_report(report, as_json)


async def _replay(
    return_ids: list[str] | None, order: int | None, since: datetime | None, dry_run: bool
) -> Any:
    from returnbridge.sync.runtime import open_sync

    async with open_sync(_settings()) as sync:
        ids: list[str] | None = list(return_ids) if return_ids else None
        if order is not None:
            ids = await returns_of_order(sync, order)
            if not ids:
                _fail_input(f"--order {order}: neither Reveni nor the ledger knows a return on it")
        return await sync.run(return_ids=ids, since=since, dry_run=dry_run)


async def returns_of_order(sync: Any, order: int) -> list[str]:
    """Reveni returns on a Centra order: what the ledger knows plus Reveni's search."""
    ids = {r.reveni_return_id for r in sync.ledger.actions() if r.order_number == order}
    ids |= {
        e.reveni_return_id for e in sync.ledger.exceptions(order_number=order) if e.reveni_return_id
    }
    async for ret in sync.reveni.iter_returns(search=str(order)):
        if ret.order.number == order:
            ids.add(ret.id)
    return sorted(ids)


# -- exceptions ------------------------------------------------------------------------------


def _row(exc: ExceptionRecord) -> dict[str, Any]:
    row = exc.as_summary()
    row.update(
        id=exc.id,
        first_seen=exc.first_seen.isoformat(),
        last_seen=exc.last_seen.isoformat(),
        attempts=exc.attempts,
        action_key=exc.action_key,
    )
    return row


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[("-" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


@exceptions_app.command("list")
def exceptions_list(
    owner: Annotated[str | None, typer.Option("--owner", help="finance, ops or cx.")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="open, retrying, resolved, ignored (default open+retrying)."),
    ] = None,
    code: Annotated[str | None, typer.Option("--code", help="One exception code.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Exceptions, oldest first."""
    from returnbridge.core.codes import CODES, Owner
    from returnbridge.ledger.records import EXCEPTION_STATUSES

    if owner is not None and owner not in {o.value for o in Owner}:
        _fail_input(f"--owner: {owner!r} is not one of {sorted(o.value for o in Owner)}")
    if code is not None and code not in CODES:
        _fail_input(f"--code: unknown code {code!r}; see docs/runbook.md")
    statuses = status or ["open", "retrying"]
    for s in statuses:
        if s not in EXCEPTION_STATUSES:
            _fail_input(f"--status: {s!r} is not one of {list(EXCEPTION_STATUSES)}")
    with _ledger() as ledger:
        rows = [_row(e) for e in ledger.exceptions(owner=owner, statuses=statuses, code=code)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo("No exceptions.")
    else:
        columns = ["id", "code", "owner", "status", "order_number", "reveni_return_id", "sku",
                   "amount", "currency", "last_seen"]  # fmt: skip
        typer.echo(_table(rows, columns))


def _exception_or_exit(ledger: Any, exception_id: int) -> ExceptionRecord:
    found: ExceptionRecord | None = ledger.exception(exception_id)
    if found is None:
        _fail_input(f"no exception with id {exception_id}")
    return found


@exceptions_app.command("show")
def exceptions_show(
    exception_id: Annotated[int, typer.Argument(help="The exception's id.")],
    as_json: JsonOption = False,
) -> None:
    """One exception with the attempts of the action behind it: why it happened."""
    with _ledger() as ledger:
        exc = _exception_or_exit(ledger, exception_id)
        attempts = ledger.attempts(exc.action_key) if exc.action_key else []
        action = ledger.action(exc.action_key) if exc.action_key else None
    document = _row(exc)
    document["resolution_note"] = exc.resolution_note
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
    if as_json:
        typer.echo(json.dumps(document, indent=2))
        return
    from returnbridge.core.codes import CODES

    typer.echo(f"#{exc.id} {exc.code} ({exc.owner}) - {exc.status}")
    typer.echo(f"  {CODES[exc.code].raised_when}")
    for key in ("order_number", "reveni_return_id", "sku", "amount", "currency", "detail",
                "first_seen", "last_seen", "attempts", "resolution_note"):  # fmt: skip
        if document.get(key) not in (None, ""):
            typer.echo(f"  {key}: {document[key]}")
    if document["action"]:
        a = document["action"]
        typer.echo(f"  action {a['key']}: {a['state']} after {a['attempts']} attempt(s)")
    for attempt in document["attempts_log"]:
        typer.echo(
            f"    {attempt['started_at']} {attempt['outcome']}: {attempt['request']}"
            f" -> {attempt['error'] or attempt['response']}"
        )
    typer.echo("  See docs/runbook.md for who acts and how.")


@exceptions_app.command("resolve")
def exceptions_resolve(
    exception_id: Annotated[int, typer.Argument(help="The exception's id.")],
    note: Annotated[str, typer.Option("--note", help="What was done (kept with it).")] = "",
    ignore: Annotated[
        bool, typer.Option("--ignore", help="Mark ignored (stays closed if seen again).")
    ] = False,
) -> None:
    """Close an exception after acting on it (reopened if the problem is found again)."""
    with _ledger() as ledger:
        _exception_or_exit(ledger, exception_id)
        done = ledger.resolve_exception(
            exception_id,
            note=note or "resolved by hand",
            status="ignored" if ignore else "resolved",
        )
    typer.echo(f"#{done.id} {done.code}: {done.status}")


@exceptions_app.command("retry")
def exceptions_retry(
    exception_id: Annotated[int, typer.Argument(help="The exception's id.")],
) -> None:
    """Queue the action behind an exception again (same ledger key: never a second effect)."""
    from returnbridge.core.codes import GAP_ONLY_CODES

    with _ledger() as ledger:
        record = _exception_or_exit(ledger, exception_id)
        keys = ledger.retry_exception(exception_id)
    if record.code == "duplicate_refund" and (record.action_key or "").startswith("refund:"):
        typer.echo(
            f"#{exception_id}: released; the next sync run refunds {record.reveni_return_id} "
            "through the PSP although a refund made by hand in Centra looks like it."
        )
    elif keys:
        typer.echo(f"#{exception_id}: re-queued {', '.join(keys)}; the next sync run sends it.")
    elif record.code in GAP_ONLY_CODES:
        typer.echo(
            f"#{exception_id}: marked retrying; {record.code} is found by the reconciliation, so "
            "the next reconciliation (or `returnbridge reconcile` now) re-checks and fixes it."
        )
    else:
        typer.echo(
            f"#{exception_id}: marked retrying; no failed action behind it, so the next sync "
            "run re-checks the return."
        )


def receiver(
    host: Annotated[str | None, typer.Option(help="Interface (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default from settings).")] = None,
    trigger: Annotated[
        str,
        typer.Option(
            help="What a webhook wakes: 'inline' runs the sync in this process, 'prefect' starts "
            "a run of the sync-returns deployment, 'none' only stores (the schedule picks it up)."
        ),
    ] = "inline",
    delay: Annotated[
        float, typer.Option(help="Coalesce a burst of webhooks into one run within N seconds.")
    ] = 1.0,
) -> None:
    """Serve returnbridge's webhook receiver: Reveni and Centra events -> ledger inbox -> sync."""
    from returnbridge.receiver.app import run_receiver
    from returnbridge.receiver.trigger import DebouncedTrigger

    if trigger not in ("inline", "prefect", "none"):
        _fail_input(f"--trigger: {trigger!r} is not one of inline, prefect, none")
    _logging()
    settings = _settings()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    receiver_settings = settings.receiver.model_copy(update=overrides)

    def run_inline() -> None:
        report = asyncio.run(_run_sync())
        log.info("sync run after webhooks: %s", report.as_dict())

    from returnbridge.cli_serve import WebhookRunStarter

    actions: dict[str, Callable[[], object]] = {
        "inline": run_inline,
        "prefect": WebhookRunStarter(),
    }
    action = actions.get(trigger)
    if action is None:
        run_receiver(receiver_settings, settings.sync.ledger_url)
        return
    with DebouncedTrigger(action, delay_seconds=delay) as debounced:
        run_receiver(receiver_settings, settings.sync.ledger_url, on_event=debounced.notify)


async def _run_reconciliation(settings: Any, run_date: date | None, fix: bool) -> Any:
    from reports.digest import render_digest
    from returnbridge.reconcile.runtime import open_reconciliation

    settings.reconcile = settings.reconcile.model_copy(update={"fix": fix})
    async with open_reconciliation(settings, render_digest=render_digest) as reconciliation:
        return await reconciliation.run(run_date)


def reconcile(
    run_date: Annotated[
        str | None,
        typer.Option(
            "--date",
            help="The run date (YYYY-MM-DD, the brand's timezone): gaps are recorded under it "
            "and aged to the end of that day (default: today).",
        ),
    ] = None,
    fix: Annotated[
        bool, typer.Option("--fix/--no-fix", help="Re-enqueue fixable gaps (default: yes).")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """The daily reconciliation once: load both systems into the warehouse, find the gaps,
    re-enqueue the fixable ones through the ledger, post one digest per owner to Slack."""
    day: date | None = None
    if run_date is not None:
        try:
            day = date.fromisoformat(run_date)
        except ValueError:
            _fail_input(f"--date: {run_date!r} is not a date (YYYY-MM-DD)")
    settings = _settings()
    _logging()
    try:
        report = asyncio.run(_run_reconciliation(settings, day, fix))
    except Exception as exc:
        log.debug("reconciliation failed", exc_info=True)
        _fail(f"reconciliation failed: {type(exc).__name__}: {exc}")
    figures = report.as_dict()
    if as_json:
        typer.echo(json.dumps(figures, indent=2, default=str))
        return
    typer.echo(f"Reconciliation {figures['run_date']} (as of {figures['as_of']})")
    typer.echo(f"  loaded: {figures['loaded']}")
    typer.echo(f"  gaps: {figures['gaps_by_code'] or 'none'}")
    typer.echo(f"  outcomes: {figures['gap_outcomes'] or 'none'}")
    if figures["gaps"]:
        columns = ["code", "owner", "order_number", "reveni_return_id", "sku", "amount",
                   "currency", "age_days", "fixable", "outcome"]  # fmt: skip
        typer.echo(_table(figures["gaps"], columns))
    for digest in figures["digests"]:
        state = f"posted to {digest['channel']}" if digest["sent"] else f"kept: {digest['error']}"
        typer.echo(f"  digest {digest['owner']} ({digest['run_date']}): {state}")


report_app = typer.Typer(help="Reports for people: the month-end report.", no_args_is_help=True)


@report_app.command("month-end")
def month_end(
    month: Annotated[
        str | None,
        typer.Option(
            "--month",
            help="The month (YYYY-MM, the brand's timezone; default: the last complete one).",
        ),
    ] = None,
    invoice: Annotated[
        Path | None,
        typer.Option(
            "--invoice",
            help="Reveni's invoice as the dashboard's CSV export (docs/invoice-csv.md); "
            "default: Reveni's invoice API.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Save the HTML here (default: the report directory)."),
    ] = None,
    send: Annotated[
        bool,
        typer.Option(
            "--send/--no-send",
            help="E-mail it to RETURNBRIDGE_MONTHEND__RECIPIENTS (once per month and list).",
        ),
    ] = True,
    resend: Annotated[
        bool, typer.Option("--resend", help="E-mail it again although it was sent before.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The month-end report: Reveni's invoice against Centra, money out by who paid, what went
    wrong and a 12-month trend, saved as HTML and e-mailed to Finance."""
    from reports.month_end import render_month_end
    from returnbridge.monthend.invoice import InvoiceFileError
    from returnbridge.monthend.runtime import run_month_end

    settings = _settings()
    _logging()
    try:
        result = asyncio.run(
            run_month_end(
                settings,
                render=render_month_end,
                month=month,
                invoice_file=invoice,
                out=out,
                send=send,
                resend=resend,
            )
        )
    except InvoiceFileError as exc:
        _fail_input(f"--invoice: {exc}")
    except ValueError as exc:
        if str(exc).startswith("month:"):
            _fail_input(f"--{exc}")
        log.debug("month-end report failed", exc_info=True)
        _fail(f"month-end report failed: {type(exc).__name__}: {exc}")
    except Exception as exc:
        log.debug("month-end report failed", exc_info=True)
        _fail(f"month-end report failed: {type(exc).__name__}: {exc}")
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        typer.echo(f"Month-end {summary['month']}: {summary['subject']}")
        for note in summary["notes"]:
            typer.echo(f"  note: {note}")
        typer.echo(f"  HTML: {summary['html_path']}")
        typer.echo(f"  e-mail: {summary['mail']} ({summary['mail_detail']})")
        unmatched = summary["settlement_unmatched"]
        typer.echo(
            f"  settlement_unmatched: {unmatched['new']} new, {unmatched['still_open']} still "
            f"open, {unmatched['healed']} healed"
        )
    if result.mail == "failed":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the operating commands to the `returnbridge` command."""
    app.add_typer(report_app, name="report")
    app.command("sync")(sync)
    app.command("reconcile")(reconcile)
    app.command("replay")(replay)
    app.command("receiver")(receiver)
    app.add_typer(exceptions_app, name="exceptions")
