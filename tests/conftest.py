"""Shared test fixtures. Prefect (used by later flow tests) keeps its state inside the project."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from centra_sim_support import CentraSimHandle, centra_sim_scenario_data, running_centra_sim

from returnbridge.scenario import Scenario, parse_scenario
from returnbridge.simulators.slack import SlackStandIn

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


# --------------------------------------------------------------------------- Centra simulator


@pytest.fixture
def centra_scenario() -> Scenario:
    return parse_scenario(centra_sim_scenario_data(), "CENTRA_SIM_SCENARIO")


@pytest.fixture
def centra_sim(centra_scenario: Scenario) -> Iterator[CentraSimHandle]:
    """The Centra simulator with the small scenario, rate limits off (`unlimited` plan)."""
    with running_centra_sim(centra_scenario) as handle:
        yield handle


# --------------------------------------------------------------------------- ledger databases


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A real PostgreSQL for the session (`support/pg_support.py`): fails, never skips."""
    from pg_support import PostgresUnavailable, running_postgres

    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger database: a SQLite file (WAL), then PostgreSQL (a schema of its own
    on the session's server)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    server = request.getfixturevalue("postgres_server")
    return str(server.fresh_url())


# --------------------------------------------------------------------------- Prefect


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One Prefect test server for every test that needs one (it takes seconds to start; never
    nest a second harness inside it: leaving the inner one would stop the shared server)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def slack_standin() -> Iterator[SlackStandIn]:
    """One Slack Web API stand-in per test module (`slack` resets it for each test)."""
    with SlackStandIn() as standin:
        yield standin


@pytest.fixture
def slack(slack_standin: SlackStandIn) -> SlackStandIn:
    """The module's Slack stand-in, with no messages, calls or faults left from earlier tests."""
    slack_standin.reset()
    return slack_standin
