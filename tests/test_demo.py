"""`returnbridge demo`: the cycle so far, end to end over real HTTP, and its exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from returnbridge.cli import app
from returnbridge.demo import run_demo
from returnbridge.scenarios import builtin_scenario

SUMMARY_KEYS = {"centra", "exceptions", "gaps", "digests", "report", "api_calls"}


def test_demo_json_is_one_document_with_every_summary_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--json", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) == SUMMARY_KEYS
    assert set(summary["centra"]) == {"returns", "stock_changes", "refunds", "orders_created"}
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_demo_reads_every_returned_order_in_one_batched_request() -> None:
    scenario = builtin_scenario("basic")
    summary, reads = run_demo(scenario)
    assert [r.order_number for r in reads] == [r.order_number for r in scenario.reveni.returns]
    found = {r.order_number for r in reads if r.order is not None}
    known = {
        r.order_number for r in scenario.reveni.returns if scenario.centra.order(r.order_number)
    }
    assert found == known and 9999 not in found  # a return naming an unknown order is legal
    assert summary["api_calls"] == {
        "centra_requests": 1,
        "centra_mutations": 0,
        "reveni_requests": 0,
    }
    # No writes yet: the only Centra refund is the one the scenario made directly in Centra.
    assert summary["centra"]["returns"] == []
    assert [(r["order_number"], r["return_id"]) for r in summary["centra"]["refunds"]] == [
        (1001, None)
    ]


def test_demo_human_output_is_a_table() -> None:
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "ret_0005  9999   no" in result.stdout


def test_demo_with_a_bad_scenario_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"reveni": {"returns": [{"order_number": 1, "items": []}]}}))
    result = CliRunner().invoke(app, ["demo", "--json", "--scenario", str(path)])
    assert result.exit_code == 2
    assert "bad.json: reveni.returns[0].items" in result.output
