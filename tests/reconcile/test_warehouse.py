"""The DuckDB warehouse on real files: incremental loads that replace parents with their
children, load history and watermarks, all-or-nothing loads, dated gaps, the digest outbox,
reopening, integer money, and the scope of what a load changed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from reconcile_builders import NOW, Item, World

from returnbridge.reconcile.tables import GAPS, SNAPSHOT_TABLES
from returnbridge.reconcile.warehouse import Scope, Snapshot, Warehouse

DAY1, DAY2 = date(2026, 10, 19), date(2026, 10, 20)
TEE, JEANS, CAP = "TEE-BLK-M", "JEANS-32", "CAP-RED"


def history() -> World:
    world = World()
    world.order(1001)
    world.done("R1", 1001, [Item(TEE), Item(JEANS), Item(CAP)], refund=89700)
    world.order(1002, currency="EUR", total=5990)
    world.done("R2", 1002, [Item(TEE, price=2990)], refund=2990, currency="EUR")
    return world


def frames(world: World) -> dict[str, pl.DataFrame]:
    return world.snapshot().frames()


def items_of(wh: Warehouse, rid: str) -> list[str]:
    items = wh.snapshot().reveni_items
    return sorted(items.filter(pl.col("reveni_return_id") == rid)["sku"])


def clock() -> datetime:
    return NOW


# ---------------------------------------------------------------------------------- loads


def test_a_reload_replaces_the_return_with_its_children(tmp_path: Path) -> None:
    with Warehouse(tmp_path / "wh" / "warehouse.duckdb") as wh:
        first = wh.load(frames(history()), snapshot_date=DAY1, source="reveni")
        assert first.rows["reveni_items"] == 4 and first.replaced["reveni_items"] == 0
        # Reveni now shows R1 with one item left (two were withdrawn) and a refund of it
        shrunk = World()
        shrunk.reveni("R1", 1001, [Item(TEE)], refund=29900)
        day = {t: f for t, f in frames(shrunk).items() if t.startswith("reveni")}
        second = wh.load(day, snapshot_date=DAY2, source="reveni")

        assert items_of(wh, "R1") == [TEE]
        assert items_of(wh, "R2") == [TEE]  # untouched
        assert second.replaced == {"reveni_returns": 1, "reveni_items": 3, "reveni_refunds": 1}
        snapshot = wh.snapshot()
        assert snapshot.reveni_refunds.filter(pl.col("reveni_return_id") == "R1")[
            "amount_minor"
        ].to_list() == [29900]
        dates = dict(snapshot.reveni_returns.select("reveni_return_id", "snapshot_date").rows())
        assert dates == {"R1": DAY2, "R2": DAY1}
        # Centra was not part of the second load: left alone
        assert snapshot.centra_returns.height == 2


def test_a_parent_reloaded_with_an_empty_child_table_loses_its_children(tmp_path: Path) -> None:
    with Warehouse(tmp_path / "w.duckdb") as wh:
        wh.load(frames(history()), snapshot_date=DAY1, source="centra")
        orders = wh.snapshot().centra_orders.filter(pl.col("order_number") == 1001)
        # the order reloaded alone: its payments are not news, so they stay
        wh.load({"centra_orders": orders}, snapshot_date=DAY2, source="centra")
        assert wh.snapshot().centra_payments.height == 2
        # reloaded with its payments (none now): they are gone, the other order's stay
        none = pl.DataFrame(schema=SNAPSHOT_TABLES["centra_payments"])
        report = wh.load(
            {"centra_orders": orders, "centra_payments": none}, snapshot_date=DAY2, source="c"
        )
        assert report.replaced == {"centra_orders": 1, "centra_payments": 1}
        assert wh.snapshot().centra_payments["order_number"].to_list() == [1002]


def test_return_lines_follow_their_centra_return(tmp_path: Path) -> None:
    with Warehouse(tmp_path / "w.duckdb") as wh:
        wh.load(frames(history()), snapshot_date=DAY1, source="centra")
        snapshot = wh.snapshot()
        r1 = snapshot.centra_returns.filter(pl.col("external_id") == "R1")
        line = snapshot.centra_return_lines.filter(
            pl.col("centra_return_id") == r1["centra_return_id"][0]
        ).head(1)
        wh.load({"centra_returns": r1, "centra_return_lines": line}, snapshot_date=DAY2, source="c")
        lines = wh.snapshot().centra_return_lines
        assert lines.height == 2  # one line of R1's return, R2's return's line
        assert line.row(0)[:4] in [row[:4] for row in lines.rows()]


def test_loads_of_several_sources_keep_their_own_watermarks(tmp_path: Path) -> None:
    reveni = {t: f for t, f in frames(history()).items() if t.startswith("reveni")}
    centra = {t: f for t, f in frames(history()).items() if t.startswith("centra")}
    with Warehouse(tmp_path / "w.duckdb", clock=clock) as wh:
        assert wh.watermark("reveni") is None and wh.last_load_id() == 0
        wh.load(reveni, snapshot_date=DAY1, source="reveni", watermark="2026-10-19T06:00:00Z")
        wh.load(centra, snapshot_date=DAY1, source="centra", watermark="cursor-17")
        wh.load(reveni, snapshot_date=DAY2, source="reveni", watermark="2026-10-20T06:00:00Z")
        wh.load(reveni, snapshot_date=DAY2, source="reveni")  # no watermark: it stays
        assert wh.watermark("reveni") == "2026-10-20T06:00:00Z"
        assert wh.watermark("centra") == "cursor-17"
        assert wh.watermark("stock") is None
        loads = wh.loads()
        assert loads["source"].to_list() == ["reveni", "centra", "reveni", "reveni"]
        assert loads["load_id"].to_list() == [1, 2, 3, 4]
        assert loads["loaded_at"].to_list() == [NOW] * 4
        assert '"reveni_items": 4' in loads["rows"][0]
        assert wh.last_load_id() == 4


def test_snapshot_date_is_the_loads_whatever_the_frame_says(tmp_path: Path) -> None:
    with Warehouse(":memory:") as wh:
        wh.load(frames(history()), snapshot_date=DAY2, source="x")
        for frame in wh.snapshot().frames().values():
            assert frame["snapshot_date"].unique().to_list() == [DAY2]


# ---------------------------------------------------------------------------------- failures


def test_a_load_with_a_missing_column_changes_nothing_and_names_the_table(
    tmp_path: Path,
) -> None:
    with Warehouse(tmp_path / "w.duckdb") as wh:
        wh.load(frames(history()), snapshot_date=DAY1, source="x")
        before = wh.snapshot()
        new = World()
        new.reveni("R9", 1001, [Item(CAP)], refund=29900)
        bad = frames(new)
        bad["centra_orders"] = before.centra_orders.drop("market")
        with pytest.raises(ValueError, match=r"centra_orders: missing columns \['market'\]"):
            wh.load(bad, snapshot_date=DAY2, source="x")
        assert_same(wh.snapshot(), before)
        assert wh.loads().height == 1


@pytest.mark.parametrize(
    ("table", "column", "value", "message"),
    [
        ("reveni_refunds", "amount_minor", 299.0, "reveni_refunds: column amount_minor is Float64"),
        ("centra_orders", "order_number", "A-1001", "centra_orders"),
    ],
)
def test_a_load_with_a_column_of_the_wrong_type_changes_nothing(
    tmp_path: Path, table: str, column: str, value: object, message: str
) -> None:
    with Warehouse(tmp_path / "w.duckdb") as wh:
        wh.load(frames(history()), snapshot_date=DAY1, source="x")
        before = wh.snapshot()
        bad = frames(history())
        bad[table] = bad[table].with_columns(pl.lit(value).alias(column))
        with pytest.raises(ValueError, match=message):
            wh.load(bad, snapshot_date=DAY2, source="x")
        assert_same(wh.snapshot(), before)


def test_a_file_load_that_fails_in_duckdb_rolls_back_every_table(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    for table, frame in frames(history()).items():
        frame.write_parquet(files / f"{table}.parquet")
    # the last table's file: an order number that is no number, found only while inserting
    stock = frames(history())["centra_stock_changes"]
    stock.with_columns(pl.col("stock_change_id").cast(pl.String) + "x").write_parquet(
        files / "centra_stock_changes.parquet"
    )
    with Warehouse(tmp_path / "w.duckdb") as wh:
        with pytest.raises(ValueError, match=r"centra_stock_changes: .*Could not convert"):
            wh.load_files(files, snapshot_date=DAY1, source="files")
        assert wh.snapshot().rows() == dict.fromkeys(SNAPSHOT_TABLES, 0)
        assert wh.loads().height == 0
        stock.drop("sku").write_parquet(files / "centra_stock_changes.parquet")
        with pytest.raises(ValueError, match=r"centra_stock_changes: missing columns \['sku'\]"):
            wh.load_files(files, snapshot_date=DAY1, source="files")


def test_an_unknown_table_is_refused_by_name(tmp_path: Path) -> None:
    with Warehouse(tmp_path / "w.duckdb") as wh:
        with pytest.raises(ValueError, match="unknown tables \\['centra_refunds'\\]"):
            wh.load({"centra_refunds": pl.DataFrame()}, snapshot_date=DAY1, source="x")
        with pytest.raises(ValueError, match="unknown tables"):
            Snapshot.from_frames({"orders": pl.DataFrame()})


def assert_same(a: Snapshot, b: Snapshot) -> None:
    for table, frame in a.frames().items():
        other = b.frames()[table]
        assert frame.sort(frame.columns).equals(other.sort(other.columns)), table


# ---------------------------------------------------------------------------------- files


def test_files_load_like_frames(tmp_path: Path) -> None:
    files = tmp_path / "snapshot"
    files.mkdir()
    for table, frame in frames(history()).items():
        if table != "centra_stock_changes":  # a table without a file is not part of the load
            frame.drop("snapshot_date").write_parquet(files / f"{table}.parquet")
    with Warehouse(tmp_path / "a.duckdb") as by_file, Warehouse(tmp_path / "b.duckdb") as by_frame:
        report = by_file.load_files(files, snapshot_date=DAY1, source="files")
        wanted = {t: f for t, f in frames(history()).items() if t != "centra_stock_changes"}
        by_frame.load(wanted, snapshot_date=DAY1, source="frames")
        assert "centra_stock_changes" not in report.rows
        assert_same(by_file.snapshot(), by_frame.snapshot())


# ---------------------------------------------------------------------------------- reopening


def test_reopening_the_file_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with Warehouse(path, clock=clock) as wh:
        wh.load(frames(history()), snapshot_date=DAY1, source="reveni", watermark="w1")
        wh.record_gaps(DAY1, gap_rows([("return_missing", "R1", 1001, None)]))
        (digest,) = wh.put_digests(DAY1, [digest_of("ops")])
        before = wh.snapshot()
    with Warehouse(path) as wh:
        assert_same(wh.snapshot(), before)
        assert wh.watermark("reveni") == "w1"
        assert wh.gaps()["reveni_return_id"].to_list() == ["R1"]
        assert [d["id"] for d in wh.pending_digests()] == [digest]
        wh.load(frames(history()), snapshot_date=DAY2, source="reveni")
        assert wh.last_load_id() == 2
    with Warehouse(path, read_only=True) as wh:
        assert wh.loads().height == 2
        with pytest.raises(ValueError):
            wh.load(frames(history()), snapshot_date=DAY2, source="reveni")


def test_money_stays_integer_minor_units(tmp_path: Path) -> None:
    big = 9_007_199_254_740_993  # 2**53 + 1: a float would round it
    world = World()
    world.order(1001, currency="JPY", total=big)
    with Warehouse(tmp_path / "w.duckdb") as wh:
        wh.load(frames(world), snapshot_date=DAY1, source="x")
    with Warehouse(tmp_path / "w.duckdb", read_only=True) as wh:
        orders = wh.snapshot().centra_orders
    assert orders.schema["grand_total_minor"] == pl.Int64
    assert orders["grand_total_minor"].to_list() == [big]


def test_threads_and_memory_limit_are_set(tmp_path: Path) -> None:
    with Warehouse(tmp_path / "w.duckdb", threads=1, memory_limit="512MB") as wh:
        assert wh._value("SELECT current_setting('threads')") == 1
        assert "488" in wh._value("SELECT current_setting('memory_limit')")  # 512 MB in MiB


# ---------------------------------------------------------------------------------- gaps


def gap_rows(keys: list[tuple[str, str | None, int, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "code": code,
                "owner": "ops",
                "order_number": order,
                "reveni_return_id": rid,
                "sku": sku,
                "amount_minor": None,
                "currency": None,
                "since": NOW - timedelta(days=2),
                "age_days": 2,
                "fixable": True,
                "detail": "",
            }
            for code, rid, order, sku in keys
        ],
        schema=GAPS,
    )


def test_recording_a_date_again_replaces_that_dates_gaps(tmp_path: Path) -> None:
    with Warehouse(tmp_path / "w.duckdb") as wh:
        assert wh.gaps().height == 0
        wh.record_gaps(DAY1, gap_rows([("return_missing", "R1", 1001, None)] * 1))
        wh.record_gaps(
            DAY2,
            gap_rows([("restock_missing", "R1", 1001, TEE), ("return_missing", "R2", 1002, None)]),
        )
        again = gap_rows(
            [("restock_missing", "R1", 1001, TEE), ("refund_missing", "R3", 1003, None)]
        )
        wh.record_gaps(DAY1, again, outcomes={("restock_missing", "R1", 1001, TEE): "still_open"})
        day1 = wh.gaps(DAY1)
        assert day1.select("code", "outcome").rows() == [
            ("refund_missing", None),
            ("restock_missing", "still_open"),
        ]
        assert day1["run_date"].unique().to_list() == [DAY1]
        assert wh.gaps()["reveni_return_id"].to_list() == ["R1", "R2"]  # the latest date
        with pytest.raises(ValueError, match="unknown gap outcomes"):
            wh.record_gaps(DAY1, again, outcomes={("refund_missing", "R3", 1003, None): "fixed"})
        with pytest.raises(ValueError, match="not in `gaps`"):
            wh.record_gaps(DAY1, again, outcomes={("refund_missing", "R4", 1003, None): "healed"})
        assert wh.gaps(DAY1).height == 2  # the failed calls changed nothing


# ---------------------------------------------------------------------------------- digests


def digest_of(owner: str) -> dict[str, object]:
    return {
        "owner": owner,
        "channel": f"#{owner}",
        "text": f"{owner}: 2 gaps",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*2 gaps*"}}],
    }


def test_the_digest_outbox_keeps_unsent_digests_until_they_are_sent(tmp_path: Path) -> None:
    times = iter(NOW + timedelta(minutes=i) for i in range(10))
    path = tmp_path / "w.duckdb"
    with Warehouse(path, clock=lambda: next(times)) as wh:
        ops, finance = wh.put_digests(DAY1, [digest_of("ops"), digest_of("finance")])
        pending = wh.pending_digests()
        assert [d["id"] for d in pending] == [ops, finance]
        assert pending[0]["blocks"] == digest_of("ops")["blocks"]
        assert pending[0]["attempts"] == 0 and pending[0]["run_date"] == DAY1
        wh.mark_digest_failed(ops, "channel_not_found")
        wh.mark_digest_sent(finance, "1761045600.000100")
        assert wh.last_digest_at("finance") == NOW + timedelta(minutes=3)
        assert wh.last_digest_at("ops") is None
        wh.mark_digest_sent(finance, "again")  # already sent: nothing changes
        with pytest.raises(KeyError):
            wh.mark_digest_failed(999, "x")
        with pytest.raises(ValueError, match="digest without"):
            wh.put_digests(DAY1, [{"owner": "cx", "channel": "#cx"}])
    with Warehouse(path) as wh:  # the next run sends what is left
        (left,) = wh.pending_digests()
        assert left["id"] == ops and left["attempts"] == 1
        assert left["last_error"] == "channel_not_found"
        (newer,) = wh.put_digests(DAY2, [digest_of("cx")])
        assert [d["id"] for d in wh.pending_digests()] == [ops, newer]
        assert wh.last_digest_at("finance") == datetime(2026, 10, 20, 12, 3, tzinfo=UTC)


# ---------------------------------------------------------------------------------- scope


def test_the_scope_of_a_load_is_what_it_changed_and_what_shares_its_order(
    tmp_path: Path,
) -> None:
    world = history()
    world.order(1003)
    world.done("R3", 1003, [Item(CAP)], refund=29900)  # same order as R4 below
    world.reveni("R4", 1003, [Item(TEE)], status="in_progress", awaiting=True)
    world.order(1004)
    world.done("R5", 1004, [Item(TEE, exchange_sku="TEE-BLK-L")], refund=None)
    with Warehouse(tmp_path / "w.duckdb") as wh:
        wh.load(frames(world), snapshot_date=DAY1, source="x")
        base = wh.last_load_id()
        assert_scope(wh.changed_scope(base), returns=[], orders=[])
        # R4 accepted: R3 shares its order; a refund made in Centra on order 1002
        accepted = World()
        accepted.reveni("R4", 1003, [Item(TEE)])
        payment = wh.snapshot().centra_payments.filter(pl.col("order_number") == 1002)
        day = {t: f for t, f in frames(accepted).items() if t.startswith("reveni")}
        day["centra_payments"] = payment
        wh.load(day, snapshot_date=DAY2, source="x")
        scope = wh.changed_scope(base)
        assert_scope(scope, returns=["R2", "R3", "R4"], orders=[1002, 1003])
        snapshot = wh.snapshot(scope=scope)
        assert sorted(snapshot.reveni_returns["reveni_return_id"]) == ["R2", "R3", "R4"]
        assert sorted(snapshot.centra_returns["external_id"]) == ["R2", "R3"]
        assert snapshot.centra_stock_changes["description"].str.contains("R5").sum() == 0
        # an instant return awaiting inspection is always in scope (its deadline nears)
        instant = World()
        instant.reveni("R6", 1004, [Item(CAP)], status="shipped", instant=True, awaiting=True)
        wh.load(frames(instant), snapshot_date=DAY2, source="x")
        later = wh.changed_scope(wh.last_load_id())
        assert_scope(later, returns=["R5", "R6"], orders=[1004, world_exchange("R5")])
        # a return updated since the last run (within the rules' grace then) too
        recent = wh.changed_scope(wh.last_load_id(), updated_after=NOW - timedelta(days=4))
        assert set(recent.reveni_return_ids) >= {"R1", "R2", "R3", "R5", "R6"}


def world_exchange(rid: str) -> int:
    from returnbridge.core.actions import exchange_order_number

    return exchange_order_number(rid, 0)


def assert_scope(scope: Scope, *, returns: list[str], orders: list[int]) -> None:
    assert sorted(scope.reveni_return_ids.to_list()) == returns
    assert sorted(scope.order_numbers.to_list()) == sorted(orders)


def test_carry_keeps_the_last_runs_gaps_outside_the_scope() -> None:
    scope = Scope(pl.Series(["R2"]), pl.Series([1002, 1009], dtype=pl.Int64))
    previous = gap_rows(
        [
            ("return_missing", "R1", 1001, None),
            ("return_missing", "R2", 1002, None),
            ("unmatched_centra_refund", None, 1009, None),
            ("unmatched_centra_refund", None, 1010, None),
        ]
    )
    fresh = gap_rows([("refund_missing", "R2", 1002, None)])
    carried = scope.carry(previous, fresh, now=NOW + timedelta(days=1))
    assert sorted(carried.select("code", "reveni_return_id", "order_number").rows()) == [
        ("refund_missing", "R2", 1002),
        ("return_missing", "R1", 1001),
        ("unmatched_centra_refund", None, 1010),
    ]
    kept = carried.filter(pl.col("reveni_return_id") == "R1")
    assert kept["age_days"].to_list() == [3]  # counted again to the new run
    with pytest.raises(ValueError, match="out of scope"):
        scope.carry(previous, gap_rows([("return_missing", "R1", 1001, None)]), now=NOW)
