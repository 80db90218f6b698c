"""The webhook receiver over real loopback HTTP, committing to a real Ledger on a SQLite file."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from receiver_support import (
    CENTRA_SECRET,
    FORM,
    JSON,
    RETURN_ID,
    REVENI_HEADER,
    REVENI_SECRET,
    centra_events,
    centra_request,
    envelope,
    ledger_unavailable,
    serve_receiver,
)

from returnbridge.connectors.centra.webhooks import (
    SIGNATURE_HEADER,
    encode_payload,
    signature_header,
)
from returnbridge.connectors.reveni.webhooks import sign_body
from returnbridge.ledger import InboxEvent, Ledger
from returnbridge.receiver import AcceptedEvent
from returnbridge.simulators.server import free_port


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(ledger_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{ledger_path}") as opened:
        yield opened


@pytest.fixture
def reader(ledger: Ledger, ledger_path: Path) -> Iterator[Ledger]:
    """A second Ledger on the same file: sees only what the receiver committed."""
    with Ledger(f"sqlite:///{ledger_path}") as opened:
        yield opened


@pytest.fixture
def receiver(ledger: Ledger) -> Iterator[httpx.Client]:
    """No Reveni secret (unsigned Reveni webhooks accepted), Centra secret set."""
    with serve_receiver(ledger) as client:
        yield client


@pytest.fixture
def signed_receiver(ledger: Ledger) -> Iterator[httpx.Client]:
    with serve_receiver(ledger, reveni_secret=REVENI_SECRET) as client:
        yield client


def pending(ledger: Ledger) -> list[InboxEvent]:
    return ledger.inbox_pending()


# ---------------------------------------------------------------------------- Reveni


def test_reveni_event_is_committed_before_the_answer(
    receiver: httpx.Client, reader: Ledger
) -> None:
    body = envelope()
    response = receiver.post("/webhooks/reveni", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "accepted": 1, "duplicates": 0}
    # Read through another connection pool the moment the answer is in: already committed.
    [row] = pending(reader)
    assert (row.source, row.event_id, row.resource_id, row.event_type) == (
        "reveni",
        "evt_1",
        RETURN_ID,
        "return.updated",
    )
    assert row.body == body.decode() and row.processed_at is None


def test_reveni_redelivery_is_a_duplicate_not_an_error(
    receiver: httpx.Client, reader: Ledger
) -> None:
    first = receiver.post("/webhooks/reveni", content=envelope(), headers=JSON)
    again = receiver.post("/webhooks/reveni", content=envelope(), headers=JSON)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == {"status": "duplicate", "accepted": 0, "duplicates": 1}
    assert [e.event_id for e in pending(reader)] == ["evt_1"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (envelope(event="refund.created"), "event"),
        (envelope(data={"status": "shipped"}), "data.resource_id"),
        (envelope(id=""), "id"),
        (envelope(created="yesterday"), "created"),
        (envelope().decode().encode("utf-16"), "not UTF-8"),
    ],
    ids=[
        "not-json",
        "array",
        "unknown-event",
        "no-resource-id",
        "empty-id",
        "bad-created",
        "utf16",
    ],
)
def test_malformed_reveni_envelope_is_400_naming_the_problem(
    receiver: httpx.Client, reader: Ledger, body: bytes, message: str
) -> None:
    response = receiver.post("/webhooks/reveni", content=body, headers=JSON)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert pending(reader) == []


def test_signed_reveni_event_is_accepted(signed_receiver: httpx.Client, reader: Ledger) -> None:
    body = envelope()
    headers = {**JSON, REVENI_HEADER: sign_body(REVENI_SECRET, body)}
    response = signed_receiver.post("/webhooks/reveni", content=body, headers=headers)
    assert response.status_code == 200
    assert len(pending(reader)) == 1


def test_unsigned_reveni_event_is_401_when_a_secret_is_set(
    signed_receiver: httpx.Client, reader: Ledger
) -> None:
    response = signed_receiver.post("/webhooks/reveni", content=envelope(), headers=JSON)
    assert response.status_code == 401
    assert response.json() == {"error": f"missing {REVENI_HEADER} header"}
    assert pending(reader) == []


@pytest.mark.parametrize(
    "signature",
    [
        sign_body("another-secret", envelope()),
        sign_body(REVENI_SECRET, envelope(status="shipped")),  # signed a different body
        "not-a-signature",
    ],
    ids=["wrong-secret", "other-body", "garbage"],
)
def test_badly_signed_reveni_event_is_401(
    signed_receiver: httpx.Client, reader: Ledger, signature: str
) -> None:
    headers = {**JSON, REVENI_HEADER: signature}
    response = signed_receiver.post("/webhooks/reveni", content=envelope(), headers=headers)
    assert response.status_code == 401
    assert "does not match" in response.json()["error"]
    assert pending(reader) == []


def test_signature_is_checked_before_the_envelope(signed_receiver: httpx.Client) -> None:
    response = signed_receiver.post("/webhooks/reveni", content=b"{not json", headers=JSON)
    assert response.status_code == 401  # an unauthenticated caller learns nothing about parsing


def test_optional_reveni_signature_checks_only_what_is_signed(ledger: Ledger) -> None:
    with serve_receiver(
        ledger, reveni_secret=REVENI_SECRET, require_reveni_signature=False
    ) as client:
        unsigned = client.post("/webhooks/reveni", content=envelope("a"), headers=JSON)
        forged = {**JSON, REVENI_HEADER: sign_body("x", envelope("b"))}
        bad = client.post("/webhooks/reveni", content=envelope("b"), headers=forged)
    assert (unsigned.status_code, bad.status_code) == (200, 401)


# ---------------------------------------------------------------------------- Centra


def test_centra_events_are_committed_one_row_each(receiver: httpx.Client, reader: Ledger) -> None:
    body, headers = centra_request(centra_events(1001, 1003))
    response = receiver.post("/webhooks/centra", content=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "accepted": 2, "duplicates": 0}
    rows = pending(reader)
    assert [(r.source, r.resource_id, r.event_type) for r in rows] == [
        ("centra", "1001", "order.update"),
        ("centra", "1003", "order.update"),
    ]
    assert rows[0].event_id == "order:1001:update:2026-10-15 14:00:00.000000"
    assert json.loads(rows[0].body) == {
        "type": "order",
        "action": "update",
        "date": "2026-10-15 14:00:00.000000",
        "id": "1001",
    }


def test_centra_retry_with_a_new_timestamp_dedupes(receiver: httpx.Client, reader: Ledger) -> None:
    # Centra's retries re-sign the same body under a new `t` (a new v1), and a re-send may batch
    # differently: the event's own (type, id, action, date) is what identifies it.
    body, first_headers = centra_request(centra_events(1001, 1003), age=5)
    _, retry_headers = centra_request(centra_events(1001, 1003))
    assert first_headers[SIGNATURE_HEADER] != retry_headers[SIGNATURE_HEADER]
    first = receiver.post("/webhooks/centra", content=body, headers=first_headers)
    retry = receiver.post("/webhooks/centra", content=body, headers=retry_headers)
    rebatched, headers = centra_request(centra_events(1001, 1003)[1:])
    alone = receiver.post("/webhooks/centra", content=rebatched, headers=headers)
    assert first.json()["accepted"] == 2
    assert retry.json() == {"status": "duplicate", "accepted": 0, "duplicates": 2}
    assert alone.json() == {"status": "duplicate", "accepted": 0, "duplicates": 1}
    assert len(pending(reader)) == 2


def test_replayed_centra_request_is_401_timestamp_too_old(
    receiver: httpx.Client, reader: Ledger
) -> None:
    body, headers = centra_request(centra_events(1001), age=301)
    response = receiver.post("/webhooks/centra", content=body, headers=headers)
    assert response.status_code == 401
    assert "too old" in response.json()["error"]
    assert pending(reader) == []


def test_centra_tolerance_is_configurable(ledger: Ledger) -> None:
    body, headers = centra_request(centra_events(1001), age=30)
    with serve_receiver(ledger, centra_tolerance_seconds=10) as client:
        response = client.post("/webhooks/centra", content=body, headers=headers)
    assert response.status_code == 401 and "too old" in response.json()["error"]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (FORM, "missing X-Centra-Signature"),
        ({**FORM, SIGNATURE_HEADER: "garbage"}, "malformed"),
        # "{now}" is filled in when the test runs: a time taken at collection would be minutes
        # old by then on a slow machine, and refused as a replay instead.
        ({**FORM, SIGNATURE_HEADER: "t={now},v1=" + "0" * 64}, "does not match"),
        ({**FORM, SIGNATURE_HEADER: "t={in_an_hour},v1=00"}, "in the future"),
    ],
    ids=["missing", "malformed", "wrong", "future"],
)
def test_unsigned_or_badly_signed_centra_request_is_401(
    receiver: httpx.Client, reader: Ledger, headers: dict[str, str], message: str
) -> None:
    now = int(time.time())
    headers = {k: v.format(now=now, in_an_hour=now + 3600) for k, v in headers.items()}
    body = encode_payload({"events": centra_events(1001)})
    response = receiver.post("/webhooks/centra", content=body, headers=headers)
    assert response.status_code == 401
    assert message in response.json()["error"]
    assert pending(reader) == []


def test_centra_body_signed_with_another_secret_is_401(receiver: httpx.Client) -> None:
    body, headers = centra_request(centra_events(1001), secret="not-ours")
    assert receiver.post("/webhooks/centra", content=body, headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"products": ["12412"]}, "Integration API mode"),
        ({"events": {"type": "order"}}, "must be a list"),
        ({"events": [{"type": "order", "action": "update"}]}, "events[0].id"),
        ({"events": [{"type": "order", "action": "", "id": 1}]}, "events[0].action"),
        ({"events": [*centra_events(1), {"type": "order", "action": "x", "id": True}]}, "[1].id"),
    ],
    ids=["checkout-mode", "not-a-list", "no-id", "empty-action", "bool-id"],
)
def test_malformed_centra_payload_is_400_naming_the_problem(
    receiver: httpx.Client, reader: Ledger, payload: dict[str, Any], message: str
) -> None:
    body = encode_payload(payload)
    headers = {**FORM, SIGNATURE_HEADER: signature_header(CENTRA_SECRET, int(time.time()), body)}
    response = receiver.post("/webhooks/centra", content=body, headers=headers)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert pending(reader) == []


def test_centra_form_without_payload_is_400(receiver: httpx.Client) -> None:
    body = b"other=1"
    headers = {**FORM, SIGNATURE_HEADER: signature_header(CENTRA_SECRET, int(time.time()), body)}
    response = receiver.post("/webhooks/centra", content=body, headers=headers)
    assert response.status_code == 400 and "payload" in response.json()["error"]


def test_centra_route_is_404_without_a_centra_secret(ledger: Ledger) -> None:
    body, headers = centra_request(centra_events(1001))
    with serve_receiver(ledger, centra_secret=None) as client:
        response = client.post("/webhooks/centra", content=body, headers=headers)
    assert response.status_code == 404
    assert "centra_secret" in response.json()["error"]


# ---------------------------------------------------------------------------- size and type


def test_oversize_bodies_are_413(ledger: Ledger, reader: Ledger) -> None:
    big = envelope(padding="x" * 2048)
    with serve_receiver(ledger, max_body_bytes=1024) as client:
        declared = client.post("/webhooks/reveni", content=big, headers=JSON)
        # Chunked: no Content-Length to refuse up front; the stream is cut at the limit.
        chunked = client.post(
            "/webhooks/reveni", content=iter([big[:600], big[600:]]), headers=JSON
        )
        body, headers = centra_request(centra_events(*range(1, 60)))
        centra = client.post("/webhooks/centra", content=body, headers=headers)
        fits = client.post("/webhooks/reveni", content=envelope(), headers=JSON)
    assert "content-length" not in chunked.request.headers
    assert [r.status_code for r in (declared, chunked, centra, fits)] == [413, 413, 413, 200]
    assert "1024-byte limit" in declared.json()["error"]
    assert [e.event_id for e in pending(reader)] == ["evt_1"]


def test_default_limit_refuses_a_large_body(receiver: httpx.Client) -> None:
    big = envelope(padding="x" * (256 * 1024))
    assert receiver.post("/webhooks/reveni", content=big, headers=JSON).status_code == 413


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/webhooks/reveni", "text/plain"),
        ("/webhooks/reveni", "application/x-www-form-urlencoded"),
        ("/webhooks/reveni", None),
        ("/webhooks/centra", "application/json"),
        ("/webhooks/centra", "multipart/form-data; boundary=x"),
    ],
)
def test_wrong_content_type_is_415(
    receiver: httpx.Client, reader: Ledger, path: str, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = receiver.post(path, content=envelope(), headers=headers)
    assert response.status_code == 415
    assert "content type" in response.json()["error"]
    assert pending(reader) == []


def test_json_with_charset_is_json(receiver: httpx.Client) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    assert receiver.post("/webhooks/reveni", content=envelope(), headers=headers).is_success


def test_only_post_is_allowed(receiver: httpx.Client) -> None:
    assert receiver.get("/webhooks/reveni").status_code == 405


# ---------------------------------------------------------------------------- ledger down


def test_ledger_failure_is_503_and_nothing_is_acknowledged(
    ledger: Ledger, ledger_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[AcceptedEvent] = []
    with serve_receiver(ledger, on_event=events.append) as client:
        with ledger_unavailable(ledger, ledger_path), caplog.at_level(logging.WARNING):
            reveni = client.post("/webhooks/reveni", content=envelope(), headers=JSON)
            body, headers = centra_request(centra_events(1001))
            centra = client.post("/webhooks/centra", content=body, headers=headers)
            health = client.get("/healthz")
        assert [r.status_code for r in (reveni, centra, health)] == [503, 503, 503]
        assert "retry later" in reveni.json()["error"]
        assert events == []
        # The sender's retry once the ledger is back is an ordinary first delivery.
        again = client.post("/webhooks/reveni", content=envelope(), headers=JSON)
        assert again.json()["status"] == "accepted"
    refusals = [r for r in caplog.records if "503 ledger unavailable" in r.getMessage()]
    assert len(refusals) == 2 and all(r.levelno == logging.ERROR for r in refusals)
    assert all("\n" not in r.getMessage() and RETURN_ID not in r.getMessage() for r in refusals)


# ---------------------------------------------------------------------------- on_event


def test_on_event_runs_after_the_commit_once_per_new_event(ledger: Ledger, reader: Ledger) -> None:
    seen: list[tuple[AcceptedEvent, list[str]]] = []
    done = threading.Event()

    async def on_event(event: AcceptedEvent) -> None:
        seen.append((event, [e.event_id for e in pending(reader)]))
        if len(seen) == 3:
            done.set()

    with serve_receiver(ledger, on_event=on_event) as client:
        client.post("/webhooks/reveni", content=envelope(), headers=JSON)
        client.post("/webhooks/reveni", content=envelope(), headers=JSON)  # duplicate: no call
        body, headers = centra_request(centra_events(1001, 1003))
        client.post("/webhooks/centra", content=body, headers=headers)
        assert done.wait(5)
    first, committed = seen[0]
    assert first == AcceptedEvent("reveni", "evt_1", RETURN_ID, "return.updated")
    assert "evt_1" in committed
    assert [(e.source, e.resource_id) for e, _ in seen[1:]] == [
        ("centra", "1001"),
        ("centra", "1003"),
    ]
    assert all(e.event_id in ids for e, ids in seen)


def test_failing_on_event_never_turns_a_commit_into_an_error(
    ledger: Ledger, reader: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    called = threading.Event()

    def on_event(event: AcceptedEvent) -> None:
        called.set()
        raise RuntimeError("sync service is down")

    with caplog.at_level(logging.ERROR), serve_receiver(ledger, on_event=on_event) as client:
        response = client.post("/webhooks/reveni", content=envelope(), headers=JSON)
        assert called.wait(5)
        assert client.get("/healthz").status_code == 200  # and the server keeps serving
    assert response.status_code == 200
    assert len(pending(reader)) == 1
    assert any("on_event failed for reveni event evt_1" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------- health, logs


def test_healthz_counts_pending_inbox_events(receiver: httpx.Client, ledger: Ledger) -> None:
    assert receiver.get("/healthz").json() == {"status": "ok", "inbox_pending": 0}
    receiver.post("/webhooks/reveni", content=envelope("a"), headers=JSON)
    receiver.post("/webhooks/reveni", content=envelope("b"), headers=JSON)
    assert receiver.get("/healthz").json() == {"status": "ok", "inbox_pending": 2}
    ledger.inbox_processed([pending(ledger)[0].id])
    assert receiver.get("/healthz").json()["inbox_pending"] == 1


def test_path_prefix_moves_every_route(ledger: Ledger) -> None:
    with serve_receiver(ledger, path_prefix="/rb") as client:
        assert client.get("/rb/healthz").status_code == 200
        assert client.post("/rb/webhooks/reveni", content=envelope(), headers=JSON).is_success
        assert client.post("/webhooks/reveni", content=envelope(), headers=JSON).status_code == 404


def test_refusals_are_one_warning_line_without_secrets_or_bodies(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    secret_body = envelope(data={"resource_id": RETURN_ID, "email": "anna@example.com"}, event="x")
    with (
        caplog.at_level(logging.WARNING),
        serve_receiver(ledger, reveni_secret=REVENI_SECRET) as client,
    ):
        good_signature = sign_body(REVENI_SECRET, secret_body)
        client.post(
            "/webhooks/reveni", content=secret_body, headers={**JSON, REVENI_HEADER: good_signature}
        )  # 400
        client.post("/webhooks/reveni", content=secret_body, headers=JSON)  # 401
        client.post("/webhooks/reveni", content=secret_body, headers={"Content-Type": "text/x"})
        body, headers = centra_request(centra_events(1001), age=3600)
        client.post("/webhooks/centra", content=body, headers=headers)  # 401 replay
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused ")]
    assert [r.levelno for r in refusals] == [logging.WARNING] * 4
    text = "\n".join(r.getMessage() for r in refusals)
    assert [m.split(": ")[1][:3] for m in text.splitlines()] == ["400", "401", "415", "401"]
    for forbidden in (REVENI_SECRET, CENTRA_SECRET, good_signature, "anna@example.com", RETURN_ID):
        assert forbidden not in text
    assert all("\n" not in r.getMessage() for r in refusals)


def test_run_receiver_serves_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    script = (
        "from returnbridge.receiver import ReceiverSettings, run_receiver\n"
        f"run_receiver(ReceiverSettings(port={port}), {url!r}, log_level='warning')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETURNBRIDGE_")}
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    health = client.get("/healthz")
                    break
                except httpx.TransportError:
                    assert process.poll() is None and time.monotonic() < deadline
                    time.sleep(0.05)
            assert health.json() == {"status": "ok", "inbox_pending": 0}
            response = client.post("/webhooks/reveni", content=envelope(), headers=JSON)
            assert response.json()["status"] == "accepted"
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.wait(timeout=10) in (0, -signal.SIGTERM)
    with Ledger(url) as ledger:
        assert [e.event_id for e in ledger.inbox_pending()] == ["evt_1"]
