"""Block Kit as terminal text (returnbridge/blocks_text.py), on hand-made blocks: what Slack
shows, not the markup behind it."""

from __future__ import annotations

from typing import Any

import pytest

from returnbridge.blocks_text import (
    DIVIDER,
    MAX_RULE,
    blocks_to_text,
    element_text,
    mrkdwn_to_text,
    width,
)


def mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def button(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "button", "text": plain(text), "action_id": text.lower(), **extra}


@pytest.mark.parametrize(
    ("markup", "shown"),
    [
        ("<https://example.com/runbook#x|Runbook>", "Runbook (https://example.com/runbook#x)"),
        ("see <https://example.com/a>", "see https://example.com/a"),
        ("<https://example.com|https://example.com>", "https://example.com"),
        ("<mailto:ops@example.com|ops@example.com>", "ops@example.com"),
        ("<!subteam^S0FINANCE> 6 open", "@S0FINANCE 6 open"),
        ("<!subteam^S0FINANCE|@finance-team>", "@finance-team"),
        ("<@U024BE7LH> and <@U024BE7LH|ana>", "@U024BE7LH and @ana"),
        ("<#C0123|returns-cx>", "#returns-cx"),
        ("<!here> <!channel>", "@here @channel"),
        ("<!date^1392734382^{date_num}|2014-02-18>", "2014-02-18"),
        ("a &lt; b &amp;&amp; c &gt; d", "a < b && c > d"),
        ("&lt;https://not-a-link&gt;", "<https://not-a-link>"),
        (":white_check_mark: done :no_such_emoji:", "✅ done :no_such_emoji:"),
        ("at 12:30:00", "at 12:30:00"),
        (
            "*6 open* · `duplicate_refund` · _soon_ · ~gone~",
            "*6 open* · `duplicate_refund` · _soon_ · ~gone~",
        ),
    ],
)
def test_mrkdwn_is_shown_as_slack_displays_it(markup: str, shown: str) -> None:
    assert mrkdwn_to_text(markup) == shown


def test_a_digest_like_message_reads_as_in_slack() -> None:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain("Returns digest — Finance — 2026-10-30")},
        {"type": "section", "text": mrkdwn("<!subteam^S0FIN> *3 open* · 1 new · 0 healed")},
        {
            "type": "section",
            "fields": [
                mrkdwn("*Return refunded twice*\n`duplicate_refund`\n*1* open"),
                mrkdwn("*Refund refused*\n`refund_failed_at_gateway`\n*2* open"),
                mrkdwn("*Short*\n`x`\n*0* open"),
            ],
        },
        {
            "type": "section",
            "block_id": "exc:11",
            "text": mrkdwn(
                "*Return refunded twice* · `duplicate_refund` · #11\norder 1016 · ret_dup_1016 · "
                "299.00 SEK\n<https://example.com/runbook.md#duplicate_refund|Runbook>"
            ),
        },
        {
            "type": "actions",
            "block_id": "act:11",
            "elements": [
                button("Retry", style="danger", confirm={"title": plain("This can move money")}),
                button("Resolve…", style="primary"),
                button("Ignore…"),
                button("Assign to me"),
            ],
        },
        {"type": "divider"},
        {"type": "context", "elements": [mrkdwn("<https://prefect.example/run/1|Prefect run>")]},
    ]
    assert blocks_to_text(blocks).splitlines() == [
        "Returns digest — Finance — 2026-10-30",
        "═════════════════════════════════════",
        "",
        "@S0FIN *3 open* · 1 new · 0 healed",
        "",
        "*Return refunded twice*   *Refund refused*",
        "`duplicate_refund`        `refund_failed_at_gateway`",
        "*1* open                  *2* open",
        "",
        "*Short*",
        "`x`",
        "*0* open",
        "",
        "*Return refunded twice* · `duplicate_refund` · #11",
        "order 1016 · ret_dup_1016 · 299.00 SEK",
        "Runbook (https://example.com/runbook.md#duplicate_refund)",
        "[ Retry ] [ Resolve… ] [ Ignore… ] [ Assign to me ]",
        "",
        DIVIDER * 57,  # as wide as the widest line
        "Prefect run (https://prefect.example/run/1)",
    ]


def test_single_line_fields_sit_in_two_columns_without_gaps() -> None:
    block = {
        "type": "section",
        "text": mrkdwn("*Counts*"),
        "fields": [mrkdwn("a"), mrkdwn("bb"), mrkdwn("ccc"), mrkdwn("d")],
    }
    assert blocks_to_text([block]).splitlines() == ["*Counts*", "", "a     bb", "ccc   d"]


def test_a_section_accessory_sits_on_its_first_line() -> None:
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": mrkdwn("Order 1016\nret_dup_1016"),
            "accessory": button("Open in Centra", url="https://centra.example/order/1016"),
        },
        {
            "type": "section",
            "text": mrkdwn("Pick an owner"),
            "accessory": {
                "type": "static_select",
                "placeholder": plain("Owner"),
                "options": [{"text": plain("Finance"), "value": "finance"}],
            },
        },
        {"type": "section", "text": mrkdwn("More"), "accessory": {"type": "overflow"}},
        {"type": "section", "accessory": {"type": "image", "alt_text": "logo"}},
    ]
    assert blocks_to_text(blocks).splitlines() == [
        "Order 1016  [ Open in Centra ] (https://centra.example/order/1016)",
        "ret_dup_1016",
        "",
        "Pick an owner  [ Owner ▾ ]",
        "",
        "More  [ ⋯ ]",
        "",
        "[logo]",
    ]


def test_other_elements_and_blocks_are_named_not_dropped() -> None:
    assert element_text({"type": "datepicker", "initial_date": "2026-10-30"}) == (
        "[ 2026-10-30 ▾ ]"
    )
    assert element_text(
        {
            "type": "checkboxes",
            "options": [{"text": plain("Yes"), "value": "y"}, {"text": plain("No"), "value": "n"}],
            "initial_options": [{"text": plain("Yes"), "value": "y"}],
        }
    ) == ("☑ Yes  ☐ No")
    assert element_text({"type": "plain_text_input"}) == "[ … ]"
    assert element_text({"type": "mystery_widget"}) == "[mystery_widget]"
    blocks: list[dict[str, Any]] = [
        {"type": "image", "image_url": "https://x/chart.png", "alt_text": "refunds by day"},
        {"type": "input", "label": plain("Note"), "element": {"type": "plain_text_input"}},
        {"type": "brand_new_block"},
        {
            "type": "context",
            "elements": [{"type": "image", "alt_text": "prefect"}, plain("flow run 42")],
        },
    ]
    assert blocks_to_text(blocks).splitlines() == [
        "[image: refunds by day]",
        "",
        "Note: [ … ]",
        "",
        "[brand_new_block block]",
        "[prefect]  flow run 42",
    ]


def test_rich_text_lists_quotes_and_code() -> None:
    block = {
        "type": "rich_text",
        "elements": [
            {
                "type": "rich_text_section",
                "elements": [
                    {"type": "text", "text": "Open: "},
                    {"type": "text", "text": "3", "style": {"bold": True}},
                    {"type": "text", "text": " "},
                    {"type": "emoji", "name": "warning"},
                    {"type": "text", "text": " see "},
                    {"type": "link", "url": "https://x/r", "text": "runbook"},
                    {"type": "text", "text": " "},
                    {"type": "usergroup", "usergroup_id": "S0FIN"},
                ],
            },
            {
                "type": "rich_text_list",
                "style": "bullet",
                "elements": [
                    {
                        "type": "rich_text_section",
                        "elements": [{"type": "text", "text": "x", "style": {"code": True}}],
                    },
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": "y"}]},
                ],
            },
            {
                "type": "rich_text_list",
                "style": "ordered",
                "indent": 1,
                "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": "one"}]}
                ],
            },
            {"type": "rich_text_quote", "elements": [{"type": "text", "text": "said\nso"}]},
            {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "a = 1"}]},
        ],
    }
    assert blocks_to_text([block]).splitlines() == [
        "Open: *3* ⚠️ see runbook (https://x/r) @S0FIN",
        "• `x`",
        "• y",
        "  1. one",
        "> said",
        "> so",
        "    a = 1",
    ]


def test_plain_text_is_not_read_as_markup() -> None:
    blocks = [{"type": "section", "text": plain("<https://x|not a link> *not bold*")}]
    assert blocks_to_text(blocks) == "<https://x|not a link> *not bold*"
    raw = {"type": "plain_text", "text": ":warning: kept", "emoji": False}
    assert blocks_to_text([{"type": "header", "text": raw}]).splitlines()[0] == ":warning: kept"


def test_a_divider_is_as_wide_as_the_message_within_a_limit() -> None:
    short = blocks_to_text([{"type": "section", "text": mrkdwn("abc")}, {"type": "divider"}])
    assert short.splitlines()[-1] == DIVIDER * 3
    wide = blocks_to_text([{"type": "section", "text": mrkdwn("x" * 200)}, {"type": "divider"}])
    assert wide.splitlines()[-1] == DIVIDER * MAX_RULE


def test_no_blocks_shows_the_fallback_text() -> None:
    assert blocks_to_text([], fallback="Digest: <https://x|3 open> &amp; more") == (
        "Digest: 3 open (https://x) & more"
    )


def test_width_counts_wide_emoji_twice_and_selectors_not_at_all() -> None:
    assert width("abc") == 3
    assert width("✅") == 2
    assert width("⚠️") == 1  # U+26A0 is narrow; the variation selector takes no column
    assert width("e\u0301") == 1
