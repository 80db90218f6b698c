"""The `month-end-report` Prefect flow, run by a real Prefect server (the test harness) with its
settings from the environment exactly as a deployment has them: a prepared ledger and
warehouse, Reveni's invoice as a CSV file, and a local SMTP server."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from monthend_support import ClosedOctober, closed_october, month_end_env
from sync_support import environment

from returnbridge.ledger import Ledger
from returnbridge.reconcile.settings import ReconcileSettings
from returnbridge.simulators.mail import MailStandIn

ROOT = Path(__file__).resolve().parents[2]
FINANCE = "finance@example.com"


@pytest.fixture
def smtp() -> Iterator[MailStandIn]:
    with MailStandIn() as standin:
        yield standin


@pytest.fixture
def configured(tmp_path: Path, smtp: MailStandIn) -> Iterator[ClosedOctober]:
    prepared = closed_october(tmp_path)
    env = month_end_env(tmp_path, prepared.warehouse, mail_port=smtp.port, recipients=FINANCE)
    with environment(env):
        yield prepared


async def test_the_flow_reports_the_month_once_and_publishes_its_artifacts(
    prefect_server: None, configured: ClosedOctober, smtp: MailStandIn, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.month_end_report import month_end_report

    summary: dict[str, Any] = await month_end_report(
        month="2026-10", invoice_file=str(configured.invoice)
    )
    assert summary["month"] == "2026-10"
    assert (summary["mail"], summary["sent"], summary["emailed_to"]) == ("sent", True, [FINANCE])
    assert summary["html_path"] == str(tmp_path / "reports" / "month-end-2026-10.html")
    assert await asyncio.to_thread(Path(summary["html_path"]).is_file)
    assert summary["settlement_unmatched"]["new"] == 1
    assert summary["totals"]["currencies"]["SEK"]["unmatched"] == "149.00"
    (mail,) = smtp.messages
    assert mail.message_id == summary["message_id"] and mail.recipients == (FINANCE,)

    async with get_client() as client:
        latest = {a.key: a for a in await client.read_latest_artifacts() if a.key}
    report = latest["month-end-report"]
    assert report.type == "markdown"
    assert "# Month-end 2026-10 (UTC)" in str(report.data)
    assert f"E-mail: sent (sent to {FINANCE})" in str(report.data)
    unmatched = latest["month-end-settlement-unmatched"]
    assert unmatched.type == "table" and "r_ghost" in str(unmatched.data)

    again: dict[str, Any] = await month_end_report(
        month="2026-10", invoice_file=str(configured.invoice)
    )
    assert again["mail"] == "already_sent" and again["message_id"] == summary["message_id"]
    assert again["settlement_unmatched"] == {"new": 0, "still_open": 1, "healed": 0}
    assert len(smtp.messages) == 1  # a retried or repeated run does not e-mail twice
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        assert len(ledger.exceptions(code="settlement_unmatched")) == 1
        assert [m.status for m in ledger.mail_records()] == ["sent"]


async def test_a_run_whose_e_mail_fails_fails_and_its_retry_sends_it_once(
    prefect_server: None, configured: ClosedOctober, smtp: MailStandIn, tmp_path: Path
) -> None:
    from prefect.client.schemas.objects import StateType

    from flows.month_end_report import MailNotSent, month_end_report

    smtp.fail_next(1)  # 451 for the first try
    once = month_end_report.with_options(retries=0)
    state = await once(month="2026-10", invoice_file=str(configured.invoice), return_state=True)
    assert state.type == StateType.FAILED
    with pytest.raises(MailNotSent, match="kept in the ledger's outbox"):
        await state.result()
    assert smtp.messages == []
    again: dict[str, Any] = await once(month="2026-10", invoice_file=str(configured.invoice))
    assert again["mail"] == "sent" and len(smtp.messages) == 1
    assert month_end_report.retries == 3  # the deployment's runs retry by themselves


def test_the_deployment_runs_at_seven_on_the_first_one_run_at_a_time() -> None:
    """prefect.yaml: the entrypoint resolves to the flow, the schedule is 07:00 on the 1st in
    the brand's timezone, and a run never overlaps another."""
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (deployment,) = [d for d in config["deployments"] if d["name"] == "month-end-report"]
    path, _, name = deployment["entrypoint"].partition(":")
    assert (ROOT / path).is_file()
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name)
    assert flow.name == "month-end-report"
    assert set(deployment.get("parameters", {})) <= set(inspect.signature(flow.fn).parameters)
    (schedule,) = deployment["schedules"]
    assert schedule["cron"] == "0 7 1 * *"
    assert schedule["timezone"] == ReconcileSettings().timezone  # the brand's default zone
    assert deployment["concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_limit"]["collision_strategy"] == "CANCEL_NEW"
