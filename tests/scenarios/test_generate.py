"""Generated scenarios: seeded, valid, the realistic mix, on top of the showcase, and fast."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from returnbridge.connectors.reveni.statuses import TERMINAL, check_history
from returnbridge.scenario import ReveniReturn, Scenario, load_scenario
from returnbridge.scenarios import builtin_scenario
from returnbridge.scenarios.generate import CASE_NAMES, generate_scenario, scenario_to_yaml
from returnbridge.simulators.centra.app import create_app as create_centra_app
from returnbridge.simulators.reveni.app import create_app as create_reveni_app
from returnbridge.simulators.server import free_port, serve_in_thread

FINAL = TERMINAL | {"accepted", "partially_accepted"}


@pytest.fixture(scope="module")
def showcase() -> Scenario:
    return builtin_scenario("showcase")


@pytest.fixture(scope="module")
def big(showcase: Scenario) -> Scenario:
    return generate_scenario(600, seed=3, base=showcase)


def generated(scenario: Scenario) -> list[ReveniReturn]:
    return [r for r in scenario.reveni.returns if r.id and r.id.startswith("gen_")]


def test_same_seed_same_scenario_other_seed_other_one(showcase: Scenario) -> None:
    first = generate_scenario(80, seed=11, base=showcase)
    again = generate_scenario(80, seed=11, base=showcase)
    other = generate_scenario(80, seed=12, base=showcase)
    assert first == again
    assert scenario_to_yaml(first) == scenario_to_yaml(again)
    assert first != other


def test_the_base_is_kept_with_its_ids(showcase: Scenario, big: Scenario) -> None:
    assert big.reveni.returns[: len(showcase.reveni.returns)] == showcase.reveni.returns
    assert big.centra.orders[: len(showcase.centra.orders)] == showcase.centra.orders
    assert big.centra.manual_refunds == showcase.centra.manual_refunds
    assert big.faults == showcase.faults and big.now == showcase.now
    assert len(generated(big)) == 600
    # no generated order takes a number the base uses or names (9999: order_not_found)
    base_numbers = {o.number for o in showcase.centra.orders} | {
        r.order_number for r in showcase.reveni.returns
    }
    new_numbers = {o.number for o in big.centra.orders[len(showcase.centra.orders) :]}
    assert not base_numbers & new_numbers


def test_histories_follow_the_machine_and_mostly_end_final(big: Scenario) -> None:
    now = big.start_time()
    returns = generated(big)
    for ret in returns:
        check_history(list(ret.history))
        assert ret.created_at is not None and ret.created_at < now
    final = sum(1 for r in returns if r.history[-1] in FINAL)
    assert final / len(returns) > 0.85


def test_refund_amounts_equal_what_centra_computes_for_the_accepted_items(big: Scenario) -> None:
    orders = {o.number: o for o in big.centra.orders}
    checked = 0
    for ret in generated(big):
        if ret.refund is None or ret.instant or ret.history[-1] not in FINAL - {"rejected"}:
            continue
        if ret.history[-1] in ("cancelled", "expired"):
            continue
        price = {line.sku: line.unit_price for line in orders[ret.order_number].lines}
        expected = sum(
            (price[i.sku] * i.quantity for i in ret.items if i.exchange_sku is None and i.accepted),
            Decimal("0"),
        )
        if (ret.id or "").startswith("gen_mism_"):
            assert ret.refund.amount < expected
        else:
            assert ret.refund.amount == expected, ret.id
        checked += 1
    assert checked > 200


def test_the_mix_is_all_there(big: Scenario) -> None:
    returns = generated(big)
    cases = Counter((r.id or "").split("_")[1] for r in returns)
    assert set(cases) == set(CASE_NAMES)
    methods = Counter(r.refund.method for r in returns if r.refund)
    assert set(methods) == {"original_payment_method", "bank_transfer", "store_credit"}
    assert {r.type for r in returns} == {"refund", "exchange", "mixed"}
    assert any(r.instant for r in returns)
    last = Counter(r.history[-1] for r in returns)
    for status in ("accepted", "partially_accepted", "completed", "rejected", "cancelled"):
        assert last[status] > 0, status
    restock = Counter(i.restock for r in returns for i in r.items if i.accepted)
    assert restock[True] > restock[False] > 0

    orders = big.centra.orders[-len({r.order_number for r in returns}) :]
    assert {o.currency for o in orders} == {"SEK", "EUR"}
    assert any(len(o.lines) >= 3 for o in orders)
    assert any(o.shipments is not None and len(o.shipments) == 2 for o in orders)
    assert any(len({ln.sku for ln in o.lines}) < len(o.lines) for o in orders)
    per_order = Counter(r.order_number for r in returns)
    assert max(per_order.values()) >= 2


def test_exchanges_have_stock_except_the_sold_out_ones(big: Scenario) -> None:
    stock = {p.sku: sum(p.stock.values()) for p in big.centra.products}
    wanted = Counter(
        i.exchange_sku for r in generated(big) for i in r.items if i.exchange_sku is not None
    )
    out_of_stock = {r.id for r in generated(big) if r.id and r.id.startswith("gen_exoos_")}
    assert out_of_stock
    for ret in generated(big):
        for item in ret.items:
            if item.exchange_sku is None:
                continue
            if ret.id in out_of_stock:
                assert stock[item.exchange_sku] == 0
            else:
                assert stock[item.exchange_sku] >= wanted[item.exchange_sku]


def test_two_thousand_returns_generate_and_dump_in_a_few_seconds(showcase: Scenario) -> None:
    started = time.perf_counter()
    scenario = generate_scenario(2000, seed=5, base=showcase)
    text = scenario_to_yaml(scenario)
    elapsed = time.perf_counter() - started
    assert len(generated(scenario)) == 2000
    assert text.startswith("now:")
    assert elapsed < 5, f"took {elapsed:.1f} s"


def test_now_moves_every_timestamp_before_it() -> None:
    now = datetime(2027, 3, 1, 9, 30, tzinfo=UTC)
    scenario = generate_scenario(50, seed=1, now=now)
    assert scenario.now == now
    for order in scenario.centra.orders:
        assert order.created_at is not None and order.created_at < now
    for ret in scenario.reveni.returns:
        order = scenario.centra.order(ret.order_number)
        assert order is not None and order.created_at is not None
        assert ret.created_at is not None and order.created_at < ret.created_at < now


def test_yaml_file_loads_back_equal_and_both_simulators_serve_it(
    tmp_path: Path, showcase: Scenario
) -> None:
    scenario = generate_scenario(40, seed=9, base=showcase)
    path = tmp_path / "generated.yaml"
    path.write_text(scenario_to_yaml(scenario), encoding="utf-8")
    assert load_scenario(path) == scenario
    loaded = load_scenario(path)
    with (
        serve_in_thread(create_centra_app(loaded)) as centra,
        serve_in_thread(create_reveni_app(loaded)) as reveni,
    ):
        reveni_rows = httpx.get(reveni.url + "/_sim/effects").json()["returns"]
        assert len(reveni_rows) == len(scenario.reveni.returns)
        assert httpx.get(centra.url + "/_sim/clock").json()["now"].startswith("2026-10-30")


@pytest.mark.parametrize("system", ["centra", "reveni"])
def test_returnbridge_sim_serves_the_generated_file(tmp_path: Path, system: str) -> None:
    scenario = generate_scenario(30, seed=4, base=builtin_scenario("showcase"))
    path = tmp_path / "generated.yaml"
    path.write_text(scenario_to_yaml(scenario), encoding="utf-8")
    port = free_port()
    command = [sys.executable, "-m", "returnbridge", "sim", system, "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--scenario", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()
            try:
                if httpx.get(url + "/_sim/clock", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the simulator did not start answering"
            time.sleep(0.05)
        assert httpx.get(url + "/_sim/clock").json()["now"].startswith("2026-10-30")
        if system == "reveni":
            returns = httpx.get(url + "/_sim/effects").json()["returns"]
            assert [r["id"] for r in returns] == [r.id for r in scenario.reveni.returns]
        else:
            stock = httpx.get(url + "/_sim/state/stock").json()["stock"]
            assert {row["sku"] for row in stock} == {p.sku for p in scenario.centra.products}
    finally:
        proc.kill()
        proc.communicate()
