"""render_digest: Block Kit content, limits, privacy, mentions and money formatting."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from reports.digest import Digest, DigestItem, format_item, format_money, render_digest
from returnbridge.core.codes import Owner
from returnbridge.simulators.slack.app import parse_blocks

RUN_DATE = date(2026, 10, 15)


def item(
    code: str = "refund_amount_mismatch",
    order: int | None = 1001,
    ret: str | None = "ret_std_1001",
    amount: str | None = "299.00",
    currency: str | None = "SEK",
    age: int = 3,
    status: str = "open",
    **more: Any,
) -> DigestItem:
    return DigestItem(
        code, order, ret, None if amount is None else Decimal(amount), currency, age, status, **more
    )


def digest(**changes: Any) -> Digest:
    base = Digest(
        owner=Owner.FINANCE,
        run_date=RUN_DATE,
        counts_by_code={"refund_amount_mismatch": 2, "refund_missing": 1},
        new_by_code={"refund_amount_mismatch": 1},
        healed_by_code={"duplicate_refund": 1},
        oldest_open=item(
            "refund_missing", 1002, "ret_std_1002", "49.00", "SEK", 12, "retrying", id=2
        ),
        top=[
            item(id=1),
            item("refund_missing", 1002, "ret_std_1002", "49.00", "SEK", 12, "retrying", id=2),
        ],
        mention="S0FINANCE",
        flow_run_url="http://127.0.0.1:4200/runs/flow-run/0b1c",
    )
    return dataclasses.replace(base, **changes)


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Every text string in the blocks, in order."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(blocks)
    return out


def assert_within_block_kit_limits(blocks: list[dict[str, Any]]) -> None:
    assert 0 < len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
            fields = block.get("fields", [])
            assert len(fields) <= 10
            assert all(len(f["text"]) <= 2000 for f in fields)
    parse_blocks(blocks)  # the stand-in's own check agrees


def test_full_digest_layout() -> None:
    text, blocks = render_digest(digest())

    assert [(b["type"], b.get("block_id")) for b in blocks] == [
        ("header", None),
        ("section", None),  # the counts
        ("section", None),  # by code
        ("section", None),  # the oldest open
        ("section", None),  # "Top open items"
        ("section", "exc:1"),
        ("actions", "act:1"),
        ("section", "exc:2"),
        ("actions", "act:2"),
        ("section", None),  # … and 1 more open
        ("context", None),
    ]
    assert blocks[0]["text"]["text"] == "Returns digest — Finance — 2026-10-15"
    assert blocks[1]["text"]["text"] == (
        "<!subteam^S0FINANCE> *3 open* · 1 new · 1 healed since the last digest"
    )
    assert [f["text"] for f in blocks[2]["fields"]] == [
        "Refund amounts differ between Reveni and Centra\n`refund_amount_mismatch`\n"
        "*2* open · +1 new",
        "Refund paid in Reveni, missing in Centra\n`refund_missing`\n*1* open",
        "Return refunded twice\n`duplicate_refund`\n*0* open · ✓ 1 healed",
    ]
    assert blocks[3]["text"]["text"] == (
        "*Oldest open:* *Refund paid in Reveni, missing in Centra* · `refund_missing` · #2 · "
        "order 1002 · ret_std_1002 · 49.00 SEK · open 12 days · retrying"
    )
    assert blocks[4]["text"]["text"] == "*Top open items*"
    assert blocks[5]["text"]["text"].splitlines() == [
        "*Refund amounts differ between Reveni and Centra* · `refund_amount_mismatch` · #1",
        "order 1001 · ret_std_1001 · 299.00 SEK · open 3 days",
    ]
    assert blocks[7]["text"]["text"].splitlines() == [
        "*Refund paid in Reveni, missing in Centra* · `refund_missing` · #2",
        "order 1002 · ret_std_1002 · 49.00 SEK · open 12 days · retrying",
    ]
    assert blocks[9]["text"]["text"] == "… and 1 more open"
    assert blocks[10]["elements"][0]["text"] == (
        "<http://127.0.0.1:4200/runs/flow-run/0b1c|Prefect flow run>"
    )
    assert text == (
        "<!subteam^S0FINANCE> Returns digest — Finance — 2026-10-15: 3 open, 1 new, 1 healed."
        " Oldest: Refund paid in Reveni, missing in Centra (refund_missing #2), order 1002,"
        " open 12 days."
    )
    assert_within_block_kit_limits(blocks)


def test_item_line_format() -> None:
    assert format_item(item()) == (
        "*Refund amounts differ between Reveni and Centra* · `refund_amount_mismatch` · "
        "order 1001 · ret_std_1001 · 299.00 SEK · open 3 days"
    )
    assert format_item(item("order_not_found", None, "ret_x", None, None, 0, id=9)) == (
        "*Return names an order Centra does not have* · `order_not_found` · #9 · ret_x · "
        "opened today"
    )


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("299", "SEK", "299.00 SEK"),
        ("299.5", "sek", "299.50 SEK"),
        ("12.345", "SEK", "12.35 SEK"),
        ("1500", "JPY", "1500 JPY"),
        ("1500.00", "JPY", "1500 JPY"),
        ("12.5", "KWD", "12.500 KWD"),
        ("0", "EUR", "0.00 EUR"),
    ],
)
def test_money_uses_the_currency_minor_unit(amount: str, currency: str, expected: str) -> None:
    assert format_money(Decimal(amount), currency) == expected


def test_money_in_rendered_lines_for_sek_and_jpy() -> None:
    top = [item(amount="299", currency="SEK"), item(order=1005, amount="1500", currency="JPY")]
    _, blocks = render_digest(digest(top=top))
    joined = "\n".join(texts(blocks))
    assert "· 299.00 SEK ·" in joined
    assert "· 1500 JPY ·" in joined
    assert "1500.00 JPY" not in joined


def test_mention_markup_in_blocks_and_fallback() -> None:
    text, blocks = render_digest(digest(mention="S0OPS", owner="ops"))
    assert text.startswith("<!subteam^S0OPS> Returns digest — Ops — 2026-10-15")
    assert blocks[1]["text"]["text"].startswith("<!subteam^S0OPS> ")


def test_no_mention_means_no_subteam_markup() -> None:
    text, blocks = render_digest(digest(mention=None))
    assert "<!subteam" not in text
    assert "<!subteam" not in json.dumps(blocks)
    assert text.startswith("Returns digest — Finance")


def test_empty_digest_is_the_short_all_clear_form() -> None:
    text, blocks = render_digest(
        digest(
            counts_by_code={},
            new_by_code={},
            healed_by_code={"refund_missing": 2},
            oldest_open=None,
            top=[],
            mention="S0CX",
            owner="cx",
        )
    )
    assert [b["type"] for b in blocks] == ["header", "section", "context"]
    assert blocks[0]["text"]["text"] == "Returns digest — CX — 2026-10-15"
    section = blocks[1]["text"]["text"]
    assert "Nothing open — all clear" in section
    assert "2 healed since the last digest" in section
    assert section.startswith("<!subteam^S0CX>")
    assert text == (
        "<!subteam^S0CX> Returns digest — CX — 2026-10-15: nothing open — all clear."
        " 2 healed since the last digest."
    )


def test_zero_counts_are_all_clear_too() -> None:
    text, blocks = render_digest(
        digest(
            counts_by_code={"refund_missing": 0},
            new_by_code={},
            healed_by_code={},
            oldest_open=None,
            top=[],
            flow_run_url=None,
        )
    )
    assert [b["type"] for b in blocks] == ["header", "section"]
    assert "all clear" in text
    assert "healed" not in text


def test_limits_hold_with_200_items_and_200_codes() -> None:
    top = [
        item(f"code_{i:03d}", 1000 + i, f"ret_{'x' * 200}_{i}", "299", "SEK", i, id=i)
        for i in range(200)
    ]
    counts = {f"code_{i:03d}": i + 1 for i in range(200)}
    big = digest(
        owner="finance" * 30,
        counts_by_code=counts,
        new_by_code={f"code_{i:03d}": 1 for i in range(200)},
        healed_by_code={f"healed_{i:03d}": 1 for i in range(200)},
        top=top,
        mention="S" + "0" * 5000,
    )

    text, blocks = render_digest(big)

    assert_within_block_kit_limits(blocks)
    assert len(blocks[0]["text"]["text"]) == 150
    assert blocks[0]["text"]["text"].endswith("…")
    field_sections = [b for b in blocks if b["type"] == "section" and "fields" in b]
    assert len(field_sections) == 3
    last_field = field_sections[-1]["fields"][-1]["text"]
    assert last_field.startswith("… and 371 more codes")  # 400 codes, 29 shown
    items = [b for b in blocks if str(b.get("block_id", "")).startswith("exc:")]
    assert len(items) == 10
    assert len([b for b in blocks if b["type"] == "actions"]) == 10
    assert texts(blocks)[-2] == f"… and {sum(counts.values()) - 10} more open"
    assert len(text) <= 1000


def test_long_item_lines_are_cut_to_fit_one_section() -> None:
    top = [item(f"code_{i}", 1000 + i, "r" * 4000, "1", "SEK", 1, id=i) for i in range(10)]
    _, blocks = render_digest(digest(top=top))
    sections = [b for b in blocks if str(b.get("block_id", "")).startswith("exc:")]
    assert len(sections) == 10
    assert all(len(b["text"]["text"]) <= 3000 for b in sections)
    assert all(b["text"]["text"].endswith("…") for b in sections)
    assert_within_block_kit_limits(blocks)


def test_no_customer_email_or_name_can_appear() -> None:
    fields = {f.name for f in dataclasses.fields(DigestItem)} | {
        f.name for f in dataclasses.fields(Digest)
    }
    assert not any("email" in name or "name" in name for name in fields)

    leaky = item(ret="anna.svensson@example.com")
    text, blocks = render_digest(digest(top=[leaky], oldest_open=leaky))
    rendered = text + json.dumps(blocks, ensure_ascii=False)
    assert "anna.svensson@example.com" not in rendered
    assert "@" not in rendered
    assert "[redacted]" in rendered


def test_mrkdwn_control_characters_are_escaped() -> None:
    _, blocks = render_digest(
        digest(top=[item(ret="<!channel> & co", sku="<b>", assignee="<@U1>", id=3)])
    )
    (section,) = [b for b in blocks if b.get("block_id") == "exc:3"]
    assert "&lt;!channel&gt; &amp; co" in section["text"]["text"]
    assert "SKU &lt;b&gt;" in section["text"]["text"]
    assert "assigned to &lt;" in section["text"]["text"]
    assert "<!channel>" not in json.dumps(blocks)


def test_flow_run_link_is_escaped_or_absent() -> None:
    _, blocks = render_digest(digest(flow_run_url="http://prefect/runs/a|b>c d"))
    assert blocks[-1]["elements"][0]["text"] == (
        "<http://prefect/runs/a%7Cb%3Ec%20d|Prefect flow run>"
    )
    _, without = render_digest(digest(flow_run_url=None))
    assert all(b["type"] != "context" for b in without)
