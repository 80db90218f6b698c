"""The operating guide's multi-machine steps, run as written
(docs/operating-guide.md, "Several machines: work pool and workers").

The block the guide marks is read from the guide itself and each command run in order, with only
what a reader substitutes changed: the server's host and port, and the path of the settings file.
The "machines" are processes with environments of their own: no RETURNBRIDGE_* variable in any
of them, so every setting a run uses comes through the Prefect Secret block that
`returnbridge prefect setup` stores. A real Prefect server, a process work pool, two workers;
then a sync and a reconciliation started from the API run to COMPLETED against both simulators
and the Slack stand-in.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from serve_support import api_healthy, free_port, wait_until
from sync_support import Integration, integration

from returnbridge.scenarios import builtin_scenario
from returnbridge.simulators.slack import SlackStandIn

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operating-guide.md"
MARKER = "<!-- multi-machine steps:"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.timeout(900)


def guide_commands() -> list[str]:
    """The commands of the marked block, in order (comments and blank lines dropped)."""
    text = GUIDE.read_text(encoding="utf-8")
    assert MARKER in text, f"{GUIDE.name} lost its marked multi-machine block"
    block = text.split(MARKER, 1)[1]
    match = re.search(r"```sh\n(.*?)```", block, re.S)
    assert match, "the marked block is not a ```sh block"
    return [
        line.strip()
        for line in match.group(1).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


class Machines:
    """Background processes (the server, the workers), each a 'machine' with its own home."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.background: list[tuple[str, psutil.Popen, Path]] = []

    def env(self, machine: str, exported: dict[str, str]) -> dict[str, str]:
        home = self.tmp / machine
        home.mkdir(exist_ok=True)
        return {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "PREFECT_HOME": str(home / ".prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "LANG": "C.UTF-8",
            **exported,
        }

    def start(self, machine: str, argv: list[str], env: dict[str, str]) -> None:
        log = self.tmp / f"{machine}.log"
        with log.open("ab") as out:
            process = psutil.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append((machine, process, log))

    def logs(self) -> str:
        return "\n".join(
            f"--- {machine} ---\n" + log.read_text(errors="replace")[-4000:]
            for machine, _, log in self.background
        )

    def stop(self) -> None:
        family: list[psutil.Process] = []
        for _, process, _ in reversed(self.background):
            try:
                family += process.children(recursive=True)
                process.send_signal(signal.SIGTERM)
                process.wait(20)
            except (psutil.Error, psutil.TimeoutExpired):
                process.kill()
        for proc in family:
            if proc.is_running():
                proc.kill()


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Machines]:
    running = Machines(tmp_path)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def simulated(tmp_path: Path) -> Iterator[tuple[Integration, SlackStandIn]]:
    with (
        SlackStandIn() as slack,
        integration(builtin_scenario("showcase"), tmp_path, slack=slack.settings()) as it,
    ):
        yield it, slack


def test_the_guides_multi_machine_steps_work_as_written(
    machines: Machines, simulated: tuple[Integration, SlackStandIn], tmp_path: Path
) -> None:
    it, slack = simulated
    commands = guide_commands()
    port = free_port()
    settings_file = tmp_path / "returnbridge.env"
    settings_file.write_text("".join(f"{k}={v}\n" for k, v in it.env().items()))
    exported: dict[str, str] = {}
    workers = 0
    api_url = ""

    for command in commands:
        line = command.replace("prefect-host", "127.0.0.1").replace("4200", str(port))
        line = line.replace("returnbridge.env", str(settings_file))
        argv = shlex.split(line)
        if argv[0] == "export":
            key, _, value = argv[1].partition("=")
            exported[key] = value
            api_url = exported.get("PREFECT_API_URL", api_url)
            continue
        if argv[:3] == ["prefect", "server", "start"]:
            machines.start("server", argv, machines.env("server", {}))
            server_api = f"http://127.0.0.1:{port}/api"
            wait_until(
                "the Prefect server answering",
                lambda url=server_api: api_healthy(url),
                180,
                machines.logs,
            )
            continue
        if argv[:3] == ["prefect", "worker", "start"]:
            workers += 1
            machine = f"worker-{workers}"
            machines.start(machine, argv, machines.env(machine, exported))
            continue
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=machines.env("deployer", exported),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"`{line}` failed:\n{done.stdout}\n{done.stderr}"

    assert api_url and workers == 2
    assert not any(k.startswith("RETURNBRIDGE_") for k in machines.env("x", exported))

    def api(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{api_url}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    it.walk()
    runs = {}
    for name in ("sync-returns/sync-returns", "daily-reconciliation/daily-reconciliation"):
        deployment = api("GET", f"/deployments/name/{name}")
        # a deployment's schedule is not what this test is about: run each once, by hand
        api("POST", f"/deployments/{deployment['id']}/pause_deployment")
        runs[name] = api("POST", f"/deployments/{deployment['id']}/create_flow_run", {})["id"]
        final = wait_until(
            f"the {name} run finishing on a worker",
            lambda run_id=runs[name]: (
                (r := api("GET", f"/flow_runs/{run_id}"))["state_type"]
                in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
                and r
            ),
            300,
            machines.logs,
        )
        assert final["state_type"] == "COMPLETED", machines.logs()

    assert any(r["external_id"] == "ret_std_1001" for r in it.effects()["returns"])
    assert {m["channel"] for m in slack.messages()} >= {"#returns-finance", "#returns-ops"}


def test_the_guides_block_is_the_one_this_test_runs() -> None:
    commands = guide_commands()
    assert commands[0].startswith("prefect server start")
    assert any(c.startswith("export PREFECT_API_URL=") for c in commands)
    assert "returnbridge prefect setup --env-file returnbridge.env" in commands
    assert "prefect --no-prompt deploy --all" in commands
    assert sum(c.startswith("prefect worker start --pool returnbridge") for c in commands) == 2
    assert os.path.isfile(ROOT / "prefect.yaml")
