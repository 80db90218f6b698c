"""Centra's date formats: ISO 8601 with the merchant's offset out, several forms accepted in.

Output looks like `2023-01-16T10:31:34+01:00` [C-ex]; date fields take a PHP-style `format:`
argument (`orderDate(format: "Y-m-d")`) [C-ex]; input accepts ISO 8601 and `2022-06-23 15:47:12`
[C-ex]. Naive inputs are read in the merchant's zone ([INF], `CentraInferred.merchant_timezone`).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

# The PHP date() letters that integrations plausibly use; others pass through literally.
_PHP_LETTERS = {
    "Y": "%Y",
    "y": "%y",
    "m": "%m",
    "n": "%-m",
    "d": "%d",
    "j": "%-d",
    "H": "%H",
    "G": "%-H",
    "i": "%M",
    "s": "%S",
    "D": "%a",
    "M": "%b",
    "T": "%Z",
}


def format_datetime(value: datetime, tz: ZoneInfo, php_format: str | None = None) -> str:
    """`value` in the merchant's zone, ISO 8601 with offset or a PHP `date()` format."""
    local = value.astimezone(tz)
    if php_format is None:
        return local.isoformat(timespec="seconds")
    out: list[str] = []
    escaped = False
    for ch in php_format:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "c":
            out.append(local.isoformat(timespec="seconds"))
        elif ch == "P":
            out.append(local.isoformat(timespec="seconds")[-6:])
        elif ch == "U":
            out.append(str(int(local.timestamp())))
        elif ch in _PHP_LETTERS:
            out.append(local.strftime(_PHP_LETTERS[ch]))
        else:
            out.append(ch)
    return "".join(out)


def parse_datetime(text: str, tz: ZoneInfo) -> datetime:
    """Parse an input date-time; raise ValueError with a readable message when it is not one."""
    candidate = text.strip()
    if candidate.endswith("Z"):
        candidate = candidate[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date-time; use ISO 8601 ('2022-06-23T15:47:12+02:00') "
            "or 'YYYY-MM-DD HH:MM:SS'"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed
