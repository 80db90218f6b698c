"""Benchmark: `returnbridge serve` end to end, webhook to Centra effect, and a sync run vs the CLI.

    .venv/bin/python -m bench.serve_latency [--runs 3] [--returns 20] [--seed 1]
                                            [--no-schedule-pass] [--what-if-delay SECONDS]
                                            [--append-docs]

`returnbridge serve` runs as a real subprocess, as an operator starts it: its own Prefect server
on a free loopback port with PREFECT_HOME in a temporary directory, the runner (`python -m
flows.serve`, every deployment of prefect.yaml) and the receiver (`returnbridge receiver
--trigger prefect`, whose debounced trigger is `WebhookRunStarter`). Its environment has no
PREFECT_* or RETURNBRIDGE_* variable of this shell; the RETURNBRIDGE_* settings point it at the
simulators, served in this process on loopback ports (`bench.sync_support.simulators`), and at a
fresh SQLite ledger.

1. **Webhook to effect under serve**, limits off (Centra plan `unlimited`). `--returns`
   generated returns (`returnbridge.scenarios.generate`, `--seed`); those Reveni accepts are
   walked to just before their acceptance, the others to the end (as `bench.sync_latency`).
   Once serve is up, the `sync-returns` deployment's schedule is paused through the API
   (`POST /api/deployments/{id}/pause_deployment`) so no scheduled run mixes in, and one manual
   run of the deployment takes the backlog. Then the receiver subscribes to Reveni's webhooks
   and the returns are accepted one at a time: after each, the bench waits until its
   `createReturn` is done in the ledger and no run of the deployment is pending or running,
   then 1 s, so each return is measured alone. The path: Reveni simulator -> receiver (ledger
   inbox) -> debounced trigger (`returnbridge receiver`'s default `--delay`, 1.0 s: serve does
   not pass one) -> `WebhookRunStarter` creates a `sync-returns` run -> the runner polls for it
   and starts the flow-run process -> the sync's `createReturn`.
   Latency as in `bench.sync_latency`, from the ledger (real UTC in every process of serve):
   from the `received_at` of the first inbox event about the return to the `updated_at` of its
   `createReturn` action when it became `done` (*first effect*); *all effects*: its last
   action. Broken down with the Prefect API's times of the run that made the effect:
   webhook received -> run `created` -> `Pending` (the runner took it) -> `start_time`
   (`Running`; split at the run process's first log line, `Downloading flow code from
   storage`, read back from the API) -> effect done. p50 / p95 / max per run, medians over
   `--runs`. Target (the serve issue): p95 < 5 s.
   With the schedule on (one more pass unless `--no-schedule-pass`): the same, schedule not
   paused (every 60 s; a webhook meeting a run waits for it, one meeting a run due within 3 s
   is served by it).
   What-if (`--what-if-delay SECONDS`, repeatable, one pass each): serve with `--no-receiver`
   and the receiver started by the bench exactly as serve starts it, but with `--delay
   SECONDS`: what passing a shorter debounce from serve would give.
2. **A sync run under serve vs the command line**, Centra plan `growth` (budget share 0.5), the
   showcase scenario (`builtin_scenario("showcase")`, Reveni walked once to the end, as the
   tests do), fresh simulators and ledger for each: the wall time of `returnbridge sync --json`
   (a subprocess, start to exit) against a manual run of `sync-returns` under serve (schedule
   paused; from creating the run through the API to its `end_time` in state Completed), and
   that run's own duration (`start_time` to `end_time`). Both use the ledger's cross-process
   Centra budget (`returnbridge.sync.ledger_budget`). Target: serve within 1.2x of the CLI.

The load average at the start (`os.getloadavg()`) is recorded: the machine may be shared.
Results go to `bench/results/serve_latency-<UTC time>.json` (gitignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

from bench.machine import machine
from bench.sync_latency import _inbox_first_seen, _set_status, _subscribe, split_history
from bench.sync_support import (
    ROOT,
    append_docs,
    argument_parser,
    bench_scenario,
    bench_settings,
    centra_effects,
    effect_counts,
    machine_line,
    percentile,
    provenance,
    scenario_digest,
    seconds_between,
    simulators,
    utc_stamp,
    walk_all,
    write_results,
)
from returnbridge.demo import CENTRA_SECRET, CENTRA_TOKEN, REVENI_KEY
from returnbridge.ledger import Ledger
from returnbridge.scenario import Scenario
from returnbridge.scenarios import builtin_scenario
from returnbridge.settings import Settings

RETURNBRIDGE = Path(sys.executable).parent / "returnbridge"
SYNC_DEPLOYMENT = "sync-returns/sync-returns"
SERVE_UP_LINE = "Serving every deployment"
SERVE_START_TIMEOUT = 300.0  # a Prefect server's first start (migrations) on 2 busy cores
EFFECT_TIMEOUT = 120.0  # per accepted return
RUN_TIMEOUT = 1800.0  # the sync's own timeout (flows/sync_returns.py)
SPACING = 1.0  # seconds between one return's run ending and the next acceptance
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
TARGET_P95 = 5.0
TARGET_RATIO = 1.2


# ---------------------------------------------------------------------------------- serve


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def returnbridge_env(settings: Settings, home: Path) -> dict[str, str]:
    """This shell's environment without PREFECT_* and RETURNBRIDGE_*, plus the settings that
    point `returnbridge` at the simulators and the ledger (the tests' `Integration.env`), and a
    PREFECT_HOME of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RETURNBRIDGE_"))}
    s = settings
    env |= {
        "PREFECT_HOME": str(home / "prefect"),
        "RETURNBRIDGE_CENTRA__BASE_URL": s.centra.base_url,
        "RETURNBRIDGE_CENTRA__TOKEN": CENTRA_TOKEN,
        "RETURNBRIDGE_CENTRA__ORDER_API_SECRET": CENTRA_SECRET,
        "RETURNBRIDGE_CENTRA__PLAN": s.centra.plan,
        "RETURNBRIDGE_CENTRA__BUDGET_SHARE": str(s.centra.budget_share),
        "RETURNBRIDGE_REVENI__BASE_URL": s.reveni.base_url,
        "RETURNBRIDGE_REVENI__API_KEY": REVENI_KEY,
        "RETURNBRIDGE_REVENI__STORE_ID": s.reveni.store_id,
        "RETURNBRIDGE_SYNC__LEDGER_URL": s.sync.ledger_url,
        "RETURNBRIDGE_SYNC__RETURNS_WAREHOUSE_ID": str(s.sync.returns_warehouse_id),
        "RETURNBRIDGE_SYNC__INITIAL_LOOK_BACK": "P3650D",
        "RETURNBRIDGE_SYNC__BACKOFF_SECONDS": str(s.sync.backoff_seconds),
        "RETURNBRIDGE_SYNC__BACKOFF_MAX_SECONDS": str(s.sync.backoff_max_seconds),
        "RETURNBRIDGE_SYNC__IN_DOUBT_SETTLE_SECONDS": str(s.sync.in_doubt_settle_seconds),
        "RETURNBRIDGE_SYNC__PSP_RECHECK_SECONDS": str(s.sync.psp_recheck_seconds),
        "RETURNBRIDGE_RECONCILE__WAREHOUSE_PATH": str(home / "warehouse.duckdb"),
        "RETURNBRIDGE_RECONCILE__TIMEZONE": "UTC",
        "RETURNBRIDGE_SLACK__ENABLED": "false",
    }
    return env


def _utc(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


@dataclass
class Served:
    """A running `returnbridge serve` and its Prefect API."""

    process: psutil.Popen
    api_url: str
    receiver_url: str
    log_path: Path
    lines: list[str] = field(default_factory=list)
    family: dict[int, psutil.Process] = field(default_factory=dict)
    startup_seconds: float | None = None
    api_retries: int = 0

    def note_family(self) -> None:
        with contextlib.suppress(psutil.Error):
            for proc in self.process.children(recursive=True):
                self.family.setdefault(proc.pid, proc)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call; retried on 429 / 502 / 503 as Prefect's own client does (its SQLite
        answers 503 when the database is locked for too long, e.g. by the scheduler)."""
        for attempt in range(6):
            response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
            if response.status_code not in (429, 502, 503) or attempt == 5:
                break
            self.api_retries += 1
            time.sleep(0.5 * 2**attempt)
        response.raise_for_status()
        return response.json() if response.content else None

    def deployment_id(self, name: str = SYNC_DEPLOYMENT) -> str:
        found: str = self.api("GET", f"/deployments/name/{name}")["id"]
        return found

    def pause(self, deployment_id: str) -> None:
        self.api("POST", f"/deployments/{deployment_id}/pause_deployment")

    def runs(self, deployment_id: str) -> list[dict[str, Any]]:
        body = {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
        runs: list[dict[str, Any]] = self.api("POST", "/flow_runs/filter", body)
        return runs

    def run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api("GET", f"/flow_runs/{run_id}")
        return found

    def states(self, run_id: str) -> list[dict[str, Any]]:
        states: list[dict[str, Any]] = self.api("GET", f"/flow_run_states/?flow_run_id={run_id}")
        return sorted(states, key=lambda s: s["timestamp"])

    def process_up(self, run_id: str) -> datetime | None:
        """When the run's own process logged first (`Downloading flow code from storage`)."""
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 5}
        logs: list[dict[str, Any]] = self.api("POST", "/logs/filter", body)
        for entry in logs:
            if entry["message"].startswith("Downloading flow code"):
                return _utc(entry["timestamp"])
        return None

    def busy(self, deployment_id: str) -> list[dict[str, Any]]:
        """Runs of the deployment pending, running, or scheduled to start within 5 s."""
        soon = datetime.now(UTC).timestamp() + 5
        out = []
        for r in self.runs(deployment_id):
            kind = r["state_type"]
            if kind in ("PENDING", "RUNNING"):
                out.append(r)
            elif kind == "SCHEDULED":
                start = _utc(r.get("expected_start_time"))
                if start is None or start.timestamp() <= soon:
                    out.append(r)
        return out

    def wait_idle(self, deployment_id: str, timeout: float) -> None:
        wait_for(
            "the sync-returns runs to end", lambda: not self.busy(deployment_id), timeout, self
        )

    def create_run(self, deployment_id: str) -> dict[str, Any]:
        created: dict[str, Any] = self.api(
            "POST", f"/deployments/{deployment_id}/create_flow_run", {}
        )
        return created

    def wait_run(self, run_id: str, timeout: float, poll: float = 0.1) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            f"flow run {run_id} to end",
            lambda: (r := self.run(run_id))["state_type"] in TERMINAL and r,
            timeout,
            self,
            poll=poll,
        )
        return found

    def tail(self, n: int = 60) -> str:
        return "".join(self.lines[-n:])


class BenchError(RuntimeError):
    """Something the bench waited for did not happen; the message has serve's last lines."""


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    served: Served | None = None,
    *,
    poll: float = 0.2,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served is not None:
            served.note_family()
            if served.process.poll() is not None:
                raise BenchError(f"returnbridge serve exited while waiting for {what}")
        found = check()
        if found:
            return found
        time.sleep(poll)
    tail = served.tail() if served is not None else ""
    raise BenchError(f"{what}: not within {timeout:.0f} s\n{tail}")


def _pump(stream: IO[bytes], lines: list[str], sink: IO[str]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        lines.append(line)
        sink.write(line)
        sink.flush()


@contextlib.contextmanager
def serving(
    env: dict[str, str], home: Path, *, receiver_delay: float | None = None
) -> Iterator[Served]:
    """`returnbridge serve` on free ports, up (it said it serves every deployment); SIGTERM
    on exit, and every process seen under it killed if still there after 40 s.

    `receiver_delay` (what-if): serve runs with `--no-receiver`, and the bench starts the
    receiver as serve would (`returnbridge receiver --trigger prefect`, serve's environment for
    its children) but with `--delay receiver_delay`."""
    prefect_port, receiver_port = free_port(), free_port()
    env = env | {
        "RETURNBRIDGE_RECEIVER__HOST": "127.0.0.1",
        "RETURNBRIDGE_RECEIVER__PORT": str(receiver_port),
    }
    log_path = home / "serve.log"
    began = time.monotonic()
    argv = [str(RETURNBRIDGE), "serve", "--prefect-port", str(prefect_port)]
    if receiver_delay is not None:
        argv.append("--no-receiver")
    process = psutil.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    served = Served(
        process=process,
        api_url=f"http://127.0.0.1:{prefect_port}/api",
        receiver_url=f"http://127.0.0.1:{receiver_port}",
        log_path=log_path,
    )
    with log_path.open("w") as sink:
        pump = threading.Thread(
            target=_pump, args=(process.stdout, served.lines, sink), daemon=True
        )
        pump.start()
        own_receiver: psutil.Popen | None = None
        try:
            wait_for(
                "`returnbridge serve` to serve every deployment",
                lambda: any(SERVE_UP_LINE in line for line in served.lines),
                SERVE_START_TIMEOUT,
                served,
                poll=0.1,
            )
            if receiver_delay is not None:
                own_receiver = _start_receiver(served, env, receiver_port, receiver_delay)
            served.startup_seconds = round(time.monotonic() - began, 1)
            yield served
        except BaseException:
            server_log = Path(env["PREFECT_HOME"]) / "server.log"
            if server_log.exists():
                tail = server_log.read_text(errors="replace").splitlines()[-30:]
                print("Prefect server log (last lines):", *tail, sep="\n  ", file=sys.stderr)
            print("serve (last lines):\n" + served.tail(30), file=sys.stderr)
            raise
        finally:
            if own_receiver is not None:
                own_receiver.terminate()
                try:
                    own_receiver.wait(10)
                except psutil.TimeoutExpired:
                    own_receiver.kill()
            served.note_family()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(40)
                except psutil.TimeoutExpired:
                    process.kill()
            for proc in served.family.values():
                with contextlib.suppress(psutil.Error):
                    if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                        proc.kill()
            pump.join(5)


def _start_receiver(served: Served, env: dict[str, str], port: int, delay: float) -> psutil.Popen:
    """The receiver as serve starts it (its environment for children: the API and
    `RUN_DEFAULTS`), with `--delay delay`; its output joins serve's."""
    from returnbridge.cli_serve import run_environment

    argv = [str(RETURNBRIDGE), "receiver", "--trigger", "prefect"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--delay", f"{delay:g}"]
    receiver = psutil.Popen(
        argv,
        cwd=ROOT,
        env=run_environment(served.api_url, env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def pump() -> None:
        with served.log_path.with_name("receiver.log").open("w") as sink:
            _pump(receiver.stdout, served.lines, sink)

    threading.Thread(target=pump, daemon=True).start()

    def healthy() -> bool:
        if receiver.poll() is not None:
            raise BenchError(f"the receiver exited ({receiver.returncode})\n{served.tail()}")
        try:
            return httpx.get(f"{served.receiver_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("the receiver to answer", healthy, 60, served)
    return receiver


# ---------------------------------------------------------------------------------- part 1


def _wait_effect(ledger: Ledger, rid: str, served: Served) -> bool:
    try:
        wait_for(
            f"the createReturn of {rid}",
            lambda: ledger.actions(
                reveni_return_ids=[rid], kinds=["create_return"], states=["done"]
            ),
            EFFECT_TIMEOUT,
            served,
            poll=0.05,
        )
    except BenchError:
        return False
    return True


def _pending_at(states: list[dict[str, Any]]) -> datetime | None:
    for state in states:
        if state["type"] == "PENDING":
            return _utc(state["timestamp"])
    return None


def _serving_run(runs: Sequence[dict[str, Any]], at: datetime) -> dict[str, Any] | None:
    """The run of the deployment that was running when the effect was made."""
    for r in runs:
        start, end = _utc(r.get("start_time")), _utc(r.get("end_time"))
        if start is not None and start <= at and (end is None or at <= end):
            return r
    return None


def latency_pass(
    scenario: Scenario, tmp: Path, *, schedule: bool, receiver_delay: float | None = None
) -> dict[str, Any]:
    """One pass of part 1: serve up, backlog synced, each accepted return timed alone."""
    plans = {r.id: split_history(r) for r in scenario.reveni.returns if r.id}
    accepted = [(rid, status) for rid, (_, status) in plans.items() if status is not None]
    ledger_url = f"sqlite:///{tmp / 'ledger.db'}"
    pass_began = time.monotonic()
    with (
        simulators(scenario, plan="unlimited") as servers,
        Ledger(ledger_url) as ledger,
        # no keep-alive: the acceptances come about 5 s apart, uvicorn's keep-alive timeout, and
        # a request on a connection the simulator is closing is reset
        httpx.Client(
            base_url=servers.reveni_url,
            timeout=30,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as control,
    ):
        settings = bench_settings(scenario, servers, ledger.url, plan="unlimited")
        for rid, (before, _) in plans.items():
            for status in before:
                _set_status(control, rid, status)
        env = returnbridge_env(settings, tmp)
        with serving(env, tmp, receiver_delay=receiver_delay) as served:
            deployment = served.deployment_id()
            if not schedule:
                served.pause(deployment)
            runs_at_pause = [r["name"] for r in served.runs(deployment)]
            served.wait_idle(deployment, RUN_TIMEOUT)
            backlog = served.wait_run(served.create_run(deployment)["id"], RUN_TIMEOUT)
            asyncio.run(_subscribe(settings.reveni, served.receiver_url + "/webhooks/reveni"))
            timed_out: list[str] = []
            for rid, status in accepted:
                _set_status(control, rid, status)
                if not _wait_effect(ledger, rid, served):
                    timed_out.append(rid)
                served.wait_idle(deployment, RUN_TIMEOUT)
                time.sleep(SPACING)
            runs = served.runs(deployment)
            states = {r["id"]: served.states(r["id"]) for r in runs}
            process_up = {
                r["id"]: at
                for r in runs
                if "trigger:webhook" in r["tags"] and (at := served.process_up(r["id"]))
            }
            startup = served.startup_seconds
            retries = served.api_retries
            started_lines = sum("webhooks: started sync run" in x for x in served.lines)
            by_schedule_lines = sum("served by the scheduled sync run" in x for x in served.lines)
        first_seen = _inbox_first_seen(ledger_url)
        done = ledger.actions(reveni_return_ids=[rid for rid, _ in accepted], states=["done"])
    return _latency_figures(
        accepted=[rid for rid, _ in accepted],
        first_seen=first_seen,
        done=done,
        runs=runs,
        states=states,
        process_up=process_up,
        extra={
            "schedule": "on" if schedule else "paused",
            "receiver_delay": receiver_default_delay()
            if receiver_delay is None
            else receiver_delay,
            "receiver": "serve's" if receiver_delay is None else "started by the bench",
            "serve_startup_seconds": startup,
            "api_retries": retries,
            "runs_at_pause": runs_at_pause,
            "backlog_run": {"state": backlog["state_type"], "seconds": _duration(backlog)},
            "timed_out": timed_out,
            "webhook_runs_started": started_lines,
            "served_by_scheduled_run_lines": by_schedule_lines,
            "pass_seconds": round(time.monotonic() - pass_began, 1),
        },
    )


def receiver_default_delay() -> float:
    """`returnbridge receiver`'s default `--delay` (what serve's receiver runs with)."""
    import inspect

    from returnbridge.cli_ops import receiver

    default: float = inspect.signature(receiver).parameters["delay"].default
    return default


def _duration(run: dict[str, Any]) -> float | None:
    start, end = _utc(run.get("start_time")), _utc(run.get("end_time"))
    return None if start is None or end is None else round(seconds_between(start, end), 3)


SEGMENTS = ("to_created", "to_pending", "to_running", "to_effect")
# to_running = process_up (the run process's first log line, "Downloading flow code ...": a new
# Python with Prefect imported) + flow_loaded (the flow's code loaded, the run set Running)
BREAKDOWN = (*SEGMENTS, "process_up", "flow_loaded", "run_seconds")


def _latency_figures(
    *,
    accepted: list[str],
    first_seen: dict[str, datetime],
    done: Sequence[Any],
    runs: list[dict[str, Any]],
    states: dict[str, list[dict[str, Any]]],
    process_up: dict[str, datetime],
    extra: dict[str, Any],
) -> dict[str, Any]:
    creates: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    for action in done:
        rid = action.reveni_return_id
        last[rid] = max(last.get(rid, action.updated_at), action.updated_at)
        if action.kind == "create_return":
            creates[rid] = action.updated_at
    per_return: list[dict[str, Any]] = []
    for rid in accepted:
        seen = first_seen.get(rid)
        if seen is None or rid not in creates:
            per_return.append({"return": rid, "measured": False})
            continue
        effect = creates[rid]
        row: dict[str, Any] = {
            "return": rid,
            "measured": True,
            "first_effect": round(seconds_between(seen, effect), 3),
            "all_effects": round(seconds_between(seen, last[rid]), 3),
        }
        run = _serving_run(runs, effect)
        if run is not None:
            created = _utc(run["created"])
            pending = _pending_at(states.get(run["id"], []))
            start = _utc(run["start_time"])
            row["run"] = run["name"]
            row["trigger"] = "webhook" if "trigger:webhook" in run["tags"] else "other"
            if row["trigger"] == "webhook" and created is not None and start is not None:
                row["to_created"] = round(seconds_between(seen, created), 3)
                if pending is not None:
                    row["to_pending"] = round(seconds_between(created, pending), 3)
                    row["to_running"] = round(seconds_between(pending, start), 3)
                    up = process_up.get(run["id"])
                    if up is not None:
                        row["process_up"] = round(seconds_between(pending, up), 3)
                        row["flow_loaded"] = round(seconds_between(up, start), 3)
                row["to_effect"] = round(seconds_between(start, effect), 3)
            row["run_seconds"] = _duration(run)
        per_return.append(row)
    measured = [r for r in per_return if r["measured"]]
    webhook = [r for r in measured if r.get("trigger") == "webhook"]
    return {
        **extra,
        "accepted": len(accepted),
        "measured": len(measured),
        "served_by_webhook_run": len(webhook),
        "first_effect": _summary([r["first_effect"] for r in measured]),
        "all_effects": _summary([r["all_effects"] for r in measured]),
        "breakdown": {seg: _summary([r[seg] for r in webhook if seg in r]) for seg in BREAKDOWN},
        "first_measured_return": measured[0] if measured else None,
        "per_return": per_return,
    }


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "max": round(max(values), 3),
    }


# ---------------------------------------------------------------------------------- part 2


def _showcase() -> Scenario:
    scenario = builtin_scenario("showcase")
    return scenario.model_copy(
        update={"centra": scenario.centra.model_copy(update={"plan": "growth"})}
    )


def cli_pass(scenario: Scenario, tmp: Path) -> dict[str, Any]:
    """`returnbridge sync --json` once on fresh simulators and ledger: its wall time."""
    ledger_url = f"sqlite:///{tmp / 'ledger.db'}"
    with simulators(scenario, plan="growth") as servers:
        Ledger(ledger_url).close()  # the schema, as serve's receiver makes it before a run
        walk_all(servers.reveni_url)
        settings = bench_settings(scenario, servers, ledger_url, plan="growth")
        env = returnbridge_env(settings, tmp)
        began = time.monotonic()
        done = subprocess.run(
            [str(RETURNBRIDGE), "sync", "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        wall = time.monotonic() - began
        effects = effect_counts(centra_effects(servers.centra_url))
    if done.returncode != 0:
        raise BenchError(f"returnbridge sync failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report: dict[str, Any] | None = None
    with contextlib.suppress(ValueError):
        report = json.loads(done.stdout[done.stdout.index("{") :])
    return {
        "wall_seconds": round(wall, 3),
        "effects": effects,
        "actions_done": None if report is None else report.get("actions_done"),
        "rounds": None if report is None else report.get("rounds"),
    }


def serve_pass(scenario: Scenario, tmp: Path) -> dict[str, Any]:
    """A manual `sync-returns` run under serve on fresh simulators and ledger (schedule paused):
    from creating it through the API to its end_time; its own duration."""
    ledger_url = f"sqlite:///{tmp / 'ledger.db'}"
    with simulators(scenario, plan="growth") as servers:
        Ledger(ledger_url).close()
        walk_all(servers.reveni_url)
        settings = bench_settings(scenario, servers, ledger_url, plan="growth")
        with serving(returnbridge_env(settings, tmp), tmp) as served:
            deployment = served.deployment_id()
            served.pause(deployment)
            before = served.runs(deployment)
            if any(r["state_type"] != "SCHEDULED" for r in before):
                raise BenchError(f"a sync-returns run started before the pause: {before}")
            asked = datetime.now(UTC)
            began = time.monotonic()
            run = served.wait_run(served.create_run(deployment)["id"], RUN_TIMEOUT)
            seen_end = time.monotonic() - began
            states = served.states(run["id"])
            startup = served.startup_seconds
            retries = served.api_retries
        effects = effect_counts(centra_effects(servers.centra_url))
    if run["state_type"] != "COMPLETED":
        raise BenchError(f"the manual run ended {run['state_type']}: {run['state']}")
    created, start, end = (_utc(run[k]) for k in ("created", "start_time", "end_time"))
    assert created is not None and start is not None and end is not None
    pending = _pending_at(states)
    return {
        "wall_seconds": round(seconds_between(asked, end), 3),
        "seen_ended_after": round(seen_end, 3),
        "run_seconds": round(seconds_between(start, end), 3),
        "to_pending": None if pending is None else round(seconds_between(created, pending), 3),
        "to_running": None if pending is None else round(seconds_between(pending, start), 3),
        "effects": effects,
        "serve_startup_seconds": startup,
        "api_retries": retries,
    }


# ---------------------------------------------------------------------------------- the bench


def _median_summary(samples: Sequence[dict[str, Any]], key: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for stat in ("p50", "p95", "max"):
        values = [s[key][stat] for s in samples if s[key][stat] is not None]
        out[stat] = round(statistics.median(values), 3) if values else None
    return out


def _extra_pass(
    scenario: Scenario, label: str, say: Callable[[str], None], **options: Any
) -> dict[str, Any]:
    """One more latency pass (schedule on, or a what-if); a failure is recorded, not raised."""
    try:
        with tempfile.TemporaryDirectory(prefix="bench-serve-latency-") as tmp:
            found = latency_pass(scenario, Path(tmp), **{"schedule": False, **options})
    except (BenchError, httpx.HTTPError) as exc:
        say(f"{label}: failed: {type(exc).__name__}: {str(exc)[:300]}")
        return {"label": label, "error": f"{type(exc).__name__}: {str(exc)[:2000]}"}
    say(f"{label}: p50 {found['first_effect']['p50']} s, p95 {found['first_effect']['p95']} s")
    return {"label": label, **found}


def run(
    returns: int,
    runs: int,
    seed: int,
    schedule_pass: bool,
    what_if_delays: Sequence[float],
    say: Callable[[str], None],
) -> dict[str, Any]:
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    began = time.monotonic()
    scenario = bench_scenario(returns, seed)
    showcase = _showcase()
    latency: list[dict[str, Any]] = []
    versus: list[dict[str, Any]] = []
    for i in range(1, runs + 1):
        with tempfile.TemporaryDirectory(prefix="bench-serve-latency-") as tmp:
            latency.append(latency_pass(scenario, Path(tmp), schedule=False))
        s = latency[-1]
        say(f"run {i}: webhook -> effect p50 {s['first_effect']['p50']} s, p95 "
            f"{s['first_effect']['p95']} s ({s['measured']}/{s['accepted']})")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="bench-serve-cli-") as tmp:
            cli = cli_pass(showcase, Path(tmp))
        with tempfile.TemporaryDirectory(prefix="bench-serve-run-") as tmp:
            served = serve_pass(showcase, Path(tmp))
        versus.append(
            {
                "cli": cli,
                "serve": served,
                "ratio": round(served["wall_seconds"] / cli["wall_seconds"], 3),
                "same_effects": cli["effects"] == served["effects"],
            }
        )
        say(f"run {i}: showcase sync, CLI {cli['wall_seconds']} s, serve "
            f"{served['wall_seconds']} s (run {served['run_seconds']} s)")  # fmt: skip
    scheduled = None
    if schedule_pass:
        scheduled = _extra_pass(scenario, "schedule on", say, schedule=True)
    what_if = [
        _extra_pass(scenario, f"what-if receiver `--delay {d:g}`", say, receiver_delay=d)
        for d in what_if_delays
    ]
    cli_median = statistics.median(v["cli"]["wall_seconds"] for v in versus)
    serve_median = statistics.median(v["serve"]["wall_seconds"] for v in versus)
    median = {
        "first_effect": _median_summary(latency, "first_effect"),
        "all_effects": _median_summary(latency, "all_effects"),
        "breakdown_p50": {
            seg: _median_of([s["breakdown"][seg]["p50"] for s in latency]) for seg in BREAKDOWN
        },
        "cli_seconds": round(cli_median, 3),
        "serve_seconds": round(serve_median, 3),
        "serve_run_seconds": _median_of([v["serve"]["run_seconds"] for v in versus]),
        "ratio": round(serve_median / cli_median, 3),
        "ratio_run_only": round(
            statistics.median(v["serve"]["run_seconds"] for v in versus) / cli_median, 3
        ),
    }
    return {
        "benchmark": "serve_latency",
        "when": utc_stamp(),
        "returns": returns,
        "runs": runs,
        "seed": seed,
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.monotonic() - began, 1),
        "machine": machine(),
        "code": provenance(),
        "scenario": scenario_digest(scenario),
        "showcase": scenario_digest(showcase),
        "targets": {"p95_seconds": TARGET_P95, "serve_vs_cli": TARGET_RATIO},
        "median": median,
        "latency": latency,
        "schedule_on": scheduled,
        "what_if_receiver_delay": what_if,
        "versus": versus,
    }


def _median_of(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _cell(d: dict[str, Any]) -> str:
    if d["p50"] is None:
        return "-"
    return f"{d['p50']:.2f} / {d['p95']:.2f} / {d['max']:.2f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _running(b: dict[str, Any]) -> str:
    """`→ running` p50 with its split: process up + flow loaded (p50s: need not add up)."""
    if b.get("process_up") is None or b.get("flow_loaded") is None:
        return _num(b.get("to_running"))
    return f"{_num(b['to_running'])} ({_num(b['process_up'])} + {_num(b['flow_loaded'])})"


def tables(report: dict[str, Any]) -> str:
    m = report["median"]
    lines = [
        "| run | accepted | measured | first effect p50 / p95 / max (s) "
        "| all effects p50 / p95 / max (s) | received → run created | → pending "
        "| → running (process up + flow loaded) | → effect (p50s, s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, s: dict[str, Any]) -> str:
        if "error" in s:
            return f"| {label} | failed: {s['error'].splitlines()[0][:120]} | | | | | | | |"
        b = {k: v["p50"] for k, v in s["breakdown"].items()}
        return (
            f"| {label} | {s['accepted']} | {s['measured']} | {_cell(s['first_effect'])} "
            f"| {_cell(s['all_effects'])} | {_num(b['to_created'])} | {_num(b['to_pending'])} "
            f"| {_running(b)} | {_num(b['to_effect'])} |"
        )

    for i, s in enumerate(report["latency"], 1):
        lines.append(row(str(i), s))
    b = m["breakdown_p50"]
    lines.append(
        f"| **median** | | | **{_cell(m['first_effect'])}** | **{_cell(m['all_effects'])}** "
        f"| {_num(b['to_created'])} | {_num(b['to_pending'])} | {_running(b)} "
        f"| {_num(b['to_effect'])} |"
    )
    if report["schedule_on"] is not None:
        lines.append(row("schedule on (1 pass)", report["schedule_on"]))
    for w in report["what_if_receiver_delay"]:
        lines.append(row(f"what-if: {w['label'].removeprefix('what-if ')} (1 pass)", w))
    lines += [
        "",
        "| run | CLI `returnbridge sync`, s | serve: created → Completed, s | serve run's own "
        "duration, s | created → pending / → running, s | serve / CLI | same effects |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for i, v in enumerate(report["versus"], 1):
        c, s = v["cli"], v["serve"]
        lines.append(
            f"| {i} | {c['wall_seconds']:.2f} | {s['wall_seconds']:.2f} | "
            f"{s['run_seconds']:.2f} | {_num(s['to_pending'])} / {_num(s['to_running'])} "
            f"| {v['ratio']:.2f}x | {'yes' if v['same_effects'] else 'NO'} |"
        )
    lines.append(
        f"| **median** | **{m['cli_seconds']:.2f}** | **{m['serve_seconds']:.2f}** "
        f"| {_num(m['serve_run_seconds'])} | | **{m['ratio']:.2f}x** | |"
    )
    return "\n".join(lines)


DEFINITIONS = """\
Definitions. *First effect*: from the ledger's `received_at` of the first inbox event about
the return (the receiver commits it before answering Reveni) to the `updated_at` of its
`createReturn` action when it became `done` (right after Centra answered); *all effects*: to
its last action. Every process of serve writes the ledger in real UTC, so the Prefect API's
times of the run that made the effect split it: *received → run created* (the receiver's
debounce, 1.0 s by default, then `WebhookRunStarter`'s API calls), *→ pending* (the runner's
poll found the run; `PREFECT_RUNNER_POLL_FREQUENCY=1` under serve), *→ running* (to the run's
`start_time`), split into *process up* (the run process's first log line, `Downloading flow
code from storage`: a new Python with Prefect imported) and *flow loaded* (the flow's module
imported, the run set Running), *→ effect* (the sync inside the run); p50s of each, so they
need not add up to the total's p50. Each return is accepted alone (after the previous one's
run ended, plus 1 s), with the deployment's schedule paused through the API once serve was up
(`POST /api/deployments/{id}/pause_deployment`), except in the *schedule on* pass. *What-if*
passes: serve with `--no-receiver` and the receiver started as serve starts it, but with the
`--delay` shown. Serve vs CLI: the showcase scenario at Centra plan `growth` (share 0.5),
fresh simulators and ledger for each; *CLI*: `returnbridge sync --json` as a subprocess, start
to exit; *serve*: a manual run of `sync-returns` created through the API, until its `end_time`
(state Completed); both hold the ledger's cross-process Centra budget. Per-run p50 / p95 /
max; the median row is the median of the runs' figures.
"""


def verdict(report: dict[str, Any]) -> str:
    m = report["median"]
    p95 = m["first_effect"]["p95"]
    met_p95 = p95 is not None and p95 < TARGET_P95
    met_ratio = m["ratio"] <= TARGET_RATIO
    return (
        f"Webhook → first effect under serve: p50 {_num(m['first_effect']['p50'])} s, p95 "
        f"{_num(p95)} s: target p95 < {TARGET_P95:g} s **{'met' if met_p95 else 'missed'}**. "
        f"Showcase sync under serve {m['serve_seconds']:.2f} s against {m['cli_seconds']:.2f} s "
        f"from the CLI, {m['ratio']:.2f}x (the run itself {_num(m['serve_run_seconds'])} s, "
        f"{m['ratio_run_only']:.2f}x): target ≤ {TARGET_RATIO:g}x "
        f"**{'met' if met_ratio else 'missed'}**.\n"
    )


def docs_section(report: dict[str, Any], command: str) -> str:
    load = " / ".join(f"{x:g}" for x in report["load_average_at_start"])
    first = report["latency"][0] if report["latency"] else None
    return (
        f"\n## Serve: webhook to Centra effect, and a sync run vs the CLI ({report['when']})\n\n"
        f"Command: `{command}`; {report['wall_seconds']:.0f} s wall clock.  \n"
        f"Machine: {machine_line(report['machine'])}; load average at the start {load} "
        f"(1 / 5 / 15 min).  \n"
        f"`returnbridge serve` as a subprocess (its own Prefect server on a free port, "
        f"PREFECT_HOME in a temporary directory), simulators over loopback. Latency: "
        f"{report['returns']} generated returns (seed {report['seed']}), "
        f"{first['accepted'] if first else 0} accepted one at a time, Centra plan `unlimited`; "
        f"serve vs CLI: the showcase scenario, plan `growth`. {report['runs']} runs.\n\n"
        f"{tables(report)}\n\n{verdict(report)}\n{DEFINITIONS}"
    )


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--returns", type=int, default=20, help="generated returns (latency)")
    parser.add_argument("--runs", type=int, default=3, help="runs; figures are their median")
    parser.add_argument("--seed", type=int, default=1, help="scenario seed")
    parser.add_argument(
        "--no-schedule-pass",
        dest="schedule_pass",
        action="store_false",
        help="skip the latency pass with the schedule on",
    )
    parser.add_argument(
        "--what-if-delay",
        type=float,
        action="append",
        default=[],
        metavar="SECONDS",
        help="one more latency pass with the receiver's --delay at SECONDS (repeatable)",
    )
    parser.add_argument("--append-docs", action="store_true", help="append to benchmarks.md")
    args = parser.parse_args()
    report = run(
        args.returns, args.runs, args.seed, args.schedule_pass, args.what_if_delay, say=print
    )
    print(tables(report))
    print(verdict(report))
    print(machine_line(report["machine"]))
    print(f"wrote {write_results('serve_latency', report)}")
    if args.append_docs:
        command = (
            f".venv/bin/python -m bench.serve_latency --runs {args.runs} "
            f"--returns {args.returns} --seed {args.seed}"
            + ("" if args.schedule_pass else " --no-schedule-pass")
            + "".join(f" --what-if-delay {d:g}" for d in args.what_if_delay)
        )
        print(f"appended to {append_docs(docs_section(report, command))}")


if __name__ == "__main__":
    main()
