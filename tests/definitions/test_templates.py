"""Templates and conditions: the sandbox holds, missing data renders empty, native types survive, no eval.

``engine.definitions.templates`` documents two behaviours for a refused or failing template: ``render_text``
(titles, descriptions) renders the whole text empty; ``render_value`` (system-task config) lets the
error propagate so a task never silently loses a value. A single ``{{ expression }}`` whose access is
refused renders ``None`` there.
"""

from __future__ import annotations

import builtins
from typing import Any

import pytest
from jinja2.exceptions import SecurityError

from engine.definitions.templates import (
    TemplateSyntaxError,
    check_template,
    compile_condition,
    evaluate_condition,
    is_template,
    render_text,
    render_value,
)


class Spy:
    """Records every call of its methods, so a test can prove a template never ran them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _private(self) -> str:
        self.calls.append("_private")
        return "leaked"

    def __repr__(self) -> str:
        return "<Spy>"


ESCAPES = [
    "{{ x.__class__.__mro__ }}",
    "{{ x.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].system('true') }}",
    "{{ spy._private() }}",
    "{{ spy.__dict__ }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c.__name__ }}{% endfor %}",
]


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
def context(spy: Spy) -> dict[str, Any]:
    return {"x": {"a": 1}, "spy": spy, "expense": {"amount": 12.5, "tags": ["a", "b"]}}


@pytest.mark.parametrize("template", ESCAPES)
def test_attribute_escapes_render_empty_text_and_never_execute(
    template: str, context: dict[str, Any], spy: Spy, caplog: pytest.LogCaptureFixture
) -> None:
    rendered = render_text(f"before {template} after", context)
    assert rendered in ("", "before  after")  # refused attribute → undefined, or the render is abandoned
    for leak in ("class", "object", "subclasses", "module", "leaked", "builtins", "uid="):
        assert leak not in rendered
    assert spy.calls == []


@pytest.mark.parametrize("template", ESCAPES)
def test_attribute_escapes_in_values_are_refused(template: str, context: dict[str, Any], spy: Spy) -> None:
    try:
        result = render_value({"url": template}, context)
    except SecurityError:
        result = None  # documented: render errors in config values propagate
    else:
        assert result["url"] in (None, ""), result
    assert spy.calls == []


def test_a_refused_call_in_a_value_raises_security_error(context: dict[str, Any]) -> None:
    with pytest.raises(SecurityError, match="unsafe"):
        render_value("{{ ''.__class__.__mro__[1].__subclasses__() }}", context)


def test_templates_cannot_mutate_the_data(context: dict[str, Any]) -> None:
    assert render_text("{{ x.update({'a': 2}) }}{{ expense.tags.append('c') }}", context) == ""
    with pytest.raises(SecurityError):
        render_value("{{ x.update({'a': 2}) }}", context)
    assert context["x"] == {"a": 1} and context["expense"]["tags"] == ["a", "b"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hello {{ nobody }}!", "Hello !"),
        ("{{ missing.deeply.nested.value }}", ""),
        ("{{ missing['key'][0] }}-{{ x.nope }}", "-"),
        ("Amount: {{ expense.amount }} {{ expense.currency }}", "Amount: 12.5 "),
        ("{% if missing.flag %}yes{% else %}no{% endif %}", "no"),
    ],
)
def test_missing_variables_render_empty(template: str, expected: str, context: dict[str, Any]) -> None:
    assert render_text(template, context) == expected


def test_missing_variables_in_values_are_none_or_empty(context: dict[str, Any]) -> None:
    assert render_value({"a": "{{ missing.value }}", "b": "id-{{ missing }}", "c": ["{{ x.nope }}"]}, context) == {
        "a": None,
        "b": "id-",
        "c": [None],
    }


def test_render_text_without_a_template_is_unchanged(context: dict[str, Any]) -> None:
    assert render_text("plain {text}", context) == "plain {text}"
    assert render_text(None, context) == ""
    assert not is_template("plain {text}") and is_template("{{ a }}") and is_template("{% if a %}{% endif %}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ expense.amount }}", 12.5),
        ("  {{ expense.amount * 2 }} ", 25.0),
        ("{{ n }}", 7),
        ("{{ flag }}", False),
        ("{{ expense.tags }}", ["a", "b"]),
        ("{{ expense }}", {"amount": 12.5, "tags": ["a", "b"]}),
        ("{{ nothing }}", None),
        ("{{ expense.amount }} EUR", "12.5 EUR"),
        ("{{ n }}{{ n }}", "77"),
        ("{{ 'a' }} and {{ 'b' }}", "a and b"),
    ],
)
def test_render_value_keeps_native_types_for_a_single_expression(value: str, expected: Any) -> None:
    context = {"expense": {"amount": 12.5, "tags": ["a", "b"]}, "n": 7, "flag": False}
    result = render_value(value, context)
    assert result == expected
    assert type(result) is type(expected)


def test_render_value_walks_nested_json(context: dict[str, Any]) -> None:
    config = {"json": {"amount": "{{ expense.amount }}", "ids": ["{{ x.a }}", 3, True, None]}, "n": 1}
    assert render_value(config, context) == {"json": {"amount": 12.5, "ids": [1, 3, True, None]}, "n": 1}


@pytest.mark.parametrize("source", ["{{ a ", "{{ a | nosuchfilter }}", "{% if %}", "{{ a }} {{ b( }}", "{% for %}"])
def test_check_template_rejects_what_does_not_parse(source: str) -> None:
    with pytest.raises(TemplateSyntaxError, match="does not parse"):
        check_template(source)


# -- conditions ----------------------------------------------------------------------------------------

DATA = {
    "approvalResult": {"decision": "approved", "comment": ""},
    "expense": {"amount": 1500, "tags": []},
    "count": 0,
    "zero": 0.0,
    "off": False,
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("approvalResult.decision == 'approved'", True),
        ("approvalResult.decision == 'rejected'", False),
        ("expense.amount > `1000`", True),
        ("expense.amount <= `1000`", False),
        ("missing.value", False),
        ("approvalResult.comment", False),  # empty string
        ("expense.tags", False),  # empty list
        ("count", True),  # JMESPath: every number is true, 0 included
        ("zero", True),
        ("off", False),
        ("!off", True),
        ("length(expense.tags) == `0`", True),
        ("expense.amount > 'abc'", False),  # ordering a number against a string is null, so false
        ("abs(approvalResult.decision)", False),  # a type error at run time is false, not a crash
    ],
)
def test_conditions_follow_jmespath_truthiness(condition: str, expected: bool) -> None:
    assert evaluate_condition(condition, DATA) is expected


@pytest.mark.parametrize(
    "condition",
    [
        "__import__('os').system('true')",
        "eval('1')",
        "expense.amount > 1000 and True",
        "lenght(expense.tags)",
        "length(expense.tags, `1`)",
    ],
)
def test_python_and_unknown_functions_are_not_conditions(condition: str) -> None:
    with pytest.raises(TemplateSyntaxError, match="does not parse"):
        compile_condition(condition)
    assert evaluate_condition(condition, DATA) is False


def test_conditions_never_use_eval_or_exec(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Python eval/exec/compile was called")

    compile_condition.cache_clear()
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "compile", forbidden)
    assert evaluate_condition("approvalResult.decision == 'approved' && expense.amount > `1000`", DATA)
    assert not evaluate_condition("contains(expense.tags, 'x') || count > `1`", DATA)
