"""The receiver's `POST /slack/actions` over real loopback HTTP: signed Slack interactions (made
by the Slack stand-in's `/_sim/interact` and `/_sim/submit_view`, or signed here) acting on a
real Ledger on a SQLite file, and the digest message updated in the stand-in."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from ledger_support import create_return
from pydantic import SecretStr
from receiver_support import ledger_unavailable

from returnbridge.connectors.slack import SlackSettings
from returnbridge.connectors.slack.buttons import (
    ASSIGN,
    IGNORE,
    RESOLVE,
    RETRY,
    RETRY_CONFIRMED,
    item_actions,
)
from returnbridge.connectors.slack.interactions import (
    NOTE_ACTION_ID,
    NOTE_BLOCK_ID,
    close_modal,
    encode_payload,
    signed_headers,
)
from returnbridge.core.codes import ReturnException
from returnbridge.ledger import ExceptionRecord, Ledger
from returnbridge.ledger.queue import retry_warning
from returnbridge.receiver import ReceiverSettings, create_receiver
from returnbridge.simulators.server import serve_in_thread
from returnbridge.simulators.slack import SlackStandIn
from returnbridge.simulators.slack.app import DEFAULT_SIGNING_SECRET

CHANNEL = "#returns-ops"
ALICE = {"id": "U01ALICE", "username": "alice"}
BOB = {"id": "U02BOB", "username": "bob"}
CAROL = {"id": "U03CAROL", "username": "carol"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
WAIT = 5  # seconds the stand-in waits for the receiver's follow-up Web API calls

PLAIN = ReturnException("return_create_failed", "R1", 1001, detail="rejected")
MONEY = ReturnException(
    "refund_failed_at_gateway", "R2", 1002, amount=Decimal("99.00"), currency="SEK"
)
MISSING = ReturnException("return_missing", "R3", 1003)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


@dataclass
class Served:
    url: str  # the receiver's actions URL
    http: httpx.Client  # on the receiver


@contextmanager
def serve(
    ledger: Ledger, slack: SlackSettings | None, settings: ReceiverSettings | None = None
) -> Iterator[Served]:
    app = create_receiver(ledger, settings or ReceiverSettings(), slack=slack)
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        prefix = (settings or ReceiverSettings()).path_prefix
        yield Served(f"{server.url}{prefix}/slack/actions", http)


def slack_settings(slack: SlackStandIn, **overrides: Any) -> SlackSettings:
    values: dict[str, Any] = {"signing_secret": SecretStr(DEFAULT_SIGNING_SECRET), **overrides}
    return slack.settings(**values)


@pytest.fixture
def receiver(ledger: Ledger, slack: SlackStandIn) -> Iterator[Served]:
    with serve(ledger, slack_settings(slack)) as served:
        yield served


@dataclass
class Digest:
    channel_id: str
    ts: str


def post_digest(slack: SlackStandIn, *records: ExceptionRecord, confirm: bool = True) -> Digest:
    """A digest message with each record's section and buttons, as reports/digest.py posts it.
    `confirm` False: Retry without the confirm dialog even when the retry can move money (a
    digest rendered before the dialog existed)."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Returns digest — Ops"}}
    ]
    for record in records:
        blocks.append(
            {
                "type": "section",
                "block_id": f"exc:{record.id}",
                "text": {"type": "mrkdwn", "text": f"*#{record.id}* {record.code}"},
            }
        )
        warning = retry_warning(record) if confirm else None
        blocks.append(item_actions(record.id, retry_warning=warning))
    with slack.settings().client() as poster:
        ts = poster.post(CHANNEL, "Returns digest — Ops", blocks)
    [message] = [m for m in slack.messages() if m["ts"] == ts]
    return Digest(message["channel_id"], ts)


def failed_return(ledger: Ledger) -> ExceptionRecord:
    """An exception whose action behind it failed: a retry re-queues it."""
    ledger.plan([create_return("R1")])
    ledger.claim("return:R1", expected="pending")
    ledger.transition("return:R1", "failed", expected="in_flight", error="rejected")
    return ledger.raise_exception(PLAIN, action_key="return:R1")


def interact(
    slack: SlackStandIn,
    receiver: Served,
    digest: Digest,
    action_id: str,
    record: ExceptionRecord,
    user: dict[str, str] = ALICE,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "url": receiver.url,
        "user": user,
        "channel": digest.channel_id,
        "ts": digest.ts,
        "action_id": action_id,
        "value": str(record.id),
        "wait_seconds": WAIT,
        **extra,
    }
    response = httpx.post(f"{slack.url}/_sim/interact", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def submit(slack: SlackStandIn, view_id: str, note: str | None, **extra: Any) -> dict[str, Any]:
    values = {} if note is None else {NOTE_BLOCK_ID: note}
    body = {"view_id": view_id, "values": values, "wait_seconds": WAIT, **extra}
    response = httpx.post(f"{slack.url}/_sim/submit_view", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def methods(answer: dict[str, Any]) -> list[str]:
    return [call["method"] for call in answer["follow_ups"]]


def message(slack: SlackStandIn, digest: Digest) -> dict[str, Any]:
    [found] = [m for m in slack.messages() if m["ts"] == digest.ts]
    return found


def block_ids(slack: SlackStandIn, digest: Digest) -> list[str | None]:
    return [b.get("block_id") for b in message(slack, digest)["blocks"]]


def done_text(slack: SlackStandIn, digest: Digest, record: ExceptionRecord) -> str:
    [done] = [
        b for b in message(slack, digest)["blocks"] if b.get("block_id") == f"done:{record.id}"
    ]
    assert done["type"] == "context"
    text: str = done["elements"][0]["text"]
    return text


def history(ledger: Ledger, record: ExceptionRecord) -> list[tuple[str, str]]:
    return [(e.kind, e.actor) for e in ledger.exception_history(record.id)]


def wait_until(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true in time")
        time.sleep(0.02)


# ---------------------------------------------------------------------------- retry


def test_retry_on_a_plain_code_requeues_and_updates_the_message(
    ledger: Ledger, slack: SlackStandIn, receiver: Served
) -> None:
    record = failed_return(ledger)
    other = ledger.raise_exception(MISSING)
    digest = post_digest(slack, record, other)

    answer = interact(slack, receiver, digest, RETRY, record, user=BOB)

    assert (answer["status"], answer["answer"]) == (200, None)
    after = ledger.exception(record.id)
    assert after is not None and after.status == "retrying"
    action = ledger.action("return:R1")
    assert action is not None and action.state == "pending"
    assert history(ledger, record)[-1] == ("retried", "slack:U02BOB (bob)")
    assert methods(answer) == ["chat.update"]
    # The item keeps its buttons (still live) and says who did what; the other item is as it was.
    assert block_ids(slack, digest) == [
        None,
        f"exc:{record.id}",
        f"act:{record.id}",
        f"done:{record.id}",
        f"exc:{other.id}",
        f"act:{other.id}",
    ]
    assert done_text(slack, digest, record) == "🔁 Retry queued by @bob: the next sync run sends it"


def test_money_moving_retry_without_the_confirm_dialog_is_refused_with_the_warning(
    ledger: Ledger, slack: SlackStandIn, receiver: Served
) -> None:
    record = ledger.raise_exception(MONEY)
    digest = post_digest(slack, record, confirm=False)  # a plain Retry button
    before = message(slack, digest)

    answer = interact(slack, receiver, digest, RETRY, record)

    assert answer["status"] == 200
    assert methods(answer) == ["chat.postEphemeral"]
    [shown] = answer["follow_ups"]
    assert (shown["channel_id"], shown["user"]) == (digest.channel_id, ALICE["id"])
    assert "was not retried" in shown["text"]
    assert "99.00 SEK on order 1002" in shown["text"]
    assert "--confirm" in shown["text"]
    after = ledger.exception(record.id)
    assert after is not None and after.status == "open"
    assert history(ledger, record) == [("opened", "returnbridge")]
    assert message(slack, digest) == before
    assert slack.state.effects_of("chat.update") == []


def test_confirmed_retry_runs_and_a_cancelled_one_is_never_sent(
    ledger: Ledger, slack: SlackStandIn, receiver: Served
) -> None:
    record = ledger.raise_exception(MONEY)
    digest = post_digest(slack, record)  # Retry carries the confirm dialog

    cancelled = interact(slack, receiver, digest, RETRY_CONFIRMED, record, confirm=False)
    assert cancelled["sent"] is False
    assert "99.00 SEK" in cancelled["confirm"]["text"]["text"]
    assert history(ledger, record) == [("opened", "returnbridge")]

    answer = interact(slack, receiver, digest, RETRY_CONFIRMED, record)

    assert answer["status"] == 200
    after = ledger.exception(record.id)
    assert after is not None and after.status == "retrying"
    assert history(ledger, record)[-1] == ("retried", "slack:U01ALICE (alice)")
    assert methods(answer) == ["chat.update"]
    assert done_text(slack, digest, record).startswith("🔁 Retry confirmed and queued by @alice")
    assert f"act:{record.id}" in block_ids(slack, digest)


# ---------------------------------------------------------------------------- resolve / ignore


def test_resolve_through_the_modal_with_a_note(
    ledger: Ledger, slack: SlackStandIn, receiver: Served
) -> None:
    record = ledger.raise_exception(MISSING)
    digest = post_digest(slack, record)

    clicked = interact(slack, receiver, digest, RESOLVE, record)

    assert clicked["status"] == 200
    assert methods(clicked) == ["views.open"]
    [opened] = clicked["follow_ups"]
    assert opened["trigger_id"] == clicked["trigger_id"]
    assert opened["view"]["title"]["text"] == f"Resolve #{record.id}"
    after = ledger.exception(record.id)
    assert after is not None and after.status == "open"  # nothing done until submitted

    submitted = submit(slack, opened["id"], "refunded by hand")

    assert (submitted["status"], submitted["answer"], submitted["view_state"]) == (
        200,
        None,
        "submitted",
    )
    resolved = ledger.exception(record.id)
    assert resolved is not None
    assert (resolved.status, resolved.resolution_note) == ("resolved", "refunded by hand")
    assert history(ledger, record)[-1] == ("resolved", "slack:U01ALICE (alice)")
    assert methods(submitted) == ["chat.update"]
    # The message was read back (conversations.history), the buttons of the closed item removed.
    assert "conversations.history" in [c["method"] for c in slack.calls()]
    assert block_ids(slack, digest) == [None, f"exc:{record.id}", f"done:{record.id}"]
    assert done_text(slack, digest, record) == "✅ Resolved by @alice: refunded by hand"


def test_resolve_without_a_note(ledger: Ledger, slack: SlackStandIn, receiver: Served) -> None:
    record = ledger.raise_exception(MISSING)
    digest = post_digest(slack, record)
    [opened] = interact(slack, receiver, digest, RESOLVE, record, user=CAROL)["follow_ups"]

    submitted = submit(slack, opened["id"], None)

    assert submitted["view_state"] == "submitted"
    resolved = ledger.exception(record.id)
    assert resolved is not None and resolved.status == "resolved"
    assert done_text(slack, digest, record) == "✅ Resolved by @carol"


def test_ignore_with_an_empty_reason_keeps_the_modal_open_with_an_error(
    ledger: Ledger, slack: SlackStandIn, receiver: Served
) -> None:
    record = ledger.raise_exception(MISSING)
    digest = post_digest(slack, record)
    [opened] = interact(slack, receiver, digest, IGNORE, record)["follow_ups"]
    assert opened["view"]["title"]["text"] == f"Ignore #{record.id}"

    # Slack itself does not submit a required input left empty; blanks it does submit.
    refused = httpx.post(
        f"{slack.url}/_sim/submit_view",
        json={"view_id": opened["id"], "values": {NOTE_BLOCK_ID: ""}},
        timeout=30,
    )
    assert refused.status_code == 400
    assert "required" in refused.json()["error"]
    blank = submit(slack, opened["id"], "   ", wait_seconds=0.3)  # nothing follows

    assert blank["status"] == 200
    assert blank["answer"]["response_action"] == "errors"
    assert NOTE_BLOCK_ID in blank["answer"]["errors"]
    assert blank["view_state"] == "open"
    assert blank["follow_ups"] == []
    still = ledger.exception(record.id)
    assert still is not None and still.status == "open"

    done = submit(slack, opened["id"], "a test order")

    assert done["view_state"] == "submitted"
    ignored = ledger.exception(record.id)
    assert ignored is not None
    assert (ignored.status, ignored.resolution_note) == ("ignored", "a test order")
    assert done_text(slack, digest, record) == "🚫 Ignored by @alice: a test order"
    assert f"act:{record.id}" not in block_ids(slack, digest)


def test_a_signed_view_submission_without_a_reason_answers_errors(
    ledger: Ledger, slack: SlackStandIn, receiver: Served
) -> None:
    record = ledger.raise_exception(MISSING)
    view = close_modal("ignore", record.id, channel="C0", ts="1.1")
    view["id"] = "V1"
    view["state"] = {"values": {NOTE_BLOCK_ID: {NOTE_ACTION_ID: {"value": None}}}}
    payload = {"type": "view_submission", "user": ALICE, "view": view}

    response = signed_post(receiver, payload)

    assert response.status_code == 200
    assert response.json() == {
        "response_action": "errors",
        "errors": {NOTE_BLOCK_ID: "Say why it is ignored: the reason is kept in its history"},
    }
    still = ledger.exception(record.id)
    assert still is not None and still.status == "open"


# ---------------------------------------------------------------------------- assign, refusals


def test_assign_to_me(ledger: Ledger, slack: SlackStandIn, receiver: Served) -> None:
    record = ledger.raise_exception(MISSING)
    digest = post_digest(slack, record)

    answer = interact(slack, receiver, digest, ASSIGN, record, user=CAROL)

    assert methods(answer) == ["chat.update"]
    after = ledger.exception(record.id)
    assert after is not None and (after.status, after.assignee) == ("open", "@carol")
    assert history(ledger, record)[-1] == ("assigned", "slack:U03CAROL (carol)")
    assert done_text(slack, digest, record) == "👤 Assigned to @carol"
    assert f"act:{record.id}" in block_ids(slack, digest)


@pytest.mark.parametrize("action_id", [RETRY, ASSIGN, RESOLVE, IGNORE])
def test_an_action_on_a_closed_exception_is_refused_to_the_person_only(
    ledger: Ledger, slack: SlackStandIn, receiver: Served, action_id: str
) -> None:
    record = ledger.raise_exception(MISSING)
    digest = post_digest(slack, record)
    ledger.resolve_exception(record.id, note="fixed by hand", actor="cli:dave")
    before = history(ledger, record)

    answer = interact(slack, receiver, digest, action_id, record)

    assert answer["status"] == 200
    assert methods(answer) == ["chat.postEphemeral"]
    [shown] = answer["follow_ups"]
    assert shown["user"] == ALICE["id"]
    assert "already resolved" in shown["text"]
    assert history(ledger, record) == before
    assert slack.state.effects_of("chat.update") == []
    assert slack.state.views == {}


def test_an_unknown_exception_is_refused_to_the_person_only(
    ledger: Ledger, slack: SlackStandIn, receiver: Served
) -> None:
    record = ledger.raise_exception(MISSING)
    ghost = dataclasses.replace(record, id=record.id + 100)  # in a digest, not in this ledger
    digest = post_digest(slack, ghost)

    answer = interact(slack, receiver, digest, ASSIGN, ghost)

    [shown] = answer["follow_ups"]
    assert shown["method"] == "chat.postEphemeral"
    assert f"no exception with id {ghost.id}" in shown["text"]


def test_a_slack_failure_after_answering_keeps_the_ledger_change(
    ledger: Ledger, slack: SlackStandIn, receiver: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    record = ledger.raise_exception(MISSING)
    digest = post_digest(slack, record)
    slack.set_faults(down=True)  # the Web API answers 503; /_sim still clicks

    answer = interact(slack, receiver, digest, ASSIGN, record, wait_seconds=0)

    assert answer["status"] == 200
    after = ledger.exception(record.id)
    assert after is not None and after.assignee == "@alice"
    wait_until(lambda: "could not update the digest message" in caplog.text)
    assert "503" in caplog.text


def test_the_ledger_unavailable_is_said_and_a_typed_reason_is_kept(
    ledger: Ledger, slack: SlackStandIn, receiver: Served, tmp_path: Path
) -> None:
    record = ledger.raise_exception(MISSING)
    digest = post_digest(slack, record)
    [opened] = interact(slack, receiver, digest, IGNORE, record)["follow_ups"]

    with ledger_unavailable(ledger, tmp_path / "ledger.db"):
        clicked = interact(slack, receiver, digest, ASSIGN, record)
        submitted = submit(slack, opened["id"], "a test order", wait_seconds=0.3)

    [shown] = clicked["follow_ups"]
    assert shown["method"] == "chat.postEphemeral"
    assert "could not reach its ledger" in shown["text"]
    # The modal stays open with the reason typed, to submit again.
    assert submitted["answer"]["response_action"] == "errors"
    assert "could not reach its ledger" in submitted["answer"]["errors"][NOTE_BLOCK_ID]
    assert submitted["view_state"] == "open"
    assert submit(slack, opened["id"], "a test order")["view_state"] == "submitted"
    after = ledger.exception(record.id)
    assert after is not None and (after.status, after.assignee) == ("ignored", None)


# ---------------------------------------------------------------------------- the request


def signed_post(
    receiver: Served,
    payload: dict[str, Any],
    *,
    secret: str = DEFAULT_SIGNING_SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    body = encode_payload(payload)
    return receiver.http.post(
        receiver.url, content=body, headers=signed_headers(secret, body, timestamp)
    )


def assign_payload(record: ExceptionRecord, channel: str = "C0", ts: str = "1.1") -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": ALICE,
        "container": {"type": "message", "channel_id": channel, "message_ts": ts},
        "trigger_id": "1.2.3",
        "message": {"ts": ts, "text": "digest", "blocks": []},
        "actions": [{"action_id": ASSIGN, "block_id": f"act:{record.id}", "value": str(record.id)}],
    }


def test_a_good_signature_is_acted_on(ledger: Ledger, receiver: Served) -> None:
    record = ledger.raise_exception(MISSING)
    response = signed_post(receiver, assign_payload(record))
    assert (response.status_code, response.content) == (200, b"")
    after = ledger.exception(record.id)
    assert after is not None and after.assignee == "@alice"


@pytest.mark.parametrize(
    ("sign", "status", "reason"),
    [
        ({"secret": "not-the-secret"}, 401, "does not match"),
        # offsets from the moment the test runs, not from when pytest collected it (a long
        # suite runs this minutes later, when "600 s ahead" has become "now")
        ({"timestamp_offset": -600}, 401, "old"),
        ({"timestamp_offset": 600}, 401, "future"),
    ],
)
def test_a_bad_signature_or_an_old_timestamp_is_refused_and_nothing_is_done(
    ledger: Ledger,
    receiver: Served,
    caplog: pytest.LogCaptureFixture,
    sign: dict[str, Any],
    status: int,
    reason: str,
) -> None:
    caplog.set_level(logging.WARNING)
    record = ledger.raise_exception(MISSING)
    if "timestamp_offset" in sign:
        sign = {"timestamp": int(time.time()) + sign["timestamp_offset"]}
    response = signed_post(receiver, assign_payload(record), **sign)
    assert response.status_code == status
    assert reason in response.json()["error"]
    after = ledger.exception(record.id)
    assert after is not None and after.assignee is None
    assert "refused slack webhook" in caplog.text
    assert DEFAULT_SIGNING_SECRET not in caplog.text


def test_missing_signature_headers_are_refused(ledger: Ledger, receiver: Served) -> None:
    record = ledger.raise_exception(MISSING)
    body = encode_payload(assign_payload(record))
    response = receiver.http.post(receiver.url, content=body, headers=FORM)
    assert response.status_code == 401
    assert "X-Slack-Request-Timestamp" in response.json()["error"]


def test_an_old_click_made_through_the_stand_in_is_a_replay(
    ledger: Ledger, slack: SlackStandIn, receiver: Served
) -> None:
    record = ledger.raise_exception(MISSING)
    digest = post_digest(slack, record)
    answer = interact(slack, receiver, digest, ASSIGN, record, age_seconds=301, wait_seconds=0)
    assert answer["status"] == 401
    assert "old" in answer["answer"]["error"]
    after = ledger.exception(record.id)
    assert after is not None and after.assignee is None


def test_the_next_signing_secret_is_accepted_while_rotating(
    ledger: Ledger, slack: SlackStandIn
) -> None:
    record = ledger.raise_exception(MISSING)
    digest = post_digest(slack, record)
    rotating = slack_settings(
        slack,
        signing_secret=SecretStr("the-old-secret"),
        next_signing_secret=SecretStr(DEFAULT_SIGNING_SECRET),  # what the stand-in signs with
    )
    with serve(ledger, rotating) as served:
        answer = interact(slack, served, digest, ASSIGN, record)
        assert answer["status"] == 200
        assert signed_post(served, assign_payload(record), secret="the-old-secret").status_code == (
            200
        )
        third = signed_post(served, assign_payload(record), secret="a-third-secret")
        assert third.status_code == 401
    after = ledger.exception(record.id)
    assert after is not None and after.assignee == "@alice"


@pytest.mark.parametrize(
    ("slack_values", "reason"),
    [
        (None, "no signing secret"),
        ({}, "no signing secret"),
        ({"signing_secret": SecretStr(DEFAULT_SIGNING_SECRET), "token": None}, "bot token"),
    ],
)
def test_without_a_signing_secret_interactivity_is_off(
    ledger: Ledger, slack: SlackStandIn, slack_values: dict[str, Any] | None, reason: str
) -> None:
    record = ledger.raise_exception(MISSING)
    settings = None if slack_values is None else slack.settings(**slack_values)
    with serve(ledger, settings) as served:
        response = signed_post(served, assign_payload(record))
    assert response.status_code == 404
    assert "interactivity is off" in response.json()["error"]
    assert reason in response.json()["error"]
    after = ledger.exception(record.id)
    assert after is not None and after.assignee is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"type": "block_actions", "user": ALICE, "actions": []}, "actions"),
        ({"no": "type"}, "type"),
    ],
)
def test_a_malformed_payload_is_400(receiver: Served, payload: dict[str, Any], reason: str) -> None:
    response = signed_post(receiver, payload)
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_a_signed_body_that_is_no_form_is_400(receiver: Served) -> None:
    body = b"payload=%7Bnot json"
    response = receiver.http.post(
        receiver.url, content=body, headers=signed_headers(DEFAULT_SIGNING_SECRET, body)
    )
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]


def test_a_payload_that_is_not_ours_is_acknowledged_and_ignored(receiver: Served) -> None:
    response = signed_post(receiver, {"type": "view_closed", "user": ALICE})
    assert (response.status_code, response.content) == (200, b"")


def test_wrong_content_type_and_too_large_bodies(ledger: Ledger, slack: SlackStandIn) -> None:
    settings = ReceiverSettings(max_body_bytes=1000)
    with serve(ledger, slack_settings(slack), settings) as served:
        wrong = served.http.post(served.url, json={"payload": "{}"})
        assert wrong.status_code == 415
        big = served.http.post(served.url, content=b"payload=" + b"x" * 2000, headers=FORM)
        assert big.status_code == 413


def test_the_route_is_under_the_path_prefix(ledger: Ledger, slack: SlackStandIn) -> None:
    record = ledger.raise_exception(MISSING)
    digest = post_digest(slack, record)
    settings = ReceiverSettings(path_prefix="/returnbridge")
    with serve(ledger, slack_settings(slack), settings) as served:
        assert served.url.endswith("/returnbridge/slack/actions")
        assert served.http.post("/slack/actions", content=b"", headers=FORM).status_code == 404
        answer = interact(slack, served, digest, ASSIGN, record)
    assert answer["status"] == 200
    assert methods(answer) == ["chat.update"]


# ---------------------------------------------------------------------------- end to end


def test_a_digest_worked_through_in_slack_end_to_end(
    ledger: Ledger, slack: SlackStandIn, receiver: Served
) -> None:
    """Three items of one digest: Carol takes one, Bob retries one (confirming: it moves money),
    Alice resolves the last with a note; the message ends up saying so, the ledger agrees and its
    history names each of them."""
    missing = ledger.raise_exception(MISSING)
    money = ledger.raise_exception(MONEY)
    failed = failed_return(ledger)
    digest = post_digest(slack, missing, money, failed)

    interact(slack, receiver, digest, ASSIGN, missing, user=CAROL)
    interact(slack, receiver, digest, RETRY_CONFIRMED, money, user=BOB)
    [modal] = interact(slack, receiver, digest, RESOLVE, failed)["follow_ups"]
    submit(slack, modal["id"], "created the return in Centra by hand")

    assert block_ids(slack, digest) == [
        None,
        f"exc:{missing.id}",
        f"act:{missing.id}",
        f"done:{missing.id}",
        f"exc:{money.id}",
        f"act:{money.id}",
        f"done:{money.id}",
        f"exc:{failed.id}",
        f"done:{failed.id}",
    ]
    assert done_text(slack, digest, missing) == "👤 Assigned to @carol"
    assert done_text(slack, digest, money).startswith("🔁 Retry confirmed and queued by @bob")
    assert done_text(slack, digest, failed) == (
        "✅ Resolved by @alice: created the return in Centra by hand"
    )
    statuses = {r.id: (r.status, r.assignee) for r in ledger.exceptions()}
    assert statuses == {
        missing.id: ("open", "@carol"),
        money.id: ("retrying", None),
        failed.id: ("resolved", None),
    }
    assert history(ledger, missing)[-1] == ("assigned", "slack:U03CAROL (carol)")
    assert history(ledger, money)[-1] == ("retried", "slack:U02BOB (bob)")
    assert history(ledger, failed)[-1] == ("resolved", "slack:U01ALICE (alice)")
    # Every request the stand-in sent was signed and accepted.
    sent = httpx.get(f"{slack.url}/_sim/interactions").json()["interactions"]
    assert [(i["type"], i["status"]) for i in sent] == [
        ("block_actions", 200),
        ("block_actions", 200),
        ("block_actions", 200),
        ("view_submission", 200),
    ]
