"""A run whose process died is marked crashed, so its deployment's schedule resumes
(docs/operating-guide.md#when-something-crashes).

The automation's definition is checked against the session's Prefect test server on every
`make test`; the whole story (a real server, `returnbridge serve` killed with SIGKILL mid-run, the
run marked crashed by the automation, the schedule running again) takes about three minutes of
heartbeats and is marked slow (`pytest -m slow tests/flows/test_crash_detection.py`).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from serve_support import api_healthy, clean_environment, free_port, wait_until
from sync_support import integration

from returnbridge.cli_serve import CRASH_AFTER, CRASH_AUTOMATION, ensure_crash_detection
from returnbridge.scenarios import builtin_scenario

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


async def test_the_crash_automation_is_created_once_and_kept_current(prefect_server: None) -> None:
    from prefect.automations import Automation

    first = await ensure_crash_detection()
    created = await Automation.aread(name=CRASH_AUTOMATION)
    again = await ensure_crash_detection()  # as wanted: left alone (an update resets its state)
    assert first == again
    automation = await Automation.aread(name=CRASH_AUTOMATION)
    assert automation.model_dump() == created.model_dump()
    trigger = automation.trigger
    assert trigger.posture.value == "Proactive"
    assert trigger.after == {
        "prefect.flow-run.heartbeat",
        "prefect.flow-run.Running",
        "prefect.flow-run.Retrying",  # a retry runs under this name
    }
    assert "prefect.flow-run.heartbeat" in trigger.expect
    # a run waiting to retry or paused sends no heartbeats, yet is alive: not marked crashed
    assert {"prefect.flow-run.AwaitingRetry", "prefect.flow-run.Paused"} <= trigger.expect
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.within == CRASH_AFTER
    (action,) = automation.actions
    assert action.type == "change-flow-run-state" and action.state.value == "CRASHED"
    automation.enabled = False  # switched off by hand, or an older definition: brought back
    await automation.aupdate()
    assert await ensure_crash_detection() == first
    assert (await Automation.aread(name=CRASH_AUTOMATION)).enabled


@pytest.fixture
def prefect_api(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = clean_environment({"PREFECT_HOME": str(tmp_path / "server-home")})
    with (tmp_path / "server.log").open("ab") as log:
        server = psutil.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_until("the Prefect server", lambda: api_healthy(api), 180, lambda: "")
        yield api
    finally:
        family = server.children(recursive=True)
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        for proc in family:
            if proc.is_running():
                proc.kill()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_run_left_behind_by_a_killed_serve_is_crashed_and_the_schedule_resumes(
    prefect_api: str, tmp_path: Path
) -> None:
    # the growth plan's budget makes the showcase sync last long enough to be killed mid-run
    with integration(builtin_scenario("showcase"), tmp_path, plan_limits=True) as it:
        it.walk()
        env = clean_environment(it.env()) | {
            "PREFECT_API_URL": prefect_api,
            "PREFECT_HOME": str(tmp_path / "serve-home"),
        }
        log_path = tmp_path / "serve.log"

        def start_serve() -> psutil.Popen:
            with log_path.open("ab") as log:
                return psutil.Popen(
                    [str(BIN / "returnbridge"), "serve", "--no-receiver"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

        def logs() -> str:
            return log_path.read_text(errors="replace")[-6000:]

        def runs() -> list[dict[str, Any]]:
            deployment = httpx.get(f"{prefect_api}/deployments/name/sync-returns/sync-returns")
            if deployment.status_code != 200:
                return []
            found: list[dict[str, Any]] = httpx.post(
                f"{prefect_api}/flow_runs/filter",
                json={"deployments": {"id": {"any_": [deployment.json()["id"]]}}},
            ).json()
            return found

        serve = start_serve()
        running = wait_until(
            "a sync run running",
            lambda: [r for r in runs() if r["state_type"] == "RUNNING"],
            180,
            logs,
        )[0]
        time.sleep(5)  # past its first heartbeat
        family = [serve, *serve.children(recursive=True)]
        for proc in family:  # the machine dies: nothing gets to report anything
            proc.kill()
        psutil.wait_procs(family, timeout=10)
        killed_at = time.monotonic()

        serve = start_serve()
        try:
            wait_until(
                "the orphaned run marked crashed",
                lambda: (
                    next(r for r in runs() if r["id"] == running["id"])["state_type"] == "CRASHED"
                ),
                180,
                logs,
            )
            wait_until(
                "a later scheduled sync run completing",
                lambda: [
                    r
                    for r in runs()
                    if r["state_type"] == "COMPLETED" and r["name"] != running["name"]
                ],
                180,
                logs,
            )
            assert time.monotonic() - killed_at < 240, "the schedule took too long to resume"
        finally:
            family = [serve, *serve.children(recursive=True)]
            serve.send_signal(signal.SIGTERM)
            with contextlib.suppress(psutil.TimeoutExpired):
                serve.wait(40)
            for proc in family:
                if proc.is_running():
                    proc.kill()
