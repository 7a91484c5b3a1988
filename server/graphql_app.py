"""The GraphQL endpoint: Strawberry's ASGI app with our context, authentication and GraphiQL page."""

from __future__ import annotations

from typing import Any

import strawberry
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from engine.errors import AuthenticationError
from engine.runner import Engine
from schema.context import Context
from schema.loaders import DataLoaders
from server.auth import authenticate
from server.graphiql import graphiql_html
from server.settings import Settings


class StepwiseGraphQL(GraphQL[Context, None]):
    def __init__(self, schema: strawberry.Schema, engine: Engine, settings: Settings) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
        )
        self.engine = engine
        self.settings = settings

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        context = Context(engine=self.engine, loaders=DataLoaders.create(self.engine), request=request,
                          response=response)  # fmt: skip
        if isinstance(request, Request):
            await self._authenticate(context, request.headers.get("authorization"))
        return context

    async def _authenticate(self, context: Context, header: str | None) -> None:
        try:
            context.viewer = await authenticate(self.engine, self.settings, header)
        except AuthenticationError as exc:
            context.authentication_error = exc

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """WebSockets authenticate in ``connection_init``'s payload; a bad token closes the connection."""
        params: dict[str, Any] = context.connection_params or {}
        header = params.get("authorization") or params.get("Authorization")
        await self._authenticate(context, header if isinstance(header, str) else None)
        if context.authentication_error is not None or context.viewer is None:
            raise ConnectionRejectionError({"message": "authentication required"})
        return await super().on_ws_connect(context)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(graphiql_html(request.url.path))
