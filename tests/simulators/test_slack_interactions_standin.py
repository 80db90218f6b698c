"""The Slack stand-in's interactivity over real loopback HTTP: `chat.update`,
`conversations.history`, `chat.postEphemeral`, `views.open`, and the signed clicks and modal
submissions `/_sim/interact` and `/_sim/submit_view` make (received here by a small app that
records what Slack would send it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from returnbridge.cli import app as cli_app
from returnbridge.connectors.slack.buttons import RESOLVE, RETRY, RETRY_CONFIRMED, item_actions
from returnbridge.connectors.slack.interactions import (
    NOTE_BLOCK_ID,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    close_modal,
    decode_payload,
    verify_request,
)
from returnbridge.simulators.server import free_port, serve_in_thread
from returnbridge.simulators.slack import SlackStandIn, create_slack_app
from returnbridge.simulators.slack.app import DEFAULT_SIGNING_SECRET

TOKEN = "xoxb-returnbridge-sim"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ALICE = {"id": "U01ALICE", "username": "alice"}


@dataclass
class Recorder:
    """An app's interactivity URL: records each request, answers `answer` (None: empty 200), and
    on a click can open a modal with its trigger_id (`open_modal_with`: the stand-in's API)."""

    url: str = ""
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    open_modal_with: str | None = None

    def payloads(self) -> list[dict[str, Any]]:
        return [decode_payload(body) for _, body in self.requests]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorded = Recorder()

    async def actions(request: Request) -> Response:
        body = await request.body()
        recorded.requests.append((dict(request.headers), body))
        payload = decode_payload(body)
        if recorded.open_modal_with and payload["type"] == "block_actions":
            view = close_modal("ignore", 7, channel="C1", ts="1.1")
            async with httpx.AsyncClient() as client:
                await client.post(
                    f"{recorded.open_modal_with}views.open",
                    json={"trigger_id": payload["trigger_id"], "view": view},
                    headers=AUTH,
                )
        if recorded.answer is None:
            return Response(status_code=200)
        return JSONResponse(recorded.answer)

    app = Starlette(routes=[Route("/slack/actions", actions, methods=["POST"])])
    with serve_in_thread(app) as server:
        recorded.url = f"{server.url}/slack/actions"
        yield recorded


@pytest.fixture
def http(slack: SlackStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=slack.url, timeout=10) as client:
        yield client


def digest_blocks(*ids: int, warning: str | None = None) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for exception_id in ids:
        blocks.append(
            {
                "type": "section",
                "block_id": f"exc:{exception_id}",
                "text": {"type": "mrkdwn", "text": f"#{exception_id}"},
            }
        )
        blocks.append(item_actions(exception_id, retry_warning=warning))
    return blocks


def post(http: httpx.Client, blocks: list[dict[str, Any]], channel: str = "#returns-ops") -> str:
    answer = http.post(
        "/api/chat.postMessage",
        json={"channel": channel, "text": "digest", "blocks": blocks},
        headers=AUTH,
    ).json()
    assert answer["ok"], answer
    ts: str = answer["ts"]
    return ts


def interact(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/_sim/interact", json={"user": ALICE, "channel": "#returns-ops", **body})


# ---------------------------------------------------------------------------- clicks


def test_a_click_is_a_signed_block_actions_payload_built_from_the_message(
    http: httpx.Client, recorder: Recorder
) -> None:
    blocks = digest_blocks(7, 8)
    ts = post(http, blocks)

    response = interact(http, url=recorder.url, ts=ts, action_id=RETRY, value="8")

    assert response.status_code == 200
    answer = response.json()
    assert (answer["sent"], answer["status"], answer["answer"]) == (True, 200, None)
    [(headers, body)] = recorder.requests
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    verify_request(
        [DEFAULT_SIGNING_SECRET],
        body,
        headers[TIMESTAMP_HEADER.lower()],
        headers[SIGNATURE_HEADER.lower()],
    )
    payload = decode_payload(body)
    assert payload == answer["payload"]
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == "U01ALICE"
    assert payload["user"]["username"] == "alice"
    assert payload["container"]["message_ts"] == ts
    assert payload["container"]["channel_id"] == payload["channel"]["id"]
    assert payload["channel"]["name"] == "returns-ops"
    assert payload["message"]["blocks"] == blocks
    assert payload["trigger_id"] == answer["trigger_id"]
    [action] = payload["actions"]
    assert (action["action_id"], action["block_id"], action["value"]) == (RETRY, "act:8", "8")


@pytest.mark.parametrize(
    ("click", "error"),
    [
        ({"action_id": "rb_delete", "value": "7"}, "no button 'rb_delete'"),
        ({"action_id": RETRY, "value": "9"}, "no button"),
        ({"action_id": RETRY, "block_id": "act:8", "value": "7"}, "no button"),
        ({"action_id": RETRY_CONFIRMED, "value": "7"}, "no button"),  # no confirm dialog here
        ({"action_id": RETRY}, "2 buttons"),
    ],
)
def test_only_a_button_the_message_shows_can_be_clicked(
    http: httpx.Client, recorder: Recorder, click: dict[str, Any], error: str
) -> None:
    ts = post(http, digest_blocks(7, 8))
    response = interact(http, url=recorder.url, ts=ts, **click)
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert recorder.requests == []


def test_a_click_on_an_unknown_message_or_channel(http: httpx.Client, recorder: Recorder) -> None:
    post(http, digest_blocks(7))
    response = interact(http, url=recorder.url, ts="1.000001", action_id=RETRY)
    assert response.status_code == 400
    assert "no message" in response.json()["error"]
    response = interact(http, url=recorder.url, ts="1.000001", action_id=RETRY, channel="#nope")
    assert response.status_code == 400


def test_a_button_with_a_confirm_dialog_is_sent_only_when_confirmed(
    http: httpx.Client, recorder: Recorder
) -> None:
    ts = post(http, digest_blocks(7, warning="Retrying #7 can refund 48.00 EUR"))

    cancelled = interact(http, url=recorder.url, ts=ts, action_id=RETRY_CONFIRMED, confirm=False)
    assert cancelled.json()["sent"] is False
    assert cancelled.json()["confirm"]["text"]["text"] == "Retrying #7 can refund 48.00 EUR"
    assert recorder.requests == []

    confirmed = interact(http, url=recorder.url, ts=ts, action_id=RETRY_CONFIRMED)
    assert confirmed.json()["sent"] is True
    [payload] = recorder.payloads()
    assert payload["actions"][0]["action_id"] == RETRY_CONFIRMED


def test_the_answer_of_the_app_is_returned(http: httpx.Client, recorder: Recorder) -> None:
    recorder.answer = {"text": "thanks"}
    ts = post(http, digest_blocks(7))
    answer = interact(http, url=recorder.url, ts=ts, action_id=RETRY).json()
    assert answer["answer"] == {"text": "thanks"}
    [sent] = http.get("/_sim/interactions").json()["interactions"]
    assert (sent["type"], sent["url"], sent["status"]) == ("block_actions", recorder.url, 200)


def test_age_seconds_back_dates_the_signature(http: httpx.Client, recorder: Recorder) -> None:
    ts = post(http, digest_blocks(7))
    interact(http, url=recorder.url, ts=ts, action_id=RETRY, age_seconds=600)
    [(headers, body)] = recorder.requests
    with pytest.raises(ValueError, match="old"):
        verify_request(
            [DEFAULT_SIGNING_SECRET],
            body,
            headers[TIMESTAMP_HEADER.lower()],
            headers[SIGNATURE_HEADER.lower()],
        )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"user": "alice"}, "user"),
        ({"user": ALICE, "url": "ftp://x"}, "url"),
        ({"user": ALICE, "url": "http://x", "action_id": RETRY, "ts": 1}, "ts"),
        (
            {"user": ALICE, "url": "http://x", "ts": "1", "action_id": RETRY, "confirm": "yes"},
            "confirm",
        ),
        (
            {"user": ALICE, "url": "http://x", "ts": "1", "action_id": RETRY, "wait_seconds": -1},
            "wait_seconds",
        ),
        ({"user": ALICE, "surprise": 1}, "unknown key"),
    ],
)
def test_bad_interact_requests_are_400(
    http: httpx.Client, body: dict[str, Any], error: str
) -> None:
    response = http.post("/_sim/interact", json={"channel": "#returns-ops", **body})
    assert response.status_code == 400
    assert error in response.json()["error"]


def test_an_unreachable_app_is_502(http: httpx.Client) -> None:
    ts = post(http, digest_blocks(7))
    url = f"http://127.0.0.1:{free_port()}/slack/actions"
    response = interact(http, url=url, ts=ts, action_id=RETRY)
    assert response.status_code == 502
    assert "could not reach" in response.json()["error"]


def test_signing_secret_and_interactivity_url_are_set_when_creating_the_app(
    recorder: Recorder,
) -> None:
    app = create_slack_app(signing_secret="custom-secret", interactivity_url=recorder.url)
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        ts = post(http, digest_blocks(7))
        response = interact(http, ts=ts, action_id=RETRY)  # no url: the app's
    assert response.status_code == 200
    [(headers, body)] = recorder.requests
    verify_request(
        ["custom-secret"],
        body,
        headers[TIMESTAMP_HEADER.lower()],
        headers[SIGNATURE_HEADER.lower()],
    )


def test_without_an_interactivity_url_a_click_needs_one(http: httpx.Client) -> None:
    ts = post(http, digest_blocks(7))
    response = interact(http, ts=ts, action_id=RETRY)
    assert response.status_code == 400
    assert "interactivity URL" in response.json()["error"]


def test_cli_options() -> None:
    result = CliRunner().invoke(cli_app, ["sim", "slack", "--help"])
    assert result.exit_code == 0
    assert "--signing-secret" in result.output
    assert "--interactivity-url" in result.output


# ---------------------------------------------------------------------------- modals


def open_modal(http: httpx.Client, recorder: Recorder, slack: SlackStandIn) -> dict[str, Any]:
    """Click Resolve…; the recorder opens the ignore modal with the click's trigger_id."""
    recorder.open_modal_with = slack.base_url
    ts = post(http, digest_blocks(7))
    answer = interact(http, url=recorder.url, ts=ts, action_id=RESOLVE, wait_seconds=5).json()
    [opened] = answer["follow_ups"]
    assert opened["method"] == "views.open"
    assert opened["trigger_id"] == answer["trigger_id"]
    assert opened["user"]["id"] == ALICE["id"]
    return opened


def test_a_modal_opened_with_a_clicks_trigger_is_recorded(
    http: httpx.Client, recorder: Recorder, slack: SlackStandIn
) -> None:
    opened = open_modal(http, recorder, slack)
    [view] = http.get("/_sim/views").json()["views"]
    assert view["id"] == opened["id"]
    assert view["state"] == "open"
    assert view["url"] == recorder.url
    assert view["view"]["callback_id"] == "rb_close_exception"


def test_submit_view_sends_a_signed_view_submission(
    http: httpx.Client, recorder: Recorder, slack: SlackStandIn
) -> None:
    opened = open_modal(http, recorder, slack)

    response = http.post(
        "/_sim/submit_view", json={"view_id": opened["id"], "values": {NOTE_BLOCK_ID: "why"}}
    )

    assert response.status_code == 200
    assert response.json()["view_state"] == "submitted"
    headers, body = recorder.requests[-1]
    verify_request(
        [DEFAULT_SIGNING_SECRET],
        body,
        headers[TIMESTAMP_HEADER.lower()],
        headers[SIGNATURE_HEADER.lower()],
    )
    payload = decode_payload(body)
    assert payload["type"] == "view_submission"
    assert payload["user"]["id"] == ALICE["id"]  # who opened it
    view = payload["view"]
    assert view["id"] == opened["id"]
    assert json.loads(view["private_metadata"])["exception_id"] == 7
    assert view["state"]["values"][NOTE_BLOCK_ID]["rb_note"]["value"] == "why"
    again = http.post("/_sim/submit_view", json={"view_id": opened["id"], "values": {}})
    assert again.status_code == 400
    assert "submitted" in again.json()["error"]


def test_an_errors_answer_keeps_the_modal_open(
    http: httpx.Client, recorder: Recorder, slack: SlackStandIn
) -> None:
    opened = open_modal(http, recorder, slack)
    recorder.answer = {"response_action": "errors", "errors": {NOTE_BLOCK_ID: "say why"}}

    answer = http.post(
        "/_sim/submit_view", json={"view_id": opened["id"], "values": {NOTE_BLOCK_ID: " "}}
    ).json()

    assert answer["view_state"] == "open"
    [view] = http.get("/_sim/views").json()["views"]
    assert view["errors"] == {NOTE_BLOCK_ID: "say why"}


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({}, "required"),  # Slack does not submit a required input left empty
        ({NOTE_BLOCK_ID: ""}, "required"),
        ({"other": "x"}, "no input block"),
        ({NOTE_BLOCK_ID: {"other_action": "x"}}, "no element"),
        ({NOTE_BLOCK_ID: 3}, "string"),
    ],
)
def test_bad_submissions_are_not_sent(
    http: httpx.Client,
    recorder: Recorder,
    slack: SlackStandIn,
    values: dict[str, Any],
    error: str,
) -> None:
    opened = open_modal(http, recorder, slack)
    sent = len(recorder.requests)
    response = http.post("/_sim/submit_view", json={"view_id": opened["id"], "values": values})
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert len(recorder.requests) == sent


def test_an_unknown_view_cannot_be_submitted(http: httpx.Client) -> None:
    response = http.post("/_sim/submit_view", json={"view_id": "V0NOPE", "values": {}})
    assert response.status_code == 400
    assert "no view" in response.json()["error"]


# ---------------------------------------------------------------------------- Web API


def test_conversations_history_newest_first_within_latest(http: httpx.Client) -> None:
    stamps = [post(http, [{"type": "divider"}]) for _ in range(3)]
    post(http, [{"type": "divider"}], channel="#returns-cx")

    def history(**params: Any) -> list[str]:
        answer = http.get(
            "/api/conversations.history", params={"channel": "#returns-ops", **params}, headers=AUTH
        ).json()
        assert answer["ok"], answer
        return [m["ts"] for m in answer["messages"]]

    assert history() == stamps[::-1]
    assert history(latest=stamps[1], inclusive="1", limit="1") == [stamps[1]]
    assert history(latest=stamps[1]) == [stamps[0]]
    assert history(oldest=stamps[0]) == stamps[:0:-1]
    bad = http.get(
        "/api/conversations.history",
        params={"channel": "#returns-ops", "latest": "x"},
        headers=AUTH,
    )
    assert bad.json() == {"ok": False, "error": "invalid_ts_latest"}


def test_chat_update_changes_the_stored_message(http: httpx.Client, slack: SlackStandIn) -> None:
    ts = post(http, digest_blocks(7))
    new_blocks = digest_blocks(7)[:1]
    answer = http.post(
        "/api/chat.update",
        json={"channel": "#returns-ops", "ts": ts, "text": "done", "blocks": new_blocks},
        headers=AUTH,
    ).json()
    assert answer["ok"] is True
    assert answer["ts"] == ts
    [message] = slack.messages()
    assert (message["text"], message["blocks"]) == ("done", new_blocks)
    [update] = http.get("/_sim/updates").json()["updates"]
    assert (update["ts"], update["blocks"]) == (ts, new_blocks)
    for body, error in [
        ({"channel": "#returns-ops", "ts": "1.1", "text": "x"}, "message_not_found"),
        ({"channel": "#returns-ops", "ts": ts}, "no_text"),
        ({"channel": "#nope", "ts": ts, "text": "x"}, "channel_not_found"),
    ]:
        refused = http.post("/api/chat.update", json=body, headers=AUTH).json()
        assert refused["error"] == error
    assert http.post("/api/chat.update", json={}, headers={}).json()["error"] == "not_authed"


def test_post_ephemeral_needs_a_user(http: httpx.Client) -> None:
    ok = http.post(
        "/api/chat.postEphemeral",
        json={"channel": "#returns-ops", "user": "U1", "text": "only you"},
        headers=AUTH,
    ).json()
    assert ok["ok"] is True and ok["message_ts"]
    missing = http.post(
        "/api/chat.postEphemeral", json={"channel": "#returns-ops", "text": "x"}, headers=AUTH
    ).json()
    assert missing["error"] == "user_not_found"
    [shown] = http.get("/_sim/ephemerals").json()["ephemerals"]
    assert (shown["user"], shown["text"]) == ("U1", "only you")


def test_reset_forgets_views_effects_and_interactions(
    http: httpx.Client, recorder: Recorder, slack: SlackStandIn
) -> None:
    open_modal(http, recorder, slack)
    slack.reset()
    assert http.get("/_sim/views").json() == {"views": []}
    assert http.get("/_sim/interactions").json() == {"interactions": []}
    assert slack.state.effects == [] and slack.state.triggers == {}
