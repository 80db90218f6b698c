"""`returnbridge serve` for real: its own Prefect server, every deployment served by the runner,
the webhook receiver, against both simulators and the Slack stand-in over loopback; then
SIGTERM stops every process it started (docs/architecture.md#deployments-and-scale-out).

One long test (about a minute and a half on 2 cores): starting a Prefect server is the cost,
so every check shares it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from serve_support import clean_environment, free_port
from sync_support import Integration, integration

from returnbridge.scenarios import builtin_scenario
from returnbridge.simulators.slack import SlackStandIn

ROOT = Path(__file__).resolve().parents[2]
RETURNBRIDGE = Path(sys.executable).parent / "returnbridge"
PREFECT = str(Path(sys.executable).parent / "prefect")

pytestmark = pytest.mark.timeout(600)


@dataclass
class Served:
    process: psutil.Popen
    api_url: str
    receiver_url: str
    it: Integration
    slack: SlackStandIn
    home: Path
    lines: list[str] = field(default_factory=list)
    family: dict[int, psutil.Process] = field(default_factory=dict)

    def note_family(self) -> None:
        try:
            for proc in self.process.children(recursive=True):
                self.family.setdefault(proc.pid, proc)
        except psutil.Error:
            pass

    def wait_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.note_family()
            if any(text in line for line in self.lines):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"`returnbridge serve` never said {text!r}:\n" + "".join(self.lines[-40:]))

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def runs(self, deployment: str) -> list[dict[str, Any]]:
        flow, _, name = deployment.partition("/")
        found = self.api("GET", f"/deployments/name/{flow}/{name}")
        runs: list[dict[str, Any]] = self.api(
            "POST",
            "/flow_runs/filter",
            {"deployments": {"id": {"any_": [found["id"]]}}, "sort": "EXPECTED_START_TIME_ASC"},
        )
        return runs

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.note_family()
            found = check()
            if found:
                return found
            time.sleep(0.5)
        pytest.fail(f"{what} did not happen within {timeout:.0f} s:\n" + "".join(self.lines[-60:]))


def _pump(stream: Any, lines: list[str]) -> None:
    for raw in iter(stream.readline, b""):
        lines.append(raw.decode("utf-8", "replace"))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    prefect_port, receiver_port = free_port(), free_port()
    with (
        SlackStandIn() as slack,
        integration(builtin_scenario("showcase"), tmp_path, slack=slack.settings()) as it,
    ):
        # A clean environment: nothing of the test session's own Prefect server leaks in.
        env = clean_environment(it.env()) | {
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "RETURNBRIDGE_RECEIVER__HOST": "127.0.0.1",
            "RETURNBRIDGE_RECEIVER__PORT": str(receiver_port),
        }
        it.walk()  # Reveni's returns are there before the first scheduled run
        process = psutil.Popen(
            [str(RETURNBRIDGE), "serve", "--prefect-port", str(prefect_port)],
            cwd=ROOT,
            env=env,
            stdin=-3,  # DEVNULL
            stdout=-1,  # PIPE
            stderr=-2,  # STDOUT
            start_new_session=True,
        )
        state = Served(
            process=process,
            api_url=f"http://127.0.0.1:{prefect_port}/api",
            receiver_url=f"http://127.0.0.1:{receiver_port}",
            it=it,
            slack=slack,
            home=tmp_path / "prefect",
        )
        threading.Thread(target=_pump, args=(process.stdout, state.lines), daemon=True).start()
        try:
            yield state
        finally:
            state.note_family()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(40)
                except psutil.TimeoutExpired:
                    process.kill()
            for proc in state.family.values():
                if proc.is_running():
                    proc.kill()


def _completed(runs: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [r for r in runs if r["name"].startswith(prefix) and r["state_type"] == "COMPLETED"]


def test_serve_runs_the_deployments_and_stops_cleanly(served: Served) -> None:
    began = time.monotonic()

    def phase(name: str) -> None:  # shown with -s, and on failure
        print(f"{time.monotonic() - began:6.1f} s  {name}")

    served.wait_line("Serving every deployment", timeout=240)
    phase("serving")
    assert any(f"Prefect UI: {served.api_url.removesuffix('/api')}" in x for x in served.lines)
    deployments = {d["name"] for d in served.api("POST", "/deployments/filter", {})}
    assert {"sync-returns", "daily-reconciliation", "month-end-report"} <= deployments

    # The scheduled sync: it runs on its own, named and tagged for what started it.
    scheduled = served.wait_for(
        "a scheduled sync-returns run completing",
        lambda: _completed(served.runs("sync-returns/sync-returns"), "sync-returns-schedule-"),
        timeout=150,
    )
    assert "trigger:schedule" in scheduled[0]["tags"]
    phase("scheduled sync completed")
    served.wait_for(
        "the sync creating the showcase's returns in Centra",
        lambda: any(r["external_id"] == "ret_std_1001" for r in served.it.effects()["returns"]),
        timeout=120,
    )

    def library_logs() -> list[dict[str, Any]]:
        # the run's logs reach the server in batches: wait for returnbridge's own lines
        logs: list[dict[str, Any]] = served.api(
            "POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [scheduled[0]["id"]]}}}
        )
        return logs if any(log["name"].startswith("returnbridge.") for log in logs) else []

    logs = served.wait_for("returnbridge's log lines in the run's logs", library_logs, 60)
    assert not any(log["name"].startswith("httpx") for log in logs)
    phase("its logs read")

    # A webhook starts a sync run of its own (or is served by the run already due).
    reveni = served.it.settings.reveni
    with httpx.Client(
        base_url=f"{reveni.base_url}/merchants/v0/stores/{reveni.store_id}/",
        headers={"Authorization": f"Bearer {reveni.api_key.get_secret_value()}"},
    ) as api:
        api.post(
            "webhooks",
            json={
                "event_types": ["return.updated"],
                "url": f"{served.receiver_url}/webhooks/reveni",
            },
        ).raise_for_status()

    def webhook_run() -> list[dict[str, Any]]:
        runs = served.runs("sync-returns/sync-returns")
        if not any(r["name"].startswith("sync-returns-webhook-") for r in runs):
            served.it.reveni.post(
                "/_sim/webhooks/emit", json={"return_id": "ret_std_1001"}
            ).raise_for_status()
        return _completed(runs, "sync-returns-webhook-")

    by_webhook = served.wait_for("a webhook-started sync run completing", webhook_run, 150)
    assert "trigger:webhook" in by_webhook[0]["tags"]
    phase("webhook run completed")
    assert any("webhooks: started sync run sync-returns-webhook-" in x for x in served.lines)

    # A manual reconciliation, as an operator starts one, completes and posts the digests.
    started = subprocess.run(
        [PREFECT, "deployment", "run", "daily-reconciliation/daily-reconciliation"],
        env=clean_environment(
            {"PREFECT_API_URL": served.api_url, "PREFECT_HOME": str(served.home)}
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    found = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout)
    assert found, started.stdout
    run_id = found[1]
    done = served.wait_for(
        "the manual daily-reconciliation run finishing",
        lambda: (
            (r := served.api("GET", f"/flow_runs/{run_id}"))["state_type"]
            in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
            and r
        ),
        timeout=240,
    )
    assert done["state_type"] == "COMPLETED", "".join(served.lines[-80:])
    assert done["name"].startswith("reconcile-") and "trigger:manual" in done["tags"]
    phase("manual reconciliation completed")
    assert {m["channel"] for m in served.slack.messages()} >= {
        "#returns-finance",
        "#returns-ops",
        "#returns-cx",
    }

    # SIGTERM: everything it started is gone within 30 s.
    served.note_family()
    family = list(served.family.values())
    assert len(family) >= 3  # the server, the runner, the receiver (and their own processes)
    started = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    code = served.process.wait(35)
    phase("stopped")
    assert time.monotonic() - started < 30
    assert code == 0, "".join(served.lines[-40:])
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline() for p in alive]
