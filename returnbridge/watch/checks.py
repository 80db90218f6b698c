"""The watchdog's checks: pure functions from plain inputs to observations
(docs/operating-guide.md#watchdog-alerts).

Each check says, for each thing it watches (its *subject*), one of three things:

- `firing`: the condition holds; the runner opens an incident or sees the open one again;
- `clear`: it does not; the runner closes an open incident (and a recovery message is owed);
- `unknown`: the check could not tell (an input is missing: Reveni could not be asked, say); the
  runner leaves the incident as it is, so an outage of one input neither opens nor closes
  anything about another.

A firing observation carries what a person reads in the alert: a title (what), `since` (since
when, as far as the inputs know), the figure (the number that shows it) and the first step (one
line: what to do first).

Nothing here reads a clock, a database or the network: `WatchInputs` holds everything, gathered
by `runner.py`, so every check is tested with plain values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, Literal

from returnbridge.watch.settings import WatchSettings

ProbeStatus = Literal["ok", "auth_failed", "unreachable"]
State = Literal["firing", "clear", "unknown"]

# last_error of a refund that waits for the payment provider's answer (`sync.outcomes.PSP_PENDING`,
# which this room may not import; a test holds the two equal). Such a refund is in_doubt on
# purpose and for as long as the provider takes: `refund_pending_too_long` tells Finance.
PSP_PENDING_PREFIX: Final = "refund pending at the PSP"
SYSTEMS: Final = ("centra", "reveni")
_NAMES: Final = {"centra": "Centra", "reveni": "Reveni"}


class Check(StrEnum):
    """The watchdog's checks: the first half of an incident's key (`check:subject`)."""

    CREDENTIALS = "credentials"  # subject: centra, reveni
    UNREACHABLE = "unreachable"  # subject: centra, reveni
    WEBHOOKS_SILENT = "webhooks_silent"  # subject: reveni
    INBOX_BACKLOG = "inbox_backlog"  # subject: inbox
    ACTIONS_IN_DOUBT = "actions_in_doubt"  # subject: ledger
    ACTIONS_STUCK = "actions_stuck"  # subject: ledger (in_flight past its time)
    SYNC_FAILING = "sync_failing"  # subject: sync-returns
    INSTANT_DEADLINE = "instant_deadline"  # subject: reveni
    UNKNOWN_WEBHOOKS = "unknown_webhooks"  # subject: reveni (webhooks naming no Reveni return)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Probe:
    """The outcome of one cheap authenticated read of a system (`probes.py`): `ok` (it answered,
    or only rate-limited us: the credentials were accepted), `auth_failed` (HTTP 401/403 or a
    refused permission: `credential` names the setting) or `unreachable` (a network error,
    timeout, 5xx, or an answer that could not be read)."""

    system: str
    status: ProbeStatus
    detail: str = ""
    credential: str = ""


@dataclass(frozen=True)
class HeldActions:
    """Ledger actions held in one state past the check's threshold: how many, since when the
    oldest, and the first few keys."""

    count: int
    oldest: datetime | None = None
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunOutcome:
    """How one sync run ended (from the ledger's `sync_runs`, or Prefect's flow run states)."""

    finished_at: datetime
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class DeadlineException:
    """An open `instant_deadline_near` exception: the return, when it was first and last seen,
    and its detail (which says when Reveni's window ends)."""

    reveni_return_id: str | None
    order_number: int | None
    first_seen: datetime
    last_seen: datetime
    detail: str


@dataclass(frozen=True)
class WatchInputs:
    """Everything the checks read. A field left None is unknown: the checks that need it say
    `unknown` and leave their incidents alone."""

    now: datetime
    probes: Sequence[Probe] = ()  # a system without a probe: its API checks are unknown
    last_reveni_webhook_at: datetime | None = None  # None: none received, ever
    webhooks_known: bool = False  # whether `last_reveni_webhook_at` was read at all
    reveni_changes: int | None = None  # returns Reveni shows changed in the silence window
    inbox_pending: int | None = None
    inbox_oldest_at: datetime | None = None
    in_doubt: HeldActions | None = None
    action_in_doubt_open: int = 0  # open `action_in_doubt` exceptions (read-backs gave up)
    in_flight: HeldActions | None = None
    sync_runs: Sequence[RunOutcome] | None = None  # newest first
    instant_deadlines: Sequence[DeadlineException] | None = None
    # inbox events settled as "unknown_resource" in the last day: webhooks naming a return
    # Reveni does not have (fake, or sent to the wrong store)
    unknown_webhooks: int | None = None


@dataclass(frozen=True)
class Observation:
    """What one check says about one subject now (see the module docstring)."""

    check: str
    subject: str
    state: State
    title: str = ""
    figure: str = ""
    first_step: str = ""
    since: datetime | None = None
    detail: str = ""

    @property
    def key(self) -> str:
        return f"{self.check}:{self.subject}"

    def as_dict(self) -> dict[str, object]:
        return {
            "check": self.check,
            "subject": self.subject,
            "state": self.state,
            "title": self.title,
            "figure": self.figure,
            "since": None if self.since is None else self.since.isoformat(),
            "detail": self.detail,
        }


def _clear(check: Check, subject: str, detail: str = "") -> Observation:
    return Observation(check.value, subject, "clear", detail=detail)


def _unknown(check: Check, subject: str, why: str) -> Observation:
    return Observation(check.value, subject, "unknown", detail=why)


# --------------------------------------------------------------------------- the checks


def check_api(inputs: WatchInputs, settings: WatchSettings) -> list[Observation]:
    """Credentials failing (a 401/403 on a cheap authenticated read) and API unreachable
    (network error, timeout, 5xx), per system. Refused credentials say nothing of
    reachability (it answered) and an unreachable API nothing of the credentials."""
    found: list[Observation] = []
    probes = {p.system: p for p in inputs.probes}
    for system in SYSTEMS:
        probe = probes.get(system)
        name = _NAMES[system]
        if probe is None:
            why = f"{name} was not probed"
            found += [_unknown(Check.CREDENTIALS, system, why)]
            found += [_unknown(Check.UNREACHABLE, system, why)]
            continue
        if probe.status == "auth_failed":
            credential = probe.credential or f"RETURNBRIDGE_{system.upper()}__*"
            found.append(
                Observation(
                    Check.CREDENTIALS.value,
                    system,
                    "firing",
                    title=f"{name} credentials failing",
                    figure=probe.detail or f"{name} refused the credentials",
                    first_step=(
                        f"Check {credential} against {name} (rotated, revoked or lacking a "
                        "permission?) and update it; nothing reaches Centra meanwhile."
                    ),
                    since=inputs.now,
                    detail=probe.detail,
                )
            )
            found.append(_clear(Check.UNREACHABLE, system))
        elif probe.status == "unreachable":
            found.append(_unknown(Check.CREDENTIALS, system, f"{name} did not answer"))
            found.append(
                Observation(
                    Check.UNREACHABLE.value,
                    system,
                    "firing",
                    title=f"{name} API unreachable",
                    figure=probe.detail or f"{name} did not answer",
                    first_step=(
                        f"Check {name}'s status page and the network from the worker to "
                        f"{name}'s API; the sync carries on by itself once it answers."
                    ),
                    since=inputs.now,
                    detail=probe.detail,
                )
            )
        else:
            found += [_clear(Check.CREDENTIALS, system), _clear(Check.UNREACHABLE, system)]
    return found


def silence_window(
    last_webhook_at: datetime | None, now: datetime, silence: timedelta
) -> datetime | None:
    """The start of the window in which Reveni's changes count (`now - silence`) when no
    webhook has arrived for `silence` (or ever); None when one arrived within it, so the runner
    need not ask Reveni."""
    if last_webhook_at is not None and now - last_webhook_at < silence:
        return None
    return now - silence


def check_webhooks(inputs: WatchInputs, settings: WatchSettings) -> list[Observation]:
    """No Reveni webhook for `webhook_silence` while Reveni's listing shows returns changed in
    that time: the webhooks are not arriving (subscription gone, receiver down, a proxy in
    the way). Quiet hours with nothing changed are not an incident."""
    check, subject = Check.WEBHOOKS_SILENT, "reveni"
    if not inputs.webhooks_known:
        return [_unknown(check, subject, "the ledger's inbox was not read")]
    window = silence_window(inputs.last_reveni_webhook_at, inputs.now, settings.webhook_silence)
    if window is None:
        return [_clear(check, subject)]
    if inputs.reveni_changes is None:
        return [_unknown(check, subject, "Reveni's listing could not be read")]
    if inputs.reveni_changes == 0:
        return [_clear(check, subject, "no webhook, but nothing changed in Reveni either")]
    last = inputs.last_reveni_webhook_at
    heard = "never" if last is None else f"{format_age(inputs.now - last)} ago ({format_at(last)})"
    return [
        Observation(
            check.value,
            subject,
            "firing",
            title="No Reveni webhooks arriving",
            figure=(
                f"{inputs.reveni_changes} return(s) changed in Reveni in the last "
                f"{format_age(settings.webhook_silence)}; last webhook received {heard}"
            ),
            first_step=(
                "Check Reveni's webhook subscription points at the receiver's /webhooks/reveni "
                "and that `returnbridge receiver` is up (GET /healthz); the minute poll syncs "
                "meanwhile."
            ),
            since=last if last is not None else window,
        )
    ]


def check_inbox(inputs: WatchInputs, settings: WatchSettings) -> list[Observation]:
    """The webhook inbox is backing up: an event unprocessed for longer than `inbox_max_age`,
    or more than `inbox_max_pending` unprocessed: the sync runs are not completing."""
    check, subject = Check.INBOX_BACKLOG, "inbox"
    if inputs.inbox_pending is None:
        return [_unknown(check, subject, "the ledger's inbox was not read")]
    oldest = inputs.inbox_oldest_at
    age = None if oldest is None else inputs.now - oldest
    too_old = age is not None and age > settings.inbox_max_age
    too_many = inputs.inbox_pending > settings.inbox_max_pending
    if not (too_old or too_many):
        return [_clear(check, subject)]
    oldest_text = "" if age is None or oldest is None else f", the oldest {format_age(age)} old"
    return [
        Observation(
            check.value,
            subject,
            "firing",
            title="Webhook inbox backing up",
            figure=f"{inputs.inbox_pending} webhook(s) not processed{oldest_text}",
            first_step=(
                "Check that sync-returns runs complete (Prefect UI, or `returnbridge sync`); "
                "the next run that completes processes the inbox."
            ),
            since=oldest,
        )
    ]


def check_in_doubt(inputs: WatchInputs, settings: WatchSettings) -> list[Observation]:
    """Actions in doubt (a write whose outcome is unknown) not read back for `in_doubt_after`,
    or read-backs that gave up (`action_in_doubt` open): money or stock may be wrong in
    Centra until someone looks."""
    check, subject = Check.ACTIONS_IN_DOUBT, "ledger"
    held = inputs.in_doubt
    if held is None:
        return [_unknown(check, subject, "the ledger's actions were not read")]
    if held.count == 0 and inputs.action_in_doubt_open == 0:
        return [_clear(check, subject)]
    parts = []
    if held.count:
        parts.append(
            f"{held.count} action(s) in doubt, not read back for over "
            f"{format_age(settings.in_doubt_after)}{_keys(held)}"
        )
    if inputs.action_in_doubt_open:
        parts.append(f"{inputs.action_in_doubt_open} open action_in_doubt exception(s)")
    return [
        Observation(
            check.value,
            subject,
            "firing",
            title="Ledger actions in doubt",
            figure="; ".join(parts),
            first_step=(
                "Look at `returnbridge exceptions list --code action_in_doubt` and the actions' "
                "attempts; check the effect in Centra before retrying anything."
            ),
            since=held.oldest,
        )
    ]


def check_in_flight(inputs: WatchInputs, settings: WatchSettings) -> list[Observation]:
    """Actions claimed (`in_flight`) for longer than `in_flight_after`: the worker that holds
    them died or hangs, and nothing else sends them until their lease is read back."""
    check, subject = Check.ACTIONS_STUCK, "ledger"
    held = inputs.in_flight
    if held is None:
        return [_unknown(check, subject, "the ledger's actions were not read")]
    if held.count == 0:
        return [_clear(check, subject)]
    return [
        Observation(
            check.value,
            subject,
            "firing",
            title="Ledger actions stuck in flight",
            figure=(
                f"{held.count} action(s) in_flight for over "
                f"{format_age(settings.in_flight_after)}{_keys(held)}"
            ),
            first_step=(
                "Check the sync-returns runs and workers (a crash or a hang holds these); the "
                "next run reads them back once the lease has passed, never sends them blindly."
            ),
            since=held.oldest,
        )
    ]


def check_sync_runs(inputs: WatchInputs, settings: WatchSettings) -> list[Observation]:
    """The newest `sync_failures` sync runs all failed."""
    check, subject = Check.SYNC_FAILING, "sync-returns"
    runs = inputs.sync_runs
    if runs is None:
        return [_unknown(check, subject, "no run outcomes were read")]
    streak: list[RunOutcome] = []
    for run in runs:  # newest first
        if run.ok:
            break
        streak.append(run)
    if len(streak) < settings.sync_failures:
        return [_clear(check, subject)]
    newest = streak[0]
    error = f": {newest.detail}" if newest.detail else ""
    more = "" if len(streak) < len(runs) else " or more"
    return [
        Observation(
            check.value,
            subject,
            "firing",
            title="Sync runs failing",
            figure=(
                f"the last {len(streak)}{more} sync runs failed; the newest at "
                f"{format_at(newest.finished_at)}{error}"
            )[:600],
            first_step=(
                "Open the newest failed sync-returns run in Prefect (or run `returnbridge sync`) "
                "and read its error."
            ),
            since=streak[-1].finished_at,
            detail=newest.detail,
        )
    ]


_ENDS = re.compile(r"window ends (\S+?)[\s)]")
_DAYS_LEFT = re.compile(r"(-?\d+(?:\.\d+)?) days left")


def deadline_of(exc: DeadlineException) -> datetime | None:
    """When Reveni's window of the return ends, read from the exception's detail: the planner
    writes the moment (`window ends <ISO time>`), the reconciliation the days left when it last
    saw it (`<n> days left`, counted from `last_seen`). None when the detail says neither."""
    ends = _ENDS.search(exc.detail)
    if ends:
        try:
            moment = datetime.fromisoformat(ends.group(1))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment
    left = _DAYS_LEFT.search(exc.detail)
    if left:
        days = float(left.group(1))
        return exc.last_seen + timedelta(days=days)
    return None


def check_instant_deadlines(inputs: WatchInputs, settings: WatchSettings) -> list[Observation]:
    """A summary of the open `instant_deadline_near` exceptions (already in Ops' queue): while
    there are any, one incident with the count and the nearest deadline; it recovers at zero."""
    check, subject = Check.INSTANT_DEADLINE, "reveni"
    found = inputs.instant_deadlines
    if found is None:
        return [_unknown(check, subject, "the ledger's exceptions were not read")]
    if not found:
        return [_clear(check, subject)]
    deadlines = [(d, exc) for exc in found if (d := deadline_of(exc)) is not None]
    nearest = ""
    if deadlines:
        moment, exc = min(deadlines, key=lambda pair: pair[0])
        left = moment - inputs.now
        when = f"in {format_age(left)}" if left > timedelta(0) else f"{format_age(-left)} ago"
        which = exc.reveni_return_id or "?"
        if exc.order_number is not None:
            which += f", order {exc.order_number}"
        nearest = f"; nearest window ends {format_at(moment)} ({when}, {which})"
    return [
        Observation(
            check.value,
            subject,
            "firing",
            title="Instant refunds near Reveni's 30-day window",
            figure=f"{len(found)} open instant_deadline_near exception(s){nearest}",
            first_step=(
                "Ask Ops to get these returns inspected in Reveni before the window ends "
                "(`returnbridge exceptions list --code instant_deadline_near`)."
            ),
            since=min(exc.first_seen for exc in found),
        )
    ]


def check_unknown_webhooks(inputs: WatchInputs, settings: WatchSettings) -> list[Observation]:
    """More than `unknown_webhooks_max` webhooks in a day named returns Reveni does not have:
    someone who reaches the receiver is posting fake ones (Reveni signing is off by default),
    or another store's webhooks arrive here. Each costs one Reveni read and is settled at once,
    so nothing stalls, but a person should close the door."""
    check, subject = Check.UNKNOWN_WEBHOOKS, "reveni"
    if inputs.unknown_webhooks is None:
        return [_unknown(check, subject, "the ledger's inbox was not read")]
    if inputs.unknown_webhooks <= settings.unknown_webhooks_max:
        return [_clear(check, subject)]
    return [
        Observation(
            check.value,
            subject,
            "firing",
            title="Webhooks naming returns Reveni does not have",
            figure=f"{inputs.unknown_webhooks} in the last 24 hours",
            first_step=(
                "Turn on Reveni webhook signing (RETURNBRIDGE_RECEIVER__REVENI_SECRET) or limit "
                "who can reach the receiver; check that the webhook URL is only this store's."
            ),
        )
    ]


CHECKS: Final[tuple[Callable[[WatchInputs, WatchSettings], list[Observation]], ...]] = (
    check_api,
    check_webhooks,
    check_inbox,
    check_in_doubt,
    check_in_flight,
    check_sync_runs,
    check_instant_deadlines,
    check_unknown_webhooks,
)


def evaluate(inputs: WatchInputs, settings: WatchSettings) -> list[Observation]:
    """Every check's observations, in a stable order."""
    return [observation for check in CHECKS for observation in check(inputs, settings)]


# --------------------------------------------------------------------------- wording


def format_age(delta: timedelta) -> str:
    """A duration as people say it: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def format_at(moment: datetime) -> str:
    """A moment in UTC to the minute: `2026-10-15 12:00 UTC`."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} is naive; the watchdog works in aware UTC")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _keys(held: HeldActions) -> str:
    if not held.keys:
        return ""
    shown = ", ".join(held.keys[:5])
    more = f" and {held.count - 5} more" if held.count > 5 else ""
    return f" ({shown}{more})"
