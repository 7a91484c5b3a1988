"""The GraphQL-over-HTTP specification on top of Strawberry's ASGI view.

Strawberry answers every request ``application/json`` with status 200. The specification adds the
``application/graphql-response+json`` media type, whose status codes say what happened:

- a *request error* (the document does not parse, does not validate, or its variables do not
  coerce; nothing executed) is ``400`` with no ``data`` entry;
- a response that executed (``data`` is present, even ``null``) is ``200``, field errors or not.

Which media type answers is negotiated from ``Accept`` (q-values honoured; none, ``*/*`` or
``application/*`` mean ``application/json``, which keeps every existing client as it was); an
``Accept`` naming neither is ``406``. Under ``application/json`` a request error is still ``200``
(the legacy behaviour clients of that type rely on), but without ``data`` either way, as the GraphQL
specification asks of errors raised before execution. A mutation over ``GET`` is ``405`` with
``Allow: POST``: ``GET`` is for queries only, so a link or a prefetch can never change anything.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.types.unset import UNSET

from schema.failures import has_outage
from server.rate_limits import retry_after

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"
ContextT = TypeVar("ContextT")
RootValueT = TypeVar("RootValueT")
_WILDCARDS = frozenset({"*/*", "application/*"})
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,127}")


def negotiate(accept: str | None) -> str | None:
    """The response media type for an ``Accept`` header; None when it accepts neither JSON type.

    Highest quality wins; among equals an exact type beats a wildcard, then the client's order."""
    if accept is None or not accept.strip():
        return APPLICATION_JSON
    candidates: list[tuple[float, int, int, str]] = []
    for position, item in enumerate(accept.split(",")):
        media_type, *parameters = (part.strip() for part in item.split(";"))
        media_type = media_type.lower()
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if media_type in (GRAPHQL_RESPONSE_JSON, APPLICATION_JSON):
            candidates.append((quality, 1, -position, media_type))
        elif media_type in _WILDCARDS:
            candidates.append((quality, 0, -position, APPLICATION_JSON))
    return max(candidates)[3] if candidates else None


def is_request_error(result: ExecutionResult) -> bool:
    """Whether nothing executed: a parse or validation failure (Strawberry's pre-execution result),
    or graphql-core's refusal of the variables (no data, and no error reached a field: none has a path)."""
    if isinstance(result, PreExecutionError):
        return True
    errors = result.errors or []
    return result.data is None and bool(errors) and all(error.path is None for error in errors)


def _raised_by_a_bug(result: ExecutionResult) -> bool:
    """A pre-execution error that is an unexpected exception (an extension's), not the client's doing."""
    return any(
        error.original_error is not None and not isinstance(error.original_error, GraphQLError)
        for error in result.errors or []
    )


class Refusal(HTTPException):
    """An HTTP refusal with headers of its own (``Allow``, ``WWW-Authenticate``, ``Connection``)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str], code: str | None = None) -> None:
        super().__init__(status, reason)
        self.headers = headers
        self.code = code


class MethodNotAllowed(Refusal):
    def __init__(self, reason: str, allow: str) -> None:
        super().__init__(405, reason, {"Allow": allow})


class GraphQLOverHTTP(GraphQL[ContextT, RootValueT]):
    """Strawberry's view with the specification's media types, status codes and methods (module docstring)."""

    async def run(  # type: ignore[override]
        self, request: Request | WebSocket, context: ContextT = UNSET, root_value: RootValueT | None = UNSET
    ) -> Response | WebSocket:
        if isinstance(request, WebSocket):
            return await super().run(request, context, root_value)
        request.state.graphql_media_type = negotiate(request.headers.get("accept"))
        try:
            return await super().run(request, context, root_value)
        except HTTPException as exc:
            return self._refusal(request, exc)

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[GraphQLRequestData]:
        parsed = await super().parse_http_body(request)
        for data in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(data.operation_name, str | None):
                raise HTTPException(
                    400, "The GraphQL operation's `operationName` must be a string or null, if provided."
                )
            if data.operation_name is not None and not _NAME.fullmatch(data.operation_name):
                # no operation has such a name; refused here, it never reaches a log line or a metric label
                raise HTTPException(400, "The GraphQL operation's `operationName` is not a GraphQL name.")
        return parsed

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: ContextT,
        root_value: RootValueT | None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        media_type = request.state.graphql_media_type
        if media_type is None:
            raise HTTPException(406, f"send Accept: {GRAPHQL_RESPONSE_JSON} or {APPLICATION_JSON}")
        try:
            result = await super().execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        except HTTPException as exc:
            if request_adapter.method == "GET" and isinstance(exc.__cause__, InvalidOperationTypeError):
                raise MethodNotAllowed(
                    "GET runs queries only: send mutations and subscriptions by POST", "POST"
                ) from exc
            raise
        sub_response.media_type = media_type
        if (wait := retry_after(result)) is not None:
            sub_response.status_code = 429
            sub_response.headers["Retry-After"] = str(wait)
        elif has_outage(result.errors):  # the database or the files directory: try again, nothing was wrong
            sub_response.status_code = 503
            sub_response.headers["Retry-After"] = "5"
        elif media_type == GRAPHQL_RESPONSE_JSON and is_request_error(result):
            sub_response.status_code = 500 if _raised_by_a_bug(result) else 400
        return result

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        if is_request_error(result):  # nothing executed: no `data` entry at all, not `"data": null`
            return {key: value for key, value in response.items() if key != "data"}  # type: ignore[return-value]
        return response

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        if sub_response.media_type == GRAPHQL_RESPONSE_JSON:
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
        return response

    def _refusal(self, request: Request, exc: HTTPException) -> Response:
        media_type = getattr(request.state, "graphql_media_type", None) or APPLICATION_JSON
        error: dict[str, Any] = {"message": exc.reason}
        headers = exc.headers if isinstance(exc, Refusal) else None
        if isinstance(exc, Refusal) and exc.code is not None:
            error["extensions"] = {"code": exc.code}
        body = {"errors": [error]}
        return JSONResponse(body, status_code=exc.status_code, headers=headers, media_type=media_type)
