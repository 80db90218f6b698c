"""Scenario files: strict validation with messages naming the file, the key and the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from returnbridge.cli import app
from returnbridge.scenario import ScenarioError, load_scenario, parse_scenario
from returnbridge.scenarios import builtin_scenario, builtin_scenario_path


def minimal(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "centra": {
            "products": [{"sku": "TEE-M", "stock": {1: 3}}],
            "orders": [
                {"number": 1001, "lines": [{"sku": "TEE-M", "quantity": 2, "unit_price": "299.00"}]}
            ],
        },
        "reveni": {"returns": [{"order_number": 1001, "items": [{"sku": "TEE-M", "quantity": 1}]}]},
    }
    data.update(overrides)
    return data


def error_of(data: Any) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "s.yaml")
    return info.value


def test_minimal_scenario_defaults_to_one_shipment_with_every_line() -> None:
    scenario = parse_scenario(minimal())
    order = scenario.centra.orders[0]
    assert order.shipments is None
    [shipment] = order.effective_shipments()
    assert shipment.shipped and [(s.line, s.quantity) for s in shipment.lines] == [(1, 2)]


def test_money_is_decimal_and_timestamps_are_utc() -> None:
    data = minimal(now="2026-10-15T14:00:00+02:00")
    scenario = parse_scenario(data)
    assert str(scenario.centra.orders[0].lines[0].unit_price) == "299.00"
    assert scenario.now is not None and scenario.now.utcoffset() is not None
    assert scenario.now.hour == 12


def test_unknown_key_is_named_with_its_path() -> None:
    data = minimal()
    data["centra"]["orders"][0]["colour"] = "red"
    err = error_of(data)
    assert err.key == "centra.orders[0].colour"
    assert err.problem == "unknown key"
    assert str(err).startswith("s.yaml: centra.orders[0].colour")


def test_wrong_type_is_named() -> None:
    data = minimal()
    data["centra"]["orders"][0]["number"] = "one"
    err = error_of(data)
    assert err.key == "centra.orders[0].number"
    assert "integer" in err.problem


def test_order_line_naming_unknown_sku_is_rejected() -> None:
    data = minimal()
    data["centra"]["orders"][0]["lines"][0]["sku"] = "NOPE"
    assert "unknown SKU 'NOPE'" in str(error_of(data))


def test_return_item_naming_unknown_sku_is_rejected() -> None:
    data = minimal()
    data["reveni"]["returns"][0]["items"][0]["sku"] = "NOPE"
    err = error_of(data)
    assert "reveni.returns[0].items[0].sku" in str(err)


def test_return_naming_an_order_centra_lacks_is_legal() -> None:
    data = minimal()
    data["reveni"]["returns"][0]["order_number"] = 999999
    assert parse_scenario(data).reveni.returns[0].order_number == 999999


def test_shipment_naming_missing_line_is_rejected() -> None:
    data = minimal()
    data["centra"]["orders"][0]["shipments"] = [{"lines": [{"line": 2, "quantity": 1}]}]
    assert "has only 1 line(s)" in str(error_of(data))


def test_shipping_more_than_ordered_is_rejected() -> None:
    data = minimal()
    data["centra"]["orders"][0]["shipments"] = [
        {"lines": [{"line": 1, "quantity": 2}]},
        {"lines": [{"line": 1, "quantity": 1}]},
    ]
    assert "ships 3 but only 2 were ordered" in str(error_of(data))


def test_unknown_plan_and_negative_money_are_rejected() -> None:
    data = minimal()
    data["centra"]["plan"] = "platinum"
    assert error_of(data).key == "centra.plan"
    data = minimal()
    data["centra"]["orders"][0]["lines"][0]["unit_price"] = "-1.00"
    assert error_of(data).key == "centra.orders[0].lines[0].unit_price"


def test_naive_timestamp_is_rejected() -> None:
    assert "timezone" in error_of(minimal(now="2026-10-15T12:00:00")).problem


def test_json_and_yaml_files_load(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(minimal()))
    assert load_scenario(path).centra.orders[0].number == 1001


def test_unparsable_and_missing_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("centra: [unclosed")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: not valid yaml"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "absent.yaml")
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(ScenarioError, match="top level must be a mapping"):
        load_scenario(top)


def test_builtin_basic_scenario_is_valid() -> None:
    scenario = builtin_scenario("basic")
    assert {o.currency for o in scenario.centra.orders} == {"SEK", "EUR"}
    with pytest.raises(ValueError, match="available"):
        builtin_scenario_path("nope")


def test_cli_exits_2_naming_file_and_key_for_a_bad_scenario(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("centra:\n  orders:\n    - number: x\n      lines: []\n")
    result = CliRunner().invoke(app, ["sim", "centra", "--scenario", str(path)])
    assert result.exit_code == 2
    assert "broken.yaml: centra.orders[0].number" in result.output
