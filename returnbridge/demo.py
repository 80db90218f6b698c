"""`returnbridge demo`: run the whole cycle the project has so far against local simulators.

1. Start the Centra and Reveni simulators on free loopback ports, loaded from the scenario, and
   returnbridge's own webhook receiver, which commits every Reveni notification to the ledger's
   inbox before answering (the ledger is a SQLite file in the run's folder, below).
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
   warehouse (in the run's folder), gaps, fixes through the ledger, and one
   digest per owner posted to a local Slack Web API stand-in.
5. The month closes: the simulators' clocks move to 07:00 on the 1st of the next month (the
   `month-end-report` deployment's schedule), the warehouse is brought up to the month's end,
   and the month-end report of the month just closed (the scenario's month) is made: Reveni's
   invoice from its (inferred) API, the settlement, the HTML, and the e-mail to a local SMTP
   server (a real one, aiosmtpd, on loopback). The run's folder keeps the HTML and every e-mail
   as the server received it (`*.eml`).

Everything the run makes stays in its folder, `--out DIR` or else `data/demo/` under the current
folder (the project's data folder, which git ignores; never the default ledger
`data/returnbridge.db` of a real local run, which the demo would wipe): the ledger (`ledger.db`),
the warehouse, the run summary (`summary.json`), the digests as Slack shows them
(`digests.txt`, and `slack-messages.json` as posted), the month-end report and its e-mail. The
human output ends with the next steps: the commands that read this ledger
(`RETURNBRIDGE_SYNC__LEDGER_URL=sqlite:///data/demo/ledger.db ... exceptions list`) and what to
read next. The problems the showcase plants on purpose (`SHOWCASE_PLANTS`) are marked ★ in every
table, and the demo says how many of them returnbridge found.

The run summary (docs/architecture.md#the-cli-and-the-run-summary) carries the Centra
simulator's ground truth in `centra` (what really happened in Centra, not what returnbridge
believes), the ledger's exceptions, the reconciliation's gaps (with their outcomes) and digests,
the month-end report (where it went, its key figures), the API calls made, and the keys of
later features present and empty.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from reports.digest import render_digest
from reports.month_end import render_month_end
from returnbridge.blocks_text import blocks_to_text, width
from returnbridge.clock import Now
from returnbridge.connectors.centra.plans import get_plan
from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.connectors.email.settings import MailSettings
from returnbridge.connectors.reveni.settings import ReveniSettings
from returnbridge.connectors.reveni.wire import EVENT_TYPES
from returnbridge.connectors.slack import SlackSettings
from returnbridge.ledger import Ledger
from returnbridge.ledger.records import ExceptionRecord
from returnbridge.ledger.sync_runs import recorded_sync_run
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
# Where the demo keeps what it made when no `--out` is given: the project's data folder (git
# ignores it), beside but never on the default ledger of a real local run (data/returnbridge.db).
DEMO_DIR = Path("data") / "demo"
# The setting that names the ledger every command reads (`settings.sync.ledger_url`).
LEDGER_URL_ENV = "RETURNBRIDGE_SYNC__LEDGER_URL"
WAREHOUSE_PATH_ENV = "RETURNBRIDGE_RECONCILE__WAREHOUSE_PATH"  # `settings.reconcile.warehouse_path`
PLANTED = "★"
TEXT_WIDTH = 100  # the next steps' prose is wrapped to this many columns
PROJECT_ROOT = Path(__file__).resolve().parent.parent
LEDGER_FILE = "ledger.db"
WAREHOUSE_FILE = "warehouse.duckdb"
SUMMARY_FILE = "summary.json"
DIGESTS_FILE = "digests.txt"  # every digest as Slack shows it
SLACK_FILE = "slack-messages.json"  # every message as posted: channel, text, blocks


@dataclass(frozen=True)
class Plant:
    """A problem a scenario has on purpose, and the exceptions returnbridge must raise for it
    (all of `codes`, on this order and Reveni return). `credit`: how it shows among the credits
    on Centra orders, if it does: "by_hand" (a refund made in Centra on the order, not by
    returnbridge) or "failed" (returnbridge's credit for the return, refused by the PSP)."""

    codes: tuple[str, ...]
    order_number: int
    reveni_return_id: str | None
    what: str
    credit: Literal["by_hand", "failed"] | None = None

    def applies_to(self, scenario: Scenario) -> bool:
        """Whether `scenario` has this plant: its return on its order (or, for a plant on an
        order alone, a refund made by hand in Centra on the order)."""
        if self.reveni_return_id is None:
            return any(r.order_number == self.order_number for r in scenario.centra.manual_refunds)
        return any(
            r.id == self.reveni_return_id and r.order_number == self.order_number
            for r in scenario.reveni.returns
        )

    def matches(self, code: str, order_number: int | None, reveni_return_id: str | None) -> bool:
        return (
            code in self.codes
            and order_number == self.order_number
            and reveni_return_id == self.reveni_return_id
        )


# What returnbridge/scenarios/showcase.yaml plants (its header lists them): every exception the
# data can show, and the reconciliation's and the month-end report's own.
SHOWCASE_PLANTS: tuple[Plant, ...] = (
    Plant(("order_not_found",), 9999, "ret_nf_9999", "order 9999 does not exist in Centra"),
    Plant(("order_not_returnable",), 1002, "ret_arch_1002", "order 1002 is ARCHIVED"),
    Plant(("order_not_returnable",), 1005, "ret_canc_1005", "order 1005 is CANCELLED"),
    Plant(("sku_not_in_order",), 1007, "ret_sku_1007", "SCARF-01 was never on order 1007"),
    Plant(
        ("quantity_exceeds_shipped",), 1003, "ret_part_1003", "2 jeans returned, 1 shipped so far"
    ),
    Plant(
        ("quantity_exceeds_shipped",),
        1006,
        "ret_two_1006c",
        "a third return on 1006 asks for more than is left",
    ),
    Plant(
        ("refund_amount_mismatch",),
        1011,
        "ret_mism_1011",
        "Reveni refunds 120.00, Centra computes 130.00",
    ),
    Plant(
        ("refund_failed_at_gateway",),
        1004,
        "ret_same_1004",
        "the payment provider fails refunds on order 1004",
        credit="failed",
    ),
    Plant(("exchange_out_of_stock",), 1008, "ret_exch_1008", "JEANS-32 has no stock anywhere"),
    Plant(
        ("instant_deadline_near",),
        1013,
        "ret_late_1013",
        "instant refund, not inspected 28 days later",
    ),
    Plant(
        ("unmatched_centra_refund",),
        1001,
        None,
        "49.00 refunded by hand in Centra, no Reveni refund behind it",
        credit="by_hand",
    ),
    Plant(
        ("duplicate_refund",),
        1016,
        "ret_dup_1016",
        "the credit made again by hand in Centra after returnbridge's",
        credit="by_hand",
    ),
    Plant(
        ("return_missing", "restock_missing", "refund_missing"),
        1017,
        "ret_old_1017",
        "accepted in July, before returnbridge ran (healed by the reconciliation)",
    ),
    Plant(
        ("settlement_unmatched",),
        9999,
        "ret_nf_9999",
        "Reveni paid an instant refund on an order Centra does not have",
    ),
)


def planted_problems(scenario: Scenario) -> list[Plant]:
    """The plants `scenario` has: the showcase's that it contains, when it is the showcase or
    made from it (it has one of the showcase's planted returns); none in other scenarios."""
    ids = {r.id for r in scenario.reveni.returns}
    if not any(plant.reveni_return_id in ids for plant in SHOWCASE_PLANTS):
        return []
    return [plant for plant in SHOWCASE_PLANTS if plant.applies_to(scenario)]


@dataclass(frozen=True)
class PlantFound:
    """A plant and the exceptions (ledger ids) that show it; found when each code has one."""

    plant: Plant
    exception_ids: tuple[int, ...]
    found: bool


def find_plants(plants: Sequence[Plant], exceptions: Sequence[ExceptionRecord]) -> list[PlantFound]:
    """Which plants the run's exceptions (any status) show."""
    results = []
    for plant in plants:
        hits = [e for e in exceptions if plant.matches(e.code, e.order_number, e.reveni_return_id)]
        found = {e.code for e in hits} == set(plant.codes)
        results.append(PlantFound(plant, tuple(sorted(e.id for e in hits)), found))
    return results


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
    folder: Path | None = None  # where the run's files are (the ledger, the summary, ...)
    plants: list[PlantFound] = field(default_factory=list)  # the scenario's, found or not

    @property
    def ledger_path(self) -> Path | None:
        return None if self.folder is None else self.folder / LEDGER_FILE


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
            warehouse_path=warehouse_path or Path("data/warehouse.duckdb"),
            timezone="Europe/Stockholm",
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
    Everything it makes goes to `out` (default `DEMO_DIR`, emptied of an earlier run's ledger,
    warehouse and e-mails first). `progress` is told each step as it starts and ends (the CLI
    prints it to stderr)."""
    folder = out if out is not None else DEMO_DIR
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / LEDGER_FILE
    for pattern in (f"{LEDGER_FILE}*", f"{WAREHOUSE_FILE}*", "*.eml"):
        for stale in folder.glob(pattern):
            stale.unlink()  # a demo starts from an empty ledger; the e-mails kept are this run's
    with (
        Ledger(f"sqlite:///{db}") as ledger,
        SlackStandIn() as slack,
        MailStandIn(out_dir=folder) as mailbox,
    ):
        run = _run(scenario, ledger, timeout, folder, folder, slack, mailbox, progress or _quiet)
    run.folder = folder
    run.plants = find_plants(planted_problems(scenario), run.exceptions)
    write_files(run, folder)
    return run


def write_files(run: DemoRun, folder: Path) -> None:
    """The run summary, and the digests as Slack shows them (and as posted), into `folder`."""
    document = json.dumps(run.summary, indent=2, default=str)
    (folder / SUMMARY_FILE).write_text(document + "\n", encoding="utf-8")
    shown = [_message_text(message) for message in run.slack_messages]
    (folder / DIGESTS_FILE).write_text("\n\n\n".join(shown) + "\n", encoding="utf-8")
    posted = json.dumps(run.slack_messages, indent=2, default=str, ensure_ascii=False)
    (folder / SLACK_FILE).write_text(posted + "\n", encoding="utf-8")


def _message_text(message: dict[str, Any], *, title: bool = True) -> str:
    """A posted Slack message as the channel shows it: the message with a bar on its left,
    under a line naming the channel (`title`)."""
    body = blocks_to_text(message.get("blocks") or [], fallback=str(message.get("text", "")))
    lines = [f"│ {line}".rstrip() for line in body.splitlines()]
    if title:
        lines.insert(0, f"{message.get('channel', '?')}, as Slack shows it:")
    return "\n".join(lines)


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
    warehouse = folder / WAREHOUSE_FILE
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
            with recorded_sync_run(ledger):  # as `returnbridge sync` does: `status` reads them
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
    widths = [max(width(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell + " " * (size - width(cell)) for cell, size in zip(row, widths, strict=True)
        ).rstrip()
        for row in [header, *rows]
    )


def _planted(run: DemoRun, code: str, order_number: int | None, reveni_id: str | None) -> str:
    """★ when the row shows one of the scenario's plants, else ''."""
    hit = any(p.plant.matches(code, order_number, reveni_id) for p in run.plants)
    return PLANTED if hit else ""


def render_report(run: DemoRun) -> str:
    """The demo's human output: what happened in Centra, the exceptions by owner, the
    reconciliation, one digest in full, the month-end report, the planted problems found, and
    the next steps."""
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
    ]
    if run.plants:
        lines.append(
            f"{PLANTED} marks what the scenario planted on purpose: {len(run.plants)} problems, "
            "each listed at the end with whether returnbridge found it."
        )
    lines.append("")
    lines += _render_credits(run)
    lines += _render_exceptions(run)
    lines += _render_reconciliation(run)
    lines += _render_digest_in_full(run)
    lines += _render_month_end(run)
    lines += _render_plants(run)
    lines += _render_next_steps(run)
    return "\n".join(lines)


def _render_credits(run: DemoRun) -> list[str]:
    effects = run.summary["centra"]
    if not effects["refunds"]:
        return []
    reveni_id = {r["id"]: r["external_id"] for r in effects["returns"]}
    rows = []
    for r in effects["refunds"]:
        rid = reveni_id.get(r["return_id"])
        by_hand = r["return_id"] is None  # made in Centra by someone else
        how = (
            "by hand in Centra"
            if by_hand
            else "PSP"
            if r["via_psp"]
            else "recorded (paid by Reveni)"
        )
        planted = any(
            (p.plant.credit == "by_hand" and by_hand and p.plant.order_number == r["order_number"])
            or (
                p.plant.credit == "failed"
                and r["status"] == "FAILED"
                and rid == p.plant.reveni_return_id
            )
            for p in run.plants
        )
        rows.append(
            (
                PLANTED if planted else "",
                str(r["order_number"]),
                rid or "-",
                "-" if r["return_id"] is None else str(r["return_id"]),
                f"{r['amount']} {r['currency']}",
                how,
                r["status"],
            )
        )
    header = ("", "order", "Reveni return", "Centra return", "amount", "how", "status")
    return ["Credits on Centra orders:", _table(header, rows), ""]


def _render_exceptions(run: DemoRun) -> list[str]:
    if not run.exceptions:
        return ["Exceptions: none."]
    rows = [
        (
            _planted(run, e.code, e.order_number, e.reveni_return_id),
            str(e.id),
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
    header = ("", "id", "code", "owner", "status", "order", "Reveni return", "sku", "detail")
    owners = Counter(e.owner for e in run.exceptions if e.status in ("open", "retrying"))
    return [
        f"Exceptions ({len(run.exceptions)}), in the ledger:",
        _table(header, rows),
        "",
        "Open by owner: " + ", ".join(f"{o} {n}" for o, n in sorted(owners.items())),
    ]


def _render_reconciliation(run: DemoRun) -> list[str]:
    rec = run.reconciliation
    if rec is None:
        return []
    lines = ["", f"Reconciliation {rec.run_date}: {len(rec.gaps)} gaps."]
    if rec.gaps:
        rows = [
            (
                _planted(run, g["code"], g["order_number"], g["reveni_return_id"]),
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
        header = ("", "gap", "owner", "order", "Reveni return", "amount", "fixable", "outcome")
        lines.append(_table(header, rows))
    lines.append("")
    lines.append("Digests:")
    for digest in rec.digests:
        where = f"posted to {digest.channel}" if digest.sent else f"kept ({digest.error})"
        lines.append(f"- {digest.owner}: {where}: {digest.text.splitlines()[0]}")
    return lines


def shown_digest(run: DemoRun) -> tuple[str, dict[str, Any]] | None:
    """(owner, message) of the digest the demo shows in full: the largest one Slack got."""
    if not run.slack_messages:
        return None
    message = max(run.slack_messages, key=lambda m: len(m.get("blocks") or []))
    owners = (
        {}
        if run.reconciliation is None
        else {d.channel: d.owner for d in run.reconciliation.digests}
    )
    return owners.get(str(message.get("channel")), str(message.get("channel"))), message


def _render_digest_in_full(run: DemoRun) -> list[str]:
    shown = shown_digest(run)
    if shown is None:
        return []
    owner, message = shown
    count = len(run.slack_messages)
    where = f"; all {count} are in {_shown(run.folder / DIGESTS_FILE)}" if run.folder else ""
    return [
        "",
        f"The {owner} digest in full, as Slack shows it in {message.get('channel')}{where}:",
        *_message_text(message, title=False).splitlines(),
    ]


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


def _render_plants(run: DemoRun) -> list[str]:
    if not run.plants:
        return []
    found = sum(p.found for p in run.plants)
    rows = [
        (
            "✓ found" if p.found else "✗ MISSED",
            ", ".join(p.plant.codes),
            str(p.plant.order_number),
            p.plant.reveni_return_id or "-",
            ", ".join(str(i) for i in p.exception_ids) or "-",
            p.plant.what,
        )
        for p in run.plants
    ]
    header = ("", "planted", "order", "Reveni return", "exception id", "what the scenario did")
    return [
        "",
        f"{PLANTED} Found {found} of {len(run.plants)} planted problems:",
        _table(header, rows),
    ]


# --------------------------------------------------------------------------- next steps


def _shown(path: Path) -> str:
    """`path` as typed in the current folder: relative when it is under it, else absolute."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def returnbridge_command() -> str:
    """How to call returnbridge from the current folder: `returnbridge` when the shell finds
    this one, else this installation's script (`.venv/bin/returnbridge` after `make demo`)."""
    script = Path(sys.executable).with_name("returnbridge")
    on_path = shutil.which("returnbridge")
    if on_path is not None and (not script.exists() or Path(on_path).resolve() == script.resolve()):
        return "returnbridge"
    return _shown(script) if script.exists() else "returnbridge"


def cli_commands() -> frozenset[str]:
    """The names of `returnbridge`'s commands (the next steps offer only those that exist)."""
    import typer.main

    from returnbridge.cli import app

    commands = getattr(typer.main.get_command(app), "commands", None)  # a group's, by name
    return frozenset(commands or ())


def ledger_url_for(path: Path) -> str:
    """The ledger URL naming the SQLite file `path` from the current folder."""
    return f"sqlite:///{_shown(path)}"


def example_exception(run: DemoRun) -> ExceptionRecord | None:
    """The exception the next steps show: an open one of the owner whose digest is shown in
    full, with attempts behind it if there is one (its `show` has the most to say)."""
    shown = shown_digest(run)
    owner = shown[0] if shown else None
    live = [e for e in run.exceptions if e.status in ("open", "retrying")] or run.exceptions
    mine = [e for e in live if e.owner == owner] or live
    with_attempts = [e for e in mine if e.action_key is not None] or mine
    return min(with_attempts, key=lambda e: e.id, default=None)


def next_steps(run: DemoRun) -> list[tuple[str, str]]:
    """(command, what it shows), ready to paste in the current folder."""
    rb = returnbridge_command()
    commands = cli_commands()
    steps: list[tuple[str, str]] = []
    if run.ledger_path is not None and run.ledger_path.exists():
        ledger = f"{LEDGER_URL_ENV}={ledger_url_for(run.ledger_path)} {rb}"
        if "exceptions" in commands:
            steps.append(
                (
                    f"{ledger} exceptions list",
                    "the open exceptions, oldest first (--owner finance, ops or cx: one team's)",
                )
            )
            example = example_exception(run)
            if example is not None:
                about = f"{example.code} on order {example.order_number}"
                if example.reveni_return_id:
                    about += f", Reveni return {example.reveni_return_id}"
                steps.append((f"{ledger} exceptions show {example.id}", f"one in full: {about}"))
        if "status" in commands:
            when = "" if run.reconciliation is None else f" ({run.reconciliation.run_date})"
            warehouse = f"{WAREHOUSE_PATH_ENV}={_shown(run.ledger_path.parent / WAREHOUSE_FILE)}"
            steps.append(
                (
                    f"{LEDGER_URL_ENV}={ledger_url_for(run.ledger_path)} {warehouse} {rb} status",
                    "the on-call health page; here some lines read STALE (exit 1): the demo "
                    f"ran in the scenario's time{when}, not now",
                )
            )
    steps.append(
        (
            f"{rb} demo --out out/demo",
            "the demo again, its files kept in out/demo (git ignores out/ too)",
        )
    )
    return steps


def further_reading() -> list[str]:
    """The documents to read next that this checkout has, as paths from the current folder."""
    found = []
    for name, why in (
        ("docs/runbook.md", "what each team does with each exception"),
        ("docs/on-call.md", "the on-call engineer's recipes (check health, replay a return, ...)"),
    ):
        if (PROJECT_ROOT / name).is_file():
            found.append(f"{_shown(PROJECT_ROOT / name)}: {why}")
    readme = PROJECT_ROOT / "README.md"
    if readme.is_file() and "## Run it for real" in readme.read_text(encoding="utf-8"):
        found.append(
            f'{_shown(readme)}, "Run it for real": returnbridge on this machine against your '
            "Centra and Reveni (settings in .env, then make serve)"
        )
    return found


def _wrap(text: str, width: int, *, initial_indent: str, subsequent_indent: str) -> list[str]:
    """`text` wrapped at spaces only: paths and names (docs/on-call.md) stay whole."""
    return textwrap.wrap(
        text,
        width,
        initial_indent=initial_indent,
        subsequent_indent=subsequent_indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _render_next_steps(run: DemoRun) -> list[str]:
    """Prose wrapped to `TEXT_WIDTH`; the commands never (they are pasted whole)."""
    lines = ["", "Next steps"]
    if run.folder is not None:
        intro = (
            f"This run's files are in {_shown(run.folder)}/: the ledger ({LEDGER_FILE}), the run "
            f"summary ({SUMMARY_FILE}), the digests as Slack shows them ({DIGESTS_FILE}), the "
            f"warehouse and the month-end report. The commands below name the demo's ledger with "
            f"{LEDGER_URL_ENV} (without it they would read the ledger of a real run, "
            "data/returnbridge.db). Paste them here:"
        )
        lines += _wrap(intro, TEXT_WIDTH, initial_indent="  ", subsequent_indent="  ")
    lines.append("")
    for command, what in next_steps(run):
        lines.append(f"  {command}")
        lines += _wrap(what, TEXT_WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6)
    reading = further_reading()
    if reading:
        lines += ["", "  Read next:"]
        for line in reading:
            lines += _wrap(line, TEXT_WIDTH, initial_indent="  - ", subsequent_indent="    ")
    return lines
