"""One watchdog run (docs/operating-guide.md#watchdog-alerts): gather the inputs, evaluate the
checks, keep the incidents in the ledger, post what Slack is owed.

    gather    probe Centra's and Reveni's credentials; read the ledger: the inbox, the newest
              Reveni webhook, actions in doubt or in flight too long, the sync runs' outcomes,
              the open instant_deadline_near exceptions; ask Reveni what changed only when
              the webhooks have been silent
    evaluate  `checks.evaluate`: pure, firing / clear / unknown per check and subject
    record    firing: open the incident (its alert owed) or see it again; clear: close it (its
              recovery owed); unknown: leave it alone
    deliver   every message still owed, from this run or an earlier one Slack did not take,
              claimed by compare-and-set so that two watchdogs never post the same message

The incidents, not the runs, decide what is posted: a condition that holds through a hundred
runs is one alert, and its recovery one message. `open_watchdog` wires a `Watchdog` from the
settings; the CLI (`returnbridge watchdog`) and the flow (`flows/watchdog.py`) start there.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import httpx

from returnbridge.clock import Now, utc_now
from returnbridge.connectors.centra.client import CentraClient
from returnbridge.connectors.errors import ApiError
from returnbridge.connectors.reveni.client import ReveniClient
from returnbridge.connectors.slack import DigestPoster, SlackError
from returnbridge.ledger.health import HeldAction, held_actions, inbox_backlog, last_webhook_at
from returnbridge.ledger.incidents import Incident, Incidents, MessageKind
from returnbridge.ledger.records import UNKNOWN_RESOURCE
from returnbridge.ledger.store import Ledger
from returnbridge.ledger.sync_runs import recent_sync_runs
from returnbridge.settings import Settings
from returnbridge.watch.checks import (
    PSP_PENDING_PREFIX,
    DeadlineException,
    HeldActions,
    Observation,
    Probe,
    RunOutcome,
    WatchInputs,
    evaluate,
    silence_window,
)
from returnbridge.watch.messages import alert_message, recovery_message
from returnbridge.watch.probes import probe_centra, probe_reveni
from returnbridge.watch.settings import WatchSettings

log = logging.getLogger(__name__)

# Sync run outcomes read at least (the check needs `sync_failures`; more say "N or more" right).
_RUNS_READ: Final = 20
_LIVE: Final = ("open", "retrying")

# The newest sync run outcomes, newest first, at most `limit` of them. The default reads the
# ledger's `sync_runs`; Prefect's flow run states can stand in (`Watchdog(run_outcomes=...)`).
RunOutcomes = Callable[[int], Sequence[RunOutcome]]


def ledger_run_outcomes(ledger: Ledger) -> RunOutcomes:
    """The sync runs' outcomes as the ledger's `sync_runs` records them."""

    def read(limit: int) -> list[RunOutcome]:
        return [
            RunOutcome(finished_at=run.finished_at, ok=run.ok, detail=run.detail)
            for run in recent_sync_runs(ledger, limit)
        ]

    return read


@dataclass(frozen=True)
class Delivery:
    """One message this run tried to post: whose, which, and whether Slack took it."""

    incident_id: int
    key: str
    kind: MessageKind
    sent: bool
    ts: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "key": self.key,
            "kind": self.kind,
            "sent": self.sent,
            "ts": self.ts,
            "error": self.error,
        }


@dataclass
class WatchReport:
    """What one watchdog run found and did (the CLI's output, the flow's figures)."""

    checked_at: datetime
    channel: str
    observations: list[Observation] = field(default_factory=list)
    opened: list[Incident] = field(default_factory=list)
    closed: list[Incident] = field(default_factory=list)
    open: list[Incident] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    slack: str = ""  # "posted", or why nothing was posted
    owed: int = 0  # messages still owed to Slack after this run

    @property
    def undelivered(self) -> bool:
        """Whether Slack is still owed a message (kept for the next run)."""
        return self.owed > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked_at": self.checked_at.isoformat(),
            "channel": self.channel,
            "open_incidents": len(self.open),
            "opened": [i.key for i in self.opened],
            "recovered": [i.key for i in self.closed],
            "incidents": [i.as_dict() for i in self.open],
            "checks": [o.as_dict() for o in self.observations],
            "messages": [d.as_dict() for d in self.deliveries],
            "messages_owed": self.owed,
            "slack": self.slack,
        }


class Watchdog:
    """The watchdog of one integration: its ledger, the API clients it probes (None: that
    system is not probed and its checks say `unknown`) and the Slack poster (None: incidents
    are kept, nothing is posted, the messages stay owed)."""

    def __init__(
        self,
        settings: WatchSettings,
        ledger: Ledger,
        *,
        centra: CentraClient | None = None,
        reveni: ReveniClient | None = None,
        poster: DigestPoster | None = None,
        slack_off_reason: str = "",
        clock: Now = utc_now,
        run_outcomes: RunOutcomes | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.incidents = Incidents(ledger)
        self.centra = centra
        self.reveni = reveni
        self.poster = poster
        self.slack_off_reason = slack_off_reason or "no Slack poster"
        self.clock = clock
        self.run_outcomes = run_outcomes or ledger_run_outcomes(ledger)

    async def run(self) -> WatchReport:
        """One run: gather, evaluate, record (`check`), then deliver (`post`)."""
        report = self.check(await self.gather())
        self.post(report)
        return report

    def check(self, inputs: WatchInputs) -> WatchReport:
        """Evaluate the checks on `inputs` and record what they found in the ledger."""
        report = WatchReport(checked_at=inputs.now, channel=self.settings.channel)
        report.observations = evaluate(inputs, self.settings)
        report.opened, report.closed = self.record(report.observations, inputs.now)
        for observation in report.observations:
            if observation.state == "unknown":
                log.info("watchdog: %s not checked: %s", observation.key, observation.detail)
        report.open = self.incidents.open_incidents()
        return report

    def post(self, report: WatchReport) -> None:
        """Deliver what Slack is owed and complete `report` with it: the messages tried, the
        incidents open now and how many messages are still owed."""
        report.deliveries, report.slack = self.deliver()
        report.open = self.incidents.open_incidents()
        report.owed = len(self.incidents.undelivered(now=self.clock()))

    # ------------------------------------------------------------------ gather

    async def gather(self) -> WatchInputs:
        """Everything the checks read, from the APIs and the ledger, as of now."""
        now = self.clock()
        settings = self.settings
        probes: list[Probe] = []
        if self.centra is not None:
            probes.append(await probe_centra(self.centra))
        reveni_ok = False
        if self.reveni is not None:
            probe = await probe_reveni(self.reveni)
            probes.append(probe)
            reveni_ok = probe.status == "ok"
        last = last_webhook_at(self.ledger, "reveni")
        window = silence_window(last, now, settings.webhook_silence)
        changes: int | None = None
        if window is not None and reveni_ok and self.reveni is not None:
            changes = await self._reveni_changes(self.reveni, window)
        backlog = inbox_backlog(self.ledger)
        unknown = self.ledger.inbox_settled(
            outcome=UNKNOWN_RESOURCE, since=now - timedelta(hours=24)
        )
        in_doubt = held_actions(
            self.ledger,
            "in_doubt",
            not_touched_since=now - settings.in_doubt_after,
            except_error_prefix=PSP_PENDING_PREFIX,
        )
        in_flight = held_actions(
            self.ledger, "in_flight", not_touched_since=now - settings.in_flight_after
        )
        gave_up = self.ledger.exceptions(code="action_in_doubt", statuses=_LIVE)
        deadlines = [
            DeadlineException(
                reveni_return_id=e.reveni_return_id,
                order_number=e.order_number,
                first_seen=e.first_seen,
                last_seen=e.last_seen,
                detail=e.detail,
            )
            for e in self.ledger.exceptions(code="instant_deadline_near", statuses=_LIVE)
        ]
        runs = list(self.run_outcomes(max(_RUNS_READ, settings.sync_failures)))
        return WatchInputs(
            now=now,
            probes=tuple(probes),
            last_reveni_webhook_at=last,
            webhooks_known=True,
            reveni_changes=changes,
            inbox_pending=backlog.pending,
            unknown_webhooks=unknown,
            inbox_oldest_at=backlog.oldest_received_at,
            in_doubt=_held(*in_doubt),
            action_in_doubt_open=len(gave_up),
            in_flight=_held(*in_flight),
            sync_runs=tuple(runs),
            instant_deadlines=tuple(deadlines),
        )

    @staticmethod
    async def _reveni_changes(reveni: ReveniClient, since: datetime) -> int | None:
        """How many returns Reveni shows changed since `since`; None when it cannot say."""
        try:
            changed = await reveni.changed_since(since)
        except ApiError as exc:
            log.warning("watchdog: could not list Reveni's changes since %s: %s", since, exc)
            return None
        return sum(1 for ret in changed.returns if ret.updated_at >= since) + len(changed.rejected)

    # ------------------------------------------------------------------ record

    def record(
        self, observations: Sequence[Observation], now: datetime
    ) -> tuple[list[Incident], list[Incident]]:
        """Open or see again what fires, close what is clear; returns (opened, closed) by this
        run (another watchdog may have done either first: then not this one's)."""
        opened: list[Incident] = []
        closed: list[Incident] = []
        for observation in observations:
            if observation.state == "firing":
                seen = self.incidents.observe(
                    observation.check,
                    observation.subject,
                    title=observation.title,
                    figure=observation.figure,
                    first_step=observation.first_step,
                    detail=observation.detail,
                    since=observation.since,
                    now=now,
                )
                if seen.opened:
                    log.warning("watchdog: opened %s: %s", observation.key, observation.figure)
                    opened.append(seen.incident)
            elif observation.state == "clear":
                done = self.incidents.close(observation.check, observation.subject, now=now)
                if done is not None:
                    log.info("watchdog: %s recovered", observation.key)
                    closed.append(done)
        return opened, closed

    # ------------------------------------------------------------------ deliver

    def deliver(self) -> tuple[list[Delivery], str]:
        """Post every message still owed, alerts before their recoveries, oldest incident
        first. A message is claimed first (compare-and-set): one a concurrent watchdog holds is
        skipped. When Slack does not take one, it is kept (`failed`, with the error) and the
        rest wait for the next run: they go to the same channel, so they would fail alike."""
        if self.poster is None:
            return [], self.slack_off_reason
        deliveries: list[Delivery] = []
        tried: set[tuple[int, str]] = set()
        while True:
            now = self.clock()
            owed = [
                m
                for m in self.incidents.undelivered(now=now)
                if (m.incident.id, m.kind) not in tried
            ]
            if not owed:
                return deliveries, "posted"
            for message in owed:
                tried.add((message.incident.id, message.kind))
                delivery = self._post(message.incident.id, message.kind)
                if delivery is None:
                    continue
                deliveries.append(delivery)
                if not delivery.sent:
                    return deliveries, f"kept for the next run: {delivery.error}"

    def _post(self, incident_id: int, kind: MessageKind) -> Delivery | None:
        """Claim one message, post it, record the outcome; None when it was not ours to send."""
        assert self.poster is not None
        now = self.clock()
        claimed = self.incidents.claim(
            incident_id, kind, lease_seconds=self.settings.lease_seconds, now=now
        )
        if claimed is None:
            return None
        composed = alert_message(claimed, now=now) if kind == "alert" else recovery_message(claimed)
        try:
            ts = self.poster.post(self.settings.channel, composed.text, composed.blocks)
        except SlackError as exc:
            log.warning("watchdog: Slack did not take the %s of %s: %s", kind, claimed.key, exc)
            self.incidents.failed(incident_id, kind, str(exc))
            return Delivery(incident_id, claimed.key, kind, sent=False, error=str(exc))
        self.incidents.delivered(incident_id, kind, ts, now=self.clock())
        return Delivery(incident_id, claimed.key, kind, sent=True, ts=ts)


def _held(count: int, actions: list[HeldAction]) -> HeldActions:
    oldest = min((a.updated_at for a in actions), default=None)
    return HeldActions(count=count, oldest=oldest, keys=tuple(a.key for a in actions))


@asynccontextmanager
async def open_watchdog(
    settings: Settings,
    *,
    ledger: Ledger | None = None,
    clock: Now = utc_now,
    post: bool = True,
    probe: bool = True,
    run_outcomes: RunOutcomes | None = None,
    centra_transport: httpx.AsyncBaseTransport | None = None,
    reveni_transport: httpx.AsyncBaseTransport | None = None,
    slack_transport: httpx.BaseTransport | None = None,
) -> AsyncIterator[Watchdog]:
    """A `Watchdog` wired from the settings, its clients open; closes what it opened.

    The probes use their own clients with the watchdog's timeout and retries
    (`RETURNBRIDGE_WATCH__PROBE_*`), not the sync's patient ones: an API that does not answer
    within them counts as unreachable. `post`: post to Slack (when RETURNBRIDGE_SLACK__TOKEN
    is set and Slack is enabled); otherwise the messages stay owed for a later run. `probe`:
    probe Centra and Reveni (False: their checks say `unknown`). `run_outcomes`: where the sync
    runs' outcomes come from (default: the ledger's `sync_runs`). The transports are the
    connectors' test hooks."""
    watch = settings.watch
    probe_update = {
        "read_retries": watch.probe_retries,
        "timeout_seconds": watch.probe_timeout_seconds,
    }
    own_ledger = ledger is None
    ledger = ledger if ledger is not None else Ledger(settings.sync.ledger_url)
    try:
        async with AsyncExitStack() as stack:
            centra: CentraClient | None = None
            reveni: ReveniClient | None = None
            if probe:
                centra = await stack.enter_async_context(
                    settings.centra.model_copy(update=probe_update).client(
                        http_transport=centra_transport
                    )
                )
                reveni = await stack.enter_async_context(
                    settings.reveni.model_copy(update=probe_update).client(
                        http_transport=reveni_transport
                    )
                )
            poster: DigestPoster | None = None
            why = ""
            if not post:
                why = "not posted (asked not to post); the messages stay owed"
            elif not settings.slack.active:
                why = (
                    "not posted: Slack is off (RETURNBRIDGE_SLACK__TOKEN unset or "
                    "RETURNBRIDGE_SLACK__ENABLED=false); the messages stay owed"
                )
            else:
                poster = stack.enter_context(settings.slack.client(http_transport=slack_transport))
            yield Watchdog(
                watch,
                ledger,
                centra=centra,
                reveni=reveni,
                poster=poster,
                slack_off_reason=why,
                clock=clock,
                run_outcomes=run_outcomes,
            )
    finally:
        if own_ledger:
            ledger.close()


async def run_watchdog(settings: Settings, **options: Any) -> WatchReport:
    """One watchdog run wired from the settings (`open_watchdog`'s options)."""
    async with open_watchdog(settings, **options) as watchdog:
        return await watchdog.run()


__all__ = [
    "Delivery",
    "RunOutcomes",
    "WatchReport",
    "Watchdog",
    "ledger_run_outcomes",
    "open_watchdog",
    "run_watchdog",
]
