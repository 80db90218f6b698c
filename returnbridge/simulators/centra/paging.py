"""Centra's two pagination styles ([C]): limit/page lists and Relay connections.

Lists take `limit` (1..max, default 20 [C] for Warehouse.stock; [INF] elsewhere) and a 1-based
`page`. Connections take first/after or last/before; a cursor is opaque base64 of
`<key>:<value>`, e.g. `bnVtYmVyOjE2Ng==` = `number:166` [C-ex].

A cursor is a keyset position [INF]: one naming a value that is not in the list (a row deleted,
filtered out, or never there, like the docs' own `number:166`) still places the page, after or
before where that value sits in the list's order. That needs the list to be ordered by the
cursor's key (ascending, or descending when the connection says so); otherwise such a cursor is
an error, as is a cursor that does not decode to `<key>:<digits>`.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from itertools import pairwise
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
        if prefix != key or not (value.isascii() and value.isdigit()):
            raise ValueError(prefix)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise GraphQLError(f"Invalid cursor {cursor!r}.") from None


def keyset_position(
    values: Sequence[int], value: int, *, after: bool, descending: bool = False
) -> int | None:
    """Where a page bounded by `value` starts (`after`) or ends (before) in `values`, the list's
    keys in its order: the index just past `value` for after, at it for before. None when the
    list is not ordered by the key in that direction, so `value` has no place in it."""
    keys = [-v for v in values] if descending else list(values)
    if any(a > b for a, b in pairwise(keys)):
        return None
    probe = -value if descending else value
    return bisect_right(keys, probe) if after else bisect_left(keys, probe)


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
    descending: bool = False,
) -> dict[str, Any]:
    """A Relay connection over `items` (already filtered and sorted; `descending`: sorted by
    the cursor's key from high to low, which places a cursor naming a value not in the list)."""
    values = [value_of(item) for item in items]
    positions = {v: i for i, v in enumerate(values)}
    start, end = 0, len(items)
    for cursor, is_after in ((after, True), (before, False)):
        if cursor is None:
            continue
        value = decode_cursor(cursor, key)
        if value in positions:
            at: int | None = positions[value] + 1 if is_after else positions[value]
        else:
            at = keyset_position(values, value, after=is_after, descending=descending)
        if at is None:
            raise GraphQLError(
                f"Cursor {cursor!r} names {key} {value}, which is not in this list, and the list "
                f"is not ordered by {key}, so the cursor has no position in it."
            )
        if is_after:
            start = max(start, at)
        else:
            end = min(end, at)
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
