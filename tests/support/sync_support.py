"""An integration under test: both simulators over loopback, a ledger file, and the sync wired the
way `returnbridge` wires it (runtime.open_sync), driven step by step."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from reports.digest import render_digest
from returnbridge.connectors.slack import SlackSettings
from returnbridge.demo import (
    CENTRA_SECRET,
    CENTRA_TOKEN,
    REVENI_KEY,
    demo_settings,
    scenario_clock,
)
from returnbridge.ledger import Ledger
from returnbridge.reconcile.run import ReconcileReport
from returnbridge.reconcile.runtime import open_reconciliation
from returnbridge.scenario import Scenario
from returnbridge.settings import Settings
from returnbridge.simulators.centra.app import create_app as create_centra_app
from returnbridge.simulators.reveni.app import create_app as create_reveni_app
from returnbridge.simulators.server import serve_in_thread
from returnbridge.sync.run import SyncReport
from returnbridge.sync.runtime import open_sync


@dataclass
class Integration:
    scenario: Scenario
    settings: Settings
    ledger: Ledger
    centra: httpx.Client  # the Centra simulator's /_sim control plane
    reveni: httpx.Client  # the Reveni simulator's /_sim control plane

    def run(self, **kwargs: Any) -> SyncReport:
        """One sync run, as `returnbridge sync` does it; then the asynchronous payment providers
        answer the refunds asked of them, as they would before the next scheduled run (tests
        about waiting for them use `tests/sync/test_sync_async_psp.py`'s own runs)."""

        async def once() -> SyncReport:
            async with open_sync(
                self.settings, ledger=self.ledger, clock=scenario_clock(self.scenario)
            ) as sync:
                return await sync.run(**kwargs)

        try:
            return asyncio.run(once())
        finally:
            self.answer_refunds()

    def answer_refunds(self) -> list[dict[str, Any]]:
        """The asynchronous payment providers answer every refund request left pending."""
        answered: list[dict[str, Any]] = (
            self.centra.post("/_sim/psp/settle", json={}).raise_for_status().json()["settled"]
        )
        return answered

    def walk(self, steps: int | None = None) -> int:
        body = {} if steps is None else {"steps": steps}
        result: int = self.reveni.post("/_sim/walk", json=body).raise_for_status().json()["steps"]
        return result

    def effects(self) -> dict[str, Any]:
        result: dict[str, Any] = self.centra.get("/_sim/effects").raise_for_status().json()
        return result

    def mutations(self) -> int:
        result: int = self.centra.get("/_sim/counters").raise_for_status().json()["mutations"]
        return result

    def env(self) -> dict[str, str]:
        """The environment that points the `returnbridge` command at this integration."""
        s = self.settings
        return {
            "RETURNBRIDGE_CENTRA__BASE_URL": s.centra.base_url,
            "RETURNBRIDGE_CENTRA__TOKEN": CENTRA_TOKEN,
            "RETURNBRIDGE_CENTRA__ORDER_API_SECRET": CENTRA_SECRET,
            "RETURNBRIDGE_CENTRA__PLAN": s.centra.plan,
            "RETURNBRIDGE_REVENI__BASE_URL": s.reveni.base_url,
            "RETURNBRIDGE_REVENI__API_KEY": REVENI_KEY,
            "RETURNBRIDGE_REVENI__STORE_ID": s.reveni.store_id,
            "RETURNBRIDGE_SYNC__LEDGER_URL": s.sync.ledger_url,
            "RETURNBRIDGE_SYNC__RETURNS_WAREHOUSE_ID": str(s.sync.returns_warehouse_id),
            "RETURNBRIDGE_SYNC__INITIAL_LOOK_BACK": "P3650D",
            "RETURNBRIDGE_SYNC__IN_DOUBT_SETTLE_SECONDS": "1",
            "RETURNBRIDGE_RECONCILE__WAREHOUSE_PATH": str(s.reconcile.warehouse_path),
            "RETURNBRIDGE_RECONCILE__TIMEZONE": s.reconcile.timezone,
            "RETURNBRIDGE_SLACK__ENABLED": "true" if s.slack.enabled else "false",
            "RETURNBRIDGE_SLACK__BASE_URL": s.slack.base_url,
            **(
                {"RETURNBRIDGE_SLACK__TOKEN": s.slack.token.get_secret_value()}
                if s.slack.token is not None
                else {}
            ),
        }

    def reconcile(self, run_date: date | None = None, **settings: Any) -> ReconcileReport:
        """One reconciliation, as `returnbridge reconcile` does it (`settings`: overrides of
        the reconcile section)."""
        merged = self.settings.model_copy(
            update={"reconcile": self.settings.reconcile.model_copy(update=settings)}
        )

        async def once() -> ReconcileReport:
            async with open_reconciliation(
                merged,
                ledger=self.ledger,
                clock=scenario_clock(self.scenario),
                render_digest=render_digest,
            ) as rec:
                return await rec.run(run_date)

        return asyncio.run(once())

    def manual_refund(self, order_number: int, amount: str) -> None:
        """Someone refunds on the order directly in Centra."""
        body = {"order_number": order_number, "amount": amount}
        self.centra.post("/_sim/manual_refunds", json=body).raise_for_status()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`os.environ` with `values` set, restored afterwards (what a deployment would see)."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def unlimited(scenario: Scenario) -> Scenario:
    """The scenario on Centra's `unlimited` plan: tests about behaviour do not wait for windows
    (the budget has its own tests and benchmark)."""
    return scenario.model_copy(
        update={"centra": scenario.centra.model_copy(update={"plan": "unlimited"})}
    )


@contextmanager
def integration(
    scenario: Scenario,
    tmp_path: Path,
    *,
    plan_limits: bool = False,
    slack: SlackSettings | None = None,
    initial_look_back: timedelta = timedelta(days=3650),
) -> Iterator[Integration]:
    """`plan_limits`: keep the scenario's rate-limit plan (default: unlimited). The warehouse
    is a file in `tmp_path`; Slack is off unless `slack` is given."""
    if not plan_limits:
        scenario = unlimited(scenario)
    centra_app = create_centra_app(scenario, token=CENTRA_TOKEN, order_api_secret=CENTRA_SECRET)
    reveni_app = create_reveni_app(scenario, api_key=REVENI_KEY)
    with (
        serve_in_thread(centra_app) as centra,
        serve_in_thread(reveni_app) as reveni,
        Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger,
        httpx.Client(base_url=centra.url, timeout=10) as centra_control,
        httpx.Client(base_url=reveni.url, timeout=10) as reveni_control,
    ):
        settings = demo_settings(
            scenario,
            centra.url,
            reveni.url,
            ledger.url,
            initial_look_back=initial_look_back,
            warehouse_path=tmp_path / "warehouse.duckdb",
            slack=slack,
        )
        yield Integration(scenario, settings, ledger, centra_control, reveni_control)
