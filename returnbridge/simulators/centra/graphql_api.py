"""`POST /graphql`: the Integration API's HTTP rules around graphql-core ([C] [AUTH] [ERR]).

- Auth: `Authorization: Bearer <token>` or cookie `graphql-access=<token>`; unknown -> 403.
- Bad JSON, bad GraphQL, validation failures, bad variables -> 400 with `errors[]`.
- Rate limits: one REQUEST_COUNT per request, one MUTATION_COUNT per mutation field, the request's
  complexity in QUERY_COMPLEXITY; over -> 429 + Retry-After.
- Missing permission -> 200 with an `authorization` error.
- Every 200 carries `extensions {complexity, permissionsUsed, appVersion}`.
Execution is synchronous under the simulator's lock, so a mutation is atomic.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from returnbridge.connectors.centra.plans import RateLimitType
from returnbridge.simulators.centra.analysis import RequestAnalysis, analyse
from returnbridge.simulators.centra.middleware import mark_write, rate_limited_headers
from returnbridge.simulators.centra.root import Root
from returnbridge.simulators.centra.simulator import CentraSimulator
from returnbridge.simulators.centra.views import ViewContext

Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "bad request")
        self.errors = errors


# Only `extensions.category: "authorization"` is [C] [AUTH]; the categories of the other errors
# ("graphql", "authentication", "rate-limit") and all messages are [INF].
def _error(message: str, category: str = "graphql") -> dict[str, Any]:
    return {"message": message, "extensions": {"category": category}}


def _formatted(error: GraphQLError, category: str = "graphql") -> dict[str, Any]:
    out: dict[str, Any] = dict(error.formatted)
    extensions: dict[str, Any] = dict(out.get("extensions") or {})
    out["extensions"] = {**extensions, "category": category}
    return out


def token_of(request: Request) -> str | None:
    """The Integration API token: Bearer header first, then the `graphql-access` cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get("graphql-access")


async def _read_request(request: Request) -> tuple[str, dict[str, Any], str | None]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest([_error(f"Request body is not valid JSON: {exc}")]) from None
    if not isinstance(body, dict):
        raise BadRequest([_error("Request body must be a JSON object with a `query`.")])
    query, variables, name = body.get("query"), body.get("variables"), body.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise BadRequest([_error("`query` must be a non-empty string.")])
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest([_error("`variables` must be a JSON object.")])
    if name is not None and not isinstance(name, str):
        raise BadRequest([_error("`operationName` must be a string.")])
    return query, variables or {}, name


def _prepare(
    sim: CentraSimulator, query: str, variables: dict[str, Any], name: str | None
) -> tuple[DocumentNode, OperationDefinitionNode, dict[str, Any]]:
    try:
        document = parse(query)
    except GraphQLError as exc:
        raise BadRequest([_formatted(exc)]) from None
    problems = validate(sim.schema, document)
    if problems:
        raise BadRequest([_formatted(e) for e in problems])
    operation = get_operation_ast(document, name)
    if operation is None:
        message = (
            f"Unknown operation named {name!r}."
            if name
            else "Must provide operation name if query contains multiple operations."
        )
        raise BadRequest([_error(message)])
    coerced = get_variable_values(sim.schema, operation.variable_definitions or (), variables)
    if isinstance(coerced, list):
        raise BadRequest([_formatted(e) for e in coerced])
    return document, operation, coerced


def _costs(analysis: RequestAnalysis | None) -> dict[RateLimitType, int]:
    return {
        RateLimitType.REQUEST_COUNT: 1,
        RateLimitType.MUTATION_COUNT: analysis.mutation_count if analysis else 0,
        RateLimitType.QUERY_COMPLEXITY: analysis.complexity if analysis else 0,
    }


def _rate_limited(sim: CentraSimulator, wait: float) -> Response:
    with sim.lock:
        sim.counters.rate_limited += 1
    return JSONResponse(
        {"errors": [_error("Rate limit exceeded.", "rate-limit")]},
        status_code=429,
        headers=rate_limited_headers(sim, wait),
    )


def graphql_endpoint(sim: CentraSimulator) -> Handler:
    """The Starlette endpoint for `POST /graphql`."""

    async def endpoint(request: Request) -> Response:
        with sim.lock:
            sim.counters.graphql_requests += 1
        token = token_of(request)
        if token is None or token not in sim.tokens:
            return JSONResponse(
                {"errors": [_error("Invalid or expired access token.", "authentication")]},
                status_code=403,
            )
        try:
            query, variables, name = await _read_request(request)
            document, operation, coerced = _prepare(sim, query, variables, name)
        except BadRequest as exc:
            wait = sim.limiter.try_acquire(_costs(None))
            if wait is not None:
                return _rate_limited(sim, wait)
            return JSONResponse({"errors": exc.errors}, status_code=400)
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        analysis = analyse(sim.schema, operation, fragments, coerced, sim.inferred)
        wait = sim.limiter.try_acquire(_costs(analysis))
        if wait is not None:
            return _rate_limited(sim, wait)
        return _execute(sim, request, document, operation, analysis, token, variables)

    return endpoint


def _execute(
    sim: CentraSimulator,
    request: Request,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    analysis: RequestAnalysis,
    token: str,
    variables: dict[str, Any],
) -> Response:
    extensions: dict[str, Any] = {
        "complexity": analysis.complexity,
        "permissionsUsed": sorted(analysis.permissions),
        "appVersion": sim.inferred.app_version,
    }
    if analysis.deprecated_fields:
        extensions["deprecatedFieldsUsed"] = sorted(analysis.deprecated_fields)
    granted = sim.tokens[token]
    if granted is not None:
        missing = [(p, top) for p, top in analysis.permissions.items() if p not in granted]
        if missing:  # [INF] the whole request fails (`data: null`), not just the fields
            errors = [
                {
                    "message": f"You need {perm} permission to access {top}.",
                    "path": [top],
                    "extensions": {"category": "authorization"},
                }
                for perm, top in missing
            ]
            return JSONResponse({"data": None, "errors": errors, "extensions": extensions})
    with sim.lock:
        for field_name in analysis.top_level_fields:
            sim.counters.by_operation[f"{analysis.operation_type} {field_name}"] += 1
        sim.counters.mutations += analysis.mutation_count
        ctx = ViewContext(sim.state, sim.tz)
        result = execute_sync(
            sim.schema,
            document,
            root_value=Root(ctx, sim.limiter.rows),
            variable_values=variables,
            operation_name=operation.name.value if operation.name else None,
        )
    if analysis.mutation_count:
        mark_write(request)
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [_formatted(e) for e in result.errors]
    body["extensions"] = extensions
    return JSONResponse(body)
