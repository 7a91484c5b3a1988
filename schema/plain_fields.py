"""Which fields the executor shortcut (``schema/execution.py``) completes itself, found once per schema.

:func:`schema.execution.prepare` stores what each finder here returns in the schema's ``extensions``
under its key; :class:`schema.execution.PlainFieldsExecutionContext` reads them. Each finder reads
Strawberry's definition of a field (``schema/library_internals.py``) and keeps only what needs no
resolver call: plain attributes, prefetched relations, and lists of objects held as plain attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    get_nullable_type,
)
from strawberry.types.field import StrawberryField

from schema.library_internals import strawberry_definition_of

PLAIN_LEAVES = "stepwise.plain-leaves"
DIRECT_OBJECTS = "stepwise.direct-objects"
ENUM_NAMES = "stepwise.enum-names"
DIRECT_LISTS = "stepwise.direct-lists"
_ABSENT = object()


class Prefetching(Protocol):
    """A type whose rows may carry relations their page loaded for all of them (by Python field name)."""

    PREFETCHABLE: ClassVar[frozenset[str]]
    prefetched: dict[str, object]


# (attribute name, the leaf type that serializes it)
Leaf = tuple[str, GraphQLScalarType | GraphQLEnumType]


# (attribute name, whether it is read from the row's ``prefetched``)
DirectObject = tuple[str, bool]


def _fields(schema: GraphQLSchema) -> Iterator[tuple[GraphQLObjectType, str, GraphQLField, StrawberryField]]:
    """Every field of the API's object types that Strawberry defined and that takes no argument and has
    no field extension: the fields the shortcut may take over (each finder below narrows them)."""
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        for name, field in type_.fields.items():
            definition = strawberry_definition_of(field)
            if isinstance(definition, StrawberryField) and not definition.extensions and not field.args:
                yield type_, name, field, definition


def _read_as_attribute(definition: StrawberryField) -> bool:
    """What Strawberry calls a basic field (no resolver, no extension) read with ``getattr``."""
    return definition.is_basic_field and definition.default_resolver is getattr


def plain_leaves(schema: GraphQLSchema) -> dict[str, dict[str, Leaf]]:
    """Per object type, its fields that are a plain attribute of a scalar or enum type.

    Plain means what Strawberry itself calls a basic field (``StrawberryField.is_basic_field``: no
    resolver, no field extension, no permission) read with ``getattr`` (the default resolver) and
    taking no arguments.
    """
    found: dict[str, dict[str, Leaf]] = {}
    for type_, name, field, definition in _fields(schema):
        leaf = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        if _read_as_attribute(definition) and isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
            found.setdefault(type_.name, {})[name] = (definition.python_name, leaf)
    return found


def enum_names(schema: GraphQLSchema) -> dict[str, dict[int, str]]:
    """Per enum type backed by a Python enum, each member's name in the API, by the member's ``id``.

    Strawberry's ``coerce_output_value`` finds a member's name by comparing its value with each of the
    type's values in turn (``strawberry/schema/schema_converter.py``, ``CustomGraphQLEnumType``): for a
    50-task page's three enum leaves a task, 150 scans of up to nine values, some 900 Python calls. The
    names are what that method gives for each member, asked once here; members are singletons, so their
    ``id`` is a key that needs no ``__hash__`` call. A value that is not a member (a wrong one
    included) still goes through the method, which reports it."""
    found: dict[str, dict[int, str]] = {}
    for type_ in schema.type_map.values():
        members = getattr(type_, "wrapped_cls", None)
        if not isinstance(type_, GraphQLEnumType) or members is None:
            continue
        names = found[type_.name] = {}
        for member in members:
            try:
                names[id(member)] = type_.coerce_output_value(member)
            except (ValueError, GraphQLError):  # not in the API: the method reports it when it is returned
                continue
    return found


def serve_prefetched(schema: GraphQLSchema) -> None:
    """Answer the ``PREFETCHABLE`` fields of :class:`Prefetching` types from ``prefetched`` when it has them.

    Only fields without field extensions qualify: a permission check must never be skipped.
    """
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType):
            continue
        origin = getattr(strawberry_definition_of(type_), "origin", None)
        names: frozenset[str] = getattr(origin, "PREFETCHABLE", frozenset())
        served = set()
        for field in type_.fields.values():
            definition = strawberry_definition_of(field)
            if isinstance(definition, StrawberryField) and definition.python_name in names:
                if definition.extensions or field.resolve is None:
                    raise TypeError(f"{type_.name}.{definition.python_name} cannot be prefetched: it has extensions")
                field.resolve = _prefetched_or(definition.python_name, field.resolve)
                served.add(definition.python_name)
        if served != names:
            raise TypeError(f"{type_.name} names unknown fields as prefetchable: {sorted(names - served)}")


def direct_objects(schema: GraphQLSchema) -> dict[str, dict[str, DirectObject]]:
    """Per object type, its fields of an object type whose value needs no resolver call.

    That is a plain attribute (as in :func:`plain_leaves`) or a field a page prefetches (see
    :func:`serve_prefetched`), of an object type that does not check its values (``is_type_of``);
    not a list, no arguments, no field extension.
    """
    found: dict[str, dict[str, DirectObject]] = {}
    for type_, name, field, definition in _fields(schema):
        target = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        if not isinstance(target, GraphQLObjectType) or target.is_type_of is not None:
            continue
        origin = getattr(strawberry_definition_of(type_), "origin", None)
        if definition.python_name in getattr(origin, "PREFETCHABLE", frozenset()):
            found.setdefault(type_.name, {})[name] = (definition.python_name, True)
        elif _read_as_attribute(definition):
            found.setdefault(type_.name, {})[name] = (definition.python_name, False)
    return found


def direct_lists(schema: GraphQLSchema) -> dict[str, dict[str, str]]:
    """Per object type, its plain attributes (as in :func:`plain_leaves`) that are a list of an object
    type that does not check its values (``TaskConnection.edges``), by field name: their attribute.

    graphql-core completes each item of such a list through ``complete_list_item_value``,
    ``complete_value`` (twice, for the non-null wrapper), ``complete_object_value`` and
    ``collect_and_execute_subfields`` before the executor's own loop; here each item's selection
    goes to it directly."""
    found: dict[str, dict[str, str]] = {}
    for type_, name, field, definition in _fields(schema):
        listed = get_nullable_type(field.type)
        item = get_nullable_type(listed.of_type) if isinstance(listed, GraphQLList) else None
        if _read_as_attribute(definition) and isinstance(item, GraphQLObjectType) and item.is_type_of is None:
            found.setdefault(type_.name, {})[name] = definition.python_name
    return found


def _prefetched_or(name: str, resolve: Callable[..., Any]) -> Callable[..., Any]:
    def resolve_prefetched(source: Prefetching, info: Any, **arguments: Any) -> Any:
        found = source.prefetched.get(name, _ABSENT)
        return resolve(source, info, **arguments) if found is _ABSENT else found

    return resolve_prefetched
