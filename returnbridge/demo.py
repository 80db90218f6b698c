"""`returnbridge demo`: run the whole cycle the project has so far against local simulators.

1. Start the Centra and Reveni simulators on free loopback ports, loaded from the scenario, and
   returnbridge's own webhook receiver, which commits every Reveni notification to the ledger's
   inbox before answering (the ledger is a SQLite file in a temporary directory, or in `--out`).
2. Subscribe to Reveni's `return.created` / `return.updated` webhooks through the API, then walk
   every scenario return through its status history (the simulator emits the webhooks into the
   receiver's inbox; once the walk is over, they wake the sync through a debounced trigger).
3. The sync runs (docs/architecture.md#the-sync-pipeline) until nothing is left to do: Reveni
   returns changed since the cursor plus the inbox -> batch-read Centra -> plan -> execute
   exactly once per ledger key -> advance the cursor. A refund an asynchronous payment provider
   has left pending keeps the sync going: the provider answers it (`/_sim/psp/settle`) and the
   sync reads the answer, until no refund is pending. Bounded by a timeout.
4. The scenario's changes made in Centra behind returnbridge's back (`after_sync` manual
   refunds) happen, then the daily reconciliation runs once: both systems into the DuckDB
   warehouse (in `--out` or the temporary directory), gaps, fixes through the ledger, and one
   digest per owner posted to a local Slack Web API stand-in.
5. The month closes: the simulators' clocks move to 07:00 on the 1st of the next month (the
   `month-end-report` deployment's schedule), the warehouse is brought up to the month's end,
   and the month-end report of the month just closed (the scenario's month) is made: Reveni's
   invoice from its (inferred) API, the settlement, the HTML, and the e-mail to a local SMTP
   server (a real one, aiosmtpd, on loopback). `--out DIR` keeps the HTML and every e-mail as
   the server received it (`*.eml`).

The run summary (docs/architecture.md#the-cli-and-the-run-summary) carries the Centra
simulator's ground truth in `centra` (what really happened in Centra, not what returnbridge
believes), the ledger's exceptions, the reconciliation's gaps (with their outcomes) and digests,
the month-end report (where it went, its key figures), the API calls made, and the keys of
later features present and empty.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from reports.digest import render_digest
from reports.month_end import render_month_end
from returnbridge.clock import Now
from returnbridge.connectors.centra.plans import get_plan
from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.connectors.email.settings import MailSettings
from returnbridge.connectors.reveni.settings import ReveniSettings
from returnbridge.connectors.reveni.wire import EVENT_TYPES
from returnbridge.connectors.slack import SlackSettings
from returnbridge.ledger import Ledger
from returnbridge.ledger.records import ExceptionRecord
from returnbridge.monthend.figures import Month
from returnbridge.monthend.run import MonthEndResult
from returnbridge.monthend.runtime import run_month_end
from returnbridge.monthend.settings import MonthEndSettings
from returnbridge.receiver.app import create_receiver
from returnbridge.receiver.settings import ReceiverSettings
from returnbridge.receiver.trigger import DebouncedTrigger
from returnbridge.reconcile.run import ReconcileReport
from returnbridge.reconcile.runtime import open_reconciliation
from returnbridge.reconcile.settings import ReconcileSettings
from returnbridge.scenario import Scenario
from returnbridge.settings import Settings
from returnbridge.simulators.centra.app import create_app as create_centra_app
from returnbridge.simulators.mail import MailStandIn
from returnbridge.simulators.reveni.app import create_app as create_reveni_app
from returnbridge.simulators.server import serve_in_thread
from returnbridge.simulators.slack import SlackStandIn
from returnbridge.sync.run import SyncReport
from returnbridge.sync.runtime import open_sync
from returnbridge.sync.settings import SyncSettings

log = logging.getLogger(__name__)

CENTRA_TOKEN = "centra-sim-token"
CENTRA_SECRET = "centra-sim-secret"
REVENI_KEY = "reveni-sim-key"
WEBHOOK_SETTLE_SECONDS = 30.0
RUN_TIMEOUT_SECONDS = 120.0
FINANCE_MAILBOX = "finance@example.com"
# The month-end report runs at 07:00 on the 1st in the brand's timezone (prefect.yaml).
MONTH_END_HOUR = 7


def empty_summary() -> dict[str, Any]:
    """The run summary with every key present and empty."""
    return {
        "centra": {"returns": [], "stock_changes": [], "refunds": [], "orders_created": []},
        "exceptions": [],
        "gaps": [],
        "digests": [],
        "report": {},
        "api_calls": {"centra_requests": 0, "centra_mutations": 0, "reveni_requests": 0},
    }


@dataclass
class DemoRun:
    """Everything the demo saw: the summary plus what the human table is made of."""

    summary: dict[str, Any]
    exceptions: list[ExceptionRecord]
    reports: list[SyncReport] = field(default_factory=list)
    webhooks_received: int = 0
    walked_steps: int = 0
    idle: bool = True
    reconciliation: ReconcileReport | None = None
    slack_messages: list[dict[str, Any]] = field(default_factory=list)
    month_end: MonthEndResult | None = None
    mails: list[bytes] = field(default_factory=list)  # every e-mail as the SMTP server got it


@contextmanager
def _running(scenario: Scenario, ledger: Ledger, wake: Callable[..., None]) -> Iterator[Any]:
    centra_app = create_centra_app(scenario, token=CENTRA_TOKEN, order_api_secret=CENTRA_SECRET)
    reveni_app = create_reveni_app(scenario, api_key=REVENI_KEY)
    receiver_app = create_receiver(ledger, ReceiverSettings(), on_event=wake)
    with (
        serve_in_thread(centra_app) as centra,
        serve_in_thread(reveni_app) as reveni,
        serve_in_thread(receiver_app) as receiver,
    ):
        yield centra.url, reveni.url, receiver.url + "/webhooks/reveni"


def demo_settings(
    scenario: Scenario,
    centra_url: str,
    reveni_url: str,
    ledger_url: str,
    *,
    initial_look_back: timedelta = timedelta(days=3650),
    warehouse_path: Path | None = None,
    slack: SlackSettings | None = None,
    mail: MailSettings | None = None,
    report_dir: Path | None = None,
) -> Settings:
    """returnbridge's settings pointing at the simulators (what RETURNBRIDGE_* would say).
    `initial_look_back`: how far the first sync reads (default: the scenario's whole
    history); `warehouse_path` / `slack`: the reconciliation's warehouse and Slack; `mail` /
    `report_dir`: the month-end report's SMTP server (e-mailed to Finance) and folder."""
    return Settings(
        centra=CentraSettings(
            base_url=centra_url,
            token=SecretStr(CENTRA_TOKEN),
            order_api_secret=SecretStr(CENTRA_SECRET),
            plan=scenario.centra.plan,
        ),
        reveni=ReveniSettings(
            base_url=reveni_url, api_key=SecretStr(REVENI_KEY), store_id=scenario.reveni.store_id
        ),
        sync=SyncSettings(
            ledger_url=ledger_url,
            returns_warehouse_id=scenario.centra.returns_warehouse,
            initial_look_back=initial_look_back,
            backoff_seconds=0.2,
            backoff_max_seconds=2.0,
            in_doubt_settle_seconds=1.0,
            psp_recheck_seconds=0.5,
        ),
        reconcile=ReconcileSettings(
            warehouse_path=warehouse_path or Path("data/warehouse.duckdb"), timezone="UTC"
        ),
        slack=slack or SlackSettings(enabled=False),
        mail=mail or MailSettings(),
        monthend=MonthEndSettings(
            recipients=[FINANCE_MAILBOX] if mail is not None else [],
            report_dir=report_dir or Path("data/reports"),
        ),
    )


def scenario_clock(scenario: Scenario) -> Now:
    """The simulators' clock: the scenario's `now`, moving with real time from the start."""
    start, began = scenario.start_time(), time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


def _wait_for_webhooks(control: httpx.Client, timeout: float = WEBHOOK_SETTLE_SECONDS) -> None:
    """Until the Reveni simulator has nothing left to deliver (bounded)."""
    deadline = time.monotonic() + timeout
    while control.get("/_sim/webhooks").raise_for_status().json()["pending"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Reveni webhooks still pending after {timeout:.0f} s")
        time.sleep(0.02)


async def _subscribe(settings: ReveniSettings, receiver_url: str) -> None:
    async with settings.client() as reveni:
        await reveni.ensure_webhook(receiver_url, list(EVENT_TYPES))


def _answer_refunds(centra: httpx.Client, say: Progress) -> None:
    """The scenario's asynchronous payment providers answer the refund requests Centra has left
    pending (the demo does not wait `psp_settle_seconds` of simulated time for them)."""
    answers = centra.post("/_sim/psp/settle", json={}).raise_for_status().json()["settled"]
    if not answers:
        return
    paid = sum(1 for a in answers if a["status"] == "SUCCESS")
    say(
        f"Centra: the payment provider answers {len(answers)} refund request(s) it had left "
        f"pending: {paid} paid, {len(answers) - paid} refused."
    )


def _idle(ledger: Ledger) -> bool:
    """Nothing left for the sync: no action owed or in doubt, no webhook unread."""
    counts = ledger.counts()
    owed = sum(counts.get(state, 0) for state in ("pending", "in_flight", "in_doubt"))
    return owed == 0 and not ledger.inbox_pending(limit=1)


Progress = Callable[[str], None]


def pacing(settings: Settings) -> str:
    """What Centra's plan allows returnbridge, in words (the demo's first progress line)."""
    plan = get_plan(settings.centra.plan)
    if plan.mutations is None or plan.requests is None or plan.complexity is None:
        return f"plan {plan.name}: no rate limits"
    share = settings.centra.budget_share
    writes = int(plan.mutations.ten_seconds * share)
    requests = int(plan.requests.ten_seconds * share)
    complexity = int(plan.complexity.ten_seconds * share)
    return (
        f"plan {plan.name}: returnbridge uses {share:.0%} of its limits, {writes} writes, "
        f"{requests} requests and {complexity:,} query complexity per 10 s, so what follows is "
        "paced and takes a while"
    )


def run_demo(
    scenario: Scenario,
    *,
    out: Path | None = None,
    timeout: float = RUN_TIMEOUT_SECONDS,
    progress: Progress | None = None,
) -> DemoRun:
    """Run the cycle over real HTTP until nothing is left to do; return what happened.
    `progress` is told each step as it starts and ends (the CLI prints it to stderr)."""
    with tempfile.TemporaryDirectory(prefix="returnbridge-demo-") as tmp:
        folder = out if out is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "ledger.db"
        for stale in folder.glob("ledger.db*"):
            stale.unlink()  # a demo starts from an empty ledger
        for stale in folder.glob("warehouse.duckdb*"):
            stale.unlink()
        for stale in folder.glob("*.eml"):
            stale.unlink()  # the e-mails kept are this run's
        with (
            Ledger(f"sqlite:///{db}") as ledger,
            SlackStandIn() as slack,
            MailStandIn(out_dir=out) as mailbox,
        ):
            # the report outlives the demo: in --out, else in a folder of the system's temp
            report_dir = (
                out if out is not None else Path(tempfile.gettempdir()) / "returnbridge-demo"
            )
            return _run(
                scenario, ledger, timeout, folder, report_dir, slack, mailbox, progress or _quiet
            )


def _quiet(_message: str) -> None:
    pass


def _run(
    scenario: Scenario,
    ledger: Ledger,
    timeout: float,
    folder: Path,
    report_dir: Path,
    slack: SlackStandIn,
    mailbox: MailStandIn,
    say: Progress,
) -> DemoRun:
    reports: list[SyncReport] = []
    warehouse = folder / "warehouse.duckdb"
    clock = scenario_clock(scenario)
    urls: dict[str, str] = {}

    def settings() -> Settings:
        # the product's default first look-back: what happened before it is reconciliation's
        return demo_settings(
            scenario,
            urls["centra"],
            urls["reveni"],
            ledger.url,
            initial_look_back=SyncSettings().initial_look_back,
            warehouse_path=warehouse,
            slack=slack.settings(),
            mail=MailSettings(host=mailbox.host, port=mailbox.port, security="none"),
            report_dir=report_dir,
        )

    async def one_run() -> None:
        n, started = len(reports) + 1, time.monotonic()
        say(f"Sync run {n}: reading Reveni and Centra, planning, writing to Centra ...")
        async with open_sync(settings(), ledger=ledger, clock=clock) as sync:
            report = await sync.run()
        reports.append(report)
        say(
            f"Sync run {n} done in {time.monotonic() - started:.1f} s: "
            f"{report.returns_seen} returns read, {sum(r.done for r in report.executed)} "
            f"Centra writes done, {report.exceptions_new} new exceptions."
        )

    async def reconcile() -> ReconcileReport:
        started = time.monotonic()
        say(
            "Daily reconciliation: both systems into DuckDB, gaps, fixes, one Slack digest "
            "per owner ..."
        )
        async with open_reconciliation(
            settings(), ledger=ledger, clock=clock, render_digest=render_digest
        ) as rec:
            report = await rec.run()
        say(
            f"Reconciliation done in {time.monotonic() - started:.1f} s: "
            f"{len(report.gaps)} gaps, {len(report.digests)} digests."
        )
        return report

    async def close_month(centra: httpx.Client, reveni: httpx.Client) -> tuple[MonthEndResult, str]:
        """07:00 on the 1st: the month's last day into the warehouse, then its report."""
        zone = settings().reconcile.zone
        month = Month.parse(clock().astimezone(zone).strftime("%Y-%m"), zone)
        at = month.end + timedelta(hours=MONTH_END_HOUR)
        for control in (centra, reveni):
            control.post("/_sim/clock", json={"set": at.isoformat()}).raise_for_status()
        say(
            f"Month end: the clocks move to {at:%Y-%m-%d %H:%M} ({zone}); the warehouse "
            f"takes {month.text}'s last day, then the month-end report of {month.text} ..."
        )
        started = time.monotonic()
        async with open_reconciliation(
            settings(), ledger=ledger, clock=lambda: at, render_digest=render_digest
        ) as rec:
            await rec.load(rec.start(None))
        result = await run_month_end(
            settings(), render=render_month_end, month=month.text, ledger=ledger, clock=lambda: at
        )
        say(
            f"Month-end report done in {time.monotonic() - started:.1f} s: "
            f"{result.html_path}; e-mail {result.mail} ({result.mail_detail})."
        )
        return result, month.text

    def run_sync() -> None:
        asyncio.run(one_run())

    # The walk's webhooks go into the inbox as they arrive, but wake the sync only once the walk
    # is over and told: the progress then reads in the order things happen (a walk slower than
    # the trigger's delay used to start "Sync run 1" in the middle of it, at random).
    walk_told = threading.Event()

    def wake(*_: object) -> None:
        if walk_told.is_set():
            trigger.notify()

    with (
        DebouncedTrigger(run_sync, delay_seconds=0.2) as trigger,
        _running(scenario, ledger, wake) as (centra_url, reveni_url, receiver_url),
        httpx.Client(base_url=centra_url, timeout=10) as centra_control,
        httpx.Client(base_url=reveni_url, timeout=10) as reveni_control,
    ):
        urls.update(centra=centra_url, reveni=reveni_url)
        say(f"Simulators on loopback: Centra {centra_url} ({pacing(settings())}).")
        say(f"Reveni {reveni_url}; returnbridge's webhook receiver {receiver_url}.")
        try:
            asyncio.run(_subscribe(settings().reveni, receiver_url))
            walked = reveni_control.post("/_sim/walk").raise_for_status().json()["steps"]
            _wait_for_webhooks(reveni_control)
            say(f"Reveni: {walked} status changes walked, their webhooks delivered.")
        finally:
            walk_told.set()
        deadline = time.monotonic() + timeout

        def drain() -> None:
            """Sync until idle: a run after the last webhook, then as long as work is owed
            (a refund pending at the payment provider included)."""
            while True:
                trigger.notify()
                if not trigger.flush(timeout=max(deadline - time.monotonic(), 0.1)):
                    break
                if trigger.failures:
                    raise RuntimeError(f"{trigger.failures} sync run(s) failed; see the log")
                if _idle(ledger) or time.monotonic() > deadline:
                    break
                _answer_refunds(centra_control, say)
                time.sleep(0.2)

        drain()
        idle = _idle(ledger)
        for refund in scenario.centra.manual_refunds:
            if refund.after_sync:
                body = {"order_number": refund.order_number, "amount": str(refund.amount)}
                centra_control.post("/_sim/manual_refunds", json=body).raise_for_status()
                say(
                    f"Centra: someone refunds {refund.amount} by hand on order "
                    f"{refund.order_number} (the scenario's after_sync plant)."
                )
        reconciliation = asyncio.run(reconcile())
        if centra_control.get("/_sim/psp").raise_for_status().json()["pending"]:
            drain()  # a refund the reconciliation re-sent waits for its payment provider
            idle = _idle(ledger)
        effects = centra_control.get("/_sim/effects").raise_for_status().json()
        # the calls of the cycle (sync and reconciliation); the month's close reads on its own
        centra_counters = centra_control.get("/_sim/counters").raise_for_status().json()
        reveni_counters = reveni_control.get("/_sim/counters").raise_for_status().json()
        received = reveni_control.get("/_sim/webhooks").raise_for_status().json()["delivered"]
        month_end, _ = asyncio.run(close_month(centra_control, reveni_control))
    exceptions = sorted(ledger.exceptions(), key=lambda e: e.id)
    summary = empty_summary()
    summary["centra"] = effects
    summary["exceptions"] = [e.as_summary() for e in exceptions]
    summary["gaps"] = reconciliation.gaps
    summary["digests"] = [d.as_summary() for d in reconciliation.digests]
    summary["report"] = month_end.summary()
    summary["api_calls"] = {
        "centra_requests": centra_counters["requests"],
        "centra_mutations": centra_counters["mutations"],
        "reveni_requests": reveni_counters["requests"],
    }
    return DemoRun(
        summary,
        exceptions,
        reports,
        received,
        walked,
        idle,
        reconciliation=reconciliation,
        slack_messages=slack.messages(),
        month_end=month_end,
        mails=[mail.raw for mail in mailbox.messages],
    )


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def render_report(run: DemoRun) -> str:
    """The demo's human output: what happened in Centra, then the exceptions by owner."""
    calls = run.summary["api_calls"]
    effects = run.summary["centra"]
    seen = run.reports[0].returns_seen if run.reports else 0
    lines = [
        f"Reveni: {run.walked_steps} status changes walked; {run.webhooks_received} webhooks "
        f"delivered to the receiver; {seen} returns read by the first sync; "
        f"{calls['reveni_requests']} API requests.",
        f"Sync: {len(run.reports)} runs; "
        + ("nothing left to do." if run.idle else "stopped at the timeout with work left."),
        f"Centra: {calls['centra_requests']} API requests, {calls['centra_mutations']} writes: "
        f"{len(effects['returns'])} returns, {len(effects['stock_changes'])} stock changes, "
        f"{len(effects['refunds'])} refund entries, {len(effects['orders_created'])} orders "
        "created.",
        "",
    ]
    if effects["refunds"]:
        credits = [
            (
                str(r["order_number"]),
                "-" if r["return_id"] is None else str(r["return_id"]),
                f"{r['amount']} {r['currency']}",
                "PSP" if r["via_psp"] else "recorded (paid by Reveni)",
                r["status"],
            )
            for r in effects["refunds"]
        ]
        lines.append("Credits on Centra orders:")
        lines.append(_table(("order", "return", "amount", "how", "status"), credits))
        lines.append("")
    if not run.exceptions:
        lines.append("Exceptions: none.")
        return "\n".join(lines)
    lines.append(f"Exceptions ({len(run.exceptions)}):")
    rows = [
        (
            e.code,
            e.owner,
            e.status,
            "-" if e.order_number is None else str(e.order_number),
            e.reveni_return_id or "-",
            e.sku or "-",
            e.detail,
        )
        for e in run.exceptions
    ]
    lines.append(_table(("code", "owner", "status", "order", "return", "sku", "detail"), rows))
    owners = Counter(e.owner for e in run.exceptions if e.status in ("open", "retrying"))
    lines.append("")
    lines.append("Open by owner: " + ", ".join(f"{o} {n}" for o, n in sorted(owners.items())))
    lines += _render_reconciliation(run)
    lines += _render_month_end(run)
    return "\n".join(lines)


def _render_reconciliation(run: DemoRun) -> list[str]:
    rec = run.reconciliation
    if rec is None:
        return []
    lines = ["", f"Reconciliation {rec.run_date}: {len(rec.gaps)} gaps."]
    if rec.gaps:
        rows = [
            (
                g["code"],
                g["owner"],
                "-" if g["order_number"] is None else str(g["order_number"]),
                g["reveni_return_id"] or "-",
                "-" if g["amount"] is None else f"{g['amount']} {g['currency']}",
                "yes" if g["fixable"] else "no",
                g["outcome"] or "-",
            )
            for g in rec.gaps
        ]
        header = ("gap", "owner", "order", "return", "amount", "fixable", "outcome")
        lines.append(_table(header, rows))
    lines.append("")
    lines.append("Digests:")
    for digest in rec.digests:
        where = f"posted to {digest.channel}" if digest.sent else f"kept ({digest.error})"
        lines.append(f"- {digest.owner}: {where}: {digest.text.splitlines()[0]}")
    return lines


def _render_month_end(run: DemoRun) -> list[str]:
    result = run.month_end
    if result is None:
        return []
    report = result.summary()
    lines = ["", f"Month-end report {report['month']}: {report['subject']}"]
    lines.append(f"- saved: {report['html_path']}")
    if report["sent"]:
        lines.append(
            f"- e-mailed to {', '.join(report['emailed_to'])} through the local SMTP server "
            f"({len(run.mails)} e-mail received there)"
        )
    else:
        lines.append(f"- not e-mailed: {report['mail_detail']}")
    unmatched = report["settlement_unmatched"]
    lines.append(
        f"- settlement: {'balanced' if report['totals']['balanced'] else 'NOT balanced'}; "
        f"{unmatched['new']} settlement_unmatched for Finance"
    )
    lines += [f"- note: {note}" for note in report["notes"]]
    return lines
