"""The owner-tagged digests: one message per owner per run, and their delivery.

A digest is composed from the ledger's exceptions of its owner (whatever raised them: the sync
or the reconciliation), so it is the owner's whole queue: counts by code, what opened and what
healed since the owner's last digest that reached Slack, the oldest open item and the most
pressing ones. Only ids, amounts and ages: never a customer's e-mail or name.

Delivery goes through the warehouse's outbox: every digest is stored before it is sent, and one
that Slack did not take (down, rate-limited past the cap) is sent on the next run.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from returnbridge.connectors.slack import (
    DigestPoster,
    SlackRejected,
    SlackSettings,
    SlackUnavailable,
)
from returnbridge.core.codes import Owner
from returnbridge.ledger.records import ExceptionRecord
from returnbridge.reconcile.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DigestItem:
    """One open exception as the digest shows it."""

    code: str
    order_number: int | None
    reveni_return_id: str | None
    amount: Decimal | None
    currency: str | None
    age_days: int
    status: str  # open | retrying


@dataclass(frozen=True)
class Digest:
    """What one owner's digest says (the caller computes it from the ledger)."""

    owner: str  # finance | ops | cx
    run_date: date
    counts_by_code: Mapping[str, int]  # open exceptions now, per code
    new_by_code: Mapping[str, int]  # opened since the last digest
    healed_by_code: Mapping[str, int]  # healed/resolved since the last digest
    oldest_open: DigestItem | None
    top: Sequence[DigestItem]  # the most important open items (caller picks, ≤ 10)
    mention: str | None  # Slack user-group id, e.g. "S0FINANCE"
    flow_run_url: str | None  # link to the Prefect flow run


# (fallback text, Block Kit blocks) of a digest: `reports.digest.render_digest`, given by the
# entry point that starts the reconciliation (the library never imports `reports/`).
DigestRenderer = Callable[[Digest], tuple[str, list[dict[str, Any]]]]

LIVE = ("open", "retrying")
# Listed first in a digest: money paid twice or lost, and deadlines that cost money.
PRESSING = ("duplicate_refund", "refund_failed_at_gateway", "instant_deadline_near")


def _rank(record: ExceptionRecord) -> tuple[int, datetime, int]:
    pressing = PRESSING.index(record.code) if record.code in PRESSING else len(PRESSING)
    return pressing, record.first_seen, record.id


def compose_digest(
    owner: Owner | str,
    records: Iterable[ExceptionRecord],
    *,
    since: datetime | None,
    now: datetime,
    run_date: date,
    mention: str | None,
    flow_run_url: str | None,
    top: int = 10,
) -> Digest:
    """`owner`'s digest from its exception records (any status). `since`: when the owner's
    last digest was sent (None: the first one, which reports the last day)."""
    owner = Owner(owner)
    mine = [r for r in records if r.owner == owner.value]
    since = since or now - timedelta(days=1)
    live = sorted((r for r in mine if r.status in LIVE), key=_rank)
    new = Counter(r.code for r in live if r.first_seen > since)
    healed = Counter(
        r.code
        for r in mine
        if r.status == "resolved" and r.resolved_at is not None and r.resolved_at > since
    )
    oldest = min(live, key=lambda r: (r.first_seen, r.id), default=None)
    return Digest(
        owner=owner.value,
        run_date=run_date,
        counts_by_code=dict(sorted(Counter(r.code for r in live).items())),
        new_by_code=dict(sorted(new.items())),
        healed_by_code=dict(sorted(healed.items())),
        oldest_open=None if oldest is None else _item(oldest, now),
        top=[_item(r, now) for r in live[:top]],
        mention=mention,
        flow_run_url=flow_run_url,
    )


def _item(record: ExceptionRecord, now: datetime) -> DigestItem:
    return DigestItem(
        code=record.code,
        order_number=record.order_number,
        reveni_return_id=record.reveni_return_id,
        amount=record.amount,
        currency=record.currency,
        age_days=max(0, (now - record.first_seen).days),
        status=record.status,
    )


@dataclass(frozen=True)
class Delivery:
    """What became of one digest this run (the run summary's `digests[]` entry)."""

    owner: str
    channel: str
    text: str
    run_date: date
    sent: bool
    ts: str | None = None
    error: str | None = None

    def as_summary(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "channel": self.channel,
            "text": self.text,
            "run_date": self.run_date.isoformat(),
            "sent": self.sent,
            "ts": self.ts,
            "error": self.error,
        }


def deliver_digests(
    digests: Sequence[Digest],
    *,
    warehouse: Warehouse,
    settings: SlackSettings,
    poster: DigestPoster | None,
    render: DigestRenderer,
) -> list[Delivery]:
    """Store `digests` in the outbox, then send every pending one, oldest first (earlier runs'
    kept digests included). Slack unavailable: stop, everything stays pending for the next run.
    A digest Slack refuses (unknown channel, bad token) stays pending too, and is logged: it
    needs a configuration fix, not a retry storm. Slack disabled or without a token: composed
    and returned, not stored (there is nothing to send them to)."""
    rendered: list[dict[str, Any]] = []
    for digest in digests:
        text, blocks = render(digest)
        channel = settings.channel_for(digest.owner)
        rendered.append({"owner": digest.owner, "channel": channel, "text": text, "blocks": blocks})
    if not settings.active or poster is None:
        why = "Slack disabled" if not settings.enabled else "no Slack token configured"
        kept = [
            Delivery(r["owner"], r["channel"], r["text"], d.run_date, sent=False, error=why)
            for r, d in zip(rendered, digests, strict=True)
        ]
        return sorted(kept, key=lambda d: d.owner)
    run_dates = {d.run_date for d in digests}
    if rendered:
        warehouse.put_digests(digests[0].run_date, rendered)
    deliveries: list[Delivery] = []
    down: str | None = None
    for pending in warehouse.pending_digests():
        run_date = _as_date(pending["run_date"])
        if down is not None:
            deliveries.append(_kept(pending, run_date, down))
            continue
        try:
            ts = poster.post(pending["channel"], pending["text"], pending["blocks"])
        except SlackUnavailable as exc:
            down = f"Slack unavailable: {exc}"
            warehouse.mark_digest_failed(pending["id"], down)
            log.warning("digest for %s kept for the next run: %s", pending["owner"], exc)
            deliveries.append(_kept(pending, run_date, down))
            continue
        except SlackRejected as exc:
            warehouse.mark_digest_failed(pending["id"], str(exc))
            log.error("digest for %s refused by Slack: %s", pending["owner"], exc)
            deliveries.append(_kept(pending, run_date, str(exc)))
            continue
        warehouse.mark_digest_sent(pending["id"], ts)
        deliveries.append(
            Delivery(pending["owner"], pending["channel"], pending["text"], run_date, True, ts)
        )
    # the current run's digests first, then earlier runs' that were caught up
    return sorted(deliveries, key=lambda d: (d.run_date not in run_dates, d.run_date, d.owner))


def _kept(pending: dict[str, Any], run_date: date, error: str) -> Delivery:
    return Delivery(
        pending["owner"], pending["channel"], pending["text"], run_date, False, error=error
    )


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
