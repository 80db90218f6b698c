"""The snapshot the gap rules read (`rules.rule_reads`: only their columns, only the rows that
can matter, filtered in DuckDB) gives exactly the gaps of a snapshot of everything: whole and
scoped, under either Polars engine, and after a day of changes."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from returnbridge.reconcile.rules import GapConfig, compute_gaps, rule_reads
from returnbridge.reconcile.tables import GAPS, SNAPSHOT_TABLES
from returnbridge.reconcile.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level package of the project, not installed
    sys.path.insert(0, str(ROOT))

from bench import reconcile_data  # noqa: E402

CONFIG = GapConfig()


def rows(gaps: pl.DataFrame) -> pl.DataFrame:
    frame = gaps.select(GAPS.names())
    return frame.sort(frame.columns, nulls_last=True)


def test_the_rules_snapshot_finds_the_gaps_of_the_whole_one(tmp_path: Path) -> None:
    data = reconcile_data.generate(tmp_path / "data", orders=4_000, returns=1_200, seed=7)
    assert data.day is not None
    with Warehouse(tmp_path / "w.duckdb") as wh:
        for directory, now in ((data.full, data.now), (data.day, data.day_now)):
            wh.load_files(directory, snapshot_date=now.date(), source="test")
            whole = wh.snapshot()
            pruned = wh.snapshot(reads=rule_reads(CONFIG))
            expected = compute_gaps(whole, config=CONFIG, now=now)
            assert expected.height > 0
            for engine in ("in-memory", "streaming"):
                found = compute_gaps(pruned, config=CONFIG, now=now, engine=engine)
                assert_frame_equal(rows(found), rows(expected))
            # less read: no return lines, only refund entries and restocks, fewer columns
            assert pruned.centra_return_lines.height == 0
            assert pruned.centra_payments.height < whole.centra_payments.height
            assert pruned.centra_orders.height < whole.centra_orders.height
            assert pruned.reveni_items.width < len(SNAPSHOT_TABLES["reveni_items"])

            # a scope: the same gaps about it, whole or pruned
            scope = wh.changed_scope(0, updated_after=now - timedelta(days=3))
            scoped = compute_gaps(wh.snapshot(scope=scope), config=CONFIG, now=now)
            found = compute_gaps(
                wh.snapshot(scope=scope, reads=rule_reads(CONFIG)), config=CONFIG, now=now
            )
            assert_frame_equal(rows(found), rows(scoped))
