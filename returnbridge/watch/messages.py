"""The Slack messages of an incident: its alert and its recovery (plain text for notifications
and screen readers, Block Kit for the channel). Pure: the incident in, text and blocks out.

An alert says what, since when, the figure and what to do first (one line); a recovery says
what recovered and after how long ("recovered after N min", counted from the opening). Neither
names a customer: figures are counts, ages, action keys, Reveni return ids and order numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from returnbridge.watch.checks import format_age, format_at

if TYPE_CHECKING:
    from returnbridge.ledger.incidents import Incident

# Block Kit limits (a header's text, a section's text); the stand-in enforces the same.
_HEADER_MAX: Final = 150
_SECTION_MAX: Final = 3000


@dataclass(frozen=True)
class SlackMessage:
    """One `chat.postMessage`: the notification text and the blocks."""

    text: str
    blocks: list[dict[str, Any]]


def alert_message(incident: Incident, *, now: datetime) -> SlackMessage:
    """The alert of an incident: what, since when (and how long), the figure, the first step."""
    since = incident.since
    lasting = format_age(now - since) if now > since else "just now"
    header = _cut(f":rotating_light: {incident.title}", _HEADER_MAX)
    text = (
        f":rotating_light: returnbridge watchdog: {incident.title} since {format_at(since)} "
        f"({lasting}). {incident.figure}. First step: {incident.first_step}"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Since*\n{format_at(since)} ({lasting})"},
                {"type": "mrkdwn", "text": f"*Check*\n`{incident.key}`"},
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(incident.figure)}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _cut(f"*First step:* {incident.first_step}")},
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"returnbridge watchdog · incident #{incident.id} · a recovery "
                    "message follows when it clears · docs/operating-guide.md#watchdog-alerts",
                }
            ],
        },
    ]
    return SlackMessage(_cut(text), blocks)


def recovered_after(incident: Incident) -> timedelta:
    """How long the incident was open (zero for an open one)."""
    if incident.closed_at is None:
        return timedelta(0)
    return max(timedelta(0), incident.closed_at - incident.opened_at)


def recovery_message(incident: Incident) -> SlackMessage:
    """The recovery of a closed incident: what recovered, and after how many minutes."""
    if incident.closed_at is None:
        raise ValueError(f"incident #{incident.id} ({incident.key}) is still open: no recovery")
    minutes = max(1, round(recovered_after(incident).total_seconds() / 60))
    text = (
        f":white_check_mark: returnbridge watchdog: {incident.title}: recovered after "
        f"{minutes} min (open since {format_at(incident.opened_at)}, cleared "
        f"{format_at(incident.closed_at)})."
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _cut(
                    f":white_check_mark: *Recovered:* {incident.title}: recovered after "
                    f"{minutes} min"
                ),
            },
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"`{incident.key}` · incident #{incident.id} · open "
                    f"{format_at(incident.opened_at)} to {format_at(incident.closed_at)}",
                }
            ],
        },
    ]
    return SlackMessage(_cut(text), blocks)


def _cut(text: str, limit: int = _SECTION_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
