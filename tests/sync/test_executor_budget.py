"""The cross-process budget's names and kinds (the ledger's gate itself is tested in
tests/sync/test_ledger_budget_gate.py and tests/ledger/test_budget_windows.py)."""

from __future__ import annotations

import pytest

from returnbridge.sync.budget import BudgetNames, NoGate

# --------------------------------------------------------------------------- pure


def test_a_mutation_draws_from_the_request_limit_too() -> None:
    names = BudgetNames(request="env-a-requests", mutation="env-a-mutations")
    assert names.for_kind("mutation") == ["env-a-requests", "env-a-mutations"]
    assert names.for_kind("request") == ["env-a-requests"]
    with pytest.raises(ValueError, match="unknown budget kind"):
        names.for_kind("query")  # type: ignore[arg-type]


async def test_no_gate_lets_everything_through() -> None:
    await NoGate().acquire("mutation", 5)


def test_each_centra_environment_has_its_own_limit_names() -> None:
    names = BudgetNames.for_environment("https://brand.centra.com/graphql")
    assert names == BudgetNames(
        "centra-requests:brand.centra.com", "centra-mutations:brand.centra.com"
    )
    assert BudgetNames.for_environment("http://127.0.0.1:8081").request == (
        "centra-requests:127.0.0.1:8081"
    )
