"""The cross-process budget gate kept in the ledger (`returnbridge/sync/ledger_budget.py`): the
governor's capacities, what each kind draws, both windows at the share, no database for a plan
without limits, processes racing for one share, the executor passing it, and `open_sync` /
`open_reconciliation` using it by default."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from budget_support import ManualClock, gate_race_worker, rows, units_by_bucket
from centra_sim_support import CentraSimHandle
from test_executor import restock_action

from returnbridge.connectors.centra import CentraClient, Governor
from returnbridge.connectors.centra.plans import PLANS, Plan, Quota
from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.ledger import Ledger
from returnbridge.ledger.budget_windows import Window
from returnbridge.reconcile.runtime import open_reconciliation
from returnbridge.reconcile.settings import ReconcileSettings
from returnbridge.settings import Settings
from returnbridge.sync.budget import BudgetNames, NoGate
from returnbridge.sync.executor import Executor, ExecutorConfig
from returnbridge.sync.ledger_budget import LedgerBudgetGate, window_limits
from returnbridge.sync.runtime import open_sync
from returnbridge.sync.settings import SyncSettings

# A plan whose hourly mutation quota is reached in a few calls: 4 per 10 s, 6 per hour.
TINY = Plan("tiny", requests=Quota(8, 50), mutations=Quota(4, 6), complexity=None)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger(ledger_url) as opened:
        yield opened


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize("share", [0.01, 0.25, 1 / 3, 0.5, 1.0])
def test_the_windows_hold_the_governors_capacities(plan: str, share: float) -> None:
    limits = window_limits(plan, share)
    budget = Governor(plan, share).budget
    assert [w.capacity for w in limits["request"]] == [
        c for c in (budget.requests_10s, budget.requests_1h) if c is not None
    ]
    assert [w.capacity for w in limits["mutation"]] == [
        c for c in (budget.mutations_10s, budget.mutations_1h) if c is not None
    ]
    for windows in limits.values():
        assert [w.seconds for w in windows] in ([], [10.0, 3600.0])


def test_growth_at_half_share_and_bad_shares() -> None:
    assert window_limits("growth", 0.5) == {
        "request": (Window(30, 10.0), Window(2500, 3600.0)),
        "mutation": (Window(10, 10.0), Window(900, 3600.0)),
    }
    assert window_limits("unlimited", 0.5) == {"request": (), "mutation": ()}
    with pytest.raises(ValueError, match="share"):
        window_limits("growth", 0)
    with pytest.raises(ValueError, match="unknown Centra plan"):
        window_limits("platinum", 0.5)


# --------------------------------------------------------------------------- the gate


async def test_a_plan_without_limits_never_touches_the_database(ledger: Ledger) -> None:
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(str(args[2]))

    sa.event.listen(ledger._engine, "before_cursor_execute", seen)
    try:
        gate = LedgerBudgetGate.for_settings(CentraSettings(plan="unlimited"), ledger)
        for _ in range(50):
            await gate.acquire("mutation")
            await gate.acquire("request", 3)
    finally:
        sa.event.remove(ledger._engine, "before_cursor_execute", seen)
    assert statements == []
    assert rows(ledger) == []
    assert gate.acquired == {"mutation": 50, "request": 150}


async def test_both_windows_hold_at_the_share(ledger: Ledger) -> None:
    clock = ManualClock(1000.0)
    gate = LedgerBudgetGate(ledger, plan=TINY, share=1.0, clock=clock)
    for _ in range(6):
        await gate.acquire("mutation")
    # 4 at once (the 10 s burst), 2 when they have left the 10 s window, then the hour is spent.
    assert clock.slept == [10.0]
    await gate.acquire("mutation")
    assert clock.slept == [10.0, 3590.0]
    assert clock.now == 4600.0
    assert gate.acquired == {"request": 0, "mutation": 7}


async def test_a_mutation_draws_a_request_too_and_environments_do_not_share(
    ledger: Ledger,
) -> None:
    clock = ManualClock(1000.0)
    here = CentraSettings(base_url="https://here.centra.com", plan="growth", budget_share=0.5)
    there = here.model_copy(update={"base_url": "https://there.centra.com"})
    gate = LedgerBudgetGate.for_settings(here, ledger, clock=clock, timeout_seconds=0)
    other = LedgerBudgetGate.for_settings(there, ledger, clock=clock, timeout_seconds=0)
    for _ in range(10):
        await gate.acquire("mutation")
    with pytest.raises(TimeoutError, match=r"'centra-mutations:here.centra.com'.*holds 10"):
        await gate.acquire("mutation")
    await other.acquire("mutation")  # another environment, another share
    await gate.acquire("request", 20)  # 10 of 30 requests were taken by the mutations
    with pytest.raises(TimeoutError, match=r"'centra-requests:here.centra.com'.*holds 30"):
        await gate.acquire("request")
    assert units_by_bucket(ledger) == {
        "centra-requests:here.centra.com": 30,
        "centra-mutations:here.centra.com": 10,
        "centra-requests:there.centra.com": 1,
        "centra-mutations:there.centra.com": 1,
    }
    assert clock.slept == []


async def test_more_calls_than_a_window_holds_are_refused(ledger: Ledger) -> None:
    gate = LedgerBudgetGate(ledger, plan="growth", share=0.5, clock=ManualClock())
    with pytest.raises(ValueError, match=r"11 calls can never fit budget bucket 'centra-mut"):
        await gate.acquire("mutation", 11)
    await gate.acquire("mutation", 0)
    assert rows(ledger) == []


def test_processes_share_one_share(ledger_url: str) -> None:
    """Four processes, each with its own gate and engine, race at one frozen instant for
    Growth's 50 % share: ten mutations in all, however the race goes."""
    processes = 4
    with Ledger(ledger_url):
        pass
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=gate_race_worker, args=(ledger_url, 1000.0, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    errors = [r[1] for r in reports if r[0] != "ok"]
    assert not errors, errors[0]
    assert sum(r[1] for r in reports) == 10
    with Ledger(ledger_url) as ledger:
        names = BudgetNames()
        assert units_by_bucket(ledger) == {names.request: 10, names.mutation: 10}


async def test_the_executor_passes_the_ledger_gate_before_each_write(
    centra_sim: CentraSimHandle, tmp_path: Path
) -> None:
    settings = CentraSettings(base_url=centra_sim.url, plan="growth", budget_share=1.0)
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        gate = LedgerBudgetGate.for_settings(settings, ledger)  # the database's clock
        async with CentraClient(
            base_url=centra_sim.url,
            token=centra_sim.token,
            order_api_secret=centra_sim.order_api_secret,
            plan="unlimited",
            governor=Governor("unlimited", 1.0),
        ) as centra:
            action = await restock_action(centra, "ret_gated")
            ledger.plan([action])
            config = ExecutorConfig(in_doubt_settle_seconds=0)
            executor = Executor(centra, ledger, config, budget=gate, rng=random.Random(1))
            report = await executor.run()
        assert report.outcomes == {action.key: "done"}
        assert gate.acquired == {"mutation": 1, "request": 0}
        assert units_by_bucket(ledger) == {gate.names.request: 1, gate.names.mutation: 1}


# --------------------------------------------------------------------------- wiring


def _settings(tmp_path: Path, ledger: Ledger, **sync: Any) -> Settings:
    return Settings(
        centra=CentraSettings(base_url="https://brand.centra.com", plan="growth"),
        sync=SyncSettings(ledger_url=ledger.url, **sync),
        reconcile=ReconcileSettings(warehouse_path=tmp_path / "warehouse.duckdb"),
    )


async def test_open_sync_passes_the_ledger_gate_unless_told_otherwise(
    tmp_path: Path, ledger: Ledger
) -> None:
    async with open_sync(_settings(tmp_path, ledger), ledger=ledger) as sync:
        gate = sync.executor.budget
        assert isinstance(gate, LedgerBudgetGate)
        assert gate.names == BudgetNames.for_environment("https://brand.centra.com")
        assert gate.limits == window_limits("growth", 0.5)
        await gate.acquire("mutation")
    assert units_by_bucket(ledger) == {gate.names.request: 1, gate.names.mutation: 1}
    off = _settings(tmp_path, ledger, shared_budget=False)
    async with open_sync(off, ledger=ledger) as sync:
        assert isinstance(sync.executor.budget, NoGate)
    given = NoGate()
    async with open_sync(_settings(tmp_path, ledger), ledger=ledger, budget=given) as sync:
        assert sync.executor.budget is given


async def test_open_reconciliation_passes_the_ledger_gate_too(
    tmp_path: Path, ledger: Ledger
) -> None:
    async with open_reconciliation(
        _settings(tmp_path, ledger), ledger=ledger, render_digest=_no_digest
    ) as reconciliation:
        assert isinstance(reconciliation.sync.executor.budget, LedgerBudgetGate)


def _no_digest(*args: Any) -> Any:
    raise AssertionError("no digest is rendered here")
