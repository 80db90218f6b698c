"""The Slack Web API stand-in over real loopback HTTP: answers, errors, faults and `/_sim`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from returnbridge.simulators.slack import SlackStandIn, create_slack_app
from returnbridge.simulators.slack.app import channel_id

TOKEN = "xoxb-returnbridge-sim"
BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "Returns digest"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*3 open*"}},
]


@pytest.fixture
def http(slack: SlackStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=slack.url, timeout=5) as client:
        yield client


def post(
    http: httpx.Client, body: dict[str, Any], token: str | None = TOKEN, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.post("/api/chat.postMessage", json=body, headers=headers, **kwargs)


def test_base_url_ends_in_api(slack: SlackStandIn) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/", slack.base_url)


def test_json_post_is_accepted_and_recorded(slack: SlackStandIn, http: httpx.Client) -> None:
    response = post(http, {"channel": "#returns-finance", "text": "digest", "blocks": BLOCKS})

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["channel"] == channel_id("#returns-finance")
    assert body["channel"].startswith("C")
    assert body["ts"] == "1700000000.000100"
    assert body["message"]["text"] == "digest"
    assert body["message"]["blocks"] == BLOCKS
    [message] = slack.messages()
    assert message["channel"] == "#returns-finance"
    assert message["channel_id"] == body["channel"]
    assert message["text"] == "digest"
    assert message["blocks"] == BLOCKS
    assert message["ts"] == "1700000000.000100"


def test_each_message_gets_a_later_ts(slack: SlackStandIn, http: httpx.Client) -> None:
    stamps = [
        post(http, {"channel": "#returns-ops", "text": f"m{i}"}).json()["ts"] for i in range(3)
    ]
    assert stamps == ["1700000000.000100", "1700000000.000200", "1700000000.000300"]
    assert [m["text"] for m in slack.messages()] == ["m0", "m1", "m2"]


def test_form_encoded_post_with_blocks_as_a_json_string(
    slack: SlackStandIn, http: httpx.Client
) -> None:
    response = http.post(
        "/api/chat.postMessage",
        data={
            "token": TOKEN,
            "channel": "returns-cx",  # without '#'
            "text": "form",
            "blocks": json.dumps(BLOCKS),
            "unfurl_links": "0",
        },
    )
    assert response.json()["ok"] is True, response.text
    [message] = slack.messages()
    assert message["channel"] == "#returns-cx"
    assert message["blocks"] == BLOCKS
    assert message["unfurl_links"] is False


def test_a_channel_can_be_named_by_its_id(slack: SlackStandIn, http: httpx.Client) -> None:
    cid = channel_id("#returns-ops")
    assert post(http, {"channel": cid, "text": "by id"}).json()["channel"] == cid
    assert slack.messages()[0]["channel"] == "#returns-ops"


@pytest.mark.parametrize(("token", "error"), [(None, "not_authed"), ("xoxb-wrong", "invalid_auth")])
def test_missing_or_wrong_token(
    slack: SlackStandIn, http: httpx.Client, token: str | None, error: str
) -> None:
    response = post(http, {"channel": "#returns-ops", "text": "x"}, token=token)
    assert response.status_code == 200
    assert response.json() == {"ok": False, "error": error}
    assert slack.messages() == []


def test_unknown_channel(slack: SlackStandIn, http: httpx.Client) -> None:
    response = post(http, {"channel": "#general", "text": "x"})
    assert response.json() == {"ok": False, "error": "channel_not_found"}
    assert slack.calls() == [
        {"method": "chat.postMessage", "status": 200, "error": "channel_not_found"}
    ]


@pytest.mark.parametrize(
    "blocks",
    [
        {"type": "section"},  # not a list
        "not json",
        ["section"],  # not objects
        [{"text": {"type": "mrkdwn", "text": "no type"}}],
        [{"type": 3}],
        [{"type": "divider"}] * 51,
        [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        [{"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}],
        [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
    ],
)
def test_invalid_blocks(slack: SlackStandIn, http: httpx.Client, blocks: Any) -> None:
    response = post(http, {"channel": "#returns-ops", "text": "x", "blocks": blocks})
    body = response.json()
    assert body["ok"] is False
    assert body["error"] == "invalid_blocks"
    assert body["errors"]
    assert slack.messages() == []


def test_no_text_and_no_blocks(slack: SlackStandIn, http: httpx.Client) -> None:
    response = post(http, {"channel": "#returns-ops"})
    assert response.json() == {"ok": False, "error": "no_text"}


def test_blocks_without_text_are_fine(slack: SlackStandIn, http: httpx.Client) -> None:
    assert post(http, {"channel": "#returns-ops", "blocks": BLOCKS}).json()["ok"] is True
    assert slack.messages()[0]["text"] == ""


def test_rate_limit_fault_answers_429_then_recovers(
    slack: SlackStandIn, http: httpx.Client
) -> None:
    faults = slack.set_faults(rate_limited=2, retry_after=2)
    assert faults == {"rate_limited": 2, "retry_after": 2.0, "down": False}

    for _ in range(2):
        response = post(http, {"channel": "#returns-ops", "text": "x"})
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "2"
        assert response.json() == {"ok": False, "error": "ratelimited"}
    assert post(http, {"channel": "#returns-ops", "text": "x"}).status_code == 200
    assert [c["status"] for c in slack.calls()] == [429, 429, 200]
    assert len(slack.messages()) == 1


def test_down_answers_503_until_up(slack: SlackStandIn, http: httpx.Client) -> None:
    slack.set_faults(down=True)
    assert post(http, {"channel": "#returns-ops", "text": "x"}).status_code == 503
    assert (
        http.post("/api/auth.test", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 503
    )
    slack.set_faults(down=False)
    assert post(http, {"channel": "#returns-ops", "text": "x"}).json()["ok"] is True


def test_auth_test(http: httpx.Client) -> None:
    good = http.post("/api/auth.test", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert good["ok"] is True
    assert good["bot_id"]
    bad = http.post("/api/auth.test", headers={"Authorization": "Bearer nope"}).json()
    assert bad == {"ok": False, "error": "invalid_auth"}


def test_unknown_method(http: httpx.Client) -> None:
    response = http.post("/api/chat.delete", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert response.json()["error"] == "unknown_method"


def test_reset_forgets_messages_calls_and_faults(slack: SlackStandIn, http: httpx.Client) -> None:
    post(http, {"channel": "#returns-ops", "text": "x"})
    slack.set_faults(rate_limited=5, down=True)
    slack.reset()
    assert slack.messages() == []
    assert slack.calls() == []
    assert http.get("/_sim/faults").json() == {"rate_limited": 0, "retry_after": 1.0, "down": False}
    assert post(http, {"channel": "#returns-ops", "text": "x"}).json()["ts"] == "1700000000.000100"


@pytest.mark.parametrize(
    "body",
    [{"rate_limited": -1}, {"rate_limited": True}, {"retry_after": "2"}, {"down": 1}, {"slow": 1}],
)
def test_bad_fault_requests_are_400(http: httpx.Client, body: dict[str, Any]) -> None:
    response = http.post("/_sim/faults", json=body)
    assert response.status_code == 400
    assert response.json()["error"]


def test_slack_sdk_client_works_against_it(slack: SlackStandIn) -> None:
    client = WebClient(token=TOKEN, base_url=slack.base_url, retry_handlers=[])
    assert client.auth_test()["ok"] is True
    response = client.chat_postMessage(channel="#returns-finance", text="sdk", blocks=BLOCKS)
    assert response["ts"] == slack.messages()[0]["ts"]
    assert slack.messages()[0]["blocks"] == BLOCKS
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="#nope", text="sdk")
    assert raised.value.response["error"] == "channel_not_found"


def test_token_and_channels_are_constructor_arguments() -> None:
    with SlackStandIn(token="xoxb-other", channels=["alerts"]) as slack:
        client = WebClient(token="xoxb-other", base_url=slack.base_url, retry_handlers=[])
        client.chat_postMessage(channel="#alerts", text="hi")
        with pytest.raises(SlackApiError) as raised:
            client.chat_postMessage(channel="#returns-finance", text="hi")
        assert raised.value.response["error"] == "channel_not_found"
        assert [m["channel"] for m in slack.messages()] == ["#alerts"]


def test_create_slack_app_keeps_its_state_on_the_app() -> None:
    app = create_slack_app(token="t", channels=["#a", "b"])
    assert app.state.slack.token == "t"
    assert set(app.state.slack.channels) == {"#a", "#b"}
    with pytest.raises(ValueError):
        create_slack_app(token="")
