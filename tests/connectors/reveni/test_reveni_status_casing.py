"""Reveni statuses in either casing: `IN_PROGRESS` (the only public status list) and
`in_progress` (webhooks seen) both read as our lower-case name, in API payloads, webhooks and
list filters, unless `ReveniInferred.status_case_strict` asks for the written spelling only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from receiver_support import JSON, envelope, serve_receiver
from reveni_client_support import RecordingSleep
from reveni_sim_support import ReveniSimHandle, running_reveni_sim, wait_for

from returnbridge.connectors.reveni import (
    DEFAULT_REVENI_INFERRED,
    ReveniClient,
    ReveniInferred,
    WebhookError,
    normalise_return,
    parse_envelope,
    status_from_wire,
    status_name,
)
from returnbridge.ledger import Ledger

STRICT_LOWER = ReveniInferred(status_case_strict=True)
STRICT_UPPER = ReveniInferred(status_case="upper", status_case_strict=True)
RENAMED = ReveniInferred(partially_accepted_status="partly_accepted")


@pytest.mark.parametrize(
    ("text", "inferred", "name"),
    [
        ("in_progress", DEFAULT_REVENI_INFERRED, "in_progress"),
        ("IN_PROGRESS", DEFAULT_REVENI_INFERRED, "in_progress"),
        ("COMPLETED", DEFAULT_REVENI_INFERRED, "completed"),
        ("On_Hold", DEFAULT_REVENI_INFERRED, "on_hold"),
        ("PARTLY_ACCEPTED", RENAMED, "partially_accepted"),
        ("partially_accepted", RENAMED, "partially_accepted"),
        ("lost", DEFAULT_REVENI_INFERRED, None),
        ("", DEFAULT_REVENI_INFERRED, None),
        ("in_progress", STRICT_LOWER, "in_progress"),
        ("IN_PROGRESS", STRICT_LOWER, None),
        ("IN_PROGRESS", STRICT_UPPER, "in_progress"),
        ("in_progress", STRICT_UPPER, None),
    ],
)
def test_status_name_reads_either_casing_unless_strict(
    text: str, inferred: ReveniInferred, name: str | None
) -> None:
    assert status_name(text, inferred) == name
    assert status_from_wire(text, inferred) == (text if name is None else name)


def test_the_setting_defaults_to_either_casing_and_reads_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from returnbridge.settings import Settings

    assert DEFAULT_REVENI_INFERRED.status_case_strict is False
    monkeypatch.setenv("RETURNBRIDGE_REVENI__INFERRED__STATUS_CASE_STRICT", "true")
    assert Settings().reveni.inferred.status_case_strict is True


def test_nested_statuses_are_lowered_on_a_lower_case_wire_too() -> None:
    raw = {
        "status": "FOR_REVIEW",
        "return_items": [{"status": "ACCEPTED"}],
        "refunds": [{"status": "PAID"}],
        "delivery": {"label_status": "CREATED"},
    }
    assert normalise_return(raw, DEFAULT_REVENI_INFERRED) == {
        "status": "for_review",
        "return_items": [{"status": "accepted"}],
        "refunds": [{"status": "paid"}],
        "delivery": {"label_status": "created"},
    }
    assert normalise_return(raw, STRICT_LOWER) == raw  # left for validation to refuse


# -- webhooks ----------------------------------------------------------------------------------


def test_a_webhook_status_is_read_as_our_name_in_either_casing() -> None:
    assert parse_envelope(envelope(status="IN_PROGRESS")).data.status == "in_progress"
    assert parse_envelope(envelope(status="in_progress")).data.status == "in_progress"
    renamed = parse_envelope(envelope(status="PARTLY_ACCEPTED"), RENAMED)
    assert renamed.data.status == "partially_accepted"
    assert parse_envelope(envelope(status="brand_new")).data.status == "brand_new"  # kept
    assert parse_envelope(envelope(status="IN_PROGRESS"), STRICT_UPPER).data.status == (
        "in_progress"
    )


@pytest.mark.parametrize(
    ("status", "inferred", "spelt"),
    [("IN_PROGRESS", STRICT_LOWER, "'in_progress'"), ("shipped", STRICT_UPPER, "'SHIPPED'")],
)
def test_a_strict_deployment_refuses_the_other_casing_of_a_webhook(
    status: str, inferred: ReveniInferred, spelt: str
) -> None:
    with pytest.raises(WebhookError, match=f"data.status: .* is not spelt {spelt}"):
        parse_envelope(envelope(status=status), inferred)


# -- against the simulator ---------------------------------------------------------------------


def _client(sim: ReveniSimHandle, inferred: ReveniInferred) -> ReveniClient:
    return ReveniClient(
        sim.url,
        api_key=sim.api_key,
        store_id=sim.store_id,
        inferred=inferred,
        sleep=RecordingSleep(),
    )


async def test_a_lower_case_client_reads_an_upper_case_reveni() -> None:
    upper = ReveniInferred(status_case="upper")
    with running_reveni_sim(inferred=upper) as sim:
        wire = sim.get_return("ret_std")["status"]
        assert wire.isupper()
        async with _client(sim, DEFAULT_REVENI_INFERRED) as reveni:
            ret = await reveni.get_return("ret_std")
            page = await reveni.list_returns(status=["in_progress", "pending"], page_size=100)
        assert ret.status == wire.lower()
        assert page.items and not page.rejected
        assert {r.status for r in page.items} <= {"in_progress", "pending"}


async def test_a_strict_client_refuses_the_other_casing() -> None:
    with running_reveni_sim(inferred=ReveniInferred(status_case="upper")) as sim:
        async with _client(sim, STRICT_LOWER) as reveni:
            page = await reveni.list_returns(page_size=100)
        assert page.items == [] and page.rejected
        assert all(r.field == f"results.{i}.status" for i, r in enumerate(page.rejected))


def test_upper_case_webhooks_reach_the_inbox_and_read_as_our_names(tmp_path: Path) -> None:
    """The simulator spells statuses upper case; the receiver (default settings) stores every
    event, and each reads back as our lower-case name."""
    upper = ReveniInferred(status_case="upper")
    with (
        Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger,
        running_reveni_sim(inferred=upper) as sim,
        serve_receiver(ledger) as receiver,
    ):
        url = f"{receiver.base_url}/webhooks/reveni"
        body: dict[str, Any] = {"event_types": ["return.updated"], "url": url}
        assert sim.api.post("webhooks", json=body).status_code == 201
        sim.sim_post("faults", {"webhook_delay_scale": 0})
        assert sim.sim_post("walk")["steps"] > 0
        wait_for(lambda: sim.control.get("/_sim/webhooks").json()["pending"] == 0)
        delivered = [
            d
            for d in sim.control.get("/_sim/webhooks").json()["deliveries"]
            if d["outcome"] == "delivered"
        ]
        rows = ledger.inbox_pending(source="reveni")
        refused = receiver.post("/webhooks/reveni", content=b"[]", headers=JSON)
    assert refused.status_code == 400
    assert delivered and all(d["status"].isupper() for d in delivered)
    assert len(rows) == len({d["event_id"] for d in delivered})
    statuses = {d["event_id"]: d["status"] for d in delivered}
    for row in rows:
        status = parse_envelope(row.body).data.status
        assert status == statuses[row.event_id].lower()
