"""The parts of `returnbridge serve` and `returnbridge prefect setup` that need no running server:
prefect.yaml as the runner reads it, the pull step, run names and trigger tags, the settings
block, the settings file, and the commands' refusals."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest
import yaml
from serve_support import clean_environment, free_port
from typer.testing import CliRunner

from flows.pull_steps import ProjectHomeError, enter_project_home, project_home
from flows.serve import (
    FIRST_RUN_AFTER,
    DeploymentFileError,
    declared_deployments,
    runner_deployments,
)
from returnbridge.cli import app
from returnbridge.cli_serve import (
    deployment_names,
    read_env_file,
    run_environment,
    ui_url_of,
    validate_settings,
)
from tasks.observe import RunLogHandler, attach_library_logs, trigger_of
from tasks.run_settings import SettingsBlockError, apply_block_values

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- prefect.yaml


def test_the_runner_serves_what_prefect_yaml_declares() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    declared = {d.name: d for d in declared_deployments()}
    assert set(declared) == {d["name"] for d in config["deployments"]}
    assert set(declared) == {
        "sync-returns",
        "daily-reconciliation",
        "month-end-report",
        "watchdog",
    }
    sync = declared["sync-returns"]
    assert [s.interval.total_seconds() for s in sync.schedules if s.interval] == [60.0]
    assert sync.concurrency is not None and sync.concurrency.limit == 1
    assert sync.concurrency.collision_strategy.value == "CANCEL_NEW"
    daily = declared["daily-reconciliation"]
    assert [(s.cron, s.timezone) for s in daily.schedules] == [("15 2 * * *", "Europe/Stockholm")]
    deployments = {d.name: d for d in runner_deployments()}
    assert deployments["sync-returns"].flow_name == "sync-returns"
    assert deployments["month-end-report"].parameters == {"send": True, "resend": False}
    assert deployment_names(ROOT / "prefect.yaml") == [f"{n}/{n}" for n in declared]


def test_every_deployment_documents_its_parameters() -> None:
    """The UI's Custom run form shows each parameter's description from the flow's docstring."""
    for deployment in runner_deployments():
        properties = deployment._parameter_openapi_schema.properties
        for name, schema in properties.items():
            assert schema.get("description"), f"{deployment.name}: {name} has no description"


def test_an_interval_schedule_first_runs_soon_after_serve_starts() -> None:
    from datetime import UTC, datetime

    before = datetime.now(UTC)
    (schedule,) = {d.name: d for d in declared_deployments()}["sync-returns"].schedules
    assert schedule.interval is not None
    first = schedule.anchor_date + schedule.interval  # the first occurrence after "now"
    assert before < first <= datetime.now(UTC) + FIRST_RUN_AFTER


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x"}, "needs a name and an entrypoint"),
        (
            {"name": "x", "entrypoint": "flows/sync_returns.py:sync_returns", "schedules": [{}]},
            "needs exactly one of interval, cron, rrule",
        ),
        (
            {
                "name": "x",
                "entrypoint": "flows/sync_returns.py:sync_returns",
                "concurrency_limit": {"limit": 1, "collision_strategy": "DROP"},
            },
            "collision_strategy 'DROP' is not ENQUEUE or CANCEL_NEW",
        ),
        ({"name": "x", "entrypoint": "flows/serve.py:main"}, "is not a Prefect flow"),
    ],
)
def test_a_bad_deployment_entry_is_named(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump({"deployments": [entry]}))
    with pytest.raises(DeploymentFileError, match=message):
        [d.load_flow() for d in declared_deployments(path)]


# --------------------------------------------------------------------------- pull step


def test_the_pull_step_enters_the_clone_or_returnbridge_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RETURNBRIDGE_HOME", raising=False)
    assert project_home() == ROOT
    monkeypatch.chdir(tmp_path)
    assert enter_project_home() == {"directory": str(ROOT)} and Path.cwd() == ROOT
    with pytest.raises(ProjectHomeError, match=r"RETURNBRIDGE_HOME=.* is not a returnbridge"):
        project_home({"RETURNBRIDGE_HOME": str(tmp_path)})


def test_prefect_yaml_pulls_with_that_step_and_sends_heartbeats() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert config["pull"] == [{"flows.pull_steps.enter_project_home": {}}]
    for deployment in config["deployments"]:
        pool = deployment["work_pool"]
        assert pool["name"] == "returnbridge"
        env = pool["job_variables"]["env"]
        assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) <= 30
    queues = {d["name"]: d["work_pool"]["work_queue_name"] for d in config["deployments"]}
    assert queues["daily-reconciliation"] == queues["month-end-report"] == "warehouse"
    assert queues["sync-returns"] == queues["watchdog"] == "default"


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("tags", "trigger"),
    [
        (["trigger:webhook"], "webhook"),
        (["auto-scheduled"], "schedule"),
        (["trigger:schedule", "x"], "schedule"),
        ([], "manual"),
        (["some-tag"], "manual"),
    ],
)
def test_the_trigger_is_read_from_the_tags(tags: list[str], trigger: str) -> None:
    assert trigger_of(tags) == trigger


# --------------------------------------------------------------------------- settings


def test_the_settings_block_fills_only_what_the_environment_lacks() -> None:
    environ = {"RETURNBRIDGE_CENTRA__TOKEN": "from-worker"}
    applied = apply_block_values(
        {"RETURNBRIDGE_CENTRA__TOKEN": "from-block", "RETURNBRIDGE_CENTRA__PLAN": "growth"},
        environ,
    )
    assert applied == ["RETURNBRIDGE_CENTRA__PLAN"]
    assert environ == {
        "RETURNBRIDGE_CENTRA__TOKEN": "from-worker",
        "RETURNBRIDGE_CENTRA__PLAN": "growth",
    }
    with pytest.raises(SettingsBlockError, match="'PATH', not a RETURNBRIDGE_"):
        apply_block_values({"PATH": "/tmp"}, {})
    with pytest.raises(SettingsBlockError, match="JSON object"):
        apply_block_values("RETURNBRIDGE_X=1", {})


def test_the_settings_file_is_read_strictly(tmp_path: Path) -> None:
    good = tmp_path / "good.env"
    good.write_text(
        "# returnbridge\n\nexport RETURNBRIDGE_CENTRA__PLAN=growth\n"
        "RETURNBRIDGE_CENTRA__TOKEN='a=b'\n"
    )
    assert read_env_file(good) == {
        "RETURNBRIDGE_CENTRA__PLAN": "growth",
        "RETURNBRIDGE_CENTRA__TOKEN": "a=b",
    }
    bad = tmp_path / "bad.env"
    bad.write_text("RETURNBRIDGE_CENTRA__PLAN=growth\nSECRET=1\n")
    with pytest.raises(ValueError, match="line 2: SECRET is not a returnbridge setting"):
        read_env_file(bad)
    bad.write_text("RETURNBRIDGE_CENTRA__PLAN\n")
    with pytest.raises(ValueError, match="line 1: expected KEY=VALUE"):
        read_env_file(bad)
    with pytest.raises(ValueError, match="these settings are not valid"):
        validate_settings({"RETURNBRIDGE_CENTRA__PLAN": "no-such-plan"})
    assert "RETURNBRIDGE_CENTRA__PLAN" not in os.environ  # validation leaves no trace


def test_serves_children_pick_runs_up_quickly_and_keep_explicit_settings() -> None:
    env = run_environment("http://x:1/api", {"PREFECT_RUNNER_POLL_FREQUENCY": "5"})
    assert env["PREFECT_API_URL"] == "http://x:1/api"
    assert env["PREFECT_RUNNER_POLL_FREQUENCY"] == "5"
    assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) <= 30
    assert run_environment("http://x:1/api", {})["PREFECT_RUNNER_POLL_FREQUENCY"] == "1"
    assert ui_url_of("http://127.0.0.1:4200/api") == "http://127.0.0.1:4200"


# --------------------------------------------------------------------------- refusals


def test_prefect_setup_needs_the_servers_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = CliRunner().invoke(app, ["prefect", "setup"])
    assert result.exit_code == 2
    assert "PREFECT_API_URL is not set" in result.output


def test_prefect_setup_refuses_a_bad_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # never reached
    bad = tmp_path / "returnbridge.env"
    bad.write_text("RETURNBRIDGE_SYNC__LEDGER_URL=sqlite:///x.db\nPASSWORD=x\n")
    result = CliRunner().invoke(app, ["prefect", "setup", "--env-file", str(bad)])
    assert result.exit_code == 2
    assert "line 2: PASSWORD is not a returnbridge setting" in result.output


def test_serve_refuses_a_port_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.chdir(ROOT)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--no-receiver", "--prefect-port", str(port)])
    assert result.exit_code == 2
    assert f"port {port} is in use" in result.output
    assert "PREFECT_API_URL" in result.output


def test_serve_refuses_to_start_outside_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "no prefect.yaml" in result.output


def test_library_lines_outside_a_run_are_not_warned_about(recwarn: pytest.WarningsRecorder) -> None:
    attach_library_logs()
    attach_library_logs()  # once per process, however often a flow starts
    library = logging.getLogger("returnbridge")
    assert sum(isinstance(h, RunLogHandler) for h in library.handlers) == 1
    logging.getLogger("returnbridge.cli_ops").info("a line outside any flow run")
    assert [str(w.message) for w in recwarn if "flow run" in str(w.message)] == []
    assert logging.getLogger("httpx").level == logging.WARNING


def test_ctrl_c_during_start_up_stops_what_was_started(tmp_path: Path) -> None:
    """The server is still starting when Ctrl-C comes: serve stops it and exits 0 at once."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    port = free_port()
    env = clean_environment({"PREFECT_HOME": str(tmp_path / "prefect")})
    command = Path(sys.executable).parent / "returnbridge"
    serve = psutil.Popen(
        [str(command), "serve", "--no-receiver", "--prefect-port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    family: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 60
    while not family and time.monotonic() < deadline:  # the server process is there
        family |= {p.pid: p for p in serve.children(recursive=True)}
        time.sleep(0.1)
    assert family, "serve started no Prefect server"
    serve.send_signal(signal.SIGINT)
    output, _ = serve.communicate(timeout=30)
    assert serve.returncode == 0, output.decode()
    assert b"Stopped." in output
    assert [p for p in family.values() if p.is_running()] == []
