"""Acceptance: `returnbridge sim reveni` as a real process, driven over HTTP like a client would.

Runs the built-in `basic` scenario (store_1; ret_0001 on order 1001 walks to accepted).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from returnbridge.connectors.reveni.models import Return, wire_context
from returnbridge.simulators.server import free_port


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "returnbridge", "sim", "reveni", *args]


def test_cli_simulator_serves_the_merchant_api_and_sim() -> None:
    port = free_port()
    proc = subprocess.Popen(
        _command("--port", str(port), "--api-key", "cli-key", "--webhook-secret", "s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()
            try:
                if httpx.get(url + "/_sim/clock", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the simulator did not start answering"
            time.sleep(0.05)
        base = f"{url}/merchants/v0/stores/store_1"
        with httpx.Client(base_url=base, headers={"Authorization": "Bearer cli-key"}) as api:
            listed = api.get("/returns")
            assert listed.status_code == 200, listed.text
            assert listed.json()["count"] == 5
            assert httpx.get(base + "/returns").status_code == 401
            walked = httpx.post(url + "/_sim/walk").json()
            assert walked["steps"] == 4 and walked["remaining"] == 0
            ret = api.get("/returns/ret_0001").json()
            parsed = Return.model_validate(ret, context=wire_context())
            assert parsed.status == "accepted" and parsed.refunds[0].amount == 299
            assert httpx.get(url + "/_sim/webhooks").json()["signed"] is True
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_simulator_with_a_bad_scenario_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("reveni:\n  returns:\n    - {order_number: 1, items: [], history: [lost]}\n")
    done = subprocess.run(
        _command("--port", str(free_port()), "--scenario", str(bad)),
        capture_output=True,
        timeout=20,
    )
    assert done.returncode == 2
    message = done.stderr.decode()
    assert str(bad) in message and "reveni.returns[0]" in message
