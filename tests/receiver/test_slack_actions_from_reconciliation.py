"""From the digest a real reconciliation posts to the fix, without reading code: a Finance
controller retries a refund the payment provider refused (after the confirm dialog), an Ops
lead resolves an exception with a note, a CX agent takes one: each click signed by the Slack
stand-in, acted on by the receiver through the same ledger calls as the CLI, recorded with who,
and the digest message updated in place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sync_support import Integration, integration

from returnbridge.connectors.slack.buttons import ASSIGN, RESOLVE, RETRY_CONFIRMED
from returnbridge.connectors.slack.interactions import NOTE_BLOCK_ID
from returnbridge.ledger import ExceptionRecord
from returnbridge.receiver import ReceiverSettings, create_receiver
from returnbridge.scenarios import builtin_scenario
from returnbridge.simulators.server import serve_in_thread
from returnbridge.simulators.slack import SlackStandIn
from returnbridge.simulators.slack.app import DEFAULT_SIGNING_SECRET

WAIT = 5
FINANCE = {"id": "U0FIN", "username": "frida"}
OPS = {"id": "U0OPS", "username": "olle"}
CX = {"id": "U0CX", "username": "cecilia"}


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


@pytest.fixture
def showcase(tmp_path: Path, slack: SlackStandIn) -> Iterator[Integration]:
    settings = slack.settings(signing_secret=SecretStr(DEFAULT_SIGNING_SECRET))
    with integration(builtin_scenario("showcase"), tmp_path, slack=settings) as it:
        it.walk()
        for _ in range(6):
            it.run()
            counts = it.ledger.counts()
            if not any(counts.get(s, 0) for s in ("pending", "in_flight", "in_doubt")):
                break
        it.reconcile()
        yield it


@pytest.fixture
def actions_url(showcase: Integration) -> Iterator[str]:
    app = create_receiver(showcase.ledger, ReceiverSettings(), slack=showcase.settings.slack)
    with serve_in_thread(app) as server:
        yield f"{server.url}/slack/actions"


def _digest(slack: SlackStandIn, channel: str) -> dict[str, Any]:
    [message] = [m for m in slack.messages() if m["channel"] == channel]
    return message


def _click(
    slack: SlackStandIn, url: str, digest: dict[str, Any], action_id: str, record: ExceptionRecord,
    user: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    body = {
        "url": url,
        "user": user,
        "channel": digest["channel_id"],
        "ts": digest["ts"],
        "action_id": action_id,
        "value": str(record.id),
        "confirm": True,
        "wait_seconds": WAIT,
    }
    answer = httpx.post(f"{slack.url}/_sim/interact", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _now(slack: SlackStandIn, digest: dict[str, Any]) -> dict[str, Any]:
    [message] = [m for m in slack.messages() if m["ts"] == digest["ts"]]
    return message


def _done(slack: SlackStandIn, digest: dict[str, Any], record: ExceptionRecord) -> str:
    for block in _now(slack, digest)["blocks"]:
        if block.get("block_id") == f"done:{record.id}":
            return " ".join(e.get("text", "") for e in block["elements"])
    raise AssertionError(f"no done:{record.id} block")


def test_each_owner_goes_from_the_digest_to_the_fix(
    showcase: Integration, slack: SlackStandIn, actions_url: str
) -> None:
    ledger = showcase.ledger
    # Finance: the payment provider refused a refund; the button carries the confirm dialog
    (refused,) = ledger.exceptions(code="refund_failed_at_gateway", statuses=["open"])
    finance = _digest(slack, "#returns-finance")
    buttons = next(b for b in finance["blocks"] if b.get("block_id") == f"act:{refused.id}")
    retry = buttons["elements"][0]
    assert retry["action_id"] == RETRY_CONFIRMED and "48.00 EUR" in retry["confirm"]["text"]["text"]
    not_confirmed = httpx.post(
        f"{slack.url}/_sim/interact",
        json={
            "url": actions_url,
            "user": FINANCE,
            "channel": finance["channel_id"],
            "ts": finance["ts"],
            "action_id": RETRY_CONFIRMED,
            "value": str(refused.id),
            "confirm": False,
        },
        timeout=30,
    ).json()
    assert not_confirmed["sent"] is False  # "Cancel" in the dialog: nothing reaches returnbridge
    assert ledger.exception(refused.id).status == "open"
    _click(slack, actions_url, finance, RETRY_CONFIRMED, refused, FINANCE)
    after = ledger.exception(refused.id)
    assert after is not None and after.status == "retrying"
    assert ledger.exception_history(refused.id)[-1].actor == "slack:U0FIN (frida)"
    assert "Retry" in _done(slack, finance, refused) and "@frida" in _done(slack, finance, refused)

    # Ops: resolves an exception with a note, through the modal
    ops = _digest(slack, "#returns-ops")
    ops_ids = [int(b["block_id"][4:]) for b in ops["blocks"] if b.get("block_id", "")[:4] == "act:"]
    target = ledger.exception(ops_ids[0])
    assert target is not None
    opened = _click(slack, actions_url, ops, RESOLVE, target, OPS)
    [view] = [f for f in opened["follow_ups"] if f["method"] == "views.open"]
    submitted = httpx.post(
        f"{slack.url}/_sim/submit_view",
        json={
            "view_id": view["id"],
            "values": {NOTE_BLOCK_ID: "checked in the warehouse"},
            "wait_seconds": WAIT,
        },
        timeout=30,
    ).json()
    assert submitted["view_state"] == "submitted"
    closed = ledger.exception(target.id)
    assert closed is not None and closed.status == "resolved"
    assert closed.resolution_note == "checked in the warehouse"
    assert "@olle" in _done(slack, ops, target)
    assert f"act:{target.id}" not in [b.get("block_id") for b in _now(slack, ops)["blocks"]]

    # CX: takes an exchange that is out of stock
    cx = _digest(slack, "#returns-cx")
    (exchange,) = ledger.exceptions(code="exchange_out_of_stock", statuses=["open"])
    _click(slack, actions_url, cx, ASSIGN, exchange, CX)
    taken = ledger.exception(exchange.id)
    assert taken is not None and taken.assignee is not None and "cecilia" in taken.assignee
    assert [e.kind for e in ledger.exception_history(exchange.id)][-1] == "assigned"
