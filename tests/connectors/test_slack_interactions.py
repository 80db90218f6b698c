"""connectors/slack/interactions.py: Slack request signing, the payloads of the digest's buttons
and modal, the modal, and the digest message updated in place (pure functions)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from returnbridge.connectors.slack.buttons import (
    ASSIGN,
    IGNORE,
    RESOLVE,
    RETRY,
    RETRY_CONFIRMED,
    item_actions,
)
from returnbridge.connectors.slack.interactions import (
    MAX_BLOCKS,
    MODAL_CALLBACK_ID,
    NOTE_ACTION_ID,
    NOTE_BLOCK_ID,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ButtonClick,
    InteractionError,
    ModalSubmission,
    NotOurs,
    SlackReplayError,
    SlackSignatureError,
    SlackUser,
    close_modal,
    compute_signature,
    decode_payload,
    done_line,
    encode_payload,
    item_text,
    next_step,
    note_errors,
    parse_interaction,
    signed_headers,
    updated_blocks,
    verify_request,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_760_000_000
BODY = b"payload=%7B%22type%22%3A%22block_actions%22%7D"

# ---------------------------------------------------------------------------- signing


def test_signature_is_slacks_v0_scheme() -> None:
    expected = hmac.new(SECRET.encode(), f"v0:{NOW}:".encode() + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, NOW, BODY) == f"v0={expected}"


def test_slacks_documented_example() -> None:
    """The worked example of api.slack.com/authentication/verifying-requests-from-slack."""
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    timestamp = "1531420618"
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
        b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
        b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
        b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
        b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert compute_signature(secret, timestamp, body) == signature
    assert verify_request([secret], body, timestamp, signature, now=1531420618) == 1531420618


def test_signed_headers_verify() -> None:
    headers = signed_headers(SECRET, BODY, NOW)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    when = verify_request(
        [SECRET], BODY, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], now=NOW + 10
    )
    assert when == NOW


def test_next_secret_is_accepted_and_a_third_is_not() -> None:
    signature = compute_signature("next-secret", NOW, BODY)
    verify_request([SECRET, "next-secret"], BODY, str(NOW), signature, now=NOW)
    with pytest.raises(SlackSignatureError, match="does not match"):
        verify_request(
            [SECRET, "next-secret"], BODY, str(NOW), compute_signature("x", NOW, BODY), now=NOW
        )


@pytest.mark.parametrize(("skew", "word"), [(301, "old"), (-301, "future")])
def test_timestamps_over_five_minutes_away_are_replays(skew: int, word: str) -> None:
    signature = compute_signature(SECRET, NOW, BODY)
    with pytest.raises(SlackReplayError, match=word):
        verify_request([SECRET], BODY, str(NOW), signature, now=NOW + skew)
    verify_request([SECRET], BODY, str(NOW), signature, now=NOW + 299)


@pytest.mark.parametrize(
    ("timestamp", "signature", "message"),
    [
        (None, "v0=ab", TIMESTAMP_HEADER),
        (str(NOW), None, SIGNATURE_HEADER),
        ("yesterday", "v0=ab", "not a unix time"),
        ("\uff11\uff17\uff16", "v0=ab", "not a unix time"),  # fullwidth (non-ASCII) digits
        (str(NOW), "v1=ab", "not a v0= signature"),
        (str(NOW), "v0=é", "does not match"),
        (str(NOW), "v0=" + "0" * 64, "does not match"),
    ],
)
def test_bad_headers_are_refused(
    timestamp: str | None, signature: str | None, message: str
) -> None:
    with pytest.raises(SlackSignatureError, match=message):
        verify_request([SECRET], BODY, timestamp, signature, now=NOW)


def test_a_changed_body_is_refused() -> None:
    signature = compute_signature(SECRET, NOW, BODY)
    with pytest.raises(SlackSignatureError):
        verify_request([SECRET], BODY + b"x", str(NOW), signature, now=NOW)


def test_no_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no signing secret"):
        verify_request([], BODY, str(NOW), "v0=ab", now=NOW)


# ---------------------------------------------------------------------------- payloads


def test_payload_round_trip() -> None:
    payload = {"type": "block_actions", "text": "a & b = c?"}
    assert decode_payload(encode_payload(payload)) == payload


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff", "url-encoded"),
        (b"nopayload", "url-encoded"),
        (b"other=1", "payload"),
        (b"payload=1&payload=2", "payload"),
        (b"payload=%7Bnot", "not JSON"),
        (b"payload=%5B1%5D", "JSON object"),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(InteractionError, match=message):
        decode_payload(body)


def digest_blocks(*ids: int, retry_warning: str | None = None) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Returns digest — Ops"}}
    ]
    for exception_id in ids:
        blocks.append(
            {
                "type": "section",
                "block_id": f"exc:{exception_id}",
                "text": {"type": "mrkdwn", "text": f"*#{exception_id}* Return missing in Centra"},
            }
        )
        blocks.append(item_actions(exception_id, retry_warning=retry_warning))
    return blocks


def click(action_id: str, exception_id: int = 7, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U1", "username": "alice", "name": "alice", "team_id": "T1"},
        "container": {"type": "message", "message_ts": "1.000100", "channel_id": "C1"},
        "channel": {"id": "C1", "name": "returns-ops"},
        "trigger_id": "123.456.abc",
        "message": {"text": "digest", "ts": "1.000100", "blocks": digest_blocks(exception_id)},
        "actions": [
            {
                "action_id": action_id,
                "block_id": f"act:{exception_id}",
                "value": str(exception_id),
                "type": "button",
            }
        ],
    }
    payload.update(changes)
    return payload


@pytest.mark.parametrize("action_id", [RETRY, RETRY_CONFIRMED, RESOLVE, IGNORE, ASSIGN])
def test_a_button_click(action_id: str) -> None:
    parsed = parse_interaction(click(action_id))
    assert isinstance(parsed, ButtonClick)
    assert parsed.action_id == action_id
    assert (parsed.exception_id, parsed.channel, parsed.ts) == (7, "C1", "1.000100")
    assert parsed.trigger_id == "123.456.abc"
    assert parsed.user == SlackUser("U1", "alice")
    assert parsed.user.actor == "slack:U1 (alice)"
    assert parsed.user.handle == "@alice"
    assert parsed.text == "digest"
    assert parsed.blocks == digest_blocks(7)
    assert parsed.closing == {RESOLVE: "resolve", IGNORE: "ignore"}.get(action_id)


def test_username_falls_back_to_name_then_id() -> None:
    for user, expected in [
        ({"id": "U9", "name": "bob"}, SlackUser("U9", "bob")),
        ({"id": "U9"}, SlackUser("U9", "U9")),
    ]:
        parsed = parse_interaction(click(RETRY, user=user))
        assert isinstance(parsed, ButtonClick)
        assert parsed.user == expected


def test_channel_and_ts_from_channel_and_message_without_container() -> None:
    payload = click(RETRY)
    del payload["container"]
    parsed = parse_interaction(payload)
    assert isinstance(parsed, ButtonClick)
    assert (parsed.channel, parsed.ts) == ("C1", "1.000100")


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"type": "view_closed"}, "view_closed"),
        ({"type": "shortcut"}, "shortcut"),
        (click("someone_elses_button"), "block_actions"),
        (
            {"type": "view_submission", "view": {"callback_id": "other"}, "user": {"id": "U"}},
            "view_submission",
        ),
    ],
)
def test_payloads_that_are_not_ours(payload: dict[str, Any], kind: str) -> None:
    parsed = parse_interaction(payload)
    assert isinstance(parsed, NotOurs)
    assert parsed.kind == kind


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "type"),
        (click(RETRY, actions=[]), "actions"),
        (click(RETRY, user={}), "user.id"),
        (
            click(RETRY, actions=[{"action_id": RETRY, "value": "x", "block_id": "act:7"}]),
            "not an exception id",
        ),
        (
            click(RETRY, actions=[{"action_id": RETRY, "value": "7", "block_id": "act:8"}]),
            "does not hold",
        ),
        (click(RETRY, container={}, channel={}), "not on a message"),
        (click(RETRY, message={"blocks": "x"}), "blocks"),
    ],
)
def test_malformed_clicks(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(InteractionError, match=message):
        parse_interaction(payload)


def submission(note: str | None, kind: str = "resolve", **meta_changes: Any) -> dict[str, Any]:
    view = close_modal("ignore" if kind == "ignore" else "resolve", 7, channel="C1", ts="1.000100")
    meta = {**json.loads(view["private_metadata"]), **meta_changes}
    view = {**view, "id": "V1", "private_metadata": json.dumps(meta)}
    view["state"] = {"values": {NOTE_BLOCK_ID: {NOTE_ACTION_ID: {"type": "x", "value": note}}}}
    return {"type": "view_submission", "user": {"id": "U2", "username": "bob"}, "view": view}


@pytest.mark.parametrize("action", ["resolve", "ignore"])
def test_a_modal_submission(action: str) -> None:
    parsed = parse_interaction(submission("  refunded by hand \n", action))
    assert parsed == ModalSubmission(
        user=SlackUser("U2", "bob"),
        view_id="V1",
        action="ignore" if action == "ignore" else "resolve",
        exception_id=7,
        channel="C1",
        ts="1.000100",
        note="refunded by hand",
    )


def test_an_empty_note_is_empty() -> None:
    parsed = parse_interaction(submission(None))
    assert isinstance(parsed, ModalSubmission)
    assert parsed.note == ""


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exception_id": "7"}, "exception_id"),
        ({"action": "retry"}, "resolve or ignore"),
        ({"ts": ""}, "channel or ts"),
    ],
)
def test_malformed_submissions(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InteractionError, match=message):
        parse_interaction(submission("x", **changes))


def test_submission_with_broken_metadata() -> None:
    payload = submission("x")
    payload["view"]["private_metadata"] = "{"
    with pytest.raises(InteractionError, match="not JSON"):
        parse_interaction(payload)


# ---------------------------------------------------------------------------- the modal


def test_resolve_modal_has_an_optional_note() -> None:
    view = close_modal("resolve", 12, channel="C1", ts="1.1", item_text="*#12* Return missing")
    assert view["type"] == "modal"
    assert view["callback_id"] == MODAL_CALLBACK_ID
    assert view["title"]["text"] == "Resolve #12"
    assert len(view["title"]["text"]) <= 24
    assert view["submit"]["text"] == "Resolve"
    assert json.loads(view["private_metadata"]) == {
        "exception_id": 12,
        "action": "resolve",
        "channel": "C1",
        "ts": "1.1",
    }
    section, note = view["blocks"]
    assert section["text"]["text"] == "*#12* Return missing"
    assert note["type"] == "input"
    assert note["block_id"] == NOTE_BLOCK_ID
    assert note["optional"] is True
    assert note["element"]["type"] == "plain_text_input"
    assert note["element"]["action_id"] == NOTE_ACTION_ID


def test_ignore_modal_requires_a_reason() -> None:
    view = close_modal("ignore", 12, channel="C1", ts="1.1")
    [note] = view["blocks"]
    assert note["optional"] is False
    assert "Why" in note["label"]["text"]
    assert view["title"]["text"] == "Ignore #12"


def test_a_long_id_keeps_the_title_short() -> None:
    assert close_modal("ignore", 10**20, channel="C", ts="1")["title"]["text"] == "Ignore"


def test_note_errors_answer() -> None:
    assert note_errors("say why") == {
        "response_action": "errors",
        "errors": {NOTE_BLOCK_ID: "say why"},
    }


# ---------------------------------------------------------------------------- the message


ALICE = SlackUser("U1", "alice")


def test_done_lines() -> None:
    assert done_line("resolve", ALICE, note="refunded by hand") == (
        "✅ Resolved by @alice: refunded by hand"
    )
    assert done_line("resolve", ALICE) == "✅ Resolved by @alice"
    assert done_line("ignore", ALICE, note="test order") == "🚫 Ignored by @alice: test order"
    assert done_line("assign", SlackUser("U3", "carol")) == "👤 Assigned to @carol"
    retried = done_line(
        "retry",
        SlackUser("U2", "bob"),
        message="#7: re-queued return:R1; the next sync run sends it.",
    )
    assert retried == "🔁 Retry queued by @bob: the next sync run sends it"
    confirmed = done_line("retry", ALICE, message="#7: x; y.", confirmed=True)
    assert confirmed == "🔁 Retry confirmed and queued by @alice: y"


def test_done_line_escapes_what_people_typed() -> None:
    line = done_line("resolve", ALICE, note="<!channel> & <http://evil|click>")
    assert "<" not in line and ">" not in line
    assert "&amp;" in line


def test_next_step() -> None:
    assert next_step("#3: marked retrying; no failed action behind it, so X.") == (
        "no failed action behind it, so X"
    )
    assert next_step("plain words") == "plain words"


def test_item_text() -> None:
    assert item_text(digest_blocks(3, 4), 4) == "*#4* Return missing in Centra"
    assert item_text(digest_blocks(3), 4) is None


def test_closed_item_loses_its_buttons_and_gains_the_line() -> None:
    blocks = digest_blocks(3, 4, 5)
    updated = updated_blocks(blocks, 4, "✅ Resolved by @alice", keep_buttons=False)
    assert updated is not None
    ids = [b.get("block_id") for b in updated]
    assert ids == [None, "exc:3", "act:3", "exc:4", "done:4", "exc:5", "act:5"]
    done = updated[4]
    assert done == {
        "type": "context",
        "block_id": "done:4",
        "elements": [{"type": "mrkdwn", "text": "✅ Resolved by @alice"}],
    }
    assert blocks == digest_blocks(3, 4, 5)  # the input is left alone


def test_live_item_keeps_its_buttons_and_a_second_action_replaces_the_line() -> None:
    first = updated_blocks(digest_blocks(4), 4, "👤 Assigned to @carol", keep_buttons=True)
    assert first is not None
    assert [b.get("block_id") for b in first] == [None, "exc:4", "act:4", "done:4"]
    second = updated_blocks(first, 4, "🔁 Retry queued by @bob", keep_buttons=True)
    assert second is not None
    assert [b.get("block_id") for b in second] == [None, "exc:4", "act:4", "done:4"]
    assert second[3]["elements"][0]["text"] == "🔁 Retry queued by @bob"


def test_an_item_not_in_the_message_is_not_updated() -> None:
    assert updated_blocks(digest_blocks(3), 4, "x", keep_buttons=True) is None


def test_a_full_message_drops_the_buttons_to_make_room() -> None:
    blocks = digest_blocks(*range(1, 25))
    blocks.append({"type": "divider"})
    assert len(blocks) == MAX_BLOCKS
    updated = updated_blocks(blocks, 7, "🔁 Retry queued by @bob", keep_buttons=True)
    assert updated is not None
    assert len(updated) == MAX_BLOCKS
    ids = [b.get("block_id") for b in updated]
    assert "act:7" not in ids
    assert ids[ids.index("exc:7") + 1] == "done:7"
