"""HTTP to Centra: budget, send, classify the outcome, retry reads; never retry writes.

Both APIs go through here: the GraphQL Integration API (`POST /graphql`, `Authorization: Bearer`)
and the REST Order API (`API-Authorization: <secret>`), which is still needed for refunds and order
creation ([C] [OA-*]).

The classification is the point of this module. Centra has no idempotency keys, so:
- a read that failed transiently is retried with exponential backoff and jitter;
- a write is sent once. If it failed before any byte could reach Centra (connection refused,
  connect timeout, no pooled connection) it is `CentraTransient`, safe to send again. If it may
  have reached Centra (timeout or disconnect after sending, a 5xx, an unreadable 200, a GraphQL
  error raised while executing it) it is `CentraInDoubt`, resolved by reading back;
- a 429 (nothing executed) pauses the shared governor for Retry-After, so every caller waits.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

import httpx

from returnbridge.connectors.centra.complexity import estimate_complexity
from returnbridge.connectors.centra.documents import Operation
from returnbridge.connectors.centra.errors import (
    CentraAuthError,
    CentraError,
    CentraInDoubt,
    CentraQueryError,
    CentraRateLimited,
    CentraRejected,
    CentraTransient,
    UserError,
    parse_retry_after,
)
from returnbridge.connectors.centra.governor import Governor
from returnbridge.connectors.centra.inferred import CentraInferred

log = logging.getLogger(__name__)

USER_AGENT = "returnbridge/0.1 (+centra-client)"
# An injected wait (the `sleep` hook): `asyncio.sleep`'s shape.
Sleep = Callable[[float], Awaitable[None]]
DEFAULT_RETRY_AFTER_SECONDS = 1.0
# Centra's longest rate-limit window is one hour ([C]): every bucket has refilled by then. A
# Retry-After further out is a skewed clock or a unit mix-up (a millisecond timestamp reads as
# millennia) and must not freeze every caller of the shared governor.
MAX_RETRY_AFTER_SECONDS = 3600.0

# Failures that happen before the request could have left this process.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures caused by what we built (bad URL, invalid header): our bug, retrying cannot help.
_OUR_BUG = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


def _decode(response: httpx.Response) -> Any:
    """The JSON body, with every JSON number that has a fraction decoded as Decimal (money)."""
    return json.loads(response.content, parse_float=Decimal)


def _summary(name: str, payload: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"operation": name, "variables": dict(payload or {})}


class CentraTransport:
    """One httpx client plus the governor and the retry policy, shared by both Centra APIs."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        order_api_secret: str,
        order_api_base_path: str,
        governor: Governor,
        inferred: CentraInferred,
        timeout_seconds: float,
        read_retries: int,
        backoff_seconds: float = 0.25,
        backoff_max_seconds: float = 8.0,
        rng: random.Random | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.graphql_url = f"{self.base_url}/graphql"
        self.order_api_url = f"{self.base_url}/{order_api_base_path.strip('/')}"
        self.governor = governor
        self.inferred = inferred
        self.read_retries = read_retries
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._rng = rng or random.Random()
        # The wait between read retries; None: the governor's clock (which tests often fake).
        self._sleep = sleep
        self._token = token
        self._order_api_secret = order_api_secret
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=http_transport,
        )
        self.requests_sent = 0
        self.mutations_sent = 0
        self.rest_requests_sent = 0
        self.retries = 0
        self.rate_limited = 0
        self.complexity_reported = 0
        # Complexity Centra actually charged, by operation and page sizes: preferred over the
        # [INF] estimate once known, so a different real formula is budgeted correctly.
        self._observed_cost: dict[tuple[str, tuple[Any, ...]], int] = {}

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    # -- GraphQL ------------------------------------------------------------------------------

    async def graphql(self, operation: Operation, variables: Mapping[str, Any]) -> dict[str, Any]:
        """`data` of one operation; for a mutation, its payload (userErrors already raised)."""
        if operation.is_mutation:
            return await self._graphql_once(operation, variables)
        return await self._with_read_retries(
            operation.name, lambda: self._graphql_once(operation, variables)
        )

    async def _graphql_once(
        self, operation: Operation, variables: Mapping[str, Any]
    ) -> dict[str, Any]:
        write = operation.is_mutation
        cost_key = (operation.name, tuple(variables.get(k) for k in ("limit", "first", "last")))
        reserved = self._observed_cost.get(cost_key)
        if reserved is None:
            reserved = estimate_complexity(operation, variables, self.inferred)
        await self.governor.acquire(mutation=write, complexity=reserved)
        self.requests_sent += 1
        self.mutations_sent += int(write)
        body = {
            "query": operation.text,
            "variables": dict(variables),
            "operationName": operation.name,
        }
        try:
            response = await self._http.post(
                self.graphql_url, json=body, headers={"Authorization": f"Bearer {self._token}"}
            )
        except httpx.HTTPError as exc:
            raise self._transport_failure(operation.name, variables, write, exc) from exc
        self._raise_for_status(operation.name, variables, write, response, rest=False)
        try:
            envelope = _decode(response)
            errors = envelope.get("errors")
            data = envelope.get("data")
        except (ValueError, AttributeError) as exc:
            raise self._unreadable(operation.name, variables, write, str(exc)) from exc
        self._learn_cost(cost_key, reserved, envelope.get("extensions"))
        if errors:
            failure = _graphql_errors(operation.name, errors)
            if write and _executed(envelope, errors) and not isinstance(failure, CentraAuthError):
                # Centra began executing the mutation and then failed (a field error): it may
                # have changed something, and nothing in the answer says what.
                raise CentraInDoubt(
                    operation.name, _summary(operation.name, variables), f"GraphQL error: {failure}"
                ) from failure
            raise failure
        if not isinstance(data, dict):
            raise self._unreadable(operation.name, variables, write, "no `data` in the response")
        if not write:
            return data
        payload = next(iter(data.values()), None)
        if not isinstance(payload, dict):
            raise self._unreadable(operation.name, variables, write, "mutation returned no payload")
        user_errors = [UserError.from_wire(e) for e in payload.get("userErrors") or []]
        if user_errors:
            raise CentraRejected(
                f"{operation.name} rejected: " + "; ".join(str(e) for e in user_errors),
                operation=operation.name,
                user_errors=user_errors,
            )
        return payload

    def _learn_cost(self, key: tuple[str, tuple[Any, ...]], reserved: int, extensions: Any) -> None:
        reported = extensions.get("complexity") if isinstance(extensions, dict) else None
        if isinstance(reported, bool) or not isinstance(reported, int | Decimal):
            return
        cost = int(reported)
        self.complexity_reported += cost
        self._observed_cost[key] = cost
        self.governor.charge(cost - reserved)

    # -- REST Order API -----------------------------------------------------------------------

    async def rest(
        self,
        method: str,
        path: str,
        *,
        name: str,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The JSON body of one Order API call; GET is retried like a read, others never."""
        write = method.upper() != "GET"
        if write:
            return await self._rest_once(method, path, name, json_body, params, write)
        return await self._with_read_retries(
            name, lambda: self._rest_once(method, path, name, json_body, params, write)
        )

    async def _rest_once(
        self,
        method: str,
        path: str,
        name: str,
        json_body: Mapping[str, Any] | None,
        params: Mapping[str, Any] | None,
        write: bool,
    ) -> dict[str, Any]:
        # The Order API is a separate plugin; its calls are governed as plain requests so that a
        # burst of refunds cannot crowd out the Integration API budget either. [INF]
        await self.governor.acquire(mutation=False)
        self.rest_requests_sent += 1
        summary_payload = dict(json_body or {}) | {"params": dict(params or {})}
        try:
            response = await self._http.request(
                method.upper(),
                f"{self.order_api_url}/{path.lstrip('/')}",
                json=dict(json_body) if json_body is not None else None,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers={"API-Authorization": self._order_api_secret},
            )
        except httpx.HTTPError as exc:
            raise self._transport_failure(name, summary_payload, write, exc) from exc
        body: Any = None
        try:
            body = _decode(response)
        except ValueError:
            body = None
        status = response.status_code
        business_error = status < 500 and status not in (401, 403, 429)
        if business_error and isinstance(body, dict) and body.get("status") == "no":
            # Centra's docs show `code` [C]; `errorCode` is accepted too, in case it differs.
            code = body.get("code", body.get("errorCode"))
            raise CentraRejected(
                f"{name} rejected (code {code}): {body.get('msg', '')}",
                operation=name,
                user_errors=[UserError(str(body.get("msg", "")))],
                error_code=_int_or_none(code),
            )
        self._raise_for_status(name, summary_payload, write, response, rest=True)
        if not isinstance(body, dict):
            raise self._unreadable(name, summary_payload, write, "response is not a JSON object")
        return body

    # -- classification -----------------------------------------------------------------------

    def _transport_failure(
        self, name: str, payload: Mapping[str, Any], write: bool, exc: httpx.HTTPError
    ) -> CentraError:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, _OUR_BUG):
            return CentraQueryError(f"{name}: request could not be built ({detail})")
        if isinstance(exc, _NOT_SENT):
            return CentraTransient(f"{name}: not sent ({detail})")
        if write:
            return CentraInDoubt(name, _summary(name, payload), detail)
        return CentraTransient(f"{name}: {detail}")

    def _unreadable(
        self, name: str, payload: Mapping[str, Any], write: bool, why: str
    ) -> CentraError:
        if write:  # Centra answered, so it received the write; what it did is unknown.
            return CentraInDoubt(name, _summary(name, payload), f"unreadable response: {why}")
        return CentraTransient(f"{name}: unreadable response: {why}")

    def _raise_for_status(
        self,
        name: str,
        payload: Mapping[str, Any],
        write: bool,
        response: httpx.Response,
        *,
        rest: bool,
    ) -> None:
        status = response.status_code
        if status == 200 or (rest and 200 <= status < 300):
            return
        if status == 429:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            wait = DEFAULT_RETRY_AFTER_SECONDS if wait is None else wait
            if wait > MAX_RETRY_AFTER_SECONDS:
                log.warning(
                    "%s: Retry-After of %.0fs capped at %.0fs", name, wait, MAX_RETRY_AFTER_SECONDS
                )
                wait = MAX_RETRY_AFTER_SECONDS
            self.governor.pause(wait)
            self.rate_limited += 1
            raise CentraRateLimited(f"{name}: rate limited, retry after {wait:.2f}s", wait)
        if status in (401, 403):
            raise CentraAuthError(f"{name}: credentials refused (HTTP {status})")
        if status >= 500:
            if write:
                raise CentraInDoubt(name, _summary(name, payload), f"HTTP {status} after sending")
            raise CentraTransient(f"{name}: HTTP {status}")
        errors: list[Mapping[str, Any]] = []
        try:
            body = _decode(response)
            if isinstance(body, dict) and isinstance(body.get("errors"), list):
                errors = body["errors"]
        except ValueError:
            pass
        messages = "; ".join(str(e.get("message", e)) for e in errors) or response.text[:300]
        raise CentraQueryError(f"{name}: HTTP {status}: {messages}", errors=errors)

    # -- retries ------------------------------------------------------------------------------

    async def _with_read_retries(
        self, name: str, attempt: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        failures = 0
        while True:
            try:
                return await attempt()
            except CentraRateLimited:
                # The governor is paused until Retry-After; the next acquire waits for it.
                if failures >= self.read_retries:
                    raise
            except CentraTransient as exc:
                if failures >= self.read_retries:
                    raise
                delay = self._backoff(failures)
                log.warning("%s failed (%s); retry %d in %.2fs", name, exc, failures + 1, delay)
                await (self._sleep or self.governor.clock.sleep)(delay)
            failures += 1
            self.retries += 1

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, capped."""
        ceiling = min(self.backoff_max_seconds, self.backoff_seconds * (2**failures))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _executed(envelope: Mapping[str, Any], errors: Any) -> bool:
    """Whether a GraphQL answer with `errors` comes from execution, not from a request error.

    The GraphQL spec: a request error (syntax, validation, variables) has no `data` entry and its
    errors no `path`; a field error during execution has a `path`, and `data` holds whatever was
    resolved, possibly the mutation's payload.
    """
    data = envelope.get("data")
    if isinstance(data, dict) and any(value is not None for value in data.values()):
        return True
    items = errors if isinstance(errors, list) else []
    return any(isinstance(e, dict) and e.get("path") for e in items)


def _graphql_errors(name: str, errors: Any) -> CentraError:
    items = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    messages = "; ".join(str(e.get("message", "")) for e in items) or str(errors)
    categories = {str((e.get("extensions") or {}).get("category", "")) for e in items}
    if "authorization" in categories:
        return CentraAuthError(f"{name}: missing permission: {messages}")
    return CentraQueryError(f"{name}: {messages}", errors=items)
