"""The schema object: queries, mutations and subscriptions, with bugs masked and authentication errors kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig

from engine import FastPaths
from schema.directory import DevSignInMutations, DirectoryQueries
from schema.execution import prepare
from schema.failures import StepwiseSchema
from schema.library_internals import graphql_schema_of
from schema.limits import OperationLimits
from schema.mutations.action_approvals import ActionApprovalMutations, ActionApprovalQueries
from schema.mutations.bulk import BulkTaskMutations
from schema.mutations.documents import DocumentMutations
from schema.mutations.tasks import TaskMutations
from schema.mutations.webhooks import WebhookMutations
from schema.mutations.workflows import WorkflowMutations
from schema.pipeline import OperationAdmission, OperationObserver, Pipeline
from schema.queries import Query
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
    observer: OperationObserver | None = None,
    admission: OperationAdmission | None = None,
) -> strawberry.Schema:
    """``instruments``: the server's tracing extension (a factory), run around everything else.
    ``observer`` and ``admission``: the server's metrics and rate limits, which the pipeline calls
    (schema.pipeline).
    ``fast_execution``: the executor shortcut (:mod:`schema.execution`, ``STEPWISE_FAST_EXECUTION``; by
    default as that variable says); off, every field goes through its resolver. ``limits``: what one
    operation may ask (schema.limits; the defaults when not given). ``anonymous_introspection``: off, an
    anonymous caller may not introspect nor read field suggestions (schema.failures). ``cache_documents``:
    off, every request parses and validates its document (bench/graphql_overhead.py's lever)."""
    pipeline = Pipeline(
        limits or OperationLimits(), mask_errors=mask_errors, hide_from_anonymous=not anonymous_introspection,
        cache_documents=cache_documents, should_mask=_should_mask, observer=observer, admission=admission,
        phased=bool(instruments),  # a tracer's spans time parsing and validation
    )  # fmt: skip
    extensions: list[Any] = [*instruments, pipeline.extension]
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
