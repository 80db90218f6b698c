"""A Slack message's Block Kit blocks as plain text, the way Slack displays them.

`blocks_to_text(blocks)` turns any message's blocks (a digest, an alert) into lines a terminal
shows: the header underlined, sections with their fields in two columns, context lines,
dividers, buttons as `[ Retry ] [ Resolve… ]`, links `<url|text>` as `text (url)`, mentions
`<!subteam^S0FINANCE>` as `@S0FINANCE`, `&lt;` `&gt;` `&amp;` decoded and the usual emoji
codes as emoji. mrkdwn emphasis (`*bold*`, `_italic_`, `~strike~`, `` `code` ``) is kept as
written: it reads well as it is.

Pure functions on plain data (the blocks as Slack's API takes them); nothing is sent or read.
Used by the demo, which shows a digest in full and writes every digest as text to its folder.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

# The emoji Slack shows for the codes returnbridge's messages use (and a few common ones);
# any other `:code:` is left as written.
EMOJI: dict[str, str] = {
    "white_check_mark": "✅",
    "heavy_check_mark": "✔️",
    "x": "❌",
    "warning": "⚠️",
    "rotating_light": "🚨",
    "red_circle": "🔴",
    "large_yellow_circle": "🟡",
    "large_green_circle": "🟢",
    "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳",
    "moneybag": "💰",
    "money_with_wings": "💸",
    "package": "📦",
    "bust_in_silhouette": "👤",
    "information_source": "\u2139\ufe0f",
    "link": "🔗",
    "memo": "📝",
    "calendar": "📅",
    "bell": "🔔",
    "eyes": "👀",
    "tada": "🎉",
    "repeat": "🔁",
    "arrows_counterclockwise": "🔄",
    "no_entry": "⛔",
    "no_entry_sign": "🚫",
    "exclamation": "❗",
    "question": "❓",
    "mag": "🔍",
    "wrench": "🔧",
    "fire": "🔥",
}
DIVIDER = "─"
HEADER_RULE = "═"
MAX_RULE = 72  # a divider spans the message's widest line, at most this many columns
FIELD_GAP = "   "

_ANGLE = re.compile(r"<([^<>\n]+)>")
_EMOJI_CODE = re.compile(r":([a-z0-9_+\-]+):")
_SPECIAL = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


# --------------------------------------------------------------------------- text


def width(text: str) -> int:
    """Columns `text` takes in a terminal: wide characters (most emoji) count two, combining
    marks and variation selectors none."""
    total = 0
    for char in text:
        if unicodedata.combining(char) or 0xFE00 <= ord(char) <= 0xFE0F or char == "\u200d":
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def _pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))


def _emoji(text: str) -> str:
    return _EMOJI_CODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)


def _angle(match: re.Match[str]) -> str:
    """One `<...>` of Slack's markup as Slack shows it."""
    target, _, label = match.group(1).partition("|")
    if target.startswith(("@", "#")):  # <@U123|ana>, <#C123|returns-cx>
        return target[0] + (label.lstrip(target[0]) if label else target[1:])
    if target.startswith("!"):
        command = target[1:]
        if command.startswith("subteam^"):  # <!subteam^S0FINANCE|@finance>
            return label if label.startswith("@") else "@" + (label or command[8:])
        if command.startswith("date^"):  # <!date^1392734382^{date}|Feb 18, 2014>
            return label or command.split("^")[1]
        return _SPECIAL.get(command, label or "@" + command)
    if not label:
        return target  # <https://x>
    if label in (target, target.partition(":")[2]):
        return label  # <https://x|https://x>, <mailto:a@b|a@b>: the address says it all
    return f"{label} ({target})"


def mrkdwn_to_text(text: str) -> str:
    """Slack mrkdwn as displayed: links, mentions, entities and emoji resolved; emphasis kept."""
    shown = _ANGLE.sub(_angle, text)
    shown = shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return _emoji(shown)


def text_of(obj: Mapping[str, Any] | None) -> str:
    """A text object (`plain_text` or `mrkdwn`) as displayed; '' for None."""
    if not obj:
        return ""
    raw = str(obj.get("text", ""))
    if obj.get("type") == "mrkdwn":
        return mrkdwn_to_text(raw)
    return _emoji(raw) if obj.get("emoji", True) else raw


# --------------------------------------------------------------------------- elements


def element_text(element: Mapping[str, Any]) -> str:
    """An interactive or context element as it looks: `[ Retry ]`, `[ Pick one ▾ ]`, ..."""
    kind = element.get("type")
    if kind in ("plain_text", "mrkdwn"):
        return text_of(element)
    if kind == "image":
        return f"[{element.get('alt_text') or 'image'}]"
    if kind == "button":
        button = f"[ {text_of(element.get('text'))} ]"
        return f"{button} ({element['url']})" if element.get("url") else button
    if kind == "overflow":
        return "[ ⋯ ]"
    if kind in ("checkboxes", "radio_buttons"):
        chosen = {str(o.get("value")) for o in element.get("initial_options") or []}
        if element.get("initial_option"):
            chosen.add(str(element["initial_option"].get("value")))
        on, off = ("☑", "☐") if kind == "checkboxes" else ("◉", "○")
        return "  ".join(
            f"{on if str(o.get('value')) in chosen else off} {text_of(o.get('text'))}"
            for o in element.get("options") or []
        )
    if kind is not None and ("select" in kind or kind in ("datepicker", "timepicker")):
        initial = element.get("initial_option") or {}
        shown = (
            text_of(initial.get("text"))
            or element.get("initial_date")
            or element.get("initial_time")
            or text_of(element.get("placeholder"))
            or kind.replace("_", " ")
        )
        return f"[ {shown} ▾ ]"
    if kind in ("plain_text_input", "email_text_input", "url_text_input", "number_input"):
        return f"[ {text_of(element.get('placeholder')) or '…'} ]"
    return f"[{kind}]"


def _rich_inline(element: Mapping[str, Any]) -> str:
    kind = element.get("type")
    if kind == "text":
        text = str(element.get("text", ""))
        style = element.get("style") or {}
        for flag, mark in (("code", "`"), ("bold", "*"), ("italic", "_"), ("strike", "~")):
            if style.get(flag) and text.strip():
                text = f"{mark}{text}{mark}"
        return text
    if kind == "link":
        url = str(element.get("url", ""))
        label = element.get("text")
        return f"{label} ({url})" if label and label != url else url
    if kind == "emoji":
        name = str(element.get("name", ""))
        if name in EMOJI:
            return EMOJI[name]
        code = element.get("unicode")
        if code:
            try:
                return "".join(chr(int(part, 16)) for part in str(code).split("-"))
            except ValueError:
                pass
        return f":{name}:"
    if kind == "user":
        return f"@{element.get('user_id')}"
    if kind == "usergroup":
        return f"@{element.get('usergroup_id')}"
    if kind == "channel":
        return f"#{element.get('channel_id')}"
    if kind == "broadcast":
        return f"@{element.get('range')}"
    if kind == "date":
        return str(element.get("fallback") or element.get("timestamp", ""))
    return ""


def _rich_text(elements: Sequence[Mapping[str, Any]]) -> list[str]:
    lines: list[str] = []
    for part in elements:
        kind = part.get("type")
        inline = "".join(_rich_inline(e) for e in part.get("elements") or [])
        if kind == "rich_text_list":
            indent = "  " * int(part.get("indent") or 0)
            for number, item in enumerate(part.get("elements") or [], 1):
                text = "".join(_rich_inline(e) for e in item.get("elements") or [])
                bullet = f"{number}." if part.get("style") == "ordered" else "•"
                lines.append(f"{indent}{bullet} {text}")
        elif kind == "rich_text_preformatted":
            lines += ["    " + line for line in inline.split("\n")]
        elif kind == "rich_text_quote":
            lines += ["> " + line for line in inline.split("\n")]
        else:
            lines += inline.split("\n")
    return lines


# --------------------------------------------------------------------------- blocks


def _fields(fields: Sequence[Mapping[str, Any]]) -> list[str]:
    """Slack's two columns: left fields padded to the widest of them."""
    cells = [text_of(f).split("\n") for f in fields]
    left = cells[0::2]
    column = max((width(line) for cell in left for line in cell), default=0)
    multiline = any(len(cell) > 1 for cell in cells)
    lines: list[str] = []
    for row in range(0, len(cells), 2):
        a = cells[row]
        b = cells[row + 1] if row + 1 < len(cells) else []
        if row and multiline:
            lines.append("")
        for i in range(max(len(a), len(b))):
            l_text = a[i] if i < len(a) else ""
            r_text = b[i] if i < len(b) else ""
            lines.append((_pad(l_text, column) + FIELD_GAP + r_text).rstrip() if r_text else l_text)
    return lines


def _section(block: Mapping[str, Any]) -> list[str]:
    lines = text_of(block.get("text")).split("\n") if block.get("text") else []
    if block.get("fields"):
        if lines:
            lines.append("")
        lines += _fields(block["fields"])
    accessory = block.get("accessory")
    if accessory:
        shown = element_text(accessory)
        if lines:
            lines[0] = f"{lines[0]}  {shown}"
        else:
            lines = [shown]
    return lines


def block_lines(block: Mapping[str, Any]) -> list[str]:
    """One block as displayed; a divider is the single line `DIVIDER` (sized by the caller)."""
    kind = block.get("type")
    if kind == "header":
        text = text_of(block.get("text"))
        return [text, HEADER_RULE * width(text)]
    if kind == "section":
        return _section(block)
    if kind == "divider":
        return [DIVIDER]
    if kind == "context":
        return ["  ".join(element_text(e) for e in block.get("elements") or [])]
    if kind == "actions":
        return [" ".join(element_text(e) for e in block.get("elements") or [])]
    if kind == "image":
        title = text_of(block.get("title"))
        shown = f"[image: {block.get('alt_text') or 'image'}]"
        return [title, shown] if title else [shown]
    if kind == "input":
        label = text_of(block.get("label"))
        return [f"{label}: {element_text(block.get('element') or {})}"]
    if kind == "rich_text":
        return _rich_text(block.get("elements") or [])
    if kind == "video":
        return [f"[video: {text_of(block.get('title'))}]"]
    if kind == "file":
        return [f"[file: {block.get('external_id', '')}]"]
    return [f"[{kind} block]"]


# Blocks that sit right under the block before them (no blank line between).
_ATTACHED = frozenset({"actions", "context"})


def blocks_to_text(blocks: Sequence[Mapping[str, Any]], *, fallback: str = "") -> str:
    """`blocks` as Slack displays them, one block after the other (a blank line between,
    except before an actions or context block, which belongs to the block above it). No
    blocks: the message's `fallback` text, which is what Slack shows then."""
    if not blocks:
        return mrkdwn_to_text(fallback)
    lines: list[str] = []
    dividers: list[int] = []
    for i, block in enumerate(blocks):
        if i and block.get("type") not in _ATTACHED:
            lines.append("")
        if block.get("type") == "divider":
            dividers.append(len(lines))
        lines += block_lines(block)
    rule = min(MAX_RULE, max((width(line) for line in lines), default=0)) or 1
    for at in dividers:
        lines[at] = DIVIDER * rule
    return "\n".join(line.rstrip() for line in lines)
