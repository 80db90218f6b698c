"""render_digest, item by item: what an owner needs to act on each exception (plain title first,
code, id, facts, links, buttons), what returnbridge fixed overnight, and Finance's open money."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from reports.digest import (
    format_age,
    format_due,
    format_item,
    item_text,
    render_digest,
    safe_link,
)
from returnbridge.connectors.slack.buttons import RETRY, RETRY_CONFIRMED
from returnbridge.reconcile.digests import Digest, DigestItem, FixedItem
from returnbridge.simulators.slack.app import parse_blocks

RUNBOOK = "https://github.com/returnbridge/returnbridge/blob/main/docs/runbook.md#"
WARNING = (
    "Retrying #12 (Payment provider refused the refund) can refund 48.00 EUR on order 1004 "
    "through the payment provider again."
)


def item(code: str = "refund_failed_at_gateway", **changes: Any) -> DigestItem:
    values: dict[str, Any] = {
        "code": code,
        "order_number": 1004,
        "reveni_return_id": "ret_same_1004",
        "amount": Decimal("48.00"),
        "currency": "EUR",
        "age_days": 3,
        "status": "open",
        "id": 12,
    }
    values.update(changes)
    return DigestItem(**values)


def digest(top: list[DigestItem], **changes: Any) -> Digest:
    values: dict[str, Any] = {
        "owner": "finance",
        "run_date": date(2026, 10, 15),
        "counts_by_code": {"refund_failed_at_gateway": max(1, len(top))},
        "new_by_code": {},
        "healed_by_code": {},
        "oldest_open": None,
        "top": top,
        "mention": None,
        "flow_run_url": None,
    }
    values.update(changes)
    return Digest(**values)


def section_of(blocks: list[dict[str, Any]], exception_id: int) -> str:
    (block,) = [b for b in blocks if b.get("block_id") == f"exc:{exception_id}"]
    return str(block["text"]["text"])


# ------------------------------------------------------------------------------ one item


def test_the_plain_title_comes_first_then_the_code_and_the_id() -> None:
    text = item_text(item())
    first = text.splitlines()[0]
    assert first == "*Payment provider refused the refund* · `refund_failed_at_gateway` · #12"
    assert first.index("Payment provider") < first.index("`refund_failed_at_gateway`")
    assert "refund_failed_at_gateway` · order" not in format_item(item())  # not the old line


def test_a_mismatch_shows_both_amounts() -> None:
    mismatch = item(
        "refund_amount_mismatch",
        amount=Decimal("299"),
        currency="SEK",
        centra_amount=Decimal("249.5"),
        centra_currency="sek",
    )
    facts = item_text(mismatch).splitlines()[1]
    assert "Reveni 299.00 SEK · Centra 249.50 SEK" in facts
    jpy = item(
        "refund_amount_mismatch", amount=None, centra_amount=Decimal("1500"), centra_currency="JPY"
    )
    assert "Centra 1500 JPY" in item_text(jpy)


def test_a_sku_is_shown_when_there_is_one() -> None:
    sku = item("sku_not_in_order", sku="SCARF-01", amount=None, currency=None)
    assert item_text(sku).splitlines()[1] == (
        "order 1004 · ret_same_1004 · SKU SCARF-01 · open 3 days"
    )
    assert "SKU" not in item_text(item())


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (2, "deadline 2026-10-17 · due in 2 days"),
        (1, "deadline 2026-10-17 · due in 1 day"),
        (0, "deadline 2026-10-17 · due today"),
        (-3, "deadline 2026-10-17 · overdue by 3 days"),
        (-1, "deadline 2026-10-17 · overdue by 1 day"),
    ],
)
def test_a_deadline_shows_its_date_and_the_days_left(days: int, expected: str) -> None:
    near = item(
        "instant_deadline_near",
        amount=None,
        currency=None,
        deadline=date(2026, 10, 17),
        due_in_days=days,
        age_days=0,
    )
    assert format_due(near) == expected
    facts = item_text(near).splitlines()[1]
    assert facts == f"order 1004 · ret_same_1004 · {expected} · opened today"
    assert format_due(item()) is None


@pytest.mark.parametrize(
    ("age", "expected"), [(0, "opened today"), (1, "open 1 day"), (12, "open 12 days")]
)
def test_the_age_reads_as_how_long_it_has_been_open(age: int, expected: str) -> None:
    assert format_age(age) == expected
    assert item_text(item(age_days=age)).splitlines()[1].endswith(f"· {expected}")
    assert not item_text(item(age_days=age)).endswith(f"{age} d")  # not today's "0 d"


def test_retrying_and_the_assignee_are_shown() -> None:
    taken = item(status="retrying", assignee="slack:U024BE7LH (alice)")
    assert (
        item_text(taken)
        .splitlines()[1]
        .endswith("open 3 days · retrying · assigned to slack:U024BE7LH (alice)")
    )
    assert "assigned" not in item_text(item())


# ------------------------------------------------------------------------------ links


def test_links_are_slack_links_in_order_and_only_those_given() -> None:
    linked = item(
        links=(
            ("runbook", RUNBOOK + "refund_failed_at_gateway"),
            ("centra", "https://brand.centra.com/AMS/Order/1004"),
            ("reveni", "https://app.reveni.io/returns/ret_same_1004"),
        )
    )
    assert item_text(linked).splitlines()[2] == (
        f"<{RUNBOOK}refund_failed_at_gateway|Runbook> · "
        "<https://brand.centra.com/AMS/Order/1004|Centra order> · "
        "<https://app.reveni.io/returns/ret_same_1004|Reveni return>"
    )
    assert len(item_text(item()).splitlines()) == 2  # none configured: no link line
    only = item(links=(("centra", "https://brand.centra.com/AMS/Order/1004"),))
    assert item_text(only).splitlines()[2] == (
        "<https://brand.centra.com/AMS/Order/1004|Centra order>"
    )


def test_a_link_is_url_safe_or_left_out() -> None:
    assert (
        safe_link("https://x.test/a|b>c d", "Runbook") == "<https://x.test/a%7Cb%3Ec%20d|Runbook>"
    )
    assert safe_link("javascript:alert(1)", "Runbook") is None
    assert safe_link("https://x.test/" + "a" * 2100, "Runbook") is None
    # a link that would carry an e-mail address, even percent-encoded, is not shown
    assert safe_link("https://x.test/returns/anna%40example.com", "Reveni return") is None
    unsafe = item(links=(("runbook", "ftp://x.test/a"), ("reveni", "https://x.test/a@b.se")))
    assert "<" not in item_text(unsafe).replace("&lt;", "")


def test_links_are_never_cut_and_the_section_stays_within_limits() -> None:
    links = (("runbook", RUNBOOK + "x"), ("centra", "https://x.test/" + "c" * 1900))
    long = item(reveni_return_id="r" * 2990, links=links)
    text = item_text(long)
    assert len(text) <= 3000
    assert text.splitlines()[1].endswith("…")  # the facts are cut, not the links
    assert text.splitlines()[2].split(" · ") == [
        f"<{RUNBOOK}x|Runbook>",
        f"<https://x.test/{'c' * 1900}|Centra order>",
    ]
    tight = item_text(long, limit=1500)  # the second link does not fit whole: left out
    assert len(tight) <= 1500
    assert tight.splitlines()[2] == f"<{RUNBOOK}x|Runbook>"
    assert tight.count("<") == tight.count(">") == 1


# ------------------------------------------------------------------------------ buttons


def test_each_item_has_its_buttons_under_it() -> None:
    _, blocks = render_digest(digest([item(id=12), item("restock_missing", id=20)]))
    ids = [b.get("block_id") for b in blocks]
    assert ids.index("exc:12") + 1 == ids.index("act:12")
    assert ids.index("exc:20") + 1 == ids.index("act:20")
    actions = {b["block_id"]: b for b in blocks if b["type"] == "actions"}
    assert [e["value"] for e in actions["act:20"]["elements"]] == ["20"] * 4
    parse_blocks(json.dumps(blocks))


def test_a_money_moving_retry_asks_for_confirmation_with_the_warning() -> None:
    refused = item(retry_warning=WARNING)
    plain = item("restock_missing", id=20, amount=None, currency=None)
    _, blocks = render_digest(digest([refused, plain]))
    actions = {b["block_id"]: b for b in blocks if b["type"] == "actions"}
    retry = actions["act:12"]["elements"][0]
    assert retry["action_id"] == RETRY_CONFIRMED
    assert retry["confirm"]["text"]["text"] == WARNING
    assert "48.00 EUR" in retry["confirm"]["text"]["text"]
    other = actions["act:20"]["elements"][0]
    assert other["action_id"] == RETRY and "confirm" not in other


def test_an_item_without_an_id_has_no_buttons() -> None:
    _, blocks = render_digest(digest([item(id=None)]))
    assert not [b for b in blocks if b["type"] == "actions" or "block_id" in b]


# ------------------------------------------------------------------------------ the digest


def fixed(n: int, code: str = "refund_missing", **changes: Any) -> FixedItem:
    values: dict[str, Any] = {
        "id": n,
        "code": code,
        "order_number": 1000 + n,
        "reveni_return_id": f"ret_{n}",
        "amount": Decimal("450"),
        "currency": "SEK",
    }
    values.update(changes)
    return FixedItem(**values)


def test_what_returnbridge_fixed_overnight_is_told_with_the_money() -> None:
    done = [fixed(7, order_number=1004), fixed(8, "return_missing", amount=None, currency=None)]
    _, blocks = render_digest(digest([item()], fixed=done, fixed_total=2, closed_by_people=3))
    (section,) = [b for b in blocks if "fixed overnight" in b.get("text", {}).get("text", "")]
    assert section["text"]["text"].splitlines() == [
        "*returnbridge fixed overnight*",
        "• Refund paid in Reveni, missing in Centra (#7) · order 1004 · posted 450.00 SEK",
        "• Accepted return missing in Centra (#8) · order 1008",
        "closed by people: 3",
    ]


def test_many_fixed_are_summarised_and_the_all_clear_form_tells_them_too() -> None:
    done = [fixed(n) for n in range(1, 6)]
    text, blocks = render_digest(
        digest([], counts_by_code={}, fixed=done, fixed_total=40, closed_by_people=0)
    )
    (section,) = [b for b in blocks if "fixed overnight" in b.get("text", {}).get("text", "")]
    lines = section["text"]["text"].splitlines()
    assert len(lines) == 7 and lines[-1] == "… and 35 more"
    assert "all clear" in text
    _, quiet = render_digest(digest([item()]))
    assert "fixed overnight" not in json.dumps(quiet)


def test_finance_sees_its_open_money_per_currency() -> None:
    money = {"SEK": Decimal("348.5"), "EUR": Decimal("48"), "JPY": Decimal("1500")}
    text, blocks = render_digest(digest([item()], open_money=money))
    assert blocks[1]["text"]["text"].splitlines()[1] == (
        "*Open money:* 48.00 EUR · 1500 JPY · 348.50 SEK"
    )
    assert "Open money: 48.00 EUR · 1500 JPY · 348.50 SEK." in text
    _, without = render_digest(digest([item()], owner="ops"))
    assert "Open money" not in json.dumps(without)


def test_no_customer_email_reaches_any_new_field() -> None:
    leaky = item(
        sku="anna@example.com",
        assignee="anna@example.com",
        retry_warning="call anna@example.com",
        links=(("reveni", "https://x.test/returns/anna%40example.com"),),
    )
    done = [fixed(7, reveni_return_id="anna@example.com", order_number=None)]
    text, blocks = render_digest(digest([leaky], fixed=done, fixed_total=1, oldest_open=leaky))
    rendered = text + json.dumps(blocks, ensure_ascii=False)
    assert "anna" not in rendered and "%40" not in rendered
    assert "[redacted]" in rendered
