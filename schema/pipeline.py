"""Everything the schema does around an operation, in one Strawberry extension.

In order, outermost first (the server's tracing runs around all of it):

1. **Operation limits** (schema/limits.py): the text's size and nesting before it is parsed, its
   tokens while it is parsed, the operations, repeats and cost before it is validated, depth and
   aliases as validation rules.
2. **Parsing and validation, once per document text**: clients send the same few documents over
   and over, and parsing and validating them again was most of GraphQL's overhead on a small page
   (bench/graphql_overhead.py, 1.4–2.1×). What a text's checks found is kept with it, so a repeated
   document costs a dictionary look-up (and its cost, which depends on ``first``, one per variables).
3. **Anonymous callers** (``STEPWISE_ANONYMOUS_INTROSPECTION`` off): no introspection, no "Did you
   mean …?" suggestions (schema/failures.py).
4. **Text a database cannot store** refused before any resolver runs (schema/failures.py).
5. **A query's one read session** (schema/reads.py) and the DataLoaders that read through it.
6. **Outages typed, bugs masked** (schema/failures.py), as the result leaves.

Around them, the server's **observer** (server/metrics.py: each operation counted and timed, a
subscription once it has started) and its **admission** (server/rate_limits.py: the rate limits,
checked as execution begins, and a WebSocket operation's slot, held while it runs) are called here,
not run as extensions of their own.

One extension, not one per concern: Strawberry makes a context manager of every hook of every
extension for each request (``strawberry/extensions/context.py``); the fourteen hooks these concerns
took as ten extensions were most of what ``{ me { id } }`` had grown by, and the metrics' and rate
limits' three hooks some 3% of it (bench.instructions, docs/performance.md).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    parse,
    specified_rules,
)
from graphql import OperationType as GraphQLOperationType
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from schema.context import Context
from schema.failures import SUGGESTION, literal_unstorable, outage, unavailable, unstorable
from schema.library_internals import graphql_schema_of, requested_operation_name, validate_document
from schema.limits import (
    ALIAS_ERROR,
    DEPTH_ERROR,
    MAX_REPEATS,
    TOKEN_ERROR,
    Cost,
    OperationLimits,
    code_limit_errors,
    limit_error,
    most_repeated,
    nesting,
)
from schema.loaders import DataLoaders
from schema.reads import SharedReads

DOCUMENTS = 512
"""Document texts remembered; past it the oldest is forgotten (unique texts cannot grow memory)."""
COSTS = 32
"""Costs remembered per document (one per distinct integer variables, as ``first`` is)."""


UNKNOWN = "unknown"
"""An operation's kind when its document did not parse or names no operation it has."""


class OperationObserver(Protocol):
    """Told of each operation as it ends (a subscription: once it has started), exactly once."""

    def operation_finished(
        self, execution: ExecutionContext, name: str | None, kind: str, seconds: float, failure: GraphQLError | None
    ) -> None:
        """``failure``: the error raised through the pipeline before any result (a syntax error), if one was."""


class OperationAdmission(Protocol):
    """Lets an operation execute, or refuses it with a :class:`GraphQLError`."""

    def admit(self, context: Any, kind: str) -> str | None:
        """Raise to refuse; return what was taken (a key) for :meth:`release` once the operation has run."""

    def release(self, taken: str) -> None: ...


@dataclass
class Prepared:
    """One document text once it parsed and passed its checks: what is known of it for the next request."""

    document: DocumentNode
    operations: list[OperationDefinitionNode]
    fragments: dict[str, FragmentDefinitionNode]
    repeated: int
    unstorable_literal: str | None
    errors: dict[bool, list[GraphQLError]] = field(default_factory=dict)
    """Validation errors, by whether the caller was an anonymous one the schema is hidden from."""
    costs: dict[object, int] = field(default_factory=dict)

    @classmethod
    def of(cls, document: DocumentNode) -> Prepared:
        definitions = document.definitions
        return cls(
            document,
            [d for d in definitions if isinstance(d, OperationDefinitionNode)],
            {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)},
            most_repeated(definitions),
            literal_unstorable(document),
        )

    def operation(self, named: str | None) -> OperationDefinitionNode | None:
        """The operation a request runs, as Strawberry picks it: the named one, else the first."""
        if named is None:
            return self.operations[0] if self.operations else None
        return next((o for o in self.operations if named in (None, o.name.value if o.name else None)), None)


class Pipeline:
    """One schema's settings and caches for :class:`OperationPipeline` (a new one each request)."""

    def __init__(
        self, limits: OperationLimits, *, mask_errors: bool, hide_from_anonymous: bool, cache_documents: bool,
        should_mask: Callable[[GraphQLError], bool], observer: OperationObserver | None = None,
        admission: OperationAdmission | None = None, phased: bool = False,
    ) -> None:  # fmt: skip
        self.limits = limits
        self.phased = phased
        self.observer = observer
        self.admission = admission
        self.hide_from_anonymous = hide_from_anonymous
        self.cache_documents = cache_documents
        self.should_mask = should_mask
        self.masking = MaskErrors(should_mask_error=should_mask) if mask_errors else None
        # Made once: each limiter makes a new rule class, and validation results are only as
        # reusable as the rules they were found with.
        rules = (
            *specified_rules,
            *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
            *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
        )
        self.rules = {False: rules, True: (*rules, NoSchemaIntrospectionCustomRule)}
        self.documents: dict[str, Prepared] = {}

    def extension(self) -> OperationPipeline:
        """The factory for the schema's ``extensions`` list."""
        return PhasedOperationPipeline(self) if self.phased else OperationPipeline(self)

    def prepare(self, query: str) -> Prepared:
        """``query`` checked and parsed, or refused with a limit's error (or the parser's)."""
        prepared = self.documents.get(query)
        if prepared is not None:
            return prepared
        limits = self.limits
        size = len(query.encode("utf-8", "surrogatepass"))
        if size > limits.max_document_bytes:
            raise limit_error("MAX_DOCUMENT_BYTES_EXCEEDED", f"the document is {size} bytes, over "
                              f"{limits.max_document_bytes}", limits.max_document_bytes)  # fmt: skip
        if nesting(query) > 2 * limits.max_depth + 8:  # two brackets a level, and room for input objects
            raise limit_error("MAX_DEPTH_EXCEEDED", f"the document is nested deeper than an operation of depth "
                              f"{limits.max_depth} can be", limits.max_depth)  # fmt: skip
        try:
            # graphql-core's lexer stops counting past max_tokens: a huge document is never parsed whole.
            document = parse(query, max_tokens=limits.max_tokens)
        except GraphQLError as error:
            code_limit_errors([error], TOKEN_ERROR, "MAX_TOKENS_EXCEEDED")
            raise
        prepared = Prepared.of(document)
        if self.cache_documents:
            if len(self.documents) >= DOCUMENTS:
                del self.documents[next(iter(self.documents))]
            self.documents[query] = prepared
        return prepared

    def check_operation(
        self, prepared: Prepared, chosen: OperationDefinitionNode | None, named: str | None,
        variables: dict[str, Any], schema: Any,
    ) -> None:  # fmt: skip
        """The operation to run (``chosen``): named when there are several, not repeating a field, within the cost."""
        operations = prepared.operations
        # Strawberry's `operation_name` falls back to the first operation's: it would run that one.
        if len(operations) > 1 and named is None:
            raise GraphQLError(
                f"the document has {len(operations)} operations: name the one to run in `operationName`",
                extensions={"code": "OPERATION_NAME_REQUIRED"},
            )
        if prepared.repeated > MAX_REPEATS:
            raise limit_error("MAX_REPEATS_EXCEEDED", f"a field is selected {prepared.repeated} times in one "
                              f"selection set; at most {MAX_REPEATS} are allowed", MAX_REPEATS)  # fmt: skip
        if chosen is None:
            return
        key = (named, *((k, v) for k, v in variables.items() if type(v) is int))
        cost = prepared.costs.get(key)
        if cost is None:
            graphql = graphql_schema_of(schema)
            root = graphql.get_root_type(chosen.operation)
            cost = Cost(graphql, prepared.fragments, variables, chosen).of(chosen.selection_set, root)
            if len(prepared.costs) >= COSTS:
                prepared.costs.clear()
            prepared.costs[key] = cost
        most = self.limits.max_cost
        if cost > most:
            raise limit_error("MAX_COST_EXCEEDED", f"the operation's estimated cost is {cost}; at most {most} "
                              "is allowed (lists count by `first`)", most, cost=cost)  # fmt: skip

    def validate(self, prepared: Prepared, schema: Any, hidden: bool) -> list[GraphQLError]:
        errors = prepared.errors.get(hidden)
        if errors is None:
            errors = validate_document(graphql_schema_of(schema), prepared.document, self.rules[hidden])
            code_limit_errors(errors, DEPTH_ERROR, "MAX_DEPTH_EXCEEDED")
            code_limit_errors(errors, ALIAS_ERROR, "MAX_ALIASES_EXCEEDED")
            if hidden:  # suggestions spell out field and type names one guess at a time
                for error in errors:
                    error.message = SUGGESTION.sub("", error.message)
            prepared.errors[hidden] = errors
        return list(errors)

    def finish(self, errors: list[GraphQLError], mask: bool) -> list[GraphQLError]:
        """A result's errors as they leave: outages typed ``UNAVAILABLE``, then bugs masked."""
        errors = [unavailable(error) if outage(error) else error for error in errors]
        masking = self.masking
        if mask and masking is not None:
            errors = [masking.anonymise_error(e) if self.should_mask(e) else e for e in errors]
        return errors


_KINDS = {
    GraphQLOperationType.QUERY: OperationType.QUERY,
    GraphQLOperationType.MUTATION: OperationType.MUTATION,
    GraphQLOperationType.SUBSCRIPTION: OperationType.SUBSCRIPTION,
}


class OperationPipeline(SchemaExtension):
    """The module docstring's steps, for one operation.

    The document is parsed (or found) and validated in :meth:`on_operation`, before Strawberry's own
    phases, which then find it parsed (``graphql_document`` set) and validated (``pre_execution_errors``
    set) and leave both alone, as they do for an ``on_parse`` and an ``on_validate`` hook: two hooks
    fewer, each a context manager per request (some 160 of the 3,300 Python calls of ``{ me { id } }``,
    bench.instructions). With a tracer, whose spans time the phases, :class:`PhasedOperationPipeline`
    does them in those hooks instead.
    """

    phased = False

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.prepared: Prepared | None = None
        self.operation: OperationDefinitionNode | None = None
        self.named: str | None = None
        self.hidden = False
        self.streamed = False
        self.observed = False

    def on_operation(self) -> Iterator[None]:
        pipeline = self.pipeline
        execution = self.execution_context
        observer = pipeline.observer
        began = time.perf_counter()
        self.named = requested_operation_name(execution)
        self.hidden = pipeline.hide_from_anonymous and getattr(execution.context, "viewer", None) is None
        failure: GraphQLError | None = None
        try:
            # Without a document Strawberry refuses the request (MissingQueryError), and it refuses an
            # operation the document lacks or the transport does not allow (a mutation over GET) before
            # validating: left to it, as they were.
            if not self.phased and (execution.query or execution.graphql_document is not None):
                self._parse()
                operation = self.operation
                if operation is not None and _KINDS[operation.operation] in execution.allowed_operations:
                    self._validate()
            yield
            result = execution.result
            if result is not None and result.errors:  # a subscription's events were masked as they went
                result.errors = pipeline.finish(result.errors, mask=not self.streamed)
        except GraphQLError as error:  # a refused document is raised through the hooks, before any result
            failure = error
            raise
        finally:
            if observer is not None and not self.observed:
                self._observed(observer, time.perf_counter() - began, failure)

    def _observed(self, observer: OperationObserver, seconds: float, failure: GraphQLError | None = None) -> None:
        self.observed = True
        operation = self.operation
        kind = operation.operation.value if operation is not None else UNKNOWN
        name = self.named
        if name is None and operation is not None and operation.name is not None:
            name = operation.name.value  # as Strawberry's `operation_name` falls back to the first operation's
        observer.operation_finished(self.execution_context, name, kind, seconds, failure)

    def _parse(self) -> None:
        execution = self.execution_context
        if execution.graphql_document is None:
            self.prepared = self.pipeline.prepare(execution.query or "")
            execution.graphql_document = self.prepared.document
        else:  # given parsed: checked, not remembered
            self.prepared = Prepared.of(execution.graphql_document)
        self.operation = self.prepared.operation(self.named)

    def _validate(self) -> None:
        execution = self.execution_context
        prepared = self.prepared
        assert prepared is not None, "validation follows parsing"
        pipeline = self.pipeline
        pipeline.check_operation(prepared, self.operation, self.named, execution.variables or {}, execution.schema)
        execution.pre_execution_errors = pipeline.validate(prepared, execution.schema, self.hidden)

    async def on_execute(self) -> AsyncIterator[None]:
        began = time.perf_counter()
        execution = self.execution_context
        context: Context = execution.context
        operation = self.operation
        assert operation is not None, "Strawberry executes only an operation the document has"
        admission = self.pipeline.admission
        taken = admission.admit(context, operation.operation.value) if admission is not None else None
        try:
            where = unstorable(execution.variables or {}, "variables")
            if where is not None:
                where = where.removeprefix("variables.")
            elif self.prepared is not None:
                where = self.prepared.unstorable_literal
            if where is not None:
                raise GraphQLError(
                    f"{where}: text may not contain NUL characters or unpaired surrogates",
                    extensions={"code": "VALIDATION_FAILED", "field": where},
                )
            authenticated_in, context.request_reads = context.request_reads, None
            if operation.operation is not GraphQLOperationType.QUERY:
                if authenticated_in is not None:  # not held open while a mutation works
                    await authenticated_in.close()
                yield
                # A subscription lasts as long as it does, and a client's disconnecting ends it without
                # the code after on_operation's yield: it is observed once it has started.
                observer = self.pipeline.observer
                if operation.operation is GraphQLOperationType.SUBSCRIPTION and observer is not None:
                    self._observed(observer, time.perf_counter() - began)
                return
            reads = authenticated_in or SharedReads(context.engine.db)
            context.reads, context.loaders = reads, DataLoaders.create(context.engine, reads.session)
            try:
                yield
            finally:
                context.reads = None
                await reads.close()
        finally:
            if taken is not None and admission is not None:
                admission.release(taken)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        self.streamed = True
        masking = self.pipeline.masking
        if masking is not None and result.errors:
            result.errors = [masking.anonymise_error(e) if self.pipeline.should_mask(e) else e for e in result.errors]
        yield


class PhasedOperationPipeline(OperationPipeline):
    """:class:`OperationPipeline` parsing and validating in Strawberry's phases, for a tracer's spans of them."""

    phased = True

    def on_parse(self) -> Iterator[None]:
        self._parse()
        yield

    def on_validate(self) -> Iterator[None]:
        self._validate()
        yield
