"""The month-end benchmark (`bench/month_end.py`) at a small size, so that it cannot rot: its
invoice is a valid dashboard export built from the warehouse, its perturbations reach the
settlement as unmatched lines, and every step is measured in its own process. No timings are
asserted: the figures are the benchmark's, in docs/benchmarks.md."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench` is a top-level package of the project, not installed
    sys.path.insert(0, str(ROOT))

from bench import month_end  # noqa: E402


def test_the_benchmark_measures_each_step_of_a_month_s_report() -> None:
    report = month_end.run(orders=5_000, returns=1_500, runs=1, seed=3, exceptions=200)
    (entry,) = report["months"]
    histogram = report["dataset"]["returns_by_month"]
    now = datetime.fromisoformat(report["dataset"]["now"])
    assert entry["busiest"] and entry["month"] == month_end.busiest(histogram, now)
    (sample,) = entry["samples"]
    invoice = entry["invoice"]
    assert invoice["returns"] == sample["returns_in_month"] == histogram[entry["month"]] > 0
    assert sample["invoice_lines"] == invoice["lines"]
    for step in month_end.STEPS:
        assert sample[f"{step}_s"] > 0, step
    assert sample["seconds"] == pytest.approx(sum(sample[f"{step}_s"] for step in month_end.STEPS))
    assert sample["peak_rss_mb"] >= sample["rss_after_imports_mb"] > 0
    # the lines naming unknown returns (at least one) cannot match; the split still adds up,
    # and the invoice no longer agrees with Reveni's own data (the planted lines are not in it)
    assert sample["settlement_unmatched_lines"] >= invoice["planted"]["unknown"] >= 1
    assert sample["settlement_lines"] > sample["settlement_unmatched_lines"]
    assert sample["split_balanced"]
    assert any(sample["reveni_difference_minor"].values()) and not sample["balanced"]
    assert sample["ledger"]["new"] + sample["ledger"]["still_open"] >= 1
    assert sample["html_file_bytes"] > sample["html_email_bytes"] > 0
    assert report["ledger"]["exceptions"] > 0 and report["ledger"]["settlement_unmatched_open"] > 0
    section = month_end.docs_section(report, "cmd")
    assert "| **median** |" in section and "`cmd`" in section


def test_help_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["bench.month_end", "--help"])
    with pytest.raises(SystemExit) as stopped:
        month_end.main()
    assert stopped.value.code == 0
