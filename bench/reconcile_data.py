"""Generated snapshot files for the reconciliation benchmark: a brand's whole history, plus one
day of changes on top of it, written straight to Parquet in the warehouse's schemas (tables.py).

`generate(directory, orders=1_000_000, returns=300_000, seed=1)` writes `full/<table>.parquet`
(the history) and `day/<table>.parquet` (the next day's changes) and returns what it planted.
Vectorised in Polars (a counter-based generator, so the same seed gives the same files on any
machine); 1M orders take a few seconds.

The history, as the sync leaves it when everything went right:
- Centra orders in SEK, EUR, DKK, NOK and JPY over eight markets, each of 2-4 lines, with a
  PSP capture of its total; some orders never returned are archived or cancelled, and a few
  of those were refunded directly in Centra (customer service, no Reveni return behind it:
  not a gap, the rule only looks at orders with a Reveni return);
- Reveni returns, one per returned order, of 1-3 of the order's lines, in the mix below; for
  each accepted one, the Centra return(s) carrying its id (a mixed return has a refund part and
  an exchange part), their lines, the credit posted in the form Reveni paid (PSP refund of the
  original payment, or a manual non-PSP credit of a Reveni-paid or store-credit refund), the
  restock stock change (`returnbridge restock {rid}`, warehouse 2) and a zero-value exchange
  order per exchanged item under its deterministic number; and goods-received stock changes
  in warehouse 1 that are no restock.

| case | share | what |
|---|---:|---|
| std | 40 % | refund to the original payment method (PSP), accepted or completed |
| sc | 8 % | store credit (manual credit in Centra) |
| inst | 12 % | instant bank transfer paid by Reveni at once (manual credit) |
| exch | 10 % | exchange of every item |
| mix | 4 % | first item exchanged, the others refunded (two Centra returns) |
| pacc | 6 % | partially accepted: some items rejected |
| norefund | 4 % | accepted, no Reveni refund yet |
| rej / canc | 4 / 3 % | rejected, cancelled: nothing in Centra |
| open, open_instant, open_exch | 6 / 2 / 1 % | not inspected yet (an instant one already paid) |

Planted inconsistencies, each on `rate` (0.5 %) of the returns, one gap each (single-item
returns, so a per-SKU rule and a per-return rule count alike): `PLANTED` below. The day of
changes (about 1/30 of the returns): open returns accepted with all their Centra effects,
accepted returns refunded and credited, new returns (open) on orders without one, and 1/30 new
orders; it touches no planted return and plants nothing, so the gaps after it are the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import polars as pl

from returnbridge.core.actions import RESTOCK_DESCRIPTION, exchange_order_number
from returnbridge.reconcile.tables import SNAPSHOT_TABLES

NOW: Final = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
RATE: Final = 0.005
FIRST_ORDER: Final = 10_000_000
RETURNS_WAREHOUSE: Final = 2
PSP_METHOD: Final = "dummy-psp"
HOUR: Final = 3_600_000_000  # microseconds
DAY: Final = 24 * HOUR

# Each planted case is named for the one gap it makes.
PLANTED: Final = (
    "return_missing",
    "refund_missing",
    "refund_amount_mismatch",
    "duplicate_refund",
    "unmatched_centra_refund",
    "restock_missing",
    "restock_duplicated",
    "exchange_order_missing",
    "exchange_not_zero_value",
    "instant_deadline_near",
)
BACKGROUND: Final = (
    ("std", 40),
    ("sc", 8),
    ("inst", 12),
    ("exch", 10),
    ("mix", 4),
    ("pacc", 6),
    ("norefund", 4),
    ("rej", 4),
    ("canc", 3),
    ("open", 6),
    ("open_instant", 2),
    ("open_exch", 1),
)
_OPM, _SC, _BT = "original_payment_method", "store_credit", "bank_transfer"
# case: type, refund method, paid by, instant, item decision, restock, Centra return,
# credits posted, restock stock changes, exchange orders
_CASES: Final = pl.DataFrame(
    [
        ("std", "refund", _OPM, "merchant", False, "all", "random", True, 1, 1, "ok"),
        ("sc", "refund", _SC, "merchant", False, "all", "random", True, 1, 1, "ok"),
        ("inst", "refund", _BT, "reveni", True, "all", "random", True, 1, 1, "ok"),
        ("exch", "exchange", None, None, False, "all", "random", True, 0, 1, "ok"),
        ("mix", "mixed", _OPM, "merchant", False, "all", "random", True, 1, 1, "ok"),
        ("pacc", "refund", _OPM, "merchant", False, "partial", "random", True, 1, 1, "ok"),
        ("norefund", "refund", None, None, False, "all", "random", True, 0, 1, "ok"),
        ("rej", "refund", None, None, False, "rejected", "none", False, 0, 0, "ok"),
        ("canc", "refund", None, None, False, "pending", "none", False, 0, 0, "ok"),
        ("open", "refund", None, None, False, "pending", "none", False, 0, 0, "ok"),
        ("open_instant", "refund", _BT, "reveni", True, "pending", "none", False, 0, 0, "ok"),
        ("open_exch", "exchange", None, None, False, "pending", "none", False, 0, 0, "ok"),
        ("return_missing", "refund", None, None, False, "all", "none", False, 0, 0, "ok"),
        ("refund_missing", "refund", _OPM, "merchant", False, "all", "all", True, 0, 1, "ok"),
        ("refund_amount_mismatch", "refund", _OPM, "merchant", False, "all", "all", True, 1, 1,
         "ok"),
        ("duplicate_refund", "refund", _OPM, "merchant", False, "all", "all", True, 2, 1, "ok"),
        ("restock_missing", "refund", _OPM, "merchant", False, "all", "all", True, 1, 0, "ok"),
        ("restock_duplicated", "refund", _OPM, "merchant", False, "all", "all", True, 1, 2, "ok"),
        ("exchange_order_missing", "exchange", None, None, False, "all", "random", True, 0, 1,
         "missing"),
        ("exchange_not_zero_value", "exchange", None, None, False, "all", "random", True, 0, 1,
         "nonzero"),
        ("instant_deadline_near", "refund", _BT, "reveni", True, "pending", "none", False, 0, 0,
         "ok"),
    ],
    schema={
        "case": pl.String, "type": pl.String, "method": pl.String, "paid_by": pl.String,
        "instant": pl.Boolean, "decision": pl.String, "restock_mode": pl.String,
        "centra": pl.Boolean, "credits": pl.Int64, "restocks": pl.Int64, "exchange": pl.String,
    },
    orient="row",
)  # fmt: skip
_RETURN_CASES: Final = [c for c in PLANTED if c != "unmatched_centra_refund"]
_SINGLE_ITEM: Final = frozenset(_RETURN_CASES)
_EXCHANGE_CASES: Final = [
    "exch", "mix", "open_exch", "exchange_order_missing", "exchange_not_zero_value",
]  # fmt: skip
MARKETS: Final = (
    ("SE", "SEK", 35),
    ("DE", "EUR", 20),
    ("FR", "EUR", 8),
    ("NL", "EUR", 7),
    ("FI", "EUR", 5),
    ("DK", "DKK", 10),
    ("NO", "NOK", 10),
    ("JP", "JPY", 5),
)
# unit price in minor units: base + step * floor(u * steps) (all multiples of 10, so a planted
# loose refund ending in 1 can never equal a refund's amount)
_PRICES: Final = {
    "SEK": (19_900, 1_000, 130),
    "EUR": (1_990, 100, 130),
    "DKK": (14_900, 1_000, 100),
    "NOK": (19_900, 1_000, 130),
    "JPY": (2_000, 100, 180),
}
_SIZES: Final = ("XS", "S", "M", "L", "XL")


@dataclass(frozen=True)
class Dataset:
    """What `generate` wrote: the history (`full`), the next day's changes (`day`), the
    reconciliation times of each, and the gaps planted (the same after the day)."""

    full: Path
    day: Path | None
    now: datetime
    day_now: datetime
    planted: dict[str, int]
    rows: dict[str, int]
    day_rows: dict[str, int]
    day_returns: int  # returns changed or new in the day
    seconds: float


def generate(
    directory: Path,
    *,
    orders: int = 1_000_000,
    returns: int = 300_000,
    seed: int = 1,
    now: datetime = NOW,
    day: bool = True,
    rate: float = RATE,
) -> Dataset:
    """Write the history of `orders` orders and `returns` returns (and the next day's changes
    when `day`) as Parquet under `directory`."""
    if returns * 2 > orders:
        raise ValueError("at most one return per two orders (returns sit on distinct orders)")
    started = time.perf_counter()
    gen = _Generator(orders, returns, seed, now, rate)
    full = directory / "full"
    rows = _write(gen.history(), full)
    day_dir = day_rows = None
    changed = 0
    if day:
        day_frames, changed = gen.next_day()
        day_dir = directory / "day"
        day_rows = _write(day_frames, day_dir)
    return Dataset(
        full=full,
        day=day_dir,
        now=now,
        day_now=now + timedelta(days=1),
        planted=dict.fromkeys(PLANTED, gen.planted),
        rows=rows,
        day_rows=day_rows or {},
        day_returns=changed,
        seconds=time.perf_counter() - started,
    )


# Each table's rows in the order of a unique id (what an API extract would give), so a seed
# always writes the same files.
_ORDER: Final = {
    "reveni_returns": ["reveni_return_id"],
    "reveni_items": ["item_id"],
    "reveni_refunds": ["refund_id"],
    "centra_orders": ["order_number"],
    "centra_payments": ["entry_id"],
    "centra_returns": ["centra_return_id"],
    "centra_return_lines": ["centra_return_id", "line_id"],
    "centra_stock_changes": ["stock_change_id", "line_id"],
}


def _write(frames: dict[str, pl.DataFrame], directory: Path) -> dict[str, int]:
    directory.mkdir(parents=True, exist_ok=True)
    for table, frame in frames.items():
        frame.sort(_ORDER[table]).write_parquet(
            directory / f"{table}.parquet", compression="lz4", statistics=False
        )
    return {table: frame.height for table, frame in frames.items()}


# ---------------------------------------------------------------------------------- randomness

_U64 = pl.UInt64


def _rand(index: pl.Expr, seed: int, stream: int) -> pl.Expr:
    """Uniform [0, 1) per row, a pure function of (index, seed, stream): SplitMix64."""
    mixed = (seed * 0x632BE59BD9B4E019 + stream * 0xD1B54A32D192ED03 + 1) % 2**64
    x = index.cast(_U64) * pl.lit(0x9E3779B97F4A7C15, _U64) + pl.lit(mixed, _U64)
    z = x.xor(x // pl.lit(2**30, _U64)) * pl.lit(0xBF58476D1CE4E5B9, _U64)
    z = z.xor(z // pl.lit(2**27, _U64)) * pl.lit(0x94D049BB133111EB, _U64)
    z = z.xor(z // pl.lit(2**31, _U64))
    return (z // pl.lit(2**11, _U64)).cast(pl.Float64) / float(2**53)


def _pick(u: pl.Expr, choices: tuple[tuple[str, int], ...]) -> pl.Expr:
    """One of `choices` (value, weight) by the uniform `u`."""
    total = sum(w for _, w in choices)
    edges, edge = [], 0
    for _, weight in choices[:-1]:
        edge += weight
        edges.append(edge / total)
    index = pl.lit(0, pl.Int64)
    for cut in edges:
        index = index + (u >= cut).cast(pl.Int64)
    return index.replace_strict(dict(enumerate(v for v, _ in choices)), return_dtype=pl.String)


def _ts(micros: pl.Expr) -> pl.Expr:
    return micros.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _micros(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# ---------------------------------------------------------------------------------- generator


class _Generator:
    def __init__(self, orders: int, returns: int, seed: int, now: datetime, rate: float) -> None:
        self.orders, self.returns, self.seed = orders, returns, seed
        self.now = _micros(now)
        self.planted = max(1, round(returns * rate))
        self.new_returns = returns // 60  # on the day: new returns; as many open ones accepted
        # A random order of the orders: the first `returns` have a return in the history, the
        # next `new_returns` get one on the day, the last ones may be refunded in Centra alone.
        perm = pl.select(o=pl.int_range(orders, dtype=pl.Int64)).sort(_rand(pl.col("o"), seed, 1))[
            "o"
        ]
        self.returned_orders = perm[: returns + self.new_returns]
        self.loose_orders = perm[returns + self.new_returns :][: max(1, orders // 500)]

    def r(self, index: pl.Expr, stream: int) -> pl.Expr:
        return _rand(index, self.seed, stream)

    # ------------------------------------------------------------------ orders

    def _orders(self, first: int, count: int, created: tuple[int, int]) -> pl.DataFrame:
        """Orders `first .. first+count-1` (their index `o`), created in `created` (micros)."""
        o = pl.col("o")
        market = _pick(self.r(o, 10), tuple((m, w) for m, _, w in MARKETS))
        currency = dict((m, c) for m, c, _ in MARKETS)
        start, span = created
        frame = pl.select(o=pl.int_range(first, first + count, dtype=pl.Int64)).with_columns(
            order_number=o + FIRST_ORDER,
            market=market,
            created_us=start + (self.r(o, 11) * span).cast(pl.Int64),
            status_u=self.r(o, 12),
        )
        frame = frame.with_columns(
            currency=pl.col("market").replace_strict(currency, return_dtype=pl.String)
        )
        lines = self._lines(frame.select("o", "currency", pl.lit(4).alias("n")), all_lines=True)
        totals = lines.group_by("o").agg(
            (pl.col("price") * pl.col("quantity")).sum().alias("grand_total_minor")
        )
        returnable = pl.DataFrame({"o": self.returned_orders, "returnable": True})
        return (
            frame.join(totals, on="o", how="left")
            .join(returnable, on="o", how="left")
            .with_columns(
                status=pl.when(pl.col("returnable"))
                .then(pl.lit("SHIPPED"))
                .otherwise(
                    _pick(pl.col("status_u"), (("SHIPPED", 88), ("ARCHIVED", 10), ("CANCELLED", 2)))
                ),
                created_at=_ts(pl.col("created_us")),
            )
        )

    def _lines(self, frame: pl.DataFrame, *, all_lines: bool = False) -> pl.DataFrame:
        """Lines `k` of orders `o` (2-4 of them; `n` caps how many are wanted): quantity and
        unit price (and SKUs, unless `all_lines`: an order's total needs none), pure functions
        of (o, k) so a return's items are its order's lines."""
        o, k = pl.col("o"), pl.col("k")
        key = o * 8 + k
        n_lines = 2 + (self.r(o, 13) * 3).cast(pl.Int64)
        style = ((self.r(o, 14) * 3000).cast(pl.Int64) + k * 37) % 3000
        size = (self.r(key, 15) * 5).cast(pl.Int64)
        base = pl.col("currency").replace_strict({c: p[0] for c, p in _PRICES.items()})
        step = pl.col("currency").replace_strict({c: p[1] for c, p in _PRICES.items()})
        steps = pl.col("currency").replace_strict({c: p[2] for c, p in _PRICES.items()})
        sizes = dict(enumerate(_SIZES))
        out = (
            frame.with_columns(n=pl.min_horizontal("n", n_lines) if all_lines else pl.col("n"))
            .with_columns(k=pl.int_ranges(0, "n", dtype=pl.Int64))
            .explode("k")
            .with_columns(
                quantity=1 + (self.r(key, 16) < 0.2).cast(pl.Int64),
                price=(base + step * (self.r(key, 17) * steps).cast(pl.Int64)).cast(pl.Int64),
                n_lines=n_lines,
            )
        )
        if all_lines:
            return out
        return out.with_columns(
            sku=pl.format(
                "G-{}-{}",
                style.cast(pl.String).str.zfill(4),
                size.replace_strict(sizes, return_dtype=pl.String),
            ),
            exchange_sku=pl.format(
                "G-{}-{}",
                style.cast(pl.String).str.zfill(4),
                ((size + 1) % 5).replace_strict(sizes, return_dtype=pl.String),
            ),
        )

    def order_frames(
        self, first: int, count: int, created: tuple[int, int]
    ) -> dict[str, pl.DataFrame]:
        orders = self._orders(first, count, created)
        captures = orders.filter(pl.col("grand_total_minor") > 0).select(
            entry_id=pl.col("o") * 4 + 1,
            order_number="order_number",
            centra_return_id=pl.lit(None, pl.Int64),
            entry_type=pl.lit("CAPTURE"),
            status=pl.lit("SUCCESS"),
            amount_minor="grand_total_minor",
            currency="currency",
            payment_method=pl.lit(PSP_METHOD),
            external_reference=pl.format("psp-capture-{}", "order_number"),
            created_at=_ts(pl.col("created_us") + HOUR),
        )
        return {"centra_orders": orders, "centra_payments": captures}

    # ------------------------------------------------------------------ returns

    def history_spec(self) -> pl.DataFrame:
        """One row per return of the history: its order, case and times."""
        j = pl.col("j")
        k = self.planted
        planted_cases = len(_RETURN_CASES)
        frame = pl.select(j=pl.int_range(self.returns, dtype=pl.Int64)).with_columns(
            rank=self.r(j, 20).rank("ordinal").cast(pl.Int64) - 1,
            o=pl.Series(self.returned_orders[: self.returns]),
        )
        background = _pick(self.r(j, 21), BACKGROUND)
        index = dict(enumerate(_RETURN_CASES))
        frame = frame.with_columns(
            case=pl.when(pl.col("rank") < planted_cases * k)
            .then((pl.col("rank") // k).replace_strict(index, return_dtype=pl.String))
            .otherwise(background)
        )
        # the hosts of the planted refunds made in Centra alone: k returns of case std
        hosts = (
            frame.filter(pl.col("case") == "std")
            .sort(self.r(pl.col("j"), 22))
            .head(k)
            .select("j", loose=pl.lit(True))
        )
        if hosts.height < k:
            raise ValueError("too few returns to plant every gap")
        frame = frame.join(hosts, on="j", how="left").with_columns(pl.col("loose").fill_null(False))
        return frame.join(_unique_exchange_ids(frame), on="j", how="left").with_columns(
            pl.col("reveni_return_id").fill_null(
                pl.format("ret_{}", j.cast(pl.String).str.zfill(8))
            )
        )

    def _timed(self, spec: pl.DataFrame, orders: pl.DataFrame) -> pl.DataFrame:
        """`spec` with its order's columns, the case's columns and the return's times (for the
        history; the day sets its own)."""
        j = pl.col("j")
        order_created = pl.col("order_created_us")
        decided_from = order_created + 2 * DAY
        decided_to = pl.lit(self.now - 3 * DAY)
        decided = decided_from + (self.r(j, 30) * (decided_to - decided_from)).cast(pl.Int64)
        open_age = (self.r(j, 31) * 20 * DAY).cast(pl.Int64) + HOUR
        near = (27.2 * DAY + self.r(j, 32) * 1.6 * DAY).cast(pl.Int64)
        created = (
            pl.when(pl.col("case") == "instant_deadline_near")
            .then(self.now - near)
            .when(pl.col("decision") == "pending")
            .then(self.now - open_age)
            .otherwise(decided)
        )
        return (
            self._with_case(spec, orders)
            .with_columns(created_us=created)
            .with_columns(
                updated_us=pl.when(pl.col("decision") == "pending")
                .then(pl.col("created_us") + (self.r(j, 33) * HOUR).cast(pl.Int64))
                .otherwise(pl.col("created_us") + (DAY // 2 + self.r(j, 34) * DAY).cast(pl.Int64))
            )
        )

    def _with_case(self, spec: pl.DataFrame, orders: pl.DataFrame) -> pl.DataFrame:
        cols = orders.select(
            "o", "order_number", "currency", "market", order_created_us="created_us"
        )
        return spec.join(cols, on="o", how="left").join(_CASES, on="case", how="left")

    def return_frames(self, spec: pl.DataFrame) -> dict[str, pl.DataFrame]:
        """Every row the returns of `spec` (timed, with their case) leave in both systems."""
        j = pl.col("j")
        spec = spec.with_columns(
            status=pl.when(pl.col("decision") == "all")
            .then(
                pl.when(self.r(j, 40) < 0.6).then(pl.lit("accepted")).otherwise(pl.lit("completed"))
            )
            .when(pl.col("decision") == "partial")
            .then(pl.lit("partially_accepted"))
            .when(pl.col("decision") == "rejected")
            .then(pl.lit("rejected"))
            .when(pl.col("case") == "canc")
            .then(pl.lit("cancelled"))
            .otherwise(
                _pick(
                    self.r(j, 41),
                    (("in_progress", 3), ("shipped", 3), ("received", 2), ("for_review", 2)),
                )
            ),
            awaiting_inspection=(pl.col("decision") == "pending") & (pl.col("case") != "canc"),
            n=pl.when(pl.col("case").is_in(list(_SINGLE_ITEM)))
            .then(1)
            .when(pl.col("type").eq("mixed") | pl.col("decision").eq("partial"))
            .then(2 + (self.r(j, 42) < 0.3).cast(pl.Int64))
            .otherwise(1 + (self.r(j, 43) * 3).cast(pl.Int64)),
            created_at=_ts(pl.col("created_us")),
            updated_at=_ts(pl.col("updated_us")),
        )
        items = self._items(spec)
        out = {
            "reveni_returns": spec.select(
                "reveni_return_id",
                "order_number",
                "status",
                "type",
                "instant",
                "awaiting_inspection",
                "created_at",
                "updated_at",
            ),
            "reveni_items": items,
        }
        out.update(self._centra_side(spec, items))
        return out

    def _items(self, spec: pl.DataFrame) -> pl.DataFrame:
        lines = self._lines(
            spec.select(
                "j", "o", "currency", "n", "decision", "restock_mode", "type", "reveni_return_id"
            )
        )
        key = pl.col("j") * 8 + pl.col("k")
        n_items = pl.min_horizontal("n", "n_lines")
        exchanged = (pl.col("type") == "exchange") | (
            (pl.col("type") == "mixed") & (pl.col("k") == 0)
        )
        accepted = (
            pl.when(pl.col("decision") == "all")
            .then(True)
            .when(pl.col("decision") == "partial")
            .then(
                pl.when(pl.col("k") == 0)
                .then(True)
                .when(pl.col("k") == n_items - 1)
                .then(False)
                .otherwise(self.r(key, 50) < 0.5)
            )
            .when(pl.col("decision") == "rejected")
            .then(False)
            .otherwise(None)
        )
        restock = (
            pl.when(pl.col("restock_mode") == "all")
            .then(True)
            .when(pl.col("restock_mode") == "random")
            .then(self.r(key, 51) < 0.9)
            .otherwise(False)
        )
        items = (
            lines.filter(pl.col("k") < n_items)
            .with_columns(accepted=accepted, exchanged=exchanged)
            .with_columns(
                item_id=pl.format("{}-i{}", "reveni_return_id", "k"),
                status=pl.when(pl.col("accepted").is_null())
                .then(pl.lit("pending"))
                .when(pl.col("accepted"))
                .then(pl.lit("accepted"))
                .otherwise(pl.lit("rejected")),
                accepted_units=pl.when(pl.col("accepted")).then("quantity").otherwise(0),
                restock=restock & pl.col("accepted").fill_null(False),
                exchange_n=pl.when(pl.col("exchanged")).then(
                    pl.when(pl.col("type") == "mixed").then(0).otherwise("k")
                ),
            )
            .with_columns(
                exchange_sku=pl.when(pl.col("exchanged")).then("exchange_sku"),
                exchange_units=pl.when(pl.col("exchanged")).then("accepted_units"),
            )
        )
        numbers = [
            None if n is None else exchange_order_number(rid, n)
            for rid, n in zip(items["reveni_return_id"], items["exchange_n"], strict=True)
        ]
        return items.with_columns(
            exchange_order_number=pl.Series(numbers, dtype=pl.Int64),
            unit_price_minor="price",
        )

    def _centra_side(self, spec: pl.DataFrame, items: pl.DataFrame) -> dict[str, pl.DataFrame]:
        j = pl.col("j")
        ctx = spec.select(
            "j", "reveni_return_id", "order_number", "currency", "market", "type", "method",
            "paid_by", "instant", "centra", "credits", "restocks", "exchange", "loose",
            "decision", "created_us", "updated_us",
        )  # fmt: skip
        items = items.select(
            "j", "k", "sku", "quantity", "accepted_units", "restock", "exchanged",
            "exchange_n", "exchange_order_number", "price",
        ).join(ctx, on="j")  # fmt: skip
        # Reveni refund: the refunded (not exchanged) items, at what was accepted, or at what
        # was asked when Reveni paid before inspection (instant)
        units = (
            pl.when(pl.col("decision") == "pending").then("quantity").otherwise("accepted_units")
        )
        value = (
            items.filter(~pl.col("exchanged"))
            .group_by("j")
            .agg((pl.col("price") * units).sum().alias("value"))
        )
        with_refund = spec.filter(pl.col("method").is_not_null()).join(value, on="j", how="left")
        mismatch = pl.col("case") == "refund_amount_mismatch"
        refunds = with_refund.select(
            "j",
            "reveni_return_id",
            refund_id=pl.format("rf_{}", j.cast(pl.String).str.zfill(8)),
            method="method",
            paid_by="paid_by",
            status=pl.lit("paid"),
            amount_minor=pl.col("value")
            - pl.when(mismatch)
            .then(10 * (pl.col("value") // 100).clip(lower_bound=1))
            .otherwise(0),
            currency="currency",
            created_at=_ts(
                pl.when(pl.col("instant"))
                .then(pl.col("created_us") + 5 * 60_000_000)
                .otherwise(pl.col("updated_us"))
            ),
        )
        # Centra returns: the accepted items; a mixed return's exchanged items in a part of
        # their own
        parts_items = (
            items.filter(pl.col("centra"), pl.col("accepted_units") > 0)
            .with_columns(exchange_part=pl.col("exchanged") & (pl.col("type") == "mixed"))
            .with_columns(centra_return_id=j * 2 + 1 + pl.col("exchange_part").cast(pl.Int64))
        )
        credited = (pl.col("credits") > 0) & ~pl.col("exchange_part")
        parts = parts_items.group_by("centra_return_id").agg(
            pl.col(
                "j", "reveni_return_id", "order_number", "currency", "exchange_part", "credits",
                "method", "updated_us",
            ).first(),
            (pl.col("price") * pl.col("accepted_units")).sum().alias("grand_total_minor"),
        )  # fmt: skip
        centra_returns = parts.select(
            "j",
            "centra_return_id",
            "order_number",
            external_id="reveni_return_id",
            shipment_id="order_number",
            status=pl.when(credited | pl.col("exchange_part"))
            .then(pl.lit("COMPLETED"))
            .otherwise(pl.lit("PENDING")),
            exchange_part="exchange_part",
            grand_total_minor="grand_total_minor",
            currency="currency",
            created_at=_ts(pl.col("updated_us") + 5 * 60_000_000),
        )
        lines = parts_items.select(
            "j",
            "centra_return_id",
            line_id=j * 8 + pl.col("k") + 1,
            sku="sku",
            quantity="accepted_units",
        )
        # credits on the refund part, in the form Reveni paid
        psp = pl.col("method") == _OPM
        refund_amount = refunds.select("j", reveni_amount="amount_minor", refund_id="refund_id")
        entries = (
            parts.filter(credited)
            .join(refund_amount, on="j")
            .with_columns(c=pl.int_ranges(0, "credits", dtype=pl.Int64))
            .explode("c")
            .select(
                "j",
                entry_id=2_000_000_000 + j * 4 + pl.col("c"),
                order_number="order_number",
                centra_return_id="centra_return_id",
                entry_type=pl.lit("REFUND"),
                status=pl.lit("SUCCESS"),
                amount_minor=pl.when(psp).then("grand_total_minor").otherwise("reveni_amount"),
                currency="currency",
                payment_method=pl.when(psp).then(pl.lit(PSP_METHOD)).otherwise(pl.lit("manual")),
                external_reference=pl.when(psp)
                .then(pl.format("psp-refund-{}-{}", "centra_return_id", "c"))
                .otherwise("refund_id"),
                created_at=_ts(pl.col("updated_us") + 10 * 60_000_000 + pl.col("c") * HOUR),
            )
        )
        loose = spec.filter(pl.col("loose")).select(
            "j",
            entry_id=3_000_000_000 + j,
            order_number="order_number",
            centra_return_id=pl.lit(None, pl.Int64),
            entry_type=pl.lit("REFUND"),
            status=pl.lit("SUCCESS"),
            amount_minor=4_901 + 100 * (self.r(j, 60) * 50).cast(pl.Int64),
            currency="currency",
            payment_method=pl.lit(PSP_METHOD),
            external_reference=pl.format("psp-refund-order-{}", "order_number"),
            created_at=_ts(pl.col("updated_us") + HOUR),
        )
        # restock stock changes: one per return (two when planted so), a line per SKU
        restocked = items.filter(pl.col("restock"), pl.col("accepted_units") > 0)
        stock = (
            restocked.filter(pl.col("restocks") > 0)
            .with_columns(c=pl.int_ranges(0, "restocks", dtype=pl.Int64))
            .explode("c")
            .select(
                "j",
                stock_change_id=j * 2 + pl.col("c") + 1,
                line_id=j * 8 + pl.col("c") * 4 + pl.col("k") + 1,
                description=pl.lit(RESTOCK_DESCRIPTION.split("{rid}")[0])
                + pl.col("reveni_return_id"),
                warehouse_id=pl.lit(RETURNS_WAREHOUSE, pl.Int64),
                sku="sku",
                delta="accepted_units",
                created_at=_ts(pl.col("updated_us") + 15 * 60_000_000 + pl.col("c") * HOUR),
            )
        )
        exchange_orders = items.filter(
            pl.col("exchanged"),
            pl.col("accepted_units") > 0,
            pl.col("exchange") != "missing",
            pl.col("centra"),
        ).select(
            "j",
            order_number="exchange_order_number",
            status=pl.lit("CONFIRMED"),
            currency="currency",
            market="market",
            created_at=_ts(pl.col("updated_us") + 20 * 60_000_000),
            grand_total_minor=pl.when(pl.col("exchange") == "nonzero")
            .then(pl.col("price") * pl.col("accepted_units"))
            .otherwise(0),
            # the marker returnbridge puts on its exchange orders (internal comment)
            exchange_of=pl.format("{}:{}", "reveni_return_id", "exchange_n"),
        )
        return {
            "reveni_refunds": refunds,
            "centra_returns": centra_returns,
            "centra_return_lines": lines,
            "refund_entries": pl.concat([entries, loose]),
            "centra_stock_changes": stock,
            "exchange_orders": exchange_orders,
        }

    # ------------------------------------------------------------------ whole files

    def history(self) -> dict[str, pl.DataFrame]:
        base = self.order_frames(0, self.orders, (self.now - 180 * DAY, 150 * DAY))
        spec = self._timed(self.history_spec(), base["centra_orders"])
        ret = self.return_frames(spec)
        loose = self._loose_on_unreturned(base["centra_orders"])
        goods = self._goods_received(max(1, self.orders // 20))
        frames = {
            "reveni_returns": ret["reveni_returns"],
            "reveni_items": ret["reveni_items"],
            "reveni_refunds": ret["reveni_refunds"],
            "centra_orders": pl.concat(
                [
                    _conformed(base["centra_orders"], "centra_orders"),
                    _conformed(ret["exchange_orders"], "centra_orders"),
                ]
            ),
            "centra_payments": pl.concat(
                [
                    _conformed(base["centra_payments"], "centra_payments"),
                    _conformed(ret["refund_entries"], "centra_payments"),
                    loose,
                ]
            ),
            "centra_returns": ret["centra_returns"],
            "centra_return_lines": ret["centra_return_lines"],
            "centra_stock_changes": pl.concat(
                [_conformed(ret["centra_stock_changes"], "centra_stock_changes"), goods]
            ),
        }
        self._spec = spec
        self._orders_base = base["centra_orders"]
        self._captures = base["centra_payments"]
        return {t: _conformed(f, t) for t, f in frames.items()}

    def _loose_on_unreturned(self, orders: pl.DataFrame) -> pl.DataFrame:
        """Refunds made in Centra on orders no Reveni return is about (not gaps)."""
        chosen = orders.join(pl.DataFrame({"o": self.loose_orders}), on="o", how="semi")
        return _conformed(
            chosen.select(
                entry_id=pl.col("o") * 4 + 2,
                order_number="order_number",
                centra_return_id=pl.lit(None, pl.Int64),
                entry_type=pl.lit("REFUND"),
                status=pl.lit("SUCCESS"),
                amount_minor=(pl.col("grand_total_minor") // 2) // 10 * 10,
                currency="currency",
                payment_method=pl.lit(PSP_METHOD),
                external_reference=pl.format("psp-refund-order-{}", "order_number"),
                created_at=_ts(pl.col("created_us") + 5 * DAY),
            ),
            "centra_payments",
        )

    def _goods_received(self, count: int) -> pl.DataFrame:
        s = pl.col("s")
        return _conformed(
            pl.select(s=pl.int_range(count, dtype=pl.Int64)).select(
                stock_change_id=1_000_000_000 + s,
                line_id=1_000_000_000 + s,
                description=pl.format("goods received PO-{}", s),
                warehouse_id=pl.lit(1, pl.Int64),
                sku=pl.format(
                    "G-{}-M", (self.r(s, 70) * 3000).cast(pl.Int64).cast(pl.String).str.zfill(4)
                ),
                delta=1 + (self.r(s, 71) * 50).cast(pl.Int64),
                created_at=_ts(self.now - (self.r(s, 72) * 150 * DAY).cast(pl.Int64)),
            ),
            "centra_stock_changes",
        )

    def next_day(self) -> tuple[dict[str, pl.DataFrame], int]:
        """The next day's changes on top of `history()` (which must have run): open returns
        accepted with their Centra effects, accepted returns refunded and credited, new open
        returns, new orders. The changed parents come with all their children."""
        spec, now = self._spec, self.now
        j = pl.col("j")
        count = self.new_returns
        during = now + (self.r(j, 80) * 20 * HOUR).cast(pl.Int64)
        opened = (
            spec.filter(pl.col("case").is_in(["open", "open_instant", "open_exch"]))
            .sort(self.r(j, 81))
            .head(count - count // 5)
        )
        accepted = opened.select(
            "j", "o", "reveni_return_id", "loose", "created_us",
            case=pl.col("case").replace_strict(
                {"open": "std", "open_instant": "inst", "open_exch": "exch"}
            ),
        ).with_columns(updated_us=during, part=pl.lit("accepted"))  # fmt: skip
        refunded = (
            spec.filter(pl.col("case") == "norefund")
            .sort(self.r(j, 82))
            .head(count // 5)
            .select("j", "o", "reveni_return_id", "loose", "created_us", case=pl.lit("std"))
            .with_columns(updated_us=during, part=pl.lit("refunded"))
        )
        new = (
            pl.select(j=pl.int_range(self.returns, self.returns + count, dtype=pl.Int64))
            .with_columns(
                o=pl.Series(self.returned_orders[self.returns :]),
                reveni_return_id=pl.format("ret_{}", j.cast(pl.String).str.zfill(8)),
                loose=pl.lit(False),
                created_us=during,
                case=pl.when(self.r(j, 83) < 0.2)
                .then(pl.lit("open_instant"))
                .otherwise(pl.lit("open")),
            )
            .with_columns(updated_us=pl.col("created_us"), part=pl.lit("new"))
        )
        changed = pl.concat([accepted, refunded, new.select(accepted.columns)])
        base = self._orders_base
        timed = self._with_case(changed, base)
        ret = self.return_frames(timed)
        touched = timed.filter(pl.col("part") != "new").select("o").unique()
        touched_orders = base.join(touched, on="o", how="semi")
        captures = self._captures
        touched_captures = captures.join(
            touched_orders.select("order_number"), on="order_number", how="semi"
        )
        new_orders = self.order_frames(self.orders, max(1, self.orders // 30), (now, 20 * HOUR))
        refreshed = timed.filter(pl.col("part") != "new").select("j")
        accepted_j = timed.filter(pl.col("part") == "accepted").select("j")
        frames = {
            "reveni_returns": ret["reveni_returns"],
            "reveni_items": ret["reveni_items"],
            "reveni_refunds": ret["reveni_refunds"],
            "centra_orders": pl.concat(
                [
                    _conformed(touched_orders, "centra_orders"),
                    _conformed(ret["exchange_orders"], "centra_orders"),
                    _conformed(new_orders["centra_orders"], "centra_orders"),
                ]
            ),
            "centra_payments": pl.concat(
                [
                    _conformed(touched_captures, "centra_payments"),
                    _conformed(
                        ret["refund_entries"].join(refreshed, on="j", how="semi"), "centra_payments"
                    ),
                    _conformed(new_orders["centra_payments"], "centra_payments"),
                ]
            ),
            "centra_returns": ret["centra_returns"].join(refreshed, on="j", how="semi"),
            "centra_return_lines": ret["centra_return_lines"].join(refreshed, on="j", how="semi"),
            "centra_stock_changes": ret["centra_stock_changes"].join(
                accepted_j, on="j", how="semi"
            ),
        }
        return {t: _conformed(f, t) for t, f in frames.items()}, changed.height


def _unique_exchange_ids(spec: pl.DataFrame) -> pl.DataFrame:
    """Reveni ids (`j`, `reveni_return_id`) for the returns that may have exchange items, such
    that no two exchange items share a deterministic Centra order number.

    `exchange_order_number` hashes into 90M numbers: among the ~70k exchange items of the full
    history about 27 pairs would collide. returnbridge then creates the second exchange's order
    under its next candidate number and tells them apart by their markers (`exchange_of`); the
    generator, whose orders are keyed by number, instead moves the id of a colliding return
    (`ret_00012345b`), which keeps every exchange under its first number."""
    may = spec.filter(pl.col("case").is_in(_EXCHANGE_CASES)).sort("j")["j"]
    taken: set[int] = set()
    ids = []
    for j in may:
        for suffix in ("", "b", "c", "d", "e"):
            rid = f"ret_{j:08d}{suffix}"
            numbers = {exchange_order_number(rid, n) for n in range(3)}
            if not numbers & taken:
                break
        else:
            raise RuntimeError(f"no collision-free exchange order numbers for return {j}")
        taken |= numbers
        ids.append(rid)
    return pl.DataFrame({"j": may, "reveni_return_id": ids})


def _conformed(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """`frame` in `table`'s schema, with a snapshot date (the loader sets the real one)."""
    schema = SNAPSHOT_TABLES[table]
    if "snapshot_date" not in frame.columns:
        frame = frame.with_columns(snapshot_date=pl.lit(None, pl.Date))
    if table == "centra_orders" and "exchange_of" not in frame.columns:
        frame = frame.with_columns(exchange_of=pl.lit(None, pl.String))
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())
