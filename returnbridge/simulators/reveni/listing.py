"""`GET returns`: the filters, the order and the page envelope (docs/reveni-simulator.md).

The filters' meaning is [R-DOC S5]; parameter names, the envelope and the order are [INFER] and
come from `ReveniInferred`; values are read with the inverse of the client's encoding
(`connectors/reveni/encoding.py`): a status in either casing (`IN_PROGRESS` as Reveni's MCP enum
spells it, or `in_progress`) unless `status_case_strict`. Dates: with
`date_filter_precision = "date"` a value is `YYYY-MM-DD` and means that whole day in
`date_filter_timezone` (`_from` from its first instant, `_to` through its last); with
`"datetime"` it is an ISO 8601 time with an offset, both bounds inclusive. Pages follow Django
REST framework: a page past the end (or not a positive number) is 404 `Invalid page.`, a
`page_size` above the maximum is cut to the maximum.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from returnbridge.connectors.reveni.encoding import (
    TRANSACTION_TYPES,
    parse_filter_value,
    transaction_type_to_wire,
)
from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.simulators.reveni.records import ReturnRec
from returnbridge.simulators.reveni.wireformat import status_named

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class FilterError(ValueError):
    """A bad query parameter (400; the message names it)."""


class InvalidPage(LookupError):
    """A page that does not exist (404 `Invalid page.`)."""


def transaction_types(ret_type: str) -> frozenset[str]:
    """The transaction types a return matches: a mixed return is both a refund and an exchange."""
    if ret_type == "mixed":
        return frozenset({"refund", "exchange"})
    return frozenset({ret_type})


@dataclass(frozen=True)
class Window:
    """A time range, both ends inclusive (`parse_filter_value` gives a `_to` its last instant)."""

    start: datetime | None = None
    end: datetime | None = None

    def __contains__(self, when: datetime) -> bool:
        if self.start is not None and when < self.start:
            return False
        return self.end is None or when <= self.end


@dataclass(frozen=True)
class ReturnFilter:
    statuses: frozenset[str] | None = None
    types: frozenset[str] | None = None
    updated: Window = Window()
    created: Window = Window()
    search: str | None = None

    def matches(self, rec: ReturnRec) -> bool:
        if self.statuses is not None and rec.status not in self.statuses:
            return False
        if self.types is not None and not transaction_types(rec.type) & self.types:
            return False
        if rec.updated_at not in self.updated or rec.created_at not in self.created:
            return False
        if self.search:
            needle = self.search.casefold()
            haystack = (str(rec.order_number), rec.customer_email or "", rec.tracking_number)
            return any(needle in text.casefold() for text in haystack)
        return True


def _values(params: Mapping[str, str], name: str) -> list[str] | None:
    raw = params.get(name)
    if raw is None:
        return None
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not values:
        raise FilterError(f"{name}: give at least one value")
    return values


def _bound(
    params: Mapping[str, str], name: str, inferred: ReveniInferred, bound: Literal["from", "to"]
) -> datetime | None:
    raw = params.get(name)
    if raw is None:
        return None
    if inferred.date_filter_precision == "date" and not _DATE.match(raw):
        raise FilterError(f"{name}: expected a date YYYY-MM-DD, got {raw!r}")
    try:
        return parse_filter_value(raw, inferred, bound=bound)
    except ValueError:
        shape = "YYYY-MM-DD" if inferred.date_filter_precision == "date" else "ISO 8601 time"
        raise FilterError(f"{name}: expected a {shape} with its offset, got {raw!r}") from None


def _window(params: Mapping[str, str], lo: str, hi: str, inferred: ReveniInferred) -> Window:
    return Window(_bound(params, lo, inferred, "from"), _bound(params, hi, inferred, "to"))


def parse_filter(params: Mapping[str, str], inferred: ReveniInferred) -> ReturnFilter:
    """The list filters in `params`; raise FilterError naming a bad one."""
    statuses: frozenset[str] | None = None
    if (names := _values(params, inferred.param_status)) is not None:
        found = {name: status_named(name, inferred) for name in names}
        unknown = [name for name, status in found.items() if status is None]
        if unknown:
            hint = (
                f" (status_case_strict: spelt {inferred.status_case} case)"
                if inferred.status_case_strict
                else ""
            )
            raise FilterError(f"{inferred.param_status}: unknown status(es) {unknown}{hint}")
        statuses = frozenset(s for s in found.values() if s is not None)
    types: frozenset[str] | None = None
    if (names := _values(params, inferred.param_transaction_type)) is not None:
        wire = {transaction_type_to_wire(t, inferred): t for t in TRANSACTION_TYPES}
        unknown = [name for name in names if name not in wire]
        if unknown:
            raise FilterError(
                f"{inferred.param_transaction_type}: expected {sorted(wire)}, got {unknown}"
            )
        types = frozenset(wire[name] for name in names)
    return ReturnFilter(
        statuses=statuses,
        types=types,
        updated=_window(params, inferred.param_updated_from, inferred.param_updated_to, inferred),
        created=_window(params, inferred.param_created_from, inferred.param_created_to, inferred),
        search=params.get(inferred.param_search) or None,
    )


@dataclass(frozen=True)
class PageRequest:
    page: int
    size: int


def parse_page(params: Mapping[str, str], inferred: ReveniInferred) -> PageRequest:
    raw_size = params.get(inferred.param_page_size)
    size = inferred.page_size_default
    if raw_size is not None:
        if not raw_size.isdigit() or int(raw_size) < 1:
            raise FilterError(
                f"{inferred.param_page_size}: expected a positive integer, got {raw_size!r}"
            )
        size = min(int(raw_size), inferred.page_size_max)
    raw_page = params.get(inferred.param_page, "1")
    if not raw_page.isdigit() or int(raw_page) < 1:
        raise InvalidPage(raw_page)
    return PageRequest(int(raw_page), size)


def page_of(rows: list[Any], request: PageRequest) -> tuple[list[Any], bool]:
    """The rows of the requested page and whether a next page exists; InvalidPage past the end
    (page 1 of an empty list exists)."""
    start = (request.page - 1) * request.size
    if request.page > 1 and start >= len(rows):
        raise InvalidPage(str(request.page))
    return rows[start : start + request.size], start + request.size < len(rows)
