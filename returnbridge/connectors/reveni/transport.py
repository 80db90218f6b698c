"""HTTP to Reveni's merchant API: send, classify the outcome, retry reads; never retry writes.

Every resource lives under `/merchants/v0/stores/{store_id}/` and takes `Authorization: Bearer
<key>` [R-DOC S1, R-OBS S4]. Only 200 and 201 are success [R-OBS S4] (204 too on DELETE).

The classification is the point of this module. Reveni documents no idempotency keys, so:
- a read (GET) that failed transiently (5xx, a refused connection, a timeout, a dropped
  connection) is retried with exponential backoff and jitter; a 429 is retried after its
  Retry-After (when that is short enough to wait in-process);
- a write is sent once. If it failed before any byte could reach Reveni (connection refused,
  connect timeout, no pooled connection) it is `ReveniTransient`, safe to send again. If it may have
  reached Reveni (timeout or disconnect after sending, a 5xx, an unexpected or unreadable answer)
  it is `ReveniInDoubt`, resolved by reading back;
- 401/403 are `ReveniAuthError`, 404 `ReveniNotFound`, any other 4xx `ReveniRejected` with
  Reveni's detail (`inferred.error_detail_key`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from returnbridge.connectors.errors import parse_retry_after
from returnbridge.connectors.reveni.errors import (
    ReveniAuthError,
    ReveniError,
    ReveniInDoubt,
    ReveniNotFound,
    ReveniQueryError,
    ReveniRateLimited,
    ReveniRejected,
    ReveniTransient,
)
from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.connectors.reveni.wire import API_PREFIX, SUCCESS_STATUSES

log = logging.getLogger(__name__)

USER_AGENT = "returnbridge/0.1 (+reveni-client)"
DEFAULT_RETRY_AFTER_SECONDS = 1.0

Sleep = Callable[[float], Awaitable[None]]

# Failures that happen before the request could have left this process.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures caused by what we built (bad URL, invalid header): our bug, retrying cannot help.
_OUR_BUG = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


def decode_json(content: bytes) -> Any:
    """A JSON body with every number that has a fraction decoded as Decimal (money)."""
    return json.loads(content, parse_float=Decimal)


def path_segment(value: str) -> str:
    """`value` quoted for use as one path segment (an id can never add a `/` or `..`)."""
    return quote(value, safe="")


class ReveniTransport:
    """One httpx client bound to one store, with Reveni's retry policy."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        store_id: str,
        inferred: ReveniInferred,
        timeout_seconds: float,
        read_retries: int,
        backoff_seconds: float = 0.25,
        backoff_max_seconds: float = 8.0,
        max_retry_after_seconds: float = 60.0,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if read_retries < 0:
            raise ValueError(f"read_retries must be >= 0, got {read_retries}")
        self.store_url = base_url.rstrip("/") + API_PREFIX.format(store_id=path_segment(store_id))
        self.inferred = inferred
        self.read_retries = read_retries
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.max_retry_after_seconds = max_retry_after_seconds
        self.sleep: Sleep = sleep or asyncio.sleep
        self._rng = rng or random.Random()
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Content-Type": "application/json",
                "Authorization": f"Bearer {api_key}",
            },
            transport=http_transport,
        )
        self.requests = 0
        self.retries = 0
        self.rate_limited = 0

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    def url(self, path: str) -> str:
        """The absolute URL of `path` (relative to the store prefix)."""
        return f"{self.store_url}/{path.lstrip('/')}"

    # -- reads --------------------------------------------------------------------------------

    async def read(
        self, path: str, *, name: str, params: Mapping[str, str | int | None] | None = None
    ) -> Any:
        """The decoded JSON of `GET path`, retried on transient failures and short 429s."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        failures = 0
        while True:
            try:
                return await self._send("GET", path, name=name, params=query, write=False)
            except ReveniRateLimited as exc:
                if failures >= self.read_retries or exc.retry_after > self.max_retry_after_seconds:
                    raise
                delay = exc.retry_after
            except ReveniTransient as exc:
                if failures >= self.read_retries:
                    raise
                delay = self._backoff(failures)
                log.warning("%s failed (%s); retry %d in %.2fs", name, exc, failures + 1, delay)
            failures += 1
            self.retries += 1
            await self.sleep(delay)

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, capped."""
        ceiling = min(self.backoff_max_seconds, self.backoff_seconds * (2**failures))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    # -- writes -------------------------------------------------------------------------------

    async def write(
        self,
        method: str,
        path: str,
        *,
        name: str,
        json_body: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> Any:
        """The decoded JSON of one write (None for an empty 204), sent exactly once.

        `summary` describes the request for `ReveniInDoubt` (ids, never customer data)."""
        return await self._send(
            method, path, name=name, body=json_body, write=True, summary=summary
        )

    # -- one request --------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        name: str,
        write: bool,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> Any:
        self.requests += 1
        try:
            response = await self._http.request(
                method,
                self.url(path),
                params=dict(params or {}),
                content=None if body is None else json.dumps(body, default=str).encode(),
            )
        except httpx.HTTPError as exc:
            raise self._transport_failure(name, write, exc, summary) from exc
        self._raise_for_status(name, write, response, summary, delete=method == "DELETE")
        if not response.content:  # a 204, or an empty 200/201
            if write:
                return None
            raise ReveniQueryError(f"{name}: empty response body")
        try:
            return decode_json(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            if write:  # Reveni answered, so it received the write; what it did is unknown.
                raise ReveniInDoubt(name, summary, f"unreadable response: {exc}") from None
            raise ReveniQueryError(f"{name}: response is not JSON ({exc})") from None

    def _transport_failure(
        self, name: str, write: bool, exc: httpx.HTTPError, summary: Mapping[str, Any] | None
    ) -> ReveniError:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, _OUR_BUG):
            return ReveniQueryError(f"{name}: request could not be built ({detail})")
        if isinstance(exc, _NOT_SENT):
            return ReveniTransient(f"{name}: not sent ({detail})")
        if write:
            return ReveniInDoubt(name, summary, detail)
        return ReveniTransient(f"{name}: {detail}")

    def _raise_for_status(
        self,
        name: str,
        write: bool,
        response: httpx.Response,
        summary: Mapping[str, Any] | None,
        *,
        delete: bool,
    ) -> None:
        status = response.status_code
        if status in SUCCESS_STATUSES or (delete and status == 204):
            return
        if status == 429:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            wait = DEFAULT_RETRY_AFTER_SECONDS if wait is None else wait
            self.rate_limited += 1
            raise ReveniRateLimited(f"{name}: rate limited, retry after {wait:.2f}s", wait)
        if status >= 500:
            if write:
                raise ReveniInDoubt(name, summary, f"HTTP {status} after sending")
            raise ReveniTransient(f"{name}: HTTP {status}")
        detail = self._detail(response)
        if status in (401, 403):
            raise ReveniAuthError(
                f"{name}: API key refused for this store (HTTP {status}): {detail}", status=status
            )
        if status == 404:
            raise ReveniNotFound(f"{name}: not found: {detail}", operation=name, detail=detail)
        if 400 <= status < 500:
            raise ReveniRejected(
                f"{name}: rejected (HTTP {status}): {detail}",
                operation=name,
                status=status,
                detail=detail,
            )
        # 1xx, 3xx, and 2xx other than 200/201: not success [R-OBS S4].
        if write:
            raise ReveniInDoubt(name, summary, f"unexpected HTTP {status}")
        raise ReveniQueryError(f"{name}: unexpected HTTP {status}")

    def _detail(self, response: httpx.Response) -> str:
        """Reveni's explanation of an error (`{detail: ...}` by default), or the start of the
        body when it has another shape."""
        try:
            body = decode_json(response.content)
        except (ValueError, UnicodeDecodeError):
            return response.text[:300]
        if isinstance(body, dict) and self.inferred.error_detail_key in body:
            detail = body[self.inferred.error_detail_key]
            return detail if isinstance(detail, str) else json.dumps(detail, default=str)[:300]
        return json.dumps(body, default=str)[:300]
