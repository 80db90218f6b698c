"""Run the Slack stand-in on a free loopback port (tests and the demo) and read it over HTTP."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import httpx

from returnbridge.connectors.slack import SlackSettings
from returnbridge.simulators.server import serve_in_thread
from returnbridge.simulators.slack.app import (
    DEFAULT_CHANNELS,
    DEFAULT_TOKEN,
    SlackState,
    create_slack_app,
)


class SlackStandIn:
    """The Slack stand-in served in a background thread for the duration of a `with` block.

    `base_url` (ending in `/api/`) is what `SlackSettings.base_url` / `WebClient(base_url=...)`
    take; `messages()`, `calls()`, `set_faults()` and `reset()` go through `/_sim` over HTTP."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        channels: Iterable[str] = DEFAULT_CHANNELS,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.token = token
        self.app = create_slack_app(token=token, channels=channels)
        self._host = host
        self._port = port
        self._stack: ExitStack | None = None
        self._url: str | None = None
        self._control: httpx.Client | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> SlackStandIn:
        stack = ExitStack()
        try:
            server = stack.enter_context(serve_in_thread(self.app, self._host, self._port))
            self._url = server.url
            self._control = stack.enter_context(httpx.Client(base_url=server.url, timeout=10))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._control = None
        if stack is not None:
            stack.close()

    # ------------------------------------------------------------------ where it listens

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        if self._url is None:
            raise RuntimeError("the Slack stand-in is not running (use it in a `with` block)")
        return self._url

    @property
    def base_url(self) -> str:
        """The Web API base, `http://127.0.0.1:<port>/api/`."""
        return f"{self.url}/api/"

    @property
    def state(self) -> SlackState:
        """The live state (for assertions that HTTP cannot make)."""
        state: SlackState = self.app.state.slack
        return state

    def settings(self, **overrides: Any) -> SlackSettings:
        """`SlackSettings` pointing at this stand-in with its token; `overrides` win."""
        values: dict[str, Any] = {"base_url": self.base_url, "token": self.token, **overrides}
        return SlackSettings.model_validate(values)

    # ------------------------------------------------------------------ /_sim over HTTP

    def _client(self) -> httpx.Client:
        if self._control is None:
            raise RuntimeError("the Slack stand-in is not running (use it in a `with` block)")
        return self._control

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._client().request(method, f"/_sim{path}", json=body)
        response.raise_for_status()
        return response.json()

    def messages(self) -> list[dict[str, Any]]:
        """Every accepted message, oldest first: channel, channel_id, text, blocks, ts, ..."""
        messages: list[dict[str, Any]] = self._json("GET", "/messages")["messages"]
        return messages

    def calls(self) -> list[dict[str, Any]]:
        """Every `chat.postMessage` call: method, HTTP status, error (None when accepted)."""
        calls: list[dict[str, Any]] = self._json("GET", "/calls")["calls"]
        return calls

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """POST `/_sim/faults` (`rate_limited`, `retry_after`, `down`); returns the new faults."""
        result: dict[str, Any] = self._json("POST", "/faults", faults)
        return result

    def reset(self) -> None:
        """Forget messages and calls, clear the faults."""
        self._json("POST", "/reset")
