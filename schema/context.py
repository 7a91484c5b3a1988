"""The typed per-request context: who is asking, the engine, its services and the DataLoaders."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info as StrawberryInfo

from engine import (
    AuthenticationError,
    BulkTaskService,
    DocumentService,
    Engine,
    EventHub,
    Services,
    TaskService,
    User,
    VisibilityService,
    WorkflowService,
)
from schema.loaders import DataLoaders
from schema.reads import SharedReads


@dataclass
class Context:
    services: Services
    """The app's services, built once (engine.Services): every resolver goes through them."""
    loaders: DataLoaders
    viewer: User | None = None
    authentication_error: AuthenticationError | None = None
    request: Any = None
    response: Any = None
    connection_params: dict[str, Any] = field(default_factory=dict)
    events: EventHub | None = None
    subscription_limit: int | None = None
    """Live subscriptions allowed on one connection (a WebSocket's context lasts the connection)."""
    live_subscriptions: int = 0
    dev_tokens: Callable[[str], str] | None = None
    """Issues a bearer token for a user id (``devSignIn``); set only when the server runs with STEPWISE_DEV."""
    deadline: float | None = None
    """The event-loop time by which an HTTP request must have answered (the request timeout), if any."""
    reads: SharedReads | None = None
    """A query's one read session (see schema.reads); None outside queries."""
    request_reads: SharedReads | None = None
    """The read session an HTTP request authenticated in, until the operation starts: a query
    takes it over as :attr:`reads`, anything else closes it first (schema.reads)."""

    @property
    def user(self) -> User:
        """The signed-in user; raises (a top-level error) when the request is not authenticated."""
        if self.viewer is None:
            raise self.authentication_error or AuthenticationError("authentication required: send a bearer token")
        return self.viewer

    def read(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session to read in: the query's shared one where there is one, else one of its own."""
        return self.reads.session() if self.reads is not None else self.engine.db.read()

    @property
    def engine(self) -> Engine:
        return self.services.engine

    @property
    def workflows(self) -> WorkflowService:
        return self.services.workflows

    @property
    def tasks(self) -> TaskService:
        return self.services.tasks

    @property
    def bulk(self) -> BulkTaskService:
        return self.services.bulk

    @property
    def visibility(self) -> VisibilityService:
        return self.services.visibility

    @property
    def documents(self) -> DocumentService:
        if self.services.documents is None:
            raise RuntimeError("this app has no blob store: documents cannot be uploaded")
        return self.services.documents


Info = StrawberryInfo[Context, None]
