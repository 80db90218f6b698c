"""The watchdog's steps as Prefect tasks: thin calls into `returnbridge.watch.runner.Watchdog`,
so the Prefect UI shows which step a run spent its time in or failed at. No task retries: the
next scheduled run (every 15 minutes) checks again, and a message Slack did not take stays owed
in the ledger for it.
"""

from __future__ import annotations

from prefect import task
from prefect.artifacts import acreate_markdown_artifact

from returnbridge.watch.runner import Watchdog, WatchReport


@task(name="check-health", persist_result=False)
async def check_health(watchdog: Watchdog) -> WatchReport:
    """Probe the APIs, read the ledger, evaluate the checks, open and close incidents."""
    return watchdog.check(await watchdog.gather())


@task(name="post-alerts", persist_result=False)
def post_alerts(watchdog: Watchdog, report: WatchReport) -> None:
    """Post every alert and recovery still owed to the engineering channel, once each."""
    watchdog.post(report)


@task(name="publish-watch-report", persist_result=False)
async def publish_watch_report(report: WatchReport) -> None:
    """The open incidents as a markdown artifact (`watchdog-incidents`)."""
    lines = [f"# Watchdog: {len(report.open)} open incident(s)", ""]
    for incident in report.open:
        lines.append(
            f"- **{incident.title}** (`{incident.key}`) since {incident.since:%Y-%m-%d %H:%M} "
            f"UTC: {incident.figure}. First step: {incident.first_step} (alert: "
            f"{incident.alert_state})"
        )
    if report.closed:
        lines += ["", "Recovered in this run: " + ", ".join(i.key for i in report.closed)]
    lines += ["", f"Slack {report.channel}: {report.slack}; {report.owed} message(s) owed"]
    await acreate_markdown_artifact(
        "\n".join(lines),
        key="watchdog-incidents",
        description="The watchdog's open incidents after its last run.",
    )
