"""Incremental gap computation (`reconcile.incremental.current_gaps`) gives exactly what a full
recompute gives, row for row: over several simulated days of the scale benchmark's generated
history (its day of changes, then days of random changes of every kind the rules read, the
clock moving), and through `Reconciliation` end to end against a run on a fresh warehouse."""

from __future__ import annotations

import asyncio
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
from polars.testing import assert_frame_equal
from sync_support import Integration, integration

from reports.digest import render_digest
from returnbridge.demo import scenario_clock
from returnbridge.reconcile.incremental import current_gaps, rules_version
from returnbridge.reconcile.rules import GapConfig, compute_gaps, without_explained
from returnbridge.reconcile.runtime import open_reconciliation
from returnbridge.reconcile.tables import GAPS, LEDGER_EXCEPTIONS
from returnbridge.reconcile.warehouse import SCHEMA_VERSION, Snapshot, Warehouse
from returnbridge.scenarios import builtin_scenario
from returnbridge.sync.settings import SyncSettings

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level package of the project, not installed
    sys.path.insert(0, str(ROOT))

from bench import reconcile_data  # noqa: E402

CONFIG = GapConfig()
HOUR = timedelta(hours=1)


def rows(gaps: pl.DataFrame) -> pl.DataFrame:
    """A gap table in one order of all its columns (ties in `compute_gaps`' order are free)."""
    frame = gaps.select(GAPS.names())
    return frame.sort(frame.columns, nulls_last=True)


def assert_same_gaps(incremental: pl.DataFrame, full: pl.DataFrame) -> None:
    assert_frame_equal(rows(incremental), rows(full))


# ---------------------------------------------------------------------------------- days


class Day:
    """One day of random changes to a warehouse, each a load of its own, in the tables'
    schemas: what the API extraction would bring when Reveni and Centra change."""

    def __init__(self, snapshot: Snapshot, gaps: pl.DataFrame, rng: random.Random, now: datetime):
        self.s, self.gaps, self.rng, self.now = snapshot, gaps, rng, now
        self.loads: list[dict[str, pl.DataFrame]] = []

    def pick(self, frame: pl.DataFrame, k: int) -> pl.DataFrame:
        if not frame.height:
            return frame
        chosen = self.rng.sample(range(frame.height), min(k, frame.height))
        return frame[chosen]

    def when(self) -> datetime:
        """A time today before `now`: some inside the grace period, some beyond."""
        return self.now - timedelta(minutes=self.rng.choice([5, 30, 59, 61, 90, 600]))

    def returns_of(self, rids: pl.Series) -> dict[str, pl.DataFrame]:
        s = self.s
        return {
            t: getattr(s, t).filter(pl.col("reveni_return_id").is_in(rids.implode()))
            for t in ("reveni_returns", "reveni_items", "reveni_refunds")
        }

    def accept_open(self, k: int) -> None:
        """Returns awaiting inspection accepted, no Centra effect yet (due after grace)."""
        chosen = self.pick(self.s.reveni_returns.filter(pl.col("awaiting_inspection")), k)
        for rid in chosen["reveni_return_id"]:
            frames = self.returns_of(pl.Series([rid]))
            frames["reveni_returns"] = frames["reveni_returns"].with_columns(
                status=pl.lit("accepted"),
                awaiting_inspection=pl.lit(False),
                updated_at=pl.lit(self.when()),
            )
            frames["reveni_items"] = frames["reveni_items"].with_columns(
                status=pl.lit("accepted"), accepted_units=pl.col("quantity")
            )
            del frames["reveni_refunds"]  # not part of the load: left as they are
            self.loads.append(frames)

    def refund(self, k: int) -> None:
        """Reveni refunds an accepted return (only the refunds table is loaded)."""
        refunded = self.s.reveni_refunds["reveni_return_id"].implode()
        chosen = self.pick(
            self.s.reveni_returns.filter(
                pl.col("status") == "accepted", ~pl.col("reveni_return_id").is_in(refunded)
            ),
            k,
        )
        for rid in chosen["reveni_return_id"]:
            items = self.returns_of(pl.Series([rid]))["reveni_items"]
            if not items.height:
                continue
            amount = int((items["unit_price_minor"] * items["accepted_units"]).sum())
            refund = pl.DataFrame(
                {
                    "reveni_return_id": [rid],
                    "refund_id": [f"rf_new_{rid}"],
                    "method": [self.rng.choice(["original_payment_method", "bank_transfer"])],
                    "paid_by": [self.rng.choice(["merchant", "reveni"])],
                    "status": ["paid"],
                    "amount_minor": [amount],
                    "currency": [items["currency"][0]],
                    "created_at": [self.when()],
                    "snapshot_date": [None],
                }
            )
            self.loads.append({"reveni_refunds": refund})

    def payments_of(self, number: int) -> pl.DataFrame:
        return self.s.centra_payments.filter(pl.col("order_number") == number)

    def tamper_credit(self, k: int) -> None:
        """A credit's amount changes, or it fails at the gateway (the order's payments reloaded)."""
        credits = self.s.centra_payments.filter(
            pl.col("entry_type") == "REFUND", pl.col("centra_return_id").is_not_null()
        )
        for entry in self.pick(credits, k).iter_rows(named=True):
            payments = self.payments_of(entry["order_number"])
            change = (
                {"amount_minor": pl.col("amount_minor") - 100}
                if self.rng.random() < 0.5
                else {"status": pl.lit("FAILED")}
            )
            mine = pl.col("entry_id") == entry["entry_id"]
            payments = payments.with_columns(
                **{
                    name: pl.when(mine).then(v).otherwise(pl.col(name))
                    for name, v in change.items()
                }
            )
            self.loads.append({"centra_payments": payments})

    def manual_refund(self, k: int) -> None:
        """Someone refunds on an order with a Reveni return directly in Centra: sometimes the
        amount of its Reveni refund, sometimes another."""
        refunds = self.s.reveni_refunds.join(
            self.s.reveni_returns.select("reveni_return_id", "order_number"), on="reveni_return_id"
        ).filter(pl.col("order_number").is_not_null())
        for refund in self.pick(refunds, k).iter_rows(named=True):
            payments = self.payments_of(refund["order_number"])
            amount = refund["amount_minor"] if self.rng.random() < 0.5 else 1_234
            entry = payments.head(1).with_columns(
                entry_id=pl.lit(
                    int(self.s.centra_payments["entry_id"].max() or 0)
                    + 1
                    + refund["amount_minor"] % 997
                ),
                centra_return_id=pl.lit(None, pl.Int64),
                entry_type=pl.lit("REFUND"),
                status=pl.lit("SUCCESS"),
                amount_minor=pl.lit(amount, pl.Int64),
                currency=pl.lit(refund["currency"]),
                payment_method=pl.lit("manual"),
                created_at=pl.lit(self.when()),
            )
            if payments.height:
                self.loads.append({"centra_payments": pl.concat([payments, entry])})

    def restock(self, k: int) -> None:
        """A restock done twice, or one of another SKU (stock changes are only ever added)."""
        restocks = self.s.centra_stock_changes.filter(
            pl.col("description").str.starts_with(CONFIG.restock_prefix)
        )
        top = int(self.s.centra_stock_changes["stock_change_id"].max() or 0)
        for n, change in enumerate(self.pick(restocks, k).iter_rows(named=True), 1):
            again = pl.DataFrame([change], schema=self.s.centra_stock_changes.schema)
            if self.rng.random() < 0.5:
                again = again.with_columns(stock_change_id=pl.lit(top + n * 7919))
            else:  # the same change reloaded, of another SKU
                again = self.s.centra_stock_changes.filter(
                    pl.col("stock_change_id") == change["stock_change_id"]
                ).with_columns(sku=pl.lit("OTHER-SKU"))
            self.loads.append({"centra_stock_changes": again})

    def order_status(self, k: int) -> None:
        """Orders with a return archived, or made returnable again."""
        returned = self.s.reveni_returns["order_number"].drop_nulls().implode()
        orders = self.s.centra_orders.filter(pl.col("order_number").is_in(returned))
        chosen = self.pick(orders, k).with_columns(
            status=pl.when(pl.col("status") == "SHIPPED")
            .then(pl.lit("ARCHIVED"))
            .otherwise(pl.lit("SHIPPED"))
        )
        self.loads.append({"centra_orders": chosen})

    def unlink_centra_return(self, k: int) -> None:
        """A Centra return loses its Reveni id; another one's lines change."""
        chosen = self.pick(self.s.centra_returns, k)
        self.loads.append(
            {"centra_returns": chosen.with_columns(external_id=pl.lit(None, pl.String))}
        )
        lines = self.s.centra_return_lines.join(
            self.pick(self.s.centra_returns, k).select("centra_return_id"), on="centra_return_id"
        )
        self.loads.append({"centra_return_lines": lines.with_columns(quantity=pl.lit(0))})

    def close_gaps(self, k: int) -> None:
        """Returns with a gap rejected, their items rejected."""
        rids = self.pick(self.gaps.filter(pl.col("reveni_return_id").is_not_null()), k)
        for rid in rids["reveni_return_id"].unique():
            frames = self.returns_of(pl.Series([rid]))
            frames["reveni_returns"] = frames["reveni_returns"].with_columns(
                status=pl.lit("rejected"),
                awaiting_inspection=pl.lit(False),
                updated_at=pl.lit(self.when()),
            )
            frames["reveni_items"] = frames["reveni_items"].with_columns(
                status=pl.lit("rejected"), accepted_units=pl.lit(0)
            )
            self.loads.append(frames)

    def drop_item(self, k: int) -> None:
        """A return's items reloaded without one of them."""
        multi = self.s.reveni_items.group_by("reveni_return_id").len().filter(pl.col("len") > 1)
        for rid in self.pick(multi, k)["reveni_return_id"]:
            items = self.returns_of(pl.Series([rid]))["reveni_items"]
            self.loads.append({"reveni_items": items.slice(1)})

    def exchange_order(self, k: int) -> None:
        """Exchange orders appear: some zero-value, some not; some taken by another order."""
        numbers = self.s.reveni_items["exchange_order_number"].drop_nulls().unique().sort()
        for number in self.pick(numbers.to_frame(), k)["exchange_order_number"]:
            self.loads.append(
                {
                    "centra_orders": pl.DataFrame(
                        [
                            {
                                "order_number": number,
                                "status": "CONFIRMED",
                                "currency": "SEK",
                                "market": "SE",
                                "created_at": self.when(),
                                "grand_total_minor": self.rng.choice([0, 0, 500]),
                                "exchange_of": None,
                                "snapshot_date": None,
                            }
                        ],
                        schema=self.s.centra_orders.schema,
                    )
                }
            )

    def new_instant(self, k: int) -> None:
        """Instant returns created a while ago, awaiting inspection (their deadline nears)."""
        returned = self.s.reveni_returns["order_number"].drop_nulls().implode()
        free = self.s.centra_orders.filter(~pl.col("order_number").is_in(returned))
        for n, number in enumerate(self.pick(free, k)["order_number"]):
            rid = f"ret_inst_{number}_{n}"
            created = self.now - timedelta(days=self.rng.choice([20, 25, 26, 27, 28]))
            self.loads.append(
                {
                    "reveni_returns": pl.DataFrame(
                        [
                            {
                                "reveni_return_id": rid,
                                "order_number": number,
                                "status": "shipped",
                                "type": "refund",
                                "instant": True,
                                "awaiting_inspection": True,
                                "created_at": created,
                                "updated_at": created,
                                "snapshot_date": None,
                            }
                        ],
                        schema=self.s.reveni_returns.schema,
                    )
                }
            )

    def random(self) -> list[dict[str, pl.DataFrame]]:
        for change in (
            self.accept_open,
            self.refund,
            self.tamper_credit,
            self.manual_refund,
            self.restock,
            self.order_status,
            self.unlink_centra_return,
            self.close_gaps,
            self.drop_item,
            self.exchange_order,
            self.new_instant,
        ):
            change(self.rng.randint(1, 4))
        return self.loads


def test_incremental_equals_full_over_simulated_days(tmp_path: Path) -> None:
    data = reconcile_data.generate(tmp_path / "data", orders=4_000, returns=1_200, seed=7)
    assert data.day is not None
    rng = random.Random(11)
    now = data.now
    with Warehouse(tmp_path / "warehouse.duckdb") as wh:
        wh.load_files(data.full, snapshot_date=now.date(), source="history")
        first = current_gaps(wh, config=CONFIG, now=now)
        assert first.mode == "full" and first.reason == "no earlier computation"
        assert_same_gaps(first.gaps, compute_gaps(wh.snapshot(), config=CONFIG, now=now))
        # the generator's day, then days of random changes; the clock moves unevenly
        now = data.day_now
        wh.load_files(data.day, snapshot_date=now.date(), source="day")
        carried = 0
        changed_days = 0
        previous = first.gaps
        for day in range(8):
            incremental = current_gaps(wh, config=CONFIG, now=now)
            full = compute_gaps(wh.snapshot(), config=CONFIG, now=now)
            assert incremental.mode == "incremental", incremental.reason
            assert_same_gaps(incremental.gaps, full)
            assert incremental.scope_returns is not None
            assert incremental.scope_returns < wh.snapshot().reveni_returns.height
            carried += full.height - incremental.scope_returns  # roughly: most are carried
            changed_days += not rows(previous).drop("age_days").equals(rows(full).drop("age_days"))
            previous = full
            # the next day's changes, each its own load
            now += timedelta(hours=rng.choice([1, 6, 20, 24, 30]))
            for frames in Day(wh.snapshot(), full, rng, now).random():
                wh.load(frames, snapshot_date=now.date(), source=f"day {day}")
            if day == 3:  # a day with no load at all: only the clock moves
                now += timedelta(days=1)
        assert changed_days >= 6, "the days must change the gaps for the test to mean much"
        assert carried > 0
        assert wh.gap_runs()["mode"].to_list() == ["full"] + ["incremental"] * 8


def test_a_return_inside_the_grace_period_becomes_due_without_any_load(tmp_path: Path) -> None:
    data = reconcile_data.generate(tmp_path / "data", orders=2_000, returns=600, seed=4)
    now = data.now
    with Warehouse(tmp_path / "warehouse.duckdb") as wh:
        wh.load_files(data.full, snapshot_date=now.date(), source="history")
        current_gaps(wh, config=CONFIG, now=now)
        day = Day(wh.snapshot(), pl.DataFrame(), random.Random(1), now)
        day.accept_open(5)
        day.when = lambda: now - timedelta(minutes=10)  # type: ignore[method-assign]
        for frames in day.loads:
            wh.load(frames, snapshot_date=now.date(), source="accepted")
        before = current_gaps(wh, config=CONFIG, now=now)
        later = now + timedelta(hours=2)
        after = current_gaps(wh, config=CONFIG, now=later)  # no load since
        full = compute_gaps(wh.snapshot(), config=CONFIG, now=later)
    assert after.mode == "incremental"
    assert_same_gaps(after.gaps, full)
    assert (
        full.filter(pl.col("code") == "return_missing").height
        > before.gaps.filter(pl.col("code") == "return_missing").height
    )


def test_explained_gaps_are_carried_and_left_out_only_while_explained(tmp_path: Path) -> None:
    data = reconcile_data.generate(tmp_path / "data", orders=2_000, returns=600, seed=4)
    now = data.now
    with Warehouse(tmp_path / "warehouse.duckdb") as wh:
        wh.load_files(data.full, snapshot_date=now.date(), source="history")
        first = current_gaps(wh, config=CONFIG, now=now)
        missing = first.gaps.filter(pl.col("code") == "return_missing").row(0, named=True)
        exception = pl.DataFrame(
            [("return_create_failed", missing["reveni_return_id"], missing["order_number"])],
            schema=LEDGER_EXCEPTIONS,
            orient="row",
        )
        shown = without_explained(first.gaps, exception)
        assert shown.height < first.gaps.height
        assert_same_gaps(
            shown, compute_gaps(wh.snapshot(), config=CONFIG, now=now, explained=exception)
        )
        # the exception is resolved: the next (incremental) computation still has the gap
        later = current_gaps(wh, config=CONFIG, now=now + HOUR)
    assert later.mode == "incremental"
    assert missing["reveni_return_id"] in later.gaps["reveni_return_id"].to_list()


def test_everything_is_recomputed_when_the_last_computation_cannot_be_trusted(
    tmp_path: Path,
) -> None:
    data = reconcile_data.generate(tmp_path / "data", orders=2_000, returns=600, seed=4, day=False)
    now = data.now
    with Warehouse(tmp_path / "warehouse.duckdb") as wh:
        wh.load_files(data.full, snapshot_date=now.date(), source="history")
        assert current_gaps(wh, config=CONFIG, now=now).mode == "full"
        assert current_gaps(wh, config=CONFIG, now=now + HOUR).mode == "incremental"
        forced = current_gaps(wh, config=CONFIG, now=now + HOUR, full=True)
        assert (forced.mode, forced.reason) == ("full", "asked for")
        earlier = current_gaps(wh, config=CONFIG, now=now - timedelta(days=8))  # --date
        assert earlier.mode == "full" and "away" in earlier.reason
        other = GapConfig(grace=timedelta(hours=2))
        assert rules_version(other) != rules_version(CONFIG)
        changed = current_gaps(wh, config=other, now=now)
        assert changed.mode == "full" and "rules" in changed.reason
        old = current_gaps(wh, config=other, now=now + timedelta(days=8))
        assert old.mode == "full" and "away" in old.reason
        again = current_gaps(wh, config=other, now=now + timedelta(days=8), max_age=timedelta(0))
        assert again.mode == "incremental"
        assert_same_gaps(
            again.gaps, compute_gaps(wh.snapshot(), config=other, now=now + timedelta(days=8))
        )
        runs = wh.gap_runs()
    assert runs["mode"].to_list() == [
        "full", "incremental", "full", "full", "full", "full", "incremental",
    ]  # fmt: skip


def test_the_rules_version_is_the_same_in_every_process() -> None:
    import subprocess

    code = (
        "from returnbridge.reconcile.incremental import rules_version; "
        "from returnbridge.reconcile.rules import GapConfig; print(rules_version(GapConfig()))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2)
    }
    assert seen == {rules_version(CONFIG)}


def test_a_version_1_warehouse_gains_the_gap_state(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    Warehouse(path).close()
    with duckdb.connect(str(path)) as con:  # as version 1 left it
        con.execute("DROP TABLE gap_state; DROP TABLE gap_runs; DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version VALUES (1, now())")
    with Warehouse(path, read_only=True) as reader:
        assert reader.gaps().height == 0
    with Warehouse(path) as wh:
        assert wh.gap_state() is None
        assert wh._value("SELECT max(version) FROM schema_version") == SCHEMA_VERSION


# ---------------------------------------------------------------------------------- end to end


def state_and_full_recompute(it: Integration) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The warehouse's kept gaps, and every gap recomputed from scratch at their time."""

    async def read() -> tuple[pl.DataFrame, pl.DataFrame]:
        async with open_reconciliation(
            it.settings,
            ledger=it.ledger,
            clock=scenario_clock(it.scenario),
            render_digest=render_digest,
        ) as rec:
            state = rec.warehouse.gap_state()
            assert state is not None
            full = compute_gaps(rec.warehouse.snapshot(), config=rec.gap_config, now=state.as_of)
            return state.gaps, full

    return asyncio.run(read())


def comparable(gaps: list[dict[str, object]]) -> list[tuple[object, ...]]:
    keys = ("code", "reveni_return_id", "order_number", "sku", "amount", "currency", "age_days",
            "fixable", "detail")  # fmt: skip
    return sorted((tuple(g[k] for k in keys) for g in gaps), key=repr)


def test_reconciliation_runs_incrementally_and_finds_what_a_fresh_warehouse_finds(
    tmp_path: Path,
) -> None:
    # the product's first look-back: the sync never sees the July return (ret_old_1017), the
    # reconciliation finds its missing effects and fixes them
    look_back = SyncSettings().initial_look_back
    with integration(builtin_scenario("showcase"), tmp_path, initial_look_back=look_back) as it:
        it.walk(steps=6)
        it.run()
        first = it.reconcile()
        # before the fixes: everything; after them and Centra's refresh: what that changed
        assert [c["mode"] for c in first.gap_computations] == ["full", "incremental"]
        assert ("return_missing", "ret_old_1017", "healed") in {
            (g["code"], g["reveni_return_id"], g["outcome"]) for g in first.gaps
        }
        kept, full = state_and_full_recompute(it)
        assert_same_gaps(kept, full)
        # a day later: the rest of Reveni's history, a sync, refunds made by hand in Centra
        it.walk()
        it.run()
        it.manual_refund(1016, "299.00")
        it.manual_refund(1001, "50.00")
        second = it.reconcile()
        assert second.gap_computations and all(
            c["mode"] == "incremental" for c in second.gap_computations
        ), second.gap_computations
        kept, full = state_and_full_recompute(it)
        assert_same_gaps(kept, full)
        third = it.reconcile(fix=False)
        fresh = it.reconcile(fix=False, warehouse_path=tmp_path / "fresh.duckdb")
        forced = it.reconcile(fix=False, full_recompute=True)
    assert [c["mode"] for c in third.gap_computations] == ["incremental"]
    assert [c["mode"] for c in fresh.gap_computations] == ["full"]
    assert [(c["mode"], c["reason"]) for c in forced.gap_computations] == [("full", "asked for")]
    assert {g["code"] for g in third.gaps} >= {"duplicate_refund", "unmatched_centra_refund"}
    assert comparable(third.gaps) == comparable(fresh.gaps) == comparable(forced.gaps)


def test_a_run_for_an_earlier_date_goes_back_incrementally(tmp_path: Path) -> None:
    with integration(builtin_scenario("showcase"), tmp_path) as it:
        it.walk()
        it.run()
        today = it.reconcile(fix=False)
        earlier = it.reconcile(run_date=today.run_date - timedelta(days=2), fix=False)
        kept_then, full_then = state_and_full_recompute(it)
        back = it.reconcile(fix=False)
        kept, full = state_and_full_recompute(it)
    assert earlier.as_of < today.as_of - timedelta(days=1)
    assert [c["mode"] for c in earlier.gap_computations] == ["incremental"]
    assert_same_gaps(kept_then, full_then)
    assert [c["mode"] for c in back.gap_computations] == ["incremental"]
    assert_same_gaps(kept, full)
