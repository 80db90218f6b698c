"""The receiver against what a probe threw at it, over real loopback HTTP: /healthz counts in SQL,
JSON Python cannot read is a 400, texts the ledger cannot store are refused as the client's
fault (and only the bad event of a Centra batch), every source is rate limited, and the
`receiver` command hands the loaded Slack settings on."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
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
)
from starlette.requests import Request
from typer.testing import CliRunner

from returnbridge import cli_ops
from returnbridge.cli import app as cli_app
from returnbridge.connectors.centra.webhooks import SIGNATURE_HEADER, signature_header
from returnbridge.connectors.reveni.webhooks import sign_body
from returnbridge.connectors.slack import SlackSettings
from returnbridge.connectors.slack.interactions import signed_headers
from returnbridge.ledger import InboxEvent, Ledger, schema
from returnbridge.receiver import ReceiverSettings, create_receiver
from returnbridge.receiver import app as receiver_app
from returnbridge.simulators.server import serve_in_thread

SLACK_SECRET = "slack-signing-secret"
DEEP = 5_000  # far beyond the interpreter's recursion limit (about 1,000)
LONG_NUMBER = "9" * 5_000  # over Python's 4,300-digit int-string conversion limit


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def serve(
    ledger: Ledger,
    *,
    clock: Callable[[], float] = time.monotonic,
    slack: SlackSettings | None = None,
    **settings: Any,
) -> Iterator[httpx.Client]:
    settings.setdefault("centra_secret", CENTRA_SECRET)
    app = create_receiver(
        ledger,
        ReceiverSettings(**settings),
        slack=slack,
        slack_client=_no_slack_calls if slack is not None else None,
        clock=clock,
    )
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _no_slack_calls() -> Any:
    raise AssertionError("a refused request must not call Slack")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


@pytest.fixture
def any_ledger(ledger_url: str) -> Iterator[Ledger]:
    """A ledger on SQLite, then on PostgreSQL."""
    with Ledger(ledger_url) as opened:
        yield opened


def pending(ledger: Ledger) -> list[InboxEvent]:
    return ledger.inbox_pending()


def raw_centra(payload_json: str) -> tuple[bytes, dict[str, str]]:
    """A signed Centra request whose `payload` is `payload_json` exactly as written."""
    body = urlencode({"payload": payload_json}).encode()
    return body, {**FORM, SIGNATURE_HEADER: signature_header(CENTRA_SECRET, int(time.time()), body)}


def raw_reveni(event_id: str = "evt_1", resource_id: str = RETURN_ID, extra: str = "") -> bytes:
    """A Reveni envelope whose strings are written into the JSON as given (escapes kept)."""
    return (
        f'{{"id":"{event_id}","event":"return.updated","created":1760000000,'
        f'"data":{{"resource_id":"{resource_id}","status":"in_progress"}}{extra}}}'
    ).encode()


# ---------------------------------------------------------------------------- 1. /healthz


def test_healthz_counts_in_sql_without_loading_a_row(
    any_ledger: Ledger, ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More pending events than the old handler's 10,000-row cap, each with a body it would have
    # loaded; and a few processed ones that do not count.
    at = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)
    rows = [
        {
            "source": "reveni",
            "event_id": f"evt_{n}",
            "body": "x" * 200,
            "received_at": at,
            "processed_at": at if n < 7 else None,
        }
        for n in range(10_057)
    ]
    engine = sa.create_engine(ledger_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(schema.inbox), rows)
    finally:
        engine.dispose()

    def no_rows(*args: object, **kwargs: object) -> list[InboxEvent]:
        raise AssertionError("/healthz must count in SQL, not load inbox rows")

    monkeypatch.setattr(Ledger, "inbox_pending", no_rows)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with serve(any_ledger) as client:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
        try:
            response = client.get("/healthz")
        finally:
            sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "inbox_pending": 10_050}
    assert statements, "the count is a query"
    assert not [s for s in statements if "body" in s.lower()]


# ---------------------------------------------------------------------------- 2. unreadable JSON


def _slack_settings() -> SlackSettings:
    return SlackSettings(signing_secret=SecretStr(SLACK_SECRET), token=SecretStr("xoxb-test"))


def _slack_request(payload_json: str) -> tuple[bytes, dict[str, str]]:
    body = urlencode({"payload": payload_json}).encode()
    return body, signed_headers(SLACK_SECRET, body)


_DEEP_JSON = "[" * DEEP + "]" * DEEP


@pytest.mark.parametrize(
    ("route", "request_of", "message"),
    [
        (
            "/webhooks/reveni",
            lambda: (raw_reveni(extra=f',"x":{LONG_NUMBER}'), JSON),
            "a number too long",
        ),
        ("/webhooks/reveni", lambda: (raw_reveni(extra=f',"x":{_DEEP_JSON}'), JSON), "too deep"),
        (
            "/webhooks/centra",
            lambda: raw_centra(
                '{"events":[{"type":"order","action":"update","id":' + LONG_NUMBER + "}]}"
            ),
            "a number too long",
        ),
        (
            "/webhooks/centra",
            lambda: raw_centra('{"events":[],"x":' + _DEEP_JSON + "}"),
            "too deep",
        ),
        (
            "/slack/actions",
            lambda: _slack_request('{"type":"block_actions","x":' + LONG_NUMBER + "}"),
            "a number too long",
        ),
        (
            "/slack/actions",
            lambda: _slack_request('{"type":"block_actions","x":' + _DEEP_JSON + "}"),
            "too deep",
        ),
    ],
    ids=[
        "reveni-long-number",
        "reveni-deep",
        "centra-long-number",
        "centra-deep",
        "slack-long-number",
        "slack-deep",
    ],
)
def test_json_python_cannot_read_is_400_naming_the_problem(
    ledger: Ledger,
    route: str,
    request_of: Callable[[], tuple[bytes, dict[str, str]]],
    message: str,
) -> None:
    body, headers = request_of()
    with serve(ledger, slack=_slack_settings()) as client:
        response = client.post(route, content=body, headers=headers)
        assert client.get("/healthz").status_code == 200  # and it keeps serving
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert message in error
    assert "JSON nested too deep" in error if message == "too deep" else "4300 digits" in error
    assert pending(ledger) == []


def test_a_huge_content_length_is_413_not_a_crash() -> None:
    # uvicorn's h11 refuses such a header itself; behind another HTTP parser the receiver
    # compares it as text (int() would raise on over 4,300 digits).
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/webhooks/reveni",
        "headers": [(b"content-length", b"9" * 5_000)],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    with pytest.raises(receiver_app._Refused) as refused:
        asyncio.run(receiver_app._read_body(Request(scope, receive), 1024))
    assert refused.value.status == 413 and "1024-byte limit" in refused.value.reason


# ---------------------------------------------------------------------------- 3. storable texts


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (raw_reveni(event_id="a\\u0000b"), "event id contains a character that cannot be stored"),
        (raw_reveni(resource_id="r\\u0000"), "resource id (data.resource_id) contains a character"),
        (raw_reveni(event_id="a\\ud800"), "id"),
        (raw_reveni(event_id="e" * 1025), "event id is 1025 bytes long, over the 1024-byte limit"),
    ],
    ids=["nul-event-id", "nul-resource-id", "surrogate-event-id", "long-event-id"],
)
def test_reveni_text_the_ledger_cannot_store_is_400_naming_the_field(
    any_ledger: Ledger, body: bytes, message: str
) -> None:
    with serve(any_ledger) as client:
        response = client.post("/webhooks/reveni", content=body, headers=JSON)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert pending(any_ledger) == []


def test_nul_is_named_as_an_escape(ledger: Ledger) -> None:
    with serve(ledger) as client:
        response = client.post(
            "/webhooks/reveni", content=raw_reveni(event_id="a\\u0000b"), headers=JSON
        )
    assert response.json() == {
        "error": "event id contains a character that cannot be stored (\\u0000)"
    }


def test_reveni_body_is_kept_as_sent_escapes_and_all(any_ledger: Ledger) -> None:
    # A lone surrogate or a NUL outside the stored ids is no reason to refuse: the body is kept
    # as the text that came, where they are six plain ASCII characters each.
    body = raw_reveni(extra=',"note":"\\ud800 and \\u0000"')
    with serve(any_ledger) as client:
        response = client.post("/webhooks/reveni", content=body, headers=JSON)
    assert response.status_code == 200, response.text
    [row] = pending(any_ledger)
    assert row.body == body.decode("ascii")
    assert json.loads(row.body)["note"] == "\ud800 and \x00"


@pytest.mark.parametrize(
    ("bad_id", "shown"), [("\ud800", "\\ud800"), ("10\x0002", "\\u0000")], ids=["surrogate", "nul"]
)
def test_centra_batch_keeps_the_good_events_and_names_the_bad_one(
    any_ledger: Ledger, caplog: pytest.LogCaptureFixture, bad_id: str, shown: str
) -> None:
    events = centra_events(1001, 1002, 1003)
    events[1]["id"] = bad_id
    body, headers = centra_request(events)
    with caplog.at_level(logging.WARNING), serve(any_ledger) as client:
        response = client.post("/webhooks/centra", content=body, headers=headers)
        _, retry_headers = centra_request(events)
        retry = client.post("/webhooks/centra", content=body, headers=retry_headers)
    error = f"events[1].id contains a character that cannot be stored ({shown})"
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "partial",
        "accepted": 2,
        "duplicates": 0,
        "refused": [{"index": 1, "error": error}],
    }
    assert retry.status_code == 200
    assert retry.json()["duplicates"] == 2 and retry.json()["accepted"] == 0
    assert [r.resource_id for r in pending(any_ledger)] == ["1001", "1003"]
    logged = [r.getMessage() for r in caplog.records if "refused centra event 1" in r.getMessage()]
    assert logged and all(error in line for line in logged)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "\ud800"}, "events[0].id contains a character that cannot be stored (\\ud800)"),
        ({"action": "up\x00date"}, "events[0].action contains a character that cannot be stored"),
        ({"date": "\udfff"}, "events[0].date contains a character that cannot be stored"),
        ({"id": int("9" * 4000)}, "events[0].id is 4000 bytes long, over the 1024-byte limit"),
    ],
    ids=["surrogate-id", "nul-action", "surrogate-date", "long-id"],
)
def test_centra_request_with_nothing_storable_is_400(
    any_ledger: Ledger, change: dict[str, Any], message: str
) -> None:
    events = centra_events(1001)
    events[0].update(change)
    body, headers = centra_request(events)
    with serve(any_ledger) as client:
        response = client.post("/webhooks/centra", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert pending(any_ledger) == []


# ---------------------------------------------------------------------------- 4. rate limits


def test_defaults_are_generous() -> None:
    settings = ReceiverSettings()
    assert (settings.rate_limit_per_minute, settings.rate_limit_burst) == (3000, None)


def test_over_the_limit_is_429_with_retry_after_and_nothing_stored(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    with (
        caplog.at_level(logging.WARNING),
        serve(ledger, clock=clock, rate_limit_per_minute=60, rate_limit_burst=2) as client,
    ):
        answers = [
            client.post("/webhooks/reveni", content=envelope(f"e{n}"), headers=JSON)
            for n in range(4)
        ]
        # Each source has its own bucket: Centra is not held back by Reveni's flood.
        body, headers = centra_request(centra_events(1001))
        centra = client.post("/webhooks/centra", content=body, headers=headers)
        clock.now += 1.0  # one token back (60 a minute)
        later = client.post("/webhooks/reveni", content=envelope("e9"), headers=JSON)
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert answers[2].headers["Retry-After"] == "1"
    assert "too many reveni requests" in answers[2].json()["error"]
    assert (centra.status_code, later.status_code) == (200, 200)
    assert sorted(e.event_id for e in pending(ledger) if e.source == "reveni") == [
        "e0",
        "e1",
        "e9",
    ]
    # One line for the run of 429s and one when it ends, not one per refusal.
    lines = [r.getMessage() for r in caplog.records if "reveni" in r.getMessage()]
    assert sum(": 429 " in line for line in lines) == 1
    assert any("2 were refused over the rate limit" in line for line in lines)


def test_retry_after_says_when_a_token_is_back(ledger: Ledger) -> None:
    clock = FakeClock()
    with serve(ledger, clock=clock, rate_limit_per_minute=6, rate_limit_burst=1) as client:
        client.post("/webhooks/reveni", content=envelope("a"), headers=JSON)
        clock.now += 2.5
        refused = client.post("/webhooks/reveni", content=envelope("b"), headers=JSON)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "8"  # one every 10 s, 2.5 s gone: 7.5 s, rounded up


def test_signed_and_badly_signed_requests_are_limited_too(ledger: Ledger) -> None:
    clock = FakeClock()
    with serve(
        ledger,
        clock=clock,
        reveni_secret=REVENI_SECRET,
        rate_limit_per_minute=60,
        rate_limit_burst=2,
    ) as client:
        forged = {**JSON, REVENI_HEADER: sign_body("not-the-secret", envelope("a"))}
        bad = [
            client.post("/webhooks/reveni", content=envelope("a"), headers=forged) for _ in range(2)
        ]
        signed = {**JSON, REVENI_HEADER: sign_body(REVENI_SECRET, envelope("b"))}
        good = client.post("/webhooks/reveni", content=envelope("b"), headers=signed)
        # Refused before the body is even looked at: no 415 for the wrong type, a 429.
        typed = client.post("/webhooks/reveni", content=b"x", headers={"Content-Type": "text/x"})
    assert [r.status_code for r in bad] == [401, 401]
    assert (good.status_code, typed.status_code) == (429, 429)
    assert pending(ledger) == []


def test_slack_route_has_its_own_limit(ledger: Ledger) -> None:
    clock = FakeClock()
    with serve(ledger, clock=clock, rate_limit_per_minute=60, rate_limit_burst=1) as client:
        first = client.post("/slack/actions", content=b"payload=%7B%7D", headers=FORM)
        second = client.post("/slack/actions", content=b"payload=%7B%7D", headers=FORM)
        reveni = client.post("/webhooks/reveni", content=envelope(), headers=JSON)
    assert (first.status_code, second.status_code, reveni.status_code) == (404, 429, 200)


def test_zero_turns_the_limit_off(ledger: Ledger) -> None:
    with serve(ledger, rate_limit_per_minute=0, rate_limit_burst=1) as client:
        answers = [
            client.post("/webhooks/reveni", content=envelope(f"e{n}"), headers=JSON)
            for n in range(25)
        ]
    assert {a.status_code for a in answers} == {200}
    assert len(pending(ledger)) == 25


# ---------------------------------------------------------------------------- 6. the command


@pytest.mark.parametrize("trigger", ["none", "inline"])
def test_receiver_command_hands_the_loaded_slack_settings_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, trigger: str
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run_receiver(settings: ReceiverSettings, ledger_url: str, **kwargs: Any) -> None:
        calls.append(kwargs)

    monkeypatch.setattr(receiver_app, "run_receiver", fake_run_receiver)
    monkeypatch.setattr(cli_ops, "_logging", lambda: None)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    env = {
        "RETURNBRIDGE_SYNC__LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "RETURNBRIDGE_SLACK__SIGNING_SECRET": "from-the-environment",
        "RETURNBRIDGE_SLACK__CHANNELS": json.dumps(
            {"finance": "#fin", "ops": "#ops", "cx": "C0123456789"}
        ),
    }
    result = CliRunner().invoke(cli_app, ["receiver", "--trigger", trigger], env=env)
    assert result.exit_code == 0, result.output
    [kwargs] = calls
    slack = kwargs.get("slack")
    assert isinstance(slack, SlackSettings)
    assert slack.signing_secrets == ("from-the-environment",)
    assert slack.channels["cx"] == "C0123456789"
