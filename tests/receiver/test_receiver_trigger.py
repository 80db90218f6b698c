"""The debounced sync trigger and the receiver's settings."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from receiver_support import JSON, envelope, serve_receiver
from reveni_sim_support import wait_for

from returnbridge.ledger import Ledger
from returnbridge.receiver import DebouncedTrigger, ReceiverSettings
from returnbridge.settings import Settings

LONG = 3600.0  # a delay no test waits out: runs start through flush() or close()


class Runs:
    """An action that counts its runs and can be held inside a run."""

    def __init__(self) -> None:
        self.count = 0
        self.active = 0
        self.max_active = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.count += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.started.set()
        self.release.wait(5)
        with self._lock:
            self.active -= 1


@pytest.fixture
def runs() -> Runs:
    return Runs()


@pytest.fixture
def trigger(runs: Runs) -> Iterator[DebouncedTrigger]:
    with DebouncedTrigger(runs, delay_seconds=LONG) as made:
        yield made


def test_a_burst_of_notifications_is_one_run(trigger: DebouncedTrigger, runs: Runs) -> None:
    for _ in range(500):
        trigger.notify()
    assert (runs.count, trigger.pending) == (0, True)  # waiting out the delay
    assert trigger.flush()
    assert (runs.count, trigger.notifications, trigger.runs) == (1, 500, 1)
    assert trigger.pending is False
    assert trigger.flush() and runs.count == 1  # nothing requested: flush runs nothing


def test_the_run_starts_by_itself_after_the_delay(runs: Runs) -> None:
    with DebouncedTrigger(runs, delay_seconds=0.05) as trigger:
        started = time.monotonic()
        trigger.notify()
        trigger.notify()
        assert runs.started.wait(5)
        waited = time.monotonic() - started
        assert trigger.flush()
    assert waited >= 0.05 and runs.count == 1


def test_notifications_during_a_run_make_exactly_one_more(
    trigger: DebouncedTrigger, runs: Runs
) -> None:
    runs.release.clear()
    trigger.notify()
    threading.Thread(target=trigger.flush, daemon=True).start()
    assert runs.started.wait(5)  # first run in progress, held
    for _ in range(100):
        trigger.notify()
    assert trigger.pending
    runs.release.set()
    assert trigger.flush()
    assert (runs.count, runs.max_active) == (2, 1)  # never two at once


def test_notify_is_thread_safe(trigger: DebouncedTrigger, runs: Runs) -> None:
    def burst() -> None:
        for _ in range(1000):
            trigger.notify()

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert trigger.flush()
    assert (trigger.notifications, runs.count) == (8000, 1)


def test_a_failing_action_is_logged_and_the_trigger_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def action() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("prefect is down")

    with caplog.at_level(logging.ERROR), DebouncedTrigger(action, delay_seconds=LONG) as trigger:
        trigger.notify()
        assert trigger.flush()
        trigger.notify()
        assert trigger.flush()
        assert (len(calls), trigger.runs, trigger.failures) == (2, 2, 1)
    assert any("sync trigger action failed" in r.getMessage() for r in caplog.records)


def test_close_runs_what_was_requested_unless_told_not_to(runs: Runs) -> None:
    flushed = DebouncedTrigger(runs, delay_seconds=LONG)
    flushed.notify()
    flushed.close()
    assert runs.count == 1
    flushed.notify()  # ignored once closed
    assert flushed.notifications == 1

    dropped = DebouncedTrigger(runs, delay_seconds=LONG)
    dropped.notify()
    dropped.close(flush=False)
    assert runs.count == 1


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay_seconds"):
        DebouncedTrigger(lambda: None, delay_seconds=-1)


def test_receiver_bursts_become_one_sync_request(tmp_path: Path, runs: Runs) -> None:
    with (
        Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger,
        DebouncedTrigger(runs, delay_seconds=LONG) as trigger,
        serve_receiver(ledger, on_event=trigger.notify) as client,
    ):
        for n in range(20):
            response = client.post("/webhooks/reveni", content=envelope(f"evt_{n}"), headers=JSON)
            assert response.json()["status"] == "accepted"
        client.post("/webhooks/reveni", content=envelope("evt_0"), headers=JSON)  # duplicate
        wait_for(lambda: trigger.notifications == 20)  # on_event runs just after each answer
        assert trigger.flush()
        assert (trigger.notifications, runs.count) == (20, 1)


# ---------------------------------------------------------------------------- settings


def test_receiver_settings_defaults() -> None:
    settings = ReceiverSettings()
    assert (settings.host, settings.port, settings.path_prefix) == ("127.0.0.1", 8090, "")
    assert (settings.reveni_secret, settings.centra_secret) == (None, None)
    assert settings.reveni_signature_required is False
    assert (settings.centra_tolerance_seconds, settings.max_body_bytes) == (300, 256 * 1024)


def test_a_reveni_secret_makes_the_signature_required_by_default() -> None:
    assert ReceiverSettings(reveni_secret=SecretStr("s")).reveni_signature_required is True
    optional = ReceiverSettings(reveni_secret=SecretStr("s"), require_reveni_signature=False)
    assert optional.reveni_signature_required is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"require_reveni_signature": True}, "needs reveni_secret"),
        ({"centra_secret": ""}, "must not be empty"),
        ({"path_prefix": "rb"}, "path_prefix"),
        ({"path_prefix": "/rb/"}, "path_prefix"),
        ({"port": 0}, "port"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
        ({"reveni_secrett": "typo"}, "reveni_secrett"),
    ],
)
def test_bad_receiver_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ReceiverSettings.model_validate(values)


def test_receiver_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETURNBRIDGE_RECEIVER__PORT", "9100")
    monkeypatch.setenv("RETURNBRIDGE_RECEIVER__REVENI_SECRET", "from-env")
    for settings in (ReceiverSettings(), Settings(_env_file=None).receiver):
        assert settings.port == 9100
        assert settings.reveni_secret is not None
        assert settings.reveni_secret.get_secret_value() == "from-env"
        assert "from-env" not in repr(settings)


def test_connector_webhook_settings_serve_the_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETURNBRIDGE_REVENI__WEBHOOK_SECRET", "reveni-connector")
    monkeypatch.setenv("RETURNBRIDGE_CENTRA__WEBHOOK_SECRET", "centra-connector")
    monkeypatch.setenv("RETURNBRIDGE_CENTRA__WEBHOOK_TOLERANCE_SECONDS", "120")
    receiver = Settings(_env_file=None).receiver
    assert receiver.reveni_secret == SecretStr("reveni-connector")
    assert receiver.centra_secret == SecretStr("centra-connector")
    assert (receiver.centra_tolerance_seconds, receiver.reveni_signature_required) == (120, True)
    # The receiver's own section wins.
    monkeypatch.setenv("RETURNBRIDGE_RECEIVER__CENTRA_SECRET", "receiver-own")
    monkeypatch.setenv("RETURNBRIDGE_RECEIVER__CENTRA_TOLERANCE_SECONDS", "60")
    receiver = Settings(_env_file=None).receiver
    assert receiver.centra_secret == SecretStr("receiver-own")
    assert receiver.centra_tolerance_seconds == 60
