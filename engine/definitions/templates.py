"""Templates (``{{ ... }}``) and ``when`` conditions: never Python ``eval``.

Templates render in Jinja2's sandbox with chainable undefined values, so a missing variable renders
empty instead of crashing the engine. Conditions are JMESPath expressions over the same data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.meta
import jmespath
import jmespath.exceptions
import jmespath.functions
from jinja2.sandbox import ImmutableSandboxedEnvironment

log = logging.getLogger(__name__)

_ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=False)
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)


class TemplateSyntaxError(ValueError):
    """A template or condition that does not parse."""


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


@lru_cache(maxsize=4096)
def _compile_template(source: str) -> jinja2.Template:
    try:
        return _ENVIRONMENT.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateSyntaxError(f"template {source!r} does not parse: {exc.message}") from exc


@lru_cache(maxsize=4096)
def _compile_expression(source: str) -> Any:
    try:
        return _ENVIRONMENT.compile_expression(source, undefined_to_none=True)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateSyntaxError(f"expression {{{{{source}}}}} does not parse: {exc.message}") from exc


def check_template(source: str) -> None:
    """Raise :class:`TemplateSyntaxError` if ``source`` does not parse."""
    match = _SINGLE_EXPRESSION.match(source)
    if match:
        _compile_expression(match.group("expr"))
    else:
        _compile_template(source)


def variables_named(value: Any) -> set[str]:
    """The variables the templates in ``value`` (any JSON value) read, e.g. ``{"secrets", "expense"}``."""
    if isinstance(value, str):
        if not is_template(value):
            return set()
        try:
            return set(jinja2.meta.find_undeclared_variables(_ENVIRONMENT.parse(value)))
        except jinja2.TemplateSyntaxError:
            return set()  # reported as a syntax error by check_template
    if isinstance(value, Mapping):
        return set().union(*(variables_named(item) for item in value.values()))
    if isinstance(value, list | tuple):
        return set().union(*(variables_named(item) for item in value))
    return set()


def render_text(source: str | None, context: Mapping[str, Any]) -> str:
    """Render a text template; failures at render time render empty rather than stop a workflow."""
    if not source:
        return ""
    if not is_template(source):
        return source
    try:
        return _compile_template(source).render(context)
    except TemplateSyntaxError:
        raise
    except Exception as exc:  # a sandbox refusal or a type error inside the template
        log.warning("template %r failed to render: %s", source, exc)
        return ""


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside a JSON value.

    A string that is exactly one ``{{ expression }}`` keeps the expression's native JSON type, so
    ``"{{ expense.amount }}"`` stays a number. Render errors propagate: a system task's configuration
    must not silently lose a value.
    """
    if isinstance(value, str):
        if not is_template(value):
            return value
        match = _SINGLE_EXPRESSION.match(value)
        if match:
            result = _compile_expression(match.group("expr"))(**context)
            return _jsonable(result)
        return _compile_template(value).render(context)
    if isinstance(value, Mapping):
        return {key: render_value(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(item, context) for item in value]
    return value


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


@lru_cache(maxsize=4096)
def compile_condition(source: str) -> jmespath.parser.ParsedResult:
    """Compile a ``when`` condition, raising :class:`TemplateSyntaxError` if it does not parse.

    JMESPath only looks functions up when it evaluates, so an unknown function (``lenght(x)``) or a
    wrong argument count would otherwise pass deploy and make the condition silently false at run time.
    """
    try:
        parsed = jmespath.compile(source)
    except jmespath.exceptions.JMESPathError as exc:
        raise TemplateSyntaxError(f"condition {source!r} does not parse: {exc}") from exc
    problem = _function_problem(parsed.parsed)
    if problem:
        raise TemplateSyntaxError(f"condition {source!r} does not parse: {problem}")
    return parsed


def _function_problem(ast: Mapping[str, Any]) -> str | None:
    """The first call in a JMESPath syntax tree to an unknown function or with the wrong argument count."""
    if ast.get("type") == "function_expression":
        name, arguments = ast["value"], len(ast["children"])
        known = jmespath.functions.Functions.FUNCTION_TABLE.get(name)
        if known is None:
            return f"unknown function {name}()"
        signature = known["signature"]
        variadic = any(argument.get("variadic") for argument in signature)
        if arguments < len(signature) or (arguments > len(signature) and not variadic):
            expected = f"at least {len(signature)}" if variadic else str(len(signature))
            return f"{name}() takes {expected} argument(s), not {arguments}"
    for child in ast.get("children", ()):
        if isinstance(child, Mapping):
            problem = _function_problem(child)
            if problem:
                return problem
    return None


def evaluate_condition(source: str, data: Mapping[str, Any]) -> bool:
    """JMESPath truthiness: false, null and empty strings, lists and objects are false.

    A condition that fails on the data is false, never an error: jmespath orders a number against a
    string with Python's ``>`` (``TypeError``), and ``ValueError`` covers a ``TemplateSyntaxError``
    from a definition deployed before :func:`compile_condition` checked function names.
    """
    try:
        result = compile_condition(source).search(data)
    except (jmespath.exceptions.JMESPathError, TypeError, ValueError) as exc:
        log.warning("condition %r failed: %s", source, exc)
        return False
    # Not ``result not in (None, False, "", [], {})``: ``0 == False`` in Python, but numbers are true in JMESPath.
    return not (result is None or result is False or (isinstance(result, str | list | dict) and not result))
