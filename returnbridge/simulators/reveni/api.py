"""The merchant REST API: `/merchants/v0/stores/{store_id}/...` (docs/reveni-simulator.md).

Paths, auth and the partial_validate / webhook bodies are [R-OBS S4]; list, merchant and invoice
paths, the error body `{"detail": ...}`, the wrong-store status and the list envelope are
[INFER] and come from `ReveniInferred`. Each request counts, draws its seeded faults (500 / 429
before anything is done), is authenticated, then handled under the simulator's lock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from returnbridge.connectors.reveni import wire
from returnbridge.connectors.reveni.inferred import ReveniInferred
from returnbridge.simulators.reveni.invoices import PeriodError
from returnbridge.simulators.reveni.listing import (
    FilterError,
    InvalidPage,
    page_of,
    parse_filter,
    parse_page,
)
from returnbridge.simulators.reveni.simulator import ReveniSimulator
from returnbridge.simulators.reveni.state import Decision, StateError, UnknownReturn
from returnbridge.simulators.reveni.views import merchant_view, return_view

Handler = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """An error answer: `status` with `{inferred.error_detail_key: detail}`."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


NOT_FOUND = "Not found."


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"JSON parse error - {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def merchant_api(sim: ReveniSimulator) -> Router:
    inferred = sim.inferred

    def error(exc: ApiError) -> Response:
        return JSONResponse(
            {inferred.error_detail_key: exc.detail}, status_code=exc.status, headers=exc.headers
        )

    def authenticate(request: Request) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise ApiError(
                401,
                "Authentication credentials were not provided.",
                {"WWW-Authenticate": "Bearer"},
            )
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or key.strip() != sim.api_key:
            raise ApiError(401, "Invalid token.", {"WWW-Authenticate": "Bearer"})
        if request.path_params.get("store_id") != sim.store_id:
            if inferred.wrong_store_status == 404:
                raise ApiError(404, NOT_FOUND)
            raise ApiError(403, "You do not have permission to perform this action.")

    def endpoint(name: str, handler: Handler, *, auth: bool = True) -> Handler:
        async def run(request: Request) -> Response:
            fault = sim.faults.draw_api()
            with sim.lock:
                sim.counters.requests += 1
                sim.counters.by_endpoint[name] += 1
            if fault.latency_seconds:
                await asyncio.sleep(fault.latency_seconds)
            try:
                if fault.error:
                    with sim.lock:
                        sim.counters.errors_5xx += 1
                    raise ApiError(500, "A server error occurred.")
                if fault.rate_limited:
                    with sim.lock:
                        sim.counters.rate_limited += 1
                    wait = fault.retry_after_seconds
                    raise ApiError(
                        429,
                        f"Request was throttled. Expected available in {wait} seconds.",
                        {"Retry-After": str(wait)},
                    )
                if auth:
                    authenticate(request)
                return await handler(request)
            except ApiError as exc:
                return error(exc)

        return run

    def route(path: str, methods: dict[str, Handler]) -> Route:
        """One path; each method counted as `METHOD path`; other methods 405."""
        name = path.lstrip("/")
        wrapped = {m: endpoint(f"{m} {name}", h) for m, h in methods.items()}

        async def dispatch(request: Request) -> Response:
            handler = wrapped.get(request.method)
            if handler is None:
                return error(ApiError(405, f'Method "{request.method}" not allowed.'))
            return await handler(request)

        return Route(path, dispatch, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])

    # ------------------------------------------------------------------ returns

    async def list_returns(request: Request) -> Response:
        params = request.query_params
        try:
            wanted = parse_filter(params, inferred)
            page = parse_page(params, inferred)
        except FilterError as exc:
            raise ApiError(400, str(exc)) from None
        except InvalidPage:
            raise ApiError(404, "Invalid page.") from None
        with sim.lock:
            rows = [r for r in sim.state.by_update() if wanted.matches(r)]
            try:
                shown, more = page_of(rows, page)
            except InvalidPage:
                raise ApiError(404, "Invalid page.") from None
            results = [return_view(r, sim.store_id, inferred) for r in shown]
        url = request.url
        next_url = str(url.include_query_params(**{inferred.param_page: page.page + 1}))
        if page.page == 2:
            previous_url: str | None = str(url.remove_query_params(inferred.param_page))
        elif page.page > 2:
            previous_url = str(url.include_query_params(**{inferred.param_page: page.page - 1}))
        else:
            previous_url = None
        return JSONResponse(
            {
                inferred.envelope_count_key: len(rows),
                inferred.envelope_next_key: next_url if more else None,
                inferred.envelope_previous_key: previous_url,
                inferred.envelope_items_key: results,
            }
        )

    async def get_return(request: Request) -> Response:
        with sim.lock:
            try:
                rec = sim.state.get(request.path_params["return_id"])
            except UnknownReturn:
                raise ApiError(404, NOT_FOUND) from None
            return JSONResponse(return_view(rec, sim.store_id, inferred))

    async def partial_validate(request: Request) -> Response:
        decisions = _decisions(await _json_object(request), inferred)
        with sim.lock:
            try:
                rec = sim.state.partial_validate(request.path_params["return_id"], decisions)
            except UnknownReturn:
                raise ApiError(404, NOT_FOUND) from None
            except StateError as exc:
                raise ApiError(400, str(exc)) from None
            return JSONResponse(return_view(rec, sim.store_id, inferred))

    # ------------------------------------------------------------------ webhooks

    async def create_webhook(request: Request) -> Response:
        body = await _json_object(request)
        url, event_types = body.get("url"), body.get("event_types")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ApiError(400, "url: expected an http(s) URL")
        if (
            not isinstance(event_types, list)
            or not event_types
            or not all(isinstance(e, str) for e in event_types)
        ):
            raise ApiError(
                400, f"event_types: expected a non-empty list of {list(wire.EVENT_TYPES)}"
            )
        unknown = [e for e in event_types if e not in wire.EVENT_TYPES]
        if unknown:
            raise ApiError(
                400, f"event_types: unknown {unknown}; expected some of {list(wire.EVENT_TYPES)}"
            )
        sub = sim.webhooks.subscribe(url, list(dict.fromkeys(event_types)), sim.clock.now())
        return JSONResponse(sub.view(), status_code=201)

    async def list_webhooks(request: Request) -> Response:
        return JSONResponse([sub.view() for sub in sim.webhooks.list_subscriptions()])

    async def delete_webhook(request: Request) -> Response:
        if not sim.webhooks.unsubscribe(request.path_params["webhook_id"]):
            raise ApiError(404, NOT_FOUND)
        return Response(status_code=204)

    # ------------------------------------------------------------------ merchant, invoices

    async def merchant(request: Request) -> Response:
        with sim.lock:
            return JSONResponse(merchant_view(sim.state.scenario, inferred))

    async def list_invoices(request: Request) -> Response:
        period = request.query_params.get(inferred.param_invoice_period)
        try:
            if period is None:
                return JSONResponse(sim.invoices())
            found = sim.invoice(period)
        except PeriodError as exc:
            raise ApiError(400, str(exc)) from None
        return JSONResponse([found] if found is not None else [])

    async def get_invoice(request: Request) -> Response:
        wanted = request.path_params["invoice_id"]
        found = next((inv for inv in sim.invoices() if inv["id"] == wanted), None)
        if found is None:
            raise ApiError(404, NOT_FOUND)
        return JSONResponse(found)

    unmatched = endpoint("unmatched", _not_found)

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        response = await unmatched(Request(scope, receive))
        await response(scope, receive, send)

    return Router(
        routes=[
            route(f"/{inferred.returns_list_path}", {"GET": list_returns}),
            route(f"/{wire.RETURN_PATH}", {"GET": get_return}),
            route(f"/{wire.PARTIAL_VALIDATE_PATH}", {"POST": partial_validate}),
            route(f"/{wire.WEBHOOKS_PATH}", {"GET": list_webhooks, "POST": create_webhook}),
            route(f"/{wire.WEBHOOK_PATH}", {"DELETE": delete_webhook}),
            route(f"/{inferred.merchant_path}", {"GET": merchant}),
            route(f"/{inferred.invoices_path}", {"GET": list_invoices}),
            route(f"/{inferred.invoices_path}/{{invoice_id}}", {"GET": get_invoice}),
        ],
        default=default,
    )


async def _not_found(request: Request) -> Response:
    raise ApiError(404, NOT_FOUND)


def _decisions(body: dict[str, Any], inferred: ReveniInferred) -> list[tuple[str, Decision]]:
    """The `items` of a partial_validate body ([R-OBS S4] keys, plus an optional `restock`);
    an item's `status` in either casing unless `inferred.status_case_strict`."""
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise ApiError(400, "items: expected a non-empty list")
    out: list[tuple[str, Decision]] = []
    for i, entry in enumerate(items):
        if not isinstance(entry, dict):
            raise ApiError(400, f"items[{i}]: expected an object")
        item_id, status, quantity = entry.get("item_id"), entry.get("status"), entry.get("quantity")
        if not isinstance(item_id, str) or not item_id:
            raise ApiError(400, f"items[{i}].item_id: expected a string")
        if isinstance(status, str) and not inferred.status_case_strict:
            status = status.lower()  # either casing, like every status ([INFER])
        if status not in ("accepted", "rejected"):
            raise ApiError(400, f"items[{i}].status: expected 'accepted' or 'rejected'")
        if quantity is not None and (isinstance(quantity, bool) or not isinstance(quantity, int)):
            raise ApiError(400, f"items[{i}].quantity: expected an integer")
        for key in ("reject_reason", "reject_reason_text"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                raise ApiError(400, f"items[{i}].{key}: expected a string")
        restock = entry.get("restock")
        if restock is not None and not isinstance(restock, bool):
            raise ApiError(400, f"items[{i}].restock: expected true or false")
        out.append(
            (
                item_id,
                Decision(
                    accepted=status == "accepted",
                    quantity=quantity if status == "accepted" else None,
                    reject_reason=entry.get("reject_reason"),
                    reject_reason_text=entry.get("reject_reason_text"),
                    restock=restock,
                ),
            )
        )
    return out
