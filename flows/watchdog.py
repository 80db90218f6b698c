"""Deployment `watchdog` (every 15 minutes, prefect.yaml): the integration's health, alerts to
the engineering Slack channel once per incident, with a recovery message when it clears
(docs/operating-guide.md#watchdog-alerts).

Reads like the run: check (probe the APIs, read the ledger, open and close incidents), post
what Slack is owed, publish the open incidents.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from returnbridge.watch.runner import open_watchdog
from tasks.observe import observed_run, watchdog_run_name
from tasks.run_settings import run_settings
from tasks.watch_steps import check_health, post_alerts, publish_watch_report

# Each probe has its own short timeout (RETURNBRIDGE_WATCH__PROBE_TIMEOUT_SECONDS); a run that
# still takes this long is stopped, and the next one checks again.
WATCHDOG_TIMEOUT_SECONDS = 300


class AlertsNotPosted(RuntimeError):
    """Slack did not take a watchdog message: it stays owed in the ledger for the next run."""


@flow(
    name="watchdog",
    flow_run_name=watchdog_run_name,
    timeout_seconds=WATCHDOG_TIMEOUT_SECONDS,
    log_prints=False,
)
async def watchdog(post: bool = True, probe: bool = True) -> dict[str, Any]:
    """One watchdog run; returns its figures (open incidents, what opened and recovered, the
    messages posted and still owed).

    Args:
        post: Post the alerts and recoveries Slack is owed (False: they stay owed).
        probe: Probe Centra's and Reveni's credentials (False: those checks are skipped).

    A run in which Slack did not take a message fails (after recording everything), so that
    the Prefect UI shows the watchdog cannot reach its channel; the next run sends it.
    """
    await observed_run()
    settings = await run_settings()
    async with open_watchdog(settings, post=post, probe=probe) as dog:
        report = await check_health(dog)
        post_alerts(dog, report)
    await publish_watch_report(report)
    figures = report.as_dict()
    failed = [d for d in report.deliveries if not d.sent]
    if failed:
        raise AlertsNotPosted(
            f"Slack did not take {len(failed)} watchdog message(s) for {report.channel} "
            f"({failed[0].error}); they stay owed for the next run"
        )
    return figures
