"""The Reveni simulator's webhooks: subscriptions, delivery to a real receiver, seeded faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from reveni_sim_support import (
    Receiver,
    ReveniSimHandle,
    reveni_sim_scenario,
    running_receiver,
    running_reveni_sim,
    wait_for,
)

from returnbridge.connectors.reveni.inferred import DEFAULT_REVENI_INFERRED, ReveniInferred
from returnbridge.connectors.reveni.models import WebhookSubscription
from returnbridge.connectors.reveni.webhooks import parse_envelope, verify_signature

BOTH = ["return.created", "return.updated"]
SIGNATURE = DEFAULT_REVENI_INFERRED.webhook_signature_header.lower()


@pytest.fixture(scope="module")
def server() -> Iterator[ReveniSimHandle]:
    with running_reveni_sim() as handle:
        yield handle


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[tuple[Receiver, str]]:
    with running_receiver() as pair:
        yield pair


@pytest.fixture
def reveni(server: ReveniSimHandle) -> ReveniSimHandle:
    server.reset()
    server.sim_post("faults", {"webhook_delay_scale": 0})
    return server


@pytest.fixture
def receiver(receiver_server: tuple[Receiver, str]) -> Receiver:
    receiver_server[0].clear()
    return receiver_server[0]


@pytest.fixture
def hook_url(receiver_server: tuple[Receiver, str]) -> str:
    return receiver_server[1]


def _subscribe(reveni: ReveniSimHandle, url: str, event_types: list[str] = BOTH) -> str:
    response = reveni.api.post("webhooks", json={"event_types": event_types, "url": url})
    assert response.status_code == 201, response.text
    sub_id: str = response.json()["id"]
    return sub_id


def _snapshot(reveni: ReveniSimHandle) -> dict[str, Any]:
    body: dict[str, Any] = reveni.control.get("/_sim/webhooks").json()
    return body


def _settled(reveni: ReveniSimHandle) -> None:
    wait_for(lambda: _snapshot(reveni)["pending"] == 0)


def _events(receiver: Receiver) -> list[tuple[str, str, str]]:
    """(event, resource_id, status) of every received body, in arrival order."""
    out = []
    for body in receiver.bodies():
        event = parse_envelope(body)
        out.append((event.event, event.data.resource_id, event.data.status or ""))
    return out


def _new_return(reveni: ReveniSimHandle) -> str:
    body = reveni.sim_post(
        "returns", {"order_number": 1001, "items": [{"sku": "TEE-BLK-M", "quantity": 1}]}
    )
    return_id: str = body["id"]
    return return_id


# ---------------------------------------------------------------------------- subscriptions


def test_subscription_api(reveni: ReveniSimHandle) -> None:
    created = reveni.api.post(
        "webhooks",
        json={"event_types": ["return.updated", "return.updated"], "url": "http://x.test/h"},
    )
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "url", "event_types", "created_at"}
    assert (body["url"], body["event_types"]) == ("http://x.test/h", ["return.updated"])
    assert body["created_at"] == "2026-10-15T12:00:00Z" and len(body["id"]) == 32
    WebhookSubscription.model_validate(body)
    listed = reveni.api.get("webhooks").json()
    assert listed == [body]
    assert reveni.api.delete(f"webhooks/{body['id']}").status_code == 204
    assert reveni.api.get("webhooks").json() == []
    again = reveni.api.delete(f"webhooks/{body['id']}")
    assert (again.status_code, again.json()) == (404, {"detail": "Not found."})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://x.test/h"}, "event_types"),
        ({"url": "http://x.test/h", "event_types": []}, "event_types"),
        ({"url": "http://x.test/h", "event_types": "return.updated"}, "event_types"),
        ({"url": "http://x.test/h", "event_types": ["return.deleted"]}, "event_types"),
        ({"event_types": BOTH}, "url"),
        ({"url": "ftp://x.test/h", "event_types": BOTH}, "url"),
    ],
)
def test_bad_subscriptions_are_400(reveni: ReveniSimHandle, body: Any, field: str) -> None:
    response = reveni.api.post("webhooks", json=body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{field}:")


# ---------------------------------------------------------------------------- delivery


def test_changes_reach_the_receiver_as_thin_envelopes(
    reveni: ReveniSimHandle, receiver: Receiver, hook_url: str
) -> None:
    _subscribe(reveni, hook_url)
    return_id = _new_return(reveni)
    changed = reveni.sim_post(f"returns/{return_id}/status", {"status": "shipped"})
    wait_for(lambda: len(receiver.calls) == 2)
    assert _events(receiver) == [
        ("return.created", return_id, "in_progress"),
        ("return.updated", return_id, "shipped"),
    ]
    body, headers = receiver.calls[1]
    assert headers["content-type"] == "application/json" and SIGNATURE not in headers
    envelope = json.loads(body)
    assert set(envelope) == {"id", "event", "created", "data"}
    updated_at = datetime.fromisoformat(changed["updated_at"].replace("Z", "+00:00"))
    assert envelope["created"] == int(updated_at.timestamp())
    # The receiver records a call before the simulator has read its answer.
    _settled(reveni)
    snapshot = _snapshot(reveni)
    assert (snapshot["delivered"], snapshot["attempts"], snapshot["pending"]) == (2, 2, 0)
    assert [d["outcome"] for d in snapshot["deliveries"]] == ["delivered", "delivered"]


def test_only_subscribed_event_types_are_sent(
    reveni: ReveniSimHandle, receiver: Receiver, hook_url: str
) -> None:
    _subscribe(reveni, hook_url, ["return.updated"])
    removed = _subscribe(reveni, hook_url, BOTH)
    assert reveni.api.delete(f"webhooks/{removed}").status_code == 204
    return_id = _new_return(reveni)
    item_id = reveni.get_return(return_id)["return_items"][0]["item_id"]
    validated = reveni.api.post(
        f"returns/{return_id}/partial_validate",
        json={"items": [{"item_id": item_id, "status": "accepted"}]},
    )
    assert validated.status_code == 200
    _settled(reveni)
    assert _events(receiver) == [("return.updated", return_id, "accepted")]


def test_the_walk_emits_one_update_per_step(
    reveni: ReveniSimHandle, receiver: Receiver, hook_url: str
) -> None:
    _subscribe(reveni, hook_url)
    steps = reveni.sim_post("walk")["changes"]
    _settled(reveni)
    assert _events(receiver) == [("return.updated", c["return_id"], c["status"]) for c in steps]


def test_a_non_2xx_answer_is_retried_with_the_same_event(
    reveni: ReveniSimHandle, receiver: Receiver, hook_url: str
) -> None:
    _subscribe(reveni, hook_url)
    receiver.fail_next(2, status=503)
    _new_return(reveni)
    _settled(reveni)
    bodies = receiver.bodies()
    assert len(bodies) == 3 and len(set(bodies)) == 1
    snapshot = _snapshot(reveni)
    assert (snapshot["delivered"], snapshot["failed"], snapshot["attempts"]) == (1, 0, 3)
    assert snapshot["last_error"] == "HTTP 503"
    assert snapshot["deliveries"][-1]["attempts"] == 3


def test_a_retry_waits_for_its_delay_and_counts_as_pending(
    reveni: ReveniSimHandle, receiver: Receiver, hook_url: str
) -> None:
    reveni.sim_post("faults", {"webhook_delay_scale": 1000})
    _subscribe(reveni, hook_url)
    receiver.fail_next(1)
    _new_return(reveni)
    wait_for(lambda: _snapshot(reveni)["attempts"] == 1)
    snapshot = _snapshot(reveni)
    assert (snapshot["pending"], snapshot["delivered"]) == (1, 0)
    assert len(receiver.calls) == 1
    reveni.reset()  # a load forgets the waiting retry
    assert _snapshot(reveni)["pending"] == 0


def test_a_delivery_fails_after_the_last_retry_and_can_be_replayed(
    receiver: Receiver, hook_url: str
) -> None:
    inferred = ReveniInferred(webhook_retry_delays_seconds=(0.0, 0.0))
    with running_reveni_sim(inferred=inferred) as reveni:
        _subscribe(reveni, hook_url)
        receiver.fail_next(100)
        return_id = _new_return(reveni)
        wait_for(lambda: _snapshot(reveni)["failed"] == 1)
        snapshot = _snapshot(reveni)
        assert (snapshot["attempts"], snapshot["pending"], len(receiver.calls)) == (3, 0, 3)
        [failed] = snapshot["failed_events"]
        receiver.clear()
        assert reveni.sim_post("webhooks/replay", {"event_ids": [failed["event_id"]]}) == {
            "queued": 1
        }
        _settled(reveni)
        assert _events(receiver) == [("return.created", return_id, "in_progress")]
        assert parse_envelope(receiver.bodies()[0]).id == failed["event_id"]
        bad = reveni.control.post("/_sim/webhooks/replay", json={"event_ids": ["nope"]})
        assert bad.status_code == 400


def test_an_unreachable_receiver_counts_as_a_failure() -> None:
    inferred = ReveniInferred(webhook_retry_delays_seconds=())
    with running_reveni_sim(inferred=inferred) as sim:
        _subscribe(sim, "http://127.0.0.1:9/nothing-listens")
        _new_return(sim)
        wait_for(lambda: _snapshot(sim)["failed"] == 1)
        assert _snapshot(sim)["deliveries"][-1]["http_status"] is None


# ---------------------------------------------------------------------------- seeded faults


def test_duplicates_keep_the_event_id(
    reveni: ReveniSimHandle, receiver: Receiver, hook_url: str
) -> None:
    reveni.sim_post("faults", {"duplicate_webhook_rate": 1.0, "webhook_delay_scale": 0})
    _subscribe(reveni, hook_url)
    _new_return(reveni)
    _settled(reveni)
    bodies = receiver.bodies()
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert _snapshot(reveni)["duplicated"] == 1


def test_out_of_order_events_come_after_the_next_one(
    reveni: ReveniSimHandle, receiver: Receiver, hook_url: str
) -> None:
    reveni.sim_post("faults", {"out_of_order_webhook_rate": 1.0, "webhook_delay_scale": 0})
    _subscribe(reveni, hook_url)
    return_id = _new_return(reveni)  # held back
    assert _snapshot(reveni)["held"] == 1
    reveni.sim_post(f"returns/{return_id}/status", {"status": "shipped"})  # sent, then the held
    reveni.sim_post(f"returns/{return_id}/status", {"status": "received"})  # held back
    _settled(reveni)
    assert [e[2] for e in _events(receiver)] == ["shipped", "in_progress"]
    assert _snapshot(reveni)["held"] == 1
    assert reveni.sim_post("webhooks/flush") == {"released": 1}
    wait_for(lambda: len(receiver.calls) == 3)
    assert [e[2] for e in _events(receiver)] == ["shipped", "in_progress", "received"]
    assert _snapshot(reveni)["reordered"] == 2


def test_dropped_events_are_listed_and_can_be_replayed(
    reveni: ReveniSimHandle, receiver: Receiver, hook_url: str
) -> None:
    reveni.sim_post("faults", {"drop_webhook_rate": 1.0, "webhook_delay_scale": 0})
    _subscribe(reveni, hook_url)
    return_id = _new_return(reveni)
    reveni.sim_post(f"returns/{return_id}/status", {"status": "shipped"})
    snapshot = _snapshot(reveni)
    assert (snapshot["dropped"], snapshot["pending"]) == (2, 0)
    assert len(snapshot["dropped_events"]) == 2
    assert [d["outcome"] for d in snapshot["deliveries"]] == ["dropped", "dropped"]
    assert receiver.calls == []
    assert reveni.sim_post("webhooks/replay") == {"queued": 2}  # replays draw no faults
    _settled(reveni)
    assert [e[2] for e in _events(receiver)] == ["in_progress", "shipped"]
    ids = [parse_envelope(b).id for b in receiver.bodies()]
    assert ids == [d["event_id"] for d in snapshot["dropped_events"]]
    after = _snapshot(reveni)
    assert (after["dropped_events"], after["replayed"]) == ([], 2)


def _faulted_run(reveni: ReveniSimHandle, receiver: Receiver, hook_url: str) -> Any:
    reveni.reset()
    receiver.clear()
    _subscribe(reveni, hook_url)
    reveni.sim_post(
        "faults",
        {
            "seed": 7,
            "duplicate_webhook_rate": 0.4,
            "out_of_order_webhook_rate": 0.4,
            "drop_webhook_rate": 0.2,
            "webhook_delay_scale": 0,
        },
    )
    reveni.sim_post("walk")
    _settled(reveni)
    reveni.sim_post("webhooks/flush")
    _settled(reveni)
    snapshot = _snapshot(reveni)
    counts = {k: snapshot[k] for k in ("dropped", "duplicated", "reordered", "delivered")}
    return counts, _events(receiver)


def test_the_same_seed_gives_the_same_webhook_faults(
    reveni: ReveniSimHandle, receiver: Receiver, hook_url: str
) -> None:
    first = _faulted_run(reveni, receiver, hook_url)
    second = _faulted_run(reveni, receiver, hook_url)
    assert first == second
    counts, received = first
    assert counts["dropped"] and counts["duplicated"] and counts["reordered"]
    assert len(received) == 12 - counts["dropped"] + counts["duplicated"]


# ---------------------------------------------------------------------------- control


def test_signature_header_when_a_secret_is_set(
    reveni: ReveniSimHandle, receiver: Receiver, hook_url: str
) -> None:
    _subscribe(reveni, hook_url)
    assert reveni.sim_post("webhooks", {"secret": "whsec"})["signed"] is True
    _new_return(reveni)
    _settled(reveni)
    body, headers = receiver.calls[0]
    verify_signature("whsec", body, headers[SIGNATURE])
    assert reveni.control.post("/_sim/webhooks", json={"secret": ""}).status_code == 400
    assert reveni.control.post("/_sim/webhooks", json={"url": "x"}).status_code == 400


def test_signature_from_create_app(receiver: Receiver, hook_url: str) -> None:
    with running_reveni_sim(webhook_secret="from-app") as reveni:
        _subscribe(reveni, hook_url)
        reveni.sim_post("faults", {"webhook_delay_scale": 0})
        reveni.sim_post("returns/ret_std/status", {"status": "shipped"})
        _settled(reveni)
    body, headers = receiver.calls[0]
    verify_signature("from-app", body, headers[SIGNATURE])


def test_emit_sends_the_current_status(
    reveni: ReveniSimHandle, receiver: Receiver, hook_url: str
) -> None:
    _subscribe(reveni, hook_url)
    emitted = reveni.sim_post("webhooks/emit", {"return_id": "ret_exch"})
    assert (emitted["event"], emitted["resource_id"]) == ("return.updated", "ret_exch")
    reveni.sim_post("webhooks/emit", {"return_id": "ret_exch", "event": "return.created"})
    _settled(reveni)
    assert _events(receiver) == [
        ("return.updated", "ret_exch", "in_progress"),
        ("return.created", "ret_exch", "in_progress"),
    ]
    assert parse_envelope(receiver.bodies()[0]).id == emitted["id"]
    missing = reveni.control.post("/_sim/webhooks/emit", json={"return_id": "nope"})
    assert missing.status_code == 404
    bad = reveni.control.post(
        "/_sim/webhooks/emit", json={"return_id": "ret_exch", "event": "return.deleted"}
    )
    assert bad.status_code == 400


def test_load_forgets_events_but_keeps_subscriptions(
    reveni: ReveniSimHandle, hook_url: str
) -> None:
    reveni.sim_post("faults", {"drop_webhook_rate": 1.0})
    _subscribe(reveni, hook_url)
    _new_return(reveni)
    assert _snapshot(reveni)["events"] == 1
    reveni.sim_post("load", reveni_sim_scenario().model_dump(mode="json"))
    snapshot = _snapshot(reveni)
    assert (snapshot["events"], snapshot["dropped"], snapshot["dropped_events"]) == (0, 0, [])
    assert [s["url"] for s in snapshot["subscriptions"]] == [hook_url]
