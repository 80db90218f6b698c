"""The daily reconciliation (docs/architecture.md#the-reconciliation-pipeline): load, compare,
fix, tell the owners.

1. **Load** what changed in both systems since the last load (less a look-back) into the
   warehouse (`extract.py`), as that day's snapshot.
2. **Gaps**: the rules (`rules.py`) over the warehouse, leaving out what the ledger's open
   exceptions already explain; recomputed only for what changed since the last computation,
   the others carried over (`incremental.py`: the same gaps as recomputing everything).
3. **Fix** the fixable gaps through the exactly-once core, under the same ledger keys: an action
   the ledger thinks done whose effect Centra does not show is put back in doubt (the executor
   reads Centra back before it sends anything), a failed one is retried, and a return the
   sync never saw is planned now; then Centra is read again and the gaps recomputed, so each
   gap's outcome is `healed` (gone), `retried` (its action still under way) or `still_open`.
4. **Record**: gaps become ledger exceptions for their owners (healed ones resolved), and the
   day's gaps with their outcomes are kept in the warehouse.
5. **Digests**: one per owner, through the outbox (`digests.py`).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from returnbridge.clock import Now
from returnbridge.connectors.centra.client import CentraClient
from returnbridge.connectors.reveni.client import ReveniClient
from returnbridge.connectors.reveni.models import currency_exponent
from returnbridge.connectors.slack import DigestPoster, SlackSettings
from returnbridge.core.codes import EXPLAINED_BY, FIX_KIND, GAP_ONLY_CODES, Owner, ReturnException
from returnbridge.core.links import LinkSettings
from returnbridge.core.planner import PlannerConfig
from returnbridge.ledger.records import ExceptionRecord
from returnbridge.ledger.store import HEALED_NOTE, Ledger
from returnbridge.reconcile.digests import (
    Delivery,
    DigestRenderer,
    compose_digest,
    deliver_digests,
)
from returnbridge.reconcile.extract import (
    exchanges_of,
    extract,
    extract_centra,
    look_back,
)
from returnbridge.reconcile.incremental import current_gaps
from returnbridge.reconcile.rules import GapConfig, without_explained
from returnbridge.reconcile.settings import ReconcileSettings
from returnbridge.reconcile.tables import LEDGER_EXCEPTIONS
from returnbridge.reconcile.warehouse import Warehouse
from returnbridge.sync.run import ReturnSync

log = logging.getLogger(__name__)

SOURCE = "api"  # the warehouse load source of the daily extraction
REFRESH_SOURCE = "api-refresh"  # Centra re-read after the fixes

GAP_KEY = ("code", "reveni_return_id", "order_number", "sku")


def gap_config(planner: PlannerConfig, settings: ReconcileSettings) -> GapConfig:
    """The rules' expectations: the planner's own, plus the grace period."""
    return GapConfig(
        refund_tolerance=planner.refund_tolerance,
        instant_window_days=planner.instant_window_days,
        instant_deadline_warn_days=planner.instant_deadline_warn_days,
        grace=settings.grace,
        refund_pending_max=settings.refund_pending_max,
        not_returnable=planner.not_returnable,
        refund_types=planner.refund_types,
        manual_refund_payment_method=planner.manual_refund_payment_method,
    )


def as_exception(row: Mapping[str, Any]) -> ReturnException:
    """A gap row as the ledger exception of the same code and keys, with the facts its owner
    needs from the row's optional columns (`centra_amount_minor` and `centra_currency`,
    `deadline`; absent or null: none)."""
    return ReturnException(
        row["code"],
        row["reveni_return_id"],
        row["order_number"],
        sku=row["sku"],
        amount=_decimal(row["amount_minor"], row["currency"]),
        currency=row["currency"],
        detail=row["detail"] or "",
        facts=gap_facts(row),
    )


def gap_facts(row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The exception facts (core/codes.py `FACTS`) a gap row carries."""
    facts: list[tuple[str, str]] = []
    centra_currency = row.get("centra_currency")
    centra_amount = _decimal(row.get("centra_amount_minor"), centra_currency)
    if centra_amount is not None and centra_currency is not None:
        facts += [("centra_amount", str(centra_amount)), ("centra_currency", centra_currency)]
    deadline = row.get("deadline")
    if isinstance(deadline, datetime):
        if deadline.tzinfo is None:  # the warehouse's times are UTC
            deadline = deadline.replace(tzinfo=UTC)
        facts.append(("deadline", deadline.astimezone(UTC).isoformat()))
    return tuple(facts)


def _decimal(minor: int | None, currency: str | None) -> Decimal | None:
    """`minor` units of `currency` as a Decimal with its minor-unit digits (None when either is
    missing)."""
    if minor is None or currency is None:
        return None
    return Decimal(minor).scaleb(-currency_exponent(currency))


def gap_summary(row: dict[str, Any]) -> dict[str, Any]:
    """The run summary's `gaps[]` entry (with amount, age and detail)."""
    summary = as_exception(row).as_summary()
    return {
        "code": row["code"],
        "owner": row["owner"],
        "order_number": row["order_number"],
        "reveni_return_id": row["reveni_return_id"],
        "sku": row["sku"],
        "amount": summary["amount"],
        "currency": row["currency"],
        "age_days": row["age_days"],
        "fixable": row["fixable"],
        "outcome": row.get("outcome"),
        "detail": row["detail"],
    }


@dataclass
class ReconcileReport:
    """What one reconciliation run loaded, found, fixed and told."""

    run_date: date  # in the brand's timezone: gaps and digests are recorded under it
    as_of: datetime  # UTC: the moment the rules look at (the end of `run_date`, or now)
    loaded: dict[str, int] = field(default_factory=dict)
    reveni_complete: bool = True
    rejected_rows: list[str] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    replanned_returns: list[str] = field(default_factory=list)
    fix_sync: dict[str, Any] = field(default_factory=dict)
    # each gap computation (before the fixes, after them): full or incremental, and why
    gap_computations: list[dict[str, Any]] = field(default_factory=list)
    exceptions_new: int = 0
    exceptions_healed: int = 0
    digests: list[Delivery] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Gaps per code."""
        return dict(sorted(Counter(gap["code"] for gap in self.gaps).items()))

    def outcomes(self) -> dict[str, int]:
        """Gaps per outcome."""
        return dict(sorted(Counter(gap["outcome"] or "none" for gap in self.gaps).items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_date": self.run_date.isoformat(),
            "as_of": self.as_of.isoformat(),
            "loaded": self.loaded,
            "reveni_complete": self.reveni_complete,
            "rejected_rows": self.rejected_rows,
            "gaps_by_code": self.counts(),
            "gap_outcomes": self.outcomes(),
            "gaps": self.gaps,
            "reopened": self.reopened,
            "requeued": self.requeued,
            "replanned_returns": self.replanned_returns,
            "fix_sync": self.fix_sync,
            "gap_computations": self.gap_computations,
            "exceptions_new": self.exceptions_new,
            "exceptions_healed": self.exceptions_healed,
            "digests": [d.as_summary() for d in self.digests],
        }


def end_of_day(day: date, zone: ZoneInfo) -> datetime:
    """The end of `day` in `zone`, in UTC: the first instant of the next day there. A day with a
    DST change is 23 or 25 hours long; where the change is at midnight and midnight does not
    exist, the next day starts when the clock jumps (01:00)."""
    return datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)


def as_of_for(run_date: date | None, now: datetime, settings: ReconcileSettings) -> datetime:
    """The moment a run for `run_date` looks at, in UTC like every time the rules, the warehouse
    and the ledger compare it with: now for today's run, the end of that day in the brand's
    timezone for an earlier date (never later than now)."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    if run_date is None:
        return now
    return min(now, end_of_day(run_date, settings.zone))


class Reconciliation:
    """One brand's daily reconciliation over open clients, ledger and warehouse."""

    def __init__(
        self,
        *,
        reveni: ReveniClient,
        centra: CentraClient,
        ledger: Ledger,
        warehouse: Warehouse,
        sync: ReturnSync,
        settings: ReconcileSettings,
        slack: SlackSettings,
        poster: DigestPoster | None,
        render_digest: DigestRenderer,
        clock: Now,
        links: LinkSettings | None = None,
    ) -> None:
        self.reveni, self.centra, self.ledger = reveni, centra, ledger
        self.warehouse, self.sync, self.settings = warehouse, sync, settings
        self.slack, self.poster, self.clock = slack, poster, clock
        self.render_digest = render_digest
        # the digests' links (`settings.links`); the default templates (the runbook) when none
        self.links = links if links is not None else LinkSettings()
        planner = sync.config.planner
        self.gap_config = gap_config(planner, settings)
        self.returns_warehouse_ids = [planner.returns_warehouse_id]
        self.exchange_order_base = planner.exchange_order_base

    # ------------------------------------------------------------------ the whole run

    async def run(
        self, run_date: date | None = None, *, flow_run_url: str | None = None
    ) -> ReconcileReport:
        report = self.start(run_date)
        await self.load(report)
        gaps = self.find_gaps(report)
        after = await self.fix(report, gaps) if self.settings.fix else gaps
        self.record(report, gaps, after)
        self.send_digests(report, flow_run_url=flow_run_url)
        return report

    def start(self, run_date: date | None = None) -> ReconcileReport:
        now = self.clock()
        as_of = as_of_for(run_date, now, self.settings)
        day = run_date or as_of.astimezone(self.settings.zone).date()
        return ReconcileReport(run_date=day, as_of=as_of)

    # ------------------------------------------------------------------ 1. load

    def _watermarks(self) -> dict[str, Any]:
        stored = self.warehouse.watermark(SOURCE)
        return json.loads(stored) if stored else {}

    async def load(self, report: ReconcileReport) -> None:
        """Extract what changed since the last load and load it as the run date's snapshot."""
        marks = self._watermarks()
        first = report.as_of - self.settings.first_load_since
        reveni_mark = _parse(marks.get("reveni"))
        centra_since = look_back(_parse(marks.get("centra")), self.settings.look_back, first)
        recheck = self._recheck(report.as_of, centra_since)
        extracted = await extract(
            self.reveni,
            self.centra,
            reveni_since=look_back(reveni_mark, self.settings.look_back, first),
            centra_since=centra_since,
            stock_cursor=marks.get("stock_cursor"),
            returns_warehouse_ids=self.returns_warehouse_ids,
            recheck=recheck,
            exchange_order_base=self.exchange_order_base,
            snapshot_date=report.run_date,
        )
        high_water = extracted.reveni_watermark or reveni_mark
        watermark = {
            "reveni": None if high_water is None else high_water.isoformat(),
            "centra": report.as_of.isoformat(),
            "stock_cursor": extracted.stock_cursor,
        }
        loaded = self.warehouse.load(
            extracted.frames,
            snapshot_date=report.run_date,
            source=SOURCE,
            watermark=json.dumps(watermark),
        )
        report.loaded = dict(loaded.rows)
        report.reveni_complete = extracted.reveni_complete
        report.rejected_rows = extracted.rejected
        log.info(
            "reconciliation %s: loaded %d rows (%s) from %d Reveni returns and %d Centra orders "
            "read, %d rejected%s",
            report.run_date,
            sum(report.loaded.values()),
            _counted(report.loaded) or "nothing changed",
            extracted.returns_read,
            extracted.orders_read,
            len(report.rejected_rows),
            "" if report.reveni_complete else "; Reveni's changes read in part",
        )

    def _recheck(self, as_of: datetime, centra_since: datetime) -> list[int]:
        """Orders to re-read although no Reveni return of theirs changed: those with a Reveni
        return changed in the last `recheck_days`, and those Centra announced a change of
        (order webhooks in the ledger's inbox since the last load, when the receiver gets
        Centra's): a refund made directly in Centra changes no Reveni return."""
        announced = self.ledger.inbox_resources("centra", since=centra_since, event_prefix="order.")
        numbers = {int(n) for n in announced if n.isdigit()}
        if self.settings.recheck_days:
            since = as_of - timedelta(days=self.settings.recheck_days)
            recent = self.warehouse.rows_of(
                "reveni_returns", "updated_at >= ? AND order_number IS NOT NULL", [since]
            )
            numbers.update(recent["order_number"].unique().to_list())
        return sorted(numbers)

    # ------------------------------------------------------------------ 2. gaps

    def explained(self) -> pl.DataFrame:
        """The ledger's open exceptions that can explain a gap."""
        codes = set().union(*EXPLAINED_BY.values())
        rows = [
            (r.code, r.reveni_return_id, r.order_number)
            for r in self.ledger.exceptions(statuses=("open", "retrying"))
            if r.code in codes
        ]
        return pl.DataFrame(rows, schema=LEDGER_EXCEPTIONS, orient="row")

    def find_gaps(self, report: ReconcileReport) -> pl.DataFrame:
        """The warehouse's gaps at the run's time, less those the ledger explains: recomputed
        where the loads since the last computation changed something, carried over elsewhere
        (`incremental.current_gaps`; everything the first time, when the rules changed, after
        `full_recompute_after`, or with `full_recompute`)."""
        computed = current_gaps(
            self.warehouse,
            config=self.gap_config,
            now=report.as_of,
            full=self.settings.full_recompute,
            max_age=self.settings.full_recompute_after,
        )
        report.gap_computations.append(computed.summary())
        gaps = without_explained(computed.gaps, self.explained())
        log.info(
            "reconciliation %s: %d gaps%s (%s), %d more explained by open exceptions; "
            "%s computation (%s)",
            report.run_date,
            gaps.height,
            " left after the fixes" if len(report.gap_computations) > 1 else "",
            _counted(Counter(gaps["code"].to_list())) or "none",
            computed.gaps.height - gaps.height,
            computed.mode,
            computed.reason,
        )
        return gaps

    # ------------------------------------------------------------------ 3. fix

    async def fix(self, report: ReconcileReport, gaps: pl.DataFrame) -> pl.DataFrame:
        """Re-enqueue the fixable gaps under their ledger keys, run the sync for their returns,
        read their orders again and return the gaps as they are now."""
        fixable = gaps.filter(pl.col("fixable"), pl.col("reveni_return_id").is_not_null())
        if not fixable.height:
            log.info("reconciliation %s: 0 fixable gaps, nothing to fix", report.run_date)
            return gaps
        kinds: dict[str, set[str]] = {}
        for code, rid in fixable.select("code", "reveni_return_id").iter_rows():
            kinds.setdefault(rid, set()).add(FIX_KIND[code])
        rids = sorted(kinds)[: self.settings.fix_limit]
        behind = [
            record
            for record in self.ledger.actions(reveni_return_ids=rids)
            if record.kind in kinds[record.reveni_return_id]
        ]
        report.reopened = self.ledger.reopen(r.key for r in behind if r.state == "done")
        report.requeued = self.ledger.retry(
            r.key for r in behind if r.state in ("failed", "blocked")
        )
        report.replanned_returns = rids
        synced = await self.sync.run(return_ids=rids)
        report.fix_sync = {
            k: v for k, v in synced.as_dict().items() if k not in ("planned_calls", "exceptions")
        }
        fixed = fixable.filter(pl.col("reveni_return_id").is_in(rids))
        await self.refresh(report, fixed)
        after = self.find_gaps(report)
        still = {tuple(k) for k in after.select(GAP_KEY).iter_rows()}
        gone = sum(tuple(k) not in still for k in fixed.select(GAP_KEY).iter_rows())
        log.info(
            "reconciliation %s: %d fixable gaps on %d returns re-enqueued (%d left for the next "
            "run): %d actions reopened, %d retried; sync %d done, %d failed, %d in doubt; "
            "%d of them gone, %d still there",
            report.run_date,
            fixed.height,
            len(rids),
            len(kinds) - len(rids),
            len(report.reopened),
            len(report.requeued),
            synced.actions_done,
            synced.actions_failed,
            synced.actions_in_doubt,
            gone,
            fixed.height - gone,
        )
        return after

    async def refresh(self, report: ReconcileReport, fixed: pl.DataFrame) -> None:
        """Read Centra again for the orders of the fixed gaps (and new stock changes)."""
        numbers = set(fixed["order_number"].drop_nulls().to_list())
        rids = fixed["reveni_return_id"].unique().to_list()
        mine = self.warehouse.rows_of(
            "reveni_items", "list_contains(?::VARCHAR[], reveni_return_id)", [rids]
        )
        read = await extract_centra(
            self.centra,
            numbers,
            exchanges=exchanges_of(mine),
            exchange_order_base=self.exchange_order_base,
            stock_cursor=self._watermarks().get("stock_cursor"),
            returns_warehouse_ids=self.returns_warehouse_ids,
            snapshot_date=report.run_date,
        )
        self.warehouse.load(read.frames, snapshot_date=report.run_date, source=REFRESH_SOURCE)

    # ------------------------------------------------------------------ 4. record

    def record(self, report: ReconcileReport, before: pl.DataFrame, after: pl.DataFrame) -> None:
        """Exceptions for the owners, outcomes on the gaps, the day's gaps in the warehouse."""
        now = self.clock()
        first = [as_exception(row) for row in before.iter_rows(named=True)]
        last = [as_exception(row) for row in after.iter_rows(named=True)]
        raised = self.ledger.observe_exceptions(
            first, scope_return_ids=None, scope_codes=GAP_ONLY_CODES, now=now
        )
        settled = self.ledger.observe_exceptions(
            last, scope_return_ids=None, scope_codes=GAP_ONLY_CODES, now=now
        )
        report.exceptions_new = len(raised.new) + len(settled.new)
        report.exceptions_healed = len(raised.healed) + len(settled.healed)
        gaps = self._with_outcomes(before, after)
        self.warehouse.record_gaps(report.run_date, gaps)
        report.gaps = [gap_summary(row) for row in gaps.iter_rows(named=True)]
        outcomes = report.outcomes()
        log.info(
            "reconciliation %s: %d gaps recorded (%d healed, %d retried, %d still open); "
            "%d exceptions opened, %d healed",
            report.run_date,
            len(report.gaps),
            outcomes.get("healed", 0),
            outcomes.get("retried", 0),
            outcomes.get("still_open", 0),
            report.exceptions_new,
            report.exceptions_healed,
        )

    def _with_outcomes(self, before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
        """Every gap found (before the fixes, and any the fixes left new) with its outcome."""
        still = {tuple(k) for k in after.select(GAP_KEY).iter_rows()}
        rids = before["reveni_return_id"].drop_nulls().unique().to_list()
        under_way = {
            (r.reveni_return_id, r.kind)
            for r in self.ledger.actions(
                reveni_return_ids=rids, states=("pending", "in_doubt", "in_flight")
            )
        }
        outcomes: list[str] = []
        for row in before.iter_rows(named=True):
            key = tuple(row[k] for k in GAP_KEY)
            if key not in still:
                outcomes.append("healed")
            elif row["fixable"] and (row["reveni_return_id"], FIX_KIND[row["code"]]) in under_way:
                outcomes.append("retried")
            else:
                outcomes.append("still_open")
        known = {tuple(k) for k in before.select(GAP_KEY).iter_rows()}
        fresh = after.filter(
            pl.Series(
                [tuple(k) not in known for k in after.select(GAP_KEY).iter_rows()], dtype=pl.Boolean
            )
        )
        return pl.concat(
            [
                before.with_columns(pl.Series("outcome", outcomes, dtype=pl.String)),
                fresh.with_columns(pl.lit("still_open").alias("outcome")),
            ]
        )

    # ------------------------------------------------------------------ 5. digests

    def send_digests(self, report: ReconcileReport, *, flow_run_url: str | None) -> None:
        now = self.clock()
        records = self.ledger.exceptions()
        since = {owner.value: self.warehouse.last_digest_at(owner.value) for owner in Owner}
        closed_by = self._closed_by(records, since, now)
        digests = [
            compose_digest(
                owner,
                records,
                since=since[owner.value],
                now=now,
                run_date=report.run_date,
                mention=self.slack.mention_for(owner.value),
                flow_run_url=flow_run_url,
                top=self.settings.digest_top,
                links=self.links,
                zone=self.settings.zone,
                closed_by=closed_by,
            )
            for owner in Owner
        ]
        report.digests = deliver_digests(
            digests,
            warehouse=self.warehouse,
            settings=self.slack,
            poster=self.poster,
            render=self.render_digest,
        )
        posted = [_digest_name(d, report.run_date) for d in report.digests if d.sent]
        kept: dict[str, list[str]] = {}
        for d in report.digests:
            if not d.sent:
                kept.setdefault(d.error or "not sent", []).append(_digest_name(d, report.run_date))
        log.info(
            "reconciliation %s: %d digests posted (%s), %d kept (%s)",
            report.run_date,
            len(posted),
            ", ".join(posted) or "none",
            sum(len(names) for names in kept.values()),
            "; ".join(f"{', '.join(names)}: {why}" for why, names in kept.items()) or "none",
        )

    def _closed_by(
        self,
        records: list[ExceptionRecord],
        since: Mapping[str, datetime | None],
        now: datetime,
    ) -> dict[int, str]:
        """Who closed each exception resolved since its owner's last digest whose note does not
        already say returnbridge healed it (the last closing event of its history): the digest
        tells what returnbridge fixed by itself from what people closed."""
        closed_by: dict[int, str] = {}
        for record in records:
            if record.status != "resolved" or record.resolved_at is None:
                continue
            after = since.get(record.owner) or now - timedelta(days=1)
            if record.resolved_at <= after or record.resolution_note == HEALED_NOTE:
                continue
            closing = [e for e in self.ledger.exception_history(record.id) if e.to_status]
            if closing and closing[-1].to_status == "resolved":
                closed_by[record.id] = closing[-1].actor
        return closed_by


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _counted(counts: Mapping[str, int]) -> str:
    """'2 return_missing, 1 duplicate_refund': the non-zero counts, largest first."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} {name}" for name, n in ranked if n)


def _digest_name(delivery: Delivery, run_date: date) -> str:
    """'finance', or 'finance of 2026-10-29' for one an earlier run kept."""
    day = "" if delivery.run_date == run_date else f" of {delivery.run_date}"
    return f"{delivery.owner}{day}"
