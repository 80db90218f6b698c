"""An owner's exception digest as a Slack message: fallback text and Block Kit blocks.

Pure functions, no I/O: `render_digest(digest)` answers `(text, blocks)` for
`DigestPoster.post(channel, text, blocks)`. The reconciliation composes the `Digest` (its data model
lives in `returnbridge.reconcile.digests`) and is handed this renderer by whoever starts it (the
flow, the CLI, the demo): the library never imports `reports/`
(docs/architecture.md#rooms-and-imports).

Each open item is something its owner can act on: its plain title first, then the code and the
exception id (`#12`), the facts (SKU, both sides of a money mismatch, the deadline in the brand's
timezone and the days left, how long it has been open, retrying, who took it) and links to the
runbook and to both systems; its section has block id `exc:<id>` and the buttons under it
(`returnbridge.connectors.slack.buttons.item_actions`, block id `act:<id>`) act on it. What
returnbridge fixed by itself since the last digest comes next, and Finance sees its open money per
currency.

The inputs carry codes, order numbers, Reveni return ids, SKUs, amounts and ages only, never a
customer's e-mail or name; as a second line of defence any e-mail-looking string in a
free-text field is masked before it is rendered, and a link that would carry one is left out.

Block Kit limits are kept whatever the input size: header text ≤ 150 characters, section text
≤ 3000, ≤ 10 fields per section (each ≤ 2000), ≤ 50 blocks; what does not fit is summarised as
"… and N more".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote, unquote

from returnbridge.connectors.reveni.models import currency_exponent
from returnbridge.connectors.slack.buttons import item_actions, item_block_id
from returnbridge.core.codes import CODES, REFUND, title_of
from returnbridge.reconcile.digests import Digest, DigestItem, FixedItem

MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3000
MAX_FIELDS_PER_SECTION = 10
MAX_FIELD_TEXT = 2000
MAX_BLOCKS = 50
MAX_TOP_ITEMS = 10  # each is two blocks: its section and its buttons
MAX_CODE_SECTIONS = 3  # up to 30 codes as fields; the whole vocabulary has fewer
MAX_FALLBACK_TEXT = 1000
MAX_LINK_URL = 2000  # a longer link is left out rather than cut
MAX_FIXED_LINES = 5  # "returnbridge fixed overnight" lines; the rest are counted
_FACTS_KEPT = 500  # of an item's facts, kept before its links when both do not fit

OWNER_TITLES = {"finance": "Finance", "ops": "Ops", "cx": "CX"}
LINK_LABELS = {"runbook": "Runbook", "centra": "Centra order", "reveni": "Reveni return"}
# Codes whose healing means returnbridge posted the refund in Centra.
POSTED_CODES = frozenset(c.code for c in CODES.values() if REFUND in (c.fix_kind, c.fails_kind))

_EMAIL = re.compile(r"[^\s@<>|`]+@[^\s@<>|`]+\.[^\s@<>|`]+")


# --------------------------------------------------------------------------- formatting


def escape(text: str) -> str:
    """`text` safe inside Slack mrkdwn: `&`, `<`, `>` escaped and e-mail addresses masked."""
    masked = _EMAIL.sub("[redacted]", text)
    return masked.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str) -> str:
    """`text` for plain_text and the fallback: e-mail addresses masked, nothing else changed."""
    return _EMAIL.sub("[redacted]", text)


def format_money(amount: Decimal, currency: str | None) -> str:
    """`299.00 SEK`, `1500 JPY`: the currency's minor-unit digits, no thousands separator."""
    if currency is None:
        return f"{amount.normalize():f}"
    code = currency.strip().upper()
    exponent = currency_exponent(code)
    quantum = Decimal(1).scaleb(-exponent)
    return f"{amount.quantize(quantum, rounding=ROUND_HALF_UP):f} {escape(code)}"


def mention_markup(group_id: str) -> str:
    """`<!subteam^S0FINANCE>`: a Slack user-group mention."""
    return f"<!subteam^{escape(group_id.strip())}>"


def owner_title(owner: str) -> str:
    return OWNER_TITLES.get(str(owner), str(owner).title())


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def format_age(age_days: int) -> str:
    """How long it has been open: "opened today", "open 1 day", "open 12 days"."""
    return "opened today" if age_days <= 0 else f"open {_days(age_days)}"


def format_due(item: DigestItem) -> str | None:
    """When it is due: "deadline 2026-10-17 · due in 2 days" (due today, overdue by N days);
    None without a deadline. The date is the brand's: the composer put it in the brand's
    timezone."""
    if item.deadline is None:
        return None
    text = f"deadline {item.deadline.isoformat()}"
    days = item.due_in_days
    if days is None:
        return text
    if days > 0:
        return f"{text} · due in {_days(days)}"
    if days == 0:
        return f"{text} · due today"
    return f"{text} · overdue by {_days(-days)}"


def _amounts(item: DigestItem) -> list[str]:
    """The item's money: both sides of a mismatch ("Reveni 299.00 SEK · Centra 249.00 SEK"),
    else its amount."""
    if item.centra_amount is not None:
        sides = []
        if item.amount is not None:
            sides.append(f"Reveni {format_money(item.amount, item.currency)}")
        sides.append(f"Centra {format_money(item.centra_amount, item.centra_currency)}")
        return sides
    return [] if item.amount is None else [format_money(item.amount, item.currency)]


def item_heading(item: DigestItem) -> str:
    """Title, code and id: "*Payment provider refused the refund* · `refund_failed_at_gateway`
    · #12"."""
    parts = [f"*{escape(title_of(item.code))}*", f"`{escape(item.code)}`"]
    if item.id is not None:
        parts.append(f"#{item.id}")
    return " · ".join(parts)


def item_facts(item: DigestItem) -> str:
    """What the owner needs to find and judge it: "order 1004 · ret_same_1004 · SKU TEE ·
    48.00 EUR · open 3 days · retrying · assigned to alice"."""
    parts: list[str] = []
    if item.order_number is not None:
        parts.append(f"order {item.order_number}")
    if item.reveni_return_id:
        parts.append(escape(item.reveni_return_id))
    if item.sku:
        parts.append(f"SKU {escape(item.sku)}")
    parts += _amounts(item)
    due = format_due(item)
    if due:
        parts.append(due)
    parts.append(format_age(item.age_days))
    if item.status and item.status != "open":
        parts.append(escape(item.status))
    if item.assignee:
        parts.append(f"assigned to {escape(item.assignee)}")
    return " · ".join(parts)


def format_item(item: DigestItem) -> str:
    """One line of an item: its heading and facts (`item_heading`, `item_facts`)."""
    return f"{item_heading(item)} · {item_facts(item)}"


def safe_link(url: str, label: str) -> str | None:
    """`<url|label>`, or None when `url` is not an http(s) URL, is too long, or would carry an
    e-mail address."""
    url = url.strip()
    if not url.lower().startswith(("https://", "http://")):
        return None
    safe = _safe_url(url)
    if len(safe) > MAX_LINK_URL or _EMAIL.search(unquote(safe)):
        return None
    return f"<{safe}|{escape(label)}>"


def item_links(item: DigestItem) -> list[str]:
    """The item's links as Slack links, in the order given, those that are safe."""
    out: list[str] = []
    for name, url in item.links:
        link = safe_link(url, LINK_LABELS.get(name, name.title()))
        if link is not None:
            out.append(link)
    return out


def item_text(item: DigestItem, limit: int = MAX_SECTION_TEXT) -> str:
    """An item's section text within `limit`: heading, facts, then as many links as fit whole
    (a link is never cut) while the heading and up to `_FACTS_KEPT` characters of the facts
    stay; whatever else does not fit is cut from the facts."""
    heading, facts = item_heading(item), item_facts(item)
    budget = limit - min(len(heading), limit // 4) - min(len(facts), _FACTS_KEPT) - 2
    links: list[str] = []
    for link in item_links(item):
        if len(" · ".join([*links, link])) + 1 > budget:
            break
        links.append(link)
    line = " · ".join(links)
    room = limit - (len(line) + 1 if line else 0)
    body = _truncate(f"{heading}\n{facts}", room)
    return f"{body}\n{line}" if line else body


def item_blocks(item: DigestItem) -> list[dict[str, Any]]:
    """An item's section (block id `exc:<id>`) and, when it has an id, its buttons."""
    section = _mrkdwn_section(item_text(item))
    if item.id is None:
        return [section]
    section["block_id"] = item_block_id(item.id)
    warning = None if item.retry_warning is None else _plain(item.retry_warning)
    return [section, item_actions(item.id, retry_warning=warning)]


def format_fixed(item: FixedItem) -> str:
    """One fixed line: "Refund paid in Reveni, missing in Centra (#7) · order 1004 · posted
    450.00 SEK"."""
    parts = [f"{escape(title_of(item.code))} (#{item.id})"]
    if item.order_number is not None:
        parts.append(f"order {item.order_number}")
    elif item.reveni_return_id:
        parts.append(escape(item.reveni_return_id))
    if item.amount is not None:
        money = format_money(item.amount, item.currency)
        parts.append(f"posted {money}" if item.code in POSTED_CODES else money)
    return " · ".join(parts)


def _fixed_section(digest: Digest) -> dict[str, Any] | None:
    """The "returnbridge fixed overnight" section: the first few healed, "… and N more", and
    how many people closed; None when nothing was closed since the last digest."""
    total = max(int(digest.fixed_total), len(digest.fixed))
    people = int(digest.closed_by_people)
    if total <= 0 and people <= 0:
        return None
    heading = "*returnbridge fixed overnight*"
    if total <= 0:
        text = f"{heading}\nnothing"
    else:
        lines = [f"• {format_fixed(item)}" for item in digest.fixed[:MAX_FIXED_LINES]]
        reserve = len(f"\nclosed by people: {people}") if people else 0
        text = _lines_within(heading, lines, total, MAX_SECTION_TEXT - reserve)
    if people:
        text += f"\nclosed by people: {people}"
    return _mrkdwn_section(text)


def format_open_money(money: Mapping[str, Decimal]) -> str | None:
    """Finance's line "*Open money:* 48.00 EUR · 348.00 SEK" (currencies in order); None when
    there is none."""
    shown = [format_money(Decimal(amount), code) for code, amount in sorted(money.items())]
    return f"*Open money:* {' · '.join(shown)}" if shown else None


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _lines_within(
    heading: str, lines: Sequence[str], total: int, limit: int = MAX_SECTION_TEXT
) -> str:
    """`heading` and as many `lines` as fit in `limit` characters, then "… and N more" for the
    rest of `total` (which may exceed len(lines) when the caller already cut the list)."""
    out = heading
    shown = 0
    for line in lines:
        rest = total - shown - 1
        reserve = len(f"\n… and {rest} more") if rest > 0 else 0
        candidate = f"{out}\n{_truncate(line, limit // 2)}"
        if len(candidate) + reserve > limit:
            break
        out = candidate
        shown += 1
    if total > shown:
        out += f"\n… and {total - shown} more"
    return out


def _count_field(code: str, open_now: int, new: int, healed: int) -> dict[str, str]:
    marks = [f"*{open_now}* open"]
    if new:
        marks.append(f"+{new} new")
    if healed:
        marks.append(f"✓ {healed} healed")
    title = title_of(code)
    named = f"`{escape(code)}`" if title == code else f"{escape(title)}\n`{escape(code)}`"
    text = f"{named}\n{' · '.join(marks)}"
    return {"type": "mrkdwn", "text": _truncate(text, MAX_FIELD_TEXT)}


def _code_sections(digest: Digest) -> list[dict[str, Any]]:
    """Counts by code as section fields, the busiest codes first, ≤ 10 fields a section."""
    codes = set(digest.counts_by_code) | set(digest.new_by_code) | set(digest.healed_by_code)
    rows = sorted(
        (
            (
                code,
                int(digest.counts_by_code.get(code, 0)),
                int(digest.new_by_code.get(code, 0)),
                int(digest.healed_by_code.get(code, 0)),
            )
            for code in codes
        ),
        key=lambda row: (-row[1], -row[2], -row[3], row[0]),
    )
    rows = [row for row in rows if row[1] or row[2] or row[3]]
    capacity = MAX_FIELDS_PER_SECTION * MAX_CODE_SECTIONS
    fields = [_count_field(*row) for row in rows]
    if len(fields) > capacity:
        hidden = rows[capacity - 1 :]
        hidden_open = sum(row[1] for row in hidden)
        fields = fields[: capacity - 1]
        fields.append(
            {
                "type": "mrkdwn",
                "text": f"… and {len(hidden)} more codes\n*{hidden_open}* open",
            }
        )
    return [
        {"type": "section", "fields": fields[start : start + MAX_FIELDS_PER_SECTION]}
        for start in range(0, len(fields), MAX_FIELDS_PER_SECTION)
    ]


def _safe_url(url: str) -> str:
    """`url` usable inside `<url|label>`: the characters that end the link are percent-encoded."""
    return quote(url.strip(), safe=":/?#[]@!$&'()*+,;=%-._~")


def _mrkdwn_section(text: str) -> dict[str, Any]:
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _truncate(text, MAX_SECTION_TEXT)},
    }


# --------------------------------------------------------------------------- the digest


def render_digest(digest: Digest) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) of `digest`; the short "all clear" form when nothing is open."""
    title = owner_title(digest.owner)
    header_text = _truncate(
        _plain(f"Returns digest — {title} — {digest.run_date.isoformat()}"), MAX_HEADER_TEXT
    )
    mention = mention_markup(digest.mention) if digest.mention else None
    open_total = sum(int(n) for n in digest.counts_by_code.values())
    new_total = sum(int(n) for n in digest.new_by_code.values())
    healed_total = sum(int(n) for n in digest.healed_by_code.values())

    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header_text, "emoji": True}}
    ]
    lead = f"{mention} " if mention else ""
    fixed = _fixed_section(digest)
    url = _safe_url(digest.flow_run_url) if digest.flow_run_url else ""
    context: list[dict[str, Any]] = []
    if url and len(url) <= MAX_LINK_URL:
        context.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{url}|Prefect flow run>"}],
            }
        )

    if open_total <= 0:
        healed = f" {healed_total} healed since the last digest." if healed_total else ""
        blocks.append(
            _mrkdwn_section(f"{lead}:white_check_mark: *Nothing open — all clear.*{healed}")
        )
        if fixed is not None:
            blocks.append(fixed)
        text = f"{lead}{escape(header_text)}: nothing open — all clear.{healed}"
        return _truncate(text, MAX_FALLBACK_TEXT), (blocks + context)[:MAX_BLOCKS]

    summary = (
        f"{lead}*{open_total} open* · {new_total} new · {healed_total} healed since the last digest"
    )
    money = format_open_money(digest.open_money)
    if money:
        summary += f"\n{money}"
    blocks.append(_mrkdwn_section(summary))
    blocks.extend(_code_sections(digest))
    if digest.oldest_open is not None:
        blocks.append(_mrkdwn_section(f"*Oldest open:* {format_item(digest.oldest_open)}"))
    if fixed is not None:
        blocks.append(fixed)
    blocks.extend(_top_blocks(digest, open_total, room=MAX_BLOCKS - len(blocks) - len(context)))

    text = (
        f"{lead}{escape(header_text)}: {open_total} open, {new_total} new, {healed_total} healed."
    )
    if money:
        text += f" {money.replace('*', '')}."
    if digest.oldest_open is not None:
        oldest = digest.oldest_open
        name = escape(title_of(oldest.code))
        ref = f" #{oldest.id}" if oldest.id is not None else ""
        order = f", order {oldest.order_number}" if oldest.order_number is not None else ""
        text += f" Oldest: {name} ({escape(oldest.code)}{ref}){order}, "
        text += f"{format_age(oldest.age_days)}."
    return _truncate(text, MAX_FALLBACK_TEXT), (blocks + context)[:MAX_BLOCKS]


def _top_blocks(digest: Digest, open_total: int, *, room: int) -> list[dict[str, Any]]:
    """The "Top open items" heading, each item's section and buttons, and "… and N more open"
    for what is not shown, in at most `room` blocks."""
    items = list(digest.top)
    if not items or room < 2:
        return []
    total = max(open_total, len(items))
    out: list[dict[str, Any]] = [_mrkdwn_section("*Top open items*")]
    shown = 0
    for item in items[:MAX_TOP_ITEMS]:
        these = item_blocks(item)
        rest = total - shown - 1
        if len(out) + len(these) + (1 if rest > 0 else 0) > room:
            break
        out += these
        shown += 1
    if shown == 0:
        return []
    if total > shown:
        out.append(_mrkdwn_section(f"… and {total - shown} more open"))
    return out
