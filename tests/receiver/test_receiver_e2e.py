"""The real simulators deliver to the real receiver: at-least-once delivery, one inbox row each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from centra_sim_support import CentraSimHandle
from receiver_support import CENTRA_SECRET, REVENI_SECRET, ledger_unavailable, serve_receiver
from reveni_sim_support import ReveniSimHandle, running_reveni_sim, wait_for

from returnbridge.connectors.reveni.webhooks import parse_envelope
from returnbridge.ledger import Ledger

BOTH = ["return.created", "return.updated"]


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(ledger_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{ledger_path}") as opened:
        yield opened


@pytest.fixture
def reader(ledger: Ledger, ledger_path: Path) -> Iterator[Ledger]:
    with Ledger(f"sqlite:///{ledger_path}") as opened:
        yield opened


@pytest.fixture
def reveni() -> Iterator[ReveniSimHandle]:
    """The Reveni simulator signing its webhooks with the receiver's secret."""
    with running_reveni_sim(webhook_secret=REVENI_SECRET) as handle:
        yield handle


def _webhooks(reveni: ReveniSimHandle) -> dict[str, Any]:
    snapshot: dict[str, Any] = reveni.control.get("/_sim/webhooks").json()
    return snapshot


def _subscribe(reveni: ReveniSimHandle, receiver_url: str) -> None:
    url = f"{receiver_url}/webhooks/reveni"
    response = reveni.api.post("webhooks", json={"event_types": BOTH, "url": url})
    assert response.status_code == 201, response.text


def test_duplicated_and_reordered_reveni_webhooks_land_once_each(
    ledger: Ledger, reader: Ledger, reveni: ReveniSimHandle
) -> None:
    reveni.sim_post(
        "faults",
        {
            "duplicate_webhook_rate": 1.0,  # every event sent twice, same id and bytes
            "out_of_order_webhook_rate": 1.0,  # every other event held back behind the next
            "webhook_delay_scale": 0,
        },
    )
    with serve_receiver(ledger, reveni_secret=REVENI_SECRET) as client:
        _subscribe(reveni, str(client.base_url))
        assert reveni.sim_post("walk")["steps"] > 0
        wait_for(lambda: _webhooks(reveni)["pending"] == 0)
        reveni.sim_post("webhooks/flush")  # the last held-back event
        wait_for(lambda: _webhooks(reveni)["pending"] == 0)
        snapshot = _webhooks(reveni)
    delivered = [d for d in snapshot["deliveries"] if d["outcome"] == "delivered"]
    assert (snapshot["failed"], snapshot["held"]) == (0, 0)
    assert snapshot["duplicated"] > 0 and snapshot["reordered"] > 0
    assert len(delivered) == 2 * snapshot["events"]  # every event arrived twice...
    rows = reader.inbox_pending(source="reveni")
    assert len(rows) == snapshot["events"]  # ...and is in the inbox once
    assert {r.event_id for r in rows} == {d["event_id"] for d in delivered}
    by_id = {d["event_id"]: d for d in delivered}
    for row in rows:
        event = parse_envelope(row.body)  # the body is kept as sent: signed bytes, re-readable
        assert (row.resource_id, row.event_type) == (
            by_id[row.event_id]["resource_id"],
            event.event,
        )
        assert event.data.status == by_id[row.event_id]["status"]


def test_reveni_retries_after_a_503_until_the_ledger_is_back(
    ledger: Ledger, ledger_path: Path, reader: Ledger, reveni: ReveniSimHandle
) -> None:
    # Retry delays 1, 2, 4, 8, 16 s scaled to 0.05 .. 0.8 s: time to restore the ledger.
    reveni.sim_post("faults", {"webhook_delay_scale": 0.05})
    with serve_receiver(ledger, reveni_secret=REVENI_SECRET) as client:
        _subscribe(reveni, str(client.base_url))
        with ledger_unavailable(ledger, ledger_path):
            created = reveni.sim_post(
                "returns", {"order_number": 1001, "items": [{"sku": "TEE-BLK-M", "quantity": 1}]}
            )
            wait_for(lambda: _webhooks(reveni)["attempts"] >= 2)
        wait_for(lambda: _webhooks(reveni)["pending"] == 0)
        snapshot = _webhooks(reveni)
    assert (snapshot["delivered"], snapshot["failed"]) == (1, 0)
    assert snapshot["deliveries"][-1]["attempts"] >= 2
    assert [(r.resource_id, r.event_type) for r in reader.inbox_pending()] == [
        (created["id"], "return.created")
    ]


def _point_centra_at(centra_sim: CentraSimHandle, receiver_url: str, **options: Any) -> None:
    configured = centra_sim.client.post(
        "/_sim/webhooks",
        json={"url": f"{receiver_url}/webhooks/centra", "secret": CENTRA_SECRET, **options},
    )
    assert configured.json()["configured"] is True


def test_centra_simulator_webhooks_land_in_the_inbox(
    ledger: Ledger, reader: Ledger, centra_sim: CentraSimHandle
) -> None:
    emitter = centra_sim.sim.webhooks
    with serve_receiver(ledger, centra_secret=CENTRA_SECRET) as client:
        _point_centra_at(centra_sim, str(client.base_url))
        emitter.enqueue("order", "update", 1001)
        emitter.enqueue("return", "insert", 7)
        wait_for(lambda: emitter.snapshot()["delivered_events"] == 2)
        snapshot = emitter.snapshot()
    assert snapshot["failed_batches"] == 0
    rows = reader.inbox_pending(source="centra")
    assert [(r.resource_id, r.event_type) for r in rows] == [
        ("1001", "order.update"),
        ("7", "return.insert"),
    ]


def test_centra_retries_after_a_503_with_a_fresh_signature(
    ledger: Ledger, ledger_path: Path, reader: Ledger, centra_sim: CentraSimHandle
) -> None:
    emitter = centra_sim.sim.webhooks
    with serve_receiver(ledger, centra_secret=CENTRA_SECRET) as client:
        _point_centra_at(centra_sim, str(client.base_url), retries=3, backoff_seconds=0.2)
        with ledger_unavailable(ledger, ledger_path):
            emitter.enqueue("order", "update", 1001)
            wait_for(lambda: emitter.snapshot()["last_error"] == "HTTP 503")
        wait_for(lambda: emitter.snapshot()["delivered_events"] == 1)
        snapshot = emitter.snapshot()
    assert snapshot["deliveries"][-1]["attempts"] >= 2
    assert [r.resource_id for r in reader.inbox_pending(source="centra")] == ["1001"]
