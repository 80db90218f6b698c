"""Every connector client is built the same way (docs/architecture.md).

One loop over Centra, Reveni and Slack checks the contract they share:
`settings.client(**hooks)` takes the common hooks (`http_transport`, `sleep`, `rng`,
`timeout_seconds`) and honours them, refuses an unknown hook by name, gives a context manager
of the client's kind (async for Centra and Reveni, sync for Slack's poster), raises the shared
error kinds of `returnbridge.connectors.errors`, and never shows a secret in a repr or a message.
Unit-level mapping goes through `httpx.MockTransport` (one handler serves all three: it is both a
sync and an async transport); the last tests use the real loopback stand-ins.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from centra_sim_support import CentraSimHandle
from pydantic import BaseModel, SecretStr
from reveni_sim_support import ReveniSimHandle, running_reveni_sim

from returnbridge.connectors.centra import CentraClient, CentraError, Governor
from returnbridge.connectors.centra.settings import CentraSettings
from returnbridge.connectors.errors import (
    ApiError,
    AuthError,
    RateLimitedError,
    TransientError,
)
from returnbridge.connectors.reveni import ReveniClient
from returnbridge.connectors.reveni.errors import ReveniError
from returnbridge.connectors.reveni.settings import ReveniSettings
from returnbridge.connectors.slack import DigestPoster, SlackError, SlackSettings
from returnbridge.simulators.server import free_port
from returnbridge.simulators.slack import SlackStandIn

COMMON_HOOKS = ("http_transport", "sleep", "rng", "timeout_seconds")
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "digest"}}]


class Waits:
    """The `sleep` hook: records each wait, never waits (async and sync flavours)."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    async def async_sleep(self, seconds: float) -> None:
        self.seen.append(seconds)

    def sync_sleep(self, seconds: float) -> None:
        self.seen.append(seconds)


class CountingRandom(random.Random):
    """The `rng` hook: a seeded Random that counts the draws of the backoff's jitter."""

    def __init__(self) -> None:
        super().__init__(7)
        self.draws = 0

    def uniform(self, a: float, b: float) -> float:
        self.draws += 1
        return super().uniform(a, b)


@dataclass(frozen=True)
class Connector:
    """What the loop needs to know of one connector."""

    name: str
    build: Callable[[str, str], BaseModel]  # (base_url, secret) -> settings holding the secret
    client_type: type
    base_error: type[ApiError]
    is_async: bool
    call: Callable[[Any], Any]  # one request; a coroutine for an async client
    extra_hooks: dict[str, Callable[[], Any]] = field(default_factory=dict)
    draws_random: bool = True
    # An answer the client waits out with `sleep` before giving up (once: retries are 1).
    waited: Callable[[], httpx.Response] = lambda: httpx.Response(503, json={"detail": "busy"})

    def sleep(self, waits: Waits) -> Callable[[float], Any]:
        return waits.async_sleep if self.is_async else waits.sync_sleep

    def hooks(self, **hooks: Any) -> dict[str, Any]:
        """The extra hooks with fresh values (a governor of its own per client), then `hooks`."""
        return {**{name: make() for name, make in self.extra_hooks.items()}, **hooks}


def _centra(base_url: str, secret: str) -> CentraSettings:
    return CentraSettings(
        base_url=base_url,
        token=SecretStr(secret),
        order_api_secret=SecretStr(secret + "-rest"),
        plan="unlimited",
        read_retries=1,
    )


def _reveni(base_url: str, secret: str) -> ReveniSettings:
    return ReveniSettings(
        base_url=base_url, api_key=SecretStr(secret), store_id="store_1", read_retries=1
    )


def _slack(base_url: str, secret: str) -> SlackSettings:
    return SlackSettings(base_url=base_url, token=SecretStr(secret), rate_limit_retries=1)


CONNECTORS = [
    Connector(
        name="centra",
        build=_centra,
        client_type=CentraClient,
        base_error=CentraError,
        is_async=True,
        call=lambda centra: centra.orders_by_number([1001]),
        extra_hooks={"governor": lambda: Governor("unlimited", 1.0), "orders_per_query": lambda: 5},
    ),
    Connector(
        name="reveni",
        build=_reveni,
        client_type=ReveniClient,
        base_error=ReveniError,
        is_async=True,
        call=lambda reveni: reveni.get_return("ret_std"),
    ),
    Connector(
        name="slack",
        build=_slack,
        client_type=DigestPoster,
        base_error=SlackError,
        is_async=False,
        call=lambda poster: poster.post("#returns-ops", "digest", BLOCKS),
        draws_random=False,  # it waits Slack's Retry-After exactly
        waited=lambda: httpx.Response(
            429, headers={"Retry-After": "0"}, json={"ok": False, "error": "ratelimited"}
        ),
    ),
]
BY_NAME = {c.name: c for c in CONNECTORS}
SECRET = "s3cr3t-do-not-show"
MOCK_BASE = {"centra": "http://centra.test", "reveni": "http://reveni.test"}


@pytest.fixture(params=[c.name for c in CONNECTORS])
def connector(request: pytest.FixtureRequest) -> Connector:
    return BY_NAME[request.param]


def mock_settings(connector: Connector) -> Any:
    return connector.build(MOCK_BASE.get(connector.name, "http://slack.test/api/"), SECRET)


async def exercise(connector: Connector, settings: Any, **hooks: Any) -> Any:
    """Open the client the way its kind says, make its one request, close it (the `sleep` hook
    records instead of waiting unless the test gives its own)."""
    hooks.setdefault("sleep", connector.sleep(Waits()))
    if connector.is_async:
        async with settings.client(**connector.hooks(**hooks)) as client:
            return await connector.call(client)
    with settings.client(**connector.hooks(**hooks)) as client:
        return connector.call(client)


def answering(*steps: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[Any]]:
    """A MockTransport that plays `steps` in order (the last one repeats), recording requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        step = steps[min(len(seen), len(steps) - 1)]
        seen.append(request)
        if isinstance(step, Exception):
            raise step
        return httpx.Response(step.status_code, headers=step.headers, content=step.content)

    return httpx.MockTransport(handler), seen


# ---------------------------------------------------------------------------------- the shape


def test_client_takes_the_common_hooks_and_only_its_own(connector: Connector) -> None:
    parameters = inspect.signature(type(mock_settings(connector)).client).parameters
    hooks = {name: p for name, p in parameters.items() if name != "self"}
    assert set(hooks) == {*COMMON_HOOKS, *connector.extra_hooks}
    for p in hooks.values():
        assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None, p


async def test_every_common_hook_is_accepted_at_once(connector: Connector) -> None:
    transport, _ = answering(httpx.Response(500))
    settings = mock_settings(connector)
    client = settings.client(
        **connector.hooks(
            http_transport=transport,
            sleep=connector.sleep(Waits()),
            rng=CountingRandom(),
            timeout_seconds=2.5,
        )
    )
    assert isinstance(client, connector.client_type)
    if connector.is_async:
        await client.aclose()
    else:
        client.close()


@pytest.mark.parametrize("hook", ["transport", "timeout", "no_such_hook"])
def test_an_unknown_hook_is_refused_by_name(connector: Connector, hook: str) -> None:
    with pytest.raises(TypeError, match=f"'{hook}'"):
        mock_settings(connector).client(**{hook: None})


def test_another_connectors_own_hook_is_refused(connector: Connector) -> None:
    foreign = {h for c in CONNECTORS for h in c.extra_hooks} - set(connector.extra_hooks)
    for hook in sorted(foreign):
        with pytest.raises(TypeError, match=f"'{hook}'"):
            mock_settings(connector).client(**{hook: None})


async def test_client_is_a_context_manager_of_its_kind(connector: Connector) -> None:
    settings = mock_settings(connector)
    client = settings.client(**connector.hooks())
    if connector.is_async:
        assert hasattr(client, "__aenter__") and hasattr(client, "aclose")
        assert not hasattr(client, "__enter__")
        async with client as entered:
            assert entered is client
    else:
        assert hasattr(client, "__enter__") and hasattr(client, "close")
        assert not hasattr(client, "__aenter__")
        with client as entered:
            assert entered is client


# ---------------------------------------------------------------------------------- the hooks


async def test_http_transport_carries_every_request(connector: Connector) -> None:
    transport, seen = answering(httpx.Response(401, json={"ok": False, "error": "invalid_auth"}))
    with pytest.raises(AuthError):
        await exercise(connector, mock_settings(connector), http_transport=transport)
    assert len(seen) == 1
    assert seen[0].headers.get("authorization") == f"Bearer {SECRET}"


async def test_timeout_seconds_replaces_the_settings_timeout(connector: Connector) -> None:
    transport, seen = answering(httpx.Response(401, json={"ok": False, "error": "invalid_auth"}))
    settings = mock_settings(connector)
    assert settings.timeout_seconds == 10
    with pytest.raises(AuthError):
        await exercise(connector, settings, http_transport=transport, timeout_seconds=3.5)
    assert seen[0].extensions["timeout"] == {"connect": 3.5, "read": 3.5, "write": 3.5, "pool": 3.5}


async def test_sleep_waits_and_rng_jitters(connector: Connector) -> None:
    transport, seen = answering(connector.waited())
    waits, rng = Waits(), CountingRandom()
    with pytest.raises(TransientError) as raised:
        await exercise(
            connector,
            mock_settings(connector),
            http_transport=transport,
            sleep=connector.sleep(waits),
            rng=rng,
        )
    assert isinstance(raised.value, connector.base_error)
    assert len(seen) == 2 and len(waits.seen) == 1  # one retry, waited with the hook
    assert rng.draws == (1 if connector.draws_random else 0)


# ---------------------------------------------------------------------------------- the errors

FAILURES: dict[str, Callable[[], httpx.Response | Exception]] = {
    "refused": lambda: httpx.ConnectError("connection refused"),
    "read timeout": lambda: httpx.ReadTimeout("timed out"),
    "503": lambda: httpx.Response(503, text="unavailable"),
}


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_failing_transport_is_transient(connector: Connector, failure: str) -> None:
    transport, _ = answering(FAILURES[failure]())
    with pytest.raises(TransientError) as raised:
        await exercise(connector, mock_settings(connector), http_transport=transport)
    assert isinstance(raised.value, connector.base_error)
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_the_auth_kind(connector: Connector, status: int) -> None:
    transport, _ = answering(httpx.Response(status, json={"ok": False, "detail": "no"}))
    with pytest.raises(AuthError) as raised:
        await exercise(connector, mock_settings(connector), http_transport=transport)
    assert isinstance(raised.value, connector.base_error)
    assert SECRET not in str(raised.value)


async def test_rate_limited_beyond_patience_is_the_rate_limited_kind(connector: Connector) -> None:
    transport, seen = answering(
        httpx.Response(429, headers={"Retry-After": "0"}, json={"error": "ratelimited"})
    )
    with pytest.raises(RateLimitedError) as raised:
        await exercise(connector, mock_settings(connector), http_transport=transport)
    assert isinstance(raised.value, connector.base_error)
    assert raised.value.retry_after == 0
    assert len(seen) == 2  # one retry


# ---------------------------------------------------------------------------------- secrets


async def test_secrets_never_show_in_repr_or_str(connector: Connector) -> None:
    settings = mock_settings(connector)
    client = settings.client(**connector.hooks())
    try:
        for shown in (repr(settings), str(settings), repr(client), str(client)):
            assert SECRET not in shown
    finally:
        if connector.is_async:
            await client.aclose()
        else:
            client.close()


# ---------------------------------------------------------------------------------- loopback


@pytest.fixture(scope="module")
def reveni_sim() -> Iterator[ReveniSimHandle]:
    with running_reveni_sim() as handle:
        yield handle


def loopback(connector: Connector, request: pytest.FixtureRequest, *, good: bool) -> Any:
    """Settings pointing at the connector's real loopback stand-in, with its secret or not."""
    if connector.name == "centra":
        centra: CentraSimHandle = request.getfixturevalue("centra_sim")
        settings = _centra(centra.url, centra.token if good else SECRET)
        if good:  # the REST secret of `_centra` is derived from the token; the sim has its own
            settings = settings.model_copy(
                update={"order_api_secret": SecretStr(centra.order_api_secret)}
            )
        return settings
    if connector.name == "reveni":
        reveni: ReveniSimHandle = request.getfixturevalue("reveni_sim")
        return _reveni(reveni.url, reveni.api_key if good else SECRET)
    slack: SlackStandIn = request.getfixturevalue("slack")
    return _slack(slack.base_url, slack.token if good else SECRET)


async def test_loopback_with_the_right_secret_answers(
    connector: Connector, request: pytest.FixtureRequest
) -> None:
    assert await exercise(connector, loopback(connector, request, good=True))


async def test_loopback_with_a_wrong_secret_is_the_auth_kind(
    connector: Connector, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError) as raised:
        await exercise(connector, loopback(connector, request, good=False))
    assert isinstance(raised.value, connector.base_error)
    assert SECRET not in str(raised.value)
    assert SECRET not in caplog.text


async def test_loopback_with_nothing_listening_is_transient(connector: Connector) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    settings = connector.build(base + ("/api/" if connector.name == "slack" else ""), SECRET)
    with pytest.raises(TransientError) as raised:
        await exercise(connector, settings, sleep=connector.sleep(Waits()), timeout_seconds=2)
    assert isinstance(raised.value, connector.base_error)
