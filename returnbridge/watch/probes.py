"""The cheap authenticated reads that tell whether Centra and Reveni take our credentials.

- Centra: the `rateLimits` GraphQL query (the Integration API token) and one row of the Order
  API's `GET /returns` (the Order API secret, which the refunds use): the smallest reads each
  credential allows.
- Reveni: one return of the returns listing (the API key and store id), the call the sync lives
  on.

The answer is a `checks.Probe`: `ok` (also when only rate-limited: a 429 means the credentials
were accepted), `auth_failed` naming the setting that was refused, or `unreachable` (a network
error, timeout, 5xx after the client's retries, or an answer that could not be read). The
clients' own error kinds (`returnbridge.connectors.errors`) decide which.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from returnbridge.connectors.centra.client import CentraClient
from returnbridge.connectors.errors import ApiError, AuthError, RateLimitedError
from returnbridge.connectors.reveni.client import ReveniClient
from returnbridge.connectors.reveni.errors import ReveniNotFound
from returnbridge.watch.checks import Probe


async def probe_centra(centra: CentraClient) -> Probe:
    """Both Centra credentials: the Integration API token, then the Order API secret."""
    token = await _probe(
        "centra",
        "RETURNBRIDGE_CENTRA__TOKEN",
        "GraphQL rateLimits",
        centra.rate_limits,
    )
    if token.status != "ok":
        return token
    return await _probe(
        "centra",
        "RETURNBRIDGE_CENTRA__ORDER_API_SECRET",
        "Order API GET /returns",
        lambda: centra.list_returns_rest(limit=1),
    )


async def probe_reveni(reveni: ReveniClient) -> Probe:
    """The Reveni API key and store id: one return of the listing. A 404 there means the store
    is not this key's (Reveni may answer a wrong store so), a credential problem too."""

    async def listing() -> None:
        try:
            await reveni.list_returns(page_size=1)
        except ReveniNotFound as exc:
            raise _StoreNotFound(f"store {reveni.store_id!r} not found: {exc}") from exc

    return await _probe(
        "reveni",
        "RETURNBRIDGE_REVENI__API_KEY / RETURNBRIDGE_REVENI__STORE_ID",
        "GET returns",
        listing,
    )


class _StoreNotFound(AuthError):
    """Reveni answered 404 for the store's own listing."""


async def _probe(
    system: str, credential: str, call: str, read: Callable[[], Awaitable[Any]]
) -> Probe:
    try:
        await read()
    except AuthError as exc:
        return Probe(system, "auth_failed", f"{call}: {_one_line(exc)}", credential)
    except RateLimitedError:
        return Probe(system, "ok", f"{call}: rate-limited (the credentials were accepted)")
    except ApiError as exc:
        return Probe(system, "unreachable", f"{call}: {_one_line(exc)}")
    except OSError as exc:  # below the client's own errors (a socket the transport let through)
        return Probe(system, "unreachable", f"{call}: {type(exc).__name__}: {exc}")
    return Probe(system, "ok", f"{call}: answered")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"
