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


def _with_return(**fields: Any) -> dict[str, Any]:
    data = minimal()
    data["reveni"]["returns"][0].update(fields)
    return data


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"history": ["shipped"]}, "history[0]: a return starts pending or in_progress"),
        (
            {"history": ["in_progress", "accepted", "shipped"]},
            "history[2]: a return in 'accepted' cannot move to 'shipped'",
        ),
        ({"history": ["in_progress", "cancelled", "accepted"]}, "'cancelled' is final"),
        (
            {"history": ["in_progress", "on_hold", "received"]},
            "history[2]: a return in 'on_hold' cannot move to 'received'",
        ),
        (
            {
                "history": ["in_progress", "accepted"],
                "items": [{"sku": "TEE-M", "quantity": 1, "accepted": False}],
            },
            "use partially_accepted",
        ),
        (
            {"history": ["in_progress", "partially_accepted"]},
            "`partially_accepted` needs at least one item with accepted: true and one with",
        ),
        (
            {"instant": True, "refund": {"method": "original_payment_method", "amount": "1.00"}},
            "an instant refund is paid by Reveni",
        ),
        ({"type": "mixed"}, "a mixed return needs exchanged and refunded items"),
        ({"refund": {"method": "bank_transfer", "amount": "1", "currency": "sek"}}, "pattern"),
    ],
)
def test_impossible_returns_are_refused_naming_the_return(
    fields: dict[str, Any], fragment: str
) -> None:
    err = error_of(_with_return(**fields))
    assert err.key.startswith("reveni.returns[0]"), err
    assert fragment in str(err), str(err)


def test_allowed_histories_include_skips_and_holds() -> None:
    for history in (
        ["in_progress", "received", "accepted", "completed"],
        ["pending", "in_progress", "shipped", "on_hold", "shipped", "received", "rejected"],
        ["in_progress", "expired"],
    ):
        parse_scenario(_with_return(history=history))


def test_a_return_created_after_now_is_refused() -> None:
    data = _with_return(created_at="2026-11-01T00:00:00Z")
    data["now"] = "2026-10-15T12:00:00Z"
    err = error_of(data)
    assert err.key == "reveni.returns[0].created_at" or "reveni.returns[0].created_at" in str(err)
    assert "after the scenario's now" in str(err)


def test_the_showcase_names_every_case_it_promises() -> None:
    scenario = builtin_scenario("showcase")
    returns = {r.id: r for r in scenario.reveni.returns}
    orders = {o.number: o for o in scenario.centra.orders}
    assert {o.currency for o in orders.values()} == {"SEK", "EUR"}
    assert any(
        r.instant and r.refund and r.refund.method == "bank_transfer" for r in returns.values()
    )
    assert any(not r.instant and r.refund for r in returns.values())
    assert {r.type for r in returns.values()} == {"refund", "exchange", "mixed"}
    lines_1004 = [ln.sku for ln in orders[1004].lines]
    assert len(lines_1004) == 2 and len(set(lines_1004)) == 1  # same SKU, two prices
    assert any(not s.shipped for s in orders[1003].effective_shipments())  # partly shipped
    by_order: dict[int, int] = {}
    for r in returns.values():
        by_order[r.order_number] = by_order.get(r.order_number, 0) + 1
    assert max(by_order.values()) >= 2  # an order with two (or more) returns
    assert "partially_accepted" in returns["ret_pacc_1014"].history
    assert scenario.centra.manual_refunds  # a refund made directly in Centra


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("reveni", "returns", 0, "order_number"), True),
        (("centra", "orders", 0, "number"), False),
        (("centra", "orders", 0, "lines", 0, "quantity"), 2.0),
        (("reveni", "returns", 0, "items", 0, "quantity"), "1"),
    ],
)
def test_a_number_must_be_written_as_a_whole_number(where: tuple[Any, ...], value: Any) -> None:
    data = minimal()
    target: Any = data
    for part in where[:-1]:
        target = target[part]
    target[where[-1]] = value
    err = error_of(data)
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".")
    assert err.key == key
    assert "integer" in err.problem


def test_true_is_not_order_one() -> None:
    data = minimal()
    data["reveni"]["returns"][0]["order_number"] = True
    err = error_of(data)
    assert err.key == "reveni.returns[0].order_number"
    assert "integer" in err.problem


def test_negative_stock_is_refused_naming_the_product() -> None:
    data = minimal()
    data["centra"]["products"][0]["stock"] = {1: -4}
    err = error_of(data)
    assert err.key == "centra.products[0].stock[1]"
    assert "greater than or equal to 0" in err.problem


def test_a_file_that_is_not_utf8_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("centra:\n  products:\n    - sku: CAFÉ\n".encode("latin-1"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert "not UTF-8 text: byte 0xc9" in str(info.value)
    assert str(info.value).startswith(str(path))
    result = CliRunner().invoke(app, ["sim", "centra", "--scenario", str(path)])
    assert result.exit_code == 2
    assert "not UTF-8 text" in result.output and "Traceback" not in result.output
