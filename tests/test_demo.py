"""`returnbridge demo`: both simulators, webhooks and the validation pass, end to end over real
HTTP, and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from returnbridge.cli import app
from returnbridge.demo import DemoRun, render_report, run_demo
from returnbridge.scenarios import builtin_scenario

SUMMARY_KEYS = {"centra", "exceptions", "gaps", "digests", "report", "api_calls"}
SHOWCASE_VALIDATION = {
    ("order_not_found", "cx", 9999, "ret_nf_9999", None),
    ("order_not_returnable", "finance", 1002, "ret_arch_1002", None),
    ("order_not_returnable", "finance", 1005, "ret_canc_1005", None),
    ("sku_not_in_order", "ops", 1007, "ret_sku_1007", "SCARF-01"),
    ("quantity_exceeds_shipped", "cx", 1003, "ret_part_1003", "JEANS-32"),
    ("quantity_exceeds_shipped", "cx", 1006, "ret_two_1006c", "DRESS-RED-38"),
}


@pytest.fixture(scope="module")
def showcase_run() -> DemoRun:
    return run_demo(builtin_scenario("showcase"))


def _rows(summary: dict[str, object]) -> set[tuple[object, ...]]:
    return {
        (e["code"], e["owner"], e["order_number"], e["reveni_return_id"], e["sku"])
        for e in summary["exceptions"]  # type: ignore[attr-defined]
    }


def test_showcase_raises_exactly_the_validation_exceptions_with_owners(
    showcase_run: DemoRun,
) -> None:
    assert _rows(showcase_run.summary) == SHOWCASE_VALIDATION
    assert all(e["status"] == "open" for e in showcase_run.summary["exceptions"])


def test_every_scenario_return_is_fetched_and_every_webhook_names_one(
    showcase_run: DemoRun,
) -> None:
    scenario = builtin_scenario("showcase")
    assert {r.id for r in showcase_run.returns} == {r.id for r in scenario.reveni.returns}
    walked = sum(len(r.history) - 1 for r in scenario.reveni.returns)
    assert showcase_run.walked_steps == walked
    # No webhook faults in the showcase: one return.updated per status change, all delivered.
    assert len({e.id for e in showcase_run.webhooks}) == walked
    assert {e.data.resource_id for e in showcase_run.webhooks} <= {
        r.id for r in scenario.reveni.returns
    }
    assert {e.event for e in showcase_run.webhooks} == {"return.updated"}


def test_validation_reads_centra_in_batches_and_writes_nothing(showcase_run: DemoRun) -> None:
    calls = showcase_run.summary["api_calls"]
    # One batched order read plus one batched read of the returns already on those orders.
    assert calls["centra_requests"] == 2
    assert calls["centra_mutations"] == 0
    assert 0 < calls["reveni_requests"] <= 5
    centra = showcase_run.summary["centra"]
    assert centra["returns"] == [] and centra["stock_changes"] == []
    assert centra["orders_created"] == []
    # The only Centra refund is the one the scenario made directly in Centra.
    assert [(r["order_number"], r["return_id"]) for r in centra["refunds"]] == [(1001, None)]


def test_human_output_is_a_table_of_exceptions_by_owner(showcase_run: DemoRun) -> None:
    text = render_report(showcase_run)
    assert "Validation exceptions (6):" in text
    assert "By owner: cx 3, finance 2, ops 1" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("sku_not_in_order"))
    assert line.split()[:5] == ["sku_not_in_order", "ops", "1007", "ret_sku_1007", "SCARF-01"]


def test_demo_json_on_stdout_is_exactly_one_document(tmp_path: Path) -> None:
    """Through the installed command: stdout holds the JSON and nothing else; exit 0."""
    exe = Path(sys.executable).with_name("returnbridge")
    result = subprocess.run(
        [str(exe), "demo", "--json", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == SUMMARY_KEYS
    assert set(summary["centra"]) == {"returns", "stock_changes", "refunds", "orders_created"}
    assert _rows(summary) == SHOWCASE_VALIDATION
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_demo_with_the_basic_scenario_file(tmp_path: Path) -> None:
    from returnbridge.scenarios import builtin_scenario_path

    result = CliRunner().invoke(
        app, ["demo", "--json", "--scenario", str(builtin_scenario_path("basic"))]
    )
    assert result.exit_code == 0, result.output
    codes = {(e["code"], e["reveni_return_id"]) for e in json.loads(result.stdout)["exceptions"]}
    assert ("order_not_found", "ret_0005") in codes
    assert ("order_not_returnable", "ret_0002") in codes


def test_demo_with_a_bad_scenario_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"reveni": {"returns": [{"order_number": 1, "items": []}]}}))
    result = CliRunner().invoke(app, ["demo", "--json", "--scenario", str(path)])
    assert result.exit_code == 2
    assert "bad.json: reveni.returns[0].items" in result.output
    assert result.stdout == ""


def test_demo_with_an_impossible_history_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "reveni:\n  returns:\n    - order_number: 1\n      items: [{sku: X, quantity: 1}]\n"
        "      history: [in_progress, accepted, shipped]\n"
        "centra:\n  products: [{sku: X}]\n"
    )
    result = CliRunner().invoke(app, ["demo", "--scenario", str(path)])
    assert result.exit_code == 2
    assert "reveni.returns[0]" in result.output and "'accepted' cannot move to 'shipped'" in (
        result.output
    )


def test_demo_exits_1_on_anything_unexpected(monkeypatch: pytest.MonkeyPatch) -> None:
    import returnbridge.demo as demo_module

    def boom(_scenario: object) -> DemoRun:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(demo_module, "run_demo", boom)
    result = CliRunner().invoke(app, ["demo", "--json"])
    assert result.exit_code == 1
    assert "simulated crash" in result.stderr
    assert result.stdout == ""


def test_lost_duplicated_and_reordered_webhooks_change_nothing_found() -> None:
    """Webhooks only wake the sync; the listing is the backstop, so faulty delivery cannot hide
    or double an exception."""
    scenario = builtin_scenario("showcase")
    faulty = scenario.model_copy(
        update={
            "faults": scenario.faults.model_copy(
                update={
                    "reveni": scenario.faults.reveni.model_copy(
                        update={
                            "duplicate_webhook_rate": 0.3,
                            "out_of_order_webhook_rate": 0.2,
                            "drop_webhook_rate": 0.3,
                        }
                    )
                }
            )
        }
    )
    run = run_demo(faulty)
    walked = sum(len(r.history) - 1 for r in scenario.reveni.returns)
    distinct = {e.id for e in run.webhooks}
    assert len(distinct) < walked  # some were dropped
    assert len(run.webhooks) > len(distinct)  # some came twice
    assert _rows(run.summary) == SHOWCASE_VALIDATION
    assert {r.id for r in run.returns} == {r.id for r in scenario.reveni.returns}
