"""The schema object: queries, mutations and subscriptions, with bugs masked and authentication errors kept."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, ParserCache, SchemaExtension, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types.graphql import OperationType

from engine import FastPaths
from schema.context import Context
from schema.directory import DevSignInMutations, DirectoryQueries
from schema.execution import prepare
from schema.failures import HideSchemaFromAnonymous, RefuseUnstorableText, StepwiseSchema, TypeOutages
from schema.library_internals import graphql_schema_of
from schema.limits import OperationLimits, limit_extensions
from schema.loaders import DataLoaders
from schema.mutations.action_approvals import ActionApprovalMutations, ActionApprovalQueries
from schema.mutations.bulk import BulkTaskMutations
from schema.mutations.documents import DocumentMutations
from schema.mutations.tasks import TaskMutations
from schema.mutations.webhooks import WebhookMutations
from schema.mutations.workflows import WorkflowMutations
from schema.queries import Query
from schema.reads import SharedReads
from schema.subscriptions import Subscription, SubscriptionExecutionContext
from schema.types.webhooks import WebhookQueries


@strawberry.type
class Mutation(
    WorkflowMutations,
    TaskMutations,
    BulkTaskMutations,
    DocumentMutations,
    DevSignInMutations,
    WebhookMutations,
    ActionApprovalMutations,
):
    pass


@strawberry.type(name="Query")
class RootQuery(Query, DirectoryQueries, WebhookQueries, ActionApprovalQueries):
    pass


class ShareReadsPerQuery(SchemaExtension):
    """Gives each query operation a :class:`SharedReads`, and DataLoaders that read through it."""

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context: Context = execution.context
        authenticated_in, context.request_reads = context.request_reads, None
        if execution.operation_type is not OperationType.QUERY:
            if authenticated_in is not None:  # not held open while a mutation works
                await authenticated_in.close()
            yield
            return
        reads = authenticated_in or SharedReads(context.engine.db)
        context.reads, context.loaders = reads, DataLoaders.create(context.engine, reads.session)
        try:
            yield
        finally:
            context.reads = None
            await reads.close()


def _should_mask(error: GraphQLError) -> bool:
    """Keep errors clients must act on (authentication, malformed requests); mask bugs.

    An error without a path never reached a resolver: it is a parse, validation or variable-coercion
    error about the client's own request (``Variable '$first' got invalid value``), so it is shown.
    """
    if error.original_error is None or error.path is None:
        return False
    return not (error.extensions or {}).get("code")


def build_schema(
    mask_errors: bool = True,
    cache_documents: bool = True,
    instruments: Sequence[Any] = (),
    fast_execution: bool | None = None,
    limits: OperationLimits | None = None,
    anonymous_introspection: bool = True,
) -> strawberry.Schema:
    """``instruments``: the server's metrics and tracing extensions (factories), run around everything else.
    ``fast_execution``: the executor shortcut (:mod:`schema.execution`, ``STEPWISE_FAST_EXECUTION``; by
    default as that variable says); off, every field goes through its resolver. ``limits``: what one
    operation may ask (schema.limits; the defaults when not given). ``anonymous_introspection``: off, an
    anonymous caller may not introspect nor read field suggestions (schema.failures)."""
    extensions: list[Any] = [
        *instruments, *limit_extensions(limits or OperationLimits()), RefuseUnstorableText, ShareReadsPerQuery,
        *([] if anonymous_introspection else [HideSchemaFromAnonymous]),
    ]  # fmt: skip
    if cache_documents:
        # Clients send the same few documents over and over; parsing and validating them again is most
        # of GraphQL's overhead on a small page (bench/graphql_overhead.py measures it, 1.4–2.1×).
        extensions += [lambda: ParserCache(maxsize=512), lambda: ValidationCache(maxsize=512)]
    if mask_errors:
        extensions.append(lambda: MaskErrors(should_mask_error=_should_mask))
    extensions.append(TypeOutages)  # after MaskErrors, so it sees an outage before it is masked
    schema = StepwiseSchema(
        query=RootQuery,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(auto_camel_case=True),
        # One event to many subscribers: executed once where that is sound, without graphql-core's
        # per-event memo growing for a subscription's life. Queries and mutations run as before.
        execution_context_class=SubscriptionExecutionContext,
    )
    if fast_execution if fast_execution is not None else FastPaths.from_env().execution:
        prepare(graphql_schema_of(schema))
    return schema
