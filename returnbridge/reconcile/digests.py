"""The owner-tagged digests: one message per owner per run, and their delivery.

A digest is composed from the ledger's exceptions of its owner (whatever raised them: the sync
or the reconciliation), so it is the owner's whole queue: counts by code, what opened and what
healed since the owner's last digest that reached Slack, the oldest open item, the most pressing
ones with what their owner needs to act on each (its id for the buttons, the SKU, both sides of
a money mismatch, the deadline in the brand's timezone, who took it, links to the runbook and to
both systems, the warning a money-moving retry shows), what returnbridge fixed by itself since
the last digest, and for Finance the open money per currency. Only ids, amounts and ages: never
a customer's e-mail or name.

Delivery goes through the warehouse's outbox: every digest is stored before it is sent, and one
that Slack did not take (down, rate-limited past the cap) is sent on the next run.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Final

from returnbridge.connectors.slack import (
    DigestPoster,
    SlackRejected,
    SlackSettings,
    SlackUnavailable,
)
from returnbridge.core.codes import FACTS, Owner
from returnbridge.core.links import LinkSettings
from returnbridge.ledger.queue import retry_warning
from returnbridge.ledger.records import SYSTEM_ACTOR, ExceptionRecord
from returnbridge.ledger.store import HEALED_NOTE
from returnbridge.reconcile.warehouse import Warehouse

log = logging.getLogger(__name__)

# The links of an item, in the order they are shown (`LinkSettings.links_for`'s names).
LINK_ORDER: Final = ("runbook", "centra", "reveni")


@dataclass(frozen=True)
class DigestItem:
    """One open exception as the digest shows it: what its owner needs to act on it."""

    code: str
    order_number: int | None
    reveni_return_id: str | None
    amount: Decimal | None  # Reveni's side of a money mismatch
    currency: str | None
    age_days: int  # how long it has been open (not time left: see `due_in_days`)
    status: str  # open | retrying
    id: int | None = None  # the ledger's exception id (#12): its block ids and buttons
    sku: str | None = None
    centra_amount: Decimal | None = None  # Centra's side of a money mismatch (fact)
    centra_currency: str | None = None
    deadline: date | None = None  # when it must be done by, as a date in the brand's timezone
    due_in_days: int | None = None  # days from today to `deadline` there; negative: overdue
    assignee: str | None = None
    links: tuple[tuple[str, str], ...] = ()  # (runbook | centra | reveni, URL), in that order
    retry_warning: str | None = None  # a money-moving retry's confirm text (ledger/queue.py)


@dataclass(frozen=True)
class FixedItem:
    """One exception returnbridge closed by itself since the owner's last digest."""

    id: int
    code: str
    order_number: int | None
    reveni_return_id: str | None
    amount: Decimal | None
    currency: str | None


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
    # healed by returnbridge itself since the last digest: the first few, and how many in all
    fixed: Sequence[FixedItem] = ()
    fixed_total: int = 0
    closed_by_people: int = 0  # resolved or ignored by a person since the last digest
    # Finance: the amounts of its live exceptions, per currency (empty for the other owners)
    open_money: Mapping[str, Decimal] = field(default_factory=dict)


# (fallback text, Block Kit blocks) of a digest: `reports.digest.render_digest`, given by the
# entry point that starts the reconciliation (the library never imports `reports/`).
DigestRenderer = Callable[[Digest], tuple[str, list[dict[str, Any]]]]

LIVE = ("open", "retrying")
# Listed first in a digest: money paid twice or lost, and deadlines that cost money.
PRESSING = ("duplicate_refund", "refund_failed_at_gateway", "instant_deadline_near")
FIXED_SHOWN: Final = 5  # fixed-overnight lines in a digest; the rest are counted


def _rank(record: ExceptionRecord) -> tuple[int, datetime, int]:
    pressing = PRESSING.index(record.code) if record.code in PRESSING else len(PRESSING)
    return pressing, record.first_seen, record.id


def fixed_by_returnbridge(record: ExceptionRecord, closed_by: Mapping[int, str]) -> bool:
    """Whether `record` was closed by returnbridge itself: resolved as healed (no longer
    found), or resolved by the system actor (`closed_by`: exception id -> who closed it, from
    its history; the action behind it done after all)."""
    if record.status != "resolved":
        return False
    return record.resolution_note == HEALED_NOTE or closed_by.get(record.id) == SYSTEM_ACTOR


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
    links: LinkSettings | None = None,
    zone: tzinfo = UTC,
    closed_by: Mapping[int, str] | None = None,
    fixed_shown: int = FIXED_SHOWN,
) -> Digest:
    """`owner`'s digest from its exception records (any status). `since`: when the owner's
    last digest was sent (None: the first one, which reports the last day). `links`: the link
    templates (None: no links); `zone`: the brand's timezone, for deadlines; `closed_by`:
    exception id -> the actor who closed it, for those closed since the last digest whose note
    does not say (`fixed_by_returnbridge`)."""
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
    closed = sorted(
        (r for r in mine if r.closed and r.resolved_at is not None and r.resolved_at > since),
        key=lambda r: (r.resolved_at, r.id),
    )
    fixed = [r for r in closed if fixed_by_returnbridge(r, closed_by or {})]
    money: dict[str, Decimal] = {}
    if owner is Owner.FINANCE:
        for r in live:
            if r.amount is not None and r.currency:
                code = r.currency.strip().upper()
                money[code] = money.get(code, Decimal(0)) + r.amount
    oldest = min(live, key=lambda r: (r.first_seen, r.id), default=None)
    return Digest(
        owner=owner.value,
        run_date=run_date,
        counts_by_code=dict(sorted(Counter(r.code for r in live).items())),
        new_by_code=dict(sorted(new.items())),
        healed_by_code=dict(sorted(healed.items())),
        oldest_open=None if oldest is None else _item(oldest, now, links, zone),
        top=[_item(r, now, links, zone) for r in live[:top]],
        mention=mention,
        flow_run_url=flow_run_url,
        fixed=[_fixed(r) for r in fixed[: max(0, fixed_shown)]],
        fixed_total=len(fixed),
        closed_by_people=len(closed) - len(fixed),
        open_money=dict(sorted(money.items())),
    )


def _item(
    record: ExceptionRecord, now: datetime, links: LinkSettings | None, zone: tzinfo
) -> DigestItem:
    facts = {k: v for k, v in record.facts.items() if k in FACTS}
    centra_amount = _decimal(facts.get("centra_amount"))
    deadline = _instant(facts.get("deadline"))
    local_deadline = None if deadline is None else deadline.astimezone(zone).date()
    made = {} if links is None else links.links_for(record)
    return DigestItem(
        code=record.code,
        order_number=record.order_number,
        reveni_return_id=record.reveni_return_id,
        amount=record.amount,
        currency=record.currency,
        age_days=max(0, (now - record.first_seen).days),
        status=record.status,
        id=record.id,
        sku=record.sku,
        centra_amount=centra_amount,
        centra_currency=facts.get("centra_currency") if centra_amount is not None else None,
        deadline=local_deadline,
        due_in_days=(
            None if local_deadline is None else (local_deadline - now.astimezone(zone).date()).days
        ),
        assignee=record.assignee,
        links=tuple((name, made[name]) for name in LINK_ORDER if name in made),
        retry_warning=retry_warning(record),
    )


def _fixed(record: ExceptionRecord) -> FixedItem:
    return FixedItem(
        id=record.id,
        code=record.code,
        order_number=record.order_number,
        reveni_return_id=record.reveni_return_id,
        amount=record.amount,
        currency=record.currency,
    )


def _decimal(value: str | None) -> Decimal | None:
    """A fact's decimal amount; None when missing or not a finite number."""
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except ArithmeticError:
        return None
    return amount if amount.is_finite() else None


def _instant(value: str | None) -> datetime | None:
    """A fact's ISO 8601 date-time (UTC when it names no offset); None when missing or bad."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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
