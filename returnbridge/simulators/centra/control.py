"""The `/_sim` control plane: load data, move the clock, set faults, read counters and effects.

No auth, never faulted or rate-limited, never called by returnbridge itself: it is how tests, the
demo and benchmarks drive the simulator and read its ground truth
(docs/architecture.md#the-simulators).

- `POST /_sim/load` scenario JSON (the whole file, or just its `centra` section under `centra`)
- `GET /_sim/clock`, `POST /_sim/clock` `{"set": iso}` or `{"advance_seconds": n}`
- `GET /_sim/faults`, `POST /_sim/faults` `{seed?, error_rate?, rate_limit_rate?,
  timeout_after_commit_rate?, latency_ms?, stall_seconds?}` (restarts the seeded generator)
- `GET /_sim/counters`, `POST /_sim/counters/reset`
- `GET /_sim/webhooks`, `POST /_sim/webhooks` `{url, secret, retries?, max_batch?, ...}`
- `POST /_sim/tokens` `{token, permissions: [..] | null}` adds an Integration API token
- `GET /_sim/effects`: the run summary's `centra` section
- `GET /_sim/state/stock`: physical / allocated / FTA per SKU and warehouse
- `POST /_sim/manual_refunds` `{order_number, amount}`: someone refunds on the order directly in
  Centra (through the PSP, on no return)
- `GET /_sim/psp`: the asynchronous PSP's pending refund requests; `POST /_sim/psp/settle`
  `{order_number?}`: it answers them now, whatever the clock says
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from returnbridge.scenario import ScenarioError, parse_scenario
from returnbridge.simulators.centra.records import PaymentEntryRec
from returnbridge.simulators.centra.simulator import CentraSimulator
from returnbridge.simulators.control import (
    ControlError,
    bad_requests_are_400,
    common_routes,
    json_body,
)


def control_api(sim: CentraSimulator) -> Router:
    handled = bad_requests_are_400

    async def load(request: Request) -> Response:
        body = await json_body(request)
        try:
            scenario = parse_scenario(body, "/_sim/load")
        except ScenarioError as exc:
            raise ControlError(str(exc)) from None
        sim.load(scenario)
        return JSONResponse({"loaded": True, "now": sim.clock.now().isoformat()})

    async def webhooks(request: Request) -> Response:
        if request.method == "POST":
            body = await json_body(request)
            known = {"url", "secret", "retries", "max_batch", "backoff_seconds", "timeout"}
            if set(body) - known:
                raise ControlError(f"unknown key(s): {sorted(set(body) - known)}")
            sim.webhooks.configure(
                body.get("url"),
                body.get("secret"),
                retries=body.get("retries"),
                max_batch=body.get("max_batch"),
                backoff_seconds=body.get("backoff_seconds"),
                timeout=body.get("timeout"),
            )
        return JSONResponse(sim.webhooks.snapshot())

    async def tokens(request: Request) -> Response:
        body = await json_body(request)
        token, permissions = body.get("token"), body.get("permissions")
        if not isinstance(token, str) or not token:
            raise ControlError("token must be a non-empty string")
        if permissions is not None and not (
            isinstance(permissions, list) and all(isinstance(p, str) for p in permissions)
        ):
            raise ControlError("permissions must be a list of strings or null")
        with sim.lock:
            sim.tokens[token] = None if permissions is None else frozenset(permissions)
        return JSONResponse({"token": token, "permissions": permissions})

    async def effects(request: Request) -> Response:
        return JSONResponse(sim.effects())

    async def stock(request: Request) -> Response:
        with sim.lock:
            state = sim.state
            rows = [
                {
                    "sku": state.sizes[size_id].sku,
                    "warehouse_id": wid,
                    "physical": level.physical,
                    "allocated": level.allocated,
                    "free_to_allocate": level.free_to_allocate,
                }
                for (size_id, wid), level in sorted(state.stock.items())
            ]
        return JSONResponse({"stock": rows})

    async def manual_refunds(request: Request) -> Response:
        body = await json_body(request)
        if set(body) - {"order_number", "amount"}:
            raise ControlError(f"unknown key(s): {sorted(set(body) - {'order_number', 'amount'})}")
        number, amount = body.get("order_number"), body.get("amount")
        if not isinstance(number, int) or isinstance(number, bool):
            raise ControlError("order_number must be an integer")
        try:
            value = Decimal(str(amount))
        except InvalidOperation:
            raise ControlError(f"amount must be a decimal string, not {amount!r}") from None
        if not value.is_finite() or value <= 0:
            raise ControlError(f"amount must be positive, not {amount!r}")
        with sim.lock:
            if number not in sim.state.orders:
                raise ControlError(f"order_number: Centra has no order {number}")
            entry = sim.state.manual_refund(number, value)
            sim.state.emit("order", "update", number)
        return JSONResponse({"order_number": number, "entry_id": entry.id}, status_code=201)

    async def psp(request: Request) -> Response:
        with sim.lock:
            sim.state.settle_refunds()
            pending = [_pending(sim, entry) for entry in sim.state.pending_refund_requests()]
        return JSONResponse({"pending": pending})

    async def psp_settle(request: Request) -> Response:
        body = await json_body(request)
        if set(body) - {"order_number"}:
            raise ControlError(f"unknown key(s): {sorted(set(body) - {'order_number'})}")
        number = body.get("order_number")
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
            raise ControlError("order_number must be an integer")
        with sim.lock:
            if number is not None and number not in sim.state.orders:
                raise ControlError(f"order_number: Centra has no order {number}")
            settled = sim.state.settle_refunds(now=True, order_number=number)
            answered = [
                {"request_id": e.settles, "entry_id": e.id, "status": e.status} for e in settled
            ]
        return JSONResponse({"settled": answered})

    return Router(
        routes=[
            Route("/load", handled(load), methods=["POST"]),
            Route("/psp", handled(psp), methods=["GET"]),
            Route("/psp/settle", handled(psp_settle), methods=["POST"]),
            Route("/manual_refunds", handled(manual_refunds), methods=["POST"]),
            *common_routes(sim),
            Route("/webhooks", handled(webhooks), methods=["GET", "POST"]),
            Route("/tokens", handled(tokens), methods=["POST"]),
            Route("/effects", handled(effects), methods=["GET"]),
            Route("/state/stock", handled(stock), methods=["GET"]),
        ]
    )


def _pending(sim: CentraSimulator, entry: PaymentEntryRec) -> dict[str, object]:
    """One pending refund request, as `GET /_sim/psp` lists it."""
    answers_at = entry.created_at + timedelta(seconds=sim.state.psp_settle_seconds)
    return {
        "entry_id": entry.id,
        "order_number": entry.order_number,
        "return_id": entry.return_id,
        "amount": f"{entry.value:.2f}",
        "created_at": entry.created_at.isoformat(),
        "answers_at": answers_at.isoformat(),
    }
