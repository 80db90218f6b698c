"""The `/_sim` control plane of the Reveni simulator (docs/reveni-simulator.md).

No auth, never faulted, never called by returnbridge itself: tests, the demo and
the benchmarks drive the simulated store and read its ground truth here. A bad request answers
400 `{"error": ...}`; an unknown return 404.

- `POST /_sim/load` (whole scenario), `GET/POST /_sim/clock`, `GET/POST /_sim/faults`
- `GET /_sim/counters`, `POST /_sim/counters/reset`
- `POST /_sim/returns` (one scenario return, as a shopper creates it), `POST
  /_sim/returns/{id}/status`, `POST /_sim/returns/{id}/refunds`, `POST /_sim/walk`
- `GET/POST /_sim/webhooks`, `POST /_sim/webhooks/emit`, `/replay`, `/flush`
- `GET /_sim/effects`, `GET /_sim/invoices?period=YYYY-MM`
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from returnbridge.connectors.reveni import wire
from returnbridge.scenario import ReveniReturn, ScenarioError, parse_scenario
from returnbridge.simulators.control import (
    ControlError,
    Handler,
    bad_requests_are_400,
    common_routes,
    json_body,
)
from returnbridge.simulators.reveni.records import ReturnRec
from returnbridge.simulators.reveni.simulator import ReveniSimulator
from returnbridge.simulators.reveni.state import Decision, UnknownReturn
from returnbridge.simulators.reveni.views import return_view


def _only(body: dict[str, Any], known: set[str]) -> None:
    if set(body) - known:
        raise ControlError(f"unknown key(s): {sorted(set(body) - known)}; expected {sorted(known)}")


def _item_decisions(rec: ReturnRec, items: Any) -> dict[str, Decision]:
    """`[{"sku" or "item_id", "accepted": bool}]` -> item id -> Decision (a SKU names every item
    of the return with that SKU)."""
    if not isinstance(items, list):
        raise ControlError("items: expected a list")
    out: dict[str, Decision] = {}
    for i, entry in enumerate(items):
        if not isinstance(entry, dict) or not isinstance(entry.get("accepted"), bool):
            raise ControlError(f"items[{i}]: expected {{'sku' or 'item_id', 'accepted': bool}}")
        ids = [
            item.item_id
            for item in rec.items
            if item.item_id == entry.get("item_id") or item.sku == entry.get("sku")
        ]
        if not ids:
            raise ControlError(f"items[{i}]: return {rec.id} has no such item")
        for item_id in ids:
            out[item_id] = Decision(accepted=entry["accepted"])
    return out


def control_api(sim: ReveniSimulator) -> Router:
    def handled(handler: Handler) -> Handler:
        checked = bad_requests_are_400(handler)

        async def endpoint(request: Request) -> Response:
            try:
                return await checked(request)
            except UnknownReturn as exc:
                return JSONResponse({"error": f"no return {exc.args[0]!r}"}, status_code=404)

        return endpoint

    def view(rec: ReturnRec) -> dict[str, Any]:
        return return_view(rec, sim.store_id, sim.inferred)

    async def load(request: Request) -> Response:
        try:
            scenario = parse_scenario(await json_body(request), "/_sim/load")
        except ScenarioError as exc:
            raise ControlError(str(exc)) from None
        sim.load(scenario)
        with sim.lock:
            count = len(sim.state.returns)
        return JSONResponse({"loaded": True, "returns": count, "now": sim.clock.now().isoformat()})

    async def create_return(request: Request) -> Response:
        try:
            ret = ReveniReturn.model_validate(await json_body(request))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"]) or "body"
            message = str(err["msg"]).removeprefix("Value error, ")
            raise ControlError(f"{where}: {message}") from None
        with sim.lock:
            return JSONResponse(view(sim.state.create(ret)), status_code=201)

    async def set_status(request: Request) -> Response:
        body = await json_body(request)
        _only(body, {"status", "items"})
        status = body.get("status")
        if not isinstance(status, str):
            raise ControlError("status: expected a status name")
        status = status.lower()  # our names, in either casing
        with sim.lock:
            rec = sim.state.get(request.path_params["return_id"])
            decisions = _item_decisions(rec, body["items"]) if "items" in body else None
            return JSONResponse(view(sim.state.set_status(rec.id, status, decisions)))

    async def add_refund(request: Request) -> Response:
        body = await json_body(request)
        _only(body, {"method", "amount", "currency", "status", "paid_by"})
        method, amount = body.get("method"), body.get("amount")
        if method not in wire.REFUND_METHODS:
            raise ControlError(f"method: expected one of {list(wire.REFUND_METHODS)}")
        try:
            value = Decimal(str(amount))
        except InvalidOperation:
            raise ControlError(f"amount: not a decimal amount: {amount!r}") from None
        if isinstance(amount, bool | float) or not value.is_finite() or value < 0:
            raise ControlError("amount: expected a non-negative decimal string or integer")
        currency, status, paid_by = body.get("currency"), body.get("status"), body.get("paid_by")
        if currency is not None and not (isinstance(currency, str) and len(currency) == 3):
            raise ControlError("currency: expected an ISO 4217 code")
        if status not in (None, "pending", "paid", "failed"):
            raise ControlError("status: expected pending, paid or failed")
        if paid_by not in (None, "reveni", "merchant"):
            raise ControlError("paid_by: expected reveni or merchant")
        with sim.lock:
            rec = sim.state.add_refund(
                request.path_params["return_id"], method, value, currency, status, paid_by
            )
            return JSONResponse(view(rec))

    async def walk(request: Request) -> Response:
        body = await json_body(request)
        _only(body, {"steps"})
        steps = body.get("steps")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)):
            raise ControlError("steps: expected an integer")
        with sim.lock:
            changes = sim.state.walk(steps)
            remaining = sim.state.remaining_steps()
        done = sum(1 for c in changes if "skipped" not in c)
        return JSONResponse({"steps": done, "remaining": remaining, "changes": changes})

    async def webhooks(request: Request) -> Response:
        if request.method == "POST":
            body = await json_body(request)
            _only(body, {"secret"})
            secret = body.get("secret")
            if secret is not None and (not isinstance(secret, str) or not secret):
                raise ControlError("secret: expected a non-empty string or null")
            sim.webhooks.set_secret(secret)
        return JSONResponse(sim.webhooks.snapshot())

    async def emit(request: Request) -> Response:
        body = await json_body(request)
        _only(body, {"return_id", "event"})
        event = body.get("event", wire.EVENT_RETURN_UPDATED)
        if event not in wire.EVENT_TYPES:
            raise ControlError(f"event: expected one of {list(wire.EVENT_TYPES)}")
        return JSONResponse(sim.emit(str(body.get("return_id")), event))

    async def replay(request: Request) -> Response:
        body = await json_body(request)
        _only(body, {"event_ids"})
        event_ids = body.get("event_ids")
        if event_ids is not None and not (
            isinstance(event_ids, list) and all(isinstance(e, str) for e in event_ids)
        ):
            raise ControlError("event_ids: expected a list of event ids")
        return JSONResponse({"queued": sim.webhooks.replay(event_ids)})

    async def flush(request: Request) -> Response:
        return JSONResponse({"released": sim.webhooks.flush()})

    async def effects(request: Request) -> Response:
        return JSONResponse(sim.effects())

    async def invoice(request: Request) -> Response:
        period = request.query_params.get("period")
        if period is None:
            period = sim.clock.now().strftime("%Y-%m")
        found = sim.invoice(period)
        if found is None:
            raise ControlError(f"period: {period} is after the simulated clock's month")
        return JSONResponse(found)

    return Router(
        routes=[
            Route("/load", handled(load), methods=["POST"]),
            *common_routes(sim),
            Route("/returns", handled(create_return), methods=["POST"]),
            Route("/returns/{return_id}/status", handled(set_status), methods=["POST"]),
            Route("/returns/{return_id}/refunds", handled(add_refund), methods=["POST"]),
            Route("/walk", handled(walk), methods=["POST"]),
            Route("/webhooks", handled(webhooks), methods=["GET", "POST"]),
            Route("/webhooks/emit", handled(emit), methods=["POST"]),
            Route("/webhooks/replay", handled(replay), methods=["POST"]),
            Route("/webhooks/flush", handled(flush), methods=["POST"]),
            Route("/effects", handled(effects), methods=["GET"]),
            Route("/invoices", handled(invoice), methods=["GET"]),
        ]
    )
