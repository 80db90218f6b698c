"""What makes a flow run readable in the Prefect UI
(docs/architecture.md#deployments-and-scale-out): a name that says what started it and when, a
`trigger:` tag, and the library's own log lines in the run's logs.

- **Names**: `sync-returns-<trigger>-<time>`, `reconcile-<run_date>`, `month-end-<month>`, made
  by the `flow_run_name` callables below when the run starts.
- **Trigger**: `webhook` when the receiver started the run (it tags it `trigger:webhook`),
  `schedule` for the server's scheduled runs (Prefect tags those `auto-scheduled`), else
  `manual` (the UI's Run button, `prefect deployment run`, a test). `tag_trigger` adds the tag
  the run does not have yet, so every run can be filtered by it.
- **Logs**: Prefect sends its own loggers to the API; `returnbridge.*` would reach a run's logs
  only through `PREFECT_LOGGING_EXTRA_LOGGERS`, which a worker's shell may not set, and whose
  handler warns about every line logged outside a run. `attach_library_logs` does it in code,
  at INFO, with a handler that keeps lines outside a run on the console only, and raises
  httpx's loggers to WARNING: one "HTTP Request" line per call would drown the run's own lines
  (its failures still show).
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Literal

from prefect.client.orchestration import get_client
from prefect.exceptions import MissingContextError
from prefect.logging.handlers import APILogHandler
from prefect.runtime import flow_run

Trigger = Literal["webhook", "schedule", "manual"]
TRIGGER_TAG_PREFIX = "trigger:"
LIBRARY_LOGGER = "returnbridge"
NOISY_LOGGERS = ("httpx", "httpcore")

log = logging.getLogger(__name__)


def trigger_of(tags: list[str]) -> Trigger:
    """What started a run with these tags."""
    if f"{TRIGGER_TAG_PREFIX}webhook" in tags:
        return "webhook"
    if f"{TRIGGER_TAG_PREFIX}schedule" in tags or "auto-scheduled" in tags:
        return "schedule"
    return "manual"


def _started() -> datetime:
    scheduled = flow_run.scheduled_start_time
    moment = scheduled if isinstance(scheduled, datetime) else datetime.now(UTC)
    return moment.astimezone(UTC)


def sync_run_name() -> str:
    """`sync-returns-schedule-20261206T074500Z`: what started it, and when (UTC)."""
    return f"sync-returns-{trigger_of(list(flow_run.tags))}-{_started():%Y%m%dT%H%M%SZ}"


def reconcile_run_name() -> str:
    """`reconcile-2026-10-30`, or `reconcile-today-<time>` when no run date is given."""
    run_date = flow_run.parameters.get("run_date")
    if run_date:
        return f"reconcile-{run_date}"
    return f"reconcile-today-{_started():%Y%m%dT%H%MZ}"


def month_end_run_name() -> str:
    """`month-end-2026-10`, or `month-end-last-<time>` for the last complete month."""
    month = flow_run.parameters.get("month")
    if month:
        return f"month-end-{month}"
    return f"month-end-last-{_started():%Y%m%dT%H%MZ}"


def watchdog_run_name() -> str:
    """`watchdog-<time>`."""
    return f"watchdog-{_started():%Y%m%dT%H%MZ}"


class RunLogHandler(APILogHandler):
    """Prefect's API log handler for the library's loggers: a line logged outside a flow run
    (the receiver, the CLI, a test) is not an error, it simply has no run to go to."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], MissingContextError):
            return
        super().handleError(record)


def attach_library_logs(level: int = logging.INFO) -> None:
    """Send `returnbridge.*` records at `level` and above to the run's logs in the UI (once per
    process), and keep httpx's request lines out of them."""
    library = logging.getLogger(LIBRARY_LOGGER)
    if library.level == logging.NOTSET or library.level > level:
        library.setLevel(level)
    if not any(isinstance(h, APILogHandler) for h in library.handlers):
        library.addHandler(RunLogHandler())
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


async def tag_trigger() -> Trigger:
    """Add `trigger:<what started it>` to this run's tags (if it lacks one); returns it.
    Outside a deployment run (a flow called directly) nothing is written."""
    tags = list(flow_run.tags)
    trigger = trigger_of(tags)
    run_id = flow_run.id
    if run_id is None or any(t.startswith(TRIGGER_TAG_PREFIX) for t in tags):
        return trigger
    try:
        async with get_client() as client:
            await client.update_flow_run(run_id, tags=[*tags, f"{TRIGGER_TAG_PREFIX}{trigger}"])
    except Exception as exc:  # a label is not worth failing a run for
        log.warning("could not tag flow run %s with its trigger: %s", run_id, exc)
    return trigger


async def observed_run() -> Trigger:
    """Everything above, for the first line of a flow."""
    attach_library_logs()
    return await tag_trigger()
