"""The GraphQL endpoint: Strawberry's ASGI app with our context, authentication and GraphiQL page."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, overload

import orjson
import strawberry
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.file_uploads.utils import replace_placeholders_with_files
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from engine import AuthenticationError, EventHub, Services, UnavailableError
from schema.context import Context
from schema.loaders import DataLoaders
from schema.reads import SharedReads
from server.auth import authenticate, issue_token
from server.bodies import is_multipart
from server.graphiql import graphiql_html
from server.http_spec import GraphQLOverHTTP, Refusal
from server.payloads import files_map_problem, read_json
from server.rate_limits import RATE_LIMITED, ConnectionLimits, OperationSlots, client_key
from server.request_timeout import RequestTimeout
from server.settings import Settings

log = logging.getLogger(__name__)


class StepwiseGraphQL(GraphQLOverHTTP[Context, None]):
    """Multipart requests (the GraphQL multipart request spec, for ``uploadTaskDocuments``) are on.

    Strawberry turns them off by default because a browser may send a ``multipart/form-data`` POST
    cross-site without a CORS preflight, riding on the victim's cookies. Stepwise authenticates only
    by the ``Authorization`` header, which such a form cannot set: a forged request arrives
    anonymous and gets ``UNAUTHENTICATED``. So no CSRF header is required of clients.
    """

    def __init__(
        self,
        schema: strawberry.Schema,
        services: Services,
        settings: Settings,
        events: EventHub | None = None,
        slots: OperationSlots | None = None,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            multipart_uploads_enabled=True,
            # Legacy graphql-ws clients get "ka" messages; graphql-transport-ws clients ping and
            # Strawberry pongs; uvicorn pings at the WebSocket level under both.
            keep_alive=True,
            keep_alive_interval=settings.ws_keepalive_seconds,
        )
        self.services = services
        self.engine = services.engine
        self.settings = settings
        self.events = events
        self.connections = ConnectionLimits(settings.ws_connections_per_user, settings.ws_connections)
        # shared with the schema's RateLimitOperations, which takes them for operations over a WebSocket
        self.slots = slots or OperationSlots(settings.operations_per_user, settings.operation_wait_seconds)

    @overload
    async def run(self, request: Request, context: Context = UNSET, root_value: None = UNSET) -> Response: ...

    @overload
    async def run(self, request: WebSocket, context: Context = UNSET, root_value: None = UNSET) -> WebSocket: ...

    async def run(
        self, request: Request | WebSocket, context: Context = UNSET, root_value: None = UNSET
    ) -> Response | WebSocket:
        """Strawberry leaves a multipart request's uploads (spooled temporary files) open; close them,
        and the read session the request authenticated in if the operation did not."""
        try:
            if isinstance(request, WebSocket) or self.settings.request_timeout_seconds <= 0:
                return await super().run(request, context, root_value)
            timeout = RequestTimeout(self.settings.request_timeout_seconds, request.receive)
            request = Request(request.scope, timeout.receive)  # its body's arrival stops the clock
            try:
                async with timeout.clock:
                    return await super().run(request, context, root_value)
            except TimeoutError:  # what it ran is cancelled; on PostgreSQL statement_timeout ends it there too
                if not timeout.clock.expired():
                    raise
                log.warning("request cancelled after %g s", timeout.seconds)
                return timeout.response()
        finally:
            if isinstance(request, WebSocket):
                admitted: str | None = getattr(request.state, "admitted_user", None)
                if admitted is not None:
                    self.connections.release(admitted)
            else:
                # What get_context kept in request.state, read from the dict Starlette keeps it in
                # (``scope["state"]``) rather than through a new `State` and a missing key's AttributeError.
                held: dict[str, Any] = request.scope.get("state") or {}
                slot: str | None = held.get("slot")
                if slot is not None:
                    self.slots.leave(slot)
                reads: SharedReads | None = held.get("reads")
                if reads is not None:  # the operation never ran (a syntax error, say) or kept it open
                    await reads.close()
                await request.close()

    def decode_json(self, data: str | bytes) -> object:
        """Strictly (server.payloads): what is not JSON is 400 over HTTP, a refused message over a WebSocket."""
        return read_json(data)

    def parse_json(self, data: str | bytes) -> Any:
        """A request body, a GET's variables or a multipart part: each must be an object (or an array)."""
        value = super().parse_json(data)
        if not isinstance(value, dict | list):
            raise HTTPException(400, "the request must be a JSON object")
        return value

    async def parse_multipart(self, request: AsyncHTTPRequestAdapter) -> dict[str, str]:
        try:
            form = await request.get_form_data()
        except (ValueError, StarletteHTTPException) as exc:  # Starlette's own 400 would be plain text
            raise HTTPException(400, "Unable to parse the multipart body") from exc
        operations = form.form.get("operations", "{}")
        files_map = form.form.get("map", "{}")
        operations = self.parse_json(operations) if isinstance(operations, str | bytes) else operations
        files_map = self.parse_json(files_map) if isinstance(files_map, str | bytes) else files_map
        if (problem := files_map_problem(operations, files_map)) is not None:
            raise HTTPException(400, problem)
        try:
            return replace_placeholders_with_files(operations, files_map, form.files)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise HTTPException(400, "`map` names a file or a path the operations do not have") from exc

    def encode_json(self, data: object) -> str:
        # orjson writes a page's response several times faster than the standard library (the 50-task
        # inbox page: docs/adr/0009-orjson.md). Text, not bytes: Strawberry sends bytes to a WebSocket as
        # a binary frame, which graphql-ws clients refuse.
        try:
            return orjson.dumps(data).decode()
        except TypeError:  # what orjson refuses and JSON allows: integers beyond 64 bits
            return json.dumps(data, separators=(",", ":"))

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        context = Context(services=self.services, loaders=DataLoaders.create(self.engine), request=request,
                          response=response, events=self.events,
                          subscription_limit=self.settings.subscriptions_per_connection,
                          dev_tokens=self._dev_token if self.settings.dev else None)  # fmt: skip
        if isinstance(request, Request) and self.settings.request_timeout_seconds > 0:
            context.deadline = asyncio.get_running_loop().time() + self.settings.request_timeout_seconds
        if isinstance(request, Request):
            # A query goes on reading in the session the viewer was looked up in (schema.reads).
            context.request_reads = request.state.reads = SharedReads(self.engine.db)
            await self._authenticate(context, request.headers.get("authorization"), context.request_reads)
            if context.viewer is None and is_multipart(request.headers):
                # Refused before a byte of the body is read: an upload is only ever someone's, and
                # reading it first let anyone make the server spool hundreds of megabytes.
                error = context.authentication_error
                raise Refusal(
                    401, error.message if error is not None else "authentication required: send a bearer token",
                    {"WWW-Authenticate": "Bearer", "Connection": "close"}, code="UNAUTHENTICATED",
                )  # fmt: skip
            if is_multipart(request.headers):  # an upload is a mutation, which would close it anyway
                await context.request_reads.close()  # the body may take a while: hold no connection meanwhile
            await self._take_slot(context, request, context.request_reads)
        return context

    async def _take_slot(self, context: Context, request: Request, reads: SharedReads) -> None:
        """One of the user's operation slots (server.rate_limits), held until :meth:`run` ends."""
        key = client_key(context)
        if not self.slots.try_enter(key):
            await reads.close()  # a request waiting for its turn holds no pooled connection: that is the point
            if not await self.slots.enter(key):
                raise Refusal(
                    429, f"at most {self.slots.per_user} requests of one user at once: try again in 1 s",
                    {"Retry-After": "1"}, code=RATE_LIMITED,
                )  # fmt: skip
        request.state.slot = key

    def _dev_token(self, user_id: str) -> str:
        return issue_token(self.settings, user_id)

    async def _authenticate(self, context: Context, header: str | None, reads: SharedReads | None = None) -> None:
        try:
            if reads is None:
                context.viewer = await authenticate(self.engine, self.settings, header)
            else:
                async with reads.session() as session:
                    context.viewer = await authenticate(self.engine, self.settings, header, session)
        except AuthenticationError as exc:
            context.authentication_error = exc
        except UnavailableError as exc:  # the client did nothing wrong: 503, try again
            raise Refusal(503, exc.message, {"Retry-After": "5"}, code=exc.code) from exc

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """WebSockets authenticate in ``connection_init``'s payload; a bad token closes the connection."""
        params: dict[str, Any] = context.connection_params or {}
        header = params.get("authorization") or params.get("Authorization")
        try:
            await self._authenticate(context, header if isinstance(header, str) else None)
        except Refusal as unavailable:
            raise ConnectionRejectionError(
                {"message": unavailable.reason, "extensions": {"code": unavailable.code}}
            ) from None
        if context.authentication_error is not None or context.viewer is None:
            raise ConnectionRejectionError({"message": "authentication required"})
        refused = self.connections.admit(context.viewer.id)
        if refused is not None:
            raise ConnectionRejectionError({"message": refused, "extensions": {"code": "TOO_MANY_CONNECTIONS"}})
        context.request.state.admitted_user = context.viewer.id
        return await super().on_ws_connect(context)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(graphiql_html(request.url.path))
