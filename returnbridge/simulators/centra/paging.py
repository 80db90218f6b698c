"""Centra's two pagination styles ([C]): limit/page lists and Relay connections.

Lists take `limit` (1..max, default 20 [C] for Warehouse.stock; [INF] elsewhere) and a 1-based
`page`. Connections take first/after or last/before; a cursor is opaque base64 of
`<key>:<value>`, e.g. `bnVtYmVyOjE2Ng==` = `number:166` [C-ex].
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from graphql import GraphQLError

T = TypeVar("T")


def page_of(
    items: Sequence[T], limit: int | None, page: int | None, *, maximum: int, default: int = 20
) -> list[T]:
    """The `page`-th slice of `limit` items; GraphQLError for a limit or page out of range."""
    size = default if limit is None else limit
    if not 1 <= size <= maximum:
        raise GraphQLError(f"limit must be between 1 and {maximum}, got {size}.")
    number = 1 if page is None else page
    if number < 1:
        raise GraphQLError(f"page must be 1 or more, got {number}.")
    start = (number - 1) * size
    return list(items[start : start + size])


def encode_cursor(key: str, value: int) -> str:
    return base64.b64encode(f"{key}:{value}".encode()).decode()


def decode_cursor(cursor: str, key: str) -> int:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
        prefix, _, value = text.partition(":")
        if prefix != key:
            raise ValueError(prefix)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise GraphQLError(f"Invalid cursor {cursor!r}.") from None


def connection(
    items: Sequence[T],
    key: str,
    value_of: Callable[[T], int],
    wrap: Callable[[T], Any],
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    maximum: int,
    default: int = 20,
) -> dict[str, Any]:
    """A Relay connection over `items` (already filtered and sorted)."""
    positions = {value_of(item): i for i, item in enumerate(items)}
    start, end = 0, len(items)
    for cursor, is_after in ((after, True), (before, False)):
        if cursor is None:
            continue
        value = decode_cursor(cursor, key)
        if value not in positions:
            raise GraphQLError(f"Cursor {cursor!r} does not point into this list.")
        if is_after:
            start = max(start, positions[value] + 1)
        else:
            end = min(end, positions[value])
    for count, name in ((first, "first"), (last, "last")):
        if count is not None and not 0 <= count <= maximum:
            raise GraphQLError(f"{name} must be between 0 and {maximum}, got {count}.")
    if first is None and last is None:
        first = default
    if first is not None:
        end = min(end, start + first)
    if last is not None:
        start = max(start, end - last)
    window = list(items[start:end]) if start < end else []
    edges = [{"cursor": encode_cursor(key, value_of(item)), "node": wrap(item)} for item in window]
    return {
        "totalCount": len(items),
        "pageInfo": {
            "hasNextPage": end < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
        "edges": edges,
    }
