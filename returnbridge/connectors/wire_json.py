"""Reading JSON that arrives from outside (webhooks, Slack interactions) with one answer for
everything the parser refuses: the receiver turns each into a 400 naming the problem, never a
500.

`json.loads` refuses more than JSON's grammar: nesting about 1,000 deep raises RecursionError,
and an integer longer than `sys.get_int_max_str_digits()` (4,300) raises ValueError. Both are
what an attacker sends first.
"""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import parse_qs


class UnreadableJson(ValueError):
    """Text that is not JSON returnbridge can read; the message says why, in a few words."""


def loads(text: str | bytes, what: str = "body") -> Any:
    """`text` parsed; UnreadableJson naming `what` and the problem."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnreadableJson(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise UnreadableJson(
            f"{what} is not JSON returnbridge can read: JSON nested too deep"
        ) from None
    except ValueError as exc:  # beyond JSON's grammar: an integer Python will not convert
        why = (
            f"a number too long (over {sys.get_int_max_str_digits()} digits)"
            if "integer string conversion" in str(exc)
            else str(exc)
        )
        raise UnreadableJson(f"{what} is not JSON returnbridge can read: {why}") from None


def form_payload(body: bytes) -> dict[str, Any]:
    """The JSON object in a form body `payload=<urlencoded JSON>` (how Slack interactions and
    Centra's form-encoded webhooks arrive); UnreadableJson naming the problem."""
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnreadableJson(f"body is not a url-encoded form: {exc}") from None
    values = fields.get("payload")
    if not values or len(values) != 1:
        raise UnreadableJson("form body must carry exactly one `payload` field")
    payload = loads(values[0], "`payload`")
    if not isinstance(payload, dict):
        raise UnreadableJson("`payload` must be a JSON object")
    return payload
