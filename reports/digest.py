"""An owner's exception digest as a Slack message: fallback text and Block Kit blocks.

Pure functions, no I/O: `render_digest(digest)` answers `(text, blocks)` for
`DigestPoster.post(channel, text, blocks)`. The reconciliation composes the `Digest` (its data model
lives in `returnbridge.reconcile.digests`) and is handed this renderer by whoever starts it (the
flow, the CLI, the demo): the library never imports `reports/`
(docs/architecture.md#rooms-and-imports).

The inputs carry codes, order numbers, Reveni return ids, amounts and ages only, never a
customer's e-mail or name; as a second line of defence any e-mail-looking string in a
free-text field is masked before it is rendered.

Block Kit limits are kept whatever the input size: header text ≤ 150 characters, section text
≤ 3000, ≤ 10 fields per section (each ≤ 2000), ≤ 50 blocks; what does not fit is summarised as
"… and N more".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote

from returnbridge.connectors.reveni.models import currency_exponent
from returnbridge.reconcile.digests import Digest, DigestItem

MAX_HEADER_TEXT = 150
MAX_SECTION_TEXT = 3000
MAX_FIELDS_PER_SECTION = 10
MAX_FIELD_TEXT = 2000
MAX_BLOCKS = 50
MAX_TOP_ITEMS = 10
MAX_CODE_SECTIONS = 3  # up to 30 codes as fields; the whole vocabulary has fewer
MAX_FALLBACK_TEXT = 1000
MAX_LINK_URL = 2000  # a longer link is left out rather than cut

OWNER_TITLES = {"finance": "Finance", "ops": "Ops", "cx": "CX"}

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


def format_item(item: DigestItem) -> str:
    """`` `code` · order 1001 · ret_std_1001 · 299.00 SEK · 3 d `` (`· retrying` when it is)."""
    parts = [f"`{escape(item.code)}`"]
    if item.order_number is not None:
        parts.append(f"order {item.order_number}")
    if item.reveni_return_id:
        parts.append(escape(item.reveni_return_id))
    if item.amount is not None:
        parts.append(format_money(item.amount, item.currency))
    parts.append(f"{item.age_days} d")
    if item.status and item.status != "open":
        parts.append(escape(item.status))
    return " · ".join(parts)


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
    text = f"`{escape(code)}`\n{' · '.join(marks)}"
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

    if open_total <= 0:
        healed = f" {healed_total} healed since the last digest." if healed_total else ""
        blocks.append(
            _mrkdwn_section(f"{lead}:white_check_mark: *Nothing open — all clear.*{healed}")
        )
        text = f"{lead}{escape(header_text)}: nothing open — all clear.{healed}"
    else:
        blocks.append(
            _mrkdwn_section(
                f"{lead}*{open_total} open* · {new_total} new · {healed_total} healed "
                "since the last digest"
            )
        )
        blocks.extend(_code_sections(digest))
        if digest.oldest_open is not None:
            blocks.append(_mrkdwn_section(f"*Oldest open:* {format_item(digest.oldest_open)}"))
        if digest.top:
            shown = list(digest.top[:MAX_TOP_ITEMS])
            lines = [f"• {format_item(item)}" for item in shown]
            blocks.append(
                _mrkdwn_section(_lines_within("*Top open items*", lines, len(digest.top)))
            )
        text = (
            f"{lead}{escape(header_text)}: {open_total} open, {new_total} new, "
            f"{healed_total} healed."
        )
        if digest.oldest_open is not None:
            oldest = digest.oldest_open
            order = f", order {oldest.order_number}" if oldest.order_number is not None else ""
            text += f" Oldest: {escape(oldest.code)}{order}, {oldest.age_days} d."

    url = _safe_url(digest.flow_run_url) if digest.flow_run_url else ""
    if url and len(url) <= MAX_LINK_URL:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"<{url}|Prefect flow run>",
                    }
                ],
            }
        )
    return _truncate(text, MAX_FALLBACK_TEXT), blocks[:MAX_BLOCKS]
