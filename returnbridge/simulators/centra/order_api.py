"""The REST Order API plugin: refunds and order creation ([C] [OA-*]).

Mounted under `CentraInferred.order_api_base_path` ([INF]); every call needs the header
`API-Authorization: <secret>` ([C]); a missing or wrong secret is 401 `{status: "no", msg}`
([INF] status and body). Malformed JSON or a field of the wrong type is 400 naming the field
([INF]). Business errors answer `{status: "no", errorCode, msg}` with Centra's codes ([C]) and
HTTP `CentraInferred.order_api_error_http_status` ([INF]).

Routes:
- `POST /order`: products[{sku|ean, qty, unitPrice}], orderNumber, address/invoiceAddress/
  deliveryAddress (email and country required, [C]), currency, market/marketId, adjustStock,
  internalOrder, createdFromOrigin{type, id}, shippingValue, comment, internalComment,
  payment{capture{amount}} -> `{status: "ok", orders: [number]}`.
- `PUT /returns/{id}`: {completed, refundPayment, sendEmail} -> `{status: "ok", return}`, the
  return as `GET /returns` lists it ([C] [OA-update-return]). [INF] extensions:
  `manualRefund: {amount, reference}` records a refund paid outside the PSP; the answer's
  `refund: {status, amount, currency}` tells the refund entry written (its status as written:
  SUCCESS, or PENDING while an asynchronous PSP has not answered). Without it a client learns the
  refund's fate from the payment history.
- `GET /returns?limit&page&return&shipment&order&customer_id&newer_than&older_than` -> rows
  `{returnId, completed, shipment, shipmentId, orderId, selectionId, customerId, date, returnCost,
  shippingCost, handlingCost, voucherValue, taxValue, taxDeduction, currency, returnToStock,
  comment, createdFrom, products[{returnLineId, shipmentLineId, orderLineId, sku, quantity}]}` ([C]
  [OA-get-returns] names; `selectionId` is the order's 32-hex id [INF]; amounts are decimal
  strings [INF], the page shows JSON numbers).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from returnbridge.connectors.centra.plans import RateLimitType
from returnbridge.simulators.centra.middleware import mark_write, rate_limited_headers
from returnbridge.simulators.centra.orders_ops import (
    OrderProduct,
    OrderRequest,
    ReturnUpdate,
    create_order,
    update_return,
)
from returnbridge.simulators.centra.outcomes import (
    EMPTY_ORDER,
    MISSING_FIELD,
    OrderApiError,
    decimal_from_input,
)
from returnbridge.simulators.centra.records import ReturnRec
from returnbridge.simulators.centra.simulator import CentraSimulator
from returnbridge.simulators.centra.timefmt import format_datetime, parse_datetime

Handler = Callable[[Request], Awaitable[Response]]


class BadField(Exception):
    """A request field with the wrong type or value: HTTP 400 naming the field."""


def _no(msg: str, status: int, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "no", "msg": msg, **extra}, status_code=status)


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadField(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadField("request body must be a JSON object")
    return body


def _opt(body: dict[str, Any], key: str, kind: type | tuple[type, ...], path: str = "") -> Any:
    value = body.get(key)
    name = f"{path}{key}"
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise BadField(f"{name}: expected {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise BadField(f"{name}: expected {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {bool: "a boolean", int: "an integer", str: "a string", dict: "an object",
             list: "a list", float: "a number"}  # fmt: skip
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _amount(body: dict[str, Any], key: str, path: str = "") -> Decimal | None:
    value = _opt(body, key, (int, float, str), path)
    if value is None:
        return None
    try:
        amount = decimal_from_input(value)
    except ValueError:
        raise BadField(f"{path}{key}: {value!r} is not a number") from None
    if amount < 0:
        raise BadField(f"{path}{key}: may not be negative")
    return amount


def _integer(body: dict[str, Any], key: str, path: str = "") -> int | None:
    value = _opt(body, key, (int, str), path)
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise BadField(f"{path}{key}: {value!r} is not an integer")
        return int(value)
    return value


def _parse_order(body: dict[str, Any]) -> OrderRequest:
    products_raw = _opt(body, "products", list)
    if not products_raw:
        raise OrderApiError(EMPTY_ORDER, "The order has no products.")
    products = []
    for i, item in enumerate(products_raw):
        path = f"products[{i}]."
        if not isinstance(item, dict):
            raise BadField(f"products[{i}]: expected an object")
        sku, ean = _opt(item, "sku", str, path), _opt(item, "ean", str, path)
        if sku is None and ean is None:
            raise OrderApiError(MISSING_FIELD, f"Missing field: {path}sku or {path}ean.")
        qty = _opt(item, "qty", int, path)
        if qty is None:
            raise OrderApiError(MISSING_FIELD, f"Missing field: {path}qty.")
        if qty < 1:
            raise BadField(f"{path}qty: must be at least 1")
        price = _amount(item, "unitPrice", path)
        if price is None:
            raise OrderApiError(MISSING_FIELD, f"Missing field: {path}unitPrice.")
        tax = _amount(item, "taxPercent", path)  # [INF] extension; defaults to 25
        products.append(OrderProduct(sku, ean, qty, price, tax if tax is not None else Decimal(25)))
    address = None
    for key in ("address", "invoiceAddress", "deliveryAddress"):
        candidate = _opt(body, key, dict)
        if candidate is not None:
            address = (key, candidate)
            break
    if address is None:
        raise OrderApiError(MISSING_FIELD, "Missing field: address (with email and country).")
    for required in ("email", "country"):
        if not _opt(address[1], required, str, f"{address[0]}."):
            raise OrderApiError(MISSING_FIELD, f"Missing field: {address[0]}.{required}.")
    origin = _opt(body, "createdFromOrigin", dict)
    origin_type = origin_id = None
    if origin is not None:
        origin_type = _opt(origin, "type", str, "createdFromOrigin.")
        if origin_type not in ("return", "order", "plugin"):
            raise BadField("createdFromOrigin.type: expected return, order or plugin")
        origin_id = _integer(origin, "id", "createdFromOrigin.")
    payment = _opt(body, "payment", dict)
    captured = None
    if payment is not None:
        capture = _opt(payment, "capture", dict, "payment.")
        if capture is not None:
            captured = _amount(capture, "amount", "payment.capture.")
    market = _opt(body, "market", (str, int))
    if market is None:
        market = _opt(body, "marketId", (str, int))
    currency = _opt(body, "currency", str)
    adjust = _opt(body, "adjustStock", bool)
    order_number = _integer(body, "orderNumber")
    if order_number is not None and order_number < 1:
        raise BadField("orderNumber: must be a positive integer")  # [INF] status and wording
    return OrderRequest(
        products=products,
        email=address[1]["email"],
        order_number=order_number,
        currency=currency.upper() if currency else None,
        market=str(market) if market is not None else None,
        adjust_stock=True if adjust is None else adjust,
        internal=bool(_opt(body, "internalOrder", bool)),
        origin_type=origin_type,
        origin_id=origin_id,
        shipping_value=_amount(body, "shippingValue") or Decimal(0),
        comment=_opt(body, "comment", str),
        internal_comment=_opt(body, "internalComment", str),
        captured=captured,
    )


def _parse_update(body: dict[str, Any], allow_manual_refund: bool) -> ReturnUpdate:
    manual = _opt(body, "manualRefund", dict)
    amount = reference = None
    if manual is not None and not allow_manual_refund:
        raise BadField("manualRefund: not supported (CentraInferred.order_api_manual_refund)")
    if manual is not None:
        amount = _amount(manual, "amount", "manualRefund.")
        if amount is None:
            raise BadField("manualRefund.amount: required")
        reference = _opt(manual, "reference", str, "manualRefund.")
    return ReturnUpdate(
        completed=_opt(body, "completed", bool),
        refund_payment=bool(_opt(body, "refundPayment", bool)),
        send_email=bool(_opt(body, "sendEmail", bool)),
        manual_refund_amount=amount,
        manual_refund_reference=reference,
    )


def _return_json(sim: CentraSimulator, ret: ReturnRec) -> dict[str, Any]:
    state = sim.state
    order = state.orders[ret.order_number]
    tax = sum(
        (
            state.order_lines[rl.order_line_id].value(rl.quantity)
            * state.order_lines[rl.order_line_id].tax_percent
            / (100 + state.order_lines[rl.order_line_id].tax_percent)
            for rl in ret.lines
        ),
        Decimal(0),
    )
    shipment = state.shipments.get(ret.shipment_id)
    return {
        "returnId": ret.id,
        "completed": ret.completed,
        "shipment": None if shipment is None else shipment.number,
        "shipmentId": ret.shipment_id,
        "orderId": ret.order_number,
        "selectionId": order.id,
        "customerId": order.customer_id,
        "date": format_datetime(ret.created_at, sim.tz, "Y-m-d H:i:s"),
        "currency": order.currency,
        "returnCost": f"{ret.return_cost:.2f}",
        "shippingCost": f"{ret.shipping:.2f}",
        "handlingCost": f"{ret.handling:.2f}",
        "voucherValue": f"{ret.voucher:.2f}",
        "taxValue": f"{tax:.2f}",
        "taxDeduction": "0.00",  # the simulator never deducts tax (taxValue is then kept)
        "returnToStock": ret.policy.value != "removeItemsFromStock",
        "comment": ret.comment,
        "createdFrom": None,
        "products": [
            {
                "returnLineId": rl.id,
                "shipmentLineId": rl.shipment_line_id,
                "orderLineId": rl.order_line_id,
                "sku": state.sizes[state.order_lines[rl.order_line_id].size_id].sku,
                "quantity": rl.quantity,
            }
            for rl in ret.lines
        ],
    }


def order_api(sim: CentraSimulator) -> Router:
    """The Order API routes, to be mounted under the inferred base path."""

    def guarded(handler: Callable[[Request], Awaitable[Response]], name: str) -> Handler:
        async def endpoint(request: Request) -> Response:
            with sim.lock:
                sim.counters.rest_requests += 1
            if request.headers.get("api-authorization") != sim.order_api_secret:
                return _no("Invalid or missing API-Authorization.", 401)
            # [INF] the Order API plugin's own limits are undocumented; the simulator meters it
            # against the Integration API's REQUEST_COUNT buckets of the same environment.
            wait = sim.limiter.try_acquire({RateLimitType.REQUEST_COUNT: 1})
            if wait is not None:
                with sim.lock:
                    sim.counters.rate_limited += 1
                return JSONResponse(
                    {"status": "no", "msg": "Rate limit exceeded."},
                    status_code=429,
                    headers=rate_limited_headers(sim, wait),
                )
            with sim.lock:
                sim.counters.by_operation[name] += 1
            try:
                return await handler(request)
            except BadField as exc:
                return _no(str(exc), 400)
            except OrderApiError as exc:
                status = sim.inferred.order_api_error_http_status
                return _no(exc.message, status, errorCode=exc.code)

        return endpoint

    async def post_order(request: Request) -> Response:
        req = _parse_order(await _json_object(request))
        with sim.lock:
            sim.counters.mutations += 1
            mark_write(request)
            order = create_order(sim.state, req)
        return JSONResponse({"status": "ok", "orders": [order.number]})

    async def put_return(request: Request) -> Response:
        update = _parse_update(await _json_object(request), sim.inferred.order_api_manual_refund)
        return_id = request.path_params["return_id"]
        with sim.lock:
            ret = sim.state.returns.get(return_id)
            if ret is None:  # [INF] HTTP status and body of an unknown return
                return _no(f"Return {return_id} not found.", 404)
            sim.counters.mutations += 1
            mark_write(request)
            try:
                entry = update_return(sim.state, ret, update)
            except OrderApiError as exc:
                status = sim.inferred.order_api_error_http_status
                return _no(exc.message, status, errorCode=exc.code, returnCompleted=ret.completed)
            body: dict[str, Any] = {"status": "ok", "return": _return_json(sim, ret)}
            if entry is not None:  # [INF] extension: the refund entry written, status as is
                body["refund"] = {
                    "status": entry.status,
                    "amount": f"{entry.value:.2f}",
                    "currency": sim.state.orders[ret.order_number].currency,
                }
        return JSONResponse(body)

    async def get_returns(request: Request) -> Response:
        params = request.query_params
        try:
            limit = int(params.get("limit", "20"))  # [INF] default 20, range 1..200 as in GraphQL
            page = int(params.get("page", "1"))
            filters = {
                key: int(params[key])
                for key in ("return", "shipment", "order", "customer_id")
                if key in params
            }
            newer = parse_datetime(params["newer_than"], sim.tz) if "newer_than" in params else None
            older = parse_datetime(params["older_than"], sim.tz) if "older_than" in params else None
        except ValueError as exc:
            raise BadField(f"query parameter: {exc}") from None
        if not 1 <= limit <= 200 or page < 1:
            raise BadField("limit must be 1..200 and page at least 1")
        with sim.lock:
            state = sim.state
            found = [
                r
                for r in state.returns.values()
                if filters.get("return", r.id) == r.id
                and filters.get("shipment", r.shipment_id) == r.shipment_id
                and filters.get("order", r.order_number) == r.order_number
                and filters.get("customer_id", state.orders[r.order_number].customer_id)
                == state.orders[r.order_number].customer_id
                and (newer is None or r.created_at > newer)
                and (older is None or r.created_at < older)
            ]
            chosen = found[(page - 1) * limit : page * limit]
            body = {"status": "ok", "returns": [_return_json(sim, r) for r in chosen]}
        return JSONResponse(body)

    return Router(
        routes=[
            Route("/order", guarded(post_order, "REST POST /order"), methods=["POST"]),
            Route(
                "/returns/{return_id:int}",
                guarded(put_return, "REST PUT /returns/{id}"),
                methods=["PUT"],
            ),
            Route("/returns", guarded(get_returns, "REST GET /returns"), methods=["GET"]),
        ]
    )
