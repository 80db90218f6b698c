"""compose_digest: what each item carries for its owner to act (id, SKU, both sides of a mismatch,
the deadline in the brand's timezone, links, the retry warning), what returnbridge fixed by itself
since the last digest, Finance's open money; and the whole digest within Slack's limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sync_support import Integration, integration

from reports.digest import render_digest
from returnbridge.core.codes import ReturnException
from returnbridge.core.links import LinkSettings
from returnbridge.ledger import HEALED_NOTE, SYSTEM_ACTOR, Ledger
from returnbridge.ledger.records import ExceptionRecord
from returnbridge.reconcile.digests import compose_digest, fixed_by_returnbridge
from returnbridge.reconcile.run import Reconciliation
from returnbridge.scenarios import builtin_scenario
from returnbridge.simulators.slack import SlackStandIn
from returnbridge.simulators.slack.app import parse_blocks
from returnbridge.sync.settings import SyncSettings

NOW = datetime(2026, 10, 15, 9, 0, tzinfo=UTC)
RUN_DATE = date(2026, 10, 15)
SINCE = NOW - timedelta(days=1)
STOCKHOLM = ZoneInfo("Europe/Stockholm")
CENTRA = "https://brand.centra.com/AMS/Order/{order_number}"
REVENI = "https://app.reveni.io/returns/{reveni_return_id}"


def record(id: int, code: str, owner: str = "finance", **changes: Any) -> ExceptionRecord:
    base = ExceptionRecord(
        id=id,
        code=code,
        owner=owner,
        reveni_return_id=f"ret_{id}",
        order_number=1000 + id,
        sku=None,
        amount=Decimal("48.00"),
        currency="EUR",
        detail="",
        status="open",
        first_seen=NOW - timedelta(days=3),
        last_seen=NOW,
        attempts=0,
        action_key=None,
        resolved_at=None,
        resolution_note=None,
    )
    return replace(base, **changes)


def compose(records: list[ExceptionRecord], owner: str = "finance", **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "since": SINCE,
        "now": NOW,
        "run_date": RUN_DATE,
        "mention": None,
        "flow_run_url": None,
    }
    options.update(kwargs)
    return compose_digest(owner, records, **options)


# ------------------------------------------------------------------------------ the items


def test_an_item_carries_its_id_sku_assignee_and_both_sides_of_a_mismatch() -> None:
    mismatch = record(
        13,
        "refund_amount_mismatch",
        amount=Decimal("299.00"),
        currency="SEK",
        facts={"centra_amount": "249.00", "centra_currency": "SEK"},
        assignee="slack:U1 (alice)",
        status="retrying",
    )
    sku = record(14, "sku_not_in_order", "ops", sku="SCARF-01", amount=None, currency=None)
    (item,) = compose([mismatch]).top
    assert (item.id, item.status, item.assignee) == (13, "retrying", "slack:U1 (alice)")
    assert (item.amount, item.currency) == (Decimal("299.00"), "SEK")
    assert (item.centra_amount, item.centra_currency) == (Decimal("249.00"), "SEK")
    (ops,) = compose([sku], "ops").top
    assert (ops.id, ops.sku, ops.centra_amount) == (14, "SCARF-01", None)


def test_a_bad_or_unknown_fact_is_left_out() -> None:
    odd = record(1, "refund_amount_mismatch", facts={"centra_amount": "lots", "deadline": "soon"})
    (item,) = compose([odd]).top
    assert (item.centra_amount, item.centra_currency, item.deadline) == (None, None, None)


def test_the_deadline_is_a_date_in_the_brands_timezone_with_the_days_left() -> None:
    # 23:30 UTC on the 16th is 01:30 on the 17th in Stockholm (CEST)
    near = record(
        5, "instant_deadline_near", "ops", facts={"deadline": "2026-10-16T23:30:00+00:00"}
    )
    (local,) = compose([near], "ops", zone=STOCKHOLM).top
    assert (local.deadline, local.due_in_days) == (date(2026, 10, 17), 2)
    (utc,) = compose([near], "ops").top
    assert (utc.deadline, utc.due_in_days) == (date(2026, 10, 16), 1)
    assert local.age_days == 3  # the age, not the time left
    past = record(6, "instant_deadline_near", "ops", facts={"deadline": "2026-10-12T10:00:00Z"})
    (overdue,) = compose([past], "ops", zone=STOCKHOLM).top
    assert (overdue.deadline, overdue.due_in_days) == (date(2026, 10, 12), -3)


def test_links_only_when_configured_and_url_quoted() -> None:
    odd = record(3, "refund_missing", reveni_return_id="ret|a>b c")
    assert compose([odd]).top[0].links == ()  # no link settings: no links
    (default,) = compose([odd], links=LinkSettings()).top
    assert [name for name, _ in default.links] == ["runbook"]
    assert default.links[0][1].endswith("/docs/runbook.md#refund_missing")
    everything = LinkSettings(centra_order=CENTRA, reveni_return=REVENI)
    (item,) = compose([odd], links=everything).top
    assert dict(item.links) == {
        "runbook": LinkSettings().links_for(odd)["runbook"],
        "centra": "https://brand.centra.com/AMS/Order/1003",
        "reveni": "https://app.reveni.io/returns/ret%7Ca%3Eb%20c",
    }
    assert [name for name, _ in item.links] == ["runbook", "centra", "reveni"]
    order_level = record(4, "unmatched_centra_refund", reveni_return_id=None)
    (loose,) = compose([order_level], links=everything).top
    assert [name for name, _ in loose.links] == ["runbook", "centra"]
    (none,) = compose([odd], links=LinkSettings(runbook=None)).top
    assert none.links == ()


def test_a_retry_that_can_move_money_carries_its_warning() -> None:
    refused = record(12, "refund_failed_at_gateway")
    restock = record(20, "restock_missing", "ops", amount=None, currency=None)
    (item,) = compose([refused]).top
    assert item.retry_warning is not None
    assert "#12" in item.retry_warning and "48.00 EUR" in item.retry_warning
    assert compose([restock], "ops").top[0].retry_warning is None


# ------------------------------------------------------------------------------ fixed, money


def test_what_returnbridge_fixed_is_told_apart_from_what_people_closed() -> None:
    at = NOW - timedelta(hours=6)
    healed = record(
        7,
        "refund_missing",
        status="resolved",
        resolved_at=at,
        resolution_note=HEALED_NOTE,
        amount=Decimal("450.00"),
        currency="SEK",
    )
    done = record(
        8,
        "refund_post_failed",
        status="resolved",
        resolved_at=at,
        resolution_note="done: Centra 55",
    )
    by_hand = record(
        9, "refund_missing", status="resolved", resolved_at=at, resolution_note="posted by hand"
    )
    ignored = record(
        10, "duplicate_refund", status="ignored", resolved_at=at, resolution_note="accepted"
    )
    before = record(
        11,
        "refund_missing",
        status="resolved",
        resolved_at=SINCE - timedelta(1),
        resolution_note=HEALED_NOTE,
    )
    records = [healed, done, by_hand, ignored, before]

    digest = compose(records, closed_by={8: SYSTEM_ACTOR, 9: "cli:alice"})
    assert [f.id for f in digest.fixed] == [7, 8]
    assert (digest.fixed_total, digest.closed_by_people) == (2, 2)
    assert (digest.fixed[0].amount, digest.fixed[0].currency) == (Decimal("450.00"), "SEK")
    # without the history, only the healed note says returnbridge closed it
    plain = compose(records)
    assert ([f.id for f in plain.fixed], plain.closed_by_people) == ([7], 3)
    assert not fixed_by_returnbridge(ignored, {10: SYSTEM_ACTOR})


def test_the_run_reads_who_closed_what_from_the_history(tmp_path: Path) -> None:
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        opened = NOW - timedelta(days=2)
        done, by_hand, old = (
            ledger.raise_exception(
                ReturnException("refund_post_failed", f"ret_{n}", 1000 + n), now=opened
            )
            for n in (1, 2, 3)
        )
        ledger.resolve_exception(done.id, note="done: Centra 55", now=NOW - timedelta(hours=2))
        ledger.resolve_exception(
            by_hand.id, note="posted by hand", actor="cli:alice", now=NOW - timedelta(hours=1)
        )
        ledger.resolve_exception(old.id, note="done: Centra 56", now=SINCE - timedelta(hours=1))
        records = ledger.exceptions()
        run = cast(Reconciliation, SimpleNamespace(ledger=ledger))
        closed_by = Reconciliation._closed_by(run, records, {"finance": SINCE}, NOW)
    assert closed_by == {done.id: SYSTEM_ACTOR, by_hand.id: "cli:alice"}  # not the older one
    digest = compose(records, closed_by=closed_by)
    assert ([f.id for f in digest.fixed], digest.closed_by_people) == ([done.id], 1)


def test_only_the_first_fixed_are_listed_and_all_are_counted() -> None:
    at = NOW - timedelta(hours=1)
    many = [
        record(
            i,
            "return_missing",
            "ops",
            status="resolved",
            resolved_at=at + timedelta(seconds=i),
            resolution_note=HEALED_NOTE,
        )
        for i in range(1, 13)
    ]
    digest = compose(many, "ops")
    assert [f.id for f in digest.fixed] == [1, 2, 3, 4, 5]
    assert digest.fixed_total == 12
    assert compose(many, "finance").fixed_total == 0  # someone else's


def test_finance_sees_its_open_money_per_currency() -> None:
    records = [
        record(1, "refund_missing", amount=Decimal("299.00"), currency="SEK"),
        record(2, "refund_failed_at_gateway", amount=Decimal("49.50"), currency="sek"),
        record(3, "duplicate_refund", amount=Decimal("48.00"), currency="EUR"),
        record(4, "refund_missing", amount=Decimal("1500"), currency="JPY", status="retrying"),
        record(5, "refund_missing", amount=None, currency=None),
        record(
            6,
            "refund_missing",
            amount=Decimal("999.00"),
            currency="SEK",
            status="resolved",
            resolved_at=NOW - timedelta(hours=1),
            resolution_note="x",
        ),
    ]
    digest = compose(records)
    assert digest.open_money == {
        "EUR": Decimal("48.00"),
        "JPY": Decimal("1500"),
        "SEK": Decimal("348.50"),
    }
    ops = [replace(r, owner="ops") for r in records]
    assert compose(ops, "ops").open_money == {}


# ------------------------------------------------------------------------------ limits


def test_500_exceptions_stay_within_block_kit_limits() -> None:
    codes = [
        "refund_failed_at_gateway",
        "refund_amount_mismatch",
        "refund_missing",
        "duplicate_refund",
        "unmatched_centra_refund",
    ]
    records = [
        record(
            i,
            codes[i % len(codes)],
            reveni_return_id=f"ret_{'x' * 300}_{i}",
            sku=f"SKU-{'y' * 300}-{i}",
            amount=Decimal(i) + Decimal("0.50"),
            currency=("SEK", "EUR", "JPY")[i % 3],
            facts={
                "centra_amount": "1.00",
                "centra_currency": "SEK",
                "deadline": "2026-10-20T00:00:00+00:00",
            },
            assignee="z" * 500,
            first_seen=NOW - timedelta(days=i % 40),
        )
        for i in range(1, 501)
    ] + [
        record(
            1000 + i,
            "refund_missing",
            status="resolved",
            resolution_note=HEALED_NOTE,
            resolved_at=NOW - timedelta(minutes=i),
        )
        for i in range(60)
    ]
    links = LinkSettings(centra_order=CENTRA, reveni_return=REVENI + "?" + "q" * 600)
    digest = compose(
        records,
        links=links,
        zone=STOCKHOLM,
        mention="S0FIN",
        flow_run_url="http://127.0.0.1:4200/runs/flow-run/1",
    )
    assert len(digest.top) == 10 and digest.fixed_total == 60

    text, blocks = render_digest(digest)

    assert 0 < len(blocks) <= 50
    parse_blocks(json.dumps(blocks))  # the Slack stand-in's own check
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
    ids = [b["block_id"] for b in blocks if "block_id" in b]
    assert len(ids) == len(set(ids)) == 20  # 10 items, each with its buttons
    assert len(text) <= 1000
    body = json.dumps(blocks, ensure_ascii=False)
    assert "… and 490 more open" in body and "… and 55 more" in body
    assert "Open money:" in blocks[1]["text"]["text"]


# ------------------------------------------------------------------------------ end to end

MENTIONS = {"finance": "S0FIN", "ops": "S0OPS", "cx": "S0CX"}


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


@pytest.fixture
def showcase(tmp_path: Path, slack: SlackStandIn) -> Iterator[Integration]:
    # the product's default first look-back: the July return is missed by the sync, and the
    # reconciliation's fixes heal it
    with integration(
        builtin_scenario("showcase"),
        tmp_path,
        slack=slack.settings(mentions=MENTIONS),
        initial_look_back=SyncSettings().initial_look_back,
    ) as it:
        it.walk()
        for _ in range(6):
            it.run()
            counts = it.ledger.counts()
            if not any(counts.get(s, 0) for s in ("pending", "in_flight", "in_doubt")):
                break
        yield it


def test_the_digests_that_reach_slack_can_be_acted_on(
    showcase: Integration, slack: SlackStandIn
) -> None:
    showcase.reconcile()
    (mismatch,) = showcase.ledger.exceptions(code="refund_amount_mismatch")
    assert set(mismatch.facts) == {"centra_amount", "centra_currency"}  # raised by the planner
    (deadline,) = showcase.ledger.exceptions(code="instant_deadline_near")
    assert "deadline" in deadline.facts
    messages = {m["channel"]: m for m in slack.messages()}
    finance = messages["#returns-finance"]
    parse_blocks(finance["blocks"])
    sections = {b.get("block_id"): b for b in finance["blocks"]}
    item = sections[f"exc:{mismatch.id}"]["text"]["text"]
    assert item.startswith("*Refund amounts differ between Reveni and Centra*")
    assert f"#{mismatch.id}" in item
    assert f"Centra {mismatch.facts['centra_amount']} {mismatch.facts['centra_currency']}" in item
    assert "|Runbook>" in item
    assert sections[f"act:{mismatch.id}"]["type"] == "actions"
    assert "Open money:" in finance["blocks"][1]["text"]["text"]
    (healed,) = showcase.ledger.exceptions(code="refund_missing", reveni_return_id="ret_old_1017")
    assert healed.resolution_note == HEALED_NOTE
    fixed = next(
        b["text"]["text"]
        for b in finance["blocks"]
        if b["type"] == "section" and "fixed overnight" in b.get("text", {}).get("text", "")
    )
    assert f"Refund paid in Reveni, missing in Centra (#{healed.id}) · order 1017 · posted " in (
        fixed
    )
    assert f"posted {healed.amount} {healed.currency}" in fixed
    ops = messages["#returns-ops"]
    ops_sections = {b.get("block_id"): b for b in ops["blocks"]}
    late = ops_sections[f"exc:{deadline.id}"]["text"]["text"]
    assert "deadline 20" in late and ("due" in late or "overdue by" in late)
    for message in messages.values():
        assert "@" not in message["text"] + json.dumps(message["blocks"])
