"""Which subscription selections are executed once per event for every subscriber (schema/sharing.py):
only those reading plain fields and resolvers marked `same_for_every_viewer` where they are defined."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from graphql import FragmentDefinitionNode, GraphQLSchema, OperationDefinitionNode, parse

from schema.library_internals import graphql_schema_of
from schema.schema import build_schema
from schema.sharing import same_for_every_viewer, selection_is_same_for_every_viewer
from tests.server.test_subscription_fanout import NESTED, VIEWER_FIELDS


def shared(schema: GraphQLSchema, document: str) -> bool:
    parsed = parse(document)
    [operation] = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)}
    return selection_is_same_for_every_viewer(schema, operation, fragments)


def test_the_events_own_data_is_shared_and_what_the_viewer_may_do_is_not() -> None:
    schema = graphql_schema_of(build_schema())
    assert shared(schema, NESTED)
    as_fragment = "subscription { taskEvents { ...e } } fragment e on TaskEvent { kind task { documents { url } } }"
    assert shared(schema, as_fragment)
    assert not shared(schema, VIEWER_FIELDS)  # viewerCanClaim, viewerCanComplete
    visible_tasks = "subscription { taskEvents { task { step { tasks { totalCount } } } } }"
    assert not shared(schema, visible_tasks)


@strawberry.type
class Thing:
    plain: str

    @strawberry.field
    @same_for_every_viewer
    def marked(self) -> str:
        return "the same for everyone"

    @strawberry.field
    def added_later(self) -> str:  # a resolver nobody marked: it may read the viewer
        return "per viewer"


@strawberry.type
class Query:
    thing: Thing


@strawberry.type
class Subscription:
    @strawberry.subscription
    @same_for_every_viewer
    async def things(self) -> AsyncGenerator[Thing, None]:
        yield Thing(plain="x")


def test_a_field_not_marked_is_resolved_per_subscriber() -> None:
    schema = graphql_schema_of(strawberry.Schema(query=Query, subscription=Subscription))
    assert shared(schema, "subscription { things { plain marked __typename } }")
    assert not shared(schema, "subscription { things { plain addedLater } }")
    assert not shared(schema, "subscription { things { ... on Thing { addedLater } } }")
