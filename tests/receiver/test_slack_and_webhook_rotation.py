"""Rotating a secret loses nothing: the receiver accepts the current and the next webhook secret
for Reveni and Centra (the Slack signing secret's rotation: test_slack_actions.py), over real
loopback HTTP into a real Ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from receiver_support import (
    JSON,
    REVENI_HEADER,
    centra_events,
    centra_request,
    envelope,
    serve_receiver,
)

from returnbridge.connectors.centra.webhooks import signature_header, verify_signature
from returnbridge.connectors.reveni.webhooks import WebhookError, sign_body
from returnbridge.connectors.reveni.webhooks import verify_signature as verify_reveni
from returnbridge.ledger import Ledger
from returnbridge.receiver import ReceiverSettings
from returnbridge.settings import Settings

OLD = "whsec-old"
NEW = "whsec-new"
THIRD = "whsec-someone-else"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


@pytest.fixture
def rotating(ledger: Ledger) -> Iterator[httpx.Client]:
    with serve_receiver(
        ledger,
        reveni_secret=OLD,
        reveni_secret_next=NEW,
        centra_secret=OLD,
        centra_secret_next=NEW,
    ) as client:
        yield client


def reveni(client: httpx.Client, event_id: str, secret: str | None) -> httpx.Response:
    body = envelope(event_id)
    headers = dict(JSON)
    if secret is not None:
        headers[REVENI_HEADER] = sign_body(secret, body)
    return client.post("/webhooks/reveni", content=body, headers=headers)


def centra(client: httpx.Client, order: int, secret: str) -> httpx.Response:
    body, headers = centra_request(centra_events(order), secret=secret)
    return client.post("/webhooks/centra", content=body, headers=headers)


def test_reveni_accepts_the_old_and_the_next_secret_and_refuses_a_third(
    rotating: httpx.Client, ledger: Ledger
) -> None:
    assert reveni(rotating, "evt_old", OLD).status_code == 200
    assert reveni(rotating, "evt_new", NEW).status_code == 200
    third = reveni(rotating, "evt_third", THIRD)
    assert third.status_code == 401
    assert "does not match" in third.json()["error"]
    assert reveni(rotating, "evt_unsigned", None).status_code == 401  # still required
    assert [e.event_id for e in ledger.inbox_pending()] == ["evt_old", "evt_new"]


def test_centra_accepts_the_old_and_the_next_secret_and_refuses_a_third(
    rotating: httpx.Client, ledger: Ledger
) -> None:
    assert centra(rotating, 1001, OLD).status_code == 200
    assert centra(rotating, 1002, NEW).status_code == 200
    third = centra(rotating, 1003, THIRD)
    assert third.status_code == 401
    assert "does not match" in third.json()["error"]
    assert [e.resource_id for e in ledger.inbox_pending()] == ["1001", "1002"]


def test_a_next_secret_alone_is_enough_to_turn_the_endpoints_on(ledger: Ledger) -> None:
    with serve_receiver(ledger, centra_secret=None, centra_secret_next=NEW) as client:
        assert centra(client, 1001, NEW).status_code == 200
        assert centra(client, 1002, OLD).status_code == 401
        assert reveni(client, "evt_1", None).status_code == 200  # no Reveni secret at all
    with serve_receiver(ledger, reveni_secret_next=NEW) as client:
        assert reveni(client, "evt_2", NEW).status_code == 200
        assert reveni(client, "evt_3", None).status_code == 401


def test_without_a_next_secret_only_the_current_one_passes(ledger: Ledger) -> None:
    with serve_receiver(ledger, reveni_secret=OLD, centra_secret=OLD) as client:
        assert reveni(client, "evt_1", OLD).status_code == 200
        assert reveni(client, "evt_2", NEW).status_code == 401
        assert centra(client, 1001, OLD).status_code == 200
        assert centra(client, 1002, NEW).status_code == 401


# ---------------------------------------------------------------------------- settings


def test_receiver_settings_list_the_secrets_current_first() -> None:
    settings = ReceiverSettings(
        reveni_secret=SecretStr(OLD),
        reveni_secret_next=SecretStr(NEW),
        centra_secret_next=SecretStr(NEW),
    )
    assert settings.reveni_secrets == (OLD, NEW)
    assert settings.centra_secrets == (NEW,)
    assert settings.reveni_signature_required
    assert ReceiverSettings().reveni_secrets == ()
    assert not ReceiverSettings().reveni_signature_required
    assert NEW not in repr(settings)


@pytest.mark.parametrize("field", ["reveni_secret_next", "centra_secret_next"])
def test_an_empty_next_secret_is_refused(field: str) -> None:
    with pytest.raises(ValidationError, match="must not be empty"):
        ReceiverSettings(**{field: SecretStr("")})


def test_connector_secrets_keep_working_with_receiver_next_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env: dict[str, Any] = {
        "RETURNBRIDGE_REVENI__WEBHOOK_SECRET": OLD,
        "RETURNBRIDGE_CENTRA__WEBHOOK_SECRET": OLD,
        "RETURNBRIDGE_RECEIVER__REVENI_SECRET_NEXT": NEW,
        "RETURNBRIDGE_RECEIVER__CENTRA_SECRET_NEXT": NEW,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    receiver = Settings(_env_file=None).receiver  # type: ignore[call-arg]
    assert receiver.reveni_secrets == (OLD, NEW)
    assert receiver.centra_secrets == (OLD, NEW)


# ---------------------------------------------------------------------------- the verifiers


def test_the_verifiers_take_several_secrets() -> None:
    body = b"payload=%7B%7D"
    header = signature_header(NEW, 1_760_000_000, body)
    assert verify_signature([OLD, NEW], header, body, now=1_760_000_000) == 1_760_000_000
    assert verify_signature(NEW, header, body, now=1_760_000_000) == 1_760_000_000
    with pytest.raises(ValueError, match="no secret"):
        verify_signature([], header, body, now=1_760_000_000)
    verify_reveni((OLD, NEW), body, sign_body(NEW, body))
    with pytest.raises(WebhookError, match="does not match"):
        verify_reveni((OLD, NEW), body, sign_body(THIRD, body))
