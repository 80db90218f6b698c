"""`returnbridge sync`, `replay` and `exceptions ...` against both simulators, configured the way
an operator configures them: through RETURNBRIDGE_* environment variables."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_support import Integration, integration
from typer.testing import CliRunner, Result

from returnbridge.cli import app
from returnbridge.scenarios import builtin_scenario


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Integration]:
    """The showcase, walked to the end and synced once through the command."""
    with integration(builtin_scenario("showcase"), tmp_path_factory.mktemp("cli")) as it:
        it.walk()
        yield it


def invoke(it: Integration, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=it.env())


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_sync_runs_once_and_reports(processed: Integration) -> None:
    report = as_json(invoke(processed, "sync", "--json"))
    assert report["returns_seen"] == len(processed.scenario.reveni.returns)
    assert report["actions_done"] > 0 and report["cursor_after"] is not None
    again = as_json(invoke(processed, "sync", "--json"))
    assert again["actions_done"] == 0 and again["actions_planned"] == 0


def test_exceptions_list_filters_by_owner(processed: Integration) -> None:
    invoke(processed, "sync")
    rows = as_json(invoke(processed, "exceptions", "list", "--owner", "finance", "--json"))
    assert rows and {r["owner"] for r in rows} == {"finance"}
    assert {r["code"] for r in rows} >= {"order_not_returnable", "refund_amount_mismatch"}
    table = invoke(processed, "exceptions", "list")
    assert table.exit_code == 0 and "sku_not_in_order" in table.stdout


def test_show_resolve_and_retry_an_exception(processed: Integration) -> None:
    invoke(processed, "sync")
    rows = as_json(invoke(processed, "exceptions", "list", "--code", "refund_failed_at_gateway",
                          "--json"))  # fmt: skip
    (failed,) = rows
    shown = as_json(invoke(processed, "exceptions", "show", str(failed["id"]), "--json"))
    assert shown["action"]["kind"] == "refund"
    assert shown["attempts_log"], "the attempts behind it explain why"
    text = invoke(processed, "exceptions", "show", str(failed["id"]))
    assert "refund_failed_at_gateway (finance)" in text.stdout and "runbook" in text.stdout

    # a refund through the payment provider again can pay twice: confirmed, seeing the amount
    retried = invoke(processed, "exceptions", "retry", str(failed["id"]), "--confirm")
    assert retried.exit_code == 0, retried.output
    resolved = invoke(processed, "exceptions", "resolve", str(failed["id"]), "--note", "refunded")
    assert resolved.exit_code == 0 and "resolved" in resolved.stdout
    closed = as_json(invoke(processed, "exceptions", "list", "--status", "resolved", "--json"))
    assert failed["id"] in {r["id"] for r in closed}


def test_replay_dry_run_prints_calls_and_sends_nothing(tmp_path: Path) -> None:
    with integration(builtin_scenario("showcase"), tmp_path) as it:
        it.walk()
        result = invoke(it, "replay", "--return", "ret_std_1001", "--dry-run")
        assert result.exit_code == 0, result.output
        assert "nothing was sent" in result.stdout
        assert "createReturn shipment" in result.stdout
        assert it.mutations() == 0
        by_order = as_json(invoke(it, "replay", "--order", "1001", "--json"))
        assert by_order["returns_seen"] == 2  # ret_std_1001 and the cancelled ret_cncl_1001
        assert it.ledger.cursor("reveni_returns") is None  # a replay leaves the cursor


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay"], "exactly one of --return, --order, --since"),
        (["replay", "--since", "last tuesday"], "--since: 'last tuesday' is not a date"),
        (["exceptions", "show", "999999"], "no exception with id 999999"),
        (["exceptions", "list", "--owner", "marketing"], "--owner: 'marketing'"),
        (["exceptions", "list", "--code", "nope"], "unknown code 'nope'"),
    ],
)
def test_bad_input_exits_2_naming_it(processed: Integration, args: list[str], message: str) -> None:
    result = invoke(processed, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_receiver_command_turns_a_webhook_into_centra_effects(tmp_path: Path) -> None:
    """`returnbridge receiver` as a process: a Reveni webhook is committed to the inbox, wakes a
    sync run in the receiver's process, and the return lands in Centra."""
    import subprocess
    import sys
    import time

    import httpx

    from returnbridge.simulators.server import free_port

    with integration(builtin_scenario("showcase"), tmp_path) as it:
        it.walk()
        port = free_port("127.0.0.1")
        exe = Path(sys.executable).with_name("returnbridge")
        proc = subprocess.Popen(
            [str(exe), "receiver", "--port", str(port), "--delay", "0.1"],
            env={**os.environ, **it.env()},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url + "/healthz", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    assert proc.poll() is None and time.monotonic() < deadline, "no receiver"
                    time.sleep(0.1)
            event = {
                "id": "evt_cli_1",
                "event": "return.updated",
                "created": 1,
                "data": {"resource_id": "ret_std_1001", "status": "accepted"},
            }
            answer = httpx.post(url + "/webhooks/reveni", json=event, timeout=5)
            assert answer.status_code == 200 and answer.json()["status"] == "accepted"
            while not any(r["external_id"] == "ret_std_1001" for r in it.effects()["returns"]):
                assert time.monotonic() < deadline, "the webhook never became a Centra effect"
                time.sleep(0.1)
            while it.ledger.inbox_pending():
                assert time.monotonic() < deadline, "the inbox was never settled"
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
