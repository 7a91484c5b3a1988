"""Expected errors live in the schema as union members implementing ``Error``; bugs go to ``errors``."""

from __future__ import annotations

from typing import TypeVar, overload

import strawberry

from engine import errors


@strawberry.interface(description="An expected failure; `code` is stable, `message` is for people.")
class Error:
    message: str
    code: str


@strawberry.type
class FieldError:
    field: str
    message: str
    code: str


@strawberry.type(description="No such object, or the viewer may not see it.")
class NotFound(Error):
    pass


@strawberry.type(description="The viewer may see the object but not do this.")
class Forbidden(Error):
    pass


@strawberry.type(description="Someone else changed it first, or it was already done.")
class Conflict(Error):
    pass


@strawberry.type(description="The object's state does not allow this.")
class InvalidState(Error):
    pass


@strawberry.type(description="The input is invalid; `fieldErrors` names every offending field.")
class ValidationFailed(Error):
    field_errors: list[FieldError]


@strawberry.type(
    description="Something the request needs (the database, the files directory) is not answering; try again later."
)
class Unavailable(Error):
    pass


ErrorResult = NotFound | Forbidden | Conflict | InvalidState | ValidationFailed


def to_error(exc: errors.StepwiseError) -> ErrorResult:
    """The schema error for an engine error; a concurrency give-up reads as a conflict."""
    if isinstance(exc, errors.ValidationError):
        return ValidationFailed(
            message=exc.message,
            code=exc.code,
            field_errors=[FieldError(field=f.field, message=f.message, code=f.code) for f in exc.field_errors],
        )
    if isinstance(exc, errors.NotFoundError):
        return NotFound(message=exc.message, code=exc.code)
    if isinstance(exc, errors.ForbiddenError):
        return Forbidden(message=exc.message, code=exc.code)
    if isinstance(exc, errors.ConflictError | errors.ConcurrentUpdateError):
        code = exc.code if isinstance(exc, errors.ConflictError) else errors.ConflictError.code
        return Conflict(message=exc.message, code=code)
    if isinstance(exc, errors.InvalidStateError):
        return InvalidState(message=exc.message, code=exc.code)
    raise exc


A = TypeVar("A", bound=ErrorResult)
B = TypeVar("B", bound=ErrorResult)
C = TypeVar("C", bound=ErrorResult)
D = TypeVar("D", bound=ErrorResult)


@overload
def narrowed(exc: errors.StepwiseError, a: type[A], /) -> A: ...
@overload
def narrowed(exc: errors.StepwiseError, a: type[A], b: type[B], /) -> A | B: ...
@overload
def narrowed(exc: errors.StepwiseError, a: type[A], b: type[B], c: type[C], /) -> A | B | C: ...
@overload
def narrowed(exc: errors.StepwiseError, a: type[A], b: type[B], c: type[C], d: type[D], /) -> A | B | C | D: ...
def narrowed(exc: errors.StepwiseError, *members: type[Error]) -> Error:
    """The schema error for ``exc`` if it is one of ``members`` (the field's union); any other the service
    cannot raise, so it is a bug and is raised as one, rather than answered with a type the union lacks."""
    error = to_error(exc)
    if not isinstance(error, members):
        raise exc
    return error
