"""`ReveniClient`: the typed calls returnbridge makes to Reveni's merchant API, and nothing else.

Reads are retried on transient failures (transport.py); writes are sent exactly once and report
an unknown outcome as `ReveniInDoubt`. Every write has a read that proves it happened:

| write              | read-back                                    |
|--------------------|----------------------------------------------|
| `partial_validate` | `get_return` (item statuses)                 |
| `create_webhook`   | `list_webhooks` (`ensure_webhook` does this) |
| `delete_webhook`   | `list_webhooks`                              |

Every inferred detail (list path and parameter names, envelope keys, casing, date precision,
money format, error body) comes from the `ReveniInferred` the client was given.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from returnbridge.connectors.lifecycle import AsyncClient
from returnbridge.connectors.reveni.encoding import (
    format_filter_value,
    normalise_return,
    status_to_wire,
    transaction_type_to_wire,
)
from returnbridge.connectors.reveni.errors import (
    ReveniInDoubt,
    ReveniNotFound,
    ReveniQueryError,
)
from returnbridge.connectors.reveni.inferred import DEFAULT_REVENI_INFERRED, ReveniInferred
from returnbridge.connectors.reveni.models import (
    Invoice,
    Merchant,
    Return,
    WebhookEvent,
    WebhookSubscription,
    wire_context,
)
from returnbridge.connectors.reveni.pagination import (
    ChangedReturns,
    RejectedRow,
    ReturnPage,
    changed_since,
)
from returnbridge.connectors.reveni.transport import ReveniTransport, Sleep, path_segment
from returnbridge.connectors.reveni.wire import (
    EVENT_TYPES,
    PARTIAL_VALIDATE_PATH,
    RETURN_PATH,
    WEBHOOK_PATH,
    WEBHOOKS_PATH,
)

M = TypeVar("M", bound=BaseModel)

_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class ItemDecision:
    """One item of a `partial_validate` call [R-OBS S4 keys]: accept (optionally `quantity` of
    its units) or reject it with a reason."""

    item_id: str
    status: Literal["accepted", "rejected"]
    quantity: int | None = None
    reject_reason: str | None = None
    reject_reason_text: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("accepted", "rejected"):
            raise ValueError(f"item status must be accepted or rejected, got {self.status!r}")
        if self.quantity is not None and self.quantity < 0:
            raise ValueError(f"quantity must not be negative, got {self.quantity}")

    def to_wire(self) -> dict[str, Any]:
        """The item as Reveni takes it (absent values are left out)."""
        body: dict[str, Any] = {"item_id": self.item_id, "status": self.status}
        for key in ("quantity", "reject_reason", "reject_reason_text"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return body


class ReveniClient(AsyncClient[ReveniTransport]):
    """Async client of one Reveni store (`/merchants/v0/stores/{store_id}/...`).

    Use as `async with settings.reveni.client() as reveni: ...` (`ReveniSettings.client`, whose
    hooks are every connector's: `http_transport`, `sleep`, `rng`, `timeout_seconds`; see
    docs/architecture.md#connectors) or `ReveniClient(base_url, api_key, store_id)`; one httpx
    client per instance. `http_transport` replaces the HTTP transport (tests); `sleep` the wait
    between retries (tests pass one that does not really sleep); `rng` the backoff's jitter.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr,
        store_id: str,
        *,
        inferred: ReveniInferred = DEFAULT_REVENI_INFERRED,
        timeout_seconds: float = 10.0,
        read_retries: int = 4,
        http_transport: httpx.AsyncBaseTransport | None = None,
        page_size: int | None = None,
        backoff_seconds: float = 0.25,
        max_retry_after_seconds: float = 60.0,
        not_found_retries: int = 3,
        not_found_delay_seconds: float = 0.5,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ) -> None:
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self.store_id = store_id
        self.inferred = inferred
        self.page_size = self._checked_page_size(page_size or inferred.page_size_max)
        self.not_found_retries = not_found_retries
        self.not_found_delay_seconds = not_found_delay_seconds
        self._context = wire_context(inferred)
        self._transport = ReveniTransport(
            base_url=base_url,
            api_key=key,
            store_id=store_id,
            inferred=inferred,
            timeout_seconds=timeout_seconds,
            read_retries=read_retries,
            backoff_seconds=backoff_seconds,
            max_retry_after_seconds=max_retry_after_seconds,
            sleep=sleep,
            rng=rng,
            http_transport=http_transport,
        )

    # -- counters (for the run summary and the benchmark) -------------------------------------

    @property
    def requests(self) -> int:
        """HTTP requests sent to Reveni, retries included."""
        return self._transport.requests

    @property
    def retries(self) -> int:
        """Reads sent again after a transient failure or a 429."""
        return self._transport.retries

    @property
    def rate_limited(self) -> int:
        """How many 429 answers this client received."""
        return self._transport.rate_limited

    # -- returns ------------------------------------------------------------------------------

    async def get_return(self, return_id: str) -> Return:
        """One return (`GET returns/{id}` [R-OBS S4]); `ReveniNotFound` when Reveni has none."""
        raw = await self._transport.read(
            RETURN_PATH.format(return_id=path_segment(return_id)), name="get_return"
        )
        return self._parse_return(raw, "return")

    async def list_returns(
        self,
        *,
        status: str | Iterable[str] | None = None,
        transaction_type: str | None = None,
        updated_from: datetime | date | None = None,
        updated_to: datetime | date | None = None,
        created_from: datetime | date | None = None,
        created_to: datetime | date | None = None,
        search: str | None = None,
        page: int = 1,
        page_size: int | None = None,
    ) -> ReturnPage:
        """One page of `GET returns` (filters' meaning [R-DOC S5], names [INFER]).

        `status`: one of our status names or several (sent comma-separated, in Reveni's casing);
        `transaction_type`: `refund` or `exchange`; dates per `inferred.date_filter_precision`
        (`_from` and `_to` inclusive); `page` is 1-based; `page_size` defaults to Reveni's.
        """
        if page < 1:
            raise ValueError(f"page must be at least 1, got {page}")
        inf = self.inferred
        statuses = [status] if isinstance(status, str) else list(status or [])
        params: dict[str, str | int | None] = {
            inf.param_status: (
                ",".join(status_to_wire(s, inf) for s in statuses) if statuses else None
            ),
            inf.param_transaction_type: (
                transaction_type_to_wire(transaction_type, inf) if transaction_type else None
            ),
            inf.param_updated_from: self._date_param(updated_from, "from"),
            inf.param_updated_to: self._date_param(updated_to, "to"),
            inf.param_created_from: self._date_param(created_from, "from"),
            inf.param_created_to: self._date_param(created_to, "to"),
            inf.param_search: search,
            inf.param_page: page,
            inf.param_page_size: (
                None if page_size is None else self._checked_page_size(page_size)
            ),
        }
        body = await self._transport.read(inf.returns_list_path, name="list_returns", params=params)
        return self._parse_page(body)

    async def iter_returns(
        self,
        *,
        status: str | Iterable[str] | None = None,
        transaction_type: str | None = None,
        updated_from: datetime | date | None = None,
        updated_to: datetime | date | None = None,
        created_from: datetime | date | None = None,
        created_to: datetime | date | None = None,
        search: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Return]:
        """Every return matching the filters, page after page.

        Plain page numbers: a return that changes while this runs moves to the end of the list
        and can make the walk skip one or show one twice. Use `changed_since` to sync."""
        size = page_size or self.page_size
        page = 1
        previous: list[str] | None = None
        while True:
            try:
                result = await self.list_returns(
                    status=status,
                    transaction_type=transaction_type,
                    updated_from=updated_from,
                    updated_to=updated_to,
                    created_from=created_from,
                    created_to=created_to,
                    search=search,
                    page=page,
                    page_size=size,
                )
            except ReveniNotFound:
                if page == 1:
                    raise
                return  # "Invalid page.": the list shrank while we read it
            ids = [item.id for item in result.items]
            if page > 1 and ids and ids == previous:
                raise ReveniQueryError(f"list returns: page {page} repeated page {page - 1}")
            for item in result.items:
                yield item
            if result.next is None or not ids:
                return
            previous = ids
            page += 1

    async def changed_since(
        self,
        since: datetime,
        *,
        page_size: int | None = None,
        max_passes: int = 4,
        max_requests: int = 10_000,
    ) -> ChangedReturns:
        """Every return with `updated_at >= since`, each once in its latest-seen version, even
        while returns change during the walk (pagination.py explains how). Store the answer's
        `high_water` as the cursor and pass it back next time. If the list keeps changing through
        `max_passes` walks the answer is partial (`complete` False) with a cursor that re-reads
        what may have slid past; `ReveniError` only after `max_requests` list requests."""
        size = self._checked_page_size(page_size or self.page_size)
        before = self.requests

        async def fetch(updated_from: datetime, page: int, page_size: int) -> ReturnPage:
            return await self.list_returns(
                updated_from=updated_from, page=page, page_size=page_size
            )

        result = await changed_since(
            fetch,
            since,
            inferred=self.inferred,
            page_size=size,
            max_passes=max_passes,
            max_requests=max_requests,
        )
        return replace(result, requests=self.requests - before)

    async def fetch_for_event(
        self, event: WebhookEvent, *, not_found_retries: int | None = None
    ) -> Return | None:
        """The receiver rule [R-OBS S4]: fetch `data.resource_id` back and trust nothing else of
        the payload. Reads may lag the webhook, so a 404 is retried `not_found_retries` times
        (the client's setting unless given; waits doubling from `not_found_delay_seconds`);
        still missing: None.

        The fetched status may also lag or lead the event's; the return as read is what counts
        (an out-of-order event is older than the truth), and the periodic `changed_since` poll
        catches a later change whose webhook never came."""
        retries = self.not_found_retries if not_found_retries is None else not_found_retries
        for attempt in range(retries + 1):
            try:
                return await self.get_return(event.data.resource_id)
            except ReveniNotFound:
                if attempt == retries:
                    return None
                await self._transport.sleep(self.not_found_delay_seconds * 2**attempt)
        return None  # pragma: no cover - the loop always returns

    async def partial_validate(
        self, return_id: str, items: Sequence[ItemDecision | Mapping[str, Any]]
    ) -> Return:
        """Accept or reject items of a return (`POST returns/{id}/partial_validate` [R-OBS S4]);
        the updated return. Sent once: `ReveniRejected` (nothing changed), `ReveniNotFound`, or
        `ReveniInDoubt` (read the return back to see whether the decisions landed)."""
        decisions = [i if isinstance(i, ItemDecision) else ItemDecision(**i) for i in items]
        if not decisions:
            raise ValueError("partial_validate needs at least one item")
        summary = {
            "return_id": return_id,
            "items": [
                {"item_id": d.item_id, "status": d.status, "quantity": d.quantity}
                for d in decisions
            ],
        }
        raw = await self._transport.write(
            "POST",
            PARTIAL_VALIDATE_PATH.format(return_id=path_segment(return_id)),
            name="partial_validate",
            json_body={"items": [d.to_wire() for d in decisions]},
            summary=summary,
        )
        try:
            return self._parse_return(raw, "partial_validate")
        except ReveniQueryError as exc:
            raise ReveniInDoubt(
                "partial_validate", summary, f"accepted, answer unreadable: {exc}"
            ) from None

    # -- webhooks -----------------------------------------------------------------------------

    async def create_webhook(self, url: str, event_types: Iterable[str]) -> WebhookSubscription:
        """Subscribe `url` to `event_types` (`POST webhooks` [R-OBS S4]). Sent once; prefer
        `ensure_webhook`, which does not subscribe twice and resolves an in-doubt create."""
        types = _event_types(event_types)
        summary = {"url": url, "event_types": types}
        raw = await self._transport.write(
            "POST",
            WEBHOOKS_PATH,
            name="create_webhook",
            json_body={"event_types": types, "url": url},
            summary=summary,
        )
        try:
            return self._parse(WebhookSubscription, raw, "webhook")
        except ReveniQueryError as exc:
            raise ReveniInDoubt(
                "create_webhook", summary, f"accepted, answer unreadable: {exc}"
            ) from None

    async def list_webhooks(self) -> list[WebhookSubscription]:
        """The store's subscriptions (`GET webhooks` [INFER])."""
        raw = await self._transport.read(WEBHOOKS_PATH, name="list_webhooks")
        return [
            self._parse(WebhookSubscription, item, where)
            for where, item in self._entries(raw, "webhooks")
        ]

    async def delete_webhook(self, webhook_id: str) -> None:
        """Unsubscribe (`DELETE webhooks/{id}` [R-OBS S4]); `ReveniNotFound` when it is gone."""
        await self._transport.write(
            "DELETE",
            WEBHOOK_PATH.format(webhook_id=path_segment(webhook_id)),
            name="delete_webhook",
            summary={"webhook_id": webhook_id},
        )

    async def ensure_webhook(self, url: str, event_types: Iterable[str]) -> WebhookSubscription:
        """A subscription of `url` to exactly `event_types`: an existing one is reused, else one
        is created. A create whose outcome is unknown is resolved by listing again."""
        types = _event_types(event_types)
        existing = _matching(await self.list_webhooks(), url, types)
        if existing is not None:
            return existing
        try:
            return await self.create_webhook(url, types)
        except ReveniInDoubt:
            existing = _matching(await self.list_webhooks(), url, types)
            if existing is None:
                raise
            return existing

    # -- merchant and invoices ----------------------------------------------------------------

    async def merchant(self) -> Merchant:
        """Store and merchant info [R-DOC S5 fields; path INFER]."""
        raw = await self._transport.read(self.inferred.merchant_path, name="merchant")
        return self._parse(Merchant, raw, "merchant")

    async def invoices(self, period: str) -> list[Invoice]:
        """The invoices of billing period `period` (`YYYY-MM`) [INFER: no invoice API is
        documented]."""
        if not _PERIOD.match(period):
            raise ValueError(f"period must look like YYYY-MM, got {period!r}")
        raw = await self._transport.read(
            self.inferred.invoices_path,
            name="invoices",
            params={self.inferred.param_invoice_period: period},
        )
        return [self._parse(Invoice, item, where) for where, item in self._entries(raw, "invoices")]

    async def invoice(self, invoice_id: str) -> Invoice:
        """One invoice by id [INFER]."""
        raw = await self._transport.read(
            f"{self.inferred.invoices_path}/{path_segment(invoice_id)}", name="invoice"
        )
        return self._parse(Invoice, raw, "invoice")

    # -- reading answers ----------------------------------------------------------------------

    def _checked_page_size(self, size: int) -> int:
        if not 1 <= size <= self.inferred.page_size_max:
            raise ValueError(
                f"page_size must be between 1 and {self.inferred.page_size_max}, got {size}"
            )
        return size

    def _date_param(
        self, value: datetime | date | None, bound: Literal["from", "to"]
    ) -> str | None:
        return None if value is None else format_filter_value(value, self.inferred, bound=bound)

    def _parse(self, model: type[M], raw: Any, where: str) -> M:
        try:
            return model.model_validate(raw, context=self._context)
        except ValidationError as exc:
            # Where and what, never the input: it holds customer data that must not reach a log.
            errors = exc.errors(include_url=False, include_input=False)
            paths = [".".join([where, *(str(p) for p in e["loc"])]) for e in errors]
            problems = "; ".join(f"{p}: {e['msg']}" for p, e in zip(paths, errors, strict=True))
            raise ReveniQueryError(
                f"{where}: response does not match {model.__name__}: {problems}", path=paths[0]
            ) from None

    def _parse_return(self, raw: Any, where: str) -> Return:
        return self._parse(Return, normalise_return(raw, self.inferred), where)

    def _parse_page(self, body: Any) -> ReturnPage:
        inf = self.inferred
        if not isinstance(body, dict):
            raise ReveniQueryError(
                f"list returns: expected an object envelope, got {type(body).__name__}"
            )
        items = body.get(inf.envelope_items_key)
        if not isinstance(items, list):
            raise ReveniQueryError(
                f"list returns: `{inf.envelope_items_key}` is missing or not a list",
                path=inf.envelope_items_key,
            )
        count = body.get(inf.envelope_count_key)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ReveniQueryError(
                f"list returns: `{inf.envelope_count_key}` is missing or not a count",
                path=inf.envelope_count_key,
            )
        if inf.envelope_next_key not in body:
            raise ReveniQueryError(
                f"list returns: `{inf.envelope_next_key}` is missing", path=inf.envelope_next_key
            )
        links: dict[str, str | None] = {}
        for key in (inf.envelope_next_key, inf.envelope_previous_key):
            link = body.get(key)
            if link is not None and not isinstance(link, str):
                raise ReveniQueryError(f"list returns: `{key}` is not a URL", path=key)
            links[key] = link
        parsed: list[Return] = []
        rejected: list[RejectedRow] = []
        for index, item in enumerate(items):
            where = f"{inf.envelope_items_key}.{index}"
            try:
                parsed.append(self._parse_return(item, where))
            except ReveniQueryError as exc:
                # One bad row must not hide the rest of the page: skip it and say so.
                rejected.append(_rejected_row(item, where, str(exc), exc.path))
        return ReturnPage(
            items=parsed,
            count=count,
            next=links[inf.envelope_next_key],
            previous=links[inf.envelope_previous_key],
            rejected=rejected,
        )

    def _entries(self, raw: Any, what: str) -> list[tuple[str, Any]]:
        """The entries of a list answer: a plain JSON list, or the list envelope [INFER]."""
        key = self.inferred.envelope_items_key
        if isinstance(raw, dict) and isinstance(raw.get(key), list):
            return [(f"{key}.{i}", item) for i, item in enumerate(raw[key])]
        if isinstance(raw, list):
            return [(f"{what}.{i}", item) for i, item in enumerate(raw)]
        raise ReveniQueryError(f"{what}: expected a list, got {type(raw).__name__}")


def _rejected_row(raw: Any, path: str, error: str, field: str | None) -> RejectedRow:
    """What can be read of a row that is not a valid return (its id and `updated_at`)."""
    return_id = raw.get("id") if isinstance(raw, dict) else None
    updated = raw.get("updated_at") if isinstance(raw, dict) else None
    moment: datetime | None = None
    if isinstance(updated, str):
        try:
            moment = datetime.fromisoformat(updated.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is None:
            moment = None
    return RejectedRow(
        path=path,
        return_id=return_id if isinstance(return_id, str) and return_id else None,
        updated_at=None if moment is None else moment.astimezone(UTC),
        error=error,
        field=field,
    )


def _event_types(event_types: Iterable[str]) -> list[str]:
    types = list(dict.fromkeys(event_types))
    unknown = [t for t in types if t not in EVENT_TYPES]
    if not types or unknown:
        raise ValueError(f"event_types must be a non-empty subset of {list(EVENT_TYPES)}")
    return types


def _matching(
    subscriptions: Iterable[WebhookSubscription], url: str, types: Sequence[str]
) -> WebhookSubscription | None:
    return next(
        (s for s in subscriptions if s.url == url and set(s.event_types) == set(types)), None
    )
