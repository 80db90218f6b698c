"""Reveni's paginated return list, and `changed_since`: every return changed since a cursor, once.

## The problem

`GET returns` is sorted by `(updated_at, id)` ascending and paginated by page *number* [INFER].
Every change to a return sets its `updated_at` to "now", which moves it to the
end of the list. If that return sits on a page already read, every later return shifts one place
left, so the first return of the next page slides onto the page just read and a naive walk never
sees it. The victim may itself be a return that changed a moment earlier: then its *id* was seen
(in its old version) but its new version is lost. New returns are appended at the end, harmless.

## The algorithm (`changed_since`)

1. **Keyset restarts.** Read page 1 with `updated_from = since`. After each page, format the last
   return's `updated_at` as a filter value; if that differs from the current `updated_from`,
   restart at page 1 with `updated_from = that updated_at` (inclusive, so returns sharing it are
   re-read, never skipped). Otherwise (the whole page shares one filter value: one instant with
   `datetime` precision, one day with `date` precision) go on to the next page number. Each restart
   strictly raises the filter, so the walk makes progress; it ends at a page without `next`.
   A page 1 cannot be shifted (nothing lies before it), so only a page >= 2 of some filter value
   K can lose a return, and only when a return read earlier *under that same K* (so its
   `updated_at` formats to K) moved to the end in between.
2. **Dedupe, newest wins.** Returns are kept by id with the newest `updated_at` seen, so a return
   read before and after a change is reported once, in its latest-seen version.
3. **Detect the shifts that can hurt.** A return that moved after we read it shows up again at
   the end with a newer `updated_at` (we always read to the end). If its old `updated_at`
   formats to a value K for which this pass read a page >= 2, a return (or a newer version of
   one) may have slid past us; the victim sorts after that old position. The pass is then
   repeated from the earliest such old `updated_at`: everything before it was read correctly.
4. **Prove completeness with `count`.** `updated_at` only grows and returns are not deleted, so
   the set of returns matching the original filter (`updated_from = since`) only grows, and every
   id we saw is still in it. If we saw at least `count` distinct ids, where `count` is read
   *after* every page (the last page's envelope when the walk ended on the original filter value,
   else one extra `page_size=1` request), we saw all of them. Step 3 covers versions, this step
   covers ids independently of our model of the server (it would catch, say, a sort order that
   is not what `inferred.list_order` says). A gap without a harmful shift can only be returns
   created after our last read (they sort last), so the next pass reads the tail from the highest
   `updated_at` seen.

A pass is accepted when it saw no harmful shift and the count holds. Re-passes are rare in a
sync (a harmful shift needs more than a page of returns sharing one filter value, and one of them
changing during the walk). But with the inferred day-precision filter, a busy day of more than a
page of returns, changing faster than a walk reads it, never gives a clean pass (measured in
`bench/reveni_listing.py`). So passes are bounded (`max_passes`) and the answer after the last
one is **partial, never wrong**: every return seen is returned, `complete` is False, and
`high_water` is lowered to the earliest position a skipped version can have (the old position of
the earliest harmful move), so the caller's next call starts there and loses nothing. Progress is
still made: everything returned can be processed (the planner is level-triggered, so reading a
return twice is harmless), and the cursor never passes a version not seen.

The caller stores `high_water` as its cursor and passes it back next time: inclusive, so a change
that shares that instant is re-read, not lost, and every version not returned has
`updated_at >= high_water`. On a complete answer it is the newest `updated_at` returned.

Limits, stated so they can be checked with Reveni: a return *deleted* during a walk can hide
a shifted one without any sign; and a change whose `updated_at` *equals* that of a return already
read, and that sorts before it by id, lands on a page already read and is seen in its old version
only. Reveni's microsecond timestamps and the simulator's strictly increasing ones make such ties
practically impossible.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from returnbridge.connectors.reveni.encoding import format_filter_value, parse_filter_value
from returnbridge.connectors.reveni.errors import ReveniError, ReveniNotFound, ReveniQueryError
from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.connectors.reveni.models import Return

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RejectedRow:
    """A row of a list page that does not read as a return: skipped and reported, never lost.

    `return_id` / `updated_at` are what could be read of it (None when not even that)."""

    path: str
    return_id: str | None
    updated_at: datetime | None
    error: str
    field: str | None = None  # the first field that failed, e.g. `results.0.status`


@dataclass(frozen=True)
class ReturnPage:
    """One page of `GET returns`: its returns and the envelope (`count` matches the filter).
    `rejected`: rows that did not read as returns (they count towards `count`)."""

    items: list[Return]
    count: int
    next: str | None
    previous: str | None
    rejected: list[RejectedRow] = field(default_factory=list)


@dataclass(frozen=True)
class ChangedReturns:
    """The answer of `changed_since`.

    `returns`: each return changed at or after `since` once, in its latest-seen version, sorted
    by `(updated_at, id)`. `high_water`: the cursor for the next call; every version not returned
    has `updated_at >= high_water` (None when nothing was returned: keep the old cursor).
    `passes`: walks made. `requests`: HTTP requests made (retries included). `complete`: False
    when the list kept changing through `max_passes` walks; `high_water` is then lowered so the
    next call re-reads whatever may have slid past. `rejected`: rows that did not read as
    returns, skipped and reported; `high_water` never passes one of them (one whose `updated_at`
    cannot be read holds the cursor at `since`), so a row fixed at Reveni is read next time."""

    returns: list[Return]
    high_water: datetime | None
    passes: int
    requests: int
    complete: bool = True
    rejected: list[RejectedRow] = field(default_factory=list)


FetchPage = Callable[[datetime, int, int], Awaitable[ReturnPage]]
"""`fetch(updated_from, page, page_size)`: one page of the list filtered by `updated_from` only."""


@dataclass
class _WalkEnd:
    key: str  # the filter value of the last page read
    count: int | None  # its envelope count (None when the page vanished)


@dataclass
class _Listing:
    fetch: FetchPage
    inferred: ReveniInferred
    page_size: int
    max_requests: int
    seen: dict[str, Return] = field(default_factory=dict)
    rejected: dict[str, RejectedRow] = field(default_factory=dict)
    requests: int = 0
    # per pass: the version of each id read in this pass, the old updated_at of every return
    # read again in this pass with a newer one, and the filter values read past page 1
    pass_versions: dict[str, datetime] = field(default_factory=dict)
    moved_from: list[datetime] = field(default_factory=list)
    paged_keys: set[str] = field(default_factory=set)

    def key(self, moment: datetime) -> str:
        return format_filter_value(moment, self.inferred)

    async def read(self, updated_from: datetime, page: int, page_size: int) -> ReturnPage:
        if self.requests >= self.max_requests:
            raise ReveniError(
                f"changed_since: gave up after {self.requests} list requests "
                f"({len(self.seen)} returns seen); raise max_requests or page_size"
            )
        self.requests += 1
        result = await self.fetch(updated_from, page, page_size)
        bound = parse_filter_value(self.key(updated_from), self.inferred)
        items_key = self.inferred.envelope_items_key
        previous: datetime | None = None
        for index, item in enumerate(result.items):
            where = f"{items_key}.{index}.updated_at"
            if item.updated_at < bound:
                raise ReveniQueryError(
                    f"list returns: a return updated at {item.updated_at.isoformat()} came back "
                    f"for updated_from={self.key(updated_from)}: the filter is not applied",
                    path=where,
                )
            if previous is not None and item.updated_at < previous:
                raise ReveniQueryError(
                    "list returns: page is not sorted by updated_at ascending "
                    f"(inferred.list_order={self.inferred.list_order!r})",
                    path=where,
                )
            previous = item.updated_at
            self._record(item)
        for row in result.rejected:
            self.rejected[row.return_id or row.path] = row
        return result

    def distinct(self) -> int:
        """Distinct rows seen, rejected ones included (they are in the envelope's count)."""
        return len(self.seen) + sum(1 for key in self.rejected if key not in self.seen)

    def _record(self, item: Return) -> None:
        read_before = self.pass_versions.get(item.id)
        if read_before is not None and item.updated_at > read_before:
            self.moved_from.append(read_before)  # it moved after we read it in this pass
        if read_before is None or item.updated_at > read_before:
            self.pass_versions[item.id] = item.updated_at
        known = self.seen.get(item.id)
        if known is None or item.updated_at >= known.updated_at:
            self.seen[item.id] = item  # else an older version (a lagging read): keep the newer

    def harmful_moves(self) -> list[datetime]:
        """Old positions of returns that moved after being read under a filter value this pass
        read past page 1: only those can have pushed an unread return onto a page read."""
        return [moment for moment in self.moved_from if self.key(moment) in self.paged_keys]

    async def walk(self, start: datetime) -> _WalkEnd:
        """One pass from `start` to the end of the list (steps 1 and 2 of the module doc)."""
        self.pass_versions, self.moved_from, self.paged_keys = {}, [], set()
        cursor, key, page = start, self.key(start), 1
        previous: list[tuple[str, datetime]] | None = None
        while True:
            if page > 1:
                self.paged_keys.add(key)
            try:
                result = await self.read(cursor, page, self.page_size)
            except ReveniNotFound:
                if page == 1:
                    raise
                return _WalkEnd(key, None)  # "Invalid page.": the list shrank under us
            versions = [(item.id, item.updated_at) for item in result.items]
            if result.next is None:
                return _WalkEnd(key, result.count)
            if not versions:
                raise ReveniQueryError(f"list returns: page {page} is empty but has a next page")
            # The same *versions* again means the server ignores `page`. The same ids in newer
            # versions is legitimate: they changed and moved to the end, onto this page.
            if versions == previous:
                raise ReveniQueryError(f"list returns: page {page} repeated page {page - 1}")
            last = result.items[-1].updated_at
            if self.key(last) != key:
                cursor, key, page, previous = last, self.key(last), 1, None
            else:
                page, previous = page + 1, versions


async def changed_since(
    fetch: FetchPage,
    since: datetime,
    *,
    inferred: ReveniInferred,
    page_size: int,
    max_passes: int = 4,
    max_requests: int = 10_000,
) -> ChangedReturns:
    """Every return whose `updated_at >= since`, once each; see the module doc for why it can
    neither miss nor repeat one while returns change under it, and why an answer after
    `max_passes` is partial with a safe cursor rather than an error. `requests` counts `fetch`
    calls; `ReveniError` only when `max_requests` is exhausted."""
    if since.tzinfo is None:
        raise ValueError(f"since={since.isoformat()} needs a timezone")
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    if max_passes < 1:
        raise ValueError(f"max_passes must be at least 1, got {max_passes}")
    since = since.astimezone(UTC)
    listing = _Listing(fetch, inferred, page_size, max_requests)
    original = listing.key(since)
    start = since
    for passes in range(1, max_passes + 1):
        end = await listing.walk(start)
        harmful = listing.harmful_moves()
        if harmful:
            # A version may have slid past us: read again from the earliest position that moved.
            start = max(since, min(harmful))
            log.info(
                "changed_since(%s): pass %d saw %d returns move after being read",
                since.isoformat(),
                passes,
                len(harmful),
            )
            if passes == max_passes:
                return _result(listing, since, passes, resume_at=start)
            continue
        if end.key == original and end.count is not None:
            count = end.count
        else:
            count = (await listing.read(since, 1, 1)).count
        if listing.distinct() >= count:
            if listing.distinct() > count:
                log.warning(
                    "changed_since(%s): saw %d returns but the list counts %d; "
                    "were returns deleted?",
                    since.isoformat(),
                    listing.distinct(),
                    count,
                )
            return _result(listing, since, passes)
        # Without a harmful shift, a shortfall can only be returns created after our last read:
        # they sort after everything seen, so the tail from the newest one seen holds them.
        start = max([since, *(r.updated_at for r in listing.seen.values())])
        log.info(
            "changed_since(%s): pass %d saw %d of %d returns; reading the tail again",
            since.isoformat(),
            passes,
            listing.distinct(),
            count,
        )
        if passes == max_passes:
            return _result(listing, since, passes, resume_at=start)
    raise AssertionError("unreachable: the last pass always returns")


def _result(
    listing: _Listing, since: datetime, passes: int, resume_at: datetime | None = None
) -> ChangedReturns:
    """The answer; `resume_at` (a partial answer) caps the cursor where a skipped version can be."""
    returns = sorted(
        (r for r in listing.seen.values() if r.updated_at >= since),
        key=lambda r: (r.updated_at, r.id),
    )
    high_water = returns[-1].updated_at if returns else None
    if resume_at is not None:
        log.warning(
            "changed_since(%s): the list kept changing through %d passes; returning %d returns "
            "and resuming from %s next time",
            since.isoformat(),
            passes,
            len(returns),
            resume_at.isoformat(),
        )
        high_water = resume_at if high_water is None else min(high_water, resume_at)
    rejected = [row for key, row in listing.rejected.items() if key not in listing.seen]
    if rejected:
        # Never move the cursor past a row we could not read: it is read again next time.
        held = [row.updated_at for row in rejected]
        hold = since if any(moment is None for moment in held) else min(m for m in held if m)
        high_water = hold if high_water is None else min(high_water, max(hold, since))
        log.warning(
            "changed_since(%s): %d rows could not be read as returns and were skipped: %s",
            since.isoformat(),
            len(rejected),
            "; ".join(f"{row.return_id or row.path}: {row.error}" for row in rejected[:5]),
        )
    return ChangedReturns(
        returns=returns,
        high_water=high_water,
        passes=passes,
        requests=listing.requests,
        complete=resume_at is None,
        rejected=rejected,
    )
