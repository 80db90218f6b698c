"""Operating commands of `returnbridge`: `sync`, `replay`, `reconcile`, `receiver`,
`report month-end` (the exception queue, `exceptions ...`, is in cli_queue.py; `status` in
cli_status.py), and the helpers they share: settings, the ledger, failing with a named reason.

They read the settings from the environment (docs/settings.md), like the flows do.
Exit status as for every command: 0 ran, 2 bad input (named), 1 unexpected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

log = logging.getLogger(__name__)

# The setting that names the ledger (`settings.sync.ledger_url`).
LEDGER_URL_ENV = "RETURNBRIDGE_SYNC__LEDGER_URL"

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _fail_input(message: str) -> NoReturn:
    typer.echo(f"returnbridge: {message}", err=True)
    raise typer.Exit(2)


def _fail(message: str) -> NoReturn:
    typer.echo(f"returnbridge: {message}", err=True)
    raise typer.Exit(1)


def _settings() -> Any:
    """The settings, every one validated now (a bad one is found before any work, not at the
    end of it); a bad one: exit 2 naming each variable and its problem."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from returnbridge.settings import describe_settings_error, load_settings

    try:
        return load_settings()
    except (ValidationError, SettingsError) as exc:
        _fail_input(
            "configuration (RETURNBRIDGE_* environment / .env):\n  "
            + describe_settings_error(exc).replace("\n", "\n  ")
        )


def _ledger(*, create: bool = True, announce: bool = False) -> Any:
    """The ledger of the settings. `create=False` (the readers, and the queue's commands,
    which act on what is there): a ledger that does not exist is never created, exit 2 saying
    where it was looked for. `announce`: say on stderr which ledger is read."""
    from sqlalchemy.exc import SQLAlchemyError

    from returnbridge.ledger import Ledger
    from returnbridge.ledger.engine import LedgerMissing

    settings = _settings()
    url = settings.sync.ledger_url
    try:
        ledger = Ledger(url, create=create)
    except ValueError as exc:
        _fail_input(f"{LEDGER_URL_ENV}: {exc}")
    except LedgerMissing as exc:
        _fail_input(_missing_ledger(exc, url, given="ledger_url" in settings.sync.model_fields_set))
    except SQLAlchemyError as exc:
        log.debug("opening the ledger failed", exc_info=True)
        _fail(f"cannot open the ledger ({LEDGER_URL_ENV}): {type(exc).__name__}: {exc}")
    if announce:
        typer.echo(f"ledger: {_where(url)}", err=True)
    return ledger


def _where(url: str) -> str:
    """The ledger URL as configured, password masked, with a SQLite file's absolute path."""
    from sqlalchemy.engine import make_url

    from returnbridge.ledger.engine import resolve_url, sqlite_path

    masked = make_url(url.strip()).render_as_string(hide_password=True)
    path = sqlite_path(resolve_url(url))
    return masked if path is None or masked.endswith(str(path)) else f"{masked} ({path})"


def _missing_ledger(exc: Any, url: str, *, given: bool) -> str:
    """Where the ledger was looked for, why there, and how to point at the right one."""
    from sqlalchemy.engine import make_url

    shown = make_url(url.strip()).render_as_string(hide_password=True)
    source = f"{LEDGER_URL_ENV}={shown}" if given else f"{LEDGER_URL_ENV} not set: {shown}"
    if exc.path is None:
        return (
            f"{exc} (no returnbridge tables; {source}); set {LEDGER_URL_ENV} to the database "
            "the sync writes"
        )
    if not url.strip().partition(":///")[2].startswith(("/", "~")):
        source += f", relative to the current folder {Path.cwd()}"
    return (
        f"{exc} ({source}); run from the project folder or set {LEDGER_URL_ENV}="
        "sqlite:////absolute/path/to/returnbridge.db (or the postgresql+psycopg:// URL the sync "
        "uses)"
    )


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


async def _run_sync(settings: Any) -> Any:
    """One sync run, its outcome recorded for the watchdog's "sync failing" check."""
    from returnbridge.ledger.sync_runs import recorded_sync_run
    from returnbridge.sync.runtime import open_sync

    async with open_sync(settings) as sync:
        with recorded_sync_run(sync.ledger):
            return await sync.run()


# `sync --every`: after a failed run, wait this long before the next (doubling up to the cap).
EVERY_BACKOFF_START_SECONDS = 5.0
EVERY_BACKOFF_MAX_SECONDS = 300.0


def sync(
    every: Annotated[
        float | None,
        typer.Option(
            "--every",
            help="Run again every N seconds until interrupted (SIGINT/SIGTERM); a failed run "
            "is logged and the next one waits longer (backing off up to 5 minutes).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the sync once (or every N seconds): Reveni changes -> Centra effects, exactly once."""
    _logging()
    if every is not None and every <= 0:
        _fail_input(f"--every: must be above zero, got {every}")
    settings = _settings()  # a bad setting is exit 2, before any run
    failures = 0
    with _stop_on_sigterm():
        while True:
            try:
                report = asyncio.run(_run_sync(settings))
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                log.debug("sync failed", exc_info=True)
                if every is None:
                    _fail(f"sync failed: {type(exc).__name__}: {exc}")
                failures += 1
                wait = min(
                    EVERY_BACKOFF_MAX_SECONDS,
                    max(every, EVERY_BACKOFF_START_SECONDS) * 2 ** (failures - 1),
                )
                log.error(
                    "sync failed (%d in a row), next try in %.0f s: %s: %s",
                    failures,
                    wait,
                    type(exc).__name__,
                    exc,
                )
                typer.echo(
                    f"returnbridge: sync failed ({failures} in a row), next try in {wait:.0f} s:"
                    f" {type(exc).__name__}: {exc}",
                    err=True,
                )
                time.sleep(wait)
                continue
            failures = 0
            _print_report(report, as_json)
            if every is None:
                return
            time.sleep(every)


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM stops `sync --every` like Ctrl-C does (a clean exit between runs, or the run
    in progress interrupted as by KeyboardInterrupt: the ledger settles it on the next run)."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (tests): leave it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    settings = _settings()  # a bad setting is exit 2, before any work
    try:
        report = asyncio.run(_replay(settings, return_id, order, moment, dry_run))
    except typer.Exit:
        raise
    except Exception as exc:
        log.debug("replay failed", exc_info=True)
        _fail(f"replay failed: {type(exc).__name__}: {exc}")
    _print_report(report, as_json)


async def _replay(
    settings: Any,
    return_ids: list[str] | None,
    order: int | None,
    since: datetime | None,
    dry_run: bool,
) -> Any:
    from returnbridge.sync.runtime import open_sync

    async with open_sync(settings) as sync:
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


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[("-" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


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
        report = asyncio.run(_run_sync(settings))
        log.info("sync run after webhooks: %s", report.as_dict())

    from returnbridge.cli_serve import WebhookRunStarter

    actions: dict[str, Callable[[], object]] = {
        "inline": run_inline,
        "prefect": WebhookRunStarter(),
    }
    action = actions.get(trigger)
    # The Slack settings already loaded (and checked) above: run_receiver would otherwise load
    # the environment a second time.
    if action is None:
        run_receiver(receiver_settings, settings.sync.ledger_url, slack=settings.slack)
        return
    with DebouncedTrigger(action, delay_seconds=delay) as debounced:
        run_receiver(
            receiver_settings,
            settings.sync.ledger_url,
            on_event=debounced.notify,
            slack=settings.slack,
        )


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
