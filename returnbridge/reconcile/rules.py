"""Gap rules: what the two systems' snapshots disagree on, computed with Polars.

Each rule is one small named function from the snapshot to the gaps it finds, in the gap
table's columns (`tables.GAPS`). `compute_gaps` runs them all, drops gaps the ledger already
explains with an open exception of its own (an `exchange_out_of_stock` explains a missing
exchange order), and stamps owner and age.

The rules mirror what the planner would have done (`core/planner.py`), so on data the sync has
fully processed they find nothing; the tests hold them to that on generated histories.

What is expected of Centra, per Reveni return accepted (with units accepted) on an order
Centra has and that can be returned, once it has been so for `grace`:
- a Centra return carrying the Reveni id as `externalId` (`return_missing`);
- a stock change described `returnbridge restock {rid}` of every accepted unit marked restock
  (`restock_missing`; more is `restock_duplicated`);
- for the first live Reveni refund, when refunded items were accepted: one successful credit on
  its Centra return(s) of the same amount (`refund_missing`, `refund_amount_mismatch`,
  `refund_failed_at_gateway`), never a second one, never a PSP refund when Reveni paid
  (`duplicate_refund`). A refund asked of an asynchronous PSP and not answered yet is in
  progress: neither missing nor a duplicate, until it has waited longer than
  `refund_pending_max` (`refund_pending_too_long`). Centra's refund entries are read as refund
  attempts, exactly as `connectors.centra.refunds.refund_attempts` reads them;
- a zero-value exchange order under its deterministic number for every accepted exchange item
  (`exchange_order_missing`, `exchange_not_zero_value`).
And on orders with a Reveni return, every successful Centra refund has a Reveni refund behind it
(`unmatched_centra_refund`). A refund made directly in Centra on the order for the amount of a
Reveni refund that has no credit of its own covers that refund (nothing is re-posted over it);
for the amount of one already credited, it is a `duplicate_refund`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Final, Literal

import polars as pl

from returnbridge.connectors.centra.models import PaymentEntryStatus
from returnbridge.connectors.centra.refunds import DEFAULT_REFUND_TYPES, RefundState, RefundTypes
from returnbridge.connectors.reveni.models import DEFAULT_EXPONENT, OTHER_EXPONENTS
from returnbridge.core import planner
from returnbridge.core.actions import RESTOCK_DESCRIPTION
from returnbridge.core.codes import CODES, EXPLAINED_BY
from returnbridge.core.validation import NOT_RETURNABLE
from returnbridge.reconcile.tables import GAPS, LEDGER_EXCEPTIONS, UTC_TS
from returnbridge.reconcile.warehouse import Snapshot, TableRead

# Polars' engines the rules can collect with (`Inputs.engine`).
EngineType = Literal["in-memory", "streaming", "auto"]

# Reveni statuses in which Centra effects are due: the planner's.
ACCEPTING: Final = sorted(planner.ACCEPTING)


@dataclass(frozen=True)
class GapConfig:
    """What the rules expect; the defaults are the planner's."""

    refund_tolerance: Decimal = Decimal("0.00")
    instant_window_days: int = 30
    instant_deadline_warn_days: int = 3
    # An effect is only missing once Reveni's change is this old (the sync had its chance).
    grace: timedelta = timedelta(hours=1)
    not_returnable: frozenset[str] = NOT_RETURNABLE
    refund_types: RefundTypes = DEFAULT_REFUND_TYPES
    # A refund request the PSP has not answered for this long is raised to Finance.
    refund_pending_max: timedelta = timedelta(hours=48)
    manual_refund_payment_method: str = "manual"
    restock_description: str = RESTOCK_DESCRIPTION

    @property
    def restock_prefix(self) -> str:
        prefix, _, suffix = self.restock_description.partition("{rid}")
        if suffix:
            raise ValueError("restock_description must end with {rid}")
        return prefix

    def tolerance_minor(self, currency: pl.Expr) -> pl.Expr:
        """The refund tolerance in `currency`'s minor units."""
        tolerance = self.refund_tolerance
        known = {c: int(tolerance.scaleb(e)) for c, e in OTHER_EXPONENTS.items()}
        default = int(tolerance.scaleb(DEFAULT_EXPONENT))
        return currency.replace_strict(known, default=default, return_dtype=pl.Int64)


def _exponent(currency: pl.Expr) -> pl.Expr:
    """`currency_exponent` of each currency, as a Polars expression."""
    return currency.replace_strict(
        dict(OTHER_EXPONENTS), default=DEFAULT_EXPONENT, return_dtype=pl.Int64
    )


@dataclass
class Inputs:
    """The snapshot as lazy frames, with the pieces several rules share."""

    snapshot: Snapshot
    config: GapConfig
    now: datetime
    # Polars' engine for the shared pieces: the in-memory one measured faster here than the
    # streaming default, on the day's scope and on a million orders alike
    # (docs/benchmarks.md); "streaming" trades time for memory on a larger snapshot.
    engine: EngineType = "in-memory"

    @property
    def cutoff(self) -> datetime:
        return self.now - self.config.grace

    @cached_property
    def accepted(self) -> pl.DataFrame:
        """Reveni returns whose Centra effects are due: accepted with units accepted, on an
        order Centra has and that can be returned. `settled`: so for `grace` already (only
        then does a missing effect count; a duplicate counts at once)."""
        s, c = self.snapshot, self.config
        returnable = s.centra_orders.lazy().filter(~pl.col("status").is_in(c.not_returnable))
        with_units = s.reveni_items.lazy().filter(pl.col("accepted_units") > 0)
        return (
            s.reveni_returns.lazy()
            .filter(pl.col("status").is_in(ACCEPTING))
            .join(returnable, on="order_number", how="semi")
            .join(with_units, on="reveni_return_id", how="semi")
            .select(
                "reveni_return_id",
                "order_number",
                "status",
                "updated_at",
                (pl.col("updated_at") <= self.cutoff).alias("settled"),
            )
            .collect(engine=self.engine)
        )

    @cached_property
    def restocks(self) -> pl.DataFrame:
        """Units expected back in stock and units restocked, per (return, SKU)."""
        s, prefix = self.snapshot, self.config.restock_prefix
        # Expected from every accepting return; `due` says whether its absence counts yet.
        accepting = s.reveni_returns.lazy().filter(pl.col("status").is_in(ACCEPTING))
        expected = (
            s.reveni_items.lazy()
            .filter(pl.col("restock"), pl.col("accepted_units") > 0)
            .join(accepting, on="reveni_return_id", how="semi")
            .group_by("reveni_return_id", "sku")
            .agg(pl.col("accepted_units").sum().alias("expected"))
        )
        due = self.accepted.lazy().select("reveni_return_id", pl.col("settled").alias("due"))
        done = (
            s.centra_stock_changes.lazy()
            .filter(pl.col("description").str.starts_with(prefix))
            .with_columns(pl.col("description").str.strip_prefix(prefix).alias("reveni_return_id"))
            .group_by("reveni_return_id", "sku")
            .agg(
                pl.col("delta").sum().alias("restocked"),
                pl.col("stock_change_id").n_unique().alias("changes"),
            )
        )
        known = s.reveni_returns.lazy().select("reveni_return_id", "order_number", "updated_at")
        return (
            expected.join(done, on=["reveni_return_id", "sku"], how="full", coalesce=True)
            .join(known, on="reveni_return_id", how="inner")
            .join(due, on="reveni_return_id", how="left")
            .with_columns(
                pl.col("due").fill_null(False),
                pl.col("expected").fill_null(0),
                pl.col("restocked").fill_null(0),
                pl.col("changes").fill_null(0),
            )
            .collect(engine=self.engine)
        )

    @cached_property
    def refund_entries(self) -> pl.DataFrame:
        """Centra's refunds, one row per refund asked of Centra (`refund_attempts`): `state`
        settled, pending or failed; `entry_id` the entry proving the outcome (a request's
        settlement when it has one), `created_at` when it was asked for; with the Reveni return
        whose Centra return it is on (null when made on the order, or on a Centra return
        returnbridge did not create)."""
        s = self.snapshot
        ours = s.centra_returns.lazy().join(
            s.reveni_returns.lazy().select(pl.col("reveni_return_id").alias("external_id")),
            on="external_id",
            how="semi",
        )
        return (
            refund_attempt_rows(s.centra_payments.lazy(), self.config.refund_types)
            .join(
                ours.select("centra_return_id", pl.col("external_id").alias("reveni_return_id")),
                on="centra_return_id",
                how="left",
            )
            .collect(engine=self.engine)
        )

    @cached_property
    def refunds_due(self) -> pl.DataFrame:
        """The first live Reveni refund of every accepted return with refunded units accepted,
        with what Centra shows for it: credits (successful entries on its Centra returns),
        failed entries, and the value of its refunded Centra return parts."""
        s, c = self.snapshot, self.config
        refunded_units = s.reveni_items.lazy().filter(
            pl.col("accepted_units") > 0, pl.col("exchange_n").is_null()
        )
        # each return's first live refund: sorted within its group, not the whole table first
        live = (
            s.reveni_refunds.lazy()
            .filter(pl.col("status") != "failed")
            .group_by("reveni_return_id")
            .agg(
                pl.all().sort_by("created_at", "refund_id").first(),
                pl.len().alias("live_refunds"),
            )
        )
        entries = self.refund_entries.lazy().filter(pl.col("reveni_return_id").is_not_null())
        manual = pl.col("payment_method") == c.manual_refund_payment_method
        success = entries.filter(pl.col("state") == RefundState.SETTLED.value)
        pending = entries.filter(pl.col("state") == RefundState.PENDING.value)
        in_progress = pending.group_by("reveni_return_id").agg(
            pl.col("amount_minor").sum().alias("pending_amount"),
            pl.col("created_at").min().alias("pending_since"),
        )
        credits = success.group_by("reveni_return_id").agg(
            pl.col("amount_minor").sum().alias("credited"),
            pl.len().alias("credits"),
            (~manual).any().alias("psp_credit"),
            pl.col("currency").first().alias("credit_currency"),
            pl.col("centra_return_id").n_unique().alias("credited_returns"),
        )
        failed = (
            entries.filter(pl.col("state") == RefundState.FAILED.value)
            .join(success, on="centra_return_id", how="anti")
            .join(pending, on="centra_return_id", how="anti")
            .group_by("reveni_return_id")
            .agg(pl.col("amount_minor").sum().alias("failed_amount"))
        )
        parts = (
            s.centra_returns.lazy()
            .filter(~pl.col("exchange_part"))
            .group_by(pl.col("external_id").alias("reveni_return_id"))
            .agg(pl.col("grand_total_minor").sum().alias("centra_value"))
        )
        orders = s.centra_orders.lazy().select(
            "order_number", pl.col("currency").alias("order_currency")
        )
        return (
            live.join(self.accepted.lazy(), on="reveni_return_id", how="inner")
            .join(refunded_units, on="reveni_return_id", how="semi")
            .join(credits, on="reveni_return_id", how="left")
            .join(failed, on="reveni_return_id", how="left")
            .join(in_progress, on="reveni_return_id", how="left")
            .join(parts, on="reveni_return_id", how="left")
            .join(orders, on="order_number", how="left")
            .with_columns(
                pl.col("credits").fill_null(0),
                pl.col("credited_returns").fill_null(0),
                pl.col("psp_credit").fill_null(False),
                (
                    (pl.col("method") == "original_payment_method")
                    & (pl.col("paid_by") == "merchant")
                ).alias("psp"),
                c.tolerance_minor(pl.col("currency")).alias("tolerance"),
            )
            .with_columns(
                # more than one credit on one Centra return (a return split over shipments
                # has one credit per part), or a PSP refund of what Reveni paid
                (
                    (pl.col("credits") > pl.col("credited_returns"))
                    | (~pl.col("psp") & pl.col("psp_credit"))
                ).alias("credited_twice")
            )
            .collect(engine=self.engine)
        )

    @cached_property
    def unlinked(self) -> pl.DataFrame:
        """Centra refunds, settled or pending at the PSP, on orders with a Reveni return that
        are not on a Centra return of one, each classified: `covers` a Reveni refund with no
        credit of its own, settled or pending (same order, amount and currency, matched one to
        one), `repeats` one already credited, or neither (unmatched). Only settled ones can
        repeat or be unmatched: a pending one has paid nothing yet."""
        s = self.snapshot
        returned_orders = s.reveni_returns.lazy().select("order_number").unique()
        loose = (
            self.refund_entries.lazy()
            .filter(
                pl.col("state").is_in([RefundState.SETTLED.value, RefundState.PENDING.value]),
                pl.col("reveni_return_id").is_null(),
            )
            .join(returned_orders, on="order_number", how="semi")
            .select("entry_id", "order_number", "amount_minor", "currency", "created_at", "state")
        )
        due = self.refunds_due.lazy().select(
            pl.col("reveni_return_id").alias("matched_return_id"),
            "order_number",
            "amount_minor",
            "currency",
            "created_at",
            ((pl.col("credits") > 0) | pl.col("pending_amount").is_not_null()).alias("credited"),
        )
        match_on = ["order_number", "amount_minor", "currency"]
        uncredited = _ranked(due.filter(~pl.col("credited")), match_on)
        credited = due.filter(pl.col("credited")).select(
            *match_on, pl.col("matched_return_id").alias("repeated_return_id")
        )
        covering = _ranked(loose, match_on).join(
            uncredited.select(*match_on, "rank", "matched_return_id"),
            on=[*match_on, "rank"],
            how="left",
        )
        return (
            covering.join(credited.unique(match_on), on=match_on, how="left")
            .with_columns(
                pl.col("matched_return_id").is_not_null().alias("covers"),
                (
                    pl.col("matched_return_id").is_null()
                    & pl.col("repeated_return_id").is_not_null()
                    & (pl.col("state") == RefundState.SETTLED.value)
                ).alias("repeats"),
            )
            .collect(engine=self.engine)
        )


_ATTEMPT_KEY: Final = ["order_number", "centra_return_id", "external_reference"]


def refund_attempt_rows(payments: pl.LazyFrame, types: RefundTypes) -> pl.LazyFrame:
    """`refunds.refund_attempts` over every order's payment entries at once: each request
    paired with the settlement entry of the same reference on the same Centra return (the k-th
    request with the k-th settlement, oldest first), the settlements no request claims as
    refunds of their own. Columns: those of `centra_payments` with `state` for `status`."""
    entries = payments.filter(pl.col("entry_type").is_in(sorted(types.all)))
    state = (
        pl.when(pl.col("entry_type") == types.failed)
        .then(pl.lit(RefundState.FAILED.value))
        .when(pl.col("status") == PaymentEntryStatus.SUCCESS.value)
        .then(pl.lit(RefundState.SETTLED.value))
        .when(pl.col("status") == PaymentEntryStatus.PENDING.value)
        .then(pl.lit(RefundState.PENDING.value))
        .otherwise(pl.lit(RefundState.FAILED.value))
    )
    entries = entries.with_columns(state.alias("state"))
    is_request = pl.col("entry_type") == types.request
    referenced = pl.col("external_reference").is_not_null()
    requests = _ranked(entries.filter(is_request), _ATTEMPT_KEY, by=("created_at", "entry_id"))
    # Only settlements under the key of some request can pair: rank those alone (whole key
    # groups are kept, so their ranks are the same), not every refund entry.
    settlements = _ranked(
        entries.filter(~is_request & referenced).join(
            entries.filter(is_request).select(_ATTEMPT_KEY).unique(),
            on=_ATTEMPT_KEY,
            how="semi",
            nulls_equal=True,
        ),
        _ATTEMPT_KEY,
        by=("created_at", "entry_id"),
    ).select(
        *_ATTEMPT_KEY,
        "rank",
        pl.col("entry_id").alias("settled_by"),
        pl.col("state").alias("settled_state"),
        pl.col("amount_minor").alias("settled_amount"),
        pl.col("currency").alias("settled_currency"),
    )
    paired = requests.join(
        settlements, on=[*_ATTEMPT_KEY, "rank"], how="left", nulls_equal=True
    ).with_columns(
        pl.coalesce("settled_by", "entry_id").alias("entry_id"),
        pl.coalesce("settled_state", "state").alias("state"),
        pl.coalesce("settled_amount", "amount_minor").alias("amount_minor"),
        pl.coalesce("settled_currency", "currency").alias("currency"),
    )
    claimed = paired.select(pl.col("settled_by").alias("entry_id")).drop_nulls()
    columns = [c for c in entries.collect_schema().names() if c != "status"]
    unclaimed = entries.filter(~is_request).join(claimed, on="entry_id", how="anti")
    return pl.concat([paired.select(columns), unclaimed.select(columns)])


def _ranked(
    frame: pl.LazyFrame, keys: list[str], by: tuple[str, ...] = ("created_at",)
) -> pl.LazyFrame:
    """`frame` with `rank`: 0, 1, … among rows of equal `keys`, oldest first (so several
    refunds of one amount on one order pair up one to one, never all with one)."""
    return frame.sort(*by).with_columns(
        pl.int_range(pl.len()).over(keys).cast(pl.Int64).alias("rank")
    )


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def rule_reads(config: GapConfig) -> dict[str, TableRead]:
    """What the rules read of the warehouse (`Warehouse.snapshot(reads=...)`): the columns
    each rule below names, and only the rows that can matter to one, filtered in DuckDB. A
    snapshot read so gives exactly the gaps of a whole one (tests/reconcile hold them equal);
    a rule reading a new column or other rows must name it here.

    - payment entries: only the refund types (`refund_attempt_rows` reads no other);
    - stock changes: only returnbridge's restocks (the description's prefix);
    - Centra returns: only those carrying an external id (a Reveni return's);
    - Centra orders: only those a Reveni return or an exchange can name (its order, an
      exchange item's number, an order marked as an exchange); a scope already reads only
      those;
    - Centra return lines: none (no rule reads them)."""
    types = ", ".join(_sql_text(t) for t in sorted(config.refund_types.all))
    return {
        "reveni_returns": _read(
            "reveni_return_id order_number status instant awaiting_inspection created_at updated_at"
        ),
        "reveni_items": _read(
            "reveni_return_id sku accepted_units restock exchange_n exchange_sku "
            "exchange_units exchange_order_number"
        ),
        "reveni_refunds": _read(
            "reveni_return_id refund_id method paid_by status amount_minor currency created_at"
        ),
        "centra_orders": _read(
            "order_number status currency created_at grand_total_minor exchange_of",
            where_unscoped=(
                "exchange_of IS NOT NULL"
                " OR order_number IN (SELECT order_number FROM reveni_returns)"
                " OR order_number IN (SELECT exchange_order_number FROM reveni_items)"
            ),
        ),
        "centra_payments": _read(
            "entry_id order_number centra_return_id entry_type status amount_minor currency "
            "payment_method external_reference created_at",
            where=f"entry_type IN ({types})",
        ),
        "centra_returns": _read(
            "centra_return_id external_id exchange_part grand_total_minor",
            where="external_id IS NOT NULL",
        ),
        "centra_stock_changes": _read(
            "stock_change_id description sku delta",
            where=f"starts_with(description, {_sql_text(config.restock_prefix)})",
        ),
    }


def _read(
    columns: str, *, where: str | None = None, where_unscoped: str | None = None
) -> TableRead:
    return TableRead(tuple(columns.split()), where=where, where_unscoped=where_unscoped)


# ---------------------------------------------------------------------------------- the rules

Rule = Callable[[Inputs], pl.DataFrame]
RULES: dict[str, Rule] = {}


def rule(code: str) -> Callable[[Rule], Rule]:
    """Register a rule under the exception code it raises (`core/codes.py`)."""
    if code not in CODES:
        raise ValueError(f"{code!r} is not an exception code (returnbridge.core.codes)")

    def register(fn: Rule) -> Rule:
        RULES[code] = fn
        return fn

    return register


def _money(amount: pl.Expr, currency: pl.Expr) -> pl.Expr:
    """'299.00 SEK' from minor units (for details; exponents by currency)."""
    exponent = _exponent(currency)
    scale = pl.lit(10, pl.Int64).pow(exponent)
    units = amount.abs() // scale
    cents = (amount.abs() % scale).cast(pl.String).str.zfill(exponent.cast(pl.Int64))
    sign = pl.when(amount < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    fraction = pl.when(exponent > 0).then(pl.lit(".") + cents).otherwise(pl.lit(""))
    return sign + units.cast(pl.String) + fraction + pl.lit(" ") + currency


@rule("return_missing")
def return_missing(i: Inputs) -> pl.DataFrame:
    """Accepted in Reveni, no Centra return carries its id."""
    centra = i.snapshot.centra_returns.select(pl.col("external_id").alias("reveni_return_id"))
    settled = i.accepted.filter(pl.col("settled"))
    return settled.join(centra, on="reveni_return_id", how="anti").select(
        "order_number",
        "reveni_return_id",
        pl.col("updated_at").alias("since"),
        pl.lit(True).alias("fixable"),
        pl.format(
            "{} in Reveni; no Centra return has externalId {}", "status", "reveni_return_id"
        ).alias("detail"),
    )


@rule("restock_missing")
def restock_missing(i: Inputs) -> pl.DataFrame:
    """Accepted units marked restock that no restock stock change brought back."""
    return i.restocks.filter(pl.col("due"), pl.col("restocked") < pl.col("expected")).select(
        "order_number",
        "reveni_return_id",
        "sku",
        pl.col("updated_at").alias("since"),
        pl.lit(True).alias("fixable"),
        pl.format("{} accepted for restock, {} restocked", "expected", "restocked").alias("detail"),
    )


@rule("restock_duplicated")
def restock_duplicated(i: Inputs) -> pl.DataFrame:
    """More restocked than accepted, or more than one restock stock change for a return."""
    return i.restocks.filter(
        (pl.col("restocked") > pl.col("expected")) | (pl.col("changes") > 1)
    ).select(
        "order_number",
        "reveni_return_id",
        "sku",
        pl.col("updated_at").alias("since"),
        pl.lit(False).alias("fixable"),
        pl.format(
            "{} restocked in {} stock changes, {} accepted for restock",
            "restocked",
            "changes",
            "expected",
        ).alias("detail"),
    )


def _uncredited(i: Inputs) -> pl.DataFrame:
    """Due refunds with no credit, no failed entry, not covered by a refund made directly
    in Centra: posting them is still to do (or impossible, see the amount check)."""
    covered = i.unlinked.filter(pl.col("covers")).select(
        pl.col("matched_return_id").alias("reveni_return_id")
    )
    return i.refunds_due.filter(
        pl.col("credits") == 0,
        pl.col("failed_amount").is_null(),
        pl.col("pending_amount").is_null(),
        pl.col("settled"),
    ).join(covered, on="reveni_return_id", how="anti")


def _cannot_post() -> pl.Expr:
    """Whether an uncredited refund cannot be posted as it is: the planner's amount check."""
    gap = pl.col("amount_minor") - pl.col("centra_value")
    return (
        (pl.col("currency") != pl.col("order_currency"))
        | (pl.col("psp") & (gap.abs() > pl.col("tolerance")))
        | (~pl.col("psp") & (gap > pl.col("tolerance")))
    ) & pl.col("centra_value").is_not_null()


@rule("refund_missing")
def refund_missing(i: Inputs) -> pl.DataFrame:
    """A live Reveni refund with no Centra credit that could be posted as it is."""
    todo = _uncredited(i)
    return todo.filter(~_cannot_post()).select(
        "order_number",
        "reveni_return_id",
        "amount_minor",
        "currency",
        pl.col("created_at").alias("since"),
        pl.lit(True).alias("fixable"),
        pl.format("Reveni refund {} ({}); no Centra credit", "refund_id", "method").alias("detail"),
    )


@rule("refund_amount_mismatch")
def refund_amount_mismatch(i: Inputs) -> pl.DataFrame:
    """Reveni's refund differs from Centra's credit (posted), or from Centra's value of the
    returned items so that it cannot be posted."""
    due = i.refunds_due
    posted = due.filter(
        pl.col("credits") > 0,
        ~pl.col("credited_twice"),
        pl.col("pending_amount").is_null(),  # a part still at the PSP: not all credited yet
        ((pl.col("credited") - pl.col("amount_minor")).abs() > pl.col("tolerance"))
        | (pl.col("credit_currency") != pl.col("currency")),
    ).with_columns(
        pl.format(
            "Reveni refunded {}; Centra credited {}",
            _money(pl.col("amount_minor"), pl.col("currency")),
            _money(pl.col("credited"), pl.col("credit_currency")),
        ).alias("detail"),
        pl.col("credited").alias("centra_amount_minor"),
        pl.col("credit_currency").alias("centra_currency"),
    )
    todo = _uncredited(i)
    blocked = todo.filter(_cannot_post()).with_columns(
        pl.format(
            "Reveni refunds {}; Centra values the returned items at {}",
            _money(pl.col("amount_minor"), pl.col("currency")),
            _money(pl.col("centra_value"), pl.col("order_currency")),
        ).alias("detail"),
        pl.col("centra_value").alias("centra_amount_minor"),
        pl.col("order_currency").alias("centra_currency"),
    )
    return pl.concat([posted, blocked]).select(
        "order_number",
        "reveni_return_id",
        "amount_minor",
        "currency",
        pl.col("created_at").alias("since"),
        pl.lit(False).alias("fixable"),
        "detail",
        "centra_amount_minor",
        "centra_currency",
    )


@rule("duplicate_refund")
def duplicate_refund(i: Inputs) -> pl.DataFrame:
    """One return credited twice in any form: two credits in Centra, a PSP refund when Reveni
    paid, a refund made directly in Centra for the amount of one already credited, or two
    live refunds in Reveni."""
    due = i.refunds_due
    twice = due.filter(pl.col("credits") > pl.col("credited_returns")).with_columns(
        pl.format(
            "{} successful credits on {} Centra return(s)", "credits", "credited_returns"
        ).alias("detail")
    )
    psp = due.filter(~pl.col("psp"), pl.col("psp_credit")).with_columns(
        pl.format(
            "Reveni refund {} ({}, paid by {}) and a PSP refund in Centra",
            "refund_id",
            "method",
            "paid_by",
        ).alias("detail")
    )
    in_reveni = due.filter(pl.col("live_refunds") > 1).with_columns(
        pl.format("{} live refunds in Reveni for one return", "live_refunds").alias("detail")
    )
    columns = [
        "order_number",
        "reveni_return_id",
        "amount_minor",
        "currency",
        pl.col("created_at").alias("since"),
        "detail",
    ]
    repeated = i.unlinked.filter(pl.col("repeats")).select(
        "order_number",
        pl.col("repeated_return_id").alias("reveni_return_id"),
        "amount_minor",
        "currency",
        pl.col("created_at").alias("since"),
        pl.format(
            "refund entry {} made in Centra repeats the credit already posted", "entry_id"
        ).alias("detail"),
    )
    found = pl.concat([f.select(columns) for f in (twice, psp, in_reveni)] + [repeated])
    return (
        found.sort("since")
        .unique(["reveni_return_id"], keep="first", maintain_order=True)
        .with_columns(pl.lit(False).alias("fixable"))
    )


@rule("unmatched_centra_refund")
def unmatched_centra_refund(i: Inputs) -> pl.DataFrame:
    """Refunds made in Centra, on orders with a Reveni return, with no Reveni refund behind
    them: one gap per order and currency, summing them."""
    loose = i.unlinked.filter(
        ~pl.col("covers"), ~pl.col("repeats"), pl.col("state") == RefundState.SETTLED.value
    )
    return _summed(loose, "order_number", "currency").select(
        "order_number",
        "amount_minor",
        "currency",
        "since",
        pl.lit(False).alias("fixable"),
        pl.format("Centra refund entries {} have no Reveni refund behind them", "entries").alias(
            "detail"
        ),
    )


def _summed(entries: pl.DataFrame, *keys: str) -> pl.DataFrame:
    """Refund rows summed per `keys`: `amount_minor`, the oldest `since` and the `entries`
    listed by id."""
    return (
        entries.sort("entry_id")
        .group_by(*keys, maintain_order=True)
        .agg(
            pl.col("amount_minor").sum(),
            pl.col("created_at").min().alias("since"),
            pl.col("entry_id").cast(pl.String).str.join(", ").alias("entries"),
        )
    )


@rule("refund_failed_at_gateway")
def refund_failed_at_gateway(i: Inputs) -> pl.DataFrame:
    """Centra's PSP refused the refund and nothing has been credited since."""
    return i.refunds_due.filter(
        pl.col("credits") == 0, pl.col("failed_amount").is_not_null()
    ).select(
        "order_number",
        "reveni_return_id",
        pl.col("failed_amount").alias("amount_minor"),
        pl.col("order_currency").alias("currency"),
        pl.col("created_at").alias("since"),
        pl.lit(False).alias("fixable"),
        pl.format("PSP refund FAILED for Reveni refund {}", "refund_id").alias("detail"),
    )


@rule("refund_pending_too_long")
def refund_pending_too_long(i: Inputs) -> pl.DataFrame:
    """A refund asked of the PSP on a Centra return of a Reveni return, unanswered for longer
    than `refund_pending_max`: one gap per Reveni return, summing its pending requests."""
    cutoff = i.now - i.config.refund_pending_max
    waiting = i.refund_entries.filter(
        pl.col("state") == RefundState.PENDING.value,
        pl.col("reveni_return_id").is_not_null(),
        pl.col("created_at") <= cutoff,
    )
    return _summed(waiting, "reveni_return_id", "order_number", "currency").select(
        "order_number",
        "reveni_return_id",
        "amount_minor",
        "currency",
        "since",
        pl.lit(False).alias("fixable"),
        pl.format(
            "refund request {} of {} asked of the PSP on {} UTC, no answer since",
            "entries",
            _money(pl.col("amount_minor"), pl.col("currency")),
            pl.col("since").dt.strftime("%Y-%m-%d %H:%M"),
        ).alias("detail"),
    )


def _exchanges_due(i: Inputs) -> pl.DataFrame:
    """Accepted exchange items, each with its order in Centra when there is one: the order
    marked as this exchange's (`exchange_of`), or, for an order without a marker (made before
    markers, or by hand), the one under the exchange's first number."""
    due = (
        i.snapshot.reveni_items.filter(
            pl.col("exchange_n").is_not_null(), pl.col("exchange_units") > 0
        )
        .join(i.accepted, on="reveni_return_id", how="inner")
        .with_columns(pl.format("{}:{}", "reveni_return_id", "exchange_n").alias("exchange_of"))
    )
    orders = i.snapshot.centra_orders.select(
        pl.col("order_number").alias("centra_order"),
        "grand_total_minor",
        pl.col("currency").alias("order_currency"),
        pl.col("created_at").alias("ordered_at"),
        "exchange_of",
    )
    marked = orders.filter(pl.col("exchange_of").is_not_null())
    unmarked = orders.filter(pl.col("exchange_of").is_null()).drop("exchange_of")
    by_marker = due.join(marked, on="exchange_of", how="inner")
    by_number = due.join(by_marker.select("exchange_of"), on="exchange_of", how="anti").join(
        unmarked, left_on="exchange_order_number", right_on="centra_order", how="left"
    )
    by_number = by_number.with_columns(
        pl.when(pl.col("grand_total_minor").is_not_null())
        .then(pl.col("exchange_order_number"))
        .alias("centra_order")
    )
    columns = [
        "order_number", "reveni_return_id", "exchange_sku", "exchange_units",
        "exchange_order_number", "updated_at", "settled", "centra_order",
        "grand_total_minor", "order_currency", "ordered_at",
    ]  # fmt: skip
    return pl.concat([by_marker.select(columns), by_number.select(columns)])


@rule("exchange_order_missing")
def exchange_order_missing(i: Inputs) -> pl.DataFrame:
    """An accepted exchange with no Centra order (none marked as its own, none under its
    number)."""
    return (
        _exchanges_due(i)
        .filter(pl.col("settled"), pl.col("centra_order").is_null())
        .select(
            "order_number",
            "reveni_return_id",
            pl.col("exchange_sku").alias("sku"),
            pl.col("updated_at").alias("since"),
            pl.lit(True).alias("fixable"),
            pl.format(
                "{} x {} accepted; Centra has no order {}",
                "exchange_units",
                "exchange_sku",
                "exchange_order_number",
            ).alias("detail"),
        )
    )


@rule("exchange_not_zero_value")
def exchange_not_zero_value(i: Inputs) -> pl.DataFrame:
    """An exchange order whose total is not 0 (the customer or the brand pays twice)."""
    return (
        _exchanges_due(i)
        .filter(pl.col("centra_order").is_not_null(), pl.col("grand_total_minor") != 0)
        .select(
            "order_number",
            "reveni_return_id",
            pl.col("exchange_sku").alias("sku"),
            pl.col("grand_total_minor").alias("amount_minor"),
            pl.col("order_currency").alias("currency"),
            pl.col("ordered_at").alias("since"),
            pl.lit(False).alias("fixable"),
            pl.format(
                "exchange order {} totals {}",
                "centra_order",
                _money(pl.col("grand_total_minor"), pl.col("order_currency")),
            ).alias("detail"),
        )
    )


@rule("instant_deadline_near")
def instant_deadline_near(i: Inputs) -> pl.DataFrame:
    """An instant return not inspected with few days left of Reveni's window (or past it)."""
    c = i.config
    deadline = pl.col("created_at") + timedelta(days=c.instant_window_days)
    return (
        i.snapshot.reveni_returns.filter(
            pl.col("instant"),
            pl.col("awaiting_inspection"),
            deadline - i.now <= timedelta(days=c.instant_deadline_warn_days),
        )
        .with_columns(
            ((deadline - i.now).dt.total_hours() / 24).round(1).alias("days_left"),
        )
        .select(
            "order_number",
            "reveni_return_id",
            pl.col("created_at").alias("since"),
            pl.lit(False).alias("fixable"),
            pl.format(
                "instant return not inspected; {} days left of the {}-day window",
                "days_left",
                pl.lit(c.instant_window_days),
            ).alias("detail"),
            deadline.alias("deadline"),
        )
    )


# ------------------------------------------------------------------------------ all together


def compute_gaps(
    snapshot: Snapshot,
    *,
    config: GapConfig | None = None,
    now: datetime,
    explained: pl.DataFrame | None = None,
    codes: Iterable[str] | None = None,
    engine: EngineType = "in-memory",
) -> pl.DataFrame:
    """Every gap of the snapshot (tables.GAPS), those explained by an open ledger exception
    (`explained`, tables.LEDGER_EXCEPTIONS) left out, sorted by owner, code and age. `engine`:
    Polars' engine for the pieces the rules share (`Inputs.engine`)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    inputs = Inputs(snapshot, config or GapConfig(), now, engine)
    wanted = list(RULES) if codes is None else list(codes)
    unknown = [c for c in wanted if c not in RULES]
    if unknown:
        raise ValueError(f"no gap rule for {unknown}; rules: {sorted(RULES)}")
    found = [_as_gaps(code, RULES[code](inputs), now) for code in wanted]
    gaps = pl.concat(found) if found else pl.DataFrame(schema=GAPS)
    if explained is not None and explained.height:
        gaps = _without_explained(gaps, explained)
    return gaps.sort("owner", "code", "since", "order_number", "reveni_return_id", nulls_last=True)


def without_explained(gaps: pl.DataFrame, explained: pl.DataFrame | None) -> pl.DataFrame:
    """`gaps` (as `compute_gaps` finds them with no `explained`) less those explained by an
    open ledger exception, in `compute_gaps`' order: `compute_gaps(s, explained=e)` is
    `without_explained(compute_gaps(s), e)`."""
    if explained is not None and explained.height:
        gaps = _without_explained(gaps, explained)
    return gaps.sort("owner", "code", "since", "order_number", "reveni_return_id", nulls_last=True)


def _as_gaps(code: str, found: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """A rule's rows in the gap table's columns, with code, owner and age."""
    columns = []
    for name, dtype in GAPS.items():
        if name == "code":
            columns.append(pl.lit(code, pl.String).alias(name))
        elif name == "owner":
            columns.append(pl.lit(CODES[code].owner.value, pl.String).alias(name))
        elif name == "age_days":
            age = (pl.lit(now, UTC_TS) - pl.col("since")).dt.total_days()
            columns.append(age.clip(lower_bound=0).cast(pl.Int64).alias(name))
        elif name in found.columns:
            columns.append(pl.col(name).cast(dtype))
        else:
            columns.append(pl.lit(None, dtype).alias(name))
    return found.select(columns)


def _without_explained(gaps: pl.DataFrame, explained: pl.DataFrame) -> pl.DataFrame:
    pairs = [
        (gap_code, exc_code)
        for gap_code, exc_codes in EXPLAINED_BY.items()
        for exc_code in sorted(exc_codes)
    ]
    explains = pl.DataFrame(pairs, schema={"code": pl.String, "by": pl.String}, orient="row")
    open_ = explained.select(
        pl.col(name).cast(dtype) for name, dtype in LEDGER_EXCEPTIONS.items()
    ).rename({"code": "by"})
    covered = (
        explains.join(open_, on="by", how="inner")
        .filter(pl.col("reveni_return_id").is_not_null())
        .select("code", "reveni_return_id")
        .unique()
    )
    return gaps.join(covered, on=["code", "reveni_return_id"], how="anti", nulls_equal=False)
