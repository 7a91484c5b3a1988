"""Resolvers whose value cannot depend on who asks, marked where they are defined.

One event pushed to many subscribers is executed once for all of them whose selection and variables
are the same and read nothing but plain fields and resolvers marked :func:`same_for_every_viewer`
(``SubscriptionExecutionContext`` in :mod:`schema.subscriptions`). A resolver that is not marked
(``viewerCanClaim``, the visibility-filtered ``tasks``, whatever is added later) makes the
selection executed per subscriber: slower, never wrong. So mark a resolver only when it reads the
object's own data, through the context's DataLoaders (for an event, the event's shared ones), and
nothing of the viewer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)
from strawberry.types.field import StrawberryField

from schema.library_internals import resolver_function_of, strawberry_definition_of

F = TypeVar("F", bound=Callable[..., Any])
SAME_FOR_EVERY_VIEWER = "__stepwise_same_for_every_viewer__"
"""The attribute :func:`same_for_every_viewer` sets on a resolver function."""


def same_for_every_viewer(resolver: F) -> F:
    """Mark ``resolver`` as one whose value is the same whoever asks (below ``@strawberry.field``)."""
    setattr(resolver, SAME_FOR_EVERY_VIEWER, True)
    return resolver


def is_same_for_every_viewer(definition: StrawberryField) -> bool:
    """A plain field (no resolver of its own), or one whose resolver is marked."""
    function = resolver_function_of(definition)
    return function is None or getattr(function, SAME_FOR_EVERY_VIEWER, False) is True


def selection_is_same_for_every_viewer(
    schema: GraphQLSchema, operation: OperationDefinitionNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> bool:
    """Whether ``operation`` (a subscription) selects nothing whose value may differ between viewers."""

    def walk(parent: GraphQLObjectType, selection_set: SelectionSetNode) -> bool:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                if name == "__typename":
                    continue
                found = parent.fields.get(name)
                definition = strawberry_definition_of(found) if found else None
                if not isinstance(definition, StrawberryField) or not is_same_for_every_viewer(definition):
                    return False
                assert found is not None
                child = get_named_type(found.type)
                if selection.selection_set is not None and not (
                    isinstance(child, GraphQLObjectType) and walk(child, selection.selection_set)
                ):
                    return False
            else:
                if isinstance(selection, InlineFragmentNode):
                    condition, selections = selection.type_condition, selection.selection_set
                elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
                    fragment = fragments[selection.name.value]
                    condition, selections = fragment.type_condition, fragment.selection_set
                else:
                    return False
                target = schema.get_type(condition.name.value) if condition is not None else parent
                if not (isinstance(target, GraphQLObjectType) and walk(target, selections)):
                    return False
        return True

    root = schema.subscription_type
    return root is not None and walk(root, operation.selection_set)
