"""`returnbridge serve` and `returnbridge prefect setup`: returnbridge under Prefect, on one machine
or many (docs/architecture.md#deployments-and-scale-out).

`serve` is the one command for one machine. It is a small supervisor of three processes, each in
a session of its own so that a terminal's Ctrl-C reaches only the supervisor, which then stops
them in order:

1. a Prefect server (`prefect server start`, SQLite under the project's Prefect home), unless
   `PREFECT_API_URL` names one already;
2. the runner (`python -m flows.serve`): every deployment of `prefect.yaml`, served with its
   schedules and concurrency rules by Prefect's runner, so no work pool is needed;
3. the webhook receiver (`returnbridge receiver --trigger prefect`): a webhook starts a run of
   `sync-returns`, tagged `trigger:webhook`.

On SIGINT/SIGTERM the receiver and the runner stop first (the runner cancels a run in flight and
reports it to the server), then the server; whatever has not exited after its grace period is
killed, with every process it started, so nothing is left behind within 30 seconds.

`prefect setup` prepares a Prefect server for workers on other machines: the work pool and its
queues, the automation that marks crashed runs, and the settings every run reads (a Prefect
Secret block, so neither settings nor secrets live in a worker's shell).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from returnbridge.cli_ops import _fail, _fail_input

log = logging.getLogger(__name__)

SYNC_DEPLOYMENT = "sync-returns/sync-returns"
POOL = "returnbridge"
# The reconciliation and the month-end report use the warehouse, one DuckDB file on one disk:
# their deployments go to this queue, which exactly one worker (on that machine) serves.
WAREHOUSE_QUEUE = "warehouse"
DEFAULT_QUEUE = "default"
SETTINGS_BLOCK = "returnbridge-settings"
SETTINGS_BLOCK_VARIABLE = "RETURNBRIDGE_PREFECT_SETTINGS_BLOCK"
CRASH_AUTOMATION = "returnbridge: mark flow runs without heartbeats as crashed"
# A run process sends a heartbeat every HEARTBEAT seconds; one silent for CRASH_AFTER is marked
# crashed, which frees the deployment's concurrency slot so the schedule resumes.
HEARTBEAT_SECONDS = 30
CRASH_AFTER = timedelta(seconds=75)
# The receiver's debounce under serve (its own default, 1 s, is for the inline trigger).
WEBHOOK_DEBOUNCE_SECONDS = 0.2
# Grace periods on stop, in order; together under 30 s.
RECEIVER_GRACE = 8.0
RUNNER_GRACE = 12.0
SERVER_GRACE = 8.0

# Settings the processes `serve` starts get unless the environment already sets them: runs are
# picked up within a second of being created (Prefect's default is 10 s) and send heartbeats.
# (The library's log lines reach each run's logs through tasks/observe.py, in the run itself.)
RUN_DEFAULTS: Mapping[str, str] = {
    "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}


class ServeError(RuntimeError):
    """`serve` cannot start: the message says what and what to do."""


# --------------------------------------------------------------------------- processes


@dataclass
class Child:
    """One process `serve` started, in a session of its own."""

    name: str
    process: Any  # psutil.Popen
    log_file: IO[bytes] | None = None
    grace: float = 10.0
    family: list[Any] = field(default_factory=list)  # psutil.Process seen under it

    @classmethod
    def start(
        cls,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        *,
        log_path: Path | None = None,
        grace: float = 10.0,
    ) -> Child:
        import psutil

        log_file = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = log_path.open("ab")
        process = psutil.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
        return cls(name=name, process=process, log_file=log_file, grace=grace)

    @property
    def running(self) -> bool:
        return bool(self.process.poll() is None)

    def remember_family(self) -> None:
        """Note every process under this one now: after it exits they are reparented, and the
        stop must still reach them (Prefect starts each flow run in a session of its own)."""
        import psutil

        with contextlib.suppress(psutil.Error):
            known = {p.pid for p in self.family}
            for proc in self.process.children(recursive=True):
                if proc.pid not in known:
                    self.family.append(proc)

    def terminate(self) -> None:
        import psutil

        self.remember_family()
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)

    def wait_or_kill(self, deadline: float) -> bool:
        """Wait until `deadline` (monotonic) for the process to exit, then kill it and every
        process ever seen under it. True when it exited by itself."""
        import psutil

        exited = True
        while self.running and time.monotonic() < deadline:
            self.remember_family()
            time.sleep(0.1)
        if self.running:
            exited = False
            self.remember_family()
            with contextlib.suppress(psutil.Error):
                self.process.kill()
        with contextlib.suppress(psutil.Error):
            self.process.wait(timeout=5)
        leftovers = [p for p in self.family if _alive(p)]
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=5)
        if self.log_file is not None:
            self.log_file.close()
        return exited


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def stop_children(children: list[Child], say: Callable[[str], None]) -> None:
    """Stop the receiver and the runner together, then the server (the runner reports its
    cancelled runs to it); kill what outlives its grace period."""
    by_name = {c.name: c for c in children}
    first = [by_name[n] for n in ("receiver", "runner") if n in by_name]
    for child in first:
        if child.running:
            child.terminate()
    for child in first:
        if not child.wait_or_kill(time.monotonic() + child.grace):
            say(f"{child.name} did not stop within {child.grace:.0f} s: killed")
    server = by_name.get("prefect-server")
    if server is not None:
        if server.running:
            server.terminate()
        if not server.wait_or_kill(time.monotonic() + server.grace):
            say(f"prefect-server did not stop within {server.grace:.0f} s: killed")


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port (a bind test, as the server will do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_api(
    api_url: str,
    child: Child | None,
    timeout: float,
    log_path: Path | None,
    stop: threading.Event | None = None,
) -> None:
    """Until `api_url/health` answers; ServeError if the server exits, `timeout` passes or
    `stop` is set (Ctrl-C during start-up)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop is not None and stop.is_set():
            raise ServeError("stopped during start-up")
        if child is not None and not child.running:
            raise ServeError(
                f"the Prefect server exited during start-up (code {child.process.returncode})"
                + _tail_hint(log_path)
            )
        try:
            if httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServeError(
        f"the Prefect API at {api_url} did not answer within {timeout:.0f} s" + _tail_hint(log_path)
    )


def deployment_names(prefect_yaml: Path) -> list[str]:
    """`flow/deployment` of every deployment the file declares (flow and deployment share their
    name in returnbridge's prefect.yaml)."""
    import yaml

    config = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8")) or {}
    return [f"{d['name']}/{d['name']}" for d in config.get("deployments") or []]


def wait_for_deployments(
    api_url: str,
    names: list[str],
    runner: Child,
    timeout: float,
    stop: threading.Event | None = None,
) -> None:
    """Until the runner has registered every deployment; ServeError if it exits first (or
    `stop` is set)."""
    import httpx

    deadline = time.monotonic() + timeout
    missing = list(names)
    while time.monotonic() < deadline:
        if stop is not None and stop.is_set():
            raise ServeError("stopped during start-up")
        if not runner.running:
            raise ServeError(
                f"the runner exited during start-up (code {runner.process.returncode}); "
                "its error is printed above"
            )
        missing = [
            n
            for n in missing
            if httpx.get(f"{api_url}/deployments/name/{n}", timeout=5).status_code != 200
        ]
        if not missing:
            return
        time.sleep(0.5)
    raise ServeError(f"the runner did not register {', '.join(missing)} within {timeout:.0f} s")


def _tail_hint(log_path: Path | None) -> str:
    if log_path is None or not log_path.exists():
        return ""
    lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-8:]
    return f"; its log ({log_path}) ends:\n  " + "\n  ".join(lines)


def ui_url_of(api_url: str) -> str:
    """The UI's address for an API address (`.../api` -> `...`)."""
    return api_url.rstrip("/").removesuffix("/api")


def run_environment(api_url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the runner and the receiver: this one, the API, and `RUN_DEFAULTS`."""
    env = dict(os.environ if base is None else base)
    env["PREFECT_API_URL"] = api_url
    for key, value in RUN_DEFAULTS.items():
        env.setdefault(key, value)
    return env


# --------------------------------------------------------------------------- Prefect setup


def crash_automation() -> Any:
    """The automation that marks a running flow run crashed once it has been silent (no
    heartbeat, no other state) for `CRASH_AFTER` after it started running (or retrying) or last
    sent a heartbeat: Prefect's documented zombie-run recipe, plus `Running` as a start so that
    a run killed before its first heartbeat reached the server is caught too. A run that leaves
    Running alive (waiting to retry, paused) is not silent."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    seconds = int(CRASH_AFTER.total_seconds())
    return Automation(
        name=CRASH_AUTOMATION,
        description=(
            f"returnbridge: a flow run silent for {seconds} s (its process was killed) is marked "
            "crashed, so its deployment's next scheduled run is not cancelled behind it."
        ),
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            # a retry runs as "Retrying" (a Running state of another name)
            after={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Running",
                "prefect.flow-run.Retrying",
            },
            # a run waiting to retry, paused or being cancelled sends no heartbeats and is not
            # dead: any state it moves to ends the silence
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Cancelling",
                "prefect.flow-run.Crashed",
                "prefect.flow-run.AwaitingRetry",
                "prefect.flow-run.Scheduled",
                "prefect.flow-run.Paused",
                "prefect.flow-run.Suspended",
            },
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=CRASH_AFTER,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"Marked crashed by returnbridge's automation: silent for {seconds} s "
                    "(the process running it died)."
                ),
            )
        ],
    )


async def ensure_crash_detection() -> str:
    """Create the crash automation, or bring it up to date; returns its id.

    A worker or runner killed hard leaves its run Running for ever otherwise, and the
    deployment's concurrency limit then cancels every scheduled run after it. An automation
    that is already as wanted is left alone: updating one resets what the server has counted
    for it, and would forget a run that went silent just before `serve` restarted."""
    from prefect.automations import Automation

    wanted = crash_automation()
    existing = None
    with contextlib.suppress(ValueError):
        existing = await Automation.aread(name=CRASH_AUTOMATION)
    if existing is None:
        created = await wanted.acreate()
        return str(created.id)
    same = (
        existing.enabled
        and existing.trigger.model_dump() == wanted.trigger.model_dump()
        and [a.model_dump() for a in existing.actions] == [a.model_dump() for a in wanted.actions]
        and existing.description == wanted.description
    )
    if not same:
        wanted.id = existing.id
        await wanted.aupdate()
    return str(existing.id)


async def ensure_pool(pool: str) -> list[str]:
    """The process work pool `pool` and its two queues (created when missing); returns what was
    created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    created = []
    async with get_client() as client:
        try:
            await client.read_work_pool(pool)
        except ObjectNotFound:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            created.append(f"work pool {pool} (process)")
        for queue in (DEFAULT_QUEUE, WAREHOUSE_QUEUE):
            try:
                await client.create_work_queue(name=queue, work_pool_name=pool)
                created.append(f"work queue {pool}/{queue}")
            except ObjectAlreadyExists:
                pass
    return created


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines (comments, blank lines and `export ` allowed; quotes stripped). Only
    RETURNBRIDGE_* keys are accepted: the message names the line otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{path} line {number}: expected KEY=VALUE")
        if not key.startswith("RETURNBRIDGE_"):
            raise ValueError(
                f"{path} line {number}: {key} is not a returnbridge setting (RETURNBRIDGE_*)"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


@contextlib.contextmanager
def environment_overlay(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in os.environ for the block's duration (to validate settings with them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def validate_settings(values: Mapping[str, str]) -> None:
    """Raise ValueError naming the setting when `values` do not make valid settings."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from returnbridge.settings import describe_settings_error, load_settings

    with environment_overlay(values):
        try:
            load_settings()
        except (ValidationError, SettingsError) as exc:
            said = describe_settings_error(exc, values).replace("\n", "; ")
            raise ValueError(f"these settings are not valid: {said}") from None


async def save_settings_block(values: Mapping[str, str], name: str = SETTINGS_BLOCK) -> None:
    """Store `values` (RETURNBRIDGE_* -> text) as the Prefect Secret block `name`, encrypted by
    the server; every flow run reads it at its start (`tasks/run_settings.py`)."""
    from prefect.blocks.system import Secret

    await Secret(value=dict(values)).save(name, overwrite=True)


# --------------------------------------------------------------------------- webhook trigger


class WebhookRunStarter:
    """What the receiver's debounced trigger calls under Prefect: start a `sync-returns` run
    named `sync-returns-webhook-<time>` and tagged `trigger:webhook`.

    The deployment runs one sync at a time and cancels a new run that meets a running one, so a
    run is not started while one is running or about to start: the stored webhook is then
    served by that run or, if the running one had already read the inbox, by one started as
    soon as it ends. Each case is logged, so the receiver's log says which run serves a webhook.
    """

    def __init__(
        self,
        deployment: str = SYNC_DEPLOYMENT,
        *,
        poll_seconds: float = 1.0,
        wait_limit: timedelta = timedelta(minutes=20),
        due_window: timedelta = timedelta(seconds=3),
    ) -> None:
        self.deployment = deployment
        self.poll_seconds = poll_seconds
        self.wait_limit = wait_limit
        self.due_window = due_window
        self.started: list[str] = []
        # Import Prefect's client now, not on the first webhook (about 0.8 s of imports).
        import prefect.client.orchestration  # noqa: F401

    def __call__(self) -> None:
        asyncio.run(self.start())

    async def start(self) -> str | None:
        """Start (or find) the run that serves the webhooks stored so far; its name."""
        from prefect.client.orchestration import get_client

        requested = datetime.now(UTC)
        deadline = time.monotonic() + self.wait_limit.total_seconds()
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(self.deployment)
            announced = False
            while True:
                active = await self._active_runs(client, deployment.id)
                running = [r for r in active if r.state_type.value in ("RUNNING", "PENDING")]
                if not running:
                    break
                if not announced:
                    log.info(
                        "webhooks: sync run %s is running; a new run starts when it ends",
                        running[0].name,
                    )
                    announced = True
                if time.monotonic() > deadline:
                    log.warning(
                        "webhooks: sync run %s still running after %s; the schedule serves them",
                        running[0].name,
                        self.wait_limit,
                    )
                    return None
                await asyncio.sleep(self.poll_seconds)
            due = [
                r
                for r in active
                if r.state_type.value == "SCHEDULED"
                and r.expected_start_time is not None
                and r.expected_start_time <= datetime.now(UTC) + self.due_window
            ]
            if due and not announced:
                log.info("webhooks: served by the scheduled sync run %s", due[0].name)
                return str(due[0].name)
            name = f"sync-returns-webhook-{requested:%Y%m%dT%H%M%SZ}"
            run = await client.create_flow_run_from_deployment(
                deployment.id, name=name, tags=["trigger:webhook"]
            )
            log.info("webhooks: started sync run %s (%s)", run.name, run.id)
            self.started.append(str(run.name))
            return str(run.name)

    @staticmethod
    async def _active_runs(client: Any, deployment_id: Any) -> list[Any]:
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED]
                    )
                )
            ),
            limit=20,
        )
        return list(runs)


# --------------------------------------------------------------------------- commands


def serve(
    prefect_port: Annotated[
        int,
        typer.Option(
            help="Port of the Prefect server started here (when PREFECT_API_URL is not set)."
        ),
    ] = 4200,
    host: Annotated[
        str | None, typer.Option(help="The receiver's interface (default from settings).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="The receiver's port (default from settings).")
    ] = None,
    receiver: Annotated[
        bool, typer.Option("--receiver/--no-receiver", help="Run the webhook receiver.")
    ] = True,
    startup_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the Prefect server to answer.")
    ] = 120.0,
) -> None:
    """Run returnbridge for real on one machine: a Prefect server (unless PREFECT_API_URL names
    one), every deployment of prefect.yaml served with its schedules, and the webhook receiver.
    Ctrl-C (or SIGTERM) stops everything within 30 seconds."""
    from returnbridge.cli_ops import _settings

    settings = _settings()  # refuse bad settings before starting anything
    root = Path.cwd()
    if not (root / "prefect.yaml").is_file():
        _fail_input(
            f"no prefect.yaml in {root}: run `returnbridge serve` from the project's directory"
        )
    if not 0 < prefect_port < 65536:
        _fail_input(f"--prefect-port: {prefect_port} is not a TCP port")
    prefect_home = Path(os.environ.get("PREFECT_HOME", root / ".prefect"))
    base_env = dict(os.environ)
    base_env.setdefault("PREFECT_HOME", str(prefect_home))
    receiver_settings = settings.receiver.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    if receiver and not port_free(receiver_settings.host, receiver_settings.port):
        _fail_input(
            f"the receiver's port {receiver_settings.host}:{receiver_settings.port} is in use "
            "(another returnbridge?); choose one with --port or stop the other"
        )

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    children: list[Child] = []
    say = typer.echo
    code = 0
    try:
        api_url = os.environ.get("PREFECT_API_URL", "").strip()
        if api_url:
            say(f"Using the Prefect server at {api_url} (PREFECT_API_URL).")
            wait_for_api(api_url, None, startup_timeout, None, stop)
        else:
            if not port_free("127.0.0.1", prefect_port):
                _fail_input(
                    f"port {prefect_port} is in use: if a Prefect server runs there, set "
                    f"PREFECT_API_URL=http://127.0.0.1:{prefect_port}/api to use it; else choose "
                    "another port with --prefect-port"
                )
            api_url = f"http://127.0.0.1:{prefect_port}/api"
            server_log = prefect_home / "server.log"
            say(f"Starting a Prefect server on port {prefect_port} (data in {prefect_home}) ...")
            server_env = run_environment(api_url, base_env)
            server_env.pop("PREFECT_API_URL")  # the server itself is not a client of itself
            children.append(
                Child.start(
                    "prefect-server",
                    [
                        sys.executable,
                        "-m",
                        "prefect",
                        "server",
                        "start",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(prefect_port),
                    ],
                    server_env,
                    log_path=server_log,
                    grace=SERVER_GRACE,
                )
            )
            wait_for_api(api_url, children[0], startup_timeout, server_log, stop)
        env = run_environment(api_url, base_env)
        os.environ["PREFECT_API_URL"] = api_url
        asyncio.run(ensure_crash_detection())
        children.append(
            Child.start("runner", [sys.executable, "-m", "flows.serve"], env, grace=RUNNER_GRACE)
        )
        if receiver:
            # A short debounce: under Prefect a burst is coalesced by the trigger itself (no
            # run starts while one is pending or running), so the receiver's default second
            # would only delay each webhook's run (bench/serve_latency.py: p95 4.45 -> 3.66 s).
            argv = [sys.executable, "-m", "returnbridge", "receiver", "--trigger", "prefect"]
            argv += ["--delay", str(WEBHOOK_DEBOUNCE_SECONDS)]
            argv += ["--host", receiver_settings.host, "--port", str(receiver_settings.port)]
            children.append(Child.start("receiver", argv, env, grace=RECEIVER_GRACE))
        runner = next(c for c in children if c.name == "runner")
        wait_for_deployments(
            api_url, deployment_names(root / "prefect.yaml"), runner, startup_timeout, stop
        )
        say(f"Prefect UI: {ui_url_of(api_url)}")
        if receiver:
            base = f"http://{receiver_settings.host}:{receiver_settings.port}"
            say(f"Webhooks: {base}/webhooks/reveni and {base}/webhooks/centra")
        say("Serving every deployment of prefect.yaml. Ctrl-C stops everything.")
        while not stop.wait(0.5):
            for child in children:
                child.remember_family()
                if not child.running:
                    say(
                        f"returnbridge: {child.name} exited (code {child.process.returncode}); "
                        "stopping the rest",
                    )
                    code = 1
                    stop.set()
                    break
    except ServeError as exc:
        if not stop.is_set():  # Ctrl-C during start-up is a stop, not a failure
            typer.echo(f"returnbridge: {exc}", err=True)
            code = 1
    finally:
        if children:
            say("Stopping ...")
            stop_children(children, say)
            say("Stopped.")
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if code:
        raise typer.Exit(code)


prefect_app = typer.Typer(
    help="Prepare a Prefect server for workers on other machines.", no_args_is_help=True
)


@prefect_app.command("setup")
def prefect_setup(
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            help="RETURNBRIDGE_* settings (KEY=VALUE lines, secrets included) to store in the "
            f"Prefect Secret block {SETTINGS_BLOCK!r} that every run reads.",
        ),
    ] = None,
    pool: Annotated[str, typer.Option(help="The work pool's name.")] = POOL,
) -> None:
    """Create the process work pool and its queues, the automation that marks crashed runs,
    and (with --env-file) the settings block. Safe to run again. Needs PREFECT_API_URL."""
    if not os.environ.get("PREFECT_API_URL"):
        _fail_input(
            "PREFECT_API_URL is not set: point it at the Prefect server the workers use "
            "(e.g. http://prefect-host:4200/api)"
        )
    values: dict[str, str] | None = None
    if env_file is not None:
        try:
            values = read_env_file(env_file)
            validate_settings(values)
        except ValueError as exc:
            _fail_input(f"--env-file: {exc}")

    async def setup() -> list[str]:
        done = await ensure_pool(pool)
        await ensure_crash_detection()
        done.append(f"automation {CRASH_AUTOMATION!r}")
        if values is not None:
            await save_settings_block(values)
            done.append(f"Secret block {SETTINGS_BLOCK!r} with {len(values)} settings")
        return done

    try:
        done = asyncio.run(setup())
    except Exception as exc:
        _fail(f"prefect setup failed: {type(exc).__name__}: {exc}")
    for line in done:
        typer.echo(f"ready: {line}")


def register(app: typer.Typer) -> None:
    """Add `serve` and `prefect ...` to the `returnbridge` command."""
    app.command("serve")(serve)
    app.add_typer(prefect_app, name="prefect")
