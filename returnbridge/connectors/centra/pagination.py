"""Centra's two pagination styles as async iterators, plus batching of id lists.

Limit/page lists (`orders`, `returns`, ...) end at the first short page; Relay connections
(`orderConnection`) follow `pageInfo.endCursor` while `hasNextPage` ([C]). Limit/page over
data that changes while we read can skip or repeat rows, so callers that must see every row once
sort by a stable key (`id_ASC`) or use the connection. A cursor (`number:N`, `id:N` in base64
[C-ex]) is taken as a keyset position [INF]: it stays valid when its row leaves the list between
two pages, so a walk, or a cursor kept from an earlier run, goes on after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from returnbridge.connectors.centra.errors import CentraQueryError
from returnbridge.connectors.centra.models import Page

T = TypeVar("T")


async def iter_limit_pages(
    fetch_page: Callable[[int, int], Awaitable[list[T]]], page_size: int
) -> AsyncIterator[T]:
    """Yield every item of a limit/page list; `fetch_page(limit, page)` reads one (1-based) page."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    page = 1
    previous: list[T] | None = None
    while True:
        items = await fetch_page(page_size, page)
        if items == previous:
            # A server that ignores `page` would otherwise repeat one full page forever.
            raise CentraQueryError(f"page {page} repeated page {page - 1}: `page` is ignored")
        for item in items:
            yield item
        if len(items) < page_size:
            return
        previous = items
        page += 1


async def iter_connection(
    fetch_page: Callable[[int, str | None], Awaitable[Page[T]]], page_size: int
) -> AsyncIterator[T]:
    """Yield every node of a Relay connection; `fetch_page(first, after)` reads one page."""
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    after: str | None = None
    seen: set[str] = set()
    while True:
        page = await fetch_page(page_size, after)
        for item in page.items:
            yield item
        if not page.has_next_page:
            return
        if page.end_cursor is None or page.end_cursor in seen or page.end_cursor == after:
            # A server bug (a cursor that stays put or comes round again) would loop forever.
            raise CentraQueryError(f"connection did not advance past cursor {after!r}")
        seen.add(page.end_cursor)
        after = page.end_cursor


def chunked(values: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` values (the batches of a batched read)."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def unique(values: Iterable[T]) -> Sequence[T]:
    """`values` without repeats, first occurrence order kept (no id is fetched twice)."""
    return list(dict.fromkeys(values))
