"""What the tests of `returnbridge serve`, the multi-machine guide and crash detection share:
free ports, an environment free of the test session's own Prefect settings, and waiting for
something to happen while saying what did not."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest


def free_port() -> int:
    """A TCP port nothing listens on now (loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any PREFECT_* (the session's test server must not
    leak into a process that runs its own), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(extra or {})
    return env


def wait_until(
    what: str, check: Callable[[], Any], timeout: float, logs: Callable[[], str] = lambda: ""
) -> Any:
    """`check()`'s first truthy value, polled every second; fails naming `what` (and the logs)
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{logs()}")


def api_healthy(api_url: str) -> bool:
    """Whether the Prefect API at `api_url` answers its health check."""
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
