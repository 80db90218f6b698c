"""DigestPoster against the Slack stand-in over real loopback HTTP (sleeps are injected)."""

from __future__ import annotations

import json
import logging
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from reports.digest import Digest, DigestItem, render_digest
from returnbridge.connectors.errors import (
    ApiError,
    AuthError,
    RateLimitedError,
    RejectedError,
    TransientError,
)
from returnbridge.connectors.slack import (
    DigestPoster,
    SlackAuthError,
    SlackError,
    SlackRateLimited,
    SlackRejected,
    SlackSettings,
    SlackUnavailable,
)
from returnbridge.simulators.server import free_port
from returnbridge.simulators.slack import SlackStandIn

BLOCKS: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "Returns digest — Ops"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*2 open* · 1 new · 0 healed"}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "<http://x/run|run>"}]},
]


class Sleeps:
    """An injected sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.seen.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def poster(slack: SlackStandIn, sleeps: Sleeps, **overrides: Any) -> DigestPoster:
    return DigestPoster(slack.settings(**overrides), sleep=sleeps)


def test_post_lands_with_blocks_intact(slack: SlackStandIn, sleeps: Sleeps) -> None:
    ts = poster(slack, sleeps).post("#returns-ops", "2 open", BLOCKS)

    [message] = slack.messages()
    assert ts == message["ts"] == "1700000000.000100"
    assert message["channel"] == "#returns-ops"
    assert message["text"] == "2 open"
    assert message["blocks"] == BLOCKS
    assert message["unfurl_links"] is False
    assert message["unfurl_media"] is False
    assert sleeps.seen == []


def test_rate_limited_twice_then_posted_once(slack: SlackStandIn, sleeps: Sleeps) -> None:
    slack.set_faults(rate_limited=2, retry_after=2)

    ts = poster(slack, sleeps).post("#returns-finance", "digest", BLOCKS)

    assert sleeps.seen == [2, 2]
    assert [m["ts"] for m in slack.messages()] == [ts]
    assert [c["status"] for c in slack.calls()] == [429, 429, 200]


def test_rate_limited_beyond_the_retries(slack: SlackStandIn, sleeps: Sleeps) -> None:
    slack.set_faults(rate_limited=4, retry_after=1)

    with pytest.raises(SlackUnavailable, match="after 3 retries"):
        poster(slack, sleeps).post("#returns-finance", "digest", BLOCKS)

    assert sleeps.seen == [1, 1, 1]
    assert slack.messages() == []
    assert [c["status"] for c in slack.calls()] == [429, 429, 429, 429]


def test_no_retries_configured_gives_up_at_once(slack: SlackStandIn, sleeps: Sleeps) -> None:
    slack.set_faults(rate_limited=1, retry_after=1)
    with pytest.raises(SlackUnavailable):
        poster(slack, sleeps, rate_limit_retries=0).post("#returns-ops", "x", BLOCKS)
    assert sleeps.seen == []


def test_retry_after_above_the_cap_is_not_waited(slack: SlackStandIn, sleeps: Sleeps) -> None:
    slack.set_faults(rate_limited=1, retry_after=120)

    with pytest.raises(SlackUnavailable, match="120s"):
        poster(slack, sleeps, max_retry_after_seconds=60).post("#returns-ops", "x", BLOCKS)

    assert sleeps.seen == []
    assert len(slack.calls()) == 1
    assert slack.messages() == []


def test_down_is_unavailable(slack: SlackStandIn, sleeps: Sleeps) -> None:
    slack.set_faults(down=True)
    with pytest.raises(SlackUnavailable, match="503"):
        poster(slack, sleeps).post("#returns-ops", "x", BLOCKS)
    assert sleeps.seen == []
    assert slack.messages() == []


def test_nothing_listening_is_unavailable(sleeps: Sleeps) -> None:
    settings = SlackSettings(
        base_url=f"http://127.0.0.1:{free_port()}/api/", timeout_seconds=2, token=SecretStr("t")
    )
    with pytest.raises(SlackUnavailable, match="could not reach Slack"):
        DigestPoster(settings, sleep=sleeps).post("#returns-ops", "x", BLOCKS)
    assert sleeps.seen == []


def test_wrong_token_is_rejected(
    slack: SlackStandIn, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "xoxb-wrong-secret-123"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SlackRejected, match="invalid_auth") as raised:
        poster(slack, sleeps, token=secret).post("#returns-ops", "x", BLOCKS)

    assert raised.value.error == "invalid_auth"
    assert raised.value.channel == "#returns-ops"
    assert "#returns-ops" in str(raised.value)
    assert secret not in str(raised.value)
    assert secret not in caplog.text
    assert slack.messages() == []


def test_unknown_channel_is_rejected(slack: SlackStandIn, sleeps: Sleeps) -> None:
    with pytest.raises(SlackRejected) as raised:
        poster(slack, sleeps).post("#general", "x", BLOCKS)
    assert raised.value.error == "channel_not_found"
    assert str(raised.value) == "Slack rejected the message to #general: channel_not_found"


def test_invalid_blocks_are_rejected(slack: SlackStandIn, sleeps: Sleeps) -> None:
    with pytest.raises(SlackRejected, match="invalid_blocks"):
        poster(slack, sleeps).post("#returns-ops", "x", [{"text": "no type"}])


def test_the_token_is_not_logged_while_retrying(
    slack: SlackStandIn, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slack.set_faults(rate_limited=1, retry_after=1)
    poster(slack, sleeps).post("#returns-ops", "x", BLOCKS)
    assert sleeps.seen == [1]
    assert slack.token not in caplog.text
    assert slack.token not in repr(slack.settings())


def test_a_rendered_digest_arrives_as_rendered(slack: SlackStandIn, sleeps: Sleeps) -> None:
    item = DigestItem(
        "refund_amount_mismatch", 1001, "ret_std_1001", Decimal("299"), "SEK", 3, "open"
    )
    digest = Digest(
        owner="finance",
        run_date=date(2026, 10, 15),
        counts_by_code={"refund_amount_mismatch": 1},
        new_by_code={"refund_amount_mismatch": 1},
        healed_by_code={},
        oldest_open=item,
        top=[item],
        mention="S0FINANCE",
        flow_run_url="http://127.0.0.1:4200/runs/flow-run/42",
    )
    settings = slack.settings(mentions={"finance": "S0FINANCE"})
    text, blocks = render_digest(digest)

    DigestPoster(settings, sleep=sleeps).post(settings.channel_for("finance"), text, blocks)

    [message] = slack.messages()
    assert message["channel"] == "#returns-finance"
    assert message["text"] == text
    assert message["text"].startswith("<!subteam^S0FINANCE>")
    assert message["blocks"] == blocks


def test_settings_defaults_and_lookups() -> None:
    settings = SlackSettings()
    assert settings.token is None and settings.enabled and not settings.active
    with pytest.raises(ValueError, match="RETURNBRIDGE_SLACK__TOKEN is not set"):
        DigestPoster(settings)
    assert SlackSettings(token=SecretStr("t")).active
    assert not SlackSettings(token=SecretStr("t"), enabled=False).active
    assert settings.base_url == "https://slack.com/api/"
    assert settings.channels == {
        "finance": "#returns-finance",
        "ops": "#returns-ops",
        "cx": "#returns-cx",
    }
    assert settings.mentions == {}
    assert (settings.timeout_seconds, settings.rate_limit_retries) == (10, 3)
    assert (settings.max_retry_after_seconds, settings.enabled) == (60, True)
    assert settings.channel_for("ops") == "#returns-ops"
    assert settings.mention_for("ops") is None
    with pytest.raises(KeyError, match="'legal'"):
        settings.channel_for("legal")
    with pytest.raises(ValidationError):
        SlackSettings.model_validate({"chanels": {}})


# --------------------------------------------------------------------------- the shared kinds


def test_errors_join_the_shared_kinds() -> None:
    assert issubclass(SlackUnavailable, TransientError)
    assert issubclass(SlackRateLimited, SlackUnavailable) and issubclass(
        SlackRateLimited, RateLimitedError
    )
    assert issubclass(SlackRejected, RejectedError) and not issubclass(SlackRejected, AuthError)
    assert issubclass(SlackAuthError, SlackRejected) and issubclass(SlackAuthError, AuthError)
    for error in (SlackUnavailable, SlackRateLimited, SlackRejected, SlackAuthError):
        assert issubclass(error, SlackError) and issubclass(error, ApiError)


def test_a_refused_token_is_the_auth_kind(slack: SlackStandIn, sleeps: Sleeps) -> None:
    with pytest.raises(AuthError) as raised:
        poster(slack, sleeps, token="xoxb-wrong").post("#returns-ops", "x", BLOCKS)
    assert isinstance(raised.value, SlackAuthError)
    assert isinstance(raised.value, SlackRejected) and raised.value.error == "invalid_auth"


def test_an_unknown_channel_is_rejected_not_auth(slack: SlackStandIn, sleeps: Sleeps) -> None:
    with pytest.raises(RejectedError) as raised:
        poster(slack, sleeps).post("#general", "x", BLOCKS)
    assert not isinstance(raised.value, AuthError)


def test_rate_limited_beyond_the_retries_is_the_rate_limited_kind(
    slack: SlackStandIn, sleeps: Sleeps
) -> None:
    slack.set_faults(rate_limited=4, retry_after=1)
    with pytest.raises(RateLimitedError) as raised:
        poster(slack, sleeps).post("#returns-ops", "x", BLOCKS)
    assert isinstance(raised.value, SlackRateLimited) and raised.value.retry_after == 1


def test_down_is_transient_not_rate_limited(slack: SlackStandIn, sleeps: Sleeps) -> None:
    slack.set_faults(down=True)
    with pytest.raises(TransientError) as raised:
        poster(slack, sleeps).post("#returns-ops", "x", BLOCKS)
    assert not isinstance(raised.value, RateLimitedError)


# --------------------------------------------------------------------------- settings.client


def test_settings_client_posts_in_a_with_block(slack: SlackStandIn, sleeps: Sleeps) -> None:
    slack.set_faults(rate_limited=1, retry_after=2)
    with slack.settings().client(sleep=sleeps) as posting:
        assert isinstance(posting, DigestPoster)
        ts = posting.post("#returns-ops", "x", BLOCKS)
    assert [m["ts"] for m in slack.messages()] == [ts]
    assert sleeps.seen == [2]


def test_settings_client_timeout_seconds_replaces_the_settings(slack: SlackStandIn) -> None:
    assert slack.settings().client().client.timeout == 10
    assert slack.settings().client(timeout_seconds=2.5).client.timeout == 3  # whole seconds
    with pytest.raises(ValueError, match="timeout_seconds"):
        slack.settings().client(timeout_seconds=0)


def test_settings_client_without_a_token_is_refused() -> None:
    with pytest.raises(ValueError, match="RETURNBRIDGE_SLACK__TOKEN is not set"):
        SlackSettings().client()


def test_http_transport_carries_the_post_instead_of_urllib() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True, "ts": "1.000200", "channel": "C1"})

    settings = SlackSettings(base_url="http://slack.invalid/api/", token=SecretStr("xoxb-t"))
    with settings.client(http_transport=httpx.MockTransport(handler)) as posting:
        assert posting.post("#returns-ops", "hello", BLOCKS) == "1.000200"
    [request] = seen
    assert str(request.url) == "http://slack.invalid/api/chat.postMessage"
    assert request.headers["authorization"] == "Bearer xoxb-t"
    assert request.headers["content-type"].startswith("application/json")
    body = json.loads(request.content)
    assert body["channel"] == "#returns-ops" and body["text"] == "hello"
    assert body["blocks"] == BLOCKS and body["unfurl_links"] is False


def test_http_transport_keeps_the_classification() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "3"}, json={"ok": False}),
            httpx.Response(200, json={"ok": False, "error": "channel_not_found"}),
        ]
    )
    settings = SlackSettings(base_url="http://slack.invalid/api/", token=SecretStr("xoxb-t"))
    sleeps = Sleeps()
    transport = httpx.MockTransport(lambda request: next(answers))
    with pytest.raises(SlackRejected, match="channel_not_found"):
        settings.client(http_transport=transport, sleep=sleeps).post("#x", "x", BLOCKS)
    assert sleeps.seen == [3]

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    refused = httpx.MockTransport(refuse)
    with pytest.raises(SlackUnavailable, match=r"could not reach Slack.*ConnectError"):
        settings.client(http_transport=refused).post("#x", "x", BLOCKS)

    wrong = settings.model_copy(update={"base_url": "ftp://slack.invalid/api/"})
    with pytest.raises(SlackRejected, match="bad request"):
        wrong.client(http_transport=refused).post("#x", "x", BLOCKS)
