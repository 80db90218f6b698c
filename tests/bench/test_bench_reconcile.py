"""The reconciliation scale benchmark (`bench/reconcile_scale.py`) at a small size, so that it
cannot rot: its generator plants known gaps, and the warehouse path, the incremental path and
the plain-Python baseline each find exactly those."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level package of the project, not installed
    sys.path.insert(0, str(ROOT))

from bench import reconcile_data, reconcile_scale  # noqa: E402
from returnbridge.reconcile.rules import GapConfig  # noqa: E402
from returnbridge.reconcile.tables import SNAPSHOT_TABLES  # noqa: E402


def test_the_benchmark_measures_every_path_and_each_finds_the_planted_gaps() -> None:
    report = reconcile_scale.run(orders=5_000, returns=1_500, runs=1, seed=3)
    (sample,) = report["samples"]
    planted = report["dataset"]["planted"]
    assert set(planted) == set(reconcile_data.PLANTED) and set(planted.values()) == {8}
    for mode in reconcile_scale.MODES:
        assert sample[mode]["gaps"] == planted, mode
        assert sample[mode]["seconds"] > 0 and sample[mode]["peak_rss_mb"] > 0
    assert sample["incremental"]["digest"] == sample["naive"]["digest"]
    assert sample["sql"]["keys"] == sample["full"]["keys"]  # the SQL yardstick's very gaps
    assert report["median"]["sql_ratio"] > 0
    assert 0 < sample["incremental"]["scope"]["returns"] < 1_500 + 25
    assert report["checks"] == {"all_found": True, "differences": []}
    assert report["median"]["baseline_ratio"] > 0
    section = reconcile_scale.docs_section(report, "cmd")
    assert "| **median** |" in section and "planted" in section and "`cmd`" in section


def test_the_generator_is_deterministic_and_writes_every_table(tmp_path: Path) -> None:
    a = reconcile_data.generate(tmp_path / "a", orders=2_000, returns=600, seed=5)
    b = reconcile_data.generate(tmp_path / "b", orders=2_000, returns=600, seed=5)
    assert a.day is not None and b.day is not None
    for table, schema in SNAPSHOT_TABLES.items():
        for left, right in ((a.full, b.full), (a.day, b.day)):
            frame = pl.read_parquet(left / f"{table}.parquet")
            assert frame.schema == schema
            assert frame.equals(pl.read_parquet(right / f"{table}.parquet")), table
    assert a.rows["reveni_returns"] == 600 and a.day_returns == 600 // 60 * 2
    assert set(a.rows) == set(SNAPSHOT_TABLES)


def test_the_baseline_uses_the_rules_defaults() -> None:
    config = GapConfig()
    assert config.grace == reconcile_scale.GRACE
    assert reconcile_scale.INSTANT_WINDOW.days == config.instant_window_days
    assert reconcile_scale.INSTANT_WARN.days == config.instant_deadline_warn_days
    assert config.manual_refund_payment_method == reconcile_scale.MANUAL_METHOD
    assert config.refund_tolerance == 0  # the baseline compares amounts exactly


def test_help_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["bench.reconcile_scale", "--help"])
    with pytest.raises(SystemExit) as stopped:
        reconcile_scale.main()
    assert stopped.value.code == 0
