"""DigestPoster's calls for the digest's buttons (`update`, `open_view`, `message`,
`post_ephemeral`) against the Slack stand-in over real loopback HTTP, and the signing settings."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from returnbridge.connectors.slack import (
    DigestPoster,
    SlackRejected,
    SlackSettings,
    SlackUnavailable,
)
from returnbridge.connectors.slack.interactions import close_modal
from returnbridge.settings import Settings
from returnbridge.simulators.slack import SlackStandIn

SECTION: dict[str, Any] = {
    "type": "section",
    "block_id": "exc:1",
    "text": {"type": "mrkdwn", "text": "*#1* Return missing"},
}
DONE: dict[str, Any] = {
    "type": "context",
    "block_id": "done:1",
    "elements": [{"type": "mrkdwn", "text": "✅ Resolved by @alice"}],
}


def client(slack: SlackStandIn) -> DigestPoster:
    return slack.settings().client(sleep=lambda _: None)


def trigger(slack: SlackStandIn, *, age: float = 0.0) -> str:
    """A trigger_id as a click would have issued it."""
    trigger_id = f"trigger-{time.monotonic_ns()}"
    with slack.state.lock:
        slack.state.triggers[trigger_id] = {
            "user": {"id": "U1", "username": "alice"},
            "url": "http://127.0.0.1:9/slack/actions",
            "issued": time.monotonic() - age,
            "used": False,
        }
    return trigger_id


def test_update_replaces_the_message_in_place(slack: SlackStandIn) -> None:
    with client(slack) as poster:
        ts = poster.post("#returns-ops", "digest", [SECTION])
        assert poster.update("#returns-ops", ts, "digest", [SECTION, DONE]) == ts
    [message] = slack.messages()
    assert message["blocks"] == [SECTION, DONE]
    [update] = slack.state.effects_of("chat.update")
    assert (update["channel"], update["ts"], update["blocks"]) == (
        "#returns-ops",
        ts,
        [SECTION, DONE],
    )
    assert [c["method"] for c in slack.calls()] == ["chat.postMessage", "chat.update"]


def test_update_of_an_unknown_message_is_rejected(slack: SlackStandIn) -> None:
    with client(slack) as poster, pytest.raises(SlackRejected, match="message_not_found"):
        poster.update("#returns-ops", "1.000001", "x", [SECTION])


def test_message_reads_one_message_back_by_its_ts(slack: SlackStandIn) -> None:
    with client(slack) as poster:
        stamps = [poster.post("#returns-ops", f"m{i}", [SECTION]) for i in range(3)]
        poster.post("#returns-cx", "elsewhere", [SECTION])
        found = poster.message("#returns-ops", stamps[1])
        assert found is not None
        assert (found["ts"], found["text"], found["blocks"]) == (stamps[1], "m1", [SECTION])
        assert poster.message("#returns-ops", "1600000000.000100") is None


def test_post_ephemeral(slack: SlackStandIn) -> None:
    with client(slack) as poster:
        assert poster.post_ephemeral("#returns-ops", "U1", "only you see this")
    [shown] = slack.state.effects_of("chat.postEphemeral")
    assert (shown["channel"], shown["user"], shown["text"]) == (
        "#returns-ops",
        "U1",
        "only you see this",
    )


def test_open_view_once_per_trigger(slack: SlackStandIn) -> None:
    view = close_modal("ignore", 1, channel="C1", ts="1.1")
    trigger_id = trigger(slack)
    with client(slack) as poster:
        view_id = poster.open_view(trigger_id, view)
        assert view_id.startswith("V")
        with pytest.raises(SlackRejected, match="exchanged_trigger_id"):
            poster.open_view(trigger_id, view)
        with pytest.raises(SlackRejected, match="invalid_trigger_id"):
            poster.open_view("made-up", view)
        with pytest.raises(SlackRejected, match="expired_trigger_id"):
            poster.open_view(trigger(slack, age=4), view)
    [opened] = slack.state.views.values()
    assert opened["id"] == view_id
    assert opened["state"] == "open"
    assert opened["view"]["private_metadata"] == view["private_metadata"]


@pytest.mark.parametrize(
    "change",
    [
        {"type": "home"},
        {"title": {"type": "plain_text", "text": "t" * 25}},
        {"submit": None},
    ],
)
def test_open_view_refuses_what_slack_refuses(slack: SlackStandIn, change: dict[str, Any]) -> None:
    view = {**close_modal("resolve", 1, channel="C1", ts="1.1"), **change}
    with client(slack) as poster, pytest.raises(SlackRejected, match="invalid_arguments"):
        poster.open_view(trigger(slack), view)


def test_down_slack_is_unavailable_for_every_call(slack: SlackStandIn) -> None:
    with client(slack) as poster:
        ts = poster.post("#returns-ops", "digest", [SECTION])
        slack.set_faults(down=True)
        with pytest.raises(SlackUnavailable, match="503"):
            poster.update("#returns-ops", ts, "x", [SECTION])
        with pytest.raises(SlackUnavailable, match="503"):
            poster.message("#returns-ops", ts)
        with pytest.raises(SlackUnavailable, match="503"):
            poster.post_ephemeral("#returns-ops", "U1", "x")


# ---------------------------------------------------------------------------- settings


def test_signing_secrets_current_then_next() -> None:
    settings = SlackSettings(signing_secret=SecretStr("a"), next_signing_secret=SecretStr("b"))
    assert settings.signing_secrets == ("a", "b")
    assert not settings.interactive  # no token
    assert SlackSettings(next_signing_secret=SecretStr("b")).signing_secrets == ("b",)
    assert SlackSettings().signing_secrets == ()
    with_token = SlackSettings(token=SecretStr("xoxb"), signing_secret=SecretStr("a"))
    assert with_token.interactive


def test_empty_signing_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="must not be empty"):
        SlackSettings(signing_secret=SecretStr(""))


def test_signing_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETURNBRIDGE_SLACK__SIGNING_SECRET", "current")
    monkeypatch.setenv("RETURNBRIDGE_SLACK__NEXT_SIGNING_SECRET", "next")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.slack.signing_secrets == ("current", "next")
    assert "current" not in repr(settings.slack)
