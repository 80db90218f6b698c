"""`returnbridge watchdog`: the watchdog's checks, once (docs/operating-guide.md#watchdog-alerts).

It does what a run of the `watchdog` deployment does: checks the integration's health, keeps the
incidents in the ledger and posts each alert (and later its recovery) once to the engineering
Slack channel; then it prints the open incidents. Exit status: 0 when it ran, open incidents or
not (they are news, not a failure of the command); with `--fail-on-open` (for cron), 1 while an
incident is open or a message is still owed to Slack; 2 for bad settings (named); 1 for
anything unexpected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Annotated, Any, NoReturn

import typer

log = logging.getLogger(__name__)


def _fail(message: str, status: int) -> NoReturn:
    typer.echo(f"returnbridge: {message}", err=True)
    raise typer.Exit(status)


def _settings() -> Any:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from returnbridge.settings import describe_settings_error, load_settings

    try:
        return load_settings()
    except (ValidationError, SettingsError) as exc:
        said = describe_settings_error(exc).replace("\n", "\n  ")
        _fail(f"configuration (RETURNBRIDGE_* environment / .env):\n  {said}", 2)


def watchdog(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the run as one JSON document.")
    ] = False,
    fail_on_open: Annotated[
        bool,
        typer.Option(
            "--fail-on-open",
            help="Exit 1 while an incident is open or a message is still owed to Slack (cron).",
        ),
    ] = False,
    post: Annotated[
        bool,
        typer.Option(
            "--post/--no-post",
            help="Post what Slack is owed (default); --no-post keeps it owed for a later run.",
        ),
    ] = True,
) -> None:
    """Check the integration's health once: credentials, reachability, webhooks, the inbox,
    actions in doubt or stuck, failing syncs, instant-refund deadlines. Alerts and recoveries
    go to the engineering Slack channel, each once per incident."""
    from returnbridge.watch.runner import run_watchdog

    settings = _settings()
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        report = asyncio.run(run_watchdog(settings, post=post))
    except ValueError as exc:
        if "RETURNBRIDGE_" in str(exc):
            _fail(str(exc), 2)
        log.debug("watchdog failed", exc_info=True)
        _fail(f"watchdog failed: {type(exc).__name__}: {exc}", 1)
    except Exception as exc:
        log.debug("watchdog failed", exc_info=True)
        _fail(f"watchdog failed: {type(exc).__name__}: {exc}", 1)
    figures = report.as_dict()
    if as_json:
        typer.echo(json.dumps(figures, indent=2, default=str))
    else:
        _print(figures)
    if fail_on_open and (report.open or report.undelivered):
        raise typer.Exit(1)


def _at(iso: str) -> str:
    from datetime import datetime

    from returnbridge.watch.checks import format_at

    return format_at(datetime.fromisoformat(iso))


def _print(figures: dict[str, Any]) -> None:
    count = figures["open_incidents"]
    typer.echo(f"Watchdog at {_at(figures['checked_at'])}: {count} open incident(s)")
    for incident in figures["incidents"]:
        alert = incident["alert"] + (
            f" ({incident['alert_error']})" if incident["alert_error"] else ""
        )
        typer.echo(
            f"  OPEN {incident['check']}:{incident['subject']}  {incident['title']}, since "
            f"{_at(incident['since'])}"
        )
        typer.echo(f"       {incident['figure']}")
        typer.echo(f"       first step: {incident['first_step']}")
        typer.echo(f"       alert: {alert}")
    if figures["opened"]:
        typer.echo(f"  opened now: {', '.join(figures['opened'])}")
    if figures["recovered"]:
        typer.echo(f"  recovered now: {', '.join(figures['recovered'])}")
    unknown = [c for c in figures["checks"] if c["state"] == "unknown"]
    for check in unknown:
        typer.echo(f"  not checked: {check['check']}:{check['subject']} ({check['detail']})")
    sent = [m for m in figures["messages"] if m["sent"]]
    typer.echo(
        f"  Slack {figures['channel']}: {len(sent)} message(s) posted, "
        f"{figures['messages_owed']} owed; {figures['slack']}"
    )


def register(app: typer.Typer) -> None:
    """Add `watchdog` to the `returnbridge` command."""
    app.command("watchdog")(watchdog)
