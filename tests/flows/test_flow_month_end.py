"""The `month-end-report` Prefect flow, run by a real Prefect server (the test harness) with its
settings from the environment exactly as a deployment has them: a prepared ledger and
warehouse, Reveni's invoice as a CSV file, and a local SMTP server."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
    # r_ghost's 149.00 is billed and Reveni's data has it, Centra has no credit: balanced,
    # yet not settled
    assert "| Reveni's data differs | tie-out |" in str(report.data)
    assert "| 149.00 | 0.00 | balanced, unmatched |" in str(report.data)
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


async def test_a_failed_e_mail_is_tried_again_within_the_run_and_sent_once(
    prefect_server: None,
    configured: ClosedOctober,
    smtp: MailStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.month_end_report as module
    from tasks.month_end_steps import MAIL_RETRIES, MAIL_RETRY_DELAY_SECONDS, email_report

    assert (email_report.retries, email_report.retry_delay_seconds) == (3, 900)
    assert (MAIL_RETRIES, MAIL_RETRY_DELAY_SECONDS) == (3, 900)
    assert module.month_end_report.retries in (None, 0)  # a bad parameter is never retried
    monkeypatch.setattr(module, "email_report", email_report.with_options(retry_delay_seconds=0))

    smtp.fail_next(1)  # 451 for the first try: the task's retry sends the kept message
    summary = await module.month_end_report(month="2026-10", invoice_file=str(configured.invoice))
    assert summary["mail"] == "sent"
    assert [m.message_id for m in smtp.messages] == [summary["message_id"]]


async def test_an_e_mail_still_failing_after_its_retries_fails_the_run_and_is_kept(
    prefect_server: None,
    configured: ClosedOctober,
    smtp: MailStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.schemas.objects import StateType

    import flows.month_end_report as module
    from tasks.month_end_steps import MAIL_RETRIES, email_report

    monkeypatch.setattr(module, "email_report", email_report.with_options(retry_delay_seconds=0))
    smtp.fail_next(MAIL_RETRIES + 1)  # every try of this run
    state = await module.month_end_report(
        month="2026-10", invoice_file=str(configured.invoice), return_state=True
    )
    assert state.type == StateType.FAILED
    with pytest.raises(module.MailNotSent, match="kept in the ledger's outbox"):
        await state.result()
    assert smtp.messages == []
    again: dict[str, Any] = await module.month_end_report(
        month="2026-10", invoice_file=str(configured.invoice)
    )
    assert again["mail"] == "sent" and len(smtp.messages) == 1


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"month": "2026-13"}, "month: '2026-13' has no month 13"),
        ({"month": "Oct 2026"}, "month: expected YYYY-MM, got 'Oct 2026'"),
        (
            {"month": "2026-10", "invoice_file": "/nowhere/invoice.csv"},
            "invoice_file /nowhere/invoice.csv: invoice.csv: cannot read the file",
        ),
    ],
)
async def test_a_bad_parameter_fails_the_run_once_naming_it(
    prefect_server: None,
    configured: ClosedOctober,
    smtp: MailStandIn,
    tmp_path: Path,
    parameters: dict[str, str],
    message: str,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    from flows.month_end_report import month_end_report

    state = await month_end_report(**parameters, return_state=True)  # type: ignore[call-overload]
    assert state.type == StateType.FAILED
    assert state.message is not None and state.message.startswith(message)
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        run = await client.read_flow_run(state.state_details.flow_run_id)
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    assert run.run_count == 1  # not retried
    # refused by the run, not a failed task with a traceback in its log
    assert [t.state.type for t in tasks if t.state is not None and t.state.is_failed()] == []
    assert smtp.messages == []
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        assert ledger.exceptions(code="settlement_unmatched") == []


async def test_an_empty_month_is_the_last_complete_one(
    prefect_server: None, configured: ClosedOctober, smtp: MailStandIn
) -> None:
    """What the Prefect UI sends when the month field is cleared."""
    from flows.month_end_report import month_end_report
    from returnbridge.monthend.model import Month

    expected = Month.last_complete(datetime.now(UTC), ZoneInfo("UTC")).text
    summary = await month_end_report(month="", invoice_file=None, send=False)
    assert summary["month"] == expected


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


async def test_recipients_without_a_mail_server_fail_the_run_after_saving_the_report(
    prefect_server: None, tmp_path: Path
) -> None:
    """Finance named, no SMTP host: a green run would leave them waiting for a report that never
    comes. Saved, then Failed saying which setting is missing."""
    from prefect.client.schemas.objects import StateType

    from flows.month_end_report import month_end_report

    prepared = closed_october(tmp_path)
    env = month_end_env(tmp_path, prepared.warehouse, recipients=FINANCE)
    with environment(env):
        state = await month_end_report(
            month="2026-10", invoice_file=str(prepared.invoice), return_state=True
        )
    assert state.type == StateType.FAILED
    assert state.message is not None
    assert "not e-mailed to its 1 recipient(s)" in state.message
    assert "RETURNBRIDGE_MAIL__HOST" in state.message
    assert (tmp_path / "reports" / "month-end-2026-10.html").is_file()
